// Package release builds wasmpod's release binaries: static (CGO off), reproducible (the same
// source and Go toolchain give the same bytes on any machine, in any directory), for the
// platforms in Targets, with a SHA256SUMS file and a release.json manifest that the image
// builder (deploy/) reads. `make release` runs cmd/release.
//
// Reproducible means: -trimpath (no machine paths), -buildvcs=false and the version, commit and
// commit time passed with -ldflags -X (so a build from a source tarball without .git gives the
// same bytes as one from a checkout), -buildid= (the build ID hashes the inputs' paths),
// -s -w (no symbol table or DWARF), fixed GOAMD64/GOARM64 levels, and no time of the build
// anywhere: the date a binary reports is its commit's.
package release

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MainPackage is the binary's package, relative to the repository root.
const MainPackage = "./host/cmd/wasmpod"

// VersionPackage is the package whose variables -ldflags -X sets.
const VersionPackage = "github.com/wasmpod/wasmpod/host/internal/version"

// Target is one platform of a release.
type Target struct{ OS, Arch string }

func (t Target) String() string { return t.OS + "/" + t.Arch }

// ParseTarget reads "linux/amd64".
func ParseTarget(s string) (Target, error) {
	goos, arch, ok := strings.Cut(s, "/")
	if !ok || goos == "" || arch == "" || strings.Contains(arch, "/") {
		return Target{}, fmt.Errorf("target %q: want GOOS/GOARCH, e.g. linux/amd64", s)
	}
	return Target{goos, arch}, nil
}

// Targets are the platforms a release ships: servers on either architecture, and the Apple
// Silicon laptops operators drive them from.
var Targets = []Target{{"linux", "amd64"}, {"linux", "arm64"}, {"darwin", "arm64"}}

// Stamp is what a release binary says about itself (host/internal/version).
type Stamp struct {
	// Version is a tag (v0.3.0) when the commit has one, else a Go pseudo-version from the
	// nearest earlier tag (v0.3.1-0.20261122035703-51ac047ea359) or from none
	// (v0.0.0-20261122035703-51ac047ea359): the version `go build` would stamp too. A dirty tree
	// adds "+dirty".
	Version string `json:"version"`
	// Commit is the full commit hash.
	Commit string `json:"commit"`
	// Date is the commit time, RFC 3339 UTC: the only time in a release.
	Date string `json:"date"`
}

// Validate checks a stamp given by hand (a build from a source tarball).
func (s Stamp) Validate() error {
	var errs []error
	if !semverRE.MatchString(s.Version) {
		errs = append(errs, fmt.Errorf("version %q is not a semantic version with a leading v (v1.2.3, v1.2.3-rc.1, a pseudo-version)", s.Version))
	}
	if !commitRE.MatchString(s.Commit) {
		errs = append(errs, fmt.Errorf("commit %q is not a full 40-hex commit hash", s.Commit))
	}
	if t, err := time.Parse(time.RFC3339, s.Date); err != nil || t.Location() != time.UTC || t.Format(time.RFC3339) != s.Date {
		errs = append(errs, fmt.Errorf("date %q is not RFC 3339 in UTC (2026-11-22T03:57:03Z)", s.Date))
	}
	return errors.Join(errs...)
}

var (
	semverRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)
	tagRE    = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)
)

