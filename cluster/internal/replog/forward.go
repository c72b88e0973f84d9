package replog

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/mtls"
)

// The forwarding framing (stream 'D'). A request: the kind's tag, the time the forwarding node
// still waits in milliseconds (uint32), the command's length (uint32) and the command. The
// answer: a status byte, the body's length (uint32) and the body (the kind's answer, or an
// error's text). Lengths are checked against the kind's bounds before a byte of the body is
// read. One request at a time per connection; the forwarding node sends nothing while it
// waits, so a read that returns during a request means it hung up, and the leader cancels the
// command.
const (
	statusOK       byte = 0
	statusNoLeader byte = 1 // retry (not the leader, or lost it)
	statusError    byte = 2 // the body is an error's text
)

const (
	// fwdIdle is how long a forwarding connection may wait for its next request (the
	// forwarding side keeps idle ones for fwdPoolTTL, less); fwdIO bounds reading a request's
	// body once its header arrived, and writing the answer.
	fwdIdle    = 60 * time.Second
	fwdPoolTTL = 30 * time.Second
	fwdIO      = 10 * time.Second
	// maxLead bounds the time a leader works on one forwarded command, whatever the forwarding
	// node asks for.
	maxLead = 2 * time.Minute
	// retryPause is the pause between attempts while there is no leader.
	retryPause = 50 * time.Millisecond
	// defaultAttempt bounds one attempt when ctx has no deadline, beyond ForwardWait.
	defaultAttempt = 10 * time.Second
)

// Do runs cmd of the kind tagged tag on the leader: here when this node leads, otherwise
// forwarded to it. While there is no leader (an election, a leader that went away, a broken
// connection) it retries every 50 ms until ctx ends, or for ForwardWait when ctx has no
// deadline; then it returns an error wrapping ErrNoLeader (and ctx's error when ctx ended).
// Errors the kind's Lead returned come back as errors with their text.
func (l *Log) Do(ctx context.Context, tag byte, cmd []byte) ([]byte, error) {
	k := l.kinds[tag]
	if k == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKind, tag)
	}
	if len(cmd) > k.MaxCommand {
		return nil, fmt.Errorf("%w: %s command of %d bytes (limit %d)", ErrTooLarge, k.Name, len(cmd), k.MaxCommand)
	}
	if k.Legacy == nil && l.anyLegacyVoter() {
		return nil, fmt.Errorf("%s: %w", k.Name, ErrMixedVersion)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.cfg.ForwardWait+defaultAttempt)
		defer cancel()
	}
	leaderless := time.Duration(0)
	for {
		select {
		case <-l.stop:
			return nil, ErrClosed
		default:
		}
		start := time.Now()
		out, err, retry := l.try(ctx, k, cmd)
		if !retry {
			return out, err
		}
		leaderless += time.Since(start) + retryPause
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w (%w)", k.Name, ErrNoLeader, ctx.Err())
		}
		if leaderless > l.cfg.ForwardWait {
			if d, ok := ctx.Deadline(); !ok || time.Until(d) > l.cfg.ForwardWait {
				return nil, fmt.Errorf("%s: %w", k.Name, ErrNoLeader)
			}
		}
		t := time.NewTimer(retryPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s: %w (%w)", k.Name, ErrNoLeader, ctx.Err())
		case <-l.stop:
			t.Stop()
			return nil, ErrClosed
		case <-t.C:
		}
	}
}

// try makes one attempt; retry reports that no leader answered.
func (l *Log) try(ctx context.Context, k *Kind, cmd []byte) (out []byte, err error, retry bool) {
	if l.IsLeader() {
		out, err = k.Lead(ctx, Caller{Node: l.cfg.NodeID, Local: true, Secure: l.Secure()}, cmd)
		if errors.Is(err, ErrNoLeader) {
			return nil, err, true
		}
		return out, err, false
	}
	addr, id := l.raft.LeaderWithID()
	if addr == "" {
		return nil, ErrNoLeader, true
	}
	if l.cfg.Legacy != nil && l.cfg.Legacy(string(id)) {
		if k.Legacy == nil {
			return nil, fmt.Errorf("%s: %w", k.Name, ErrMixedVersion), false
		}
		return l.forwardLegacy(ctx, string(addr), k, cmd)
	}
	return l.forward(ctx, string(addr), k, cmd)
}

