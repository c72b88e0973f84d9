//go:build !wasip1

package election

import (
	"encoding/json"
	"sync"
	"time"
)

// Host stands in for the host's election and fenced_write imports when the SDK is compiled
// natively (for unit tests of the SDK and of plugin logic). It is not used on wasip1.
var Host = NewFakeHost()

// FakeHost is an in-memory cluster of one holder per session, with a fenced store. It follows
// the host's rules: tokens grow with every grant; renew and resign need the current token;
// the store admits a token at least as high as the highest it has admitted.
type FakeHost struct {
	mu sync.Mutex
	// Session is the caller's session ("pod/module").
	Session string
	// Now is the fake clock.
	Now time.Time
	// DefaultTTL applies to a campaign or renew without a TTL.
	DefaultTTL time.Duration
	// Fail, when not 0, is the status every election operation answers (with no lease).
	Fail uint32
	// Leases by name; nextToken is the next grant's token.
	Leases    map[string]*Lease
	nextToken uint64
	// Highest admitted token and admitted writes per name, as a fenced store keeps them.
	Highest map[string]uint64
	Writes  map[string][][]byte
	// NoStore makes fenced writes answer 3 (no store configured).
	NoStore bool
}

// NewFakeHost returns an empty FakeHost with session "pod/module" and a 2 s default TTL.
func NewFakeHost() *FakeHost {
	return &FakeHost{Session: "pod/module", Now: time.Unix(1_700_000_000, 0), DefaultTTL: 2 * time.Second,
		Leases: map[string]*Lease{}, nextToken: 10, Highest: map[string]uint64{}, Writes: map[string][][]byte{}}
}

// Advance moves the fake clock.
func (h *FakeHost) Advance(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Now = h.Now.Add(d)
}

// Grant makes session hold name now (another holder, for tests).
func (h *FakeHost) Grant(name, session string) Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.grant(name, session, h.DefaultTTL)
}

func (h *FakeHost) grant(name, session string, ttl time.Duration) Lease {
	h.nextToken++
	l := &Lease{Name: name, Held: true, Holder: "fake", Session: session, Token: h.nextToken,
		TTLMillis: ttl.Milliseconds(), Expiry: h.Now.Add(ttl), Index: h.nextToken}
	h.Leases[name] = l
	return h.view(l)
}

func (h *FakeHost) view(l *Lease) Lease {
	v := *l
	if v.Held && h.Now.Before(v.Expiry) {
		v.ValidMillis = v.Expiry.Sub(h.Now).Milliseconds()
	}
	return v
}

func (h *FakeHost) do(op int32, name string, token uint64, ttl time.Duration) (Lease, uint32) {
	if name == "" || len(name) > 128 || op < 0 || op > 3 {
		return Lease{}, 4
	}
	if h.Fail != 0 {
		return Lease{}, h.Fail
	}
	if ttl == 0 {
		ttl = h.DefaultTTL
	}
	l, ok := h.Leases[name]
	live := ok && l.Held && h.Now.Before(l.Expiry)
	switch op {
	case opGet:
		if !ok {
			return Lease{Name: name}, 0
		}
		return h.view(l), 0
	case opCampaign:
		if live && l.Session != h.Session {
			return h.view(l), 1
		}
		if live { // already held: a renewal
			l.Expiry, l.TTLMillis = h.Now.Add(ttl), ttl.Milliseconds()
			h.nextToken++
			l.Index = h.nextToken
			return h.view(l), 0
		}
		return h.grant(name, h.Session, ttl), 0
	case opRenew, opResign:
		if !live || l.Session != h.Session || l.Token != token {
			if !ok {
				return Lease{Name: name}, 2
			}
			return h.view(l), 2
		}
		h.nextToken++
		l.Index = h.nextToken
		if op == opRenew {
			l.Expiry, l.TTLMillis = h.Now.Add(ttl), ttl.Milliseconds()
		} else {
			l.Held, l.Holder, l.Session = false, "", ""
		}
		return h.view(l), 0
	}
	return Lease{}, 4
}

func hostElection(op int32, name string, token uint64, ttlMs int32, out []byte) uint64 {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	l, status := h.do(op, name, token, time.Duration(ttlMs)*time.Millisecond)
	if status == 4 || status == 5 || h.Fail != 0 {
		return uint64(status) << 32
	}
	b, _ := json.Marshal(l)
	if len(b) <= len(out) { // written only when it fits, as the host does
		copy(out, b)
	}
	return uint64(status)<<32 | uint64(len(b))
}

func hostFencedWrite(name string, token uint64, data []byte) int32 {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.NoStore {
		return 3
	}
	if name == "" || len(name) > 128 {
		return 4
	}
	if token < h.Highest[name] {
		return 1
	}
	h.Highest[name] = token
	h.Writes[name] = append(h.Writes[name], append([]byte(nil), data...))
	return 0
}
