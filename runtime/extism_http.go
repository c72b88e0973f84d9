package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	extism "github.com/extism/go-sdk"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// ErrNotAllowed: the guest asked for something its capabilities do not grant, e.g. an HTTP
// request (or a redirect) to a host that is not on its allow list.
var ErrNotAllowed = errors.New("not allowed")

// NotAllowedError is the failure of a call whose guest asked for something it may not do. It
// wraps ErrNotAllowed.
type NotAllowedError struct {
	Module string
	// What was refused, e.g. `HTTP request to "http://evil.example/"`.
	What string
}

func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("module %q: %s: not allowed (not on the module's allowed hosts)", e.Module, e.What)
}

// Unwrap makes errors.Is(err, ErrNotAllowed) true.
func (e *NotAllowedError) Unwrap() error { return ErrNotAllowed }

// hostPattern is one parsed AllowedHosts entry.
type hostPattern struct {
	host     string // lower case, without brackets; for a wildcard the suffix after "*"
	wildcard bool   // "*.example.com": any subdomain of example.com (not example.com itself)
	port     string // "" for any port
}

// parseHostPattern parses "host", "host:port", "*.domain[:port]", "1.2.3.4[:port]" and
// "[::1][:port]".
func parseHostPattern(p string) (hostPattern, error) {
	if p == "" {
		return hostPattern{}, errors.New("empty host pattern")
	}
	if strings.ContainsAny(p, "/?#@ \t") {
		return hostPattern{}, errors.New("a host pattern is a host or host:port, not a URL")
	}
	host, port := p, ""
	switch {
	case strings.HasPrefix(p, "["):
		end := strings.IndexByte(p, ']')
		if end < 0 {
			return hostPattern{}, errors.New("missing ] after an IPv6 address")
		}
		host = p[1:end]
		rest := p[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return hostPattern{}, errors.New("unexpected text after ]")
			}
			port = rest[1:]
		}
		if net.ParseIP(host) == nil {
			return hostPattern{}, fmt.Errorf("%q is not an IPv6 address", host)
		}
	case strings.Count(p, ":") == 1:
		host, port, _ = strings.Cut(p, ":")
	case strings.Count(p, ":") > 1:
		return hostPattern{}, errors.New("an IPv6 address must be in brackets: [::1]:8080")
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return hostPattern{}, fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
	}
	hp := hostPattern{host: strings.ToLower(host), port: port}
	if rest, ok := strings.CutPrefix(hp.host, "*."); ok {
		hp.wildcard, hp.host = true, "."+rest
		if rest == "" || strings.Contains(rest, "*") {
			return hostPattern{}, errors.New("a wildcard is \"*.\" followed by a domain")
		}
	} else if strings.Contains(hp.host, "*") {
		return hostPattern{}, errors.New("\"*\" is allowed only as the first label (*.example.com)")
	}
	if hp.host == "" {
		return hostPattern{}, errors.New("empty host")
	}
	return hp, nil
}

func (p hostPattern) match(host, port string) bool {
	if p.port != "" && p.port != port {
		return false
	}
	if p.wildcard {
		// A wildcard names DNS subdomains; an IP address is never one.
		return len(host) > len(p.host) && strings.HasSuffix(host, p.host) && net.ParseIP(host) == nil
	}
	return host == p.host
}

// hostAllowed reports whether u may be requested under patterns: an http or https URL whose
// host (and port, default 80 or 443) matches one of them.
func hostAllowed(patterns []hostPattern, u *url.URL) bool {
	var port string
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return false
	}
	if p := u.Port(); p != "" {
		port = p
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "" {
		return false
	}
	for _, p := range patterns {
		if p.match(host, port) {
			return true
		}
	}
	return false
}

// extismHostNamespace is where the functions of "extism:host/env" that wasmpod implements
// itself are imported from, after the module's imports were renamed (see extismOwnImports).
const extismHostNamespace = "wasmpod:extism"

// extismOwnImports are the Extism host functions wasmpod provides instead of extism go-sdk:
// http_request, because the SDK's follows redirects to any host with http.DefaultClient
// (go-sdk v1.7.1 checks only the first URL against the allowed hosts); the log functions and
// get_log_level, because the SDK's filter on a process-wide level that is off by default; and
// every other one that reads or allocates a block of the kernel's memory (config_get, var_get,
// var_set, http_headers), because the SDK's run the kernel out of reach of the call's deadline
// and write a value the kernel could not allocate over its allocator's root (extismKernel).
var extismOwnImports = []string{"http_request", "http_headers", "config_get", "var_get", "var_set", "get_log_level", "log_trace", "log_debug", "log_info", "log_warn", "log_error"}

