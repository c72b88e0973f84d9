package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// sdkLang is one guest SDK and its example plugins, as the runtime runs them.
type sdkLang struct {
	name                   string
	build                  func(testing.TB, string) string
	leaf, merge, lifecycle string // plugin directories, relative to runtime/
	// starts is the handler command that returns how many times start ran; the kit's differs.
	starts string
	// stopLog is the prefix of the line the stop export logs.
	stopLog string
	// state encodes the counter as the plugin's snapshot does.
	state func(n uint64) []byte
}

func decimalState(n uint64) []byte { return strconv.AppendUint(nil, n, 10) }
func leState(n uint64) []byte      { return binary.LittleEndian.AppendUint64(nil, n) }

var sdkLangs = []sdkLang{
	{name: "go", build: wasmbuild.Go, leaf: "testdata/kit", merge: "../plugins/echo", lifecycle: "testdata/kit",
		starts: "started", stopLog: "stopping grace=", state: decimalState},
	{name: "c", build: wasmbuild.C, leaf: "../plugins/c-leaf", merge: "../plugins/c-merge", lifecycle: "../plugins/c-lifecycle",
		starts: "starts", stopLog: "stop: counter=2 grace_ms=", state: leState},
	{name: "rust", build: wasmbuild.Rust, leaf: "../plugins/rust-leaf", merge: "../plugins/rust-merge", lifecycle: "../plugins/rust-lifecycle",
		starts: "starts", stopLog: "stop: counter=2 grace_ms=", state: leState},
	{name: "assemblyscript", build: wasmbuild.AssemblyScript, leaf: "../plugins/as-leaf", merge: "../plugins/as-merge", lifecycle: "../plugins/as-lifecycle",
		starts: "starts", stopLog: "stop: counter=2 grace_ms=", state: leState},
}

func sdkConfig(name string) runtime.ModuleConfig {
	cfg := runtime.DefaultModuleConfig(name)
	cfg.MaxMemoryPages = 1024 // Go guests need a few MiB of heap
	return cfg
}

