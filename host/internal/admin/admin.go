// Package admin serves a pod over HTTP with fasthttp: the ingress listener routes requests to
// the pod's main module (package ingress), and the admin listener is the paper's "upward" and "downward"
// interfaces for operators: health, readiness, Prometheus metrics, pprof, the build
// (/v1/version), module status and logs, and lifecycle commands (stop, start, pause, resume,
// restart, scale, upgrade, rollback) guarded by a bearer token. With a cluster node it also
// serves the members list and the paper's election sidecar API (/v1/election/{name}: get,
// campaign, renew, resign, watch) for apps on the node, and with a work queue its blob,
// pipeline, job and task routes (queue.go).
//
// Both listeners are hardened: read, write and idle timeouts, header and body size limits,
// connections per IP, and a Shutdown that never waits past its context.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/host/internal/ingress"
	"github.com/wasmpod/wasmpod/host/internal/listener"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
)

// Config configures the servers. Start from DefaultConfig.
type Config struct {
	// Token guards the mutating admin routes (compared in constant time). Empty disables them.
	Token string
	// AppTokens are the election sidecar's credentials for apps on the node: app name -> its
	// bearer token (ParseAppTokens reads them from a file). An app may campaign, renew and
	// resign with sessions in its own namespace (its name, or its name and "/..."), and sees
	// the fencing token of the leases those sessions hold; nobody else's. The admin Token may
	// do all of it for any session.
	AppTokens map[string]string
	// ReadTimeout bounds reading one request (headers and body).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response (the handler's own time does not count).
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle that long.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes int
	// MaxIngressBody bounds an ingress request body; larger ones get 413.
	MaxIngressBody int
	// MaxAdminBody bounds an admin request body (a wasm upload); larger ones get 413.
	MaxAdminBody int
	// MaxConnsPerIP bounds concurrent connections from one client address. A connection over
	// the limit is answered 429 and closed (limitPerIP; fasthttp's own limit is off).
	MaxConnsPerIP int
	// MaxConns bounds concurrent connections per listener. Near it, idle keep-alive
	// connections give way to new ones (see IdleHeadroom).
	MaxConns int
	// IdleHeadroom is how many connection slots below MaxConns are kept free: once more than
	// MaxConns-IdleHeadroom connections are open, the longest-idle keep-alive connections are
	// closed (as nginx reuses idle keep-alive connections when it runs out), so a flood of
	// idle connections cannot lock new clients out. Zero means MaxConns/10 (at least 1).
	IdleHeadroom int
	// Logger is the host's log. Nil discards.
	Logger *slog.Logger
	// Scatter, when set, serves ScatterPath (exact match, POST) on the ingress listener: the
	// body is the request, the merged answer the response, with Wasmpod-Partial and
	// Wasmpod-Missing-Shards headers when shards are missing. Other paths go to main.
	Scatter     ingress.ScatterRoot
	ScatterPath string
	// Cluster serves /v1/members, /v1/cluster and the election sidecar API (/v1/election/...).
	// Nil answers those routes with 503.
	Cluster Cluster
	// ElectionOpTimeout bounds one election get/campaign/renew/resign.
	ElectionOpTimeout time.Duration
	// WatchWait is a watch's wait when the request names none; MaxWatchWait caps any wait.
	WatchWait, MaxWatchWait time.Duration
	// Queue serves the work-queue routes (/v1/blobs, /v1/queue/...) and their metrics. Nil
	// answers those routes with 404.
	Queue Queue
	// MaxBlobBytes bounds a PUT /v1/blobs body (one job input file); larger ones get 413. It is
	// the only route past MaxAdminBody: the admin listener streams request bodies, the upload
	// into the blob store and every other route's into memory, bounded by MaxAdminBody.
	MaxBlobBytes int64
	// BlobTimeout replaces ReadTimeout for reading an authorized blob upload and WriteTimeout
	// for writing a blob download, and bounds the blob store operation.
	BlobTimeout time.Duration
	// QueueOpTimeout bounds a job submit or a task retry (a Raft commit).
	QueueOpTimeout time.Duration
	// Warnings are shown in /readyz's details (an insecure cluster); they do not make the
	// host unready.
	Warnings []string
}

