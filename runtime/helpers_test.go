package runtime_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// logRecorder is a LogSink that keeps every line for assertions.
type logRecorder struct {
	mu    sync.Mutex
	lines []runtime.LogEntry
}

func (l *logRecorder) Log(e runtime.LogEntry) {
	l.mu.Lock()
	l.lines = append(l.lines, e)
	l.mu.Unlock()
}

func (l *logRecorder) find(source, msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.lines {
		if e.Source == source && e.Message == msg {
			return true
		}
	}
	return false
}

// newEngine creates an engine for a test. Tests share one on-disk compilation cache, so the
// Go guests (megabytes of wasm) are compiled once per machine, not once per test.
func newEngine(t testing.TB, cfg runtime.Config) *runtime.Engine {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(wasmbuild.CacheDir(), "wazero-test-cache")
	}
	e, err := runtime.NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func trapkit(t testing.TB) []byte { return readFile(t, wasmbuild.WAT(t, "testdata/trapkit.wat")) }

func kit(t testing.TB) []byte { return readFile(t, wasmbuild.Go(t, "testdata/kit")) }

// started loads and starts a module, stopping it at cleanup.
func started(t testing.TB, e *runtime.Engine, wasm []byte, cfg runtime.ModuleConfig) *runtime.Module {
	t.Helper()
	m, err := e.Load(context.Background(), wasm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every test that starts a module this way runs on an instance made from its image (when it
	// has one), not on the instance whose initialisation made the image.
	if _, err := runtime.UseImageInstance(m); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// eventually polls cond until it holds or a generous bound passes (a liveness check, not a
// timing assertion).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hasPrefix reports whether the module logged a line starting with prefix.
func (l *logRecorder) hasPrefix(module, prefix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.lines {
		if e.Module == module && strings.HasPrefix(e.Message, prefix) {
			return true
		}
	}
	return false
}
