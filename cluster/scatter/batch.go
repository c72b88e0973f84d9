package scatter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/internal/spans"
)

// The batched wire format (feature "batch"): one request per peer per fan-out carrying every
// shard of the request that the peer is the first replica of, and the input once.
//
//	POST /_wasmpod/scatter/v2/batch
//	Wasmpod-Request-Id, Wasmpod-Budget-Us, Wasmpod-Cancel: as in version 1
//	body: u16 n (1..MaxBatchShards), n times (u16 length, shard name), then the leaf input
//
// The answer is 200 with a stream of n frames, one per shard in the order the shards finish
// (so the root settles each shard as soon as its part arrives: hedging, failover and the gather
// deadline work per shard as with version 1):
//
//	u16 index (in the request's list), u16 status (as a version 1 answer), u32 length, body
//
// or, when the whole request is refused (malformed, closed), an error status with a message as
// in version 1. All integers are little-endian. Every answer of an endpoint that serves this
// format, of either version, carries the header Wasmpod-Scatter-Features: batch; a root sends
// batches only to a peer it has seen that header from, so a peer of an earlier release (which
// does not send it, and answers 400 to the path) keeps getting version 1 requests. A batch
// cancellation (Wasmpod-Cancel: 1, no input) cancels every listed shard.
const (
	// PathBatch is the path of a batched request.
	PathBatch = "/_wasmpod/scatter/v2/batch"
	// HeaderFeatures lists the optional wire features an endpoint serves (comma-separated).
	HeaderFeatures = "Wasmpod-Scatter-Features"
	// FeatureBatch is the feature of the batched format.
	FeatureBatch = "batch"
	// MaxBatchShards bounds the shards of one batched request.
	MaxBatchShards = 4096

	frameHeader = 8
)

// batchReq is a batched request after validation.
type batchReq struct {
	id     RequestID
	budget time.Duration
	shards [][]byte // alias the body
	in     []byte   // aliases the body
}

// parseBatch validates a batched request's framing (its path is PathBatch).
func parseBatch(r WireRequest, maxBudget time.Duration) (batchReq, error) {
	var b batchReq
	if string(r.Path) != PathBatch {
		return b, fmt.Errorf("%w: path must be %s", ErrMalformed, PathBatch)
	}
	p, err := parseWire(WireRequest{Path: []byte(PathPrefix + "x"), RequestID: r.RequestID, Budget: r.Budget}, maxBudget)
	if err != nil {
		return b, err
	}
	b.id, b.budget = p.id, p.budget
	body := r.Body
	if len(body) < 2 {
		return b, fmt.Errorf("%w: batch: no shard count", ErrMalformed)
	}
	n := int(binary.LittleEndian.Uint16(body))
	body = body[2:]
	if n == 0 || n > MaxBatchShards {
		return b, fmt.Errorf("%w: batch: %d shards, want 1 to %d", ErrMalformed, n, MaxBatchShards)
	}
	b.shards = make([][]byte, n)
	for k := range n {
		if len(body) < 2 {
			return b, fmt.Errorf("%w: batch: shard %d: truncated", ErrMalformed, k)
		}
		l := int(binary.LittleEndian.Uint16(body))
		body = body[2:]
		if l == 0 || l > maxShardName || l > len(body) {
			return b, fmt.Errorf("%w: batch: shard %d: name of %d bytes", ErrMalformed, k, l)
		}
		name := body[:l:l]
		for _, c := range name {
			if c <= ' ' || c == '/' || c >= 0x7f {
				return b, fmt.Errorf("%w: batch: shard name has a byte %#x that is not allowed", ErrMalformed, c)
			}
		}
		b.shards[k] = name
		body = body[l:]
	}
	b.in = body
	return b, nil
}

// appendBatchBody appends a batched request's body to dst.
func appendBatchBody(dst []byte, shards [][]byte, in []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(shards)))
	for _, s := range shards {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s)))
		dst = append(dst, s...)
	}
	return append(dst, in...)
}

// BatchRun is a validated batched request, ready to run: Endpoint.HandleBatch returns it, and
// the transport runs it while it streams the answer.
type BatchRun struct {
	e   *Endpoint
	req batchReq
	buf []byte // owns the request's body (the transport's buffer may be reused)
	// parent is the root's batch span (the traceparent header), when traced: each shard's
	// serve span is its child.
	parent trace.SpanContext
}