func (l *Log) forward(ctx context.Context, addr string, k *Kind, cmd []byte) ([]byte, error, bool) {
	for attempt := 0; ; attempt++ {
		c, reused, err := l.fwdPool.Get(addr, 2*time.Second)
		if err != nil {
			return nil, err, true
		}
		status, body, err := l.exchange(ctx, c, k, cmd)
		if err != nil {
			c.Close()
			if reused && attempt == 0 && ctx.Err() == nil { // the leader may have closed it while idle
				continue
			}
			return nil, err, true
		}
		l.fwdPool.Put(addr, c)
		switch status {
		case statusOK:
			return body, nil, false
		case statusNoLeader:
			return nil, ErrNoLeader, true
		default:
			return nil, remoteError(string(body)), false
		}
	}
}

// remoteError gives a leader's error text back the sentinel it names, where there is one.
func remoteError(text string) error {
	for _, e := range []error{ErrUnknownKind, ErrTooLarge, ErrMixedVersion, ErrClosed} {
		if len(text) >= len(e.Error()) && text[:len(e.Error())] == e.Error() {
			return fmt.Errorf("%w%s", e, text[len(e.Error()):])
		}
	}
	return errors.New(text)
}

// exchange sends one request on c and reads its answer; ctx ending cuts the connection (the
// leader sees the hang-up and cancels the command).
func (l *Log) exchange(ctx context.Context, c net.Conn, k *Kind, cmd []byte) (byte, []byte, error) {
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl.Add(time.Second)) // the leader answers at its deadline, before ours
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	wait := time.Until(dl)
	hdr := make([]byte, 9, 9+len(cmd))
	hdr[0] = k.Tag
	binary.BigEndian.PutUint32(hdr[1:], uint32(min(max(wait, 0), maxLead)/time.Millisecond))
	binary.BigEndian.PutUint32(hdr[5:], uint32(len(cmd)))
	if _, err := c.Write(append(hdr, cmd...)); err != nil {
		return 0, nil, err
	}
	var rh [5]byte
	if _, err := io.ReadFull(c, rh[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(rh[1:])
	if int64(n) > int64(k.MaxAnswer) {
		return 0, nil, fmt.Errorf("%w: %s answer of %d bytes", ErrTooLarge, k.Name, n)
	}
	body, err := readBody(c, int(n))
	if err != nil {
		return 0, nil, err
	}
	if !stop() { // ctx ended just as the answer came: the connection's deadline is spoiled
		return 0, nil, ctx.Err()
	}
	return rh[0], body, nil
}

// serveDo answers forwarded commands on c, one after another, until the forwarding node
// closes it or leaves it idle for fwdIdle.
func (l *Log) serveDo(c net.Conn) {
	if !l.waitReady(c) {
		return
	}
	from := Caller{Node: mtls.PeerName(c), Secure: l.Secure()}
	br := &stashReader{r: bufio.NewReader(c)}
	for {
		_ = c.SetReadDeadline(time.Now().Add(fwdIdle))
		var hdr [9]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(fwdIO))
		k := l.kinds[hdr[0]]
		n := binary.BigEndian.Uint32(hdr[5:])
		wait := time.Duration(binary.BigEndian.Uint32(hdr[1:])) * time.Millisecond
		var status byte
		var body []byte
		switch {
		case k == nil:
			// The length is unchecked: answer and close rather than skip the body.
			l.answer(c, statusError, []byte(fmt.Sprintf("%v: %q", ErrUnknownKind, hdr[0])))
			return
		case int64(n) > int64(k.MaxCommand):
			l.answer(c, statusError, []byte(fmt.Sprintf("%v: %s command of %d bytes (limit %d)", ErrTooLarge, k.Name, n, k.MaxCommand)))
			return
		}
		cmd, err := readBody(br, int(n))
		if err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		if !l.IsLeader() {
			status = statusNoLeader
		} else {
			var hungUp bool
			body, hungUp = l.leadWatched(c, br, k, from, cmd, min(wait, maxLead))
			if hungUp {
				return
			}
			status, body = l.outcome(body)
		}
		if len(body) > k.MaxAnswer {
			status, body = statusError, []byte(fmt.Sprintf("%v: %s answer of %d bytes", ErrTooLarge, k.Name, len(body)))
		}
		if !l.answer(c, status, body) {
			return
		}
	}
}

