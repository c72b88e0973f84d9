package admin

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/runtime"
)

// Actions are the lifecycle commands of POST /v1/modules/{name}/{action}.
var Actions = []string{"stop", "start", "pause", "resume", "restart", "scale", "rollback"}

// modulePath splits /v1/modules[/{name}[/{rest}]]. ok is false for other paths or bad names.
func modulePath(p string) (name, rest string, ok bool) {
	const prefix = "/v1/modules"
	if p == prefix || p == prefix+"/" {
		return "", "", true
	}
	if !strings.HasPrefix(p, prefix+"/") {
		return "", "", false
	}
	name, rest, _ = strings.Cut(p[len(prefix)+1:], "/")
	if name == "" || len(name) > 63 || strings.ContainsAny(name, "%?#") || strings.Contains(rest, "/") {
		return "", "", false
	}
	return name, rest, true
}

// ScaleRequest is the body of POST /v1/modules/{name}/scale.
type ScaleRequest struct {
	Replicas int `json:"replicas"`
}

// parseScale reads a scale body: {"replicas": n}, strict (unknown fields refused).
func parseScale(body []byte) (int, error) {
	if len(body) > 4096 {
		return 0, errors.New("scale body larger than 4 KiB")
	}
	var r struct {
		Replicas *int `json:"replicas"`
	}
	if err := decodeOne(body, &r); errors.Is(err, errTrailing) {
		return 0, fmt.Errorf("scale body: %w", err)
	} else if err != nil {
		return 0, fmt.Errorf(`scale body must be {"replicas": N}: %v`, err)
	}
	if r.Replicas == nil {
		return 0, errors.New(`scale body: missing field "replicas"`)
	}
	return *r.Replicas, nil
}

func (s *Server) route(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	method := string(ctx.Method())
	switch {
	case path == "/healthz":
		ctx.SetBodyString("ok\n")
		return
	case path == "/readyz":
		ok, why := s.sup.Ready()
		if down := s.listenersDown(); len(down) > 0 {
			ok, why = false, append(why, down...)
		}
		if !ok {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("not ready: " + strings.Join(why, "; ") + "\n")
		} else {
			ctx.SetBodyString("ok\n")
		}
		for _, w := range s.cfg.Warnings {
			ctx.WriteString("warning: " + w + "\n")
		}
		return
	case path == "/metrics":
		s.metrics.serve(ctx)
		return
	case path == "/v1/version":
		serveVersion(ctx)
		return
	case strings.HasPrefix(path, "/debug/pprof"):
		// The command line is a secret (flags and paths); every profile is protected: goroutine
		// dumps show arguments, heap profiles allocation sites, and a CPU profile or trace
		// costs the host while it runs.
		if path == "/debug/pprof/cmdline" && !s.authorized(ctx) || !s.protectedRead(ctx) {
			return
		}
		switch path {
		case "/debug/pprof":
			ctx.Redirect("/debug/pprof/", fasthttp.StatusMovedPermanently)
		case "/debug/pprof/":
			pprofIndex(ctx) // fasthttp's handler answers 404 to any path ending in "/"
		default:
			pprofhandler.PprofHandler(ctx)
		}
		return
	}
	if s.serveConsole(ctx, path, method) || s.serveCluster(ctx, path, method) || s.serveQueue(ctx, path, method) {
		return
	}
	name, rest, ok := modulePath(path)
	if !ok {
		writeError(ctx, fasthttp.StatusNotFound, fmt.Errorf("no route %s %s", method, path))
		return
	}
	mutating := method == fasthttp.MethodPost || method == fasthttp.MethodPut
	if mutating && !s.authorized(ctx) {
		return
	}
	switch {
	case name == "" && method == fasthttp.MethodGet:
		writeJSON(ctx, fasthttp.StatusOK, views(s.sup.Statuses(), s.reader(ctx), moduleView))
	case name != "" && rest == "" && method == fasthttp.MethodGet:
		st, err := s.sup.Status(name)
		if err != nil {
			writeSupError(ctx, err)
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, moduleView(st, s.reader(ctx)))
	case rest == "logs" && method == fasthttp.MethodGet:
		if s.protectedRead(ctx) {
			s.logs(ctx, name)
		}
	case rest == "wasm" && method == fasthttp.MethodPut:
		body := ctx.PostBody()
		if len(body) == 0 {
			writeError(ctx, fasthttp.StatusBadRequest, errors.New("upgrade: empty body (send the .wasm file)"))
			return
		}
		wasm := append([]byte(nil), body...)
		if err := s.sup.Upgrade(s.opCtx(), name, wasm); err != nil {
			writeSupError(ctx, err)
			return
		}
		s.writeStatus(ctx, name)
	case method == fasthttp.MethodPost && rest != "":
		s.action(ctx, name, rest)
	default:
		writeError(ctx, fasthttp.StatusMethodNotAllowed, fmt.Errorf("no route %s %s", method, path))
	}
}

// pprofIndex is net/http/pprof's index page, whose links are relative to /debug/pprof/.
var pprofIndex = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Index)

// opCtx bounds an operator command: it ends at server shutdown.
func (s *Server) opCtx() context.Context { return s.ctx }

