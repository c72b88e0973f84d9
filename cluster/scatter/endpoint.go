package scatter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/internal/spans"
)

// EndpointConfig tunes an Endpoint. Start from DefaultEndpointConfig.
type EndpointConfig struct {
	// DedupWindow is how long a (request id, shard) pair is remembered to drop duplicates. It
	// should exceed the longest request deadline of any root.
	DedupWindow time.Duration
	// DedupEntries bounds the pairs remembered; the oldest are forgotten first.
	DedupEntries int
	// MaxBudget caps the time budget a root may ask for.
	MaxBudget time.Duration
	// MaxBodyBytes bounds a request body (ServeHTTP; other transports enforce their own).
	MaxBodyBytes int64
}

// DefaultEndpointConfig returns the configuration the wasmpod host uses.
func DefaultEndpointConfig() EndpointConfig {
	return EndpointConfig{
		// 10 s: well past DefaultConfig's 200 ms deadline and the runtime's 5 s call timeout,
		// so a hedge never outlives the memory of its original.
		DedupWindow: 10 * time.Second,
		// 64 Ki pairs (~2.5 MiB): 6,500 shard requests per second for the whole window.
		DedupEntries: 64 << 10,
		// 30 s: no request is worth more, whatever a (possibly buggy) root asks.
		MaxBudget: 30 * time.Second,
		// 16 MiB: the runtime's default input limit.
		MaxBodyBytes: 16 << 20,
	}
}

// Endpoint is a node's internal scatter endpoint: it serves the shards this node holds to roots
// on other nodes, dropping duplicates of a request for a shard. Register shards before serving.
type Endpoint struct {
	cfg    EndpointConfig
	mu     sync.RWMutex // guards shards during Register
	shards map[string]*epShard
	closed atomic.Bool

	dmu   sync.Mutex // guards seen and ring
	seen  map[dedupKey]struct{}
	ring  []dedupEntry
	head  int // oldest entry
	count int

	bufs sync.Pool // *[]byte for ServeHTTP

	running running // attempts in flight, for cancellation (cancel.go)
}

type epShard struct {
	index uint32
	leaf  Leaf
}

type dedupKey struct {
	id    RequestID
	shard uint32
}

type dedupEntry struct {
	key     dedupKey
	expires int64 // unix ns
}

// NewEndpoint returns an endpoint serving no shard yet.
func NewEndpoint(cfg EndpointConfig) (*Endpoint, error) {
	if cfg.DedupWindow <= 0 || cfg.DedupEntries <= 0 || cfg.MaxBudget <= 0 || cfg.MaxBodyBytes <= 0 {
		return nil, fmt.Errorf("%w: endpoint config: every field must be positive", ErrInvalid)
	}
	return &Endpoint{
		cfg:    cfg,
		shards: map[string]*epShard{},
		seen:   make(map[dedupKey]struct{}, cfg.DedupEntries),
		ring:   make([]dedupEntry, cfg.DedupEntries),
	}, nil
}

