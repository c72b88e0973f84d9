// Command gen writes the SDK archive of package scaffold from the repository's guest-sdk/:
// go generate ./host/internal/scaffold.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/wasmpod/wasmpod/host/internal/scaffold"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

func main() {
	out := flag.String("o", "sdk.txt", "output file")
	flag.Parse()
	root, err := wasmbuild.RepoRoot()
	if err == nil {
		var files map[string][]byte
		if files, err = scaffold.ReadSDK(root); err == nil {
			err = os.WriteFile(*out, scaffold.FormatArchive(files), 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