// firstChunk is what readBody reserves before a body's first byte arrives: most forwarded
// commands and answers are a few hundred bytes of JSON and fit at once.
const firstChunk = 16 << 10

// readBody reads a body of exactly n bytes (already checked against the kind's bound) from r,
// and nothing past it. Its buffer grows with the bytes that arrive, doubling up to n, instead
// of being reserved from the header: the header is the peer's word, and a peer that declares
// the largest body and sends none would otherwise hold that much of our memory per connection
// for as long as the read may wait. Growing by doubling copies at most as many bytes again as
// the body holds.
func readBody(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, firstChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			// Only once the buffer is full: what is reserved is at most twice what arrived.
			buf = slices.Grow(buf, min(len(buf), n-len(buf)))
		}
		// Never past n: what follows belongs to the next frame.
		m, err := r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if len(buf) == n {
			break
		}
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// leadWatched runs Lead for a forwarded command, cancelled when the forwarding node hangs up
// (a read on c returns) or the log shuts down. hungUp reports that c is not usable any more.
func (l *Log) leadWatched(c net.Conn, br *stashReader, k *Kind, from Caller, cmd []byte, wait time.Duration) ([]byte, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), max(wait, 100*time.Millisecond))
	defer cancel()
	watchDone := make(chan struct{})
	var gone bool
	go func() {
		defer close(watchDone)
		err := br.watch()
		if err == nil { // a byte arrived while the command ran: out of step
			gone = true
			cancel()
			return
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return // our own deadline below: the command is done
		}
		gone = true
		cancel()
	}()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		case <-watchDone:
		}
	}()
	body, err := k.Lead(ctx, from, cmd)
	_ = c.SetReadDeadline(time.Now())
	<-watchDone
	_ = c.SetReadDeadline(time.Time{})
	if gone {
		return nil, true
	}
	return encodeOutcome(body, err), false
}

// encodeOutcome packs Lead's answer and error as a status byte and body for outcome.
func encodeOutcome(body []byte, err error) []byte {
	switch {
	case err == nil:
		return append([]byte{statusOK}, body...)
	case errors.Is(err, ErrNoLeader):
		return []byte{statusNoLeader}
	default:
		return append([]byte{statusError}, err.Error()...)
	}
}

func (l *Log) outcome(b []byte) (byte, []byte) { return b[0], b[1:] }

func (l *Log) answer(c net.Conn, status byte, body []byte) bool {
	_ = c.SetWriteDeadline(time.Now().Add(fwdIO))
	out := make([]byte, 5, 5+len(body))
	out[0] = status
	binary.BigEndian.PutUint32(out[1:], uint32(len(body)))
	_, err := c.Write(append(out, body...))
	_ = c.SetWriteDeadline(time.Time{})
	return err == nil
}

// stashReader reads from r; watch reads one byte ahead (to notice a hang-up) and keeps it
// for the next Read.
type stashReader struct {
	r     *bufio.Reader
	mu    sync.Mutex
	stash []byte
}

func (s *stashReader) Read(p []byte) (int, error) {
	s.mu.Lock()
	if len(s.stash) > 0 {
		n := copy(p, s.stash)
		s.stash = s.stash[n:]
		s.mu.Unlock()
		return n, nil
	}
	s.mu.Unlock()
	return s.r.Read(p)
}

