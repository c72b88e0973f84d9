// Package wasmpod is the Go SDK for wasmpod's native guest ABI v1 (see ../ABI.md).
//
// Build a plugin with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//
// Importing this package exports memory, wasmpod_abi_version, wasmpod_buffer and the lifecycle
// exports (wasmpod_start, wasmpod_stop, wasmpod_health, wasmpod_tick, wasmpod_snapshot,
// wasmpod_restore), which run the functions registered with OnStart, OnStop, ... or sane
// defaults. Each role lives in its own subpackage (leaf, merge, handler, wphttp, stage) whose
// import adds that role's export, so a plugin exports exactly the roles it imports.
//
// With -buildmode=c-shared the Go runtime runs package init functions from _initialize but
// never calls main.main: register handlers and hooks in init functions.
//
// Input slices handed to handlers alias the guest buffer that the host overwrites on the next
// call: they must not be retained after the handler returns (copy what you keep). A handler's
// output is kept alive by the SDK until the next call; it may alias the input.
//
// A handler that panics fails its call with the panic message (code 1, stack logged at error
// level); the instance stays usable. Return Code(n, err) to fail a call with code n.
//
// Compiled for a platform other than wasip1 (e.g. for `go test` of plugin logic), the package
// works against an in-memory stand-in for the host, which package wasmpodtest sets up and
// inspects (config, logs, error messages, metrics, scaling, pod-local calls) and through which
// a test calls the registered roles and hooks as the host would.
package wasmpod

import (
	"fmt"

	"github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"
)

// ABIVersion is the guest ABI version this SDK speaks.
const ABIVersion = core.ABIVersion

// Code returns an error that fails a call with application code code (ABI: the handler
// returns -code). err supplies the message attached with the error import; it may be nil.
// Codes below 1 become 1.
func Code(code int, err error) error {
	return &core.CodedError{Code: code, Err: err}
}

// Codef is Code(code, fmt.Errorf(format, args...)).
func Codef(code int, format string, args ...any) error {
	return Code(code, fmt.Errorf(format, args...))
}

// CodeOf returns the code a call failing with err reports: the code given to Code if err wraps
// one, else 1; 0 for nil.
func CodeOf(err error) int { return core.CodeOf(err) }

// Level is a log level.
type Level int32

// Log levels of the log import.
const (
	LevelDebug Level = 0
	LevelInfo  Level = 1
	LevelWarn  Level = 2
	LevelError Level = 3
)

// Log writes msg as one line to the module's log sink.
func Log(level Level, msg string) { core.Log(int32(level), msg) }

// Debugf logs a formatted line at debug level.
func Debugf(format string, args ...any) { Log(LevelDebug, fmt.Sprintf(format, args...)) }

// Infof logs a formatted line at info level.
func Infof(format string, args ...any) { Log(LevelInfo, fmt.Sprintf(format, args...)) }

// Warnf logs a formatted line at warn level.
func Warnf(format string, args ...any) { Log(LevelWarn, fmt.Sprintf(format, args...)) }

// Errorf logs a formatted line at error level.
func Errorf(format string, args ...any) { Log(LevelError, fmt.Sprintf(format, args...)) }

// Config returns the value of key in the module's config map.
func Config(key string) (string, bool) { return core.ConfigGet(key) }

// Scale asks the host to grow (delta > 0) or shrink (delta < 0) the module's warm instance
// pool. It returns the new target size, or false if scaling is not allowed for this module.
func Scale(delta int) (int, bool) {
	n := core.Scale(int32(max(min(delta, 1<<31-1), -1<<31)))
	if n < 0 {
		return 0, false
	}
	return int(n), true
}
