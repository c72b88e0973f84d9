package admin

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/host/internal/supervisor"
)

// emfileListener fails every accept with EMFILE while failing is set.
type emfileListener struct {
	net.Listener
	failing atomic.Bool
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.failing.Load() {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestReadyzReportsListenerDown: while the ingress listener cannot accept (EMFILE), /readyz
// answers 503 naming it, and the ingress keeps trying: once descriptors are back it serves and
// /readyz is ok again. Before, the listener stopped for good and /readyz still said ok.
func TestReadyzReportsListenerDown(t *testing.T) {
	cfg := DefaultConfig().withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, sup: &supervisor.Supervisor{}} // a pod with no modules: ready
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.admin = s.adminServer()
	s.ingress = s.server("wasmpod-ingress", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("served\n") }, cfg.MaxIngressBody)
	adminLn := listenLoopback(t)
	ingressLn := &emfileListener{Listener: listenLoopback(t)}
	ingressLn.failing.Store(true)
	s.Serve(adminLn, ingressLn)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	get := func(addr, path string) (int, string) {
		c := http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(adminLn.Addr().String(), "/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "wasmpod-ingress: accept failing") && strings.Contains(body, "too many open files") {
			t.Logf("while down: %d %q", code, body)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never reported the ingress listener: %d %q", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ingressLn.failing.Store(false)
	if code, body := get(ingressLn.Addr().String(), "/"); code != http.StatusOK || body != "served\n" {
		t.Fatalf("ingress after recovery: %d %q", code, body)
	}
	if code, body := get(adminLn.Addr().String(), "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after recovery: %d %q", code, body)
	}
}
