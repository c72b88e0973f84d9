package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/host/internal/abicheck"
	"github.com/wasmpod/wasmpod/runtime"
)

// newABICheckCmd is `wasmpod abi-check PLUGIN.wasm`: which ABI a module speaks, what it offers,
// and whether every export behaves on valid and invalid input. Exit 1 on any violation.
func newABICheckCmd() *cobra.Command {
	var timeout time.Duration
	var opts abicheck.Options
	cmd := &cobra.Command{
		Use:   "abi-check PLUGIN.wasm",
		Short: "Check a module against the ABI it speaks (native wasmpod or Extism) and exercise its exports",
		Long: `Check a module against the ABI it speaks (native wasmpod or Extism) and exercise its exports.

The ABI is detected as a pod would need it stated (--abi overrides); every role the module
serves is called with empty, large and malformed input, and a native module's lifecycle exports
are run. --function NAME exercises one function: for an Extism plugin any exported function
(what a pod's extism.function names), for a native module a role or its wasmpod_ export.
Exit status: 0 conforming, 1 violations, 2 the check could not run.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := runtime.ReadModuleFile(args[0], runtime.CompileBudget{})
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{2}
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			ok, err := abicheck.RunWith(ctx, wasm, cmd.OutOrStdout(), opts)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "abi-check %s: %v\n", args[0], err)
				return exitError{2}
			}
			if !ok {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	cmd.Flags().StringVar(&opts.ABI, "abi", "auto", "the ABI to check against: auto, native or extism (as a pod spec's abi states it)")
	cmd.Flags().StringVar(&opts.Function, "function", "", "exercise only this function (Extism: any export; native: a role such as leaf)")
	return cmd
}
