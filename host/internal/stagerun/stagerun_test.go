package stagerun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/host/internal/supervisor/suptest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// stateDir is shared by the tests, so each guest compiles once per test binary.
var stateDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "stagerun-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stateDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// startPod runs a pod of real stage guests through a real supervisor: "up" and "join" are the
// native stage guest (per file and merge), "cmd" the WASI command guest, "web" a main module.
// The pod is named after the test.
func startPod(t *testing.T) *supervisor.Supervisor {
	t.Helper()
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	native := wasmbuild.Go(t, filepath.Join(root, "host/testdata/stageguest"))
	command := wasmbuild.GoCommand(t, filepath.Join(root, "host/testdata/stagecmd"))
	kit := wasmbuild.Go(t, filepath.Join(root, "host/testdata/podkit"))
	y := fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: %[4]s}
spec:
  modules:
    - {name: up, role: stage, wasm: %[1]s, resources: {timeout: 5s, concurrency: 2}}
    - {name: join, role: stage, wasm: %[1]s, config: {mode: merge}}
    - {name: cmd, role: stage, wasm: %[2]s, resources: {timeout: 5s}}
    - {name: web, wasm: %[3]s}
  pipelines:
    - name: p
      stages: [{module: up}, {module: cmd}, {module: join, merge: true}]
