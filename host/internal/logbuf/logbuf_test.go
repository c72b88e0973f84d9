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
	got := h.Tail("a", All)
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

// TestTailZeroIsNone: n is how many lines to return, so 0 returns none (`wasmpod logs --tail 0
// -f` shows only new lines); All returns every kept line. Before, 0 meant all, and --tail 0
// printed the whole buffer.
func TestTailZeroIsNone(t *testing.T) {
	h := New(Config{Lines: 3})
	for i := range 5 {
		h.Log(runtime.LogEntry{Module: "a", Message: fmt.Sprint(i)})
	}
	if got := h.Tail("a", 0); len(got) != 0 {
		t.Errorf("Tail(0) = %+v; want none", got)
	}
	if got := h.Tail("a", All); len(got) != 3 || got[0].Message != "2" {
		t.Errorf("Tail(All) = %+v; want the 3 kept lines", got)
	}
	tail, c, cancel := h.Follow("a", 0)
	defer cancel()
	if len(tail) != 0 {
		t.Errorf("Follow(0) tail = %+v; want none", tail)
	}
	h.Log(runtime.LogEntry{Module: "a", Message: "new"})
	if e := <-c; e.Message != "new" {
		t.Errorf("followed %+v; want the new line", e)
	}
}
