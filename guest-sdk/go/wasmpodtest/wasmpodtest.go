//go:build !wasip1

// Package wasmpodtest lets a plugin's own unit tests, run with plain `go test` on the
// development machine (not wasip1), play the wasmpod host: set the config that wasmpod.Config
// returns, read what the plugin logged, the last error message and the metric values it
// recorded, control what Scale and pod-local calls answer, and call the registered role and
// lifecycle functions the way the host calls the exports.
//
// Off wasip1 the SDK runs against an in-memory stand-in for the host; this package is the
// public handle on it. On wasip1 the real host is there and this package does not build: give
// test files that import it the constraint
//
//	//go:build !wasip1
//
// A test typically resets the stand-in, sets config, calls the role the plugin registered in
// its init functions and checks the result, the logs and the metrics:
//
//	func TestSum(t *testing.T) {
//		wasmpodtest.Reset()
//		wasmpodtest.SetConfig("scale", "2")
//		out, err := wasmpodtest.CallLeaf([]byte{1, 2, 3})
//		if err != nil {
//			t.Fatal(err)
//		}
//		...
//		if got := wasmpodtest.MetricValues("sums_total"); len(got) != 1 {
//			t.Fatalf("sums_total recorded %v", got)
//		}
//	}
//
// The Call functions go through the same code as the exports: the input is copied into the
// guest buffer, a panic becomes a code-1 failure whose message is "panic: <value>" (the stack
// is logged at error level), an error wrapped with wasmpod.Code fails with its code, and the
// message given to the error import comes back in a *CallError. Calling a role whose package
// the plugin imports but whose Handle it never called fails the same way the host would see it.
//
// Pod-local calls (package pod) are answered by the functions given to HandleCall. The election
// and net packages have stand-ins of their own, election.Host and net.Host, whose fields a test
// sets directly (e.g. net.Host.Allow); Reset replaces all of them.
//
// # Concurrency
//
// There is one stand-in per test binary, as there is one instance that the host calls at a
// time: its state is process-global, so tests that use it must not run in parallel (no
// t.Parallel), or one test's Reset, config and logs become another's. SetConfig, DeleteConfig,
// Logs, TakeLogs, TakeError, the metric functions and the pool functions lock the stand-in, so
// plugin code may log, record metrics and read config from several goroutines. Reset, PodCalls,
// HandleCall and the Call functions do not: call them from the test's goroutine while no
// plugin code runs. The Call functions must not run concurrently or re-entrantly (a HandleCall
// function must not call CallLeaf ...): they share the guest buffer, as calls of one instance
// do.
package wasmpodtest

import (
	"errors"
	"fmt"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/election"
	"github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"
	"github.com/wasmpod/wasmpod/guest-sdk/go/merge"
	"github.com/wasmpod/wasmpod/guest-sdk/go/net"
	"github.com/wasmpod/wasmpod/guest-sdk/go/pod"
	"github.com/wasmpod/wasmpod/guest-sdk/go/wphttp"

	// The role packages register their exports with core when imported.
	_ "github.com/wasmpod/wasmpod/guest-sdk/go/handler"
	_ "github.com/wasmpod/wasmpod/guest-sdk/go/leaf"
	_ "github.com/wasmpod/wasmpod/guest-sdk/go/stage"
)

// Reset gives the next test a fresh host: no config, no logs, no error messages, no recorded
// metric values, a pool of 1 that may scale, and fresh pod.Host (no modules), election.Host and
// net.Host (every connection closed, nothing allowed). Metric definitions are kept, since the
// plugin holds their ids (NewCounter on a kept name returns the same metric); so are the
// functions registered with Handle and the On hooks, which the plugin sets in init.
func Reset() {
	core.Host.Reset()
	pod.Host = pod.NewFakeHost()
	election.Host = election.NewFakeHost()
	net.Host.CloseAll()
	net.Host = net.NewFakeHost()
}

// SetConfig sets key to value in the module's config map, as the pod spec's config would.
func SetConfig(key, value string) { core.Host.SetConfig(key, value) }

// DeleteConfig removes key from the module's config map.
func DeleteConfig(key string) { core.Host.DeleteConfig(key) }

// LogLine is one line written through the log import (wasmpod.Log, Infof, ..., and the stack of
// a recovered panic at error level).
type LogLine struct {
	Level wasmpod.Level
	Msg   string
}