// StampFromGit reads the stamp of HEAD in the checkout at dir. A tree with uncommitted
// changes (untracked files included: they could be Go files) is refused unless allowDirty,
// and its version then ends in "+dirty": such a binary cannot be rebuilt by anyone else.
func StampFromGit(ctx context.Context, dir string, allowDirty bool) (Stamp, error) {
	g := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	commit, err := g("rev-parse", "HEAD")
	if err != nil {
		return Stamp{}, fmt.Errorf("release: not a git checkout (give -version, -commit and -date for a source tarball): %w", err)
	}
	epoch, err := g("log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return Stamp{}, err
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return Stamp{}, fmt.Errorf("release: commit time %q: %w", epoch, err)
	}
	t := time.Unix(sec, 0).UTC()
	status, err := g("status", "--porcelain")
	if err != nil {
		return Stamp{}, err
	}
	dirty := status != ""
	if dirty && !allowDirty {
		first, _, _ := strings.Cut(status, "\n")
		return Stamp{}, fmt.Errorf("release: the tree has uncommitted changes (%s ...): commit them, or allow a dirty build (its version ends in +dirty)", first)
	}
	exact, _ := g("tag", "--points-at", "HEAD", "--list", "v*")
	prior, _ := g("describe", "--tags", "--abbrev=0", "--match", "v[0-9]*", "HEAD")
	var tags []string
	for _, tag := range strings.Fields(exact) {
		if tagRE.MatchString(tag) {
			tags = append(tags, tag)
		}
	}
	v := pseudoVersion(highest(tags), prior, t, commit)
	if dirty {
		v += "+dirty"
	}
	return Stamp{Version: v, Commit: commit, Date: t.Format(time.RFC3339)}, nil
}

// highest is the highest semantic version among tags ("" for none).
func highest(tags []string) string {
	best := ""
	for _, t := range tags {
		if best == "" || compareSemver(t, best) > 0 {
			best = t
		}
	}
	return best
}

// compareSemver orders two tags matching tagRE by major, minor, patch, then a release above
// its pre-releases (pre-releases compared as strings, enough to pick one tag of a commit).
func compareSemver(a, b string) int {
	ma, mb := tagRE.FindStringSubmatch(a), tagRE.FindStringSubmatch(b)
	for i := 1; i <= 3; i++ {
		x, _ := strconv.Atoi(ma[i])
		y, _ := strconv.Atoi(mb[i])
		if x != y {
			return x - y
		}
	}
	switch {
	case ma[4] == mb[4]:
		return 0
	case ma[4] == "":
		return 1
	case mb[4] == "":
		return -1
	}
	return strings.Compare(ma[4], mb[4])
}

// pseudoVersion is the version of a commit: its own tag, or Go's pseudo-version form
// (https://go.dev/ref/mod#pseudo-versions) from the nearest earlier tag.
func pseudoVersion(exact, prior string, t time.Time, commit string) string {
	if exact != "" {
		return exact
	}
	ts := t.UTC().Format("20060102150405") + "-" + commit[:12]
	m := tagRE.FindStringSubmatch(prior)
	switch {
	case m == nil:
		return "v0.0.0-" + ts
	case m[4] != "": // v1.2.3-rc.1 -> v1.2.3-rc.1.0.TS-HASH
		return prior + ".0." + ts
	}
	patch, _ := strconv.Atoi(m[3])
	return fmt.Sprintf("v%s.%s.%d-0.%s", m[1], m[2], patch+1, ts)
}

// LDFlags are the linker flags of a release build with stamp s.
func LDFlags(s Stamp) string {
	return strings.Join([]string{
		"-s", "-w", "-buildid=",
		"-X", VersionPackage + ".version=" + s.Version,
		"-X", VersionPackage + ".commit=" + s.Commit,
		"-X", VersionPackage + ".date=" + s.Date,
	}, " ")
}

// Options configure Build.
type Options struct {
	// Root is the repository root (the directory of the main go.mod).
	Root string
	// Out is the output directory; it is created, and earlier binaries in it are replaced.
	Out string
	// Stamp is what the binaries report.
	Stamp Stamp
	// Targets to build; nil builds Targets.
	Targets []Target
	// Go is the go command; "" finds "go" on PATH.
	Go string
	// Env is added to every build's environment after the release settings (tests use it for
	// GOCACHE); it must not change what is built.
	Env []string
	// Log receives one line per target; nil discards.
	Log io.Writer
}

