package scatter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/internal/spans"
)

// PeerConfig tunes the client to one peer's internal endpoint. Start from DefaultPeerConfig.
type PeerConfig struct {
	// MaxConns bounds the keep-alive connections to the peer (calls in flight at once).
	MaxConns int
	// DialTimeout bounds connecting (the request deadline, if earlier, wins).
	DialTimeout time.Duration
	// IdleTimeout closes keep-alive connections unused this long.
	IdleTimeout time.Duration
	// MaxResponseBytes bounds an answer's body.
	MaxResponseBytes int
	// DefaultBudget is the deadline of a call whose context has none.
	DefaultBudget time.Duration
	// Dial, if set, opens connections to the peer (wasmpod passes the cluster's mutual TLS
	// dialer, so that only members talk to each other's endpoints); nil dials plain TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// DefaultPeerConfig returns the configuration the wasmpod host uses.
func DefaultPeerConfig() PeerConfig {
	return PeerConfig{
		// 512: a root's MaxInFlight requests times a few shards per peer, without a connection
		// per call on a busy node.
		MaxConns: 512,
		// 1 s: a LAN connect takes well under a millisecond; this only matters without a deadline.
		DialTimeout: time.Second,
		// 90 s: net/http's default; keeps connections warm across quiet spells.
		IdleTimeout: 90 * time.Second,
		// 16 MiB: the runtime's default output limit of the leaf that produced the part.
		MaxResponseBytes: 16 << 20,
		// 5 s: the runtime's default call timeout.
		DefaultBudget: 5 * time.Second,
	}
}

func (c *PeerConfig) validate() error {
	if c.MaxConns <= 0 || c.DialTimeout <= 0 || c.IdleTimeout <= 0 || c.MaxResponseBytes <= 0 || c.DefaultBudget <= 0 {
		return fmt.Errorf("%w: peer config: every field must be positive", ErrInvalid)
	}
	return nil
}

// Peer is a pooled keep-alive client to one peer's internal endpoint; Leaf gives the remote
// replica of one of the shards it serves. Close it when the peer leaves for good.
type Peer interface {
	// Leaf returns the remote replica of shard on this peer.
	Leaf(shard string) Leaf
	// Addr is the peer's host:port.
	Addr() string
	// Close closes idle connections and makes later calls fail with ErrClosed. Idempotent.
	Close() error
}

// NewFastHTTPPeer returns a client to the internal endpoint at addr (host:port) over a pooled
// keep-alive fasthttp connection set: the transport wasmpod uses between nodes.
func NewFastHTTPPeer(addr string, cfg PeerConfig) (Peer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dialer := &fasthttp.TCPDialer{Concurrency: 0}
	p := &fastPeer{cfg: cfg, addr: addr, hc: &fasthttp.HostClient{
		Addr:                addr,
		MaxConns:            cfg.MaxConns,
		MaxIdleConnDuration: cfg.IdleTimeout,
		MaxResponseBodySize: cfg.MaxResponseBytes,
		MaxConnWaitTimeout:  cfg.DefaultBudget, // bounded by each request's deadline anyway
		// Never retry by itself: a retry is a new attempt, which the Gather decides on.
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			if cfg.Dial != nil {
				ctx, cancel := context.WithTimeout(context.Background(), min(timeout, cfg.DialTimeout))
				defer cancel()
				return cfg.Dial(ctx, addr)
			}
			return dialer.DialTimeout(addr, min(timeout, cfg.DialTimeout))
		},
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
	}}
	return p, nil
}

type fastPeer struct {
	cfg    PeerConfig
	addr   string
	hc     *fasthttp.HostClient
	closed atomic.Bool
}

func (p *fastPeer) Addr() string { return p.addr }

func (p *fastPeer) Close() error {
	if p.closed.CompareAndSwap(false, true) {
		p.hc.CloseIdleConnections()
	}
	return nil
}

func (p *fastPeer) Leaf(shard string) Leaf {
	return &fastLeaf{p: p, path: []byte(PathPrefix + shard)}
}

type fastLeaf struct {
	p    *fastPeer
	path []byte
}

var (
	headerRequestID   = []byte(HeaderRequestID)
	headerBudget      = []byte(HeaderBudget)
	headerTraceparent = []byte(spans.HeaderTraceparent)
	methodPost        = []byte(http.MethodPost)
)

