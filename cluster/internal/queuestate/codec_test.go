package queuestate

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

func sampleTask() *Task {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	return &Task{
		ID:           42,
		Pipeline:     "thumbs",
		Payload:      []byte("in/1.png"),
		State:        StateDead,
		Attempts:     3,
		EnqueuedAt:   at,
		ReadyAt:      at.Add(time.Second),
		LeaseID:      7,
		LeaseExpires: at.Add(time.Minute),
		Worker:       "node-a/3",
		Errors: []queue.AttemptError{
			{Attempt: 1, At: at.Add(2 * time.Second), Message: "exit 1"},
			{Attempt: 2, At: at.Add(3 * time.Second), Message: "lease 5 held by \"w\" expired"},
		},
		Result:     []byte("out"),
		FinishedAt: at.Add(time.Hour),
	}
}

func TestCodecRoundTrip(t *testing.T) {
	tests := []*Task{
		sampleTask(),
		{ID: 1, Pipeline: "p", State: StateReady},
		{ID: 1<<64 - 1, Pipeline: strings.Repeat("p", maxPipelineLen), State: StateLeased,
			EnqueuedAt: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, want := range tests {
		got, err := decodeTask(encodeTask(want))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := encodeTask(sampleTask())
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "version: truncated"},
		{"future version", with(func(b []byte) []byte { b[0] = 2; return b }), "unsupported record version 2"},
		{"zero state", with(func(b []byte) []byte { b[1] = 0; return b }), "unknown state 0"},
		{"unknown state", with(func(b []byte) []byte { b[1] = 9; return b }), "unknown state 9"},
		{"truncated id", good[:5], "id: truncated"},
		{"truncated tail", good[:len(good)-1], "exceeds the 26 bytes left"},
		{"trailing byte", append(bytes.Clone(good), 0), "1 trailing bytes"},
		{"empty pipeline", encodeTask(&Task{ID: 1, State: StateReady}), "empty pipeline"},
		{"pipeline too long", encodeTask(&Task{ID: 1, State: StateReady, Pipeline: strings.Repeat("p", maxPipelineLen+1)}), "exceeds limit"},
		{"huge error count", func() []byte {
			t := sampleTask()
			t.Errors = nil
			b := encodeTask(t)
			b[len(b)-1] = 0x7f // 127 errors in 0 bytes
			return b
		}(), "error count: 127 exceeds limit 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeTask(tt.b)
			if !errors.Is(err, queue.ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decodeTask = %+v, %v; want ErrCorrupt mentioning %q", got, err, tt.want)
			}
		})
	}
}

// FuzzDecodeTask: the decoder never panics, errors are ErrCorrupt, and
// whatever it accepts re-encodes to a record that decodes to the same task.
func FuzzDecodeTask(f *testing.F) {
	f.Add(encodeTask(sampleTask()))
	f.Add(encodeTask(&Task{ID: 1, Pipeline: "p", State: StateReady}))
	f.Add([]byte{})
	f.Add([]byte{recordVersion, byte(StateDone)})
	f.Fuzz(func(t *testing.T, b []byte) {
		task, err := decodeTask(b)
		if err != nil {
			if !errors.Is(err, queue.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		enc := encodeTask(task)
		again, err := decodeTask(enc)
		if err != nil {
			t.Fatalf("re-decode of accepted record: %v", err)
		}
		if !bytes.Equal(encodeTask(again), enc) {
			t.Fatalf("encoding not stable:\n%+v\n%+v", task, again)
		}
	})
}
