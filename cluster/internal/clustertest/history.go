package clustertest

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Event is one line a node or the store prints (see ./node).
type Event struct {
	T      int64  `json:"t"`
	Node   string `json:"node"`
	Ev     string `json:"ev"`
	Lease  string `json:"lease,omitempty"`
	Token  uint64 `json:"token,omitempty"`
	Expiry int64  `json:"expiry,omitempty"`
	Writer string `json:"writer,omitempty"`
	Err    string `json:"err,omitempty"`
}

// Time of the event.
func (e Event) Time() time.Time { return time.Unix(0, e.T) }

// History collects events from every process (one host clock, so times
// compare across processes).
type History struct {
	mu     sync.Mutex
	events []Event
}

// Add records an event (called in arrival order per process).
func (h *History) Add(e Event) {
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

// Events returns a copy; store events keep their order of admission.
func (h *History) Events() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.events...)
}

// Filter returns events matching f, in time order.
func (h *History) Filter(f func(Event) bool) []Event {
	var out []Event
	for _, e := range h.Events() {
		if f(e) {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].T < out[j].T })
	return out
}

// Check asserts the safety properties of the history and returns the
// violations (none means safe):
//   - a token is granted to one node only, and grants in time order carry
//     growing tokens (at most one leader per term; the token only grows); a
//     holder re-campaigning for its own live lease keeps its token (a renew);
//   - holding intervals never overlap: a grant happens only after every
//     earlier holder's own deadline (grant time + TTL, extended by each
//     renew) has passed;
//   - the store admitted tokens in non-decreasing order, each one granted
//     to the node that wrote with it.
func (h *History) Check(lease string) []string {
	var bad []string
	grants := h.Filter(func(e Event) bool { return e.Ev == "grant" && e.Lease == lease })
	owner := map[uint64]string{}
	deadline := map[uint64]int64{}
	for _, e := range h.Filter(func(e Event) bool { return (e.Ev == "grant" || e.Ev == "renew") && e.Lease == lease }) {
		if e.Expiry > deadline[e.Token] {
			deadline[e.Token] = e.Expiry
		}
	}
	var prev *Event
	var maxDL int64
	var maxDLToken uint64
	var maxDLNode string
	for i := range grants {
		g := grants[i]
		if prev != nil && g.Token == prev.Token && g.Node == prev.Node {
			// The holder campaigned again while the lease was still its own (for example
			// after its renew timed out during a partition): the store treats that as a
			// renew and keeps the token. A continuation of the same term, not a new grant.
			continue
		}
		if o, ok := owner[g.Token]; ok && o != g.Node {
			bad = append(bad, fmt.Sprintf("token %d granted to %s and %s", g.Token, o, g.Node))
		}
		owner[g.Token] = g.Node
		if prev != nil {
			if g.Token <= prev.Token {
				bad = append(bad, fmt.Sprintf("grant of token %d to %s after token %d: token did not grow", g.Token, g.Node, prev.Token))
			}
			if g.T < maxDL {
				bad = append(bad, fmt.Sprintf("grant of token %d to %s at %s while %s still held token %d until %s",
					g.Token, g.Node, g.Time().Format("15:04:05.000"), maxDLNode, maxDLToken, time.Unix(0, maxDL).Format("15:04:05.000")))
			}
		}
		prev = &grants[i]
		if d := deadline[g.Token]; d > maxDL {
			maxDL, maxDLToken, maxDLNode = d, g.Token, g.Node
		}
	}
	var high uint64
	for _, e := range h.Events() { // admission order
		if e.Ev != "store_accept" || e.Lease != lease {
			continue
		}
		if e.Token < high {
			bad = append(bad, fmt.Sprintf("store admitted token %d after %d", e.Token, high))
		}
		high = e.Token
		if o := owner[e.Token]; o != e.Writer {
			bad = append(bad, fmt.Sprintf("store admitted token %d from %s, but it was granted to %q", e.Token, e.Writer, o))
		}
	}
	return bad
}