// Artifact is one built binary.
type Artifact struct {
	Target string `json:"target"`
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Manifest is release.json: what was built, from what, with which toolchain.
type Manifest struct {
	Stamp
	// Source is the repository the release was built from (org.opencontainers.image.source).
	Source string `json:"source"`
	// GoVersion is the toolchain; rebuilding with another one gives other bytes.
	GoVersion string     `json:"goVersion"`
	Artifacts []Artifact `json:"artifacts"`
}

// Source is the project's repository, as images and manifests name it.
const Source = "https://github.com/wasmpod/wasmpod"

// FileName is the binary's name for a version and target: wasmpod-v0.3.0-linux-amd64.
func FileName(version string, t Target) string {
	return "wasmpod-" + version + "-" + t.OS + "-" + t.Arch
}

// Env is the environment of a release build for t, on top of the caller's: CGO off (static
// binaries, no libc), fixed microarchitecture levels (the defaults, written down so that a
// GOAMD64 in someone's shell cannot change the bytes), no GOFLAGS or GOEXPERIMENT from the
// caller, and the local toolchain only.
func Env(t Target) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOOS", "GOARCH", "CGO_ENABLED", "GOAMD64", "GOARM64", "GOFLAGS", "GOEXPERIMENT", "GOTOOLCHAIN", "GO386", "GOARM":
			return true
		}
		return false
	})
	return append(env, "GOOS="+t.OS, "GOARCH="+t.Arch, "CGO_ENABLED=0", "GOAMD64=v1", "GOARM64=v8.0",
		"GOFLAGS=-mod=readonly", "GOTOOLCHAIN=local")
}

// Build builds the targets into opts.Out and writes SHA256SUMS and release.json there.
func Build(ctx context.Context, opts Options) (Manifest, error) {
	if err := opts.Stamp.Validate(); err != nil {
		return Manifest{}, fmt.Errorf("release: %w", err)
	}
	if opts.Go == "" {
		opts.Go = "go"
	}
	if opts.Targets == nil {
		opts.Targets = Targets
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return Manifest{}, err
	}
	goVersion, err := toolchain(ctx, opts.Go)
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{Stamp: opts.Stamp, Source: Source, GoVersion: goVersion}
	for _, t := range opts.Targets {
		start := time.Now()
		name := FileName(opts.Stamp.Version, t)
		out, err := filepath.Abs(filepath.Join(opts.Out, name))
		if err != nil {
			return Manifest{}, err
		}
		cmd := exec.CommandContext(ctx, opts.Go, "build", "-trimpath", "-buildvcs=false",
			"-ldflags="+LDFlags(opts.Stamp), "-o", out, MainPackage)
		cmd.Dir = opts.Root
		cmd.Env = append(Env(t), opts.Env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return Manifest{}, fmt.Errorf("release: build %s: %w\n%s", t, err, b)
		}
		sum, size, err := fileSHA256(out)
		if err != nil {
			return Manifest{}, err
		}
		m.Artifacts = append(m.Artifacts, Artifact{Target: t.String(), File: name, SHA256: sum, Size: size})
		fmt.Fprintf(opts.Log, "%s  %s  %d bytes  %s\n", sum, name, size, time.Since(start).Round(time.Second))
	}
	if err := writeFiles(opts.Out, m); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

func toolchain(ctx context.Context, goCmd string) (string, error) {
	cmd := exec.CommandContext(ctx, goCmd, "env", "GOVERSION")
	cmd.Env = Env(Target{runtime.GOOS, runtime.GOARCH})
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("release: %s env GOVERSION: %w", goCmd, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// writeFiles writes SHA256SUMS (sha256sum's format, sorted by name: `sha256sum -c` checks it)
// and release.json.
func writeFiles(dir string, m Manifest) error {
	arts := slices.Clone(m.Artifacts)
	slices.SortFunc(arts, func(a, b Artifact) int { return strings.Compare(a.File, b.File) })
	var sums strings.Builder
	for _, a := range arts {
		fmt.Fprintf(&sums, "%s  %s\n", a.SHA256, a.File)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums.String()), 0o644); err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "release.json"), append(b, '\n'), 0o644)
}

