package queuestate

import (
	"fmt"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// TestMachineCompleteContent: a completion may carry its output's content; every replica
// checks it against the output (size, sha256) and refuses a mismatch (invalid, nothing
// changed), and hands accepted content to OnContent once, after the completion is applied,
// never for a completion that failed.
func TestMachineCompleteContent(t *testing.T) {
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	q0 := StageQueue("p", 0)
	out := fileOf("out/x") // its content is its name
	tests := []struct {
		name string
		op   Op
		// edit changes the completion; lost completes the task first.
		edit func(c *Command)
		lost bool
		code string
		hook bool // OnContent called with the content
	}{
		{"matching content", OpComplete, func(c *Command) {}, false, "", true},
		{"matching content, and the next lease", OpCompleteLease, func(c *Command) { c.Name, c.Worker = q0, "w0" }, false, "", true},
		{"content of another file of the same size", OpComplete, func(c *Command) { c.Content = []byte("out/y") }, false, "invalid", false},
		{"content longer than the output", OpComplete, func(c *Command) { c.Content = []byte("out/x!") }, false, "invalid", false},
		{"content without an output", OpComplete, func(c *Command) { c.Output = nil }, false, "invalid", false},
		{"no content", OpComplete, func(c *Command) { c.Content = nil }, false, "", false},
		{"lease lost", OpComplete, func(c *Command) {}, true, "lease_lost", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newMachine(t), newMachine(t)
			var calls []string
			for i, m := range []*Machine{a, b} {
				m.SetOnContent(func(sha string, content []byte) {
					calls = append(calls, fmt.Sprintf("%d:%s:%s", i, sha, content))
				})
			}
			var cmd Command
			for _, m := range []*Machine{a, b} {
				do(t, m, Command{Op: OpDefine, At: at(0), Pipeline: &queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}}}, nil)
				do(t, m, Command{Op: OpSubmit, At: at(time.Second), Request: "r", Name: "p", Inputs: filesOf("x", "y")}, nil)
				l := do(t, m, Command{Op: OpLease, At: at(2 * time.Second), Name: q0, Worker: "w0"}, nil).Lease
				if tt.lost {
					do(t, m, Command{Op: OpComplete, At: at(3 * time.Second), Lease: l, Output: ptr(out)}, nil)
				}
				cmd = Command{Op: tt.op, At: at(4 * time.Second), Lease: l, Output: ptr(out), Content: []byte("out/x")}
				tt.edit(&cmd)
			}
			calls = nil
			ra, rb := decodeResp(t, a.Apply(encodeCmd(t, cmd))), decodeResp(t, b.Apply(encodeCmd(t, cmd)))
			if ra.Code != tt.code || rb.Code != tt.code {
				t.Fatalf("codes %q, %q (%s); want %q", ra.Code, rb.Code, ra.Error, tt.code)
			}
			if da, db := dump(t, a), dump(t, b); da != db {
				t.Fatalf("replicas differ: %s", diffDumps(da, db))
			}
			want := 0
			if tt.hook {
				want = 2
			}
			if len(calls) != want {
				t.Fatalf("OnContent calls %v, want %d", calls, want)
			}
			for i, c := range calls {
				if w := fmt.Sprintf("%d:%s:out/x", i, out.SHA256); c != w {
					t.Fatalf("OnContent call %q, want %q", c, w)
				}
			}
			if tt.code == "invalid" {
				var j queue.Job
				read(t, a, func(q *Queue) (err error) { j, err = q.Job(1); return err })
				if done, _, _ := j.Counts(); done != 0 {
					t.Fatalf("a refused completion completed a task: %d done", done)
				}
			}
		})
	}
}
