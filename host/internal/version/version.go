// Package version says which wasmpod a binary is: its release version, the commit and commit
// time it was built from, the Go toolchain, and the versions of the libraries that make up the
// runtime (wazero, extism, memberlist, raft, fasthttp), read from the binary's own build
// information. `wasmpod version`, the admin API's GET /v1/version and the wasmpod_build_info
// metric all report Get().
//
// A release build (`make release`) sets the version, commit and date with -ldflags -X (see
// internal/release), so that a binary built from a source tarball without .git says the same
// as one built from a checkout. Any other build falls back to what the Go toolchain stamps:
// the main module's version (a pseudo-version from the commit, "+dirty" for uncommitted
// changes) and the vcs.revision, vcs.time and vcs.modified settings. A binary with neither
// (go run, a test binary) says "devel" and "unknown" rather than guess.
package version

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
)

// Set at release build time with -ldflags "-X github.com/wasmpod/wasmpod/host/internal/version.version=..."
// (and .commit, .date); empty otherwise.
var (
	version string // semantic version, e.g. v0.3.0 or a pseudo-version v0.0.0-20260101120000-0123456789ab
	commit  string // full commit hash
	date    string // commit time, RFC 3339 UTC
)

// Compatibility numbers. They change only when a release cannot read what an older one wrote
// (or the other way round); RATIONALE.md ("Releases and upgrades") gives the rule.
const (
	// StateFormat is the layout version of the state directory (Raft log and snapshots, the
	// work queue's database and blobs, module snapshots, the compilation cache). A binary
	// refuses a state directory stamped with a newer format (a downgrade past a format change)
	// and reads every older one it lists in RATIONALE.md. 3: the work queue's Raft log may hold
	// complete_lease commands (once every voter advertises them), which format-2 binaries
	// would refuse as unknown while replaying the log, silently diverging from the others.
	StateFormat = 3
)

// Dependency is one library linked into the binary.
type Dependency struct {
	// Name is the short name (wazero, extism, memberlist, raft, fasthttp).
	Name string `json:"name"`
	// Path is the Go module path.
	Path string `json:"path"`
	// Version is the module version linked, or "(replaced) PATH VERSION" when go.mod replaced it.
	Version string `json:"version"`
}

// Info is what a binary knows about its own build.
type Info struct {
	// Version is the release version (v0.3.0), a Go pseudo-version for an untagged commit, or
	// "devel" when the build recorded none.
	Version string `json:"version"`
	// Commit is the full commit hash, "unknown" when not recorded.
	Commit string `json:"commit"`
	// Date is the commit time (RFC 3339, UTC): a release is reproducible, so it carries no
	// time of its own. Empty when not recorded.
	Date string `json:"date,omitempty"`
	// Modified is true when the build had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// GoVersion is the toolchain that built the binary (go1.26.8).
	GoVersion string `json:"goVersion"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
	// StateFormat is the state directory format this binary writes (see the constant).
	StateFormat int `json:"stateFormat"`
	// Dependencies are the runtime's libraries, in a fixed order; one not linked is left out.
	Dependencies []Dependency `json:"dependencies"`
}

// Deps lists the libraries Info reports, by short name and module path.
var Deps = []struct{ Name, Path string }{
	{"wazero", "github.com/tetratelabs/wazero"},
	{"extism", "github.com/extism/go-sdk"},
	{"memberlist", "github.com/hashicorp/memberlist"},
	{"raft", "github.com/hashicorp/raft"},
	{"fasthttp", "github.com/valyala/fasthttp"},
}

// Get returns this binary's Info. It is computed once.
func Get() Info { return get() }

var get = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(bi, version, commit, date)
})

// fromBuild computes Info from build information (nil when the binary has none) and the
// -ldflags values, which win where set.
func fromBuild(bi *debug.BuildInfo, ldVersion, ldCommit, ldDate string) Info {
	info := Info{
		Version:     "devel",
		Commit:      "unknown",
		GoVersion:   runtime.Version(),
		Platform:    runtime.GOOS + "/" + runtime.GOARCH,
		StateFormat: StateFormat,
	}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.time":
				info.Date = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
		mods := map[string]*debug.Module{}
		for _, d := range bi.Deps {
			mods[d.Path] = d
		}
		for _, d := range Deps {
			m, ok := mods[d.Path]
			if !ok {
				continue
			}
			v := m.Version
			if r := m.Replace; r != nil {
				v = strings.TrimSpace("(replaced) " + r.Path + " " + r.Version)
			}
			info.Dependencies = append(info.Dependencies, Dependency{Name: d.Name, Path: d.Path, Version: v})
		}
	}
	if ldVersion != "" {
		info.Version = ldVersion
		// A release build says exactly what it was built from: its own build settings have no
		// VCS stamp (-buildvcs=false), and the release tool refuses a dirty tree unless told,
		// in which case the version carries "+dirty".
		info.Modified = strings.HasSuffix(ldVersion, "+dirty")
	}
	if ldCommit != "" {
		info.Commit = ldCommit
	}
	if ldDate != "" {
		info.Date = ldDate
	}
	if info.Dependencies == nil {
		info.Dependencies = []Dependency{}
	}
	return info
}

// Dependency returns the version of the named library (Deps' short names), "" when not linked.
func (i Info) Dependency(name string) string {
	for _, d := range i.Dependencies {
		if d.Name == name {
			return d.Version
		}
	}
	return ""
}

// Text is the human form, as `wasmpod version` and `wasmpod --version` print it.
func (i Info) Text() string {
	var b strings.Builder
	b.WriteString("wasmpod " + i.Version + "\n")
	row := func(k, v string) { b.WriteString("  " + k + strings.Repeat(" ", 14-len(k)) + v + "\n") }
	c := i.Commit
	if i.Modified {
		c += " (modified)"
	}
	row("commit", c)
	if i.Date != "" {
		row("date", i.Date)
	}
	row("go", i.GoVersion+" "+i.Platform)
	row("state format", strconv.Itoa(i.StateFormat))
	for _, d := range i.Dependencies {
		row(d.Name, d.Version)
	}
	return b.String()
}
