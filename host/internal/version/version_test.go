package version

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

func TestFromBuild(t *testing.T) {
	deps := []*debug.Module{
		{Path: "github.com/tetratelabs/wazero", Version: "v1.12.0"},
		{Path: "github.com/valyala/fasthttp", Version: "v1.74.0"},
		{Path: "github.com/hashicorp/raft", Version: "v1.8.0", Replace: &debug.Module{Path: "../raft"}},
		{Path: "golang.org/x/sys", Version: "v0.47.0"},
	}
	vcs := func(rev, tm, mod string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: tm}, {Key: "vcs.modified", Value: mod}}
	}
	const rev = "51ac047ea3593f873249ca5a6733debee2d9fc42"
	tests := []struct {
		name                        string
		bi                          *debug.BuildInfo
		ldVersion, ldCommit, ldDate string
		want                        Info
	}{
		{
			name: "no build info",
			want: Info{Version: "devel", Commit: "unknown", GoVersion: runtime.Version()},
		},
		{
			name: "go run: no VCS stamp",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Deps: deps},
			want: Info{Version: "devel", Commit: "unknown", GoVersion: "go1.26.8"},
		},
		{
			name: "go build in a checkout with changes",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261122035703-51ac047ea359+dirty"},
				Deps: deps, Settings: vcs(rev, "2026-11-22T03:57:03Z", "true")},
			want: Info{Version: "v0.0.0-20261122035703-51ac047ea359+dirty", Commit: rev, Date: "2026-11-22T03:57:03Z", Modified: true, GoVersion: "go1.26.8"},
		},
		{
			name:      "release build: ldflags win, no VCS stamp",
			bi:        &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Deps: deps},
			ldVersion: "v0.3.0", ldCommit: rev, ldDate: "2026-11-22T03:57:03Z",
			want: Info{Version: "v0.3.0", Commit: rev, Date: "2026-11-22T03:57:03Z", GoVersion: "go1.26.8"},
		},
		{
			name:      "release build of a dirty tree",
			bi:        &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "2026-11-22T03:57:03Z", "false")},
			ldVersion: "v0.3.1-0.20261122035703-51ac047ea359+dirty", ldCommit: rev,
			want: Info{Version: "v0.3.1-0.20261122035703-51ac047ea359+dirty", Commit: rev, Date: "2026-11-22T03:57:03Z", Modified: true, GoVersion: "go1.26.8"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromBuild(tt.bi, tt.ldVersion, tt.ldCommit, tt.ldDate)
			w := tt.want
			w.Platform, w.StateFormat = runtime.GOOS+"/"+runtime.GOARCH, StateFormat
			if got.Version != w.Version || got.Commit != w.Commit || got.Date != w.Date || got.Modified != w.Modified ||
				got.GoVersion != w.GoVersion || got.Platform != w.Platform || got.StateFormat != w.StateFormat {
				t.Errorf("got  %+v\nwant %+v", got, w)
			}
			if tt.bi == nil || tt.bi.Deps == nil {
				if len(got.Dependencies) != 0 || got.Dependencies == nil {
					t.Errorf("dependencies %#v, want an empty list", got.Dependencies)
				}
				return
			}
			// Deps' order, only the linked ones, replacements named.
			var names []string
			for _, d := range got.Dependencies {
				names = append(names, d.Name+"="+d.Version)
			}
			if g, w := strings.Join(names, " "), "wazero=v1.12.0 raft=(replaced) ../raft fasthttp=v1.74.0"; g != w {
				t.Errorf("dependencies %q, want %q", g, w)
			}
		})
	}
}

// Text and JSON say the same; the real binary's output is checked end to end in
// host/cmd/wasmpod (TestVersion), where the libraries are linked.
func TestTextAndJSON(t *testing.T) {
	info := fromBuild(&debug.BuildInfo{GoVersion: "go1.26.8", Deps: []*debug.Module{{Path: "github.com/tetratelabs/wazero", Version: "v1.12.0"}}},
		"v0.3.0", "51ac047ea3593f873249ca5a6733debee2d9fc42", "2026-11-22T03:57:03Z")
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var back Info
	if err := json.Unmarshal(b, &back); err != nil || back.Text() != info.Text() {
		t.Fatalf("JSON round trip: %v\n%s\n%s", err, back.Text(), info.Text())
	}
	want := "wasmpod v0.3.0\n" +
		"  commit        51ac047ea3593f873249ca5a6733debee2d9fc42\n" +
		"  date          2026-11-22T03:57:03Z\n" +
		"  go            go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH + "\n" +
		"  state format  " + strconv.Itoa(StateFormat) + "\n" +
		"  wazero        v1.12.0\n"
	if got := info.Text(); got != want {
		t.Errorf("text:\n%s\nwant:\n%s", got, want)
	}
	if v := info.Dependency("wazero"); v != "v1.12.0" {
		t.Errorf("Dependency(wazero) = %q", v)
	}
}
