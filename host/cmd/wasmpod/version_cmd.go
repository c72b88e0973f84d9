package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/host/internal/version"
)

// newVersionCmd is `wasmpod version`: this binary's build (and, with --server, a running
// host's) as text or JSON. `wasmpod --version` prints the same text (see versionFlag).
func newVersionCmd() *cobra.Command {
	var cf clientFlags
	var server bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date, Go version and library versions",
		Long: `Print this binary's version, the commit and commit date it was built from, the Go
toolchain, the state directory format it writes, and the versions of wazero, extism,
memberlist, raft and fasthttp linked into it. With --server, also ask the host at --admin
(GET /v1/version) and print both: after an upgrade, this says what each node runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cf.output != "table" && cf.output != "json" {
				return fmt.Errorf("-o %q: use table or json", cf.output)
			}
			w := cmd.OutOrStdout()
			local := version.Get()
			if !server {
				return printVersion(w, cf.output, local)
			}
			c, err := cf.connect()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			remote, err := c.Version(ctx)
			if err != nil {
				return err
			}
			if cf.output == "json" {
				return writeJSON(w, struct {
					Client version.Info `json:"client"`
					Server version.Info `json:"server"`
				}{local, remote})
			}
			fmt.Fprint(w, "Client: ", local.Text(), "Server ("+cf.admin+"): ", remote.Text())
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().BoolVar(&server, "server", false, "also print the version of the host at --admin")
	return cmd
}

func printVersion(w io.Writer, output string, info version.Info) error {
	if output == "json" {
		return writeJSON(w, info)
	}
	_, err := io.WriteString(w, info.Text())
	return err
}

// versionFlag makes `wasmpod --version` print what `wasmpod version` prints (cobra's own
// --version prints one line from a template; this binary has more to say).
func versionFlag(root *cobra.Command) {
	root.Version = version.Get().Version
	root.Annotations = map[string]string{"version": version.Get().Text()}
	root.SetVersionTemplate(`{{index .Annotations "version"}}`)
}
