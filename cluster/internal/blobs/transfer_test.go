package blobs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// server runs Serve for every connection accepted on a loopback listener.
type testServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startServer(t *testing.T, s *Store, idle time.Duration) *testServer {
	t.Helper()
	return startHandler(t, func(c net.Conn) { Serve(c, s, idle) })
}

func startHandler(t *testing.T, handle func(net.Conn)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{ln: ln}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.mu.Lock()
			ts.conns = append(ts.conns, c)
			ts.mu.Unlock()
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ts.mu.Lock()
		for _, c := range ts.conns {
			c.Close()
		}
		ts.mu.Unlock()
		ts.wg.Wait()
	})
	return ts
}

func (ts *testServer) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ts.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestTransfer(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		push bool
	}{
		{"fetch empty", 0, false},
		{"fetch small", 1000, false},
		{"fetch 5MB", 5 << 20, false},
		{"push empty", 0, true},
		{"push small", 1000, true},
		{"push 5MB", 5 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local, remote := openStore(t, 0), openStore(t, 0)
			src, dst := remote, local // fetch: from the serving peer into the local store
			if tc.push {
				src, dst = local, remote
			}
			data := content(tc.size, uint64(tc.size))
			sha, _, err := src.Put(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			// Two requests on one connection: the transfer, then a repeat (served from the
			// local copy for a fetch, acknowledged without content for a push).
			c := startServer(t, remote, 5*time.Second).dial(t)
			for range 2 {
				if tc.push {
					err = Push(testCtx(t), c, local, sha)
				} else {
					var n int64
					n, err = Fetch(testCtx(t), c, local, sha)
					if err == nil && n != int64(tc.size) {
						t.Fatalf("Fetch size %d, want %d", n, tc.size)
					}
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(readBlob(t, dst, sha), data) {
				t.Fatal("transferred content differs")
			}
			tmpEmpty(t, dst)
			// The connection is still in step.
			missing := shaOf([]byte("missing"))
			if _, err := Fetch(testCtx(t), c, local, missing); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Fetch(missing) = %v", err)
			}
		})
	}
}

func TestFetchPushErrors(t *testing.T) {
	peer := openStore(t, 1000)
	c := startServer(t, peer, 5*time.Second).dial(t)
	local := openStore(t, 0)
	big, _, err := local.Put(bytes.NewReader(content(1001, 9)))
	if err != nil {
		t.Fatal(err)
	}
	missing := shaOf([]byte("missing"))
	for _, tc := range []struct {
		name string
		run  func() error
		want error
	}{
		{"fetch missing", func() error { _, err := Fetch(testCtx(t), c, local, missing); return err }, ErrNotFound},
		{"fetch bad sha", func() error { _, err := Fetch(testCtx(t), c, local, "zz"); return err }, ErrInvalid},
		{"push missing locally", func() error { return Push(testCtx(t), c, local, missing) }, ErrNotFound},
		{"push bad sha", func() error { return Push(testCtx(t), c, local, "zz") }, ErrInvalid},
		{"push too large for peer", func() error { return Push(testCtx(t), c, local, big) }, ErrTooLarge},
	} {
		if err := tc.run(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// All of the above leave the connection in step.
	if _, err := Fetch(testCtx(t), c, local, missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Fetch after errors = %v", err)
	}
	if peer.Has(big) || blobCount(t, peer) != 0 {
		t.Fatal("peer stored a blob")
	}
}

// readRequest reads one request as a fake peer.
func readRequest(t *testing.T, c net.Conn) request {
	var h [reqLen]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Error(err)
		return request{}
	}
	r, err := parseRequest(h[:])
	if err != nil {
		t.Error(err)
	}
	return r
}

func TestFetchFromLyingPeer(t *testing.T) {
	data := content(1<<20, 5)
	sha := shaOf(data)
	wrong := bytes.Clone(data)
	wrong[len(wrong)/2] ^= 1
	for _, tc := range []struct {
		name    string
		respond func(c net.Conn)
		want    error
	}{
		{"wrong bytes", func(c net.Conn) {
			c.Write(reply{status: statusOK, length: uint64(len(wrong))}.encode())
			c.Write(wrong)
		}, ErrCorrupt},
		{"extra byte", func(c net.Conn) {
			c.Write(reply{status: statusOK, length: uint64(len(data) + 1)}.encode())
			c.Write(data)
			c.Write([]byte{0})
		}, ErrCorrupt},
		{"short then close", func(c net.Conn) {
			c.Write(reply{status: statusOK, length: uint64(len(data))}.encode())
			c.Write(data[:len(data)-1])
		}, io.ErrUnexpectedEOF},
		{"too large", func(c net.Conn) {
			c.Write(reply{status: statusOK, length: 1 << 62}.encode())
		}, ErrTooLarge},
		{"garbage reply", func(c net.Conn) {
			c.Write(bytes.Repeat([]byte{0xff}, 100))
		}, ErrProtocol},
		{"continue to a get", func(c net.Conn) {
			c.Write(reply{status: statusContinue}.encode())
		}, ErrProtocol},
		{"overlong message", func(c net.Conn) {
			b := reply{status: statusError}.encode()
			b[13], b[14] = 0xff, 0xff
			c.Write(b)
		}, ErrProtocol},
		{"closes at once", func(c net.Conn) {}, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startHandler(t, func(c net.Conn) {
				defer c.Close()
				if r := readRequest(t, c); r.op != opGet || r.sha != sha {
					t.Errorf("request %+v", r)
				}
				tc.respond(c)
			})
			local := openStore(t, 0)
			_, err := Fetch(testCtx(t), ts.dial(t), local, sha)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Fetch = %v, want %v", err, tc.want)
			}
			if local.Has(sha) || blobCount(t, local) != 0 {
				t.Fatal("something was stored")
			}
			tmpEmpty(t, local)
		})
	}
}

