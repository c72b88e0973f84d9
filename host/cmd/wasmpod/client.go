package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/host/internal/client"
	"github.com/wasmpod/wasmpod/runtime"
)

// clientFlags are the flags shared by the verbs that talk to a running host.
type clientFlags struct {
	admin     string
	tokenFile string
	output    string
}

func (f *clientFlags) add(cmd *cobra.Command) {
	f.addConn(cmd)
	cmd.Flags().StringVarP(&f.output, "output", "o", "table", "output format: table or json")
}

// addConn adds only the flags that reach the host (for verbs whose -o means something else).
func (f *clientFlags) addConn(cmd *cobra.Command) {
	def := os.Getenv("WASMPOD_ADMIN")
	if def == "" {
		def = "127.0.0.1:9901"
	}
	cmd.Flags().StringVar(&f.admin, "admin", def, "admin API address of the host ($WASMPOD_ADMIN)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the admin bearer token (else $WASMPOD_TOKEN)")
}

func (f *clientFlags) client() (*client.Client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("-o %q: use table or json", f.output)
	}
	return f.connect()
}

// connect returns a client for the host named by the flags added by addConn.
func (f *clientFlags) connect() (*client.Client, error) {
	tok, err := readToken(f.tokenFile)
	if err != nil {
		return nil, err
	}
	return &client.Client{Base: f.admin, Token: tok}, nil
}

func clientVerbs(cf *clientFlags) []*cobra.Command {
	var cmds []*cobra.Command
	verb := func(use, short string, args cobra.PositionalArgs, fn func(ctx context.Context, c *client.Client, args []string, w io.Writer) error) *cobra.Command {
		cmd := &cobra.Command{Use: use, Short: short, Args: args,
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := cf.client()
				if err != nil {
					return err
				}
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
				defer stop()
				return fn(ctx, c, args, cmd.OutOrStdout())
			}}
		cf.add(cmd)
		cmds = append(cmds, cmd)
		return cmd
	}
	verb("get [MODULE]", "List modules (or one) with state, readiness, restarts", cobra.MaximumNArgs(1),
		func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
			var sts []client.ModuleStatus
			if len(args) == 1 {
				st, err := c.Get(ctx, args[0])
				if err != nil {
					return err
				}
				sts = append(sts, st)
			} else {
				var err error
				if sts, err = c.List(ctx); err != nil {
					return err
				}
			}
			if cf.output == "json" {
				return writeJSON(w, sts)
			}
			return table(w, sts)
		})
	verb("describe MODULE", "Show a module's state, version, config, restarts and last error", cobra.ExactArgs(1),
		func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
			st, err := c.Get(ctx, args[0])
			if err != nil {
				return err
			}
			if cf.output == "json" {
				return writeJSON(w, st)
			}
			return describe(w, st)
		})
	var follow bool
	var tail int
	logs := verb("logs MODULE", "Print a module's recent log lines; -f follows", cobra.ExactArgs(1),
		func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
			return c.Logs(ctx, args[0], tail, follow, func(l client.LogLine) {
				if cf.output == "json" {
					b, _ := json.Marshal(l)
					fmt.Fprintf(w, "%s\n", b)
					return
				}
				fmt.Fprintf(w, "%s %-5s %-7s %s\n", l.Time.Format(time.RFC3339Nano), l.Level, l.Source, l.Message)
			})
		})
	logs.Flags().BoolVarP(&follow, "follow", "f", false, "stream new lines until interrupted")
	logs.Flags().IntVar(&tail, "tail", 100, "how many recent lines to print first")
	for _, a := range []struct{ name, short string }{
		{"stop", "Stop a module (drain, snapshot); it stays stopped until start"},
		{"start", "Start a stopped module, or one in back-off, now"},
		{"restart", "Restart a module (snapshot carried over)"},
		{"pause", "Stop admitting calls to a module; in-flight calls finish"},
		{"resume", "Admit calls again after pause"},
		{"rollback", "Go back to the module's previous version"},
	} {
		verb(a.name+" MODULE", a.short, cobra.ExactArgs(1),
			func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
				st, err := c.Action(ctx, args[0], a.name)
				if err != nil {
					return err
				}
				return result(w, cf, st)
			})
	}
	verb("scale MODULE REPLICAS", "Set a module's warm instance pool size", cobra.ExactArgs(2),
		func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return fmt.Errorf("REPLICAS %q: not an integer", args[1])
			}
			st, err := c.Scale(ctx, args[0], n)
			if err != nil {
				return err
			}
			return result(w, cf, st)
		})
	verb("upgrade MODULE FILE.wasm", "Replace a module's version while the pod serves (rolls back if never ready)", cobra.ExactArgs(2),
		func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
			wasm, err := runtime.ReadModuleFile(args[1], runtime.CompileBudget{})
			if err != nil {
				return err
			}
			st, err := c.Upgrade(ctx, args[0], wasm)
			if err != nil {
				return err
			}
			return result(w, cf, st)
		})
	return cmds
}

func result(w io.Writer, cf *clientFlags, st client.ModuleStatus) error {
	if cf.output == "json" {
		return writeJSON(w, st)
	}
	return table(w, []client.ModuleStatus{st})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, sts []client.ModuleStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSTATE\tREADY\tRESTARTS\tVERSION\tINSTANCES\tAGE")
	for _, s := range sts {
		state := s.State
		if s.Reason != "" && s.Reason != "Stopped" {
			state = s.Reason
		}
		age := "-"
		if s.StartedAt != nil {
			age = time.Since(*s.StartedAt).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%d (%.12s)\t%d/%d\t%s\n", s.Name, s.Role, state, s.Ready, s.Restarts, s.Version, s.SHA256, s.Instances, s.Target, age)
	}
	return tw.Flush()
}

func describe(w io.Writer, s client.ModuleStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	row("Name", s.Name)
	row("Role", s.Role)
	row("Priority", s.Priority)
	row("State", s.State)
	if s.Reason != "" {
		row("Reason", s.Reason)
	}
	row("Ready", s.Ready)
	row("Version", s.Version)
	row("SHA256", s.SHA256)
	if s.PreviousSHA256 != "" {
		row("Previous", s.PreviousSHA256)
	}
	row("Calls", s.Calls)
	row("Restarts", s.Restarts)
	row("Failures", s.Failures)
	if s.LastBackoff != "" {
		row("Last back-off", s.LastBackoff)
	}
	if s.NextRestart != nil {
		row("Next restart", s.NextRestart.Format(time.RFC3339))
	}
	row("Instances", fmt.Sprintf("%d (target %d)", s.Instances, s.Target))
	if s.StartedAt != nil {
		row("Started", s.StartedAt.Format(time.RFC3339))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Config)) {
		row("Config "+k, s.Config[k])
	}
	if s.LastError != "" {
		row("Last error", s.LastError)
	}
	if s.Redacted {
		row("Redacted", "config, spec and last error need the admin token (--token-file or $WASMPOD_TOKEN)")
	}
	return tw.Flush()
}