// HandleBatch validates a batched request as any transport received it (Path is PathBatch). A
// cancellation is answered at once (run is nil); otherwise, when the request is valid, run is
// what the transport runs to stream the answer (status 200); when it is not, run is nil and
// status and body are the error answer, appended to dst.
func (e *Endpoint) HandleBatch(r WireRequest, dst []byte) (run *BatchRun, status int, body []byte) {
	if e.closed.Load() {
		return nil, statusOf(ErrClosed), append(dst, errorBody(ErrClosed)...)
	}
	buf := append([]byte(nil), r.Body...)
	r.Body = buf
	b, err := parseBatch(r, e.cfg.MaxBudget)
	if err != nil {
		return nil, statusOf(err), append(dst, errorBody(err)...)
	}
	if r.Cancel {
		n := 0
		for _, s := range b.shards {
			if st, _ := e.cancel(parsed{shard: s, id: b.id}, nil); st == http.StatusOK {
				n++
			}
		}
		return nil, http.StatusOK, fmt.Appendf(dst, "cancelled %d", n)
	}
	run = &BatchRun{e: e, req: b, buf: buf}
	if spans.On() && len(r.Traceparent) > 0 {
		// Parsed now: the header's bytes belong to the transport, and Run comes later.
		run.parent, _ = spans.ParseTraceparent(r.Traceparent)
	}
	return run, http.StatusOK, dst
}

// Run runs every shard of the request, at most GOMAXPROCS at once, and writes each one's frame
// to w as it finishes, in one Write, calling flush after each (when it is not nil). w and flush are called
// from one goroutine at a time. It returns once every shard is answered, or the first write
// error (the root is gone: the shards still running are cancelled).
func (b *BatchRun) Run(ctx context.Context, w io.Writer, flush func() error) error {
	ctx, cancel := context.WithTimeout(ctx, b.req.budget)
	defer cancel()
	n := len(b.req.shards)
	// The serve spans' parent: the root's batch span, when traced.
	traced := b.parent.IsValid() && spans.On()
	var pctx context.Context
	if traced {
		pctx = trace.ContextWithRemoteSpanContext(ctx, b.parent)
	}
	var (
		next    int
		mu      sync.Mutex // guards next, w, werr
		werr    error
		wg      sync.WaitGroup
		workers = min(n, goruntime.GOMAXPROCS(0))
	)
	work := func() {
		var frame []byte // the header, then the part or the error message
		for {
			mu.Lock()
			k := next
			next++
			stop := werr != nil
			mu.Unlock()
			if k >= n || stop {
				return
			}
			var hdr [frameHeader]byte
			sctx, span := ctx, trace.Span(nil)
			if traced {
				sctx, span = serveSpan(pctx, b.req.shards[k], b.req.id, true)
			}
			out, err := b.e.serve(sctx, b.req.shards[k], b.req.id, b.req.in, append(frame[:0], hdr[:]...))
			if span != nil {
				serveEnd(span, err)
			}
			status := http.StatusOK
			if err != nil {
				status = statusOf(err)
				out = append(out[:frameHeader], errorBody(err)...)
			}
			frame = out
			binary.LittleEndian.PutUint16(frame[0:], uint16(k))
			binary.LittleEndian.PutUint16(frame[2:], uint16(status))
			binary.LittleEndian.PutUint32(frame[4:], uint32(len(frame)-frameHeader))
			mu.Lock()
			if werr == nil {
				_, werr = w.Write(frame) // one Write per frame: one chunk on the wire
				if werr == nil && flush != nil {
					werr = flush()
				}
				if werr != nil {
					cancel()
				}
			}
			mu.Unlock()
		}
	}
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return werr
}

// errNoBatch: the peer refused the batched format (a peer of an earlier release, or one
// restarted as one): the shards are retried as version 1 requests.
var errNoBatch = errors.New("scatter: peer does not serve batches")

// batchGroup is the shards of one request sent to one peer as one batch.
type batchGroup struct {
	p      *fastPeer
	shards []int32
	names  [][]byte
}

