package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// get_log_level, because the SDK's filter on a process-wide level that is off by default.
var extismOwnImports = []string{"http_request", "get_log_level", "log_trace", "log_debug", "log_info", "log_warn", "log_error"}

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
	add("get_log_level", nil, []extism.ValueType{extism.ValueTypeI32}, func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
		stack[0] = 0 // trace: the guest sends everything, the log sink decides
	})
	for name, level := range map[string]Level{"log_trace": LevelDebug, "log_debug": LevelDebug, "log_info": LevelInfo, "log_warn": LevelWarn, "log_error": LevelError} {
		add(name, []extism.ValueType{ptr}, nil, func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
			msg, err := p.ReadBytes(stack[0])
			if err != nil {
				panic(fmt.Errorf("extism %s: %w", name, err))
			}
			_ = p.Free(stack[0])
			if inst := extismCaller(ctx); inst != nil {
				if len(msg) > maxLogLine {
					msg = msg[:maxLogLine]
				}
				inst.m.log(level, "guest", string(msg))
			}
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
	inst := extismCaller(ctx)
	plugin, _ := ctx.Value(extism.PluginCtxKey("plugin")).(*extism.Plugin)
	if inst == nil || plugin == nil {
		panic(errors.New("extism http_request: not called from a wasmpod Extism call"))
	}
	plugin.LastStatusCode = 0
	for k := range plugin.LastResponseHeaders {
		delete(plugin.LastResponseHeaders, k)
	}
	reqJSON, err := p.ReadBytes(stack[0])
	if err != nil {
		panic(fmt.Errorf("extism http_request: reading the request: %w", err))
	}
	_ = p.Free(stack[0])
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
		b, err := p.ReadBytes(stack[1])
		if err != nil {
			panic(fmt.Errorf("extism http_request: reading the body: %w", err))
		}
		_ = p.Free(stack[1])
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
		panic(fmt.Errorf("%w: extism http_request: response body over the limit of %d bytes", ErrInput, limit))
	}
	plugin.LastStatusCode = resp.StatusCode
	if plugin.LastResponseHeaders != nil {
		for k, v := range resp.Header {
			plugin.LastResponseHeaders[strings.ToLower(k)] = strings.Join(v, ",")
		}
	}
	if len(data) == 0 {
		stack[0] = 0
		return
	}
	off, err := p.WriteBytes(data)
	if err != nil {
		panic(fmt.Errorf("extism http_request: writing the response: %w", err))
	}
	stack[0] = off
}

// newHTTPTransport is the transport of Extism's http_request: the defaults of
// http.DefaultTransport, without proxies from the environment (a request goes where its URL,
// checked against the allowed hosts, says).
func newHTTPTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return t
}
