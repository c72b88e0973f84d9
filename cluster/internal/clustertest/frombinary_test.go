//go:build linux

package clustertest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// upgradeFromFile names the release a rolling upgrade starts from, relative to the repository
// root: the first field of its first line that is not a comment is a commit or tag, the rest
// says why. WASMPOD_UPGRADE_FROM overrides it.
const upgradeFromFile = "deploy/upgrade-from"

// fromCommit reads the commit or tag the rolling-upgrade test starts from.
func fromCommit(root string) (string, error) {
	if c := strings.TrimSpace(os.Getenv("WASMPOD_UPGRADE_FROM")); c != "" {
		return c, nil
	}
	f, err := os.Open(filepath.Join(root, upgradeFromFile))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return strings.Fields(line)[0], nil
	}
	return "", fmt.Errorf("%s names no commit", upgradeFromFile)
}

func git(root string, args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// fromBinary builds the wasmpod binary of the release the rolling upgrade starts from, from
// the repository's own git objects (git archive into a temporary directory, go build with the
// module cache), and caches it by commit under the user cache dir. It skips the test when the
// source has no git history (a tarball) or a shallow clone lacks the commit.
func fromBinary(t *testing.T) (bin, commit string) {
	t.Helper()
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("skipping rolling upgrade: no git to build the previous release with")
	}
	if _, err := git(root, "rev-parse", "--git-dir"); err != nil {
		t.Skipf("skipping rolling upgrade: %s has no git history to build the previous release from (a source tarball?)", root)
	}
	ref, err := fromCommit(root)
	if err != nil {
		t.Fatalf("the release to upgrade from: %v", err)
	}
	commit, err = git(root, "rev-parse", "--verify", "--quiet", ref+"^{commit}")
	if err != nil || commit == "" {
		if shallow, _ := git(root, "rev-parse", "--is-shallow-repository"); shallow == "true" {
			t.Skipf("skipping rolling upgrade: this shallow clone lacks %s (named by %s); `git fetch --unshallow` to run it", ref, upgradeFromFile)
		}
		t.Fatalf("%s names %q, which is no commit of this repository: %v", upgradeFromFile, ref, err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "wasmpod", "upgrade-from", commit)
	bin = filepath.Join(dir, "wasmpod")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, commit
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	archive := exec.Command("sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", root, commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v: %s", commit, err, out)
	}
	tmp, err := os.CreateTemp(dir, "wasmpod-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	// The commit goes in with -X as a release's does (a source tree has no VCS stamp); a
	// version package without the variable ignores it. Otherwise the flags are podtest.Binary's,
	// so that every dependency the two releases share comes from the build cache.
	build := exec.Command("go", "build", "-o", tmp.Name(),
		"-ldflags", "-X github.com/wasmpod/wasmpod/host/internal/version.commit="+commit, "./host/cmd/wasmpod")
	build.Dir = src
	build.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build wasmpod at %s: %v\n%s", commit, err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil { // atomic: a parallel run sees all or nothing
		t.Fatal(err)
	}
	return bin, commit
}

// binInfo is what the rolling-upgrade test needs to know of a wasmpod binary: its version and
// the flags its run command takes (a newer binary may know flags an older one does not).
type binInfo struct {
	path        string
	Version     string `json:"version"`
	Commit      string `json:"commit"`
	StateFormat int    `json:"stateFormat"`
	runHelp     string
}

func inspect(t *testing.T, path string) binInfo {
	t.Helper()
	b := binInfo{path: path}
	// A release before `wasmpod version` (issue 18 part 1) is format 1 and says nothing more.
	b.Version, b.Commit, b.StateFormat = "unknown", "unknown", 1
	if out, err := exec.Command(path, "version", "-o", "json").Output(); err == nil {
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("%s version -o json: %v: %s", path, err, out)
		}
	}
	help, err := exec.Command(path, "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s run --help: %v: %s", path, err, help)
	}
	b.runHelp = string(help)
	return b
}

// has reports whether `run` takes --flag.
func (b binInfo) has(flag string) bool {
	for _, f := range strings.Fields(b.runHelp) {
		if f == "--"+flag || strings.HasPrefix(f, "--"+flag+"=") {
			return true
		}
	}
	return false
}

func (b binInfo) String() string {
	c := b.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	return fmt.Sprintf("%s (%s, state format %d)", b.Version, c, b.StateFormat)
}
