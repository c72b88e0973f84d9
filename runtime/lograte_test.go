package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// floodWAT is a native module whose handler logs n lines (n = 0xFFFFFFFF: until its deadline
// cuts it). Input: op (u32), n (u32), len (u32). op 0: the log import, len bytes of 'x' a line;
// op 1: WASI fd_write to stdout of "flood line 0123\n" (16 bytes, one line a write); op 2: the
// same to stderr.
const floodWAT = `(module
  (import "wasmpod" "log" (func $log (param i32 i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 3)
  (data (i32.const 32) "\40\00\00\00\10\00\00\00")
  (data (i32.const 64) "flood line 0123\n")
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_handle") (param $len i32) (result i64)
    (local $op i32) (local $n i32) (local $l i32)
    (local.set $op (i32.load (i32.const 65536)))
    (local.set $n (i32.load (i32.const 65540)))
    (local.set $l (i32.load (i32.const 65544)))
    (memory.fill (i32.const 2048) (i32.const 120) (i32.const 20000))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (if (i32.eqz (local.get $op))
          (then (call $log (i32.const 1) (i32.const 2048) (local.get $l)))
          (else (drop (call $fd_write (local.get $op) (i32.const 32) (i32.const 1) (i32.const 48)))))
        (br $next)))
    (i64.const 0)))`

// extismFloodWAT is an Extism plugin whose function flood calls log_info with a 16-byte block
// until its deadline cuts it; one logs one such line.
const extismFloodWAT = `(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "log_info" (func $log_info (param i64)))
  (memory (export "memory") 1)
  (func (export "flood") (result i32)
    (loop $l (call $log_info (call $alloc (i64.const 16))) (br $l))
    (i32.const 0))
  (func (export "one") (result i32)
    (call $log_info (call $alloc (i64.const 16)))
    (i32.const 0)))`

const (
	opLog    = 0
	opStdout = 1
	opStderr = 2
	forever  = 0xFFFFFFFF
)

func floodInput(op, n, length uint32) []byte {
	in := make([]byte, 12)
	binary.LittleEndian.PutUint32(in, op)
	binary.LittleEndian.PutUint32(in[4:], n)
	binary.LittleEndian.PutUint32(in[8:], length)
	return in
}

// rateSink counts lines and bytes by source and keeps the runtime's lines (few).
type rateSink struct {
	guest, guestBytes atomic.Int64 // every line but the runtime's
	mu                sync.Mutex
	runtime           []runtime.LogEntry
	byModule          map[string]int
}

func (s *rateSink) Log(e runtime.LogEntry) {
	if e.Source == "runtime" {
		s.mu.Lock()
		s.runtime = append(s.runtime, e)
		s.mu.Unlock()
		return
	}
	s.guest.Add(1)
	s.guestBytes.Add(int64(len(e.Message)))
	s.mu.Lock()
	if s.byModule == nil {
		s.byModule = map[string]int{}
	}
	s.byModule[e.Module]++
	s.mu.Unlock()
}

func (s *rateSink) lines(module string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byModule[module]
}

// summary returns the runtime's drop summary lines of module.
func (s *rateSink) summary(module string) []runtime.LogEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []runtime.LogEntry
	for _, e := range s.runtime {
		if e.Module == module && strings.HasPrefix(e.Message, "log rate limit:") {
			out = append(out, e)
		}
	}
	return out
}

// floodFor calls m's handler with in (a guest that logs until its deadline) and returns how
// long the call took.
func floodFor(t *testing.T, m *runtime.Module, in []byte) time.Duration {
	t.Helper()
	t0 := time.Now()
	_, err := m.Call(context.Background(), runtime.RoleHandle, in, nil)
	took := time.Since(t0)
	if !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("flood: %v after %s, want the deadline", err, took)
	}
	return took
}

