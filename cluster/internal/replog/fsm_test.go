package replog

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// recorder is a machine that records how each entry reached it: "a3" for Apply of the entry
// at index 3, "b[3 4]" for one ApplyBatch of indexes 3 and 4.
type recorder struct {
	calls *[]string
}

func (r recorder) Apply(index uint64, body []byte) any {
	*r.calls = append(*r.calls, fmt.Sprint("a", index))
	return string(body)
}
func (r recorder) Snapshot() (func(io.Writer) error, func(), error) { return nil, nil, nil }
func (r recorder) Restore(io.Reader) error                          { return nil }

// batcher is a recorder that is also a BatchMachine.
type batcher struct{ recorder }

func (b batcher) ApplyBatch(indexes []uint64, bodies [][]byte) []any {
	*b.calls = append(*b.calls, fmt.Sprint("b", indexes))
	out := make([]any, len(bodies))
	for i, body := range bodies {
		out[i] = string(body)
	}
	return out
}

// timedBatcher is a BatchMachine that is also a TimedMachine: its entries need their store
// times, one at a time.
type timedBatcher struct{ batcher }

func (t timedBatcher) ApplyStored(index uint64, body []byte, _ time.Time) any {
	*t.calls = append(*t.calls, fmt.Sprint("s", index))
	return string(body)
}

// TestFSMApplyBatch: Raft's batches reach a BatchMachine as runs of consecutive entries of its
// kind, and everything else (a single entry, other kinds, timed machines, entries that are not
// commands, unknown kinds) entry by entry, with every result in its entry's place.
func TestFSMApplyBatch(t *testing.T) {
	tests := []struct {
		name    string
		entries string // one byte per entry: its kind's tag, or '-' for a configuration entry
		want    string
	}{
		{"one entry", "B", "a1"},
		{"a run", "BBB", "b[1 2 3]"},
		{"runs split by another kind", "BBABB", "b[1 2] a3 b[4 5]"},
		{"a run of one between others", "ABA", "a1 a2 a3"},
		{"a kind without ApplyBatch", "AAA", "a1 a2 a3"},
		{"a timed kind", "TTBB", "s1 s2 b[3 4]"},
		{"a configuration entry splits a run", "BB-BB", "b[1 2] b[4 5]"},
		{"an unknown kind splits a run", "BBZBB", "b[1 2] b[4 5]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []string
			f := &fsm{kinds: map[byte]*Kind{
				'A': {Tag: 'A', Name: "a", Machine: recorder{calls: &calls}},
				'B': {Tag: 'B', Name: "b", Machine: batcher{recorder{calls: &calls}}},
				'T': {Tag: 'T', Name: "t", Machine: timedBatcher{batcher{recorder{calls: &calls}}}},
			}, stored: &receipts{}}
			var logs []*raft.Log
			for i, tag := range []byte(tt.entries) {
				l := &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: []byte{tag, 'x', byte('0' + i)}}
				if tag == '-' {
					l.Type, l.Data = raft.LogConfiguration, nil
				}
				logs = append(logs, l)
			}
			res := f.ApplyBatch(logs)
			if got := strings.Join(calls, " "); got != tt.want {
				t.Fatalf("calls %q, want %q", got, tt.want)
			}
			for i, tag := range []byte(tt.entries) {
				var want any
				if tag != '-' && tag != 'Z' {
					want = fmt.Sprintf("x%c", '0'+i)
				}
				if res[i] != want {
					t.Fatalf("result %d = %v, want %v", i, res[i], want)
				}
			}
		})
	}
}