func (s *stashReader) watch() error {
	b, err := s.r.ReadByte()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.stash = append(s.stash, b)
	s.mu.Unlock()
	return nil
}

// ---- the streams of releases before replog ----

// Legacy describes a kind's forwarding stream in releases before replog: a sequence of JSON
// values on a connection, one request then one answer. The request value is the kind's
// command itself; the answer wraps the kind's answer. Old nodes forward to a new leader over
// it, and a new node forwards over it to an old leader.
type Legacy struct {
	// Stream is the connection kind byte of the old stream.
	Stream byte
	// Answer wraps the leader's answer (or error) as the old stream's answer value.
	Answer func(resp []byte, err error) any
	// Read unwraps an old leader's answer value: the kind's answer, or retry (it had no
	// leader), or an error.
	Read func(raw []byte) (resp []byte, retry bool, err error)
	// Last reports whether a command ends its connection (it may wait on the leader, and
	// hanging up cancels it).
	Last func(cmd []byte) bool
}

// serveLegacy answers an old node's forwarded commands of kind k.
func (l *Log) serveLegacy(c net.Conn, k *Kind) {
	if !l.waitReady(c) {
		return
	}
	from := Caller{Node: mtls.PeerName(c), Secure: l.Secure()}
	lr := &LimitedReader{R: c}
	dec := json.NewDecoder(lr)
	for {
		_ = c.SetReadDeadline(time.Now().Add(fwdIdle))
		lr.N = int64(k.MaxCommand)
		var cmd jsonValue
		if err := dec.Decode(&cmd); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		last := k.Legacy.Last != nil && k.Legacy.Last(cmd)
		var out any
		if !l.IsLeader() {
			out = k.Legacy.Answer(nil, ErrNoLeader)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), maxLead)
			if last { // the old node sends nothing more: a read that returns means it hung up
				go func() {
					var b [1]byte
					_, _ = c.Read(b[:])
					cancel()
				}()
			}
			go func() {
				select {
				case <-l.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			resp, err := k.Lead(ctx, from, cmd)
			cancel()
			out = k.Legacy.Answer(resp, err)
		}
		_ = c.SetWriteDeadline(time.Now().Add(fwdIO))
		if json.NewEncoder(c).Encode(out) != nil || last {
			return
		}
		_ = c.SetWriteDeadline(time.Time{})
	}
}

// forwardLegacy runs cmd on an old leader over the kind's old stream.
func (l *Log) forwardLegacy(ctx context.Context, addr string, k *Kind, cmd []byte) ([]byte, error, bool) {
	last := k.Legacy.Last != nil && k.Legacy.Last(cmd)
	pool := l.legacyPools[k.Legacy.Stream]
	for attempt := 0; ; attempt++ {
		var (
			c      net.Conn
			reused bool
			err    error
		)
		if last {
			c, err = l.Dial(addr, k.Legacy.Stream, 2*time.Second)
		} else {
			c, reused, err = pool.Get(addr, 2*time.Second)
		}
		if err != nil {
			return nil, err, true
		}
		raw, err := legacyExchange(ctx, c, cmd, k.MaxAnswer)
		if err != nil {
			c.Close()
			if reused && attempt == 0 && ctx.Err() == nil {
				continue
			}
			return nil, err, true
		}
		if last {
			c.Close()
		} else {
			pool.Put(addr, c)
		}
		resp, retry, err := k.Legacy.Read(raw)
		return resp, err, retry
	}
}

func legacyExchange(ctx context.Context, c net.Conn, cmd []byte, maxAnswer int) ([]byte, error) {
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(append(append([]byte(nil), cmd...), '\n')); err != nil {
		return nil, err
	}
	var raw jsonValue
	if err := json.NewDecoder(io.LimitReader(c, int64(maxAnswer)+1024)).Decode(&raw); err != nil {
		return nil, err
	}
	if !stop() {
		return nil, ctx.Err()
	}
	return raw, nil
}