func TestServeRejectsLyingPusher(t *testing.T) {
	peer := openStore(t, 0)
	c := startServer(t, peer, 5*time.Second).dial(t)
	data := content(2<<20, 6)
	sha := shaOf(data)
	wrong := bytes.Clone(data)
	wrong[0] ^= 0x80

	req, err := request{op: opPut, sha: sha, length: uint64(len(wrong))}.encode()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	if r, err := readReply(c); err != nil || r.status != statusContinue {
		t.Fatalf("reply %+v, %v; want Continue", r, err)
	}
	if _, err := c.Write(wrong); err != nil {
		t.Fatal(err)
	}
	if r, err := readReply(c); err != nil || r.status != statusCorrupt {
		t.Fatalf("reply %+v, %v; want Corrupt", r, err)
	}
	if peer.Has(sha) || blobCount(t, peer) != 0 {
		t.Fatal("corrupt push stored")
	}
	tmpEmpty(t, peer)
	// Still in step: a correct push on the same connection works.
	local := openStore(t, 0)
	if _, err := local.PutExpect(sha, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
	if err := Push(testCtx(t), c, local, sha); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readBlob(t, peer, sha), data) {
		t.Fatal("content differs")
	}
}

func TestConcurrentFetch(t *testing.T) {
	remote := openStore(t, 0)
	data := content(3<<20, 7)
	sha, _, err := remote.Put(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, remote, 5*time.Second)
	local := openStore(t, 0)
	const n = 12
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = ts.dial(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			size, err := Fetch(testCtx(t), conns[i], local, sha)
			if err == nil && size != int64(len(data)) {
				err = errors.New("wrong size")
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("fetch %d: %v", i, err)
		}
	}
	if !bytes.Equal(readBlob(t, local, sha), data) {
		t.Fatal("content differs")
	}
	if c := blobCount(t, local); c != 1 {
		t.Fatalf("%d blobs", c)
	}
	tmpEmpty(t, local)
}

func TestServeGarbage(t *testing.T) {
	sha := shaOf([]byte("x"))
	valid, err := request{op: opGet, sha: sha}.encode()
	if err != nil {
		t.Fatal(err)
	}
	mod := func(i int, b byte) []byte { v := bytes.Clone(valid); v[i] = b; return v }
	hugePut, err := request{op: opPut, sha: sha, length: 1 << 63}.encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		invalid bool // expect an Invalid reply before the close
	}{
		{"nothing", nil, false},
		{"short header", valid[:20], false},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), true},
		{"zeros", make([]byte, 4096), true},
		{"bad version", mod(3, 2), true},
		{"unknown op", mod(4, 'X'), true},
		{"get with length", mod(44, 1), true},
		{"put length beyond int64", hugePut, true},
		{"random", content(10000, 8), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, 0)
			done := make(chan struct{})
			ts := startHandler(t, func(c net.Conn) {
				defer close(done)
				Serve(c, s, 5*time.Second)
			})
			c := ts.dial(t)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(tc.in)
			c.(*net.TCPConn).CloseWrite()
			r, err := readReply(c)
			if tc.invalid {
				if err != nil || r.status != statusInvalid || r.msg == "" {
					t.Fatalf("reply %+v, %v; want Invalid", r, err)
				}
				t.Logf("reply: %s", r.msg)
			}
			if _, err := io.ReadAll(c); err != nil {
				// Closing with unread garbage may reset the connection.
				t.Logf("after close: %v", err)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return")
			}
		})
	}
}

func TestServeIdle(t *testing.T) {
	s := openStore(t, 0)
	done := make(chan struct{})
	ts := startHandler(t, func(c net.Conn) {
		defer close(done)
		Serve(c, s, 100*time.Millisecond)
	})
	c := ts.dial(t)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not time out an idle connection")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read %d, %v after idle close", n, err)
	}
}

func TestContext(t *testing.T) {
	// A peer that reads requests but never answers.
	ts := startHandler(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	sha := shaOf([]byte("x"))
	local := openStore(t, 0)
	if _, _, err := local.Put(bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	expired, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	cancelled, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	done, cancel3 := context.WithCancel(context.Background())
	cancel3()
	missing := shaOf([]byte("y"))
	for _, tc := range []struct {
		name string
		run  func() error
		want error
	}{
		{"fetch deadline", func() error { _, err := Fetch(expired, ts.dial(t), local, missing); return err }, context.DeadlineExceeded},
		{"push cancelled", func() error { return Push(cancelled, ts.dial(t), local, sha) }, context.Canceled},
		{"fetch already done", func() error { _, err := Fetch(done, ts.dial(t), local, missing); return err }, context.Canceled},
	} {
		start := time.Now()
		err := tc.run()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", tc.name, d)
		}
	}
}
