// Package peerhttp serves a scatter.Endpoint over fasthttp, the transport of wasmpod's internal
// node-to-node endpoint. It is internal so that no fasthttp type appears in an exported API; the
// host's own fasthttp listener uses the same few lines around scatter.Endpoint.Handle.
package peerhttp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/spans"
)

// Config bounds the server side of the internal endpoint. Start from DefaultConfig.
type Config struct {
	// ReadTimeout bounds reading one request (headers and body) once it started arriving.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one answer.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int
	// Concurrency bounds the connections served at once.
	Concurrency int
}

// DefaultConfig returns the configuration the wasmpod host uses.
func DefaultConfig() Config {
	return Config{
		// 30 s: the endpoint's MaxBudget; a request body on a LAN arrives in microseconds.
		ReadTimeout: 30 * time.Second,
		// 30 s: likewise; the answer is written right after the leaf returns.
		WriteTimeout: 30 * time.Second,
		// 120 s: longer than the clients' 90 s idle timeout, so clients close first.
		IdleTimeout: 120 * time.Second,
		// 16 MiB: the runtime's default input limit.
		MaxBodyBytes: 16 << 20,
		// fasthttp's default (256 Ki connections) is far more than a cluster's roots need.
		Concurrency: 16 << 10,
	}
}

var bufs = sync.Pool{New: func() any { return new([]byte) }}

var (
	headerFeatures = []byte(scatter.HeaderFeatures)
	featureBatch   = []byte(scatter.FeatureBatch)
)

// Handler adapts e to fasthttp.
func Handler(e *scatter.Endpoint) fasthttp.RequestHandler {
	return func(c *fasthttp.RequestCtx) {
		if !c.IsPost() {
			c.Error("POST only", http.StatusMethodNotAllowed)
			return
		}
		c.Response.Header.SetCanonical(headerFeatures, featureBatch)
		bp := bufs.Get().(*[]byte)
		if string(c.Path()) == scatter.PathBatch {
			wr := scatter.WireRequest{
				Path:      c.Path(),
				RequestID: c.Request.Header.Peek(scatter.HeaderRequestID),
				Budget:    c.Request.Header.Peek(scatter.HeaderBudget),
				Body:      c.PostBody(),
				Cancel:    string(c.Request.Header.Peek(scatter.HeaderCancel)) == "1",
			}
			if spans.On() {
				wr.Traceparent = c.Request.Header.Peek(spans.HeaderTraceparent)
			}
			run, status, out := e.HandleBatch(wr, (*bp)[:0])
			c.SetStatusCode(status)
			c.SetContentType("application/octet-stream")
			if run == nil {
				c.SetBody(out)
			} else {
				// Each shard's frame is one chunk, flushed as the shard finishes, written on
				// this connection's goroutine after the handler returns (fasthttp frames a
				// BodyWriterTo's writes directly: no pipe, no extra goroutine).
				c.Response.SetBodyStream(batchBody{run}, -1)
			}
			*bp = out[:0]
			bufs.Put(bp)
			return
		}
		// context.Background, not c: a parent of another type would cost a goroutine per
		// request to propagate cancellation. The budget header bounds the call.
		wr := scatter.WireRequest{
			Path:      c.Path(),
			RequestID: c.Request.Header.Peek(scatter.HeaderRequestID),
			Budget:    c.Request.Header.Peek(scatter.HeaderBudget),
			Body:      c.PostBody(),
			Cancel:    string(c.Request.Header.Peek(scatter.HeaderCancel)) == "1",
		}
		if spans.On() {
			wr.Traceparent = c.Request.Header.Peek(spans.HeaderTraceparent)
		}
		status, out := e.Handle(context.Background(), wr, (*bp)[:0])
		c.SetStatusCode(status)
		c.SetContentType("application/octet-stream")
		c.SetBody(out)
		*bp = out[:0]
		bufs.Put(bp)
	}
}

// Server serves e on a fasthttp server with cfg's limits.
type Server struct {
	srv  *fasthttp.Server
	once sync.Once
	err  error
}

// NewServer returns a server for e; call Serve with a listener.
func NewServer(e *scatter.Endpoint, cfg Config) *Server {
	return &Server{srv: &fasthttp.Server{
		Handler:                       Handler(e),
		Name:                          "wasmpod",
		ReadTimeout:                   cfg.ReadTimeout,
		WriteTimeout:                  cfg.WriteTimeout,
		IdleTimeout:                   cfg.IdleTimeout,
		MaxRequestBodySize:            cfg.MaxBodyBytes,
		Concurrency:                   cfg.Concurrency,
		MaxConnsPerIP:                 0, // keep 0: fasthttp's per-IP wrapper can panic in Shutdown
		DisableHeaderNamesNormalizing: true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
	}}
}

// Serve serves on ln until Shutdown; it returns nil after a Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting, waits for the requests in flight to end (or ctx) and closes the
// connections. Idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() { s.err = s.srv.ShutdownWithContext(ctx) })
	return s.err
}

// batchBody streams a batched answer: fasthttp calls WriteTo with a writer that sends each
// Write as one chunk and flushes it.
type batchBody struct{ run *scatter.BatchRun }

func (b batchBody) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	err := b.run.Run(context.Background(), cw, nil)
	return cw.n, err
}

func (batchBody) SupportsBodyWriteTo() bool { return true }

// Read is never called: fasthttp writes a chunked BodyWriterTo with WriteTo.
func (batchBody) Read([]byte) (int, error) {
	return 0, errors.New("peerhttp: batch answer is written with WriteTo")
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