// Register serves shard with leaf (usually a ModuleLeaf).
func (e *Endpoint) Register(shard string, leaf Leaf) error {
	if shard == "" || len(shard) > maxShardName || leaf == nil {
		return fmt.Errorf("%w: register: empty or too long shard name, or nil leaf", ErrInvalid)
	}
	for i := 0; i < len(shard); i++ {
		if c := shard[i]; c <= ' ' || c == '/' || c >= 0x7f {
			return fmt.Errorf("%w: register: shard name %q has a byte %#x that is not allowed", ErrInvalid, shard, c)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.shards[shard]; ok {
		return fmt.Errorf("%w: register: shard %q already registered", ErrInvalid, shard)
	}
	e.shards[shard] = &epShard{index: uint32(len(e.shards)), leaf: leaf}
	return nil
}

// Close makes every later call fail with ErrClosed (503 on the wire). Calls in flight finish.
// Idempotent.
func (e *Endpoint) Close() error {
	e.closed.Store(true)
	return nil
}

// firstSeen records (id, shard) and reports whether it is new.
func (e *Endpoint) firstSeen(k dedupKey, now int64) bool {
	e.dmu.Lock()
	defer e.dmu.Unlock()
	// Forget expired pairs, and the oldest one if the ring is full.
	for e.count > 0 && (e.count == len(e.ring) || e.ring[e.head].expires <= now) {
		delete(e.seen, e.ring[e.head].key)
		e.head = (e.head + 1) % len(e.ring)
		e.count--
	}
	if _, dup := e.seen[k]; dup {
		return false
	}
	e.seen[k] = struct{}{}
	e.ring[(e.head+e.count)%len(e.ring)] = dedupEntry{key: k, expires: now + int64(e.cfg.DedupWindow)}
	e.count++
	return true
}

// Serve runs shard's leaf for request id on body, appending the part to dst. A second call with
// the same id and shard within the dedup window fails with ErrDuplicate without running the
// leaf. ctx should carry the request's deadline.
func (e *Endpoint) Serve(ctx context.Context, shard string, id RequestID, body, dst []byte) ([]byte, error) {
	return e.serve(ctx, []byte(shard), id, body, dst)
}

func (e *Endpoint) serve(ctx context.Context, shard []byte, id RequestID, body, dst []byte) ([]byte, error) {
	if e.closed.Load() {
		return dst, ErrClosed
	}
	e.mu.RLock()
	s := e.shards[string(shard)]
	e.mu.RUnlock()
	if s == nil {
		return dst, fmt.Errorf("%w: %q", ErrUnknownShard, shard)
	}
	if !e.firstSeen(dedupKey{id: id, shard: s.index}, time.Now().UnixNano()) {
		return dst, fmt.Errorf("%w: request %s for shard %q", ErrDuplicate, id, shard)
	}
	ctx, done := e.running.track(ctx, dedupKey{id: id, shard: s.index})
	defer done()
	out, err := s.leaf.Call(ctx, id, body, dst)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrDeadline) {
		err = fmt.Errorf("%w: %w", ErrDeadline, err)
	}
	return out, err
}

// Handle serves one request as any transport received it and returns the answer's status and
// body (the part appended to dst on success, an error message otherwise). A fasthttp server
// adapts it in a few lines (see internal/peerhttp).
func (e *Endpoint) Handle(ctx context.Context, r WireRequest, dst []byte) (status int, body []byte) {
	p, err := parseWire(r, e.cfg.MaxBudget)
	if err != nil {
		return statusOf(err), append(dst, errorBody(err)...)
	}
	if r.Cancel {
		return e.cancel(p, dst)
	}
	ctx, cancel := context.WithTimeout(ctx, p.budget)
	defer cancel()
	var span trace.Span
	if spans.On() && len(r.Traceparent) > 0 {
		ctx, span = serveStart(ctx, r.Traceparent, p.shard, p.id)
	}
	out, err := e.serve(ctx, p.shard, p.id, r.Body, dst)
	if span != nil {
		serveEnd(span, err)
	}
	if err != nil {
		return statusOf(err), append(dst, errorBody(err)...)
	}
	return http.StatusOK, out
}

// ServeHTTP makes the Endpoint an http.Handler for the internal endpoint (net/http servers).
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	bp, _ := e.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer e.bufs.Put(bp)
	buf := (*bp)[:0]
	var err error
	if r.ContentLength > e.cfg.MaxBodyBytes {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	body := buf
	for {
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		var n int
		n, err = r.Body.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if int64(len(body)) > e.cfg.MaxBodyBytes {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	var id, budget []byte
	if v := r.Header.Values(HeaderRequestID); len(v) == 1 {
		id = []byte(v[0])
	}
	if v := r.Header.Values(HeaderBudget); len(v) == 1 {
		budget = []byte(v[0])
	}
	wr := WireRequest{Path: []byte(r.URL.Path), RequestID: id, Budget: budget, Body: body, Cancel: r.Header.Get(HeaderCancel) == "1"}
	if spans.On() {
		wr.Traceparent = []byte(r.Header.Get(spans.HeaderTraceparent))
	}
	status, out := e.Handle(r.Context(), wr, body[len(body):])
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(status)
	w.Write(out)
	*bp = out[:0]
	if cap(body) > cap(out) {
		*bp = body[:0]
	}
}
