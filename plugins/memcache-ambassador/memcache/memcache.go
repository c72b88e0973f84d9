// Package memcache is a small memcached text-protocol client over a sharded set of backends:
// keys are placed with a ketama ring, connections are pooled per backend, and a backend that
// cannot be reached fails only the keys that hash to it, with an error naming it.
//
// It is written against io.ReadWriteCloser and a Dialer, so the same code runs in the wasm
// ambassador (connections through the host's net imports) and natively in tests (plain TCP).
package memcache

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/wasmpod/wasmpod/plugins/memcache-ambassador/ketama"
)

// Errors, matched with errors.Is.
var (
	// ErrBackend: the key's backend could not be reached or dropped the connection.
	ErrBackend = errors.New("memcached backend unavailable")
	// ErrProtocol: the backend answered something that is not memcached's text protocol.
	ErrProtocol = errors.New("memcached protocol error")
	// ErrServer: the backend answered ERROR, CLIENT_ERROR or SERVER_ERROR.
	ErrServer = errors.New("memcached error")
	// ErrNotStored: a set was not stored.
	ErrNotStored = errors.New("not stored")
	// ErrBadKey: the key is empty, longer than 250 bytes, or has spaces or control characters.
	ErrBadKey = errors.New("invalid memcached key")
	// ErrNoBackends: the client has no backends.
	ErrNoBackends = errors.New("no memcached backends")
)

// MaxKey is memcached's key length limit.
const MaxKey = 250

// DefaultMaxValue is memcached's default item size limit (1 MiB).
const DefaultMaxValue = 1 << 20

// maxLine bounds a response line (a VALUE line is well under 300 bytes).
const maxLine = 1024

// Dialer opens a connection to a backend address.
type Dialer func(addr string) (io.ReadWriteCloser, error)

// Client talks to a sharded set of memcached backends. It is not safe for concurrent use (a
// wasm instance runs one call at a time; give each instance its own Client).
type Client struct {
	ring *ketama.Ring
	dial Dialer
	idle map[string][]*conn
	// MaxIdle is how many idle connections are kept per backend. Default 2.
	MaxIdle int
	// MaxValue bounds the values read back. Default DefaultMaxValue.
	MaxValue int
}

type conn struct {
	rwc io.ReadWriteCloser
	r   *bufio.Reader
}

// New returns a client over backends ("host:port" each).
func New(backends []string, dial Dialer) *Client {
	return &Client{ring: ketama.New(backends), dial: dial, idle: map[string][]*conn{}, MaxIdle: 2, MaxValue: DefaultMaxValue}
}

// Backend returns the backend key hashes to.
func (c *Client) Backend(key string) string { return c.ring.Get(key) }

// Backends returns the backends.
func (c *Client) Backends() []string { return c.ring.Servers() }

// CheckKey validates a key against memcached's rules.
func CheckKey(key string) error {
	if key == "" || len(key) > MaxKey {
		return fmt.Errorf("%w: length %d (1 to %d bytes)", ErrBadKey, len(key), MaxKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] == 0x7f {
			return fmt.Errorf("%w: %q has a space or control character", ErrBadKey, key)
		}
	}
	return nil
}

// Get reads key from its backend; found is false on a miss.
func (c *Client) Get(key string) (value []byte, found bool, err error) {
	err = c.do(key, func(cn *conn) error {
		if _, err := io.WriteString(cn.rwc, "get "+key+"\r\n"); err != nil {
			return ioErr{err}
		}
		value, found, err = ReadGet(cn.r, key, c.MaxValue)
		return err
	})
	return value, found, err
}

// Set stores value under key on its backend, with flags 0 and the expiry given (0: never).
func (c *Client) Set(key string, value []byte, exptime int) error {
	return c.do(key, func(cn *conn) error {
		var b bytes.Buffer
		fmt.Fprintf(&b, "set %s 0 %d %d\r\n", key, exptime, len(value))
		b.Write(value)
		b.WriteString("\r\n")
		if _, err := cn.rwc.Write(b.Bytes()); err != nil {
			return ioErr{err}
		}
		return ReadStore(cn.r)
	})
}

// ioErr marks a failure of the connection itself (as opposed to an answer of the server).
type ioErr struct{ error }

func (e ioErr) Unwrap() error { return e.error }

