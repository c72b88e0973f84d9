package release

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

func TestPseudoVersion(t *testing.T) {
	tm := time.Date(2026, 11, 22, 3, 57, 3, 0, time.UTC)
	const c = "51ac047ea3593f873249ca5a6733debee2d9fc42"
	for _, tt := range []struct{ exact, prior, want string }{
		{"v0.3.0", "v0.3.0", "v0.3.0"},
		{"", "", "v0.0.0-20261122035703-51ac047ea359"},
		{"", "v0.3.0", "v0.3.1-0.20261122035703-51ac047ea359"},
		{"", "v1.9.10", "v1.9.11-0.20261122035703-51ac047ea359"},
		{"", "v0.4.0-rc.1", "v0.4.0-rc.1.0.20261122035703-51ac047ea359"},
		{"", "release-2", "v0.0.0-20261122035703-51ac047ea359"}, // not a semver tag
	} {
		if got := pseudoVersion(tt.exact, tt.prior, tm, c); got != tt.want {
			t.Errorf("pseudoVersion(%q, %q) = %q, want %q", tt.exact, tt.prior, got, tt.want)
		}
		if err := (Stamp{Version: tt.want, Commit: c, Date: "2026-11-22T03:57:03Z"}).Validate(); err != nil {
			t.Errorf("%s: %v", tt.want, err)
		}
	}
	if h := highest([]string{"v0.3.0-rc.1", "v0.3.0", "v0.2.9"}); h != "v0.3.0" {
		t.Errorf("highest = %q", h)
	}
}

func TestStampValidate(t *testing.T) {
	for _, tt := range []struct {
		s    Stamp
		want string
	}{
		{Stamp{"0.3.0", "51ac047ea3593f873249ca5a6733debee2d9fc42", "2026-11-22T03:57:03Z"}, `version "0.3.0" is not a semantic version`},
		{Stamp{"v0.3.0", "51ac047", "2026-11-22T03:57:03Z"}, `commit "51ac047" is not a full 40-hex commit hash`},
		{Stamp{"v0.3.0", "51ac047ea3593f873249ca5a6733debee2d9fc42", "2026-11-22T04:57:03+01:00"}, `is not RFC 3339 in UTC`},
		{Stamp{"v0.3.0", "51ac047ea3593f873249ca5a6733debee2d9fc42", "yesterday"}, `date "yesterday"`},
	} {
		if err := tt.s.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.s, err, tt.want)
		}
	}
}

// TestReproducible is `make release` for one target from a clean clone of HEAD, then
// release -check: a rebuild from another clone (another directory) must give the same bytes.
// The rebuild shares the build cache unless WASMPOD_RELEASE_FULL=1 (CI sets it), which gives it
// an empty one: nothing compiled for the first build is reused, as on another machine.
//
// It also runs what it built: the release binary reports the stamp given with -ldflags, and a
// plain `go build` of the same clean clone reports the same version, commit and date from the
// Go toolchain's VCS stamp (our pseudo-version is Go's).
//
// Committed HEAD is what is built: uncommitted changes in the work tree are not.
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds wasmpod twice")
	}
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if err := Clone(ctx, root, strings.TrimSpace(string(head)), src); err != nil {
		t.Fatal(err)
	}
	stamp, err := StampFromGit(ctx, src, false)
	if err != nil {
		t.Fatal(err)
	}
	if stamp.Commit != strings.TrimSpace(string(head)) {
		t.Fatalf("stamp %+v, HEAD %s", stamp, head)
	}
	here := Target{runtime.GOOS, runtime.GOARCH}
	out := filepath.Join(tmp, "release")
	var log strings.Builder
	m, err := Build(ctx, Options{Root: src, Out: out, Stamp: stamp, Targets: []Target{here}, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	a, _ := m.Artifact(here)
	if want := a.SHA256 + "  " + FileName(stamp.Version, here) + "\n"; string(sums) != want {
		t.Errorf("SHA256SUMS:\n%s\nwant:\n%s", sums, want)
	}
	if p, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command(p, "-c", "SHA256SUMS")
		cmd.Dir = out
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, b)
		}
	}
	var env []string
	if os.Getenv("WASMPOD_RELEASE_FULL") != "1" {
		c, _ := exec.Command("go", "env", "GOCACHE").Output()
		env = []string{"GOCACHE=" + strings.TrimSpace(string(c))}
	}
	if err := Check(ctx, CheckOptions{Root: root, Out: out, Targets: []Target{here}, Env: env, Log: &log}); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("%s", log.String())

	bin := filepath.Join(out, a.File)
	if b, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(b), "statically linked") {
		t.Errorf("not static: %s", b)
	}
	released := runVersion(t, bin)
	if released.Version != stamp.Version || released.Commit != stamp.Commit || released.Date != stamp.Date || released.Modified {
		t.Errorf("release binary says %+v, stamped %+v", released, stamp)
	}

	plain := filepath.Join(tmp, "plain")
	cmd := exec.Command("go", "build", "-buildvcs=true", "-o", plain, MainPackage)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	stamped := runVersion(t, plain)
	if stamped.Version != stamp.Version || stamped.Commit != stamp.Commit || stamped.Date != stamp.Date || stamped.Modified {
		t.Errorf("go build binary says %+v, release stamp %+v", stamped, stamp)
	}
}

type versionInfo struct {
	Version, Commit, Date string
	Modified              bool
}

func runVersion(t *testing.T, bin string) versionInfo {
	t.Helper()
	b, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	var v versionInfo
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
