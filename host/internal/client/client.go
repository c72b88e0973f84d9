// Package client talks to a wasmpod host's admin API; the CLI's kubectl-like verbs use it.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/host/internal/version"
)

// ErrAPI wraps every error the admin API answered with.
var ErrAPI = errors.New("admin API error")

// Client is an admin API client.
type Client struct {
	// Base is the admin address, "host:port" or a URL.
	Base string
	// Token is the admin bearer token: mutating routes, logs, blob downloads and the
	// configuration in module statuses need it.
	Token string
	// HTTP is the client used; nil uses one with a 2-minute timeout (an upgrade waits for
	// readiness).
	HTTP *http.Client
	// Traceparent, when set, is a W3C traceparent sent with a job submit: the host's
	// "queue.submit" span, and with it the job's task attempts, join that trace (the CLI takes
	// it from $TRACEPARENT).
	Traceparent string
}

func (c *Client) url(path string) string {
	b := c.Base
	if !strings.Contains(b, "://") {
		b = "http://" + b
	}
	return strings.TrimRight(b, "/") + path
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	return c.send(c.client(), req, out)
}

// request is a request to path with the bearer token.
func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path), body)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// client is c.HTTP, or one with a 2-minute timeout.
func (c *Client) client() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 2 * time.Minute}
}

// send sends req with hc and decodes a 2xx JSON answer into out (unless nil); other answers
// become an ErrAPI error.
func (c *Client) send(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return apiError(resp, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// apiError is the error for a non-2xx answer with body b.
func apiError(resp *http.Response, b []byte) error {
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("%w: %s: %s", ErrAPI, resp.Status, e.Error)
	}
	return fmt.Errorf("%w: %s: %s", ErrAPI, resp.Status, strings.TrimSpace(string(b)))
}

// List returns every module's status.
func (c *Client) List(ctx context.Context) ([]ModuleStatus, error) {
	var out []ModuleStatus
	return out, c.do(ctx, http.MethodGet, "/v1/modules", nil, &out)
}

// Get returns one module's status.
func (c *Client) Get(ctx context.Context, name string) (ModuleStatus, error) {
	var out ModuleStatus
	return out, c.do(ctx, http.MethodGet, "/v1/modules/"+url.PathEscape(name), nil, &out)
}

// Action runs a lifecycle command (stop, start, pause, resume, restart, rollback).
func (c *Client) Action(ctx context.Context, name, action string) (ModuleStatus, error) {
	var out ModuleStatus
	return out, c.do(ctx, http.MethodPost, "/v1/modules/"+url.PathEscape(name)+"/"+action, nil, &out)
}

// Scale sets a module's warm pool size.
func (c *Client) Scale(ctx context.Context, name string, replicas int) (ModuleStatus, error) {
	var out ModuleStatus
	b, _ := json.Marshal(map[string]int{"replicas": replicas})
	return out, c.do(ctx, http.MethodPost, "/v1/modules/"+url.PathEscape(name)+"/scale", bytes.NewReader(b), &out)
}

// Upgrade uploads a new version of a module.
func (c *Client) Upgrade(ctx context.Context, name string, wasm []byte) (ModuleStatus, error) {
	var out ModuleStatus
	return out, c.do(ctx, http.MethodPut, "/v1/modules/"+url.PathEscape(name)+"/wasm", bytes.NewReader(wasm), &out)
}

// Logs calls fn for each of the module's recent log lines and, with follow, for each new one
// until ctx ends or the host goes away.
func (c *Client) Logs(ctx context.Context, name string, tail int, follow bool, fn func(LogLine)) error {
	q := fmt.Sprintf("?tail=%d", tail)
	if follow {
		q += "&follow=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v1/modules/"+url.PathEscape(name)+"/logs"+q), nil)
	if err != nil {
		return err
	}
	if c.Token != "" { // logs need the admin token when the host has one
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%w: %s: %s", ErrAPI, resp.Status, strings.TrimSpace(string(b)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e LogLine
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue
		}
		fn(e)
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// LogLine is one log line as the admin API sends it (runtime.LogEntry in JSON).
type LogLine struct {
	Time    time.Time `json:"time"`
	Module  string    `json:"module"`
	Level   string    `json:"level"`
	Source  string    `json:"source"`
	Message string    `json:"message"`
}

// ModuleStatus is a module's status as the admin API sends it; State is the lifecycle word.
type ModuleStatus struct {
	supervisor.ModuleStatus
	State string `json:"state"`
	// Redacted says the host left the config, spec and last error out: the client sent no
	// admin token, or a wrong one.
	Redacted bool `json:"redacted,omitempty"`
}

// Version returns the host's build information (GET /v1/version).
func (c *Client) Version(ctx context.Context) (version.Info, error) {
	var out version.Info
	return out, c.do(ctx, http.MethodGet, "/v1/version", nil, &out)
}