func (l LogLine) String() string {
	name := map[wasmpod.Level]string{wasmpod.LevelDebug: "debug", wasmpod.LevelInfo: "info",
		wasmpod.LevelWarn: "warn", wasmpod.LevelError: "error"}[l.Level]
	if name == "" {
		name = fmt.Sprintf("level %d", l.Level)
	}
	return name + ": " + l.Msg
}

func logLines(take bool) []LogLine {
	lines := core.Host.LogLines(take)
	if len(lines) == 0 {
		return nil
	}
	out := make([]LogLine, len(lines))
	for i, l := range lines {
		out[i] = LogLine{wasmpod.Level(l.Level), l.Msg}
	}
	return out
}

// Logs returns the lines logged since the last Reset or TakeLogs, oldest first.
func Logs() []LogLine { return logLines(false) }

// TakeLogs is Logs that also forgets the lines, so the next call sees only newer ones.
func TakeLogs() []LogLine { return logLines(true) }

// TakeError returns the last message passed to the error import since the last Reset or
// TakeError, and forgets every message; ok is false if there was none. The SDK passes the
// message of a failed call or hook (which the Call functions also return in a *CallError).
func TakeError() (msg string, ok bool) {
	errs := core.Host.TakeErrors()
	if len(errs) == 0 {
		return "", false
	}
	return errs[len(errs)-1], true
}

// Metric is a metric the plugin defined, with the values recorded on it since the last Reset.
type Metric struct {
	Name, Help string
	Kind       string // "counter", "gauge" or "histogram"
	// Values are the arguments of every Add/Inc (1), Set or Observe, in order.
	Values []float64
}

// Metrics returns every metric the plugin defined, in definition order.
func Metrics() []Metric {
	states := core.Host.MetricStates()
	out := make([]Metric, len(states))
	for i, s := range states {
		kind := [...]string{"counter", "gauge", "histogram"}[s.Kind]
		out[i] = Metric{Name: s.Name, Help: s.Help, Kind: kind, Values: s.Values}
	}
	return out
}

// MetricValues returns the values recorded on the metric called name since the last Reset, in
// order (nil if the metric is not defined or has none).
func MetricValues(name string) []float64 {
	for _, m := range Metrics() {
		if m.Name == name {
			return m.Values
		}
	}
	return nil
}

// SetPool sets the size of the module's warm instance pool that wasmpod.Scale starts from,
// and whether the module may scale (when it may not, Scale returns false). After Reset: 1, true.
func SetPool(size int, scalable bool) {
	core.Host.SetScale(int32(max(min(size, 1<<31-1), 0)), scalable)
}

// Pool returns the pool's target size after the Scale calls so far, and whether the module may
// scale.
func Pool() (size int, scalable bool) {
	n, ok := core.Host.ScaleState()
	return int(n), ok
}

// HandleCall makes fn answer the plugin's pod.Call(module, in): fn gets a copy of in, and its
// output is the response. An error from fn makes pod.Call fail with pod.ErrFailed and the error's
// text, as a failing target module would; a module without a function fails with
// pod.ErrNoModule. A nil fn removes the module. (HandleCall sets pod.Host.Modules[module].)
func HandleCall(module string, fn func(in []byte) ([]byte, error)) {
	if fn == nil {
		delete(pod.Host.Modules, module)
		return
	}
	pod.Host.Modules[module] = fn
}

// PodCalls returns the targets of the plugin's pod.Call calls since the last Reset, in order.
func PodCalls() []string { return append([]string(nil), pod.Host.Calls...) }

// CallError is a failed call of an export: what the host sees.
type CallError struct {
	Export string // e.g. "wasmpod_leaf"
	// Code is the application code: the export returned -Code (1 for a plain error or a panic).
	Code int
	// Message is the last message the call passed to the error import ("" if none).
	Message string
}

func (e *CallError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s failed with code %d", e.Export, e.Code)
	}
	return fmt.Sprintf("%s failed with code %d: %s", e.Export, e.Code, e.Message)
}

// Unwrap lets wasmpod.CodeOf(err) report Code.
func (e *CallError) Unwrap() error {
	return wasmpod.Code(e.Code, errors.New(e.Message))
}