// summed adds up the counts of drop summaries.
func summed(t *testing.T, sums []runtime.LogEntry) (lines, bytes uint64) {
	t.Helper()
	for _, e := range sums {
		var l, b uint64
		if _, err := fmt.Sscanf(e.Message, "log rate limit: dropped %d lines (%d bytes)", &l, &b); err != nil {
			t.Fatalf("summary %q: %v", e.Message, err)
		}
		if e.Level != runtime.LevelWarn || e.Source != "runtime" {
			t.Fatalf("summary %+v: want level warn, source runtime", e)
		}
		lines += l
		bytes += b
	}
	return lines, bytes
}

// TestLogFloodIsRateLimited: a guest that logs as fast as it can for a whole call (1 s), through
// the log import, stdout, stderr or Extism's log_info, gets at most the burst plus a second's
// rate of lines to the sink (here 1,000 lines/s, burst 2,000; through Extism, whose host side
// is slower under the race detector, 100 lines/s, burst 200); the rest are dropped and counted
// (Module.LogsDropped), and the runtime's summary lines (at most one a second) add up to them.
// Before the limit the sink got 460,000-740,000 lines in the second (19,000 through Extism).
func TestLogFloodIsRateLimited(t *testing.T) {
	for _, tc := range []struct {
		name        string
		in          []byte
		ext         bool
		rate, burst int
	}{
		{"log import", floodInput(opLog, forever, 15), false, 1000, 2000},
		{"stdout", floodInput(opStdout, forever, 0), false, 1000, 2000},
		{"stderr", floodInput(opStderr, forever, 0), false, 1000, 2000},
		{"extism log_info", nil, true, 100, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rate, burst := tc.rate, tc.burst
			sink := &rateSink{}
			cfg := runtime.DefaultConfig()
			cfg.Logs = sink
			e := newEngine(t, cfg)
			var m *runtime.Module
			var one func() error
			if tc.ext {
				mc := extismConfig("flood")
				mc.MaxMemoryPages = 64
				mc.CallTimeout = time.Second
				mc.LogLinesPerSecond, mc.LogLineBurst = rate, burst
				mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "flood", runtime.RoleLeaf: "one"}
				m = started(t, e, readFile(t, wasmbuild.WATString(t, extismFloodWAT)), mc)
				one = func() error { _, err := m.Call(context.Background(), runtime.RoleLeaf, nil, nil); return err }
			} else {
				mc := runtime.DefaultModuleConfig("flood")
				mc.CallTimeout = time.Second
				mc.LogLinesPerSecond, mc.LogLineBurst = rate, burst
				m = started(t, e, readFile(t, wasmbuild.WATString(t, floodWAT)), mc)
				one = func() error {
					_, err := m.Call(context.Background(), runtime.RoleHandle, floodInput(opLog, 1, 15), nil)
					return err
				}
			}
			took := floodFor(t, m, tc.in)
			got := sink.guest.Load()
			limit := int64(float64(burst) + float64(rate)*took.Seconds() + 1)
			dropped, _ := m.LogsDropped()
			t.Logf("%s: %d lines (%d KiB) reached the sink in %s, %d dropped; limit %d", tc.name, got, sink.guestBytes.Load()>>10, took.Round(time.Millisecond), dropped, limit)
			if got > limit {
				t.Fatalf("%d lines reached the sink in %s, want at most burst + rate x seconds = %d", got, took, limit)
			}
			if got < int64(burst) || dropped == 0 {
				t.Fatalf("%d lines reached the sink and %d were dropped, want at least the burst (%d) and drops", got, dropped, burst)
			}
			if n := len(sink.summary("flood")); n > int(took.Seconds())+2 {
				t.Fatalf("%d drop summaries in %s, want at most one a second", n, took)
			}
			// A second later the module may log and say everything it dropped.
			time.Sleep(runtimeSummaryEvery + 100*time.Millisecond)
			if err := one(); err != nil {
				t.Fatal(err)
			}
			sums := sink.summary("flood")
			lines, bytes := summed(t, sums)
			dropped, droppedBytes := m.LogsDropped()
			t.Logf("%d summaries, the last: %s", len(sums), sums[len(sums)-1].Message)
			if lines != dropped || bytes != droppedBytes {
				t.Fatalf("the summaries say %d lines (%d bytes) were dropped, LogsDropped %d (%d)", lines, bytes, dropped, droppedBytes)
			}
			if st := m.Stats(); st.LogLinesDropped != dropped || st.LogBytesDropped != droppedBytes {
				t.Fatalf("Stats says %d lines (%d bytes) dropped, LogsDropped %d (%d)", st.LogLinesDropped, st.LogBytesDropped, dropped, droppedBytes)
			}
			if want := fmt.Sprintf("over the module's limit of %d lines/s (burst %d)", rate, burst); !strings.Contains(sums[0].Message, want) {
				t.Fatalf("summary %q does not say %q", sums[0].Message, want)
			}
		})
	}
}