// extismKernel reads, allocates and frees blocks of the Extism kernel's memory for wasmpod's
// host functions, under the context of the call they serve. go-sdk's CurrentPlugin helpers
// (ReadBytes, WriteBytes, Free) run the kernel under context.Background(): the kernel's length,
// alloc and free walk its list of blocks, which a plugin can rewrite (go-sdk's store_u64 writes
// anywhere in the kernel's memory) into a cycle, and a walk under no deadline never returned,
// burning a core past the call's deadline and Stop. Under the call's context the runtime's
// WithCloseOnContextDone cuts it like any guest code. (A trusted module has no such cut.)
type extismKernel struct {
	ctx context.Context
	p   *extism.CurrentPlugin
	fn  string // the host function, for errors
}

// read copies the block at off, or its first limit bytes (limit 0: all of it). A block the
// kernel does not know reads as empty (its length is 0), as with go-sdk.
func (k extismKernel) read(off, limit uint64, what string) []byte {
	n, err := k.p.LengthWithContext(k.ctx, off)
	if err != nil {
		panic(fmt.Errorf("extism %s: reading the %s: %w", k.fn, what, err))
	}
	if limit > 0 && n > limit {
		n = limit
	}
	if off > math.MaxUint32 || n > math.MaxUint32 {
		panic(fmt.Errorf("extism %s: reading the %s: block of %d bytes at %d is outside the kernel's memory", k.fn, what, n, off))
	}
	b, ok := k.p.Memory().Read(uint32(off), uint32(n))
	if !ok {
		panic(fmt.Errorf("extism %s: reading the %s: block of %d bytes at %d is outside the kernel's memory", k.fn, what, n, off))
	}
	return bytes.Clone(b)
}

// free frees the block at off (the kernel ignores offsets that are not blocks).
func (k extismKernel) free(off uint64, what string) {
	if err := k.p.FreeWithContext(k.ctx, off); err != nil {
		panic(fmt.Errorf("extism %s: freeing the %s: %w", k.fn, what, err))
	}
}

// write allocates a block for b and copies b into it; an empty b is offset 0, as with go-sdk.
// A block the kernel cannot allocate (the instance's memory limit) fails the call: go-sdk wrote
// b at offset 0 of the kernel's memory, over its allocator's root, and returned 0.
func (k extismKernel) write(b []byte, what string) uint64 {
	if len(b) == 0 {
		return 0
	}
	off, err := k.p.AllocWithContext(k.ctx, uint64(len(b)))
	if err != nil {
		panic(fmt.Errorf("extism %s: allocating %d bytes for the %s: %w", k.fn, len(b), what, err))
	}
	if off == 0 {
		panic(fmt.Errorf("extism %s: %w: the kernel could not allocate %d bytes for the %s", k.fn, ErrMemoryLimit, len(b), what))
	}
	if off > math.MaxUint32 || !k.p.Memory().Write(uint32(off), b) {
		panic(fmt.Errorf("extism %s: writing the %s: block of %d bytes at %d is outside the kernel's memory", k.fn, what, len(b), off))
	}
	return off
}

// extismVarOverhead is what a var costs besides its name and value, as extism go-sdk counts it
// (a Go string and slice header).
const extismVarOverhead = 40

// extismCallOf returns the wasmpod instance and go-sdk plugin of the call a host function
// serves. Outside a call (a start function runs before go-sdk's plugin exists) it fails.
func extismCallOf(ctx context.Context, fn string) (*instance, *extism.Plugin) {
	inst := extismCaller(ctx)
	plugin, _ := ctx.Value(extism.PluginCtxKey("plugin")).(*extism.Plugin)
	if inst == nil || plugin == nil {
		panic(fmt.Errorf("extism %s: not called from a wasmpod Extism call", fn))
	}
	return inst, plugin
}

// extismCallKey carries the calling instance in the context of an Extism call, for the host
// functions wasmpod provides.
type extismCallKey struct{}

