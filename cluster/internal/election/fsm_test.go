package election

import (
	"encoding/json"
	"path/filepath"

	"bytes"
	"github.com/hashicorp/raft"
	"github.com/wasmpod/wasmpod/cluster/queue"
	"io"
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
				res := f.apply(s.index, s.cmd)
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
	f.apply(5, Command{Op: OpAcquire, Name: "a", Node: "n1", Session: "s", TTL: time.Second})
	f.apply(6, Command{Op: OpAcquire, Name: "b", Node: "n2", TTL: time.Second})
	snap, _ := f.Snapshot()
	var buf bytes.Buffer
	if err := snap.Persist(&sink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(io.NopCloser(&buf)); err != nil {
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
	f.apply(1, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second})
	select {
	case <-ch:
	default:
		t.Fatal("change channel not closed")
	}
}

type sink struct{ *bytes.Buffer }

func (sink) ID() string    { return "test" }
func (sink) Cancel() error { return nil }
func (sink) Close() error  { return nil }

func TestFSMSnapshotCarriesQueue(t *testing.T) {
	open := func() *queue.Machine {
		m, err := queue.OpenMachine(filepath.Join(t.TempDir(), "q.db"), queue.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}
	f := NewFSM()
	f.SetQueue(open())
	f.apply(3, Command{Op: OpAcquire, Name: "a", Node: "n1", TTL: time.Second})
	def, _ := json.Marshal(queue.Command{Op: queue.OpDefine, At: time.Now(), Pipeline: &queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}}})
	resp := f.Apply(&raft.Log{Type: raft.LogCommand, Index: 4, Data: append([]byte{QueueTag}, def...)})
	var r queue.Response
	if err := json.Unmarshal(resp.([]byte), &r); err != nil || r.Err() != nil {
		t.Fatalf("define: %s %v", resp, err)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&sink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	g := NewFSM()
	g.SetQueue(open())
	if err := g.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if got := g.List(); len(got) != 1 || got[0].Token != 3 {
		t.Fatalf("leases %+v", got)
	}
	var ps []queue.Pipeline
	_ = g.Queue().Read(func(q *queue.Queue) error { ps, err = q.Pipelines(); return err })
	if err != nil || len(ps) != 1 || ps[0].Name != "p" {
		t.Fatalf("pipelines %+v %v", ps, err)
	}

	// A snapshot from before the queue existed (bare JSON) still restores.
	legacy, _ := json.Marshal([]Record{{Name: "old", Node: "n", Token: 9}})
	h := NewFSM()
	h.SetQueue(open())
	if err := h.Restore(io.NopCloser(bytes.NewReader(legacy))); err != nil {
		t.Fatal(err)
	}
	if got := h.List(); len(got) != 1 || got[0].Token != 9 {
		t.Fatalf("legacy leases %+v", got)
	}
}