func (s *Server) action(ctx *fasthttp.RequestCtx, name, action string) {
	var err error
	switch action {
	case "stop":
		err = s.sup.StopModule(s.opCtx(), name)
	case "start":
		err = s.sup.StartModule(s.opCtx(), name)
	case "restart":
		err = s.sup.RestartModule(s.opCtx(), name)
	case "pause":
		err = s.sup.Pause(name)
	case "resume":
		err = s.sup.Resume(name)
	case "rollback":
		err = s.sup.Rollback(s.opCtx(), name)
	case "scale":
		n, perr := parseScale(ctx.PostBody())
		if perr != nil {
			writeError(ctx, fasthttp.StatusBadRequest, perr)
			return
		}
		err = s.sup.Scale(name, n)
	default:
		writeError(ctx, fasthttp.StatusNotFound, fmt.Errorf("unknown action %q (one of %s)", action, strings.Join(Actions, ", ")))
		return
	}
	if err != nil {
		writeSupError(ctx, err)
		return
	}
	s.writeStatus(ctx, name)
}

func (s *Server) writeStatus(ctx *fasthttp.RequestCtx, name string) {
	st, err := s.sup.Status(name)
	if err != nil {
		writeSupError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, st)
}

// authorized checks the bearer token in constant time, answering 401/403 itself when not.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	if s.cfg.Token == "" {
		writeError(ctx, fasthttp.StatusForbidden, errors.New("mutating routes are disabled: start wasmpod with --token-file or WASMPOD_TOKEN"))
		return false
	}
	if !s.validToken(ctx.Request.Header.Peek("Authorization")) {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="wasmpod"`)
		writeError(ctx, fasthttp.StatusUnauthorized, errors.New("missing or wrong bearer token"))
		return false
	}
	return true
}

// validToken reports whether an Authorization header carries the admin token, in constant time.
func (s *Server) validToken(authorization []byte) bool {
	got, ok := strings.CutPrefix(string(authorization), "Bearer ")
	return ok && s.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

// logs serves GET /v1/modules/{name}/logs?tail=N&follow=1 as NDJSON (one runtime.LogEntry a
// line). tail is how many recent lines come first: 100 when absent, none for 0 (with follow,
// only new lines: `wasmpod logs --tail 0 -f`). With follow the connection is taken over and
// lines stream (chunked) until the client goes away or the server shuts down.
func (s *Server) logs(ctx *fasthttp.RequestCtx, name string) {
	if _, err := s.sup.Status(name); err != nil {
		writeSupError(ctx, err)
		return
	}
	args := ctx.QueryArgs()
	tail := 100
	if v := args.Peek("tail"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 0 {
			writeError(ctx, fasthttp.StatusBadRequest, fmt.Errorf("tail=%q: want a non-negative integer", v))
			return
		}
		tail = n
	}
	follow := string(args.Peek("follow"))
	if follow == "" || follow == "0" || follow == "false" {
		ctx.SetContentType("application/x-ndjson")
		enc := json.NewEncoder(ctx)
		for _, e := range s.sup.Logs().Tail(name, tail) {
			enc.Encode(e)
		}
		return
	}
	lines, ch, cancel := s.sup.Logs().Follow(name, tail)
	ctx.HijackSetNoResponse(true)
	s.wg.Add(1)
	ctx.Hijack(func(c net.Conn) {
		defer s.wg.Done()
		defer cancel()
		s.follow(c, lines, ch)
	})
}

func (s *Server) follow(c net.Conn, tail []runtime.LogEntry, ch <-chan runtime.LogEntry) {
	gone := make(chan struct{})
	go func() { // the client closing its side ends the stream
		defer close(gone)
		var b [512]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	}()
	defer func() { c.Close(); <-gone }()
	w := bufio.NewWriter(c)
	w.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n")
	send := func(es ...runtime.LogEntry) bool {
		var buf []byte
		for _, e := range es {
			b, _ := json.Marshal(e)
			buf = append(append(buf, b...), '\n')
		}
		if len(buf) > 0 {
			fmt.Fprintf(w, "%x\r\n%s\r\n", len(buf), buf)
		}
		c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		return w.Flush() == nil
	}
	if !send(tail...) {
		return
	}
	for {
		select {
		case <-s.ctx.Done():
			w.WriteString("0\r\n\r\n")
			w.Flush()
			return
		case <-gone:
			return
		case e, ok := <-ch:
			if !ok || !send(e) {
				return
			}
		}
	}
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, err)
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

// ErrorBody is the JSON body of every admin error.
type ErrorBody struct {
	Error string `json:"error"`
}

func writeError(ctx *fasthttp.RequestCtx, status int, err error) {
	b, _ := json.Marshal(ErrorBody{Error: err.Error()})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

func writeSupError(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusInternalServerError
	switch {
	case errors.Is(err, supervisor.ErrNotFound):
		status = fasthttp.StatusNotFound
	case errors.Is(err, supervisor.ErrInvalid), errors.Is(err, runtime.ErrInput):
		status = fasthttp.StatusBadRequest
	case errors.Is(err, supervisor.ErrConflict), errors.Is(err, supervisor.ErrNoPrevious):
		status = fasthttp.StatusConflict
	case errors.Is(err, supervisor.ErrUpgradeFailed):
		status = fasthttp.StatusUnprocessableEntity
	case errors.Is(err, supervisor.ErrClosed):
		status = fasthttp.StatusServiceUnavailable
	case errors.Is(err, supervisor.ErrBusy):
		// Another operation holds the module (the error names it): try again, or stop it.
		status = fasthttp.StatusConflict
	}
	writeError(ctx, status, err)
}