// do runs fn on a connection to key's backend. A pooled connection that fails with an I/O
// error (the server or the host closed it while idle) is dropped and fn is retried once on a
// fresh one; both requests are idempotent.
func (c *Client) do(key string, fn func(*conn) error) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	addr := c.ring.Get(key)
	if addr == "" {
		return ErrNoBackends
	}
	for attempt := 0; ; attempt++ {
		cn, pooled, err := c.get(addr)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBackend, addr, err)
		}
		err = fn(cn)
		var ie ioErr
		isIO := errors.As(err, &ie) || errors.Is(err, ErrProtocol)
		if err == nil || !isIO {
			c.put(addr, cn) // a server's answer (miss, error line) leaves the connection in sync
			return err
		}
		cn.rwc.Close()
		if !pooled || attempt > 0 {
			return fmt.Errorf("%w: %s: %v", ErrBackend, addr, err)
		}
	}
}

func (c *Client) get(addr string) (*conn, bool, error) {
	if p := c.idle[addr]; len(p) > 0 {
		cn := p[len(p)-1]
		c.idle[addr] = p[:len(p)-1]
		return cn, true, nil
	}
	rwc, err := c.dial(addr)
	if err != nil {
		return nil, false, err
	}
	return &conn{rwc: rwc, r: bufio.NewReaderSize(rwc, maxLine)}, false, nil
}

func (c *Client) put(addr string, cn *conn) {
	if len(c.idle[addr]) >= c.MaxIdle {
		cn.rwc.Close()
		return
	}
	c.idle[addr] = append(c.idle[addr], cn)
}

// Close closes every pooled connection.
func (c *Client) Close() {
	for a, p := range c.idle {
		for _, cn := range p {
			cn.rwc.Close()
		}
		delete(c.idle, a)
	}
}

// readLine reads one CRLF-terminated line of at most maxLine bytes, without the CRLF.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, r.Size())
	}
	if err != nil {
		return nil, ioErr{err}
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line not ended by CRLF", ErrProtocol)
	}
	return line[:len(line)-2], nil
}

// serverError turns an error line into ErrServer, or returns nil if it is not one.
func serverError(line []byte) error {
	switch {
	case bytes.Equal(line, []byte("ERROR")):
		return fmt.Errorf("%w: ERROR", ErrServer)
	case bytes.HasPrefix(line, []byte("CLIENT_ERROR")), bytes.HasPrefix(line, []byte("SERVER_ERROR")):
		return fmt.Errorf("%w: %s", ErrServer, line)
	}
	return nil
}

// ReadGet reads the response to "get key": one VALUE item or none, then END. Values longer
// than maxValue are refused as a protocol error.
func ReadGet(r *bufio.Reader, key string, maxValue int) ([]byte, bool, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, false, err
	}
	if string(line) == "END" {
		return nil, false, nil
	}
	if err := serverError(line); err != nil {
		return nil, false, err
	}
	f := bytes.Fields(line)
	if len(f) < 4 || len(f) > 5 || string(f[0]) != "VALUE" {
		return nil, false, fmt.Errorf("%w: unexpected line %q", ErrProtocol, line)
	}
	if string(f[1]) != key {
		return nil, false, fmt.Errorf("%w: VALUE for key %q, asked for %q", ErrProtocol, f[1], key)
	}
	if _, err := strconv.ParseUint(string(f[2]), 10, 32); err != nil {
		return nil, false, fmt.Errorf("%w: flags %q", ErrProtocol, f[2])
	}
	n, err := strconv.Atoi(string(f[3]))
	if err != nil || n < 0 || n > maxValue {
		return nil, false, fmt.Errorf("%w: value length %q (limit %d)", ErrProtocol, f[3], maxValue)
	}
	val := make([]byte, n+2)
	if _, err := io.ReadFull(r, val); err != nil {
		return nil, false, ioErr{err}
	}
	if val[n] != '\r' || val[n+1] != '\n' {
		return nil, false, fmt.Errorf("%w: value not followed by CRLF", ErrProtocol)
	}
	end, err := readLine(r)
	if err != nil {
		return nil, false, err
	}
	if string(end) != "END" {
		return nil, false, fmt.Errorf("%w: %q after the value, want END", ErrProtocol, end)
	}
	return val[:n:n], true, nil
}

// ReadStore reads the response to a storage command.
func ReadStore(r *bufio.Reader) error {
	line, err := readLine(r)
	if err != nil {
		return err
	}
	switch string(line) {
	case "STORED":
		return nil
	case "NOT_STORED":
		return ErrNotStored
	}
	if err := serverError(line); err != nil {
		return err
	}
	return fmt.Errorf("%w: unexpected line %q", ErrProtocol, line)
}
