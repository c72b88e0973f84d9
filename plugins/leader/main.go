// Command leader is the leader-election example plugin (examples/leader): on every tick it
// campaigns for (or renews) a named lease through the host's election sidecar, and while it
// leads it does one unit of leader-only work and writes the result, with its fencing token, to
// the pod's fenced store, which rejects tokens older than the newest it has admitted. Its
// handler answers with its view as JSON.
//
// Writes are write-behind, as in many real workers: the work of one tick is flushed at the
// start of the next. A leader frozen between the two (GC pause, SIGSTOP, VM steal) past its
// lease flushes with a token that a successor has overtaken, and only the store's fencing
// check stops that write; the example test freezes a leader to show exactly that.
//
// Config keys: election (the lease name, default "leader"), ttl (a Go duration, default the
// cluster's), fenced_store (the store's base URL, read by the host).
package main

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/election"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
)

// state is this module's view, served by the handler.
type state struct {
	Election string `json:"election"`
	Leading  bool   `json:"leading"`
	Token    uint64 `json:"token"`
	Holder   string `json:"holder"`
	Writes   int    `json:"writes"`   // admitted by the store
	Rejected int    `json:"rejected"` // refused by the store as stale
	Failed   int    `json:"failed"`   // store unreachable
	LastErr  string `json:"last_error,omitempty"`
}

var (
	st      state
	lead    *election.Leader
	seq     int
	pending *record // the last tick's work, flushed at the next tick
)

type record struct {
	token uint64
	data  []byte
}

func setup() error {
	name, ok := wasmpod.Config("election")
	if !ok || name == "" {
		name = "leader"
	}
	var ttl time.Duration
	if v, ok := wasmpod.Config("ttl"); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return wasmpod.Codef(2, "config ttl %q: %v", v, err)
		}
		ttl = d
	}
	st.Election = name
	lead = election.NewLeader(name, ttl)
	return nil
}

// tick flushes the previous tick's work, then campaigns or renews and, while leading, does the
// next unit of work.
func tick(time.Time) error {
	if pending != nil {
		flush(*pending)
		pending = nil
	}
	l, ok := lead.Tick()
	if ok != st.Leading {
		if ok {
			wasmpod.Infof("leading %s with token %d", st.Election, l.Token)
		} else {
			wasmpod.Infof("not leading %s (holder %s/%s)", st.Election, l.Holder, l.Session)
		}
	}
	st.Leading, st.Token, st.Holder = ok, l.Token, l.Holder
	if !ok {
		return nil
	}
	seq++
	pending = &record{l.Token, []byte(l.Holder + " " + strconv.FormatUint(l.Token, 10) + " " + strconv.Itoa(seq))}
	return nil
}

// flush writes one record with the token it was made under.
func flush(r record) {
	switch err := election.Write(st.Election, r.token, r.data); {
	case err == nil:
		st.Writes++
	case errors.Is(err, election.ErrStaleToken):
		st.Rejected++
		st.Leading = false // a newer leader wrote: stop at once
		wasmpod.Warnf("store rejected token %d as stale: a newer leader wrote", r.token)
	default:
		st.Failed++
		st.LastErr = err.Error()
	}
}

func init() {
	wasmpod.OnStart(setup)
	wasmpod.OnTick(tick)
	wasmpod.OnStop(func(time.Duration) error { return lead.Resign() })
	handler.Handle(func([]byte) ([]byte, error) {
		st.Leading = st.Leading && lead.Leading()
		return json.Marshal(st)
	})
}

func main() {}