// TestSDKPlugins runs every SDK's leaf, merge and lifecycle example through the runtime and
// checks that all languages give the same answers.
func TestSDKPlugins(t *testing.T) {
	if testing.Short() {
		t.Skip("builds guests in four languages")
	}
	ctx := context.Background()
	big := make([]byte, 300<<10) // larger than the initial 64 KiB buffer
	for i := range big {
		big[i] = byte(i)
	}
	for _, lang := range sdkLangs {
		t.Run(lang.name, func(t *testing.T) {
			logs := &logRecorder{}
			ecfg := runtime.DefaultConfig()
			ecfg.Logs = logs
			e := newEngine(t, ecfg)

			t.Run("leaf", func(t *testing.T) {
				m := started(t, e, readFile(t, lang.build(t, lang.leaf)), sdkConfig(lang.name+"-leaf"))
				if m.Stats().FromImage == 0 {
					t.Fatalf("the leaf runs on an instance initialised by itself: %s", m.Info().Image)
				}
				for _, in := range [][]byte{nil, input256(), big} {
					out, err := m.Call(ctx, runtime.RoleLeaf, in, nil)
					if err != nil || string(out) != string(sumLE(in)) {
						t.Fatalf("leaf of %d bytes: %x %v, want %x", len(in), out, err, sumLE(in))
					}
				}
			})

			t.Run("merge", func(t *testing.T) {
				m := started(t, e, readFile(t, lang.build(t, lang.merge)), sdkConfig(lang.name+"-merge"))
				if m.Stats().FromImage == 0 {
					t.Fatalf("the merge runs on an instance initialised by itself: %s", m.Info().Image)
				}
				for _, tc := range []struct {
					parts []runtime.Part
					want  string
				}{
					{[]runtime.Part{{Data: []byte("a")}, {Missing: true}, {Data: []byte("c")}}, "missing=1\na\nc"},
					{[]runtime.Part{{Data: []byte("x")}, {Data: []byte{}}}, "x\n"},
					{[]runtime.Part{{Missing: true}, {Missing: true}}, "missing=2\n"},
					{nil, ""},
					{[]runtime.Part{{Data: big}}, string(big)},
				} {
					out, err := m.Merge(ctx, tc.parts, nil)
					if err != nil || string(out) != tc.want {
						t.Fatalf("merge %d parts: %.40q %v, want %.40q", len(tc.parts), out, err, tc.want)
					}
				}
				// Malformed framing (a part longer than the input) is the guest's to refuse.
				_, err := m.Call(ctx, runtime.RoleMerge, []byte{1, 0, 0, 0, 9, 0, 0, 0}, nil)
				if !errors.Is(err, runtime.ErrGuest) {
					t.Fatalf("malformed merge input: %v, want a guest error", err)
				}
				if m.Stats().Discards != 0 {
					t.Fatal("malformed input cost an instance")
				}
				if out, err := m.Call(ctx, runtime.RoleHandle, []byte("echo me"), nil); err != nil || !strings.HasSuffix(string(out), "echo me") {
					t.Fatalf("handle: %q %v", out, err)
				}
			})

			t.Run("lifecycle", func(t *testing.T) {
				wasm := readFile(t, lang.build(t, lang.lifecycle))
				for _, tc := range []struct {
					config string
					want   runtime.Health
				}{{"", runtime.Ready}, {"ready", runtime.Ready}, {"notready", runtime.NotReady}, {"unhealthy", runtime.Unhealthy}} {
					mc := sdkConfig(lang.name + "-health-" + tc.config)
					if tc.config != "" {
						mc.Config = map[string]string{"health": tc.config}
					}
					m := started(t, e, wasm, mc)
					if h, err := m.Health(ctx); err != nil || h != tc.want {
						t.Fatalf("health with %q: %s %v, want %s", tc.config, h, err, tc.want)
					}
				}

				mc := sdkConfig(lang.name + "-lifecycle")
				mc.MaxConcurrency = 1
				m, err := e.Load(ctx, wasm, mc)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close(ctx)
				imaged(t, m) // start, stop and snapshot run on an instance made from the image
				if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
					t.Fatal(err)
				}
				if got := cmd(t, m, lang.starts); got != "1" {
					t.Fatalf("start ran %s times", got)
				}
				cmd(t, m, "inc")
				cmd(t, m, "inc")
				var saved []byte
				err = m.Stop(ctx, runtime.StopOptions{Grace: time.Second, Snapshot: func(b []byte) error { saved = b; return nil }})
				if err != nil {
					t.Fatal(err)
				}
				if string(saved) != string(lang.state(2)) {
					t.Fatalf("snapshot %x, want %x", saved, lang.state(2))
				}
				if !logs.hasPrefix(mc.Name, lang.stopLog) {
					t.Fatalf("no stop log line %q", lang.stopLog)
				}

				m2, err := e.Load(ctx, wasm, mc)
				if err != nil {
					t.Fatal(err)
				}
				defer m2.Close(ctx)
				imaged(t, m2) // and so does the restore
				if err := m2.Start(ctx, runtime.StartOptions{State: saved}); err != nil {
					t.Fatal(err)
				}
				if got := cmd(t, m2, "state"); got != "2" {
					t.Fatalf("restored state %s", got)
				}
				if got := cmd(t, m2, lang.starts); got != "1" {
					t.Fatalf("start ran %s times on the restored module", got)
				}

				m3, err := e.Load(ctx, wasm, sdkConfig(lang.name+"-badstate"))
				if err != nil {
					t.Fatal(err)
				}
				defer m3.Close(ctx)
				if err := m3.Start(ctx, runtime.StartOptions{State: []byte("bad")}); err == nil || m3.State() != runtime.StateFailed {
					t.Fatalf("restore of a bad state: %v (%s)", err, m3.State())
				}
			})
		})
	}
}

// imaged replaces the module's first instance, whose own initialisation made the image, with
// one made from the image (issue 17: every SDK's leaf, merge and lifecycle run on image-made
// instances), and fails if the module has no image.
func imaged(t *testing.T, m *runtime.Module) {
	t.Helper()
	ok, err := runtime.UseImageInstance(m)
	if err != nil || !ok {
		t.Fatalf("no instance from the image (%v): %s", err, m.Info().Image)
	}
}