// batchLeaf reports the peer that a remote replica's shard can be batched to, or nil.
func batchPeer(l Leaf) (*fastPeer, []byte) {
	f, ok := l.(*fastLeaf)
	if !ok || f.p.batch.Load() <= 0 || f.p.closed.Load() {
		return nil, nil
	}
	return f.p, f.name
}

// launchBatch runs group as one batched request on a goroutine owned by the request; the
// caller has counted each shard's attempt in inflight.
func (st *reqState) launchBatch(gr *batchGroup) {
	st.refs.Add(1)
	st.g.wg.Add(1)
	go st.batch(gr)
}

func (st *reqState) batch(gr *batchGroup) {
	defer st.g.wg.Done()
	defer st.release()
	start := time.Now()
	ctx := st.ctx
	var span trace.Span
	var attempts []trace.Span // per shard of the group, until its answer (trace.go)
	if st.tr != nil {
		ctx, span, attempts = st.batchStart(ctx, gr)
	}
	err := gr.p.callBatch(ctx, st.id, gr.names, st.in, func(k int, part []byte, err error) {
		i := int(gr.shards[k])
		r := int(st.primary[i])
		if err == nil {
			st.bufs[i][r] = append(st.bufs[i][r][:0], part...)
		}
		next := st.settle(i, r, err, start)
		if attempts != nil {
			st.attemptEnd(attempts[k], i, r, err)
			attempts[k] = nil
		}
		if next >= 0 {
			st.launch(i, next)
		}
	})
	if span != nil {
		for k, a := range attempts {
			if a != nil { // not answered: the peer refused the batch
				st.attemptEnd(a, int(gr.shards[k]), int(st.primary[gr.shards[k]]), err)
			}
		}
		spans.End(span, err)
	}
	if errors.Is(err, errNoBatch) {
		// Nothing was answered: each shard's attempt goes to the same replica as version 1.
		for _, i := range gr.shards {
			st.launch(int(i), int(st.primary[i]))
		}
	}
}

// callBatch sends shards' batched request and calls answer once per shard (from this
// goroutine) as its frame arrives; a shard the answer leaves out fails. It returns errNoBatch,
// having answered nothing, when the peer refuses the format.
func (p *fastPeer) callBatch(ctx context.Context, id RequestID, shards [][]byte, in []byte, answer func(k int, part []byte, err error)) error {
	answered := make([]bool, len(shards))
	fail := func(err error) error {
		for k, done := range answered {
			if !done {
				answer(k, nil, err)
			}
		}
		return err
	}
	if p.closed.Load() {
		return fail(ErrClosed)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(p.cfg.DefaultBudget)
	}
	budget := time.Until(deadline)
	if budget <= 0 {
		return fail(ErrDeadline)
	}
	req, resp := acquireBatch(p, id, budget, shards, in)
	defer releaseBatch(req, resp)
	if spans.On() {
		var tb [64]byte
		if tp := appendTraceparent(tb[:0], ctx); len(tp) > 0 {
			req.Header.SetCanonical(headerTraceparent, tp)
		}
	}
	if ctx.Done() != nil {
		// The cancellation runs on its own goroutine and names shards, which the caller reuses
		// (a pooled request) once this returns: this waits until the cancellation has read
		// them, not for its answer.
		var read sync.WaitGroup
		read.Add(1)
		stop := context.AfterFunc(ctx, func() {
			if testHookCancelBatch != nil {
				testHookCancelBatch()
			}
			if !errors.Is(ctx.Err(), context.Canceled) || p.closed.Load() {
				read.Done()
				return
			}
			creq, cresp := acquireBatch(p, id, cancelTimeout, shards, nil)
			read.Done()
			p.sendCancel(creq, cresp)
		})
		defer func() {
			if !stop() {
				read.Wait()
			}
		}()
	}
	if err := p.bc.DoDeadline(req, resp, deadline); err != nil {
		return fail(p.transportErr(err))
	}
	p.noteFeatures(resp)
	status := resp.StatusCode()
	body := resp.BodyStream()
	if body == nil {
		return fail(fmt.Errorf("%w: peer %s: batch answer without a body", ErrMalformed, p.addr))
	}
	if status != http.StatusOK {
		var msg [maxMessage]byte
		n, _ := io.ReadFull(body, msg[:])
		if status == http.StatusBadRequest || status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			p.batch.Store(-1) // an earlier release: version 1 from now on
			return errNoBatch
		}
		_, err := decodeAnswer(status, msg[:n], nil)
		return fail(fmt.Errorf("peer %s: batch: %w", p.addr, err))
	}
	var hdr [frameHeader]byte
	var part []byte
	for range shards {
		if _, err := io.ReadFull(body, hdr[:]); err != nil {
			return fail(p.transportErr(err))
		}
		k := int(binary.LittleEndian.Uint16(hdr[0:]))
		st := int(binary.LittleEndian.Uint16(hdr[2:]))
		l := int(binary.LittleEndian.Uint32(hdr[4:]))
		if k >= len(shards) || answered[k] || l > p.cfg.MaxResponseBytes {
			return fail(fmt.Errorf("%w: peer %s: batch frame for shard %d of %d bytes", ErrMalformed, p.addr, k, l))
		}
		if cap(part) < l {
			part = make([]byte, l)
		}
		part = part[:l]
		if _, err := io.ReadFull(body, part); err != nil {
			return fail(p.transportErr(err))
		}
		answered[k] = true
		if st == http.StatusOK {
			answer(k, part, nil)
		} else {
			_, err := decodeAnswer(st, part, nil)
			answer(k, nil, fmt.Errorf("peer %s: %w", p.addr, err))
		}
	}
	// Read the end of the stream, so that the connection goes back to the pool.
	if n, _ := io.Copy(io.Discard, io.LimitReader(body, 1)); n != 0 {
		return fmt.Errorf("%w: peer %s: batch answer longer than its frames", ErrMalformed, p.addr)
	}
	return nil
}

