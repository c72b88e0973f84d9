package wasmbuild

import (
	"strings"
	"testing"
)

// GoCommand builds the Go WASI command whose main package is in dir (a directory with its own
// go.mod) with GOOS=wasip1 GOARCH=wasm go build (an ordinary command exporting _start, not
// -buildmode=c-shared as Go uses), and returns the .wasm path. The cache key covers dir and the
// `go version` output; commands do not use the guest SDK.
func GoCommand(tb testing.TB, dir string) string {
	tb.Helper()
	RequireTool(tb, "go")
	return buildCached(tb, dir, GoCommandKey, BuildGoCommand)
}

// GoCommandKey returns the cache key of the Go WASI command in dir (see GoCommand).
func GoCommandKey(dir string) (string, error) {
	ver, err := goVersion()
	if err != nil {
		return "", err
	}
	h, err := HashFiles("gocmd\x00"+strings.Join(goCommandFlags, " ")+"\x00"+ver, dir)
	if err != nil {
		return "", err
	}
	return "gocmd-" + h[:32], nil
}

var goCommandFlags = []string{"build", "-trimpath"}

// BuildGoCommand compiles the Go WASI command in dir to the file out, without a cache, with the
// same environment as BuildGo (GOWORK=off, -mod=readonly).
func BuildGoCommand(dir, out string) error { return goBuild(dir, out, goCommandFlags) }
