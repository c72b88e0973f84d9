package logbuf

import (
	"fmt"
	"testing"

	"github.com/wasmpod/wasmpod/runtime"
)

func TestRingAndFollow(t *testing.T) {
	h := New(Config{Lines: 3})
	for i := range 5 {
		h.Log(runtime.LogEntry{Module: "a", Message: fmt.Sprint(i)})
	}
	got := h.Tail("a", 0)
	if len(got) != 3 || got[0].Message != "2" || got[2].Message != "4" {
		t.Fatalf("tail: %+v", got)
	}
	if got := h.Tail("a", 1); len(got) != 1 || got[0].Message != "4" {
		t.Fatalf("tail 1: %+v", got)
	}
	tail, c, cancel := h.Follow("a", 2)
	if len(tail) != 2 {
		t.Fatalf("follow tail: %+v", tail)
	}
	h.Log(runtime.LogEntry{Module: "a", Message: "new"})
	h.Log(runtime.LogEntry{Module: "b", Message: "other"})
	if e := <-c; e.Message != "new" {
		t.Fatalf("followed %+v", e)
	}
	cancel()
	cancel()
	if _, ok := <-c; ok {
		t.Fatal("channel not closed")
	}
	h.Log(runtime.LogEntry{Module: "a", Message: "after"})
}