func (l *fastLeaf) Call(ctx context.Context, id RequestID, in, dst []byte) ([]byte, error) {
	p := l.p
	if p.closed.Load() {
		return dst, ErrClosed
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(p.cfg.DefaultBudget)
	}
	budget := time.Until(deadline)
	if budget <= 0 {
		return dst, ErrDeadline
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethodBytes(methodPost)
	req.SetRequestURIBytes(l.path)
	req.Header.SetHost(p.addr)
	var hb [40]byte
	req.Header.SetCanonical(headerRequestID, id.appendHex(hb[:0]))
	req.Header.SetCanonical(headerBudget, appendBudget(hb[:0], budget))
	if spans.On() {
		var tb [64]byte
		if tp := appendTraceparent(tb[:0], ctx); len(tp) > 0 {
			req.Header.SetCanonical(headerTraceparent, tp)
		}
	}
	req.SetBodyRaw(in)
	if ctx.Done() != nil {
		// fasthttp's client cannot abort a request in flight: when the root's request is
		// cancelled (its client went away), the peer is told to cut the attempt, which then
		// answers at once.
		stop := context.AfterFunc(ctx, func() {
			if errors.Is(ctx.Err(), context.Canceled) {
				l.cancel(id)
			}
		})
		defer stop()
	}
	if err := p.hc.DoDeadline(req, resp, deadline); err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) {
			return dst, fmt.Errorf("%w: peer %s: %w", ErrDeadline, p.addr, err)
		}
		return dst, fmt.Errorf("%w: peer %s: %w", ErrRemote, p.addr, err)
	}
	return decodeAnswer(resp.StatusCode(), resp.Body(), dst)
}

// NewNetHTTPPeer is NewFastHTTPPeer over net/http: the same protocol through the standard
// library's client, kept as the baseline of the transport comparison (bench/).
func NewNetHTTPPeer(addr string, cfg PeerConfig) (Peer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dial := (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	if cfg.Dial != nil {
		dial = func(ctx context.Context, _, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
			defer cancel()
			return cfg.Dial(ctx, addr)
		}
	}
	tr := &http.Transport{
		DialContext:         dial,
		MaxIdleConns:        cfg.MaxConns,
		MaxIdleConnsPerHost: cfg.MaxConns,
		MaxConnsPerHost:     cfg.MaxConns,
		IdleConnTimeout:     cfg.IdleTimeout,
		DisableCompression:  true,
	}
	return &netPeer{cfg: cfg, addr: addr, base: "http://" + addr + PathPrefix, tr: tr, client: &http.Client{Transport: tr}}, nil
}

type netPeer struct {
	cfg    PeerConfig
	addr   string
	base   string
	tr     *http.Transport
	client *http.Client
	closed atomic.Bool
	bufs   sync.Pool // *bytes.Buffer
}

func (p *netPeer) Addr() string { return p.addr }

func (p *netPeer) Close() error {
	if p.closed.CompareAndSwap(false, true) {
		p.tr.CloseIdleConnections()
	}
	return nil
}

func (p *netPeer) Leaf(shard string) Leaf { return &netLeaf{p: p, url: p.base + shard} }

type netLeaf struct {
	p   *netPeer
	url string
}

func (l *netLeaf) Call(ctx context.Context, id RequestID, in, dst []byte) ([]byte, error) {
	p := l.p
	if p.closed.Load() {
		return dst, ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.DefaultBudget)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	budget := time.Until(deadline)
	if budget <= 0 {
		return dst, ErrDeadline
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(in))
	if err != nil {
		return dst, fmt.Errorf("%w: peer %s: %w", ErrRemote, p.addr, err)
	}
	req.Header[HeaderRequestID] = []string{id.String()}
	req.Header[HeaderBudget] = []string{string(appendBudget(nil, budget))}
	if spans.On() {
		if tp := appendTraceparent(nil, ctx); len(tp) > 0 {
			req.Header[spans.HeaderTraceparent] = []string{string(tp)}
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return dst, fmt.Errorf("%w: peer %s: %w", ErrDeadline, p.addr, err)
		}
		return dst, fmt.Errorf("%w: peer %s: %w", ErrRemote, p.addr, err)
	}
	defer resp.Body.Close()
	buf, _ := p.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer p.bufs.Put(buf)
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, int64(p.cfg.MaxResponseBytes)+1))
	if err != nil {
		return dst, fmt.Errorf("%w: peer %s: reading answer: %w", ErrRemote, p.addr, err)
	}
	if n > int64(p.cfg.MaxResponseBytes) {
		return dst, fmt.Errorf("%w: peer %s: answer larger than %d bytes", ErrMalformed, p.addr, p.cfg.MaxResponseBytes)
	}
	return decodeAnswer(resp.StatusCode, buf.Bytes(), dst)
}
