package blobs

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// fuzzConn is a net.Conn that reads a fixed input and records what is written.
type fuzzConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzServe feeds arbitrary bytes to Serve as a stream of requests: it must not panic or
// hang, must answer only with well-formed replies, and must never store a blob under a sha
// its content does not hash to.
func FuzzServe(f *testing.F) {
	s := openStore(f, 4096)
	stored := []byte("stored blob")
	have, _, err := s.Put(bytes.NewReader(stored))
	if err != nil {
		f.Fatal(err)
	}
	body := []byte("pushed body")
	req := func(op byte, sha string, n int) []byte {
		b, err := request{op: op, sha: sha, length: uint64(n)}.encode()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	f.Add([]byte{})
	f.Add(req(opGet, have, 0))
	f.Add(req(opGet, shaOf([]byte("absent")), 0))
	f.Add(cat(req(opGet, have, 0), req(opGet, have, 0)))
	f.Add(cat(req(opPut, shaOf(body), len(body)), body, req(opGet, shaOf(body), 0)))
	f.Add(cat(req(opPut, shaOf(body), len(body)), []byte("wrong body!")))
	f.Add(cat(req(opPut, have, len(stored)), req(opGet, have, 0)))
	f.Add(req(opPut, shaOf(nil), 0))
	f.Add(req(opPut, shaOf(body), 1<<20))
	f.Add(req(opPut, shaOf(body), len(body))[:30])
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))

	f.Fuzz(func(t *testing.T, in []byte) {
		c := &fuzzConn{in: bytes.NewReader(in)}
		Serve(c, s, time.Second)
		checkReplies(t, in, c.out.Bytes())
		// Whatever was stored is at its true address.
		if len(in) >= reqLen {
			if r, err := parseRequest(in[:reqLen]); err == nil && s.Has(r.sha) {
				got := readBlob(t, s, r.sha)
				if shaOf(got) != r.sha {
					t.Fatalf("blob %s holds content hashing to %s", r.sha, shaOf(got))
				}
			}
		}
	})
}

// checkReplies walks the requests in in alongside the replies in out and fails if a reply is
// malformed or does not fit its request.
func checkReplies(t *testing.T, in, out []byte) {
	o := bytes.NewReader(out)
	next := func() reply {
		t.Helper()
		r, err := readReply(o)
		if err != nil {
			t.Fatalf("malformed reply: %v", err)
		}
		return r
	}
	for len(in) >= reqLen {
		req, err := parseRequest(in[:reqLen])
		in = in[reqLen:]
		if err != nil {
			if r := next(); r.status != statusInvalid {
				t.Fatalf("reply %+v to an invalid request", r)
			}
			break
		}
		r := next()
		switch {
		case req.op == opGet && r.status == statusOK:
			if uint64(o.Len()) < r.length {
				t.Fatalf("get content cut short: %d of %d bytes", o.Len(), r.length)
			}
			if _, err := o.Seek(int64(r.length), io.SeekCurrent); err != nil {
				t.Fatal(err)
			}
			continue
		case req.op == opPut && r.status == statusContinue:
			if uint64(len(in)) < req.length {
				return // the body is cut short: Serve stops
			}
			in = in[req.length:]
			r = next()
			if r.status == statusOK && r.length != req.length {
				t.Fatalf("put of %d bytes acknowledged as %d", req.length, r.length)
			}
		case r.status == statusContinue:
			t.Fatalf("Continue to a get")
		}
	}
	if o.Len() != 0 {
		t.Fatalf("%d unexpected bytes after the replies", o.Len())
	}
}
