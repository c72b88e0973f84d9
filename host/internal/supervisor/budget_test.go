package supervisor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// nestedBlocks is a valid module whose one function nests depth blocks: 1 M is 3 MB and compiled
// for more than 180 s before the compile budget.
func nestedBlocks(depth int) []byte {
	body := []byte{0}
	for range depth {
		body = append(body, 0x02, 0x40)
	}
	for range depth {
		body = append(body, 0x0B)
	}
	body = append(body, 0x0B)
	leb := func(b []byte, v int) []byte {
		for {
			c := byte(v & 0x7F)
			v >>= 7
			if v == 0 {
				return append(b, c)
			}
			b = append(b, c|0x80)
		}
	}
	code := leb([]byte{1}, len(body))
	code = append(code, body...)
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 10}
	m = leb(m, len(code))
	return append(m, code...)
}

// TestUpgradeRefusesCompileBomb: an upgrade (what PUT /v1/modules/{name}/wasm does) to a module
// over the compile budget fails at once, naming the limit, and the old version keeps serving.
func TestUpgradeRefusesCompileBomb(t *testing.T) {
	s, _ := pod(t, module("web", "main", podkit(t), "      resources: {concurrency: 1}\n"), "")
	waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
	start := time.Now()
	err := s.Upgrade(context.Background(), "web", nestedBlocks(1_000_000))
	if !errors.Is(err, ErrUpgradeFailed) || !errors.Is(err, runtime.ErrCompileBudget) {
		t.Fatalf("upgrade: %v, want ErrUpgradeFailed wrapping ErrCompileBudget", err)
	}
	t.Logf("refused after %v: %v", time.Since(start), err)
	if got := call(t, s, "web", "version"); got != "podkit-1" {
		t.Fatalf("after the refused upgrade the module answers %q", got)
	}
}
