package wasmpod

import (
	"time"

	"github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"
)

// Health is what a health probe reports.
type Health int32

// Health values of wasmpod_health.
const (
	Healthy   Health = 0 // alive and ready
	NotReady  Health = 1 // alive, but send no traffic
	Unhealthy Health = 2 // restart the instance
)

var hooks struct {
	start    func() error
	stop     func(grace time.Duration) error
	health   func() Health
	tick     func(now time.Time) error
	snapshot func() ([]byte, error)
	restore  func(state []byte) error
}

// OnStart registers fn to run once per instance before it serves. An error fails the instance.
// Default: nothing, success.
func OnStart(fn func() error) { hooks.start = fn }

// OnStop registers fn to run once per instance when the module stops; grace is what is left of
// the grace period. Default: nothing, success.
func OnStop(fn func(grace time.Duration) error) { hooks.stop = fn }

// OnHealth registers the health probe. A panic reports Unhealthy. Default: Healthy.
func OnHealth(fn func() Health) { hooks.health = fn }

// OnTick registers fn to run every tick interval of the module's spec. An error counts as a
// failed tick. Default: nothing, success.
func OnTick(fn func(now time.Time) error) { hooks.tick = fn }

// OnSnapshot registers fn to produce the instance state saved when the module stops.
// Default: empty state.
func OnSnapshot(fn func() ([]byte, error)) { hooks.snapshot = fn }

// OnRestore registers fn to load a saved state when an instance starts with one. state aliases
// the guest buffer: copy what you keep. An error fails the start. Default: the state is
// accepted and ignored.
func OnRestore(fn func(state []byte) error) { hooks.restore = fn }

func abiVersion() int32 { return core.ABIVersion }

func buffer(size int32) uint32 { return core.Buffer(size) }

func start() int32 {
	if hooks.start == nil {
		return 0
	}
	return core.Status(hooks.start)
}

func stop(graceMS int64) int32 {
	if hooks.stop == nil {
		return 0
	}
	return core.Status(func() error { return hooks.stop(time.Duration(graceMS) * time.Millisecond) })
}

func health() (h int32) {
	if hooks.health == nil {
		return int32(Healthy)
	}
	defer func() {
		if v := recover(); v != nil {
			core.Recovered(v)
			h = int32(Unhealthy)
		}
	}()
	return int32(hooks.health())
}

func tick(nowMS int64) int32 {
	if hooks.tick == nil {
		return 0
	}
	return core.Status(func() error { return hooks.tick(time.UnixMilli(nowMS)) })
}

func snapshot() int64 {
	return core.Call("snapshot", 0, func([]byte) ([]byte, error) {
		if hooks.snapshot == nil {
			return nil, nil
		}
		return hooks.snapshot()
	})
}

func restore(n int32) int32 {
	if hooks.restore == nil {
		return 0
	}
	return core.Status(func() error {
		in, err := core.Input(n)
		if err != nil {
			return err
		}
		return hooks.restore(in)
	})
}
