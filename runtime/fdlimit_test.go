package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// wasiEAGAIN is wasip1's EAGAIN, what the guest sees for errTooManyFiles.
const wasiEAGAIN = 6

// useFileBudget gives the instances created until the test ends the process budget b (no other
// test runs alongside: this one is not parallel).
func useFileBudget(t *testing.T, b *fileBudget) {
	old := hostFiles.Swap(b)
	t.Cleanup(func() { hostFiles.Store(old) })
}

// TestFileDescriptorCap: a guest that calls path_open on a read-only mount 4,000 times a call
// and never closes (testdata/hostile/files_open.wat) gets maxInstanceFiles descriptors and then
// EAGAIN, and many such instances together get no more than the process's budget. Closing a
// file gives its slot back, closing an instance gives back all it still held, and the host can
// still open files and listen. Without the cap every open succeeded, and a few calls used up
// the process's RLIMIT_NOFILE: the host could then neither accept a connection nor open a file.
func TestFileDescriptorCap(t *testing.T) {
	wasm := readTestFile(t, wasmbuild.WAT(t, "testdata/hostile/files_open.wat"))
	e := imageEngine(t, Config{})
	ctx := context.Background()
	real := hostFiles.Load().limit
	t.Logf("process budget: %d files (soft RLIMIT_NOFILE %d / %d)", real, softNoFile(), hostFilesShare)
	cases := []struct {
		name    string
		modules int
		budget  int64
		want    []int // files each module's instance opens, called in turn
	}{
		{"one instance past its cap", 1, real, []int{maxInstanceFiles}},
		// The budget counts each instance's mount root too (mountFS.OpenFile), which the
		// instance's cap does not: the third gets 100 less the three roots.
		{"instances past the process budget", 3, 2*maxInstanceFiles + 100, []int{maxInstanceFiles, maxInstanceFiles, 97}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			budget := &fileBudget{limit: tc.budget}
			useFileBudget(t, budget)
			vol := t.TempDir()
			if err := os.WriteFile(filepath.Join(vol, "f"), []byte("config"), 0o644); err != nil {
				t.Fatal(err)
			}
			mods := make([]*Module, tc.modules)
			for i := range mods {
				cfg := DefaultModuleConfig(fmt.Sprintf("opener-%d", i))
				cfg.MinInstances, cfg.MaxConcurrency = 1, 1 // every call on the same instance
				cfg.Mounts = []Mount{{HostPath: vol, GuestPath: "/config", ReadOnly: true}}
				m, err := e.Load(ctx, wasm, cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { m.Close(ctx) })
				if err := m.Start(ctx, StartOptions{}); err != nil {
					t.Fatal(err)
				}
				mods[i] = m
			}
			call := func(m *Module, op byte, n uint32) (done, errno int) {
				t.Helper()
				in := binary.LittleEndian.AppendUint32([]byte{op}, n)
				out, err := m.Call(ctx, RoleHandle, in, nil)
				if err != nil || len(out) != 8 {
					t.Fatalf("op %d: %x, %v", op, out, err)
				}
				return int(binary.LittleEndian.Uint32(out)), int(binary.LittleEndian.Uint32(out[4:]))
			}
			// roots is the mount roots the instances hold open (wazero's preopens).
			roots := 0
			wantUsed := func(files int) {
				t.Helper()
				if got := budget.used.Load(); got != int64(files+roots) {
					t.Fatalf("the budget counts %d open files, want %d and %d mount roots", got, files, roots)
				}
			}

			held, total := append([]int(nil), tc.want...), 0
			for i, m := range mods {
				done, errno := call(m, 0, 4000)
				if done != tc.want[i] || errno != wasiEAGAIN {
					t.Fatalf("instance %d opened %d of 4000, then errno %d; want %d, then EAGAIN (%d)", i, done, errno, tc.want[i], wasiEAGAIN)
				}
				total += done
			}
			roots = len(mods)
			wantUsed(total)
			// Another call piles up nothing more.
			if done, errno := call(mods[0], 0, 4000); done != 0 || errno != wasiEAGAIN {
				t.Fatalf("a second call opened %d more (errno %d); want none, EAGAIN", done, errno)
			}
			// Closing gives the slots back: the last instance opens up to its cap, or to what
			// the budget has left.
			if done, errno := call(mods[0], 1, 0); done != held[0] || errno != 0 {
				t.Fatalf("closed %d (errno %d), want %d", done, errno, held[0])
			}
			total -= held[0]
			held[0] = 0
			wantUsed(total)
			last := len(mods) - 1
			more := int(min(int64(maxInstanceFiles-held[last]), budget.limit-int64(total+roots)))
			if done, errno := call(mods[last], 0, 4000); done != more || errno != wasiEAGAIN {
				t.Fatalf("after the close: opened %d, errno %d; want %d, then EAGAIN", done, errno, more)
			}
			total += more
			wantUsed(total)

			// The host still has descriptors of its own.
			f, err := os.CreateTemp(t.TempDir(), "host")
			if err != nil {
				t.Fatalf("the host cannot open a file: %v", err)
			}
			f.Close()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("the host cannot listen: %v", err)
			}
			ln.Close()

			// Closing the instances gives back every file they still held.
			for _, m := range mods {
				m.Close(ctx)
			}
			roots = 0
			deadline := time.Now().Add(10 * time.Second)
			for budget.used.Load() != 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			wantUsed(0)
		})
	}
}

// TestCommandFileCap: a command's two mounts (/in and /out) share one cap of maxInstanceFiles,
// as an instance's mounts do (testdata/hostile/command_files_open.wat keeps every file it
// opens, first in /in, then in /out). Before, each mount of a command had a cap of its own, so
// a command held 256 files per mount.
func TestCommandFileCap(t *testing.T) {
	wasm := readTestFile(t, wasmbuild.WAT(t, "testdata/hostile/command_files_open.wat"))
	e := imageEngine(t, Config{})
	ctx := context.Background()
	cfg := DefaultCommandConfig("opener")
	cfg.WorkDir = t.TempDir()
	c, err := e.LoadCommand(ctx, wasm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(ctx) })
	in := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(in, []byte("input"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = c.RunInputs(ctx, []CommandInput{{Name: "f", Path: in}}, "out", t.TempDir())
	var exit *ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("run: %v, want the command's exit code", err)
	}
	inOpened, outOpened := int(exit.Code/10000), int(exit.Code%10000)
	if inOpened != maxInstanceFiles || outOpened != 0 {
		t.Fatalf("the command opened %d files in /in and %d in /out; want %d in all (%d and 0)", inOpened, outOpened, maxInstanceFiles, maxInstanceFiles)
	}
}