func extismCaller(ctx context.Context) *instance {
	inst, _ := ctx.Value(extismCallKey{}).(*instance)
	return inst
}

// extismHostFunctions are wasmpod's implementations of extismOwnImports.
func (e *Engine) extismHostFunctions() []extism.HostFunction {
	ptr := extism.ValueTypePTR
	var fns []extism.HostFunction
	add := func(name string, params, results []extism.ValueType, fn extism.HostFunctionStackCallback) {
		f := extism.NewHostFunctionWithStack(name, fn, params, results)
		f.SetNamespace(extismHostNamespace)
		fns = append(fns, f)
	}
	add("http_request", []extism.ValueType{ptr, ptr}, []extism.ValueType{ptr}, e.extismHTTPRequest)
	add("http_headers", nil, []extism.ValueType{ptr}, func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
		_, plugin := extismCallOf(ctx, "http_headers")
		stack[0] = 0
		if plugin.LastResponseHeaders == nil {
			return
		}
		data, err := json.Marshal(plugin.LastResponseHeaders)
		if err != nil {
			panic(fmt.Errorf("extism http_headers: %w", err))
		}
		stack[0] = extismKernel{ctx, p, "http_headers"}.write(data, "headers")
	})
	add("config_get", []extism.ValueType{ptr}, []extism.ValueType{ptr}, func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
		inst, _ := extismCallOf(ctx, "config_get")
		k := extismKernel{ctx, p, "config_get"}
		v, ok := inst.m.cfg.Config[string(k.read(stack[0], 0, "key"))]
		stack[0] = 0 // a missing key is offset 0
		if ok {
			stack[0] = k.write([]byte(v), "value")
		}
	})
	add("var_get", []extism.ValueType{ptr}, []extism.ValueType{ptr}, func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
		_, plugin := extismCallOf(ctx, "var_get")
		k := extismKernel{ctx, p, "var_get"}
		name := k.read(stack[0], 0, "name")
		k.free(stack[0], "name")
		v, ok := plugin.Var[string(name)]
		stack[0] = 0 // a missing var is offset 0
		if ok {
			stack[0] = k.write(v, "value")
		}
	})
	add("var_set", []extism.ValueType{ptr, ptr}, nil, func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
		_, plugin := extismCallOf(ctx, "var_set")
		if plugin.MaxVarBytes == 0 {
			panic(errors.New("extism var_set: vars are disabled by this host (resources.vars is 0)"))
		}
		k := extismKernel{ctx, p, "var_set"}
		name := string(k.read(stack[0], 0, "name"))
		k.free(stack[0], "name")
		if stack[1] == 0 { // a value at offset 0 removes the var
			delete(plugin.Var, name)
			return
		}
		value := k.read(stack[1], 0, "value")
		k.free(stack[1], "value")
		// The store's size with the new value in place of the old one (a replaced var counts
		// once), each var as its name, its value and a string and slice header, as go-sdk counts.
		size := int64(len(name) + len(value) + extismVarOverhead)
		for n, v := range plugin.Var {
			if n != name {
				size += int64(len(n) + len(v) + extismVarOverhead)
			}
		}
		if size >= plugin.MaxVarBytes {
			panic(fmt.Errorf("extism var_set: Variable store is full: %d bytes with var %q, its limit is %d (resources.vars)", size, name, plugin.MaxVarBytes))
		}
		plugin.Var[name] = value
	})
	add("get_log_level", nil, []extism.ValueType{extism.ValueTypeI32}, func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
		stack[0] = 0 // trace: the guest sends everything, the log sink decides
	})
	for name, level := range map[string]Level{"log_trace": LevelDebug, "log_debug": LevelDebug, "log_info": LevelInfo, "log_warn": LevelWarn, "log_error": LevelError} {
		add(name, []extism.ValueType{ptr}, nil, func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
			inst, _ := extismCallOf(ctx, name)
			k := extismKernel{ctx, p, name}
			msg := k.read(stack[0], maxLogLine, "message") // a longer line is cut
			k.free(stack[0], "message")
			inst.m.log(level, "guest", string(msg))
		})
	}
	// __yield for instrumented (untrusted) plugins: a safe point for the Go scheduler, the cut
	// once the call's context is done or the instance expired, and the stack budget's trap.
	yield := extism.NewHostFunctionWithStack(instrument.YieldName, func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
		if int32(stack[0]) == instrument.ReasonStack {
			panic(errStackBudget)
		}
		inst := extismCaller(ctx)
		if ctx.Err() != nil || (inst != nil && inst.expired.Load()) {
			panic(errCut)
		}
		stack[0] = uint64(yieldEvery)
		if inst != nil {
			stack[0] = uint64(inst.m.yieldInterval)
		}
	}, []extism.ValueType{extism.ValueTypeI32}, []extism.ValueType{extism.ValueTypeI32})
	yield.SetNamespace(instrument.ImportModule)
	fns = append(fns, yield)
	return fns
}

