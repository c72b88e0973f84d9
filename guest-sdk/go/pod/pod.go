// Package pod lets a plugin call another module of its pod by name: the pod-local "localhost"
// of guest-sdk/ABI.md §4 (imports call and call_result). The target's handle export
// (wasmpod_handle) receives in and its output is the response; the target runs under what is
// left of the caller's deadline.
//
// Main uses it to talk to its ambassador ("cache", "egress" ...) as it would talk to a server on
// localhost, so the ambassador can be swapped for a real service (or a fake in tests) without
// changing main.
//
// Compiled natively (not wasip1), the imports are played by Host, an in-process FakeHost whose
// Modules map stands in for the pod, for unit tests of plugin logic.
package pod

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched by errors.Is on a *CallError.
var (
	ErrNoModule   = errors.New("no such module in the pod")
	ErrFailed     = errors.New("target module failed")
	ErrNotAllowed = errors.New("pod-local call not allowed")
	ErrTooLarge   = errors.New("response too large")
	ErrBadArgs    = errors.New("invalid call arguments")
)

// Codes of the call import.
const (
	codeNoModule   = -1
	codeFailed     = -2
	codeNotAllowed = -3
	codeTooLarge   = -4
	codeBadArgs    = -5
)

// CallError is a failed pod-local call: the import's code and the host's message.
type CallError struct {
	Target string
	Code   int32
	// Message is the host's explanation, e.g. the target's guest error.
	Message string
}

func (e *CallError) Error() string {
	if e.Message != "" {
		return "pod call " + e.Target + ": " + e.Message
	}
	return fmt.Sprintf("pod call %s: %v", e.Target, e.Unwrap())
}

// Unwrap maps the code to its sentinel error.
func (e *CallError) Unwrap() error {
	switch e.Code {
	case codeNoModule:
		return ErrNoModule
	case codeNotAllowed:
		return ErrNotAllowed
	case codeTooLarge:
		return ErrTooLarge
	case codeBadArgs:
		return ErrBadArgs
	}
	return ErrFailed
}

// Call calls the handle export of the pod's module named target with in and returns its
// response. A failure is a *CallError wrapping one of the sentinel errors.
func Call(target string, in []byte) ([]byte, error) {
	n := hostCall(target, in)
	if n < 0 {
		msg, _ := result(-1)
		return nil, &CallError{Target: target, Code: n, Message: string(msg)}
	}
	out, ok := result(n)
	if !ok {
		return nil, &CallError{Target: target, Code: codeFailed, Message: "the host lost the response"}
	}
	return out, nil
}

// result fetches the kept response; size is its length when known (-1: ask).
func result(size int32) ([]byte, bool) {
	var small [512]byte
	b := small[:]
	if size > int32(len(b)) {
		b = make([]byte, size)
	}
	for {
		m := hostCallResult(b)
		if m < 0 {
			return nil, false
		}
		if int(m) <= len(b) {
			return append([]byte(nil), b[:m]...), true
		}
		b = make([]byte, m)
	}
}