// transportErr classifies a client error.
func (p *fastPeer) transportErr(err error) error {
	if isTimeout(err) {
		return fmt.Errorf("%w: peer %s: %w", ErrDeadline, p.addr, err)
	}
	return fmt.Errorf("%w: peer %s: %w", ErrRemote, p.addr, err)
}

// testHookCancelBatch, when set (tests only), runs first on a batch cancellation's goroutine.
var testHookCancelBatch func()

// sendCancel sends req, a batch request built by acquireBatch, as a cancellation: the peer
// cuts the attempts it names. It releases req and resp.
func (p *fastPeer) sendCancel(req *fasthttp.Request, resp *fasthttp.Response) {
	defer releaseBatch(req, resp)
	req.Header.SetCanonical(headerCancel, one)
	if p.bc.DoDeadline(req, resp, time.Now().Add(cancelTimeout)) == nil {
		if body := resp.BodyStream(); body != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(body, maxMessage))
		}
	}
}

// acquireBatch prepares a batched request.
func acquireBatch(p *fastPeer, id RequestID, budget time.Duration, shards [][]byte, in []byte) (*fasthttp.Request, *fasthttp.Response) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	req.Header.SetMethodBytes(methodPost)
	req.SetRequestURIBytes(pathBatch)
	req.Header.SetHost(p.addr)
	var hb [40]byte
	req.Header.SetCanonical(headerRequestID, id.appendHex(hb[:0]))
	req.Header.SetCanonical(headerBudget, appendBudget(hb[:0], budget))
	req.SetBodyRaw(nil)
	req.SetBody(appendBatchBody(req.Body()[:0], shards, in))
	return req, resp
}

func releaseBatch(req *fasthttp.Request, resp *fasthttp.Response) {
	fasthttp.ReleaseRequest(req)
	fasthttp.ReleaseResponse(resp) // closes the body stream
}

var pathBatch = []byte(PathBatch)

// isTimeout reports whether err is a timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, fasthttp.ErrTimeout) || errors.As(err, &t) && t.Timeout()
}

// hasFeature reports whether the comma-separated list v names feature.
func hasFeature(v []byte, feature string) bool {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		f := v[:i]
		for len(f) > 0 && f[0] == ' ' {
			f = f[1:]
		}
		for len(f) > 0 && f[len(f)-1] == ' ' {
			f = f[:len(f)-1]
		}
		if string(f) == feature {
			return true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return false
}