// extismHTTPRequest implements Extism's http_request(request, body) -> response body: the
// request is JSON {"url", "method", "headers"}. Like extism go-sdk's, a refused or failed
// request fails the guest's call (Extism has no error result for it); unlike it, every redirect
// is checked against the allowed hosts too, host:port patterns are honoured, and the response
// body is bounded by the engine's MaxOutputBytes.
func (e *Engine) extismHTTPRequest(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
	inst, plugin := extismCallOf(ctx, "http_request")
	kernel := extismKernel{ctx, p, "http_request"}
	plugin.LastStatusCode = 0
	for k := range plugin.LastResponseHeaders {
		delete(plugin.LastResponseHeaders, k)
	}
	reqJSON := kernel.read(stack[0], 0, "request")
	kernel.free(stack[0], "request")
	var r struct {
		URL     string            `json:"url"`
		Method  string            `json:"method"`
		Headers map[string]string `json:"headers"`
	}
	if err := json.Unmarshal(reqJSON, &r); err != nil {
		panic(fmt.Errorf("extism http_request: invalid request: %w", err))
	}
	if r.Method == "" {
		r.Method = http.MethodGet
	}
	r.Method = strings.ToUpper(r.Method)
	u, err := url.Parse(r.URL)
	if err != nil {
		panic(fmt.Errorf("extism http_request: invalid url: %w", err))
	}
	m := inst.m
	if !hostAllowed(m.ext.hosts, u) {
		panic(&NotAllowedError{Module: m.cfg.Name, What: fmt.Sprintf("HTTP request to %q", r.URL)})
	}
	var body io.Reader
	if stack[1] != 0 {
		b := kernel.read(stack[1], 0, "body")
		kernel.free(stack[1], "body")
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, body)
	if err != nil {
		panic(fmt.Errorf("extism http_request: %w", err))
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	client := &http.Client{
		Transport: e.httpTransport,
		CheckRedirect: func(next *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if !hostAllowed(m.ext.hosts, next.URL) {
				return &NotAllowedError{Module: m.cfg.Name, What: fmt.Sprintf("HTTP redirect from %q to %q", via[len(via)-1].URL, next.URL)}
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		var na *NotAllowedError
		if errors.As(err, &na) {
			panic(na)
		}
		panic(fmt.Errorf("extism http_request: %w", err))
	}
	defer resp.Body.Close()
	limit := int64(e.cfg.MaxOutputBytes)
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		panic(fmt.Errorf("extism http_request: reading the response: %w", err))
	}
	if int64(len(data)) > limit {
		panic(fmt.Errorf("extism http_request: the response body of %q is over the limit of %d bytes (memory.max_http_response_bytes)", r.URL, limit))
	}
	plugin.LastStatusCode = resp.StatusCode
	if plugin.LastResponseHeaders != nil {
		for k, v := range resp.Header {
			plugin.LastResponseHeaders[strings.ToLower(k)] = strings.Join(v, ",")
		}
	}
	stack[0] = kernel.write(data, "response body") // an empty body is offset 0
}

// maxHTTPResponseHeaders bounds the headers of a response to Extism's http_request (Go's
// default is 10 MiB). go-sdk keeps the last response's headers in the instance's plugin, in Go
// memory outside the instance's memory limit, until its next request: with the default, each
// idle instance of a plugin that asked a server it may reach could hold 10 MiB of them.
const maxHTTPResponseHeaders = 1 << 20

// newHTTPTransport is the transport of Extism's http_request: the defaults of
// http.DefaultTransport, without proxies from the environment (a request goes where its URL,
// checked against the allowed hosts, says), with response headers bounded.
func newHTTPTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxResponseHeaderBytes = maxHTTPResponseHeaders
	return t
}
