// Package admin serves a pod over HTTP with fasthttp: the ingress listener routes requests to
// the pod's main module, and the admin listener is the paper's "upward" and "downward"
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
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/host/internal/listener"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
)

// Config configures the servers. Start from DefaultConfig.
type Config struct {
	// Token guards the mutating admin routes (compared in constant time). Empty disables them.
	Token string
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
	// MaxConns bounds concurrent connections per listener.
	MaxConns int
	// Logger is the host's log. Nil discards.
	Logger *slog.Logger
	// Scatter, when set, serves ScatterPath (exact match, POST) on the ingress listener: the
	// body is the request, the merged answer the response, with Wasmpod-Partial and
	// Wasmpod-Missing-Shards headers when shards are missing. Other paths go to main.
	Scatter     ScatterRoot
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
		// 256: many keep-alive connections from one proxy are fine; thousands are an attack.
		MaxConnsPerIP: 256,
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
}

// New returns a server for sup. Nothing listens until Serve.
func New(cfg Config, sup *supervisor.Supervisor) (*Server, error) {
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
	ing := newIngress(sup, s.ctx)
	if cfg.Scatter != nil {
		if cfg.ScatterPath == "" || cfg.ScatterPath[0] != '/' {
			return nil, fmt.Errorf("admin: scatter path %q must start with /", cfg.ScatterPath)
		}
		ing.scatter, ing.scatterPath = cfg.Scatter, []byte(cfg.ScatterPath)
	}
	s.ingress = s.server("wasmpod-ingress", ing.serve, cfg.MaxIngressBody)
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

// adminServer is the admin listener's server. It streams request bodies, so that PUT
// /v1/blobs can take up to MaxBlobBytes without holding the file in memory; serveAdmin reads
// every other route's body into memory first, bounded by MaxAdminBody as before.
func (s *Server) adminServer() *fasthttp.Server {
	srv := s.server("wasmpod-admin", s.serveAdmin, s.cfg.MaxAdminBody)
	srv.StreamRequestBody = true
	srv.HeaderReceived = s.blobTimeouts
	return srv
}

// serveAdmin bounds the request body, then routes.
func (s *Server) serveAdmin(ctx *fasthttp.RequestCtx) {
	if !isBlobUpload(ctx) && !bufferBody(ctx, s.cfg.MaxAdminBody) {
		return
	}
	s.route(ctx)
}

// bufferBody reads a streamed request body into memory when it is at most limit bytes, else
// answers 413 (or 400 when the body cannot be read) and closes the connection, as the rest of
// the body is left unread.
func bufferBody(ctx *fasthttp.RequestCtx, limit int) bool {
	if !ctx.Request.IsBodyStream() || ctx.Request.Header.ContentLength() == 0 {
		return true
	}
	tooLarge := func() bool {
		ctx.SetConnectionClose()
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", limit))
		return false
	}
	if ctx.Request.Header.ContentLength() > limit {
		return tooLarge()
	}
	b, err := io.ReadAll(io.LimitReader(ctx.RequestBodyStream(), int64(limit)+1))
	switch {
	case err != nil:
		ctx.SetConnectionClose()
		writeError(ctx, bodyReadStatus(err), fmt.Errorf("reading the request body: %v", err))
		return false
	case len(b) > limit:
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
	return &fasthttp.Server{
		Name:                          name,
		Handler:                       h,
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
		Logger:                        slogAdapter{s.log},
		ErrorHandler:                  requestError,
	}
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, args ...any) { a.l.Debug(fmt.Sprintf(format, args...)) }

// Serve starts serving on the two listeners (either may be nil) and returns at once, each
// limited to MaxConnsPerIP connections per client address. The listeners are closed by
// Shutdown.
func (s *Server) Serve(adminLn, ingressLn net.Listener) {
	if adminLn != nil {
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
