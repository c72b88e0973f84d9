package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

func cmdguest(t testing.TB) []byte { return readFile(t, wasmbuild.GoCommand(t, "testdata/cmdguest")) }

func loadCommand(t testing.TB, e *runtime.Engine, wasm []byte, cfg runtime.CommandConfig) *runtime.Command {
	t.Helper()
	c, err := e.LoadCommand(context.Background(), wasm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestCommandRun(t *testing.T) {
	logs := &logRecorder{}
	e := newEngine(t, runtime.Config{Logs: logs})
	cfg := runtime.DefaultCommandConfig("cmdguest")
	// 5 s (as in TestCommandRunInputs): the Go guest's successful runs must fit in it under
	// -race on a busy 2-core machine; the runaway case still ends well within its 10 s bound.
	cfg.Timeout = 5 * time.Second
	c := loadCommand(t, e, cmdguest(t), cfg)

	cases := []struct {
		name    string
		input   string // base name; selects the guest's behaviour
		content string
		check   func(t *testing.T, res runtime.RunResult, err error, outDir string)
	}{
		{"upper-cases its input", "hello.txt", "hello, wasm\n", func(t *testing.T, res runtime.RunResult, err error, outDir string) {
			if err != nil {
				t.Fatal(err)
			}
			want := filepath.Join(outDir, "hello.txt")
			if len(res.Outputs) != 1 || res.Outputs[0] != want {
				t.Fatalf("outputs %q, want [%q]", res.Outputs, want)
			}
			if got := string(readFile(t, want)); got != "HELLO, WASM\n" {
				t.Fatalf("output %q", got)
			}
			if res.ExitCode != 0 {
				t.Fatalf("exit code %d", res.ExitCode)
			}
			if !logs.find("stdout", "cmdguest: 12 bytes") {
				t.Fatal("stdout line not logged")
			}
		}},
		{"is denied everything but its input", "escape.txt", "x", func(t *testing.T, res runtime.RunResult, err error, outDir string) {
			if err != nil {
				t.Fatal(err)
			}
			report := strings.TrimSpace(string(readFile(t, filepath.Join(outDir, "escape.txt"))))
			t.Logf("escape report:\n%s", report)
			lines := strings.Split(report, "\n")
			if len(lines) < 13 {
				t.Fatalf("short report:\n%s", report)
			}
			for _, l := range lines {
				if !strings.Contains(l, ": denied (") {
					t.Errorf("not denied: %s", l)
				}
			}
		}},
		{"is called as NAME /in/BASE /out/BASE and sees only its input", "list.txt", "abc", func(t *testing.T, res runtime.RunResult, err error, outDir string) {
			if err != nil {
				t.Fatal(err)
			}
			want := "argv: cmdguest /in/list.txt /out/list.txt\n/in/\n/in/list.txt 3\n/out/\n"
			if got := string(readFile(t, filepath.Join(outDir, "list.txt"))); got != want {
				t.Fatalf("listing\n%s\nwant\n%s", got, want)
			}
			if len(res.Outputs) != 1 || res.Outputs[0] != filepath.Join(outDir, "list.txt") {
				t.Fatalf("outputs %q", res.Outputs)
			}
		}},
		{"runaway is cut at its deadline", "loop.txt", "x", func(t *testing.T, res runtime.RunResult, err error, outDir string) {
			if !errors.Is(err, runtime.ErrDeadline) {
				t.Fatalf("err = %v, want ErrDeadline", err)
			}
			if res.Duration > 10*time.Second {
				t.Fatalf("cut only after %s", res.Duration)
			}
			if len(res.Outputs) != 0 {
				t.Fatalf("outputs %q", res.Outputs)
			}
		}},
		{"non-zero exit fails with code and stderr", "exit3.txt", "x", func(t *testing.T, res runtime.RunResult, err error, outDir string) {
			var xe *runtime.ExitError
			if !errors.As(err, &xe) || !errors.Is(err, runtime.ErrGuest) {
				t.Fatalf("err = %v, want *ExitError", err)
			}
			if xe.Code != 3 || res.ExitCode != 3 {
				t.Fatalf("code %d / %d, want 3", xe.Code, res.ExitCode)
			}
			if !strings.Contains(xe.Stderr, "giving up on /in/exit3.txt") || xe.Stderr != res.Stderr {
				t.Fatalf("stderr %q / %q", xe.Stderr, res.Stderr)
			}
			if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
				t.Fatalf("failed run left %d outputs", len(ents))
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inDir := t.TempDir()
			input := filepath.Join(inDir, tc.input)
			if err := os.WriteFile(input, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			// A sibling of the input the guest must not see.
			if err := os.WriteFile(filepath.Join(inDir, "secret"), []byte("secret"), 0o644); err != nil {
				t.Fatal(err)
			}
			outDir := filepath.Join(t.TempDir(), "out")
			res, err := c.Run(context.Background(), input, outDir)
			tc.check(t, res, err, outDir)
			if got := string(readFile(t, input)); got != tc.content {
				t.Fatalf("input changed to %q", got)
			}
		})
	}
}

func TestCommandConcurrentRuns(t *testing.T) {
	e := newEngine(t, runtime.Config{})
	c := loadCommand(t, e, cmdguest(t), runtime.DefaultCommandConfig("cmdguest"))
	dir := t.TempDir()
	var wg sync.WaitGroup
	for k := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := filepath.Join(dir, fmt.Sprintf("in%d.txt", k))
			if err := os.WriteFile(in, []byte(fmt.Sprintf("run %d", k)), 0o644); err != nil {
				t.Error(err)
				return
			}
			res, err := c.Run(context.Background(), in, filepath.Join(dir, "out"))
			if !oneOutput(t, res, err) {
				return
			}
			if b, _ := os.ReadFile(res.Outputs[0]); string(b) != fmt.Sprintf("RUN %d", k) {
				t.Errorf("run %d wrote %q", k, b)
			}
		}()
	}
	wg.Wait()
}

// Concurrent runs get distinct run directories: each sees only its own input, also when the
// command reuses directories; Close leaves WorkDir empty.
func TestCommandConcurrentRunsSeeOnlyTheirOwn(t *testing.T) {
	e := newEngine(t, runtime.Config{})
	cfg := runtime.DefaultCommandConfig("cmdguest")
	cfg.WorkDir = t.TempDir()
	c := loadCommand(t, e, cmdguest(t), cfg)
	src := t.TempDir()
	var wg sync.WaitGroup
	for k := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("k%d/list.txt", k)
			in := filepath.Join(src, fmt.Sprintf("in%d", k))
			if err := os.WriteFile(in, []byte(strings.Repeat("x", k)), 0o644); err != nil {
				t.Error(err)
				return
			}
			want := fmt.Sprintf("argv: cmdguest /in/%[1]s /out/%[1]s\n/in/\n/in/k%[2]d/\n/in/%[1]s %[2]d\n/out/\n/out/k%[2]d/\n", name, k)
			for range 5 {
				out := t.TempDir()
				res, err := c.RunInputs(context.Background(), []runtime.CommandInput{{Name: name, Path: in}}, name, out)
				if !oneOutput(t, res, err) {
					return
				}
				if b, _ := os.ReadFile(res.Outputs[0]); string(b) != want {
					t.Errorf("run %d sees\n%s\nwant\n%s", k, b, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(cfg.WorkDir); err != nil || len(ents) != 0 {
		t.Fatalf("Close left %d entries in WorkDir (%v)", len(ents), err)
	}
}

func TestCommandContext(t *testing.T) {
	e := newEngine(t, runtime.Config{})
	c := loadCommand(t, e, cmdguest(t), runtime.DefaultCommandConfig("cmdguest")) // 1 min timeout
	in := filepath.Join(t.TempDir(), "loop.txt")
	if err := os.WriteFile(in, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := c.Run(ctx, in, t.TempDir()); !errors.Is(err, runtime.ErrDeadline) {
			t.Fatalf("err = %v, want ErrDeadline", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		if _, err := c.Run(ctx, in, t.TempDir()); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("missing input", func(t *testing.T) {
		if _, err := c.Run(context.Background(), filepath.Join(t.TempDir(), "nope"), t.TempDir()); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want ErrNotExist", err)
		}
	})
}

func TestLoadCommandRejects(t *testing.T) {
	e := newEngine(t, runtime.Config{})
	small := runtime.DefaultCommandConfig("small")
	small.MaxMemoryPages = 2
	cases := []struct {
		name string
		wasm func(t testing.TB) []byte
		cfg  runtime.CommandConfig
		want error
		msg  string
	}{
		{"no _start", func(t testing.TB) []byte {
			return readFile(t, wasmbuild.WATString(t, `(module (memory (export "memory") 1) (func (export "_initialize")))`))
		}, runtime.DefaultCommandConfig("reactor"), runtime.ErrInvalidModule, "does not export _start"},
		{"foreign import", func(t testing.TB) []byte {
			return readFile(t, wasmbuild.WATString(t, `(module (import "env" "f" (func)) (memory (export "memory") 1) (func (export "_start")))`))
		}, runtime.DefaultCommandConfig("env"), runtime.ErrInvalidModule, "imports env.f"},
		{"wasmpod import", func(t testing.TB) []byte {
			return readFile(t, wasmbuild.WATString(t, `(module (import "wasmpod" "log" (func (param i32 i32 i32))) (memory (export "memory") 1) (func (export "_start")))`))
		}, runtime.DefaultCommandConfig("plugin"), runtime.ErrInvalidModule, "imports wasmpod.log"},
		{"bad _start", func(t testing.TB) []byte {
			return readFile(t, wasmbuild.WATString(t, `(module (memory (export "memory") 1) (func (export "_start") (param i32)))`))
		}, runtime.DefaultCommandConfig("sig"), runtime.ErrInvalidModule, "want () -> ()"},
		{"over the memory limit", cmdguest, small, runtime.ErrMemoryLimit, "over its limit of 2 pages"},
		{"no name", cmdguest, runtime.CommandConfig{MaxMemoryPages: 1, Timeout: time.Second}, runtime.ErrInvalidModule, "name is required"},
		{"checksum", cmdguest, func() runtime.CommandConfig {
			c := runtime.DefaultCommandConfig("sum")
			c.SHA256 = strings.Repeat("0", 64)
			return c
		}(), runtime.ErrChecksum, "expected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.LoadCommand(context.Background(), tc.wasm(t), tc.cfg)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestCommandLoopInWAT(t *testing.T) {
	// A command with no WASI at all that spins: only the instrumentation can cut it.
	e := newEngine(t, runtime.Config{})
	cfg := runtime.DefaultCommandConfig("spin")
	cfg.Timeout = 100 * time.Millisecond
	c := loadCommand(t, e, readFile(t, wasmbuild.WATString(t, `(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))`)), cfg)
	in := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(in, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(context.Background(), in, t.TempDir()); !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("err = %v, want ErrDeadline", err)
	}
}

// runInputsResult is what a TestCommandRunInputs case checks.
type runInputsResult struct {
	res      runtime.RunResult
	err      error
	outDir   string
	hostDirs []string // the host directory of each input, which also holds a file "secret"
}

func TestCommandRunInputs(t *testing.T) {
	logs := &logRecorder{}
	e := newEngine(t, runtime.Config{Logs: logs})
	cfg := runtime.DefaultCommandConfig("cmdguest")
	cfg.Timeout = 5 * time.Second
	cfg.WorkDir = t.TempDir()
	c := loadCommand(t, e, cmdguest(t), cfg)

	// content is what an input holds unless a case says otherwise.
	content := func(name string) string { return "content of " + name + "\n" }
	ok := func(t *testing.T, r runInputsResult) {
		t.Helper()
		if r.err != nil {
			t.Fatalf("err = %v (stderr %q)", r.err, r.res.Stderr)
		}
		if r.res.ExitCode != 0 {
			t.Fatalf("exit code %d", r.res.ExitCode)
		}
	}
	outputs := func(t *testing.T, r runInputsResult, want ...string) {
		t.Helper()
		for i, w := range want {
			want[i] = filepath.Join(r.outDir, filepath.FromSlash(w))
		}
		if !slices.Equal(r.res.Outputs, want) {
			t.Fatalf("outputs\n%q\nwant\n%q", r.res.Outputs, want)
		}
	}
	output := func(t *testing.T, r runInputsResult, name string) string {
		t.Helper()
		return string(readFile(t, filepath.Join(r.outDir, filepath.FromSlash(name))))
	}

	cases := []struct {
		name   string
		inputs []string // input names; each input is a file in its own host directory
		first  func(hostDirs []string) string
		output string // output name; its base selects the guest's behaviour
		check  func(t *testing.T, r runInputsResult)
	}{
		{
			name:   "nested inputs are visible and argv lists them in order",
			inputs: []string{"bash/changelog.gz", "coreutils/sub/changelog.gz", "top.txt"},
			output: "merged/list.txt",
			check: func(t *testing.T, r runInputsResult) {
				ok(t, r)
				outputs(t, r, "merged/list.txt")
				want := strings.Join([]string{
					"argv: cmdguest /in/bash/changelog.gz /in/coreutils/sub/changelog.gz /in/top.txt /out/merged/list.txt",
					"/in/",
					"/in/bash/",
					fmt.Sprintf("/in/bash/changelog.gz %d", len(content("bash/changelog.gz"))),
					"/in/coreutils/",
					"/in/coreutils/sub/",
					fmt.Sprintf("/in/coreutils/sub/changelog.gz %d", len(content("coreutils/sub/changelog.gz"))),
					fmt.Sprintf("/in/top.txt %d", len(content("top.txt"))),
					"/out/",
					"/out/merged/",
				}, "\n") + "\n"
				if got := output(t, r, "merged/list.txt"); got != want {
					t.Fatalf("listing\n%s\nwant\n%s", got, want)
				}
			},
		},
		{
			name:   "a merge reads every input in argv order",
			inputs: []string{"z/last-name", "a/first-name", "m"},
			output: "cat.txt",
			check: func(t *testing.T, r runInputsResult) {
				ok(t, r)
				outputs(t, r, "cat.txt")
				want := content("z/last-name") + content("a/first-name") + content("m")
				if got := output(t, r, "cat.txt"); got != want {
					t.Fatalf("merged %q, want %q", got, want)
				}
			},
		},
		{
			name:   "inputs are read-only and nothing outside /in is readable",
			inputs: []string{"probe/list", "bash/deep/changelog.gz", "top"},
			first: func(dirs []string) string {
				return strings.Join([]string{
					"/etc/passwd",
					"/etc/hostname",
					"/in/../x",
					"/in/../secret",
					"/in/probe/../../secret",
					"/in/secret",
					"/in/bash/secret",
					"../secret",
					// The host directories of the inputs, by their absolute host paths.
					filepath.Join(dirs[0], "secret"),
					filepath.Join(dirs[1], "secret"),
					filepath.Join(dirs[1], "input"),
					filepath.Join(dirs[2], "input"),
					"/in" + filepath.Join(dirs[1], "secret"),
					// Raw WASI opens on the /in preopen, past its root.
					"raw:..",
					"raw:../x",
					"raw:../secret",
					"raw:probe/../../secret",
					"raw:bash/deep/../../../secret",
					"raw:../in/top",
					"raw:../out",
					"raw:../../etc/passwd",
					"raw:" + strings.Repeat("../", 16) + strings.TrimPrefix(filepath.Join(dirs[1], "secret"), "/"),
					"raw:/etc/passwd",
					"raw:" + filepath.Join(dirs[2], "input"),
				}, "\n")
			},
			output: "probe.txt",
			check: func(t *testing.T, r runInputsResult) {
				ok(t, r)
				outputs(t, r, "probe.txt") // nothing stolen into /out
				report := strings.TrimSpace(output(t, r, "probe.txt"))
				t.Logf("probe report:\n%s", report)
				lines := strings.Split(report, "\n")
				// 12 changes per input, 1 more per nested one, 24 reads.
				if want := 3*12 + 2 + 24; len(lines) != want {
					t.Fatalf("%d report lines, want %d:\n%s", len(lines), want, report)
				}
				for _, l := range lines {
					if !strings.Contains(l, ": denied (") {
						t.Errorf("not denied: %s", l)
					}
				}
			},
		},
		{
			name:   "output in a nested directory is moved with its relative path",
			inputs: []string{"pkgs/a/b.txt"},
			output: "deep/er/upper.gz",
			check: func(t *testing.T, r runInputsResult) {
				ok(t, r)
				outputs(t, r, "deep/er/upper.gz")
				if got, want := output(t, r, "deep/er/upper.gz"), strings.ToUpper(content("pkgs/a/b.txt")); got != want {
					t.Fatalf("output %q, want %q", got, want)
				}
				if !logs.find("stdout", fmt.Sprintf("cmdguest: %d bytes", len(content("pkgs/a/b.txt")))) {
					t.Fatal("stdout line not logged")
				}
			},
		},
		{
			name:   "outputs in directories the guest made keep their paths, in lexical order",
			inputs: []string{"a/b.txt", "c/d/e.txt", "a.txt"},
			output: "split.txt",
			check: func(t *testing.T, r runInputsResult) {
				ok(t, r)
				// Lexical order: "a.txt" < "a/b.txt" ('.' < '/'), whatever order the walk has.
				outputs(t, r, "a.txt", "a/b.txt", "c/d/e.txt", "split.txt")
				for _, n := range []string{"a/b.txt", "c/d/e.txt", "a.txt"} {
					if got, want := output(t, r, n), strings.ToUpper(content(n)); got != want {
						t.Errorf("%s: %q, want %q", n, got, want)
					}
				}
				if got := output(t, r, "split.txt"); got != "done" {
					t.Errorf("split.txt: %q", got)
				}
			},
		},
		{
			name:   "a failed run moves nothing",
			inputs: []string{"x/first", "second"},
			output: "dir/exit3.txt",
			check: func(t *testing.T, r runInputsResult) {
				var xe *runtime.ExitError
				if !errors.As(r.err, &xe) || xe.Code != 3 {
					t.Fatalf("err = %v, want *ExitError with code 3", r.err)
				}
				if !strings.Contains(r.res.Stderr, "giving up on /in/x/first") {
					t.Fatalf("stderr %q", r.res.Stderr)
				}
				if _, err := os.Stat(r.outDir); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("output directory made: %v", err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var (
				inputs   []runtime.CommandInput
				hostDirs []string
				contents []string
			)
			for _, n := range tc.inputs {
				dir := t.TempDir()
				hostDirs = append(hostDirs, dir)
				inputs = append(inputs, runtime.CommandInput{Name: n, Path: filepath.Join(dir, "input")})
				contents = append(contents, content(n))
				// A sibling of the input the guest must not see.
				if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.first != nil {
				contents[0] = tc.first(hostDirs)
			}
			for i, in := range inputs {
				if err := os.WriteFile(in.Path, []byte(contents[i]), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			outDir := filepath.Join(t.TempDir(), "out")
			res, err := c.RunInputs(context.Background(), inputs, tc.output, outDir)
			tc.check(t, runInputsResult{res: res, err: err, outDir: outDir, hostDirs: hostDirs})
			for i, in := range inputs {
				if got := string(readFile(t, in.Path)); got != contents[i] {
					t.Errorf("input %s changed to %q", in.Name, got)
				}
				if ents, _ := os.ReadDir(hostDirs[i]); len(ents) != 2 {
					t.Errorf("host directory of input %s holds %d files, want 2", in.Name, len(ents))
				}
			}
			// Run directories are kept for reuse (a few, emptied) until Close.
			ents, _ := os.ReadDir(cfg.WorkDir)
			for _, e := range ents {
				if !e.IsDir() || !strings.HasPrefix(e.Name(), "wasmpod-run-") {
					t.Errorf("work directory holds %s", e.Name())
				}
			}
			if len(ents) > 9 {
				t.Errorf("work directory holds %d run directories", len(ents))
			}
		})
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(cfg.WorkDir); len(ents) != 0 {
		t.Errorf("work directory left behind: %d entries", len(ents))
	}
}

func TestCommandRunInputsRejectsNames(t *testing.T) {
	e := newEngine(t, runtime.Config{})
	cfg := runtime.DefaultCommandConfig("cmdguest")
	cfg.WorkDir = t.TempDir()
	c := loadCommand(t, e, cmdguest(t), cfg)
	cases := []struct {
		name   string
		inputs []string
		output string
		bad    string // the name the error must quote; "" for none
		msg    string
	}{
		{"no inputs", nil, "out", "", "no inputs"},
		{"empty", []string{"a", ""}, "out", "", `input 1 name ""`},
		{"absolute", []string{"/etc/passwd"}, "out", "/etc/passwd", "absolute"},
		{"parent", []string{"../x"}, "out", "../x", `".."`},
		{"inner parent", []string{"a/../../x"}, "out", "a/../../x", `".."`},
		{"parent that stays inside", []string{"a/../b"}, "out", "a/../b", `".."`},
		{"dot", []string{"."}, "out", ".", `"."`},
		{"leading dot", []string{"./a"}, "out", "./a", `"."`},
		{"inner dot", []string{"a/./b"}, "out", "a/./b", `"."`},
		{"trailing slash", []string{"a/"}, "out", "a/", "empty component"},
		{"double slash", []string{"a//b"}, "out", "a//b", "empty component"},
		{"backslash", []string{`a\b`}, "out", `a\b`, "backslash"},
		{"NUL", []string{"a\x00b"}, "out", "a\x00b", "NUL"},
		{"duplicate", []string{"a/b", "c", "a/b"}, "out", "a/b", "also the name of input 0"},
		{"file and directory", []string{"a", "a/b"}, "out", "a", `a directory of input name "a/b"`},
		{"directory and file", []string{"x/y/z", "x/y"}, "out", "x/y", `a directory of input name "x/y/z"`},
		{"empty output", []string{"a"}, "", "", `output name ""`},
		{"absolute output", []string{"a"}, "/out/x", "/out/x", "absolute"},
		{"escaping output", []string{"a"}, "d/../../x", "d/../../x", `".."`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var inputs []runtime.CommandInput
			for _, n := range tc.inputs {
				// No such file: the names must be refused before any file is looked at.
				inputs = append(inputs, runtime.CommandInput{Name: n, Path: filepath.Join(t.TempDir(), "missing")})
			}
			outDir := filepath.Join(t.TempDir(), "out")
			res, err := c.RunInputs(context.Background(), inputs, tc.output, outDir)
			if !errors.Is(err, runtime.ErrInput) || errors.Is(err, os.ErrNotExist) {
				t.Fatalf("err = %v, want ErrInput", err)
			}
			if !strings.Contains(err.Error(), tc.msg) || (tc.bad != "" && !strings.Contains(err.Error(), strconv.Quote(tc.bad))) {
				t.Fatalf("err = %v, want it to contain %s and %q", err, strconv.Quote(tc.bad), tc.msg)
			}
			t.Log(err)
			if len(res.Outputs) != 0 || res.Duration != 0 {
				t.Fatalf("result %+v", res)
			}
			if _, err := os.Stat(outDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("output directory made: %v", err)
			}
			if ents, _ := os.ReadDir(cfg.WorkDir); len(ents) != 0 {
				t.Fatalf("work directory used: %d entries", len(ents))
			}
		})
	}
}

// oneOutput reports whether a run (its result and error) succeeded with exactly one output,
// and marks t failed (from any goroutine) if not.
func oneOutput(t *testing.T, res runtime.RunResult, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	if len(res.Outputs) != 1 {
		t.Errorf("outputs %q", res.Outputs)
		return false
	}
	return true
}
