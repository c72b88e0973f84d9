package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/hugefile"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// TestCallCLI: `wasmpod call` on plugins of both ABIs, built from source.
func TestCallCLI(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		exit   int
		stdout string
		stderr string
	}{
		{"count_vowels like Extism's example", []string{guests["vowels"], "count_vowels", "--input", "Hello, World!"}, "", 0, `{"count":3,"total":3,"vowels":"aeiouAEIOU"}`, ""},
		{"vars persist across --loop", []string{guests["vowels"], "count_vowels", "--input", "aaa", "--loop", "2"}, "", 0,
			`{"count":3,"total":3,"vowels":"aeiouAEIOU"}` + "\n" + `{"count":3,"total":6,"vowels":"aeiouAEIOU"}` + "\n", ""},
		{"config", []string{guests["vowels"], "count_vowels", "--input", "xyz", "--config", "vowels=xyz"}, "", 0, `{"count":3,"total":3,"vowels":"xyz"}`, ""},
		{"vars off", []string{guests["vowels"], "count_vowels", "--vars", "0"}, "", 1, "", "disabled"},
		{"input from stdin", []string{guests["extism-go"], "count_vowels", "--input-file", "-"}, "aeiou", 0, "5", ""},
		{"odd name", []string{guests["extism-go"], "run_test"}, "", 0, "passed", ""},
		{"guest error", []string{guests["extism-go"], "handle", "--input", "fail:no good"}, "", 1, "", "no good"},
		{"guest logs on stderr", []string{guests["extism-go"], "handle", "--input", "logall:x", "--log-level", "warn"}, "", 0, "", "warn guest: warn x"},
		{"http refused by default", []string{guests["extism-go"], "handle", "--input", "fetch:http://127.0.0.1:1/"}, "", 1, "", "not allowed"},
		{"missing function", []string{guests["extism-go"], "count_consonants"}, "", 2, "", `no function "count_consonants" (Extism functions: leaf, merge, handle, noop, count_vowels, run_test)`},
		{"native handle", []string{guests["echo"], "handle", "--input", "ping"}, "", 0, "ping", ""},
		{"native export name", []string{guests["echo"], "wasmpod_handle", "--input", "ping"}, "", 0, "ping", ""},
		{"native merge parts", []string{guests["echo"], "merge", "--part", "a", "--part", "b"}, "", 0, "a\nb", ""},
		{"native merge with a missing part", []string{guests["echo"], "merge", "--part", "a", "--part", "c", "--missing", "1"}, "", 0, "missing=1\na\nc", ""},
		{"native merge of missing parts only", []string{guests["echo"], "merge", "--missing", "0", "--missing", "1"}, "", 0, "missing=2\n", ""},
		{"missing part out of range", []string{guests["echo"], "merge", "--part", "a", "--missing", "2"}, "", 2, "", "--missing 2: out of range: 2 parts"},
		{"missing part twice", []string{guests["echo"], "merge", "--part", "a", "--missing", "0", "--missing", "0"}, "", 2, "", "--missing 0: given twice"},
		{"http flag on a merge", []string{guests["echo"], "merge", "--part", "a", "--method", "POST"}, "", 2, "", "--method is for a native http call, not merge"},
		{"merge flag on a handler", []string{guests["echo"], "handle", "--missing", "0"}, "", 2, "", "--missing is for a native merge call, not handle"},
		{"merge flag on an Extism plugin", []string{guests["vowels"], "count_vowels", "--part", "a"}, "", 2, "", "--part is for a native merge call"},
		{"native role it lacks", []string{guests["echo"], "leaf"}, "", 2, "", "does not export leaf"},
		{"native unknown role", []string{guests["echo"], "count_vowels"}, "", 2, "", "unknown role"},
		{"stated ABI that does not fit", []string{guests["echo"], "handle", "--abi", "extism"}, "", 2, "", "Extism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, append([]string{"call"}, tc.args...)...)
			cmd.Stdin = strings.NewReader(tc.stdin)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.exit || (tc.stdout != "" || tc.exit == 0) && stdout.String() != tc.stdout || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want it to contain %q)", code, tc.exit, stdout.String(), tc.stdout, stderr.String(), tc.stderr)
			}
		})
	}
}

// TestCallPodPlumbing: `wasmpod call` loads a native module that imports the pod plumbing (as
// a helper's main does: wasmpod init's sidecar, ambassador and adapter) and runs it alone: a
// pod-local call finds no module, and no address may be dialled.
func TestCallPodPlumbing(t *testing.T) {
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	guest := wasmbuild.Go(t, filepath.Join(root, "host/internal/capability/testdata/capguest"))
	for _, tc := range []struct{ input, want string }{
		{"echo hi", "hi"},
		{"call other x", "ERR nomodule: "},
		{"fetch 127.0.0.1:9 hi", "ERR notallowed: "},
	} {
		out, err := exec.Command(binary, "call", guest, "handle", "--input", tc.input).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), tc.want) {
			t.Errorf("%s: %v\n%s\nwant output starting with %q", tc.input, err, out, tc.want)
		}
	}
}

// TestCLIRefusesSpecialAndHugeFiles: the files the CLI reads (a module, a call's input, a
// token, a CA) are read only when they are regular files within a limit. Before, a FIFO named
// by mistake hung the command forever and a huge file (a core dump) was read whole into memory.
func TestCLIRefusesSpecialAndHugeFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.wasm")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.wasm")
	hugefile.Sparse(t, huge, 20<<30)
	bigInput := filepath.Join(dir, "big.in")
	hugefile.Sparse(t, bigInput, 100<<20)
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"call: a FIFO as the module", []string{"call", fifo, "handle"}, "not a regular file"},
		{"call: a huge module", []string{"call", huge, "handle"}, "module of 21474836480 bytes (limit MaxModuleBytes="},
		{"call: a FIFO as the input", []string{"call", guests["echo"], "handle", "--input-file", fifo}, "not a regular file"},
		{"call: a huge input", []string{"call", guests["echo"], "handle", "--input-file", bigInput}, "104857600 bytes (limit 67108864)"},
		{"abi-check: a huge module", []string{"abi-check", huge}, "MaxModuleBytes"},
		{"upgrade: a FIFO as the module", []string{"upgrade", "web", fifo, "--admin", "127.0.0.1:1"}, "not a regular file"},
		{"tls cert: a FIFO as the CA", []string{"tls", "cert", "--name", "n1", "--ca", fifo, "--ca-key", fifo, "--dir", dir}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, tc.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("still running after 20 s (the file is being read): %s", stderr.String())
			}
			if err == nil || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("err %v, stderr %q; want a failure naming %q", err, stderr.String(), tc.stderr)
			}
		})
	}
}