// ReadManifest reads dir/release.json and checks every artifact against its checksum.
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, "release.json"))
	if err != nil {
		return m, fmt.Errorf("release: %w (run make release)", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("release: %s: %w", filepath.Join(dir, "release.json"), err)
	}
	for _, a := range m.Artifacts {
		sum, _, err := fileSHA256(filepath.Join(dir, a.File))
		if err != nil {
			return m, err
		}
		if sum != a.SHA256 {
			return m, fmt.Errorf("release: %s: sha256 %s, release.json says %s", a.File, sum, a.SHA256)
		}
	}
	return m, nil
}

// Artifact returns the artifact built for target t.
func (m Manifest) Artifact(t Target) (Artifact, bool) {
	for _, a := range m.Artifacts {
		if a.Target == t.String() {
			return a, true
		}
	}
	return Artifact{}, false
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// CheckOptions configure Check.
type CheckOptions struct {
	// Root is a checkout of the repository (any commit: the release's is cloned from it).
	Root string
	// Out holds the release to check (release.json, SHA256SUMS, the binaries).
	Out string
	// Targets to rebuild; nil rebuilds linux/amd64.
	Targets []Target
	// Env is added to the rebuild's environment. Without a GOCACHE in it the rebuild starts
	// from an empty build cache, so nothing the first build left behind can be reused.
	Env []string
	// Log receives progress; nil discards.
	Log io.Writer
}

// Check rebuilds targets of the release in opts.Out from a fresh clone of its commit (another
// directory, so -trimpath is put to the test too) and compares the bytes with the release's
// checksums. A release built from a dirty tree cannot be checked: its source is not a commit.
func Check(ctx context.Context, opts CheckOptions) error {
	m, err := ReadManifest(opts.Out)
	if err != nil {
		return err
	}
	if strings.HasSuffix(m.Version, "+dirty") {
		return fmt.Errorf("release: %s was built from uncommitted changes and cannot be rebuilt from its commit", m.Version)
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	targets := opts.Targets
	if targets == nil {
		targets = []Target{{"linux", "amd64"}}
	}
	tmp, err := os.MkdirTemp("", "wasmpod-release-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	if err := Clone(ctx, opts.Root, m.Commit, src); err != nil {
		return err
	}
	env := opts.Env
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GOCACHE=") }) {
		env = append(slices.Clone(env), "GOCACHE="+filepath.Join(tmp, "gocache"))
		fmt.Fprintf(opts.Log, "rebuilding %v from %s with an empty build cache\n", targets, m.Commit)
	}
	re, err := Build(ctx, Options{Root: src, Out: filepath.Join(tmp, "out"), Stamp: m.Stamp, Targets: targets, Env: env, Log: opts.Log})
	if err != nil {
		return err
	}
	if re.GoVersion != m.GoVersion {
		return fmt.Errorf("release: built with %s, this toolchain is %s: the bytes cannot match", m.GoVersion, re.GoVersion)
	}
	var errs []error
	for _, t := range targets {
		want, ok := m.Artifact(t)
		if !ok {
			errs = append(errs, fmt.Errorf("release: %s has no %s binary", opts.Out, t))
			continue
		}
		got, _ := re.Artifact(t)
		if got.SHA256 != want.SHA256 {
			errs = append(errs, fmt.Errorf("release: %s is not reproducible: rebuilt %s, released %s", want.File, got.SHA256, want.SHA256))
			continue
		}
		fmt.Fprintf(opts.Log, "%s  %s  reproduced\n", got.SHA256, want.File)
	}
	return errors.Join(errs...)
}

// Clone checks commit out of the repository at root into dir (which must not exist), sharing
// root's objects: a clean tree of exactly that commit, wherever root's work tree stands.
func Clone(ctx context.Context, root, commit, dir string) error {
	for _, args := range [][]string{
		{"clone", "--quiet", "--shared", "--no-checkout", root, dir},
		{"-C", dir, "-c", "advice.detachedHead=false", "checkout", "--quiet", commit},
	} {
		if out, err := exec.CommandContext(ctx, "git", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("release: git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}
