// Package guestapi gives guests the election sidecar API as host functions in the `wasmpod`
// import namespace (guest-sdk/ABI.md §4): `election` (get, campaign, renew, resign: the same
// operations, with the same meaning, as the admin API's /v1/election routes) and
// `fenced_write`, a write the host makes on the guest's behalf to the module's fenced store,
// carrying the guest's fencing token. The store, not the host, checks the token.
//
// The session of a guest is "pod/module", so every replica of a module on a node is one holder,
// and a lease survives an instance being replaced.
package guestapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/runtime"
)

// Operations of the election import.
const (
	OpGet      = 0
	OpCampaign = 1
	OpRenew    = 2
	OpResign   = 3
)

// Status codes of the election import (the high 32 bits of its result).
const (
	StatusOK          = 0 // the lease JSON is the answer
	StatusNotLeader   = 1 // campaign: someone else holds the lease (the JSON says who)
	StatusStaleToken  = 2 // renew/resign: the token is no longer current (the JSON is the lease)
	StatusNoQuorum    = 3 // no Raft leader reachable; act as not leader
	StatusInvalid     = 4 // bad op, name, TTL or token
	StatusUnavailable = 5 // this host runs no cluster node, or it is shutting down
	StatusMemory      = 6 // a pointer/length was outside guest memory
)

// Results of the fenced_write import.
const (
	WriteOK          = 0 // the store admitted the write
	WriteStale       = 1 // the store rejected the token as stale (409)
	WriteUnavailable = 2 // the store could not be reached or failed (not 2xx, not 409)
	WriteNoStore     = 3 // the module has no fenced_store config key
	WriteInvalid     = 4 // bad name, or a pointer/length outside guest memory
)

// StoreConfigKey is the module config key naming the fenced store's base URL.
const StoreConfigKey = "fenced_store"

// MaxNameLen bounds an election name (the admin API's route takes the same).
const MaxNameLen = 128

// Elections is what the imports need of a cluster node (*cluster.Elections implements it).
type Elections interface {
	Get(ctx context.Context, name string) (cluster.Lease, error)
	Campaign(ctx context.Context, name string, req cluster.CampaignRequest) (cluster.Lease, error)
	Renew(ctx context.Context, name string, req cluster.RenewRequest) (cluster.Lease, error)
	Resign(ctx context.Context, name string, req cluster.ResignRequest) (cluster.Lease, error)
}

// Config configures the imports. Start from DefaultConfig.
type Config struct {
	// Pod is the pod name, the first half of every guest's session.
	Pod string
	// Elections serves the election import; nil answers StatusUnavailable.
	Elections Elections
	// OpTimeout bounds one election operation (the guest call's own deadline applies too).
	OpTimeout time.Duration
	// WriteTimeout bounds one fenced write.
	WriteTimeout time.Duration
	// MaxWriteBytes bounds a fenced write's payload.
	MaxWriteBytes int
	// HTTP is the client for fenced writes; nil uses one with no redirects.
	HTTP *http.Client
}

// DefaultConfig returns the host's defaults.
func DefaultConfig() Config {
	return Config{
		// 4 s: one forwarded operation waits up to cluster's ForwardWait (3 s) for a Raft leader.
		OpTimeout: 4 * time.Second,
		// 2 s: one lease TTL; a store slower than that makes the token stale anyway.
		WriteTimeout: 2 * time.Second,
		// 1 MiB: fenced writes are small records, not bulk data.
		MaxWriteBytes: 1 << 20,
	}
}

// GuestLease is the JSON the election import writes: the cluster's Lease plus ValidMillis, the
// time left before Expiry measured by the host when it answered (guests have no reason to
// compare wall clocks).
type GuestLease struct {
	cluster.Lease
	ValidMillis int64 `json:"valid_ms"`
}

// Imports returns the host functions for runtime.Config.Imports.
func Imports(cfg Config) []runtime.HostFunction {
	d := DefaultConfig()
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = d.OpTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = d.WriteTimeout
	}
	if cfg.MaxWriteBytes <= 0 {
		cfg.MaxWriteBytes = d.MaxWriteBytes
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	a := &api{cfg: cfg}
	return []runtime.HostFunction{
		{
			Name:    "election",
			Params:  []runtime.ValueType{runtime.I32, runtime.I32, runtime.I32, runtime.I64, runtime.I32, runtime.I32, runtime.I32},
			Results: []runtime.ValueType{runtime.I64},
			Fn:      a.election,
		},
		{
			Name:    "fenced_write",
			Params:  []runtime.ValueType{runtime.I32, runtime.I32, runtime.I64, runtime.I32, runtime.I32},
			Results: []runtime.ValueType{runtime.I32},
			Fn:      a.fencedWrite,
		},
	}
}

type api struct{ cfg Config }

// Session returns a caller's session: "pod/module".
func (a *api) session(c runtime.Caller) string {
	name := ""
	if m := c.Module(); m != nil {
		name = m.Name()
	}
	return a.cfg.Pod + "/" + name
}

// Pack builds an election result: status in the high 32 bits, JSON length in the low 32.
func Pack(status int, n int) uint64 { return uint64(uint32(status))<<32 | uint64(uint32(n)) }

