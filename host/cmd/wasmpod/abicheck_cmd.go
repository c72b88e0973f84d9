package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/host/internal/abicheck"
)

// newABICheckCmd is `wasmpod abi-check PLUGIN.wasm`: which ABI a module speaks, what it offers,
// and whether every export behaves on valid and invalid input. Exit 1 on any violation.
func newABICheckCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "abi-check PLUGIN.wasm",
		Short: "Check a module against the ABI it speaks (native wasmpod or Extism) and exercise its exports",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{2}
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			ok, err := abicheck.Run(ctx, wasm, cmd.OutOrStdout())
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
	return cmd
}