`, native, command, kit, strings.ToLower(t.Name()))
	return suptest.Start(t, y, stateDir)
}

// file is an input: its job-relative name and content; sparse, when set, makes it a sparse file
// of that many bytes instead (to test limits without writing them).
type file struct {
	name    string
	content string
	sparse  int64
}

func TestRunStage(t *testing.T) {
	s := startPod(t)
	tests := []struct {
		name       string
		module     string
		merge      bool
		inputs     []file
		outputName string
		timeout    time.Duration // 0: no deadline on the caller's context

		wantOutput  string // the returned relative path
		wantContent string
		wantErr     []string // fragments of the error
		wantIs      error
	}{
		// Native stage module (wasmpod_stage).
		{name: "native per file", module: "up", inputs: []file{{name: "logs/a.txt", content: "hello"}}, outputName: "logs/a.txt",
			wantOutput: "logs/a.txt", wantContent: "HELLO"},
		{name: "native empty input", module: "up", inputs: []file{{name: "e", content: ""}}, outputName: "e",
			wantOutput: "e", wantContent: ""},
		{name: "native guest error", module: "up", inputs: []file{{name: "f", content: "fail please"}}, outputName: "f",
			wantErr: []string{`stage "up"`, "asked to fail"}, wantIs: runtime.ErrGuest},
		{name: "native past its deadline", module: "up", inputs: []file{{name: "s", content: "spin"}}, outputName: "s", timeout: 300 * time.Millisecond,
			wantErr: []string{`stage "up"`}, wantIs: runtime.ErrDeadline},
		{name: "native input over the call limit", module: "up", inputs: []file{{name: "big", sparse: 64<<20 + 1}}, outputName: "big",
			wantErr: []string{`stage "up"`, `input "big" is 67108865 bytes, over the limit of 67108864 bytes of a wasmpod_stage call`}, wantIs: runtime.ErrInput},
		{name: "native merge frames its inputs", module: "join", merge: true,
			inputs: []file{{name: "x/1", content: "one"}, {name: "x/2", content: ""}, {name: "x/3", content: "three"}}, outputName: "join",
			wantOutput: "join", wantContent: "3 parts: one||three"},
		{name: "native merge of one", module: "join", merge: true, inputs: []file{{name: "only", content: "o"}}, outputName: "join",
			wantOutput: "join", wantContent: "1 parts: o"},
		{name: "native merge over the call limit", module: "join", merge: true,
			inputs: []file{{name: "a", sparse: 40 << 20}, {name: "b", sparse: 40 << 20}}, outputName: "join",
			wantErr: []string{`stage "join"`, `the 2 inputs framed for the merge come to 83886092 bytes by input 1 ("b") already`}, wantIs: runtime.ErrInput},
		{name: "per-file stage given two inputs", module: "up", inputs: []file{{name: "a", content: "a"}, {name: "b", content: "b"}}, outputName: "a",
			wantErr: []string{`stage "up" runs once per input file, but got 2 inputs`}},

		// WASI command stage.
		{name: "command per file", module: "cmd", inputs: []file{{name: "deb/changelog", content: "abc"}}, outputName: "deb/changelog",
			wantOutput: "deb/changelog", wantContent: "deb/changelog: ABC"},
		{name: "command cannot read outside its input", module: "cmd", inputs: []file{{name: "escape.txt", content: "x"}}, outputName: "escape.txt",
			wantOutput: "escape.txt", wantContent: "/etc/passwd: denied\n/in/../etc/passwd: denied\n/in/../../etc/hostname: denied\n/out/../etc/passwd: denied\n/proc/self/environ: denied\n/..: denied\n/: denied\n"},
		{name: "command merge gets every input in order", module: "cmd", merge: true,
			inputs: []file{{name: "b/2", content: "two"}, {name: "a/1", content: "one"}}, outputName: "cmd",
			wantOutput: "cmd", wantContent: "b/2: TWOa/1: ONE"},
		{name: "command output elsewhere", module: "cmd", inputs: []file{{name: "moved.txt", content: "m"}}, outputName: "moved.txt",
			wantOutput: "moved/moved.txt.out", wantContent: "M"},
		{name: "command writes nothing", module: "cmd", inputs: []file{{name: "none.txt", content: "n"}}, outputName: "none.txt",
			wantErr: []string{`stage "cmd": stage output: the command exited successfully but wrote no file below /out (it must write exactly one, e.g. /out/none.txt)`}, wantIs: ErrOutput},
		{name: "command writes two files", module: "cmd", inputs: []file{{name: "two.txt", content: "t"}}, outputName: "two.txt",
			wantErr: []string{`stage "cmd": stage output: the command wrote 2 files below /out (a.txt, sub/b.txt); it must write exactly one`}, wantIs: ErrOutput},
		{name: "command exits non-zero", module: "cmd", inputs: []file{{name: "fail.txt", content: "f"}}, outputName: "fail.txt",
			wantErr: []string{`stage "cmd"`, "exited with code 3", "failing on purpose"}, wantIs: runtime.ErrGuest},
		{name: "command past its deadline", module: "cmd", inputs: []file{{name: "loop.txt", content: "l"}}, outputName: "loop.txt", timeout: 300 * time.Millisecond,
			wantErr: []string{`stage "cmd"`}, wantIs: runtime.ErrDeadline},
		{name: "command with a bad input name", module: "cmd", inputs: []file{{name: "../x", content: "x"}}, outputName: "x",
			wantErr: []string{`stage "cmd"`, `"../x"`}, wantIs: runtime.ErrInput},

		// Either kind.
		{name: "no inputs", module: "cmd", merge: true, outputName: "x", wantErr: []string{`stage "cmd": no input files`}},
		{name: "bad output name", module: "up", inputs: []file{{name: "a", content: "a"}}, outputName: "../a", wantErr: []string{`stage "up": output name:`, "not a clean relative path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(s, tt.module, tt.merge)
			if err != nil {
				t.Fatal(err)
			}
			inDir, outDir := t.TempDir(), t.TempDir()
			var inputs []cluster.StageInput
			for i, f := range tt.inputs {
				p := filepath.Join(inDir, fmt.Sprint(i))
				if err := os.WriteFile(p, []byte(f.content), 0o444); err != nil {
					t.Fatal(err)
				}
				if f.sparse > 0 {
					if err := os.Truncate(p, f.sparse); err != nil {
						t.Fatal(err)
					}
				}
				inputs = append(inputs, cluster.StageInput{Name: f.name, Path: p})
			}
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			out, err := r.RunStage(ctx, inputs, tt.outputName, outDir)
			if tt.wantErr != nil || tt.wantIs != nil {
				if err == nil {
					t.Fatalf("RunStage = %q, want an error", out)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("error %q is not %v", err, tt.wantIs)
				}
				if left := listFiles(t, outDir); len(left) > 0 {
					t.Errorf("a failed run left %v in the output directory", left)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out != tt.wantOutput {
				t.Errorf("output %q, want %q", out, tt.wantOutput)
			}
			b, err := os.ReadFile(filepath.Join(outDir, filepath.FromSlash(out)))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.wantContent {
				t.Errorf("content %q, want %q", b, tt.wantContent)
			}
			if files := listFiles(t, outDir); len(files) != 1 {
				t.Errorf("output directory holds %v, want exactly the output", files)
			}
		})
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestNew(t *testing.T) {
	s := startPod(t)
	tests := []struct {
		module string
		want   error
	}{
		{"up", nil},
		{"cmd", nil},
		{"nope", supervisor.ErrNotFound},
		{"web", supervisor.ErrInvalid},
	}
	for _, tt := range tests {
		r, err := New(s, tt.module, false)
		if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
			t.Errorf("New(%s) = %v, want %v", tt.module, err, tt.want)
		}
		if err == nil && r.Module() != tt.module {
			t.Errorf("Module() = %q", r.Module())
		}
	}
}

// TestRunStageConcurrent runs many tasks of both kinds at once, as a worker pool does.
func TestRunStageConcurrent(t *testing.T) {
	s := startPod(t)
	up, _ := New(s, "up", false)
	cmd, _ := New(s, "cmd", false)
	const n = 16
	errs := make(chan error, 2*n)
	for i := range n {
		for _, r := range []*Runner{up, cmd} {
			go func() {
				in := filepath.Join(t.TempDir(), "in")
				if err := os.WriteFile(in, []byte(fmt.Sprint("task ", i)), 0o644); err != nil {
					errs <- err
					return
				}
				out, err := r.RunStage(context.Background(), []cluster.StageInput{{Name: "t.txt", Path: in}}, "t.txt", t.TempDir())
				if err == nil && out != "t.txt" {
					err = fmt.Errorf("%s: output %q", r.Module(), out)
				}
				errs <- err
			}()
		}
	}
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, m := range s.Metrics() {
		if (m.Name == "up" || m.Name == "cmd") && m.Stats.Calls != n {
			t.Errorf("%s: %d calls, want %d", m.Name, m.Stats.Calls, n)
		}
	}
}
