package blobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"
)

// sendChunk is how much of a blob Serve sends per write deadline.
const sendChunk = 1 << 20

// Serve answers get and put requests on c, one at a time, for store s until the peer closes
// the connection, an I/O error or malformed request occurs, or no progress is made for idle
// (idle <= 0: no timeout). A put is acknowledged only once the blob is verified and stored
// durably. Serve closes c before it returns and never panics on malformed input.
func Serve(c net.Conn, s *Store, idle time.Duration) {
	ServeAdmit(c, s, idle, nil)
}

// Admit decides whether a put may be stored: nil lets it in, an error refuses it (the peer
// gets the error's text). It runs before a byte of the content is read, and also for a blob
// the store already has (with its stored size), since acknowledging that one renews its grace
// period as storing it would.
type Admit func(sha string, size int64) error

// ServeAdmit is Serve with an admission check on every put (nil: admit everything).
func ServeAdmit(c net.Conn, s *Store, idle time.Duration, admit Admit) {
	defer c.Close()
	sv := server{c: c, s: s, idle: idle, admit: admit}
	for sv.serveOne() {
	}
}

type server struct {
	c     net.Conn
	s     *Store
	idle  time.Duration
	admit Admit
}

func (sv *server) deadline() time.Time {
	if sv.idle <= 0 {
		return time.Time{}
	}
	return time.Now().Add(sv.idle)
}

// Read reads from the connection with a fresh idle deadline per read.
func (sv *server) Read(p []byte) (int, error) {
	_ = sv.c.SetReadDeadline(sv.deadline())
	return sv.c.Read(p)
}

func (sv *server) reply(status byte, length int64, msg string) bool {
	_ = sv.c.SetWriteDeadline(sv.deadline())
	_, err := sv.c.Write(reply{status: status, length: uint64(length), msg: msg}.encode())
	return err == nil
}

// check runs the admission check, if any, on a put of sha (size bytes).
func (sv *server) check(sha string, size int64) error {
	if sv.admit == nil {
		return nil
	}
	return sv.admit(sha, size)
}

// serveOne serves one request and reports whether the connection is still in step.
func (sv *server) serveOne() bool {
	var h [reqLen]byte
	if _, err := io.ReadFull(sv, h[:]); err != nil {
		return false
	}
	req, err := parseRequest(h[:])
	if err != nil {
		sv.reply(statusInvalid, 0, err.Error())
		return false // the stream may be out of step: don't guess
	}
	if req.op == opGet {
		return sv.get(req)
	}
	return sv.put(req)
}

func (sv *server) get(req request) bool {
	f, size, err := sv.s.Open(req.sha)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return sv.reply(statusNotFound, 0, "not found")
		}
		return sv.reply(statusError, 0, err.Error())
	}
	defer f.Close()
	if !sv.reply(statusOK, size, "") {
		return false
	}
	// Chunked so that each chunk gets its own write deadline while io.CopyN still lets a
	// TCP connection send straight from the file.
	for left := size; left > 0; {
		_ = sv.c.SetWriteDeadline(sv.deadline())
		n, err := io.CopyN(sv.c, f, min(left, sendChunk))
		left -= n
		if err != nil {
			return false
		}
	}
	return true
}

func (sv *server) put(req request) bool {
	if int64(req.length) > sv.s.maxSize {
		return sv.reply(statusTooLarge, 0, fmt.Sprintf("%d bytes exceeds the limit of %d", req.length, sv.s.maxSize))
	}
	admitted := false
	if size, err := sv.s.Size(req.sha); err == nil {
		// Already here. Acknowledging marks it as just stored, so that garbage collection
		// keeps it a full grace period again: that keeps an unreferenced file alive as surely
		// as storing it does, so it is admitted like a new one, charged its stored size (not
		// the size the peer claims). Without this a peer kept old files alive for free.
		if err := sv.check(req.sha, size); err != nil {
			return sv.reply(statusTooLarge, 0, err.Error())
		}
		if sv.s.touch(req.sha) {
			// Make sure its directory entry is durable before saying so.
			if err := syncDir(filepath.Dir(sv.s.path(req.sha))); err != nil {
				return sv.reply(statusError, 0, err.Error())
			}
			return sv.reply(statusOK, size, "")
		}
		// Collected meanwhile: stored anew below, already admitted if the claim is the size.
		admitted = size == int64(req.length)
	}
	if !admitted {
		if err := sv.check(req.sha, int64(req.length)); err != nil {
			// Refused before the content: the peer sends none after this answer.
			return sv.reply(statusTooLarge, 0, err.Error())
		}
	}
	if !sv.reply(statusContinue, 0, "") {
		return false
	}
	body := &exactReader{r: sv, n: int64(req.length)}
	size, err := sv.s.PutExpect(req.sha, body)
	switch {
	case err == nil:
		return sv.reply(statusOK, size, "")
	case body.err != nil:
		return false // the transport failed
	case errors.Is(err, ErrCorrupt):
		return sv.reply(statusCorrupt, 0, "content does not match its sha256")
	default:
		// A local failure; the rest of the content, if any, is still in the stream.
		ok := sv.reply(statusError, 0, err.Error())
		return ok && body.n == 0
	}
}

