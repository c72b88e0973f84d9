package admin

import (
	"strings"
	"testing"
	"time"
)

// TestReadyzNotReadyWhileMainPaused: a paused main module refuses every ingress call, so the
// host must leave the load balancer's rotation. Before, /readyz said 200 "ok" while ingress
// answered 503 'module "hello" is paused' to everything.
func TestReadyzNotReadyWhileMainPaused(t *testing.T) {
	base, _ := secretServer(t, "tok")
	waitReadyz(t, base)
	if resp, body := request(t, "POST", base+"/v1/modules/hello/pause", "tok"); resp.StatusCode != 200 {
		t.Fatalf("pause: %d %s", resp.StatusCode, body)
	}
	resp, body := request(t, "GET", base+"/readyz", "")
	if resp.StatusCode != 503 || !strings.Contains(body, "hello: paused") {
		t.Fatalf("/readyz while main is paused: %d %q; want 503 naming hello as paused", resp.StatusCode, body)
	}
	if resp, body := request(t, "POST", base+"/v1/modules/hello/resume", "tok"); resp.StatusCode != 200 {
		t.Fatalf("resume: %d %s", resp.StatusCode, body)
	}
	if resp, body := request(t, "GET", base+"/readyz", ""); resp.StatusCode != 200 || !strings.HasPrefix(body, "ok") {
		t.Fatalf("/readyz after resume: %d %q; want 200 ok", resp.StatusCode, body)
	}
}

// waitReadyz waits until the admin server at base answers /readyz with 200.
func waitReadyz(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := request(t, "GET", base+"/readyz", "")
		if resp.StatusCode == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never 200: %d %q", resp.StatusCode, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
