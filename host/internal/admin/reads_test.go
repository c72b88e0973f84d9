package admin

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/host/internal/supervisor/suptest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// An outsider who can reach the admin port but holds no token reads every read-only route.
// Before, GET /v1/modules, /v1/modules/{name} and /v1/console/state showed each module's
// configuration (its config map, the .wasm path) and last error to anyone, the logs and blob
// routes served guest output and job files to anyone, and every pprof profile but the command
// line was open.

const (
	secretConfig = "s3cr3t-api-key"
	secretError  = "s3cr3t-in-an-error"
)

// secretServer runs a real admin server (token "tok") over a real supervisor whose module has
// a secret in its config, and a queue with a job, a dead letter and a blob. It returns the
// base URL and the module's .wasm path.
func secretServer(t *testing.T, token string) (base, wasmPath string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Token = token
	return secretServerWith(t, cfg)
}

// secretServerWith is secretServer with the admin server's configuration cfg (its Queue is
// replaced).
func secretServerWith(t *testing.T, cfg Config) (base, wasmPath string) {
	t.Helper()
	sup, wasm := helloPod(t, "api_key: "+secretConfig)
	q := newFakeQueue()
	q.blobs[shaOf([]byte("job file"))] = []byte("job file")
	file := queue.File{Name: "customers/secret-name.csv", SHA256: shaOf([]byte("job file")), Size: 8}
	q.jobs[1] = queue.Job{ID: 1, Pipeline: queue.Pipeline{Name: "logs"}, Inputs: []queue.File{file}, Outputs: []queue.File{file}, State: queue.JobDone}
	q.tasks[7] = queue.TaskInfo{ID: 7, Pipeline: "logs", Job: 1, State: "dead", Inputs: []queue.File{file}, Output: &file,
		Errors: []queue.AttemptError{{Attempt: 1, Message: secretError}}}
	q.listed, q.dead = []queue.Job{q.jobs[1]}, []queue.TaskInfo{q.tasks[7]}
	cfg.Queue = q
	return serveAdminWith(t, cfg, sup), wasm
}

// helloPod runs a real supervisor with the hello example as module hello of pod web, config
// its module config's YAML fields ("" for none), and returns it with the guest's .wasm path.
func helloPod(t *testing.T, config string) (*supervisor.Supervisor, string) {
	t.Helper()
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	wasm := wasmbuild.Go(t, filepath.Join(root, "examples/hello/guest"))
	if config != "" {
		config = ", config: {" + config + "}"
	}
	return suptest.Start(t, `apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: web}
spec:
  modules:
    - {name: hello, wasm: `+wasm+config+`}
`, ""), wasm
}

// TestReadsWithoutTokenShowNoSecrets: every read route that describes modules or jobs answers
// an outsider with the configuration, paths, file names and error messages left out, and says
// so ("redacted": true); the admin token's holder sees everything.
func TestReadsWithoutTokenShowNoSecrets(t *testing.T) {
	base, wasm := secretServer(t, "tok")
	secrets := []string{secretConfig, wasm, "secret-name.csv", shaOf([]byte("job file")), secretError}
	for _, path := range []string{"/v1/modules", "/v1/modules/hello", "/v1/console/state",
		"/v1/queue/jobs", "/v1/queue/jobs/1", "/v1/queue/dead", "/v1/queue/tasks/7"} {
		for _, tok := range []string{"", "nope", "to", "tok"} {
			resp, body := request(t, "GET", base+path, tok)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s (token %q): %d %s", path, tok, resp.StatusCode, body)
			}
			redacted := strings.Contains(body, `"redacted": true`)
			if tok == "tok" {
				if redacted {
					t.Errorf("GET %s with the admin token: redacted: %s", path, body)
				}
				continue
			}
			if !redacted {
				t.Errorf("GET %s without the token (%q): no \"redacted\": true in %s", path, tok, body)
			}
			for _, s := range secrets {
				if strings.Contains(body, s) {
					t.Errorf("GET %s without the token (%q) shows %q:\n%s", path, tok, s, body)
				}
			}
		}
	}
	// The admin token's holder sees the configuration and the files.
	for path, want := range map[string]string{"/v1/modules/hello": secretConfig, "/v1/queue/jobs/1": "secret-name.csv",
		"/v1/queue/tasks/7": secretError, "/v1/console/state": secretConfig, "/v1/queue/dead": secretError} {
		if _, body := request(t, "GET", base+path, "tok"); !strings.Contains(body, want) {
			t.Errorf("GET %s with the token lacks %q: %s", path, want, body)
		}
	}
	// What the status page needs stays public.
	_, body := request(t, "GET", base+"/v1/modules/hello", "")
	var st struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Redacted bool   `json:"redacted"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Name != "hello" || st.State == "" || !st.Redacted {
		t.Errorf("redacted status %s (%v): want name, state and redacted", body, err)
	}
}

// TestProtectedReadsNeedToken: guest output (logs), job files (blobs) and every pprof
// profile need the admin token when the host has one: 401 without it, 200 with it.
func TestProtectedReadsNeedToken(t *testing.T) {
	base, _ := secretServer(t, "tok")
	paths := []string{"/v1/modules/hello/logs", "/v1/modules/hello/logs?follow=1&tail=1",
		"/v1/blobs/" + shaOf([]byte("job file")),
		"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=2",
		"/debug/pprof/allocs", "/debug/pprof/block", "/debug/pprof/mutex", "/debug/pprof/threadcreate",
		"/debug/pprof/symbol", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1"}
	for _, path := range paths {
		for _, tok := range []string{"", "nope"} {
			resp, body := request(t, "GET", base+path, tok)
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("GET %s (token %q): %d %.200s; want 401", path, tok, resp.StatusCode, body)
			}
		}
		if strings.Contains(path, "follow=1") {
			continue // a stream: its 200 is checked by the logs tests
		}
		if resp, body := request(t, "GET", base+path, "tok"); resp.StatusCode != 200 {
			t.Errorf("GET %s with the token: %d %.200s", path, resp.StatusCode, body)
		}
	}
}

// TestReadsOnAHostWithoutToken: a host started without a token authenticates no one. Its
// secrets are shown to no one (redacted, the command line 403), and the diagnostics it can
// guard with nothing stay as they were (logs, blobs, profiles: its admin listener is loopback
// by default).
func TestReadsOnAHostWithoutToken(t *testing.T) {
	base, wasm := secretServer(t, "")
	for path, want := range map[string]int{"/v1/modules/hello/logs": 200, "/debug/pprof/heap": 200,
		"/debug/pprof/cmdline": 403, "/v1/blobs/" + shaOf([]byte("job file")): 200} {
		if resp, body := request(t, "GET", base+path, ""); resp.StatusCode != want {
			t.Errorf("GET %s: %d %.200s; want %d", path, resp.StatusCode, body, want)
		}
	}
	for _, path := range []string{"/v1/modules", "/v1/console/state"} {
		_, body := request(t, "GET", base+path, "")
		if strings.Contains(body, secretConfig) || strings.Contains(body, wasm) || !strings.Contains(body, `"redacted": true`) {
			t.Errorf("GET %s on a host without a token: %s", path, body)
		}
	}
}