// DefaultConfig returns the host's defaults.
func DefaultConfig() Config {
	return Config{
		// 10s: a slow client cannot hold a connection; any sane request arrives within it.
		ReadTimeout: 10 * time.Second,
		// 10s: a response that cannot be written in 10s goes to a client that is not reading.
		WriteTimeout: 10 * time.Second,
		// 60s: keep-alive saves handshakes for active clients without hoarding sockets.
		IdleTimeout: 60 * time.Second,
		// 16 KiB: four times the largest header sets browsers send; more is an attack.
		MaxHeaderBytes: 16 << 10,
		// 4 MiB: far above API payloads, and the guest buffer gets a copy of it.
		MaxIngressBody: 4 << 20,
		// 64 MiB: a large Go guest is a few MB; the runtime's input cap is 64 MiB too.
		MaxAdminBody: 64 << 20,
		// 64: a browser opens 6 connections, a client pool a few dozen; 45 addresses at 256 each
		// filled the 10,000 slots. A proxy or NAT in front needs a higher value.
		MaxConnsPerIP: 64,
		// 10000: bounded memory under a connection flood (fasthttp's per-connection cost is small).
		MaxConns: 10000,
		// 5s: a forwarded election operation waits up to 3s for a Raft leader, plus the commit.
		ElectionOpTimeout: 5 * time.Second,
		// 30s: a long poll that returns well before proxies and clients give up on idle requests.
		WatchWait: 30 * time.Second,
		// 5m: bounds how long one watch holds a connection; the write timeout does not apply to
		// the wait (fasthttp arms it only when the response is written).
		MaxWatchWait: 5 * time.Minute,
		// 256 MiB: a large job input (a log, an archive) fits, and uploads stream to disk.
		MaxBlobBytes: 256 << 20,
		// 5m: a 256 MiB upload or download over a 1 MB/s link.
		BlobTimeout: 5 * time.Minute,
		// 30s: a submit may wait seconds for a Raft leader, then commits every input in one entry.
		QueueOpTimeout: 30 * time.Second,
	}
}

// Server runs the admin and ingress listeners of one pod.
type Server struct {
	cfg     Config
	sup     *supervisor.Supervisor
	log     *slog.Logger
	admin   *fasthttp.Server
	ingress *fasthttp.Server
	metrics *metricsHandler
	console *consoleState // the web console's sampler and memory (console.go)

	consoleOnce sync.Once

	ctx    context.Context // ends at Shutdown: log followers stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // Serve goroutines and log followers

	once sync.Once
	err  error

	lnMu sync.Mutex
	lns  []*listener.Listener // served listeners, for readiness (listeners.go)

	appTokens atomic.Pointer[map[string]string] // set by SetAppTokens; nil: cfg.AppTokens

	// adminAddr is the admin listener's address, set by Serve before it serves: a host without
	// a token answers to it by that name too (hostServed).
	adminAddr string
}

