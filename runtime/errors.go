package runtime

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these where the condition is one
// a caller is expected to test with errors.Is.
var (
	// ErrInvalidModule: the bytes are not a WebAssembly module this host can run (malformed,
	// wrong ABI version, missing required exports, unknown imports).
	ErrInvalidModule = errors.New("invalid module")
	// ErrChecksum: the module's sha256 differs from the expected one.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrMemoryLimit: the module declares more memory than its limit allows.
	ErrMemoryLimit = errors.New("memory limit exceeded")
	// ErrNoExport: the module does not export the function a call or role needs.
	ErrNoExport = errors.New("export not found")
	// ErrNotRunning: the module does not admit calls in its current state.
	ErrNotRunning = errors.New("module not running")
	// ErrIllegalTransition: a lifecycle operation is not allowed from the current state.
	ErrIllegalTransition = errors.New("illegal lifecycle transition")
	// ErrOverloaded: all instances stayed busy for the whole queue timeout.
	ErrOverloaded = errors.New("module overloaded")
	// ErrDeadline: the call ran past its deadline and was cut; its instance was discarded.
	ErrDeadline = errors.New("call deadline exceeded")
	// ErrTrap: the guest trapped or exited; its instance was discarded. See [TrapError].
	ErrTrap = errors.New("guest trapped")
	// ErrGuest: the guest reported a failure. See [GuestError].
	ErrGuest = errors.New("guest error")
	// ErrInput: the input or output of a call breaks a size limit or framing rule.
	ErrInput = errors.New("invalid call input")
	// ErrOutput: the guest's output breaks a size limit (the guest's fault, not the caller's:
	// hosts answer it as a bad gateway, not a bad request).
	ErrOutput = errors.New("invalid guest output")
	// ErrClosed: the engine or module has been closed.
	ErrClosed = errors.New("closed")
	// ErrCallsRunning: Close returned while calls admitted before it still ran guest code that
	// cannot be cut (a trusted module's, or one blocked in a host function). Close refused new
	// calls and released everything else; what those calls use (their instances, the module's
	// compiled code, the engine's wazero runtime) is released by the last of them as it returns.
	ErrCallsRunning = errors.New("calls still running")
	// ErrTooLarge: the guest refused a buffer for the input (wasmpod_buffer returned 0), which
	// the ABI allows. It wraps ErrInput.
	ErrTooLarge = fmt.Errorf("%w: the guest cannot hold an input that large", ErrInput)
)

// TrapError describes a call that ended in a trap or a guest exit. It wraps [ErrTrap].
type TrapError struct {
	Module string
	// Kind is a short stable word: unreachable, out-of-bounds, divide-by-zero,
	// integer-overflow, stack-overflow, invalid-conversion, indirect-call, exit, other.
	Kind string
	// ExitCode is set when Kind is "exit" (the guest called proc_exit).
	ExitCode uint32
	// Detail is the runtime's message, including the wasm stack trace when available.
	Detail string
	// Message is what the guest passed to the error import during the call before it trapped
	// or exited (an SDK's panic or abort message), if anything.
	Message string
}

func (e *TrapError) Error() string {
	if e.Kind == "exit" {
		if e.Message != "" {
			return fmt.Sprintf("module %q: guest exited with code %d: %s", e.Module, e.ExitCode, e.Message)
		}
		return fmt.Sprintf("module %q: guest exited with code %d", e.Module, e.ExitCode)
	}
	if e.Message != "" {
		return fmt.Sprintf("module %q: trap (%s): %s: %s", e.Module, e.Kind, e.Message, e.Detail)
	}
	return fmt.Sprintf("module %q: trap (%s): %s", e.Module, e.Kind, e.Detail)
}

// Unwrap makes errors.Is(err, ErrTrap) true.
func (e *TrapError) Unwrap() error { return ErrTrap }

// GuestError is a failure the guest reported by returning a negative result. It wraps [ErrGuest].
type GuestError struct {
	Module  string
	Code    int32
	Message string
}

func (e *GuestError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("module %q: guest error code %d", e.Module, e.Code)
	}
	return fmt.Sprintf("module %q: guest error code %d: %s", e.Module, e.Code, e.Message)
}

// Unwrap makes errors.Is(err, ErrGuest) true.
func (e *GuestError) Unwrap() error { return ErrGuest }
