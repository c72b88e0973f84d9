package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// growLeaf is a native leaf with a table of the given size whose handler grows memory by the
// number of pages in its 4-byte input and answers memory.grow's result as 4 bytes.
func growLeaf(t *testing.T, tableEntries string) []byte {
	return readFile(t, wasmbuild.WATString(t, `(module
  (memory (export "memory") 2)
  (table `+tableEntries+` funcref)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmpod_handle") (param $n i32) (result i64)
    (i32.store (i32.const 2048) (memory.grow (i32.load (i32.const 1024))))
    (i64.or (i64.shl (i64.const 4) (i64.const 32)) (i64.const 2048))))`))
}

// TestInstanceFootprintWithinBudget: an instance's tables and stack reserve count against its
// module's memory limit. A module whose tables alone take its whole limit is refused at load (a
// 144-byte module with a 134M-entry table held 1 GiB per instance while metrics said 4 pages);
// otherwise linear memory may grow only to what is left, and Stats.FootprintBytes reports
// memory + tables (within Instances x the limit) + a stack estimate.
func TestInstanceFootprintWithinBudget(t *testing.T) {
	e := newEngine(t, runtime.Config{CacheDir: t.TempDir()})
	ctx := context.Background()

	cfg := runtime.DefaultModuleConfig("tables-over-budget")
	cfg.MaxMemoryPages = 128 // 8 MiB, all of it taken by 1M entries of table
	_, err := e.Load(ctx, growLeaf(t, "1048576"), cfg)
	if !errors.Is(err, runtime.ErrMemoryLimit) || !strings.Contains(err.Error(), "8.0 MiB of tables") {
		t.Fatalf("Load: %v, want ErrMemoryLimit naming the tables", err)
	}

	cfg = runtime.DefaultModuleConfig("tables-in-budget")
	cfg.MaxMemoryPages = 256 // 16 MiB: 4 MiB of tables leave 192 pages
	cfg.MinInstances, cfg.MaxConcurrency = 2, 2
	m := started(t, e, growLeaf(t, "524288"), cfg)
	grow := func(pages uint32) int32 {
		in := binary.LittleEndian.AppendUint32(nil, pages)
		out, err := m.Call(ctx, runtime.RoleHandle, in, nil)
		if err != nil || len(out) != 4 {
			t.Fatalf("grow %d: %q, %v", pages, out, err)
		}
		return int32(binary.LittleEndian.Uint32(out))
	}
	// 2 pages now; 190 more reach 192 pages (12 MiB), one more does not fit.
	if r := grow(190); r != 2 {
		t.Fatalf("growing to the budget: memory.grow = %d, want 2", r)
	}
	if r := grow(1); r != -1 {
		t.Fatalf("growing past the budget: memory.grow = %d, want -1", r)
	}
	s := m.Stats()
	limit := uint64(cfg.MaxMemoryPages) * 65536
	if s.FootprintBytes <= s.MemoryPages*65536+uint64(s.Instances)*(4<<20) || s.FootprintBytes > uint64(s.Instances)*(limit+1<<20) {
		t.Fatalf("footprint %d bytes for %d pages in %d instances (limit %d each)", s.FootprintBytes, s.MemoryPages, s.Instances, limit)
	}
	t.Logf("%d instances, %d pages, footprint %.1f MiB (budget %.1f MiB)", s.Instances, s.MemoryPages, float64(s.FootprintBytes)/(1<<20), float64(uint64(s.Instances)*limit)/(1<<20))
}
