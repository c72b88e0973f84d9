package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/host/internal/client"
	"github.com/wasmpod/wasmpod/host/internal/nodemeta"
)

// clusterVerbs are the client verbs of the cluster layer: members and election.
func clusterVerbs(cf *clientFlags) []*cobra.Command {
	wrap := func(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client, args []string, w io.Writer) error) *cobra.Command {
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return fn(ctx, c, args, cmd.OutOrStdout())
		}
		cf.add(cmd)
		return cmd
	}
	members := wrap(&cobra.Command{Use: "members", Short: "List the cluster's members with state, address, raft role and what they run", Args: cobra.NoArgs},
		func(ctx context.Context, c *client.Client, _ []string, w io.Writer) error {
			ms, err := c.Members(ctx)
			if err != nil {
				return err
			}
			if cf.output == "json" {
				return writeJSON(w, ms)
			}
			return membersTable(w, ms)
		})

	election := &cobra.Command{Use: "election", Short: "The election sidecar API: get, campaign, renew, resign, watch a named lease",
		Long: `The election sidecar API: get, campaign, renew, resign, watch a named lease.

An app campaigns, renews and resigns with its own token (the host's --app-token-file) as
WASMPOD_TOKEN or --token-file, and only with sessions APP or APP/...; the operator's admin token
may use any session. A lease's fencing token is shown only to those two; to others it is hidden.`}
	show := func(w io.Writer, l cluster.Lease, err error) error {
		if cf.output == "json" {
			if werr := writeJSON(w, l); werr != nil {
				return werr
			}
		} else if l.Name != "" {
			if werr := leaseTable(w, l); werr != nil {
				return werr
			}
		}
		return err
	}
	election.AddCommand(wrap(&cobra.Command{Use: "get NAME", Short: "Show who leads NAME, with token and lease expiry", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
			l, err := c.Election(ctx, args[0])
			return show(w, l, err)
		}))
	var session string
	var ttl time.Duration
	var token uint64
	campaign := wrap(&cobra.Command{Use: "campaign NAME", Short: "Become leader of NAME (becomeLeader); exits 1 with the holder when another leads", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
			l, err := c.Campaign(ctx, args[0], cluster.CampaignRequest{Session: session, TTLMillis: ttl.Milliseconds()})
			return show(w, l, err)
		})
	renew := wrap(&cobra.Command{Use: "renew NAME", Short: "Extend a lease held with --token (renewLeadership)", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
			l, err := c.Renew(ctx, args[0], cluster.RenewRequest{Session: session, Token: token, TTLMillis: ttl.Milliseconds()})
			return show(w, l, err)
		})
	resign := wrap(&cobra.Command{Use: "resign NAME", Short: "Give up a lease held with --token", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
			l, err := c.Resign(ctx, args[0], cluster.ResignRequest{Session: session, Token: token})
			return show(w, l, err)
		})
	var index uint64
	var wait time.Duration
	watch := wrap(&cobra.Command{Use: "watch NAME", Short: "Wait until NAME's lease changes past --index (or --wait passes) and show it", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, c *client.Client, args []string, w io.Writer) error {
			l, err := c.Watch(ctx, args[0], index, wait)
			return show(w, l, err)
		})
	for _, cmd := range []*cobra.Command{campaign, renew, resign} {
		cmd.Flags().StringVar(&session, "session", defaultSession(), "who holds the lease on this node")
	}
	for _, cmd := range []*cobra.Command{campaign, renew} {
		cmd.Flags().DurationVar(&ttl, "ttl", 0, "lease TTL (0: the cluster's default, 2s)")
	}
	for _, cmd := range []*cobra.Command{renew, resign} {
		cmd.Flags().Uint64Var(&token, "token", 0, "the fencing token the campaign returned")
		_ = cmd.MarkFlagRequired("token")
	}
	watch.Flags().Uint64Var(&index, "index", 0, "return once the lease's index exceeds this")
	watch.Flags().DurationVar(&wait, "wait", 30*time.Second, "longest wait (the host caps it)")
	election.AddCommand(campaign, renew, resign, watch)
	return []*cobra.Command{members, election}
}

// defaultSession names a CLI holder: "cli/$USER".
func defaultSession() string {
	u := os.Getenv("USER")
	if u == "" {
		u = "user"
	}
	return "cli/" + u
}

func membersTable(w io.Writer, ms []cluster.Member) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tADDRESS\tRAFT\tSINCE\tPODS\tMODULES\tSHARDS")
	for _, m := range ms {
		raft := "-"
		switch {
		case m.Leader:
			raft = "leader"
		case m.Voter:
			raft = "voter"
		}
		name := m.Name
		if m.IsLocal {
			name += " (this)"
		}
		since := "-"
		if !m.Since.IsZero() {
			since = time.Since(m.Since).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, m.State, m.Addr, raft, since,
			list(nodemeta.Of(m.Meta).Pods), list(nodemeta.Of(m.Meta).Modules), list(nodemeta.Of(m.Meta).Shards))
	}
	return tw.Flush()
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func leaseTable(w io.Writer, l cluster.Lease) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHELD\tHOLDER\tSESSION\tTOKEN\tEXPIRES IN\tINDEX\tRAFT LEADER")
	holder, sess, exp := "-", "-", "-"
	if l.Held {
		holder, sess = l.Holder, l.Session
		exp = l.ValidFor().Round(time.Millisecond).String()
	}
	token := strconv.FormatUint(l.Token, 10)
	if l.Held && l.Token == 0 {
		token = "hidden" // shown only to the holder's app and the operator
	}
	fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\t%d\t%s\n", l.Name, l.Held, holder, sess, token, exp, l.Index, list([]string{l.RaftLeader}))
	return tw.Flush()
}