// runtimeSummaryEvery is the least time between two drop summaries (logs.go).
const runtimeSummaryEvery = time.Second

// TestLogBytesRateLimited: long lines are bounded by the byte bucket (64 KiB/s, burst 256 KiB
// here) with the line limit off: at most the burst plus the rate's bytes of the call reach the
// sink, a line at most 8 KiB.
func TestLogBytesRateLimited(t *testing.T) {
	sink := &rateSink{}
	cfg := runtime.DefaultConfig()
	cfg.Logs = sink
	e := newEngine(t, cfg)
	mc := runtime.DefaultModuleConfig("long")
	mc.CallTimeout = time.Second
	mc.LogLinesPerSecond = -1
	mc.LogBytesPerSecond, mc.LogByteBurst = 64<<10, 256<<10
	m := started(t, e, readFile(t, wasmbuild.WATString(t, floodWAT)), mc)
	took := floodFor(t, m, floodInput(opLog, forever, 20000)) // cut to 8 KiB a line
	got := sink.guestBytes.Load()
	limit := int64(256<<10 + 64<<10*took.Seconds())
	lines, _ := m.LogsDropped()
	t.Logf("%d KiB in %d lines reached the sink in %s, %d lines dropped; limit %d KiB", got>>10, sink.guest.Load(), took.Round(time.Millisecond), lines, limit>>10)
	if got > limit || got < 256<<10-8<<10 || lines == 0 {
		t.Fatalf("%d bytes reached the sink (%d lines dropped), want between the burst and %d", got, lines, limit)
	}
}

