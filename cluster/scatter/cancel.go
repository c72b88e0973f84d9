package scatter

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// cancelTimeout bounds the cancellation message a root sends a peer (fastLeaf.cancel): a LAN
// round trip takes well under a millisecond; a peer that does not answer within a second cuts
// the attempt at its deadline anyway.
const cancelTimeout = time.Second

// running is an Endpoint's attempts in flight, by request id and shard, so that a root can
// cancel them (wire.go). The zero value is ready.
type running struct {
	mu     sync.Mutex
	active map[dedupKey]context.CancelFunc
}

// track makes ctx cancellable by key until done is called.
func (r *running) track(ctx context.Context, key dedupKey) (_ context.Context, done func()) {
	ctx, cancel := context.WithCancel(ctx)
	r.mu.Lock()
	if r.active == nil {
		r.active = map[dedupKey]context.CancelFunc{}
	}
	r.active[key] = cancel
	r.mu.Unlock()
	return ctx, func() {
		r.mu.Lock()
		delete(r.active, key)
		r.mu.Unlock()
		cancel()
	}
}

// cancel cancels the attempt of key, if it runs, and reports whether it did.
func (r *running) cancel(key dedupKey) bool {
	r.mu.Lock()
	c := r.active[key]
	r.mu.Unlock()
	if c != nil {
		c()
	}
	return c != nil
}

// cancel answers a cancellation: the attempt of p's request id for p's shard is cut if it
// runs; if it has not arrived yet, it is remembered as seen, so it is dropped as a duplicate
// when it does.
func (e *Endpoint) cancel(p parsed, dst []byte) (int, []byte) {
	e.mu.RLock()
	s := e.shards[string(p.shard)]
	e.mu.RUnlock()
	if s == nil {
		return http.StatusNotFound, append(dst, "unknown shard"...)
	}
	k := dedupKey{id: p.id, shard: s.index}
	if e.running.cancel(k) {
		return http.StatusOK, append(dst, "cancelled"...)
	}
	e.firstSeen(k, time.Now().UnixNano())
	return http.StatusOK, append(dst, "not running"...)
}

// cancel tells the peer to cut the attempt of request id for this leaf's shard.
func (l *fastLeaf) cancel(id RequestID) {
	p := l.p
	if p.closed.Load() {
		return
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
	req.Header.SetCanonical(headerBudget, appendBudget(hb[:0], cancelTimeout))
	req.Header.SetCanonical(headerCancel, one)
	_ = p.hc.DoDeadline(req, resp, time.Now().Add(cancelTimeout)) // best effort: the deadline stands
}

var (
	headerCancel = []byte(HeaderCancel)
	one          = []byte("1")
)
