package main

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmpod/wasmpod/host/internal/version"
)

// TestVersion runs the real binary: `version`, `--version` and `version -o json` agree, name
// the libraries this package links at the versions linked, and a running host answers the same
// on GET /v1/version, in wasmpod_build_info and to `version --server`. (The -ldflags values of
// a release build are checked by internal/release's tests, which build one.)
func TestVersion(t *testing.T) {
	out := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(binary, args...).Output()
		if err != nil {
			t.Fatalf("wasmpod %s: %v", strings.Join(args, " "), err)
		}
		return string(b)
	}
	var info version.Info
	if err := json.Unmarshal([]byte(out("version", "-o", "json")), &info); err != nil {
		t.Fatal(err)
	}
	text := out("version")
	if text != info.Text() || out("--version") != text {
		t.Errorf("version, --version and -o json differ:\n%s\n%s\n%+v", text, out("--version"), info)
	}
	// This test binary links the same modules as wasmpod (it is package main plus tests).
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("test binary without build info")
	}
	linked := map[string]string{}
	for _, d := range bi.Deps {
		linked[d.Path] = d.Version
	}
	for _, d := range version.Deps {
		if got, want := info.Dependency(d.Name), linked[d.Path]; got != want || want == "" {
			t.Errorf("%s: wasmpod says %q, linked %q", d.Name, got, want)
		}
	}
	if info.GoVersion != bi.GoVersion || info.StateFormat != version.StateFormat || info.Version == "" || info.Commit == "" {
		t.Errorf("info %+v", info)
	}
	if c, err := exec.Command(binary, "version", "-o", "yaml").CombinedOutput(); err == nil || !strings.Contains(string(c), `-o "yaml": use table or json`) {
		t.Errorf("version -o yaml: %v %s", err, c)
	}

	h := startHost(t, helloPod(t), "")
	code, body := h.adminDo("GET", "/v1/version", nil)
	var served version.Info
	if code != 200 || json.Unmarshal([]byte(body), &served) != nil || served.Text() != info.Text() {
		t.Errorf("GET /v1/version: %d %s", code, body)
	}
	if code, body := h.adminDo("POST", "/v1/version", nil); code != 405 {
		t.Errorf("POST /v1/version: %d %s", code, body)
	}
	_, metrics := h.adminDo("GET", "/metrics", nil)
	goos, goarch, _ := strings.Cut(info.Platform, "/")
	want := `wasmpod_build_info{goarch="` + goarch + `",goos="` + goos + `",goversion="` + info.GoVersion +
		`",revision="` + info.Commit + `",version="` + info.Version + `"} 1`
	if !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s:\n%s", want, regexp.MustCompile(`(?m)^wasmpod_build_info.*$`).FindString(metrics))
	}
	both := out("version", "--server", "--admin", h.admin)
	if both != "Client: "+text+"Server ("+h.admin+"): "+text {
		t.Errorf("version --server:\n%s", both)
	}
	var pair struct{ Client, Server version.Info }
	if err := json.Unmarshal([]byte(out("version", "--server", "--admin", h.admin, "-o", "json")), &pair); err != nil || pair.Server.Text() != text {
		t.Errorf("version --server -o json: %v %+v", err, pair)
	}
	if code := h.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