func export[F any](name string) F {
	fn, ok := core.Export(name).(F)
	if !ok {
		// An SDK bug: every package that registers an export is imported above.
		panic("wasmpodtest: export " + name + " is not registered")
	}
	return fn
}

// failure returns the *CallError of a call that returned code (> 0) and passed the error
// messages from index errs on, or nil for code 0.
func failure(name string, code int64, errs int) error {
	if code == 0 {
		return nil
	}
	e := &CallError{Export: name, Code: int(code)}
	if msgs := core.Host.ErrorsFrom(errs); len(msgs) > 0 {
		e.Message = msgs[len(msgs)-1]
	}
	return e
}

// call runs a handler export on in and returns a copy of its output or its *CallError.
func call(name string, in []byte) ([]byte, error) {
	fn := export[func(int32) int64](name)
	errs := core.Host.ErrorCount()
	r := fn(core.WriteInput(in))
	return result(name, r, errs)
}

func result(name string, r int64, errs int) ([]byte, error) {
	if r < 0 {
		return nil, failure(name, -r, errs)
	}
	if r == 0 {
		return nil, nil
	}
	return append([]byte(nil), core.Output()...), nil
}

// CallLeaf runs the function registered with leaf.Handle on in, as the host runs wasmpod_leaf.
// It returns a copy of the output (nil if empty) or a *CallError.
func CallLeaf(in []byte) ([]byte, error) { return call("wasmpod_leaf", in) }

// CallHandler runs the function registered with handler.Handle on req (wasmpod_handle).
func CallHandler(req []byte) ([]byte, error) { return call("wasmpod_handle", req) }

// CallStage runs the function registered with stage.Handle on in (wasmpod_stage).
func CallStage(in []byte) ([]byte, error) { return call("wasmpod_stage", in) }

// CallMerge frames parts as the host does (merge.Append) and runs the function registered with
// merge.Handle on them (wasmpod_merge).
func CallMerge(parts []merge.Part) ([]byte, error) {
	return call("wasmpod_merge", merge.Append(nil, parts))
}

// CallHTTP frames req as the host does (wphttp.AppendRequest), runs the function registered with
// wphttp.Handle (wasmpod_http) and decodes its response (a status of 0 comes back as 200).
func CallHTTP(req *wphttp.Request) (*wphttp.Response, error) {
	out, err := call("wasmpod_http", wphttp.AppendRequest(nil, req))
	if err != nil {
		return nil, err
	}
	return wphttp.DecodeResponse(out)
}

func status(name string, run func() int32) error {
	errs := core.Host.ErrorCount()
	return failure(name, int64(run()), errs)
}

// CallStart runs the OnStart hook (wasmpod_start): nil on success or a *CallError.
func CallStart() error {
	return status("wasmpod_start", export[func() int32]("wasmpod_start"))
}

// CallStop runs the OnStop hook with grace left of the grace period (wasmpod_stop, which takes
// whole milliseconds).
func CallStop(grace time.Duration) error {
	fn := export[func(int64) int32]("wasmpod_stop")
	return status("wasmpod_stop", func() int32 { return fn(grace.Milliseconds()) })
}

// CallHealth runs the OnHealth probe (wasmpod_health); a panic reports wasmpod.Unhealthy.
func CallHealth() wasmpod.Health {
	return wasmpod.Health(export[func() int32]("wasmpod_health")())
}

// CallTick runs the OnTick hook with now (wasmpod_tick, which takes Unix milliseconds).
func CallTick(now time.Time) error {
	fn := export[func(int64) int32]("wasmpod_tick")
	return status("wasmpod_tick", func() int32 { return fn(now.UnixMilli()) })
}

// CallSnapshot runs the OnSnapshot hook (wasmpod_snapshot) and returns a copy of the state.
func CallSnapshot() ([]byte, error) {
	fn := export[func() int64]("wasmpod_snapshot")
	errs := core.Host.ErrorCount()
	return result("wasmpod_snapshot", fn(), errs)
}

// CallRestore copies state into the guest buffer and runs the OnRestore hook on it
// (wasmpod_restore).
func CallRestore(state []byte) error {
	fn := export[func(int32) int32]("wasmpod_restore")
	return status("wasmpod_restore", func() int32 { return fn(core.WriteInput(state)) })
}