// StatusOf maps a cluster error to an election status.
func StatusOf(err error) int {
	switch {
	case err == nil:
		return StatusOK
	case errors.Is(err, cluster.ErrNotLeader):
		return StatusNotLeader
	case errors.Is(err, cluster.ErrStaleToken):
		return StatusStaleToken
	case errors.Is(err, cluster.ErrInvalid):
		return StatusInvalid
	case errors.Is(err, cluster.ErrClosed):
		return StatusUnavailable
	default: // ErrNoQuorum, deadlines: nobody can say who leads
		return StatusNoQuorum
	}
}

// election: (op i32, name_ptr i32, name_len i32, token i64, ttl_ms i32, out_ptr i32, out_cap i32) -> i64
func (a *api) election(ctx context.Context, c runtime.Caller, stack []uint64) {
	op := int32(stack[0])
	namePtr, nameLen := uint32(stack[1]), uint32(stack[2])
	token := stack[3]
	ttl := int64(int32(stack[4]))
	outPtr, outCap := uint32(stack[5]), uint32(stack[6])
	if nameLen == 0 || nameLen > MaxNameLen {
		stack[0] = Pack(StatusInvalid, 0)
		return
	}
	nb, ok := c.Read(namePtr, nameLen)
	if !ok {
		stack[0] = Pack(StatusMemory, 0)
		return
	}
	l, status := a.do(ctx, op, string(nb), a.session(c), token, ttl)
	if status == StatusInvalid || status == StatusUnavailable {
		stack[0] = Pack(status, 0)
		return
	}
	b, _ := json.Marshal(GuestLease{Lease: l, ValidMillis: l.ValidFor().Milliseconds()})
	if uint32(len(b)) <= outCap && !c.Write(outPtr, b) {
		stack[0] = Pack(StatusMemory, 0)
		return
	}
	stack[0] = Pack(status, len(b))
}

// do runs one election operation for session.
func (a *api) do(ctx context.Context, op int32, name, session string, token uint64, ttlMillis int64) (cluster.Lease, int) {
	e := a.cfg.Elections
	if e == nil {
		return cluster.Lease{}, StatusUnavailable
	}
	if ttlMillis < 0 {
		return cluster.Lease{}, StatusInvalid
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.OpTimeout)
	defer cancel()
	var l cluster.Lease
	var err error
	switch op {
	case OpGet:
		l, err = e.Get(ctx, name)
	case OpCampaign:
		l, err = e.Campaign(ctx, name, cluster.CampaignRequest{Session: session, TTLMillis: ttlMillis})
	case OpRenew:
		l, err = e.Renew(ctx, name, cluster.RenewRequest{Session: session, Token: token, TTLMillis: ttlMillis})
	case OpResign:
		l, err = e.Resign(ctx, name, cluster.ResignRequest{Session: session, Token: token})
	default:
		return cluster.Lease{}, StatusInvalid
	}
	if l.Name == "" {
		l.Name = name
	}
	return l, StatusOf(err)
}

// fenced_write: (name_ptr i32, name_len i32, token i64, data_ptr i32, data_len i32) -> i32
func (a *api) fencedWrite(ctx context.Context, c runtime.Caller, stack []uint64) {
	namePtr, nameLen := uint32(stack[0]), uint32(stack[1])
	token := stack[2]
	dataPtr, dataLen := uint32(stack[3]), uint32(stack[4])
	if nameLen == 0 || nameLen > MaxNameLen || int64(dataLen) > int64(a.cfg.MaxWriteBytes) {
		stack[0] = WriteInvalid
		return
	}
	name, ok1 := c.Read(namePtr, nameLen)
	data, ok2 := c.Read(dataPtr, dataLen)
	if !ok1 || !ok2 {
		stack[0] = WriteInvalid
		return
	}
	base := ""
	if m := c.Module(); m != nil {
		base = m.Config().Config[StoreConfigKey]
	}
	if base == "" {
		stack[0] = WriteNoStore
		return
	}
	stack[0] = uint64(a.write(ctx, base, string(name), a.session(c), token, data))
}

// write sends PUT {base}/v1/fenced/{name} with the token in the Fencing-Token header.
func (a *api) write(ctx context.Context, base, name, session string, token uint64, data []byte) uint32 {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.WriteTimeout)
	defer cancel()
	u := base + "/v1/fenced/" + url.PathEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(data))
	if err != nil {
		return WriteUnavailable
	}
	req.Header.Set(TokenHeader, strconv.FormatUint(token, 10))
	req.Header.Set(SessionHeader, session)
	resp, err := a.cfg.HTTP.Do(req)
	if err != nil {
		return WriteUnavailable
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode/100 == 2:
		return WriteOK
	case resp.StatusCode == http.StatusConflict:
		return WriteStale
	}
	return WriteUnavailable
}

// Headers of a fenced write.
const (
	TokenHeader   = "Fencing-Token"
	SessionHeader = "Wasmpod-Session"
)

// StatusText names a status for logs.
func StatusText(status int) string {
	switch status {
	case StatusOK:
		return "ok"
	case StatusNotLeader:
		return "not leader"
	case StatusStaleToken:
		return "stale token"
	case StatusNoQuorum:
		return "no quorum"
	case StatusInvalid:
		return "invalid"
	case StatusUnavailable:
		return "unavailable"
	case StatusMemory:
		return "memory out of range"
	}
	return fmt.Sprintf("status %d", status)
}