// New returns a server for sup. Nothing listens until Serve.
func New(cfg Config, sup *supervisor.Supervisor) (*Server, error) {
	if err := checkAppTokens(cfg.Token, cfg.AppTokens); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if sup == nil {
		return nil, errors.New("admin: no supervisor")
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, sup: sup, log: cfg.Logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	m, err := newMetricsHandler(sup, cfg.Queue)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.console = newConsoleState(sup)
	if err := m.reg.Register(newConsoleCollector(cfg, sup.Pod().Metadata.Name)); err != nil {
		return nil, err
	}
	if cfg.Scatter != nil && (cfg.ScatterPath == "" || cfg.ScatterPath[0] != '/') {
		return nil, fmt.Errorf("admin: scatter path %q must start with /", cfg.ScatterPath)
	}
	ing := ingress.New(s.ctx, sup, cfg.Scatter, cfg.ScatterPath)
	s.ingress = s.server("wasmpod-ingress", ing.Serve, cfg.MaxIngressBody)
	s.admin = s.adminServer()
	return s, nil
}

// withDefaults is cfg with DefaultConfig's value for every unset (zero or negative) limit and
// a discarding Logger for a nil one.
func (cfg Config) withDefaults() Config {
	d := DefaultConfig()
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = d.ReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = d.WriteTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = d.IdleTimeout
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if cfg.MaxIngressBody <= 0 {
		cfg.MaxIngressBody = d.MaxIngressBody
	}
	if cfg.MaxAdminBody <= 0 {
		cfg.MaxAdminBody = d.MaxAdminBody
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = d.MaxConnsPerIP
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = d.MaxConns
	}
	if cfg.IdleHeadroom <= 0 || cfg.IdleHeadroom >= cfg.MaxConns {
		cfg.IdleHeadroom = max(1, cfg.MaxConns/10)
	}
	if cfg.ElectionOpTimeout <= 0 {
		cfg.ElectionOpTimeout = d.ElectionOpTimeout
	}
	if cfg.WatchWait <= 0 {
		cfg.WatchWait = d.WatchWait
	}
	if cfg.MaxWatchWait <= 0 {
		cfg.MaxWatchWait = d.MaxWatchWait
	}
	if cfg.MaxBlobBytes <= 0 {
		cfg.MaxBlobBytes = d.MaxBlobBytes
	}
	if cfg.BlobTimeout <= 0 {
		cfg.BlobTimeout = d.BlobTimeout
	}
	if cfg.QueueOpTimeout <= 0 {
		cfg.QueueOpTimeout = d.QueueOpTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// adminServer is the admin listener's server. It streams request bodies: fasthttp reads at
// most one byte of a body before serveAdmin has checked the credential on the headers and the
// route's body limit (MaxRequestBodySize 1; a longer body is left in the stream). PUT
// /v1/blobs then streams into the blob store; every other route's body is read into memory,
// bounded by the route's limit (bodyLimit). A client sending "Expect: 100-continue" is refused
// (401, 403, 413) before it sends its body.
func (s *Server) adminServer() *fasthttp.Server {
	srv := s.server("wasmpod-admin", s.serveAdmin, 1)
	srv.StreamRequestBody = true
	srv.HeaderReceived = framingHeaderHook(s.blobTimeouts)
	srv.ExpectHandler = s.expectAdmin
	return srv
}

// serveAdmin checks the Host of a request on a host without a token (hostServed), the
// credential of a request that may change something (any method but GET and HEAD) on its
// headers, then bounds its body by the route's limit, then routes.
func (s *Server) serveAdmin(ctx *fasthttp.RequestCtx) {
	method, path := string(ctx.Method()), string(ctx.Path())
	if !s.hostServed(ctx) {
		if ctx.Request.Header.ContentLength() != 0 {
			ctx.SetConnectionClose() // the body is unread
		}
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() && !s.credentialed(ctx, path) {
		if ctx.Request.Header.ContentLength() != 0 {
			ctx.SetConnectionClose() // the body is unread
		}
		return
	}
	limit, route := s.bodyLimit(method, path)
	if !isBlobUpload(ctx) && !bufferBody(ctx, limit, route) {
		return
	}
	s.route(ctx)
}

// credentialed checks the bearer credential a route needs on the request's headers, answering
// 401 or 403 itself when it is missing or wrong: an app's or the admin token for an election
// operation, the admin token for everything else.
func (s *Server) credentialed(ctx *fasthttp.RequestCtx, path string) bool {
	if _, op, ok := electionPath(path); ok && op != "" && op != "watch" {
		_, ok := s.electionCaller(ctx)
		return ok
	}
	return s.authorized(ctx)
}

// expectAdmin answers "Expect: 100-continue": the credential and the announced body length are
// checked before the client is told to send the body.
func (s *Server) expectAdmin(ctx *fasthttp.RequestCtx) int {
	if ambiguousFraming(&ctx.Request.Header) {
		return fasthttp.StatusBadRequest
	}
	if s.foreignHost(ctx) {
		return fasthttp.StatusMisdirectedRequest // as hostServed answers, before the body comes
	}
	path := string(ctx.Path())
	if !ctx.IsGet() && !ctx.IsHead() {
		// As credentialed answers: 403 when no token could be right, else 401.
		c := s.callerOf(&ctx.Request.Header)
		_, op, isElection := electionPath(path)
		electionOp := isElection && op != "" && op != "watch"
		switch {
		case c.admin, electionOp && c.app != "":
		case s.cfg.Token == "" && (!electionOp || len(s.apps()) == 0):
			return fasthttp.StatusForbidden
		default:
			return fasthttp.StatusUnauthorized
		}
	}
	limit, _ := s.bodyLimit(string(ctx.Method()), path)
	if int64(ctx.Request.Header.ContentLength()) > limit {
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusContinue
}

// maxControlBody bounds the body of every admin route that takes no upload (lifecycle actions,
// scale, elections, task retry, and any GET): their JSON bodies are under 1 KiB, and 32
// concurrent 64 KiB bodies are 2 MiB.
const maxControlBody = 64 << 10

// bodyLimit is the largest request body the admin route of method and path takes, and the
// route's name for the 413 answer.
func (s *Server) bodyLimit(method, path string) (int64, string) {
	switch {
	case method == fasthttp.MethodPut && path == "/v1/blobs":
		return s.cfg.MaxBlobBytes, "PUT /v1/blobs"
	case method == fasthttp.MethodPut:
		if name, rest, ok := modulePath(path); ok && name != "" && rest == "wasm" {
			return int64(s.cfg.MaxAdminBody), "PUT /v1/modules/{name}/wasm"
		}
	case method == fasthttp.MethodPost:
		segs := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
		if _, ok := matchQueueRoute([]string{"queue", "pipelines", "*", "jobs"}, segs); ok {
			return int64(min(maxSubmitBody, s.cfg.MaxAdminBody)), "POST /v1/queue/pipelines/{name}/jobs"
		}
	}
	return maxControlBody, method + " " + path
}

// bufferBody reads a streamed request body into memory when it is at most limit bytes, else
// answers 413 naming the limit and the route (or 400 when the body cannot be read) and closes
// the connection, as the rest of the body is left unread.
func bufferBody(ctx *fasthttp.RequestCtx, limit int64, route string) bool {
	if !ctx.Request.IsBodyStream() || ctx.Request.Header.ContentLength() == 0 {
		return true
	}
	tooLarge := func() bool {
		ctx.SetConnectionClose()
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than the %d-byte limit of %s", limit, route))
		return false
	}
	if int64(ctx.Request.Header.ContentLength()) > limit {
		return tooLarge()
	}
	b, err := io.ReadAll(io.LimitReader(ctx.RequestBodyStream(), limit+1))
	switch {
	case err != nil:
		ctx.SetConnectionClose()
		writeError(ctx, bodyReadStatus(err), fmt.Errorf("reading the request body: %v", err))
		return false
	case int64(len(b)) > limit:
		return tooLarge()
	}
	ctx.Request.SetBodyRaw(b) // closes the stream
	return true
}

// bodyReadStatus is 408 for a body that timed out, else 400.
func bodyReadStatus(err error) int {
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return fasthttp.StatusRequestTimeout
	}
	return fasthttp.StatusBadRequest
}

// server is a fasthttp server with cfg's limits. fasthttp's own per-IP limit stays off: Serve
// applies MaxConnsPerIP with limitPerIP, as fasthttp's per-IP wrapper can make Shutdown crash
// the host (see perip.go).
func (s *Server) server(name string, h fasthttp.RequestHandler, maxBody int) *fasthttp.Server {
	var connState func(net.Conn, fasthttp.ConnState)
	if r := newIdleReaper(s.cfg.MaxConns, s.cfg.IdleHeadroom, s.log, name); r != nil {
		connState = r.connState
	}
	return &fasthttp.Server{
		ConnState:                     connState,
		Name:                          name,
		Handler:                       rejectAmbiguousFraming(h),
		HeaderReceived:                framingHeaderHook(nil),
		ReadTimeout:                   s.cfg.ReadTimeout,
		WriteTimeout:                  s.cfg.WriteTimeout,
		IdleTimeout:                   s.cfg.IdleTimeout,
		ReadBufferSize:                s.cfg.MaxHeaderBytes,
		MaxRequestBodySize:            maxBody,
		MaxConnsPerIP:                 0, // limitPerIP in Serve instead
		Concurrency:                   s.cfg.MaxConns,
		CloseOnShutdown:               true,
		NoDefaultDate:                 false,
		DisableHeaderNamesNormalizing: false,
		// No route takes multipart forms; pre-parsing one would read its body before the
		// handler checks anything.
		DisablePreParseMultipartForm: true,
		Logger:                       slogAdapter{s.log},
		ErrorHandler:                 requestError,
	}
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, args ...any) { a.l.Debug(fmt.Sprintf(format, args...)) }

// Serve starts serving on the two listeners (either may be nil) and returns at once, each
// limited to MaxConnsPerIP connections per client address. The listeners are closed by
// Shutdown.
func (s *Server) Serve(adminLn, ingressLn net.Listener) {
	if adminLn != nil {
		s.adminAddr = adminLn.Addr().String()
		s.startConsole()
	}
	for _, p := range []struct {
		srv *fasthttp.Server
		ln  net.Listener
	}{{s.admin, adminLn}, {s.ingress, ingressLn}} {
		if p.ln == nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := p.srv.Serve(limitPerIP(s.resilient(p.srv.Name, p.ln), s.cfg.MaxConnsPerIP, s.log)); err != nil {
				s.log.Error("listener stopped", "server", p.srv.Name, "err", err)
			}
		}()
	}
}

// ShutdownIngress stops the ingress listener: no new connections, in-flight requests finish
// (within ctx).
func (s *Server) ShutdownIngress(ctx context.Context) error {
	return s.ingress.ShutdownWithContext(ctx)
}

// Shutdown closes both listeners, ends log followers, and waits for in-flight requests until
// ctx ends. Idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() {
		s.cancel()
		e1 := s.ingress.ShutdownWithContext(ctx)
		e2 := s.admin.ShutdownWithContext(ctx)
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.err = ctx.Err()
		}
		s.err = errors.Join(e1, e2, s.err)
	})
	return s.err
}

// requestError answers requests fasthttp could not read: 413 for a body over the limit, 408 for
// a read timeout, 431 for oversized headers, else 400.
func requestError(ctx *fasthttp.RequestCtx, err error) {
	var se *fasthttp.ErrSmallBuffer
	switch {
	case len(ctx.Request.Header.RawHeaders()) > 0 && ambiguousFraming(&ctx.Request.Header):
		// Only a request whose headers were read can be judged; an unread one (the read
		// failed before or inside the header block) has no Host yet and is not a framing attack.
		writeAmbiguousFraming(ctx)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ctx.Error("request body too large\n", fasthttp.StatusRequestEntityTooLarge)
	case errors.As(err, &se):
		ctx.Error("request headers too large\n", fasthttp.StatusRequestHeaderFieldsTooLarge)
	default:
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			ctx.Error("request timeout\n", fasthttp.StatusRequestTimeout)
			return
		}
		ctx.Error("bad request\n", fasthttp.StatusBadRequest)
	}
}
