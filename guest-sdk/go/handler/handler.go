// Package handler adds the request handler role to a wasmpod plugin: importing it exports
// wasmpod_handle (guest-sdk/ABI.md, section 2), which runs the function given to Handle.
//
// The input slice aliases the guest buffer, which the host overwrites on the next call: do not
// retain it (or any sub-slice) after the function returns; copy what you keep. The output may
// alias the input; the SDK keeps it alive until the next call.
package handler

import (
	_ "github.com/wasmpod/wasmpod/guest-sdk/go" // required exports and lifecycle
	"github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"
)

var fn func([]byte) ([]byte, error)

// Handle registers the request handler function; call it from an init function. in is the
// request; the output is the response. A returned error fails the call (wrap it with
// wasmpod.Code to pick the code); a panic fails the call with the panic message and leaves the
// instance usable.
func Handle(f func(in []byte) ([]byte, error)) { fn = f }

func call(n int32) int64 { return core.Call("handler", n, fn) }
