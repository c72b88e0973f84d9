package runtime_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/runtime"
)

// goSDKPlugin reads one of the plugins extism go-sdk tests itself with (its wasm/ directory, in
// the module cache: go-sdk is a dependency of this module). They are third parties' plugins,
// built by Extism with its PDKs (Rust, Go, C, Haskell, JS), not by this repository.
func goSDKPlugin(t *testing.T, name string) []byte {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/extism/go-sdk").Output()
	if err != nil {
		t.Fatalf("go list github.com/extism/go-sdk: %v", err)
	}
	return readFile(t, filepath.Join(strings.TrimSpace(string(out)), "wasm", name))
}

// TestExtismGoSDKPlugins runs extism go-sdk's own test plugins unchanged and expects what
// go-sdk's tests expect of them (extism_test.go of go-sdk v1.7.1), except where guest-sdk/ABI.md
// section 8 says otherwise (a refused capability, custom host functions, linked modules).
func TestExtismGoSDKPlugins(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	ctx := context.Background()
	type call struct {
		in   string
		want string // output; "err:" + a part of the error's message for a failed call
	}
	for _, tc := range []struct {
		name, file, fn string
		config         map[string]string
		calls          []call
	}{
		{"hello", "hello.wasm", "run_test", nil, []call{{"", "Hello, world!"}}},
		{"config set", "config.wasm", "run_test", map[string]string{"thing": "hello"}, []call{{"", `{"config": "hello"}`}}},
		{"config unset", "config.wasm", "run_test", nil, []call{{"", `{"config": "<unset by host>"}`}}},
		{"fail", "fail.wasm", "run_test", nil, []call{{"", "err:guest error code 1: Some error message"}, {"", "err:Some error message"}}},
		// A running total in a var, kept between calls of one instance.
		{"count_vowels", "count_vowels.wasm", "count_vowels", nil, []call{
			{"aaa", `{"count":3,"total":3,"vowels":"aeiouAEIOU"}`},
			{"bbba", `{"count":1,"total":4,"vowels":"aeiouAEIOU"}`}}},
		// A Go command (main): _start runs main and exits 0, a success; the exited instance is
		// replaced, so the next call works too (go-sdk's plugin would be closed).
		{"std command", "std_command.wasm", "_start", nil, []call{{"ben", "hello ben"}, {"ben", "hello ben"}}},
		{"exit 0", "exit.wasm", "_start", map[string]string{"code": "0"}, []call{{"", ""}, {"", ""}}},
		{"exit 500", "exit.wasm", "_start", map[string]string{"code": "500"}, []call{{"", "err:exited with code 500"}, {"", "err:exited with code 500"}}},
		// Haskell: hs_init runs before the first call.
		{"haskell", "hello_haskell.wasm", "testing", map[string]string{"greeting": "Howdy"}, []call{{"John", "Howdy, John"}, {"Jim", "Howdy, Jim"}}},
		{"input_offset", "input_offset.wasm", "input_offset_length", nil, []call{{"abcdef", "\x06\x00\x00\x00\x00\x00\x00\x00"}}},
		{"replace", "replace.wasm", "run_test", nil, []call{{"hello", "hello"}}},
		{"sleep", "sleep.wasm", "run_test", map[string]string{"duration": "0"}, []call{{"", "slept for 0 seconds"}}},
		{"log", "log.wasm", "run_test", nil, []call{{"", ""}}},
		{"noop", "noop.wasm", "run_test", nil, []call{{"", ""}}},
		// Deny by default: no allowed hosts.
		{"http denied", "http.wasm", "run_test", nil, []call{{"", `err:HTTP request to "https://jsonplaceholder.typicode.com/todos/1": not allowed`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc := extismConfig("gosdk-" + strings.ReplaceAll(tc.name, " ", "-"))
			mc.Config = tc.config
			mc.MaxConcurrency = 1 // one instance: a var persists between calls
			mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: tc.fn}
			m := started(t, e, goSDKPlugin(t, tc.file), mc)
			for i, c := range tc.calls {
				out, err := m.Call(ctx, runtime.RoleHandle, []byte(c.in), nil)
				if want, ok := strings.CutPrefix(c.want, "err:"); ok {
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("call %d: %q %v, want an error with %q", i, out, err, want)
					}
					continue
				}
				if err != nil || string(out) != c.want {
					t.Fatalf("call %d: %q %v, want %q", i, out, err, c.want)
				}
			}
		})
	}

	// Plugins that need what a pod does not give an Extism plugin are refused at load, naming
	// the import: host functions of a custom host, a second module to link with.
	for file, imp := range map[string]string{"host.wasm": "extism:host/user.mult", "main.wasm": "lib.capitalize"} {
		mc := extismConfig("gosdk-refused")
		mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "run_test"}
		_, err := e.Load(ctx, goSDKPlugin(t, file), mc)
		if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), imp) {
			t.Errorf("%s: %v, want ErrInvalidModule naming %s", file, err, imp)
		}
	}
}