// TestLogUnderLimitLosesNothing: a module that logs less than its burst (4,000 lines through
// the log import and 4,000 through stdout, default limits) loses no line and gets no summary.
func TestLogUnderLimitLosesNothing(t *testing.T) {
	sink := &rateSink{}
	cfg := runtime.DefaultConfig()
	cfg.Logs = sink
	e := newEngine(t, cfg)
	m := started(t, e, readFile(t, wasmbuild.WATString(t, floodWAT)), runtime.DefaultModuleConfig("calm"))
	for _, op := range []uint32{opLog, opStdout} {
		if _, err := m.Call(context.Background(), runtime.RoleHandle, floodInput(op, 4000, 100), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := sink.lines("calm"); got != 8000 {
		t.Fatalf("%d lines reached the sink, want all 8000", got)
	}
	if l, b := m.LogsDropped(); l != 0 || b != 0 || len(sink.summary("calm")) != 0 {
		t.Fatalf("dropped %d lines (%d bytes), summaries %v", l, b, sink.summary("calm"))
	}
}

// TestLogUnlimited: negative rates turn the limit off: 50,000 lines in one call all arrive.
func TestLogUnlimited(t *testing.T) {
	sink := &rateSink{}
	cfg := runtime.DefaultConfig()
	cfg.Logs = sink
	e := newEngine(t, cfg)
	mc := runtime.DefaultModuleConfig("free")
	mc.LogLinesPerSecond, mc.LogBytesPerSecond = -1, -1
	m := started(t, e, readFile(t, wasmbuild.WATString(t, floodWAT)), mc)
	if _, err := m.Call(context.Background(), runtime.RoleHandle, floodInput(opLog, 50_000, 15), nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.LogsDropped(); sink.lines("free") != 50_000 || got != 0 {
		t.Fatalf("%d lines reached the sink, %d dropped; want all 50000", sink.lines("free"), got)
	}
}

// TestLogFloodDoesNotSilenceOthers: while one module floods (its limit exhausted, dropping),
// another module of the same engine logs 1,000 lines; every one reaches the sink.
func TestLogFloodDoesNotSilenceOthers(t *testing.T) {
	sink := &rateSink{}
	cfg := runtime.DefaultConfig()
	cfg.Logs = sink
	e := newEngine(t, cfg)
	wasm := readFile(t, wasmbuild.WATString(t, floodWAT))
	fc := runtime.DefaultModuleConfig("flood")
	fc.CallTimeout = 3 * time.Second
	fc.LogLineBurst = 100 // dropping within a few ms, however slow the machine
	flood := started(t, e, wasm, fc)
	quiet := started(t, e, wasm, runtime.DefaultModuleConfig("quiet"))
	done := make(chan time.Duration, 1)
	go func() {
		t0 := time.Now()
		_, _ = flood.Call(context.Background(), runtime.RoleHandle, floodInput(opStdout, forever, 0), nil)
		done <- time.Since(t0)
	}()
	eventually(t, "the flood is dropping", func() bool { n, _ := flood.LogsDropped(); return n > 0 })
	t0 := time.Now()
	if _, err := quiet.Call(context.Background(), runtime.RoleHandle, floodInput(opLog, 1000, 15), nil); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	stillFlooding := len(done) == 0
	floodTook := <-done
	t.Logf("quiet's 1000 lines took %s (flood still running: %v); flood: %d lines in %s", took, stillFlooding, sink.lines("flood"), floodTook)
	if !stillFlooding {
		t.Fatal("the flood ended before the quiet module logged: the test proves nothing")
	}
	if got := sink.lines("quiet"); got != 1000 {
		t.Fatalf("quiet: %d of its 1000 lines reached the sink", got)
	}
	if n, _ := quiet.LogsDropped(); n != 0 {
		t.Fatalf("quiet: %d lines dropped", n)
	}
}

// TestLogRateDefaultsAndValidation: the documented defaults, and bursts the runtime refuses.
func TestLogRateDefaultsAndValidation(t *testing.T) {
	d := runtime.DefaultModuleConfig("d")
	if d.LogLinesPerSecond != 1000 || d.LogLineBurst != 10_000 || d.LogBytesPerSecond != 1<<20 || d.LogByteBurst != 10<<20 {
		t.Fatalf("defaults: %d lines/s burst %d, %d bytes/s burst %d", d.LogLinesPerSecond, d.LogLineBurst, d.LogBytesPerSecond, d.LogByteBurst)
	}
	e := newEngine(t, runtime.DefaultConfig())
	wasm := readFile(t, wasmbuild.WATString(t, floodWAT))
	command := readFile(t, wasmbuild.WATString(t, commandFloodWAT))
	for _, tc := range []struct {
		name string
		set  func(*runtime.ModuleConfig)
		want string // "" for valid
	}{
		{"negative line burst", func(c *runtime.ModuleConfig) { c.LogLineBurst = -1 }, "LogLineBurst and LogByteBurst must not be negative"},
		{"negative byte burst", func(c *runtime.ModuleConfig) { c.LogByteBurst = -1 }, "LogLineBurst and LogByteBurst must not be negative"},
		{"byte burst below a line", func(c *runtime.ModuleConfig) { c.LogByteBurst = 8191 }, "LogByteBurst 8191 is less than the longest log line (8192 bytes)"},
		{"byte burst of a line", func(c *runtime.ModuleConfig) { c.LogByteBurst = 8192 }, ""},
		{"zero is the default", func(c *runtime.ModuleConfig) {
			*c = runtime.ModuleConfig{Name: c.Name, MaxMemoryPages: 16, CallTimeout: time.Second, MaxConcurrency: 1}
		}, ""},
		{"unlimited", func(c *runtime.ModuleConfig) { c.LogLinesPerSecond, c.LogBytesPerSecond = -5, -1 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := runtime.DefaultModuleConfig("v")
			tc.set(&c)
			m, err := e.Load(context.Background(), wasm, c)
			if err == nil {
				m.Close(context.Background())
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want ErrInvalidModule saying %q", err, tc.want)
			}
			// A command stage's limits are checked the same way.
			mc := runtime.DefaultModuleConfig("v")
			tc.set(&mc)
			cc := runtime.DefaultCommandConfig("v")
			cc.LogLinesPerSecond, cc.LogLineBurst, cc.LogBytesPerSecond, cc.LogByteBurst = mc.LogLinesPerSecond, mc.LogLineBurst, mc.LogBytesPerSecond, mc.LogByteBurst
			cmd, err := e.LoadCommand(context.Background(), command, cc)
			if err == nil {
				cmd.Close(context.Background())
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("command refused: %v", err)
			case tc.want != "" && (!errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), `command "v": `+tc.want)):
				t.Fatalf("command: got %v, want ErrInvalidModule saying %q", err, tc.want)
			}
		})
	}
}

// commandFloodWAT is a command that writes "line N\n"-sized lines to stdout 20,000 times, then
// exits.
const commandFloodWAT = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "line\n")
  (func (export "_start")
    (local $i i32)
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 5))
    (loop $l
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 20000))))))`

// TestCommandLogsRateLimited: a command's runs share one log rate limit, set by its
// CommandConfig like a module's; before, a command always had the default (a pod's
// resources.logs did not reach command stages), and a bad limit was not refused.
func TestCommandLogsRateLimited(t *testing.T) {
	sink := &rateSink{}
	e := newEngine(t, runtime.Config{Logs: sink})
	wasm := readFile(t, wasmbuild.WATString(t, commandFloodWAT))
	cfg := runtime.DefaultCommandConfig("cmdflood")
	cfg.LogLinesPerSecond, cfg.LogLineBurst = 100, 200
	c := loadCommand(t, e, wasm, cfg)
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for range 2 {
		if _, err := c.Run(context.Background(), in, t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(t0)
	got := sink.guest.Load()
	dropped, _ := c.LogsDropped()
	limit := int64(200 + 100*took.Seconds() + 1)
	t.Logf("%d lines reached the sink in %s, %d dropped; limit %d", got, took.Round(time.Millisecond), dropped, limit)
	if got > limit || got < 200 {
		t.Fatalf("%d lines reached the sink, want between the burst (200) and burst + rate x seconds (%d)", got, limit)
	}
	if got+int64(dropped) != 40000 {
		t.Fatalf("%d lines logged and %d dropped, want 40000 in all", got, dropped)
	}

	for _, bad := range []struct {
		name string
		set  func(*runtime.CommandConfig)
	}{
		{"negative burst", func(c *runtime.CommandConfig) { c.LogLineBurst = -1 }},
		{"byte burst below a line", func(c *runtime.CommandConfig) { c.LogByteBurst = 100 }},
	} {
		cfg := runtime.DefaultCommandConfig("bad")
		bad.set(&cfg)
		if _, err := e.LoadCommand(context.Background(), wasm, cfg); !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "Log") {
			t.Errorf("%s: LoadCommand returned %v, want ErrInvalidModule naming the field", bad.name, err)
		}
	}
}
