package capability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"

	"github.com/wasmpod/wasmpod/runtime"
)

// Result codes of the net imports (guest-sdk/ABI.md §4). After any of them net_error yields a
// message saying why.
const (
	NetNotAllowed int32 = -1 // the destination is not on the module's allowlist (or resolves only to denied addresses)
	NetIO         int32 = -2 // the dial, read or write failed; the handle (if any) is closed
	NetTooMany    int32 = -3 // the instance has MaxHandles connections open
	NetBadHandle  int32 = -4 // no such open handle
	NetBadArgs    int32 = -5 // pointers out of guest memory, or an address that is not host:port
	NetTimeout    int32 = -6 // the call's deadline passed; the handle (if any) is closed
)

// maxAddr bounds a dial address: a 253-byte name, brackets, colon and port.
const maxAddr = 262

// NetFunctions returns the outbound network imports: net_dial, net_write, net_read, net_close
// and net_error.
func (h *Host) NetFunctions() []runtime.HostFunction {
	i := runtime.I32
	return []runtime.HostFunction{
		{Name: "net_dial", Params: []runtime.ValueType{i, i}, Results: []runtime.ValueType{i},
			Fn: func(ctx context.Context, c runtime.Caller, s []uint64) { s[0] = i32(h.dial(ctx, c, s[0], s[1])) }},
		{Name: "net_write", Params: []runtime.ValueType{i, i, i}, Results: []runtime.ValueType{i},
			Fn: func(ctx context.Context, c runtime.Caller, s []uint64) {
				s[0] = i32(h.write(ctx, c, int32(s[0]), uint32(s[1]), uint32(s[2])))
			}},
		{Name: "net_read", Params: []runtime.ValueType{i, i, i}, Results: []runtime.ValueType{i},
			Fn: func(ctx context.Context, c runtime.Caller, s []uint64) {
				s[0] = i32(h.read(ctx, c, int32(s[0]), uint32(s[1]), uint32(s[2])))
			}},
		{Name: "net_close", Params: []runtime.ValueType{i}, Results: []runtime.ValueType{i},
			Fn: func(ctx context.Context, c runtime.Caller, s []uint64) { s[0] = i32(h.closeHandle(c, int32(s[0]))) }},
		{Name: "net_error", Params: []runtime.ValueType{i, i}, Results: []runtime.ValueType{i},
			Fn: func(ctx context.Context, c runtime.Caller, s []uint64) {
				s[0] = i32(h.netError(c, uint32(s[0]), uint32(s[1])))
			}},
	}
}

// fail records msg as the instance's last network error and returns code.
func (st *instState) fail(code int32, format string, args ...any) int32 {
	st.mu.Lock()
	st.netErr = fmt.Sprintf(format, args...)
	st.mu.Unlock()
	return code
}

