// Command wasmpod runs WebAssembly modules the way Kubernetes runs containers.
//
//	wasmpod run POD.yaml [--listen ADDR] [--admin ADDR] [--state-dir DIR]
//	wasmpod validate POD.yaml
//	wasmpod call PLUGIN.wasm FUNCTION [--input ...] [--config k=v]
//	wasmpod abi-check PLUGIN.wasm [--function NAME]
//	wasmpod init --lang go|c|rust|assemblyscript|extism-go|extism-as main|leaf DIR
//	wasmpod get|describe|logs [-f]|stop|start|pause|resume|restart|scale|upgrade|rollback ...
//	wasmpod members
//	wasmpod election get|campaign|renew|resign|watch NAME
//	wasmpod version [-o json] [--server]   (or wasmpod --version)
//
// `run` serves the pod (ingress on --listen, admin API on --admin) until SIGTERM or SIGINT, then
// drains, snapshots and exits 0 within the pod's grace period; a second signal forces exit.
// The other verbs are clients of a running host's admin API, with tables by default and
// `-o json`. Mutating verbs need the admin token (--token-file or WASMPOD_TOKEN); election verbs
// take an app's own token (the host's --app-token-file) too.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "wasmpod:", err)
		os.Exit(1)
	}
}

// newRoot builds the command tree. New verbs register in verbs below.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "wasmpod",
		Short:         "Run WebAssembly modules the way Kubernetes runs containers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var cf clientFlags
	for _, v := range []func() *cobra.Command{newRunCmd, newValidateCmd, newABICheckCmd, newVersionCmd, newCallCmd, newInitCmd, newTLSCmd} {
		root.AddCommand(v())
	}
	for _, v := range append(clientVerbs(&cf), clusterVerbs(&cf)...) {
		root.AddCommand(v)
	}
	root.AddCommand(queueVerbs(&cf))
	versionFlag(root)
	return root
}