// Fetch gets the blob sha from the peer on c into s, verifying its content, and returns its
// size. It returns at once if s already has the blob. Errors: ErrInvalid (malformed sha),
// ErrNotFound (the peer lacks the blob), ErrCorrupt (the peer's bytes do not hash to sha;
// nothing is stored), ErrTooLarge (larger than s accepts), ErrProtocol, or ctx's error.
// ctx's deadline and cancellation apply to c's I/O through its deadlines. The connection can
// be used again after ErrNotFound, ErrCorrupt or a malformed sha; after any other error it is
// out of step and must be closed. Fetch does not close c.
func Fetch(ctx context.Context, c net.Conn, s *Store, sha string) (int64, error) {
	if err := ValidSHA(sha); err != nil {
		return 0, err
	}
	if size, err := s.Size(sha); err == nil {
		return size, nil
	}
	release, err := bindCtx(ctx, c)
	if err != nil {
		return 0, fmt.Errorf("blobs: fetch %s: %w", sha, err)
	}
	defer release()
	fail := func(err error) (int64, error) {
		return 0, fmt.Errorf("blobs: fetch %s: %w", sha, ctxErr(ctx, err))
	}

	req, err := request{op: opGet, sha: sha}.encode()
	if err != nil {
		return 0, err
	}
	if _, err := c.Write(req); err != nil {
		return fail(err)
	}
	rep, err := readReply(c)
	if err != nil {
		return fail(err)
	}
	if rep.status != statusOK {
		return 0, peerErr("fetch", sha, rep)
	}
	if rep.length > uint64(s.maxSize) {
		return 0, fmt.Errorf("blobs: fetch %s: peer offers %d bytes, limit %d: %w", sha, rep.length, s.maxSize, ErrTooLarge)
	}
	body := &exactReader{r: c, n: int64(rep.length)}
	size, err := s.PutExpect(sha, body)
	if err != nil {
		if body.err != nil {
			return fail(err)
		}
		return 0, fmt.Errorf("blobs: fetch %s from %s: %w", sha, c.RemoteAddr(), err)
	}
	return size, nil
}

// Push sends the local blob sha to the peer on c, which verifies it and stores it durably
// before acknowledging; Push returns nil only after that acknowledgement (or when the peer
// already has the blob). Errors: ErrInvalid, ErrNotFound (s lacks the blob), ErrTooLarge or
// ErrCorrupt reported by the peer, ErrProtocol, or ctx's error. ctx applies as for Fetch.
// The connection can be used again after a malformed sha, ErrNotFound, ErrTooLarge or
// ErrCorrupt; after any other error it is out of step and must be closed. Push does not
// close c.
func Push(ctx context.Context, c net.Conn, s *Store, sha string) error {
	if err := ValidSHA(sha); err != nil {
		return err
	}
	f, size, err := s.Open(sha)
	if err != nil {
		return fmt.Errorf("blobs: push: %w", err)
	}
	defer f.Close()
	release, err := bindCtx(ctx, c)
	if err != nil {
		return fmt.Errorf("blobs: push %s: %w", sha, err)
	}
	defer release()
	fail := func(err error) error {
		return fmt.Errorf("blobs: push %s: %w", sha, ctxErr(ctx, err))
	}

	req, err := request{op: opPut, sha: sha, length: uint64(size)}.encode()
	if err != nil {
		return err
	}
	if _, err := c.Write(req); err != nil {
		return fail(err)
	}
	rep, err := readReply(c)
	if err != nil {
		return fail(err)
	}
	switch rep.status {
	case statusOK:
		return checkStored(sha, rep, size)
	case statusContinue:
	default:
		return peerErr("push", sha, rep)
	}
	if _, err := io.CopyN(c, f, size); err != nil {
		return fail(err)
	}
	if rep, err = readReply(c); err != nil {
		return fail(err)
	}
	if rep.status != statusOK {
		return peerErr("push", sha, rep)
	}
	return checkStored(sha, rep, size)
}

func checkStored(sha string, rep reply, size int64) error {
	if rep.length != uint64(size) {
		return fmt.Errorf("blobs: push %s: peer stored %d bytes of %d: %w", sha, rep.length, size, ErrProtocol)
	}
	return nil
}

// peerErr turns an error reply into an error wrapping the matching sentinel.
func peerErr(op, sha string, rep reply) error {
	var base error
	switch rep.status {
	case statusNotFound:
		base = ErrNotFound
	case statusCorrupt:
		base = ErrCorrupt
	case statusTooLarge:
		base = ErrTooLarge
	case statusInvalid:
		base = ErrInvalid
	case statusError:
		return fmt.Errorf("blobs: %s %s: peer error: %q", op, sha, rep.msg)
	default:
		base = ErrProtocol // e.g. Continue to a get
	}
	return fmt.Errorf("blobs: %s %s: peer says %q (status %d): %w", op, sha, rep.msg, rep.status, base)
}

var longAgo = time.Unix(1, 0)

// bindCtx applies ctx's deadline to c and interrupts c's I/O when ctx is cancelled, until
// release, which clears c's deadline.
func bindCtx(ctx context.Context, c net.Conn) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.SetDeadline(longAgo)
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired
		}
		_ = c.SetDeadline(time.Time{})
	}, nil
}

// ctxErr attributes an I/O error to ctx when ctx is why it happened.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
	}
	return err
}