func (h *Host) dial(ctx context.Context, c runtime.Caller, ptr, n uint64) int32 {
	st := h.state(c)
	if st == nil {
		return NetNotAllowed
	}
	b, ok := readBytes(c, ptr, n, maxAddr)
	if !ok {
		return st.fail(NetBadArgs, "net_dial: address out of guest memory or longer than %d bytes", maxAddr)
	}
	addr := string(b)
	code, conn, err := h.dialAllowed(ctx, c, st.mod, addr)
	if err != nil {
		return st.fail(code, "%v", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || len(st.conns) >= h.cfg.MaxHandles {
		conn.Close()
		if st.closed {
			st.netErr = fmt.Sprintf("net_dial %q: the instance is being discarded", addr)
			return NetIO
		}
		st.netErr = fmt.Sprintf("net_dial %q: %d connections already open (limit %d)", addr, len(st.conns), h.cfg.MaxHandles)
		return NetTooMany
	}
	for {
		st.next++
		if st.next <= 0 {
			st.next = 1
		}
		if _, used := st.conns[st.next]; !used {
			break
		}
	}
	if st.conns == nil {
		st.conns = map[int32]net.Conn{}
	}
	st.conns[st.next] = conn
	h.open.Add(1)
	return st.next
}

// dialAllowed checks addr against the module's allowlist, resolves it and dials the first
// permitted address that answers, by the caller's deadline.
func (h *Host) dialAllowed(ctx context.Context, c runtime.Caller, m *runtime.Module, addr string) (int32, net.Conn, error) {
	var list []string
	if h.cfg.Allowlist != nil {
		list = h.cfg.Allowlist(m.Name())
	}
	if len(list) == 0 {
		return NetNotAllowed, nil, fmt.Errorf("net_dial %q: %w: module %q has no network allowlist", addr, ErrNotAllowed, m.Name())
	}
	al, err := ParseAllowlist(list)
	if err != nil {
		return NetNotAllowed, nil, fmt.Errorf("net_dial %q: %w: %v", addr, ErrNotAllowed, err)
	}
	tgt, err := al.Check(addr)
	if err != nil {
		if errors.Is(err, ErrNotAllowed) {
			return NetNotAllowed, nil, err
		}
		return NetBadArgs, nil, err
	}
	dctx, cancel := context.WithDeadline(ctx, deadline(ctx, c))
	defer cancel()
	var cands []netip.AddrPort
	if tgt.Name == "" {
		cands = []netip.AddrPort{tgt.Addr}
	} else {
		ips, err := h.cfg.Resolver.LookupNetIP(dctx, "ip", tgt.Name)
		if err != nil {
			return ioCode(dctx, err), nil, fmt.Errorf("net_dial %q: resolve: %w", addr, err)
		}
		for _, ip := range ips {
			if al.AddrAllowed(ip, tgt.Port) {
				cands = append(cands, netip.AddrPortFrom(ip.Unmap(), tgt.Port))
			}
		}
		if len(cands) == 0 {
			return NetNotAllowed, nil, fmt.Errorf("net_dial %q: %w: it resolves only to addresses that need a literal allowlist entry (%v)", addr, ErrNotAllowed, ips)
		}
	}
	var d net.Dialer
	var errs []error
	for _, ap := range cands {
		conn, err := d.DialContext(dctx, "tcp", ap.String())
		if err == nil {
			return 0, conn, nil
		}
		errs = append(errs, err)
		if dctx.Err() != nil {
			break
		}
	}
	err = errors.Join(errs...)
	return ioCode(dctx, err), nil, fmt.Errorf("net_dial %q: %w", addr, err)
}

// ioCode is NetTimeout when the failure is the deadline, else NetIO.
func ioCode(ctx context.Context, err error) int32 {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return NetTimeout
	}
	return NetIO
}

// conn returns the open connection of handle hd.
func (st *instState) conn(hd int32) net.Conn {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.conns[hd]
}

// drop closes and forgets handle hd (after an I/O error or timeout, or net_close). It reports
// whether the handle was open.
func (st *instState) drop(hd int32) bool {
	st.mu.Lock()
	c, ok := st.conns[hd]
	delete(st.conns, hd)
	st.mu.Unlock()
	if ok {
		c.Close()
		st.h.open.Add(-1)
	}
	return ok
}

func (h *Host) write(ctx context.Context, c runtime.Caller, hd int32, ptr, n uint32) int32 {
	st := h.state(c)
	if st == nil {
		return NetBadHandle
	}
	conn := st.conn(hd)
	if conn == nil {
		return st.fail(NetBadHandle, "net_write: no open handle %d", hd)
	}
	b, ok := c.Read(ptr, n)
	if !ok || n > 1<<31-1 {
		return st.fail(NetBadArgs, "net_write: data out of guest memory")
	}
	conn.SetWriteDeadline(deadline(ctx, c))
	if _, err := conn.Write(b); err != nil {
		st.drop(hd)
		return st.fail(ioCode(ctx, err), "net_write %s: %v (handle closed)", conn.RemoteAddr(), err)
	}
	return int32(n)
}

func (h *Host) read(ctx context.Context, c runtime.Caller, hd int32, ptr, capacity uint32) int32 {
	st := h.state(c)
	if st == nil {
		return NetBadHandle
	}
	conn := st.conn(hd)
	if conn == nil {
		return st.fail(NetBadHandle, "net_read: no open handle %d", hd)
	}
	if capacity == 0 {
		return st.fail(NetBadArgs, "net_read: empty buffer")
	}
	n := min(int(capacity), h.cfg.MaxReadBytes)
	if !c.InRange(ptr, uint32(n)) {
		// Checked before blocking: a bad buffer fails now, not after the data arrived (and was
		// then lost).
		return st.fail(NetBadArgs, "net_read: buffer out of guest memory")
	}
	buf := make([]byte, n)
	conn.SetReadDeadline(deadline(ctx, c))
	k, err := conn.Read(buf)
	for k == 0 && err == nil { // a Read of nothing is not EOF
		k, err = conn.Read(buf)
	}
	if k > 0 {
		if !c.Write(ptr, buf[:k]) {
			return st.fail(NetBadArgs, "net_read: buffer out of guest memory")
		}
		return int32(k)
	}
	if errors.Is(err, io.EOF) {
		return 0
	}
	st.drop(hd)
	return st.fail(ioCode(ctx, err), "net_read %s: %v (handle closed)", conn.RemoteAddr(), err)
}

func (h *Host) closeHandle(c runtime.Caller, hd int32) int32 {
	st := h.state(c)
	if st == nil {
		return NetBadHandle
	}
	if !st.drop(hd) {
		return st.fail(NetBadHandle, "net_close: no open handle %d", hd)
	}
	return 0
}

// netError copies the instance's last network error message like config_get: its length, the
// text written only when it fits; -1 when there is none.
func (h *Host) netError(c runtime.Caller, ptr, capacity uint32) int32 {
	st := h.state(c)
	if st == nil {
		return -1
	}
	st.mu.Lock()
	msg := st.netErr
	st.mu.Unlock()
	if msg == "" {
		return -1
	}
	if uint64(len(msg)) <= uint64(capacity) && !c.Write(ptr, []byte(msg)) {
		return NetBadArgs
	}
	return int32(len(msg))
}
