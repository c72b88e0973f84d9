package election

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestFSMApply(t *testing.T) {
	type step struct {
		index  uint64
		cmd    Command
		ok     bool
		holder string
		token  uint64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"acquire free lease", []step{
			{10, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second}, true, "n1", 10},
		}},
		{"second acquire with stale prev index loses", []step{
			{10, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second}, true, "n1", 10},
			{11, Command{Op: OpAcquire, Name: "a", Node: "n2", TTL: time.Second}, false, "n1", 10},
		}},
		{"takeover with current index gets a larger token", []step{
			{10, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second}, true, "n1", 10},
			{11, Command{Op: OpAcquire, Name: "a", Node: "n2", TTL: time.Second, PrevIndex: 10}, true, "n2", 11},
		}},
		{"renew in between defeats a takeover decided on an old view", []step{
			{10, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second}, true, "n1", 10},
			{11, Command{Op: OpRenew, Name: "a", Token: 10}, true, "n1", 10},
			{12, Command{Op: OpAcquire, Name: "a", Node: "n2", TTL: time.Second, PrevIndex: 10}, false, "n1", 10},
		}},
		{"renew with a stale token fails", []step{
			{10, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second}, true, "n1", 10},
			{11, Command{Op: OpAcquire, Name: "a", Node: "n2", TTL: time.Second, PrevIndex: 10}, true, "n2", 11},
			{12, Command{Op: OpRenew, Name: "a", Token: 10}, false, "n2", 11},
		}},
		{"resign frees, token kept, next grant larger", []step{
			{10, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second}, true, "n1", 10},
			{11, Command{Op: OpRelease, Name: "a", Token: 10}, true, "", 10},
			{12, Command{Op: OpAcquire, Name: "a", Node: "n2", TTL: time.Second, PrevIndex: 11}, true, "n2", 12},
		}},
		{"expiry release loses to a renew it did not see", []step{
			{10, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second}, true, "n1", 10},
			{11, Command{Op: OpRenew, Name: "a", Token: 10}, true, "n1", 10},
			{12, Command{Op: OpRelease, Name: "a", Token: 10, PrevIndex: 10, Expire: true}, false, "n1", 10},
		}},
		{"names are independent", []step{
			{10, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second}, true, "n1", 10},
			{11, Command{Op: OpAcquire, Name: "b", Node: "n2", TTL: time.Second}, true, "n2", 11},
		}},
		{"renew of unknown lease fails", []step{
			{10, Command{Op: OpRenew, Name: "x", Token: 3}, false, "", 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFSM()
			for i, s := range tt.steps {
				res := f.apply(s.index, s.cmd, time.Time{})
				if res.OK != s.ok || res.Record.Node != s.holder || res.Record.Token != s.token {
					t.Fatalf("step %d: got ok=%v holder=%q token=%d, want ok=%v holder=%q token=%d",
						i, res.OK, res.Record.Node, res.Record.Token, s.ok, s.holder, s.token)
				}
			}
		})
	}
}

func TestFSMSnapshotRestore(t *testing.T) {
	f := NewFSM()
	f.apply(5, Command{Op: OpAcquire, Name: "a", Node: "n1", Session: "s", TTL: time.Second}, time.Time{})
	f.apply(6, Command{Op: OpAcquire, Name: "b", Node: "n2", TTL: time.Second}, time.Time{})
	persist, _, _ := f.Snapshot()
	var buf bytes.Buffer
	if err := persist(&buf); err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	got := g.List()
	if len(got) != 2 || got[0].Token != 5 || got[0].Session != "s" || got[1].Node != "n2" || got[0].AppliedAt().IsZero() {
		t.Fatalf("restored %+v", got)
	}
}

func TestFSMWatchChannel(t *testing.T) {
	f := NewFSM()
	_, _, ch := f.Get("a")
	f.apply(1, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second}, time.Time{})
	select {
	case <-ch:
	default:
		t.Fatal("change channel not closed")
	}
}

// An empty stream (a snapshot that did not cover the lease kind) restores an empty table.
func TestFSMRestoreEmpty(t *testing.T) {
	f := NewFSM()
	f.apply(1, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second}, time.Time{})
	if err := f.Restore(strings.NewReader("")); err != nil || len(f.List()) != 0 {
		t.Fatalf("restore of nothing: %v, %+v", err, f.List())
	}
}

// A replica times a lease from when it stored the entry, not from when it applied it: a
// follower applies a renewal only once it learns that it committed, which after a leader's
// death is after the next election; timed from the apply, the dead holder's lease would
// outlive it by that election. Unknown store times (zero) fall back to the apply time, and a
// store time can never be later than the apply.
func TestFSMTimesFromStore(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := []struct {
		name   string
		stored time.Time
		want   time.Time
	}{
		{"stored before the apply", now.Add(-1500 * time.Millisecond), now.Add(-1500 * time.Millisecond)},
		{"unknown: the apply time", time.Time{}, now},
		{"after the apply: clamped", now.Add(time.Second), now},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM()
			f.now = func() time.Time { return now }
			body, _ := json.Marshal(Command{Op: OpAcquire, Name: "a", Node: "n1", Session: "s", TTL: 2 * time.Second})
			res := f.ApplyStored(7, body[1:], tc.stored).(Result)
			if !res.OK || !res.Record.AppliedAt().Equal(tc.want) {
				t.Fatalf("acquire: ok=%v timed from %v, want %v", res.OK, res.Record.AppliedAt(), tc.want)
			}
			body, _ = json.Marshal(Command{Op: OpRenew, Name: "a", Token: 7})
			res = f.ApplyStored(8, body[1:], tc.stored).(Result)
			if !res.OK || !res.Record.AppliedAt().Equal(tc.want) {
				t.Fatalf("renew: ok=%v timed from %v, want %v", res.OK, res.Record.AppliedAt(), tc.want)
			}
		})
	}
}
