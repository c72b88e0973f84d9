package membership

import (
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Faults injects packet loss and delay into gossip, in user space, for tests on kernels without
// tc netem. The zero value injects nothing.
type Faults struct {
	// DropRate is the probability that an outgoing UDP gossip packet is dropped (0 to 1).
	DropRate float64
	// Delay is the mean delay of an outgoing packet and of a stream dial; each is delayed
	// uniformly between Delay/2 and 3*Delay/2 (netem's "delay D D/2").
	Delay time.Duration
}

// Active reports whether f injects anything.
func (f Faults) Active() bool { return f.DropRate > 0 || f.Delay > 0 }

// lossyTransport wraps memberlist's NetTransport: it drops and delays outgoing packets and
// delays stream dials. Delayed packets are sent by timers; Shutdown stops the pending ones.
type lossyTransport struct {
	*memberlist.NetTransport
	f Faults

	mu      sync.Mutex
	timers  map[*time.Timer]struct{}
	stopped bool
}

func newLossyTransport(bindAddr string, bindPort int, f Faults, mc *memberlist.Config) (*lossyTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{bindAddr}, BindPort: bindPort, Logger: mc.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &lossyTransport{NetTransport: nt, f: f, timers: map[*time.Timer]struct{}{}}, nil
}

func (t *lossyTransport) delay() time.Duration {
	if t.f.Delay <= 0 {
		return 0
	}
	return t.f.Delay/2 + rand.N(t.f.Delay+1)
}

// WriteTo drops the packet with probability DropRate, else sends it after the delay.
func (t *lossyTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	now := time.Now()
	if t.f.DropRate > 0 && rand.Float64() < t.f.DropRate {
		return now, nil // lost on the wire: the sender cannot tell
	}
	d := t.delay()
	if d == 0 {
		return t.NetTransport.WriteTo(b, addr)
	}
	pkt := append([]byte(nil), b...)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return now, nil
	}
	var tm *time.Timer
	tm = time.AfterFunc(d, func() {
		t.mu.Lock()
		_, live := t.timers[tm]
		delete(t.timers, tm)
		t.mu.Unlock()
		if live {
			_, _ = t.NetTransport.WriteTo(pkt, addr)
		}
	})
	t.timers[tm] = struct{}{}
	return now, nil
}

// DialTimeout delays a stream dial (push/pull, fallback probes) like a packet.
func (t *lossyTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if d := t.delay(); d > 0 {
		time.Sleep(min(d, timeout))
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

// Shutdown cancels the delayed packets, then closes the sockets.
func (t *lossyTransport) Shutdown() error {
	t.mu.Lock()
	t.stopped = true
	for tm := range t.timers {
		tm.Stop()
	}
	t.timers = map[*time.Timer]struct{}{}
	t.mu.Unlock()
	return t.NetTransport.Shutdown()
}

// WriteToAddress is WriteTo for memberlist's node-aware path.
func (t *lossyTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

// DialAddressTimeout is DialTimeout for memberlist's node-aware path.
func (t *lossyTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

var _ memberlist.NodeAwareTransport = (*lossyTransport)(nil)
