package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/host/internal/capability"
	"github.com/wasmpod/wasmpod/host/internal/httpframe"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/internal/regfile"
	"github.com/wasmpod/wasmpod/runtime"
)

// callOptions are the flags of `wasmpod call`.
type callOptions struct {
	input     string
	inputFile string
	config    []string
	abi       string
	allow     []string
	memory    string
	vars      string
	timeout   time.Duration
	parts     []string
	missing   []int
	method    string
	path      string
	headers   []string
	logLevel  string
	loop      int
	// set reports whether a flag was given on the command line (flags that do not apply to the
	// called function are refused rather than ignored).
	set func(name string) bool
}

// newCallCmd is `wasmpod call PLUGIN.wasm FUNCTION`: load one module and call one function,
// the way `extism call` does, for either ABI. Output goes to stdout as is; the guest's log lines
// go to stderr.
func newCallCmd() *cobra.Command {
	var o callOptions
	cmd := &cobra.Command{
		Use:   "call PLUGIN.wasm FUNCTION",
		Short: "Call one function of a module (Extism or native) with an input, the way `extism call` does",
		Long: `Call one function of a module with an input and print its output: what a plugin author
runs first. The module runs as in a pod (sandboxed, with a deadline and a memory limit); the
ABI is detected (--abi to state it).

For an Extism plugin FUNCTION is any exported function (count_vowels). For a native module it
is a role (handle, leaf, merge, http, stage) or its export (wasmpod_leaf): merge takes its parts
from --part (repeated; --missing N puts a missing part, a shard that failed, at position N),
http frames a request from --method, --path, --header and the input,
and prints the response body (status and headers on stderr). The module runs alone: its
pod-local calls fail (no such module) and it may dial nothing.

Exit status: 0 the call succeeded, 1 it failed (guest error, trap, deadline), 2 the module could
not be loaded or the flags are wrong.`,
		Example: `  wasmpod call count_vowels.wasm count_vowels --input "Hello, World!"
  wasmpod call plugin.wasm handle --input-file request.json --config greeting=hi
  wasmpod call leaf.wasm leaf --input abc
  wasmpod call merge.wasm merge --part a --part b
  wasmpod call merge.wasm merge --part a --part c --missing 1`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.set = func(name string) bool { return cmd.Flags().Changed(name) }
			err := runCall(cmd.Context(), args[0], args[1], o, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			var ee exitError
			if err != nil && !errors.As(err, &ee) {
				fmt.Fprintf(cmd.ErrOrStderr(), "wasmpod call: %v\n", err)
				return exitError{2}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.input, "input", "", "the call's input")
	f.StringVar(&o.inputFile, "input-file", "", "read the input from this file (- for stdin)")
	f.StringArrayVar(&o.config, "config", nil, "a config entry KEY=VALUE (repeatable): Extism's config, the native config_get")
	f.StringVar(&o.abi, "abi", "auto", "the module's ABI: auto, native or extism")
	f.StringArrayVar(&o.allow, "allow-host", nil, "a host an Extism plugin may reach with http_request (repeatable; host or host:port, *.domain); none by default")
	f.StringVar(&o.memory, "memory", "256Mi", "memory limit of the instance (Kubernetes quantity)")
	f.StringVar(&o.vars, "vars", "1Mi", "the most bytes of Extism vars")
	f.DurationVar(&o.timeout, "timeout", 5*time.Second, "the call's deadline")
	f.StringArrayVar(&o.parts, "part", nil, "a merge part (repeatable; native merge only)")
	f.IntSliceVar(&o.missing, "missing", nil, "a missing merge part (a shard that failed) at this position among the parts, counted from 0 (repeatable; native merge only)")
	f.StringVar(&o.method, "method", "GET", "request method (native http only)")
	f.StringVar(&o.path, "path", "/", "request URI (native http only)")
	f.StringArrayVar(&o.headers, "header", nil, "a request header NAME=VALUE (repeatable; native http only)")
	f.StringVar(&o.logLevel, "log-level", "info", "the least level of guest log lines shown on stderr: debug, info, warn, error")
	f.IntVar(&o.loop, "loop", 1, "call this many times on the same instance (vars persist), printing each output")
	return cmd
}

// checkRoleFlags refuses the flags that do not apply to role: --part and --missing are a
// native merge's, --method, --path and --header a native http call's. Ignoring them would
// call the module with something other than what the command line says.
func (o callOptions) checkRoleFlags(role runtime.Role) error {
	for _, f := range []struct {
		name string
		role runtime.Role
	}{
		{"part", runtime.RoleMerge},
		{"missing", runtime.RoleMerge},
		{"method", runtime.RoleHTTP},
		{"path", runtime.RoleHTTP},
		{"header", runtime.RoleHTTP},
	} {
		if o.set != nil && o.set(f.name) && role != f.role {
			return fmt.Errorf("--%s is for a native %s call, not %s", f.name, f.role, role)
		}
	}
	return nil
}

// mergeParts is the merge's parts: the --part values in order, with a missing part at each
// --missing position (counted among all the parts).
func (o callOptions) mergeParts() ([]runtime.Part, error) {
	n := len(o.parts) + len(o.missing)
	missing := make(map[int]bool, len(o.missing))
	for _, k := range o.missing {
		switch {
		case k < 0 || k >= n:
			return nil, fmt.Errorf("--missing %d: out of range: %d parts (--part and --missing together) are numbered 0 to %d", k, n, n-1)
		case missing[k]:
			return nil, fmt.Errorf("--missing %d: given twice", k)
		}
		missing[k] = true
	}
	parts := make([]runtime.Part, 0, n)
	next := 0
	for k := 0; k < n; k++ {
		if missing[k] {
			parts = append(parts, runtime.Part{Missing: true})
			continue
		}
		parts = append(parts, runtime.Part{Data: []byte(o.parts[next])})
		next++
	}
	return parts, nil
}

// stderrLogs writes guest log lines at or above a level to w.
type stderrLogs struct {
	w     io.Writer
	level runtime.Level
}

func (l stderrLogs) Log(e runtime.LogEntry) {
	if e.Level >= l.level {
		fmt.Fprintf(l.w, "%s %s: %s\n", e.Level, e.Source, e.Message)
	}
}

func runCall(ctx context.Context, path, fn string, o callOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	wasm, err := runtime.ReadModuleFile(path, runtime.CompileBudget{})
	if err != nil {
		return err
	}
	in := []byte(o.input)
	maxIn := int64(runtime.DefaultConfig().MaxInputBytes)
	switch {
	case o.inputFile != "" && o.input != "":
		return errors.New("give --input or --input-file, not both")
	case o.inputFile == "-":
		if in, err = io.ReadAll(io.LimitReader(stdin, maxIn+1)); err != nil {
			return fmt.Errorf("stdin: %w", err)
		}
		if int64(len(in)) > maxIn {
			return fmt.Errorf("stdin: the input is over the limit of %d bytes (a call's MaxInputBytes)", maxIn)
		}
	case o.inputFile != "":
		if in, err = regfile.Read(o.inputFile, maxIn); err != nil {
			return fmt.Errorf("--input-file: %w", err)
		}
	}
	if o.loop < 1 {
		return errors.New("--loop must be at least 1")
	}
	var level runtime.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	abi, err := callABI(wasm, o.abi)
	if err != nil {
		return err
	}
	mem, err := podspec.ParseQuantity(o.memory)
	if err != nil {
		return fmt.Errorf("--memory: %w", err)
	}
	vars, err := podspec.ParseQuantity(o.vars)
	if err != nil {
		return fmt.Errorf("--vars: %w", err)
	}
	cfg := runtime.DefaultModuleConfig("call")
	cfg.ABI = abi
	cfg.MaxMemoryPages = (podspec.Resources{Memory: mem}).MemoryPages()
	cfg.CallTimeout = o.timeout
	cfg.MaxConcurrency, cfg.MinInstances = 1, 1
	cfg.MaxVarBytes = vars.Bytes()
	cfg.AllowedHosts = o.allow
	if len(o.config) > 0 {
		cfg.Config = map[string]string{}
		for _, kv := range o.config {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--config %q: want KEY=VALUE", kv)
			}
			cfg.Config[k] = v
		}
	}
	role := runtime.RoleHandle
	if abi == runtime.ABIExtism {
		desc, err := runtime.Describe(wasm)
		if err != nil {
			return err
		}
		if err := desc.CheckExtismFunction(fn); err != nil {
			return err
		}
		cfg.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: fn}
	} else if role, err = runtime.ParseRole(strings.TrimPrefix(fn, "wasmpod_")); err != nil {
		return fmt.Errorf("a native module's functions are its roles: %w", err)
	}
	if err := o.checkRoleFlags(role); err != nil {
		return err
	}
	parts, err := o.mergeParts()
	if err != nil {
		return err
	}
	ecfg := runtime.DefaultConfig()
	ecfg.Logs = stderrLogs{w: stderr, level: level}
	// A native module may import the pod plumbing (pod-local call, outbound network): it loads
	// as in a pod, but with no pod around it every pod-local call fails ("no such module") and
	// no address may be dialled.
	caps := capability.New(capability.Config{})
	defer caps.Close()
	ecfg.Imports = caps.Functions()
	e, err := runtime.NewEngine(ctx, ecfg)
	if err != nil {
		return err
	}
	defer e.Close(context.Background())
	m, err := e.Load(ctx, wasm, cfg)
	if err != nil {
		return err
	}
	if !m.HasRole(role) {
		return fmt.Errorf("the module does not export %s (roles: %s)", fn, strings.Join(m.Info().Roles, ", "))
	}
	if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
		return err
	}
	defer m.Stop(context.Background(), runtime.StopOptions{Grace: time.Second})
	if role == runtime.RoleHTTP {
		if in, err = frameRequest(o, in); err != nil {
			return err
		}
	}
	for i := 0; i < o.loop; i++ {
		var out []byte
		if role == runtime.RoleMerge && (len(parts) > 0 || o.input == "" && o.inputFile == "") {
			out, err = m.Merge(ctx, parts, nil)
		} else {
			out, err = m.Call(ctx, role, in, nil)
		}
		if err != nil {
			fmt.Fprintf(stderr, "wasmpod call: %s: %v\n", fn, err)
			return exitError{1}
		}
		if role == runtime.RoleHTTP {
			var r httpframe.Response
			if err := httpframe.DecodeResponse(out, &r); err != nil {
				fmt.Fprintf(stderr, "wasmpod call: %s: %v\n", fn, err)
				return exitError{1}
			}
			fmt.Fprintf(stderr, "status %d\n", r.Status)
			for _, h := range r.Headers {
				fmt.Fprintf(stderr, "%s: %s\n", h.Name, h.Value)
			}
			out = r.Body
		}
		if _, err := stdout.Write(out); err != nil {
			return err
		}
		if o.loop > 1 {
			fmt.Fprintln(stdout)
		}
	}
	return nil
}

// callABI resolves --abi like abi-check: auto detects, and a module with neither mark but with
// Extism functions is an Extism plugin that imports no host function.
func callABI(wasm []byte, stated string) (runtime.ABI, error) {
	a, err := runtime.ParseABI(stated)
	if err != nil {
		return 0, fmt.Errorf("--abi: %w", err)
	}
	if a != runtime.ABIAuto {
		return a, nil
	}
	a, err = runtime.DetectABI(wasm)
	if errors.Is(err, runtime.ErrUnknownABI) {
		if desc, derr := runtime.Describe(wasm); derr == nil && len(desc.ExtismFunctions()) > 0 {
			return runtime.ABIExtism, nil
		}
	}
	return a, err
}

// frameRequest frames a request for a native http role (guest-sdk/ABI.md section 2.2).
func frameRequest(o callOptions, body []byte) ([]byte, error) {
	b := httpframe.AppendRequestStart(nil, []byte(o.method), []byte(o.path), len(o.headers))
	for _, h := range o.headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--header %q: want NAME=VALUE", h)
		}
		b = httpframe.AppendString(b, []byte(k))
		b = httpframe.AppendString(b, []byte(v))
	}
	return httpframe.AppendString(b, body), nil
}
