//go:build !wasip1

package election

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func reset() *FakeHost {
	Host = NewFakeHost()
	return Host
}

func TestOperations(t *testing.T) {
	for _, c := range []struct {
		name string
		run  func(h *FakeHost) (Lease, error)
		want error
		held bool
	}{
		{"campaign free lease", func(h *FakeHost) (Lease, error) { return Campaign("a", 0) }, nil, true},
		{"campaign held by another", func(h *FakeHost) (Lease, error) {
			h.Grant("a", "other/mod")
			return Campaign("a", 0)
		}, ErrNotLeader, true},
		{"campaign after the other's lease expired", func(h *FakeHost) (Lease, error) {
			h.Grant("a", "other/mod")
			h.Advance(3 * time.Second)
			return Campaign("a", 0)
		}, nil, true},
		{"renew with the current token", func(h *FakeHost) (Lease, error) {
			l, _ := Campaign("a", 0)
			return Renew("a", l.Token, time.Second)
		}, nil, true},
		{"renew with an old token", func(h *FakeHost) (Lease, error) {
			l, _ := Campaign("a", 0)
			h.Advance(3 * time.Second)
			h.Grant("a", "other/mod")
			return Renew("a", l.Token, 0)
		}, ErrStaleToken, true},
		{"resign", func(h *FakeHost) (Lease, error) {
			l, _ := Campaign("a", 0)
			return Resign("a", l.Token)
		}, nil, false},
		{"get a free lease", func(h *FakeHost) (Lease, error) { return Get("free") }, nil, false},
		{"empty name", func(h *FakeHost) (Lease, error) { return Campaign("", 0) }, ErrInvalid, false},
		{"negative ttl", func(h *FakeHost) (Lease, error) { return Campaign("a", -time.Second) }, ErrInvalid, false},
		{"no quorum", func(h *FakeHost) (Lease, error) { h.Fail = 3; return Campaign("a", 0) }, ErrNoQuorum, false},
		{"no cluster", func(h *FakeHost) (Lease, error) { h.Fail = 5; return Get("a") }, ErrUnavailable, false},
		{"unknown status", func(h *FakeHost) (Lease, error) { h.Fail = 77; return Get("a") }, ErrHost, false},
		{"lease larger than the first buffer", func(h *FakeHost) (Lease, error) {
			h.Session = strings.Repeat("s", 1000)
			return Campaign("a", 0)
		}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := reset()
			l, err := c.run(h)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if c.want == nil || errors.Is(c.want, ErrNotLeader) || errors.Is(c.want, ErrStaleToken) {
				if l.Held != c.held {
					t.Fatalf("lease %+v: held = %v, want %v", l, l.Held, c.held)
				}
			}
		})
	}
}

func TestCampaignReportsHolder(t *testing.T) {
	h := reset()
	g := h.Grant("a", "other/mod")
	l, err := Campaign("a", 0)
	if !errors.Is(err, ErrNotLeader) || l.Session != "other/mod" || l.Token != g.Token || l.ValidMillis <= 0 {
		t.Fatalf("Campaign = %+v, %v; want the other holder's lease", l, err)
	}
}

func TestWrite(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(h *FakeHost)
		token uint64
		want  error
	}{
		{"first write", func(h *FakeHost) {}, 5, nil},
		{"same token again", func(h *FakeHost) { h.Highest["k"] = 5 }, 5, nil},
		{"newer token", func(h *FakeHost) { h.Highest["k"] = 5 }, 9, nil},
		{"stale token", func(h *FakeHost) { h.Highest["k"] = 9 }, 5, ErrStaleToken},
		{"no store", func(h *FakeHost) { h.NoStore = true }, 5, ErrNoStore},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := reset()
			c.setup(h)
			if err := Write("k", c.token, []byte("x")); !errors.Is(err, c.want) {
				t.Fatalf("Write = %v, want %v", err, c.want)
			}
		})
	}
}

func TestLeaderTick(t *testing.T) {
	h := reset()
	ld := NewLeader("job", 0)
	ld.now = func() time.Time { return h.Now }
	l1, ok := ld.Tick()
	if !ok || !ld.Leading() {
		t.Fatalf("first Tick: %+v, %v; want leadership", l1, ok)
	}
	h.Advance(500 * time.Millisecond)
	l2, ok := ld.Tick() // renews with the same token
	if !ok || l2.Token != l1.Token {
		t.Fatalf("renew Tick: %+v, %v; want the same token %d", l2, ok, l1.Token)
	}
	if err := Write("job", l2.Token, []byte("1")); err != nil {
		t.Fatal(err)
	}
	// Paused past the lease: another holder takes over and writes with a newer token.
	h.Advance(5 * time.Second)
	g := h.Grant("job", "other/mod")
	if err := Write("job", g.Token, []byte("2")); err != nil {
		t.Fatal(err)
	}
	if ld.Leading() {
		t.Fatal("Leading after the local deadline passed")
	}
	if err := Write("job", l2.Token, []byte("stale")); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("stale write = %v, want ErrStaleToken", err)
	}
	if _, ok := ld.Tick(); ok {
		t.Fatal("Tick won a lease another session holds")
	}
	if ld.Lease().Session != "other/mod" {
		t.Fatalf("Lease() = %+v, want the other holder", ld.Lease())
	}
	h.Advance(3 * time.Second)
	l3, ok := ld.Tick()
	if !ok || l3.Token <= g.Token {
		t.Fatalf("Tick after the other's expiry: %+v, %v; want a newer token than %d", l3, ok, g.Token)
	}
	if err := ld.Resign(); err != nil || h.Leases["job"].Held {
		t.Fatalf("Resign: %v, lease %+v", err, h.Leases["job"])
	}
}
