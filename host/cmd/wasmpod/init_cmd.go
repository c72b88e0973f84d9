package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/host/internal/scaffold"
)

// newInitCmd is `wasmpod init --lang LANG ROLE DIR`: a new plugin with its build command, a pod
// spec that serves it, a test and a README (host/internal/scaffold).
func newInitCmd() *cobra.Command {
	var lang string
	cmd := &cobra.Command{
		Use:   "init --lang LANG ROLE DIR",
		Short: "Scaffold a new plugin: source, build command, pod spec, test and README",
		Long: `Scaffold a new plugin in DIR (created; it must be empty): its source, a README with the
build command, a test (test.sh, which calls the plugin with wasmpod call) and a pod spec that
serves it through ingress. Native plugins get the wasmpod SDK's source beside them, so they
build offline and outside this repository; Extism plugins take their PDK from the Go module
proxy or npm.

Roles: main is served through ingress. sidecar, ambassador and adapter come with the main they
serve, which reaches the helper with a pod-local call: for a native language one file plays both
and pod.yaml runs it twice; an Extism helper gets a small native main in main/ (an Extism plugin
cannot make that call). leaf writes a leaf that also serves as the merge, behind a one-shard
scatter; merge writes the same. stage writes a work-queue stage and a one-stage pipeline.

Languages: ` + strings.Join(scaffold.Languages, ", ") + `. Roles: ` + strings.Join(scaffold.Roles, ", ") + `.`,
		Example: `  wasmpod init --lang go main hello
  cd hello && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm . && ./test.sh`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := scaffold.Write(scaffold.Options{Lang: lang, Role: args[0], Dir: args[1]})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			what := args[0]
			if what == "merge" {
				what = "merge: a leaf that also serves as the merge, as for role leaf"
			}
			fmt.Fprintf(w, "wrote a plugin (--lang %s, role %s) in %s:\n", lang, what, args[1])
			for _, f := range files {
				if !strings.HasPrefix(f, "wasmpod-sdk/") {
					fmt.Fprintf(w, "  %s\n", f)
				}
			}
			fmt.Fprintf(w, "next: cd %s, then follow README.md (build, ./test.sh, wasmpod run pod.yaml)\n", args[1])
			return nil
		},
	}
	cmd.Flags().StringVar(&lang, "lang", "", "the plugin's language: "+strings.Join(scaffold.Languages, ", "))
	_ = cmd.MarkFlagRequired("lang")
	return cmd
}
