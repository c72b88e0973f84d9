// Package runtime loads WebAssembly modules and runs them as warm, limited, supervised units.
//
// An [Engine] owns the WebAssembly runtimes (one with the termination guard, one without for
// trusted modules) and an on-disk compilation cache, so a module is compiled once per machine.
// [Engine.Load] checks a module against the native guest ABI (guest-sdk/ABI.md) and its limits and
// returns a [Module]: a pool of warm instances with a lifecycle (created, starting, running,
// paused, stopping, stopped, failed), per-call deadlines, bounded concurrency, trap containment
// and statistics.
//
// The call path ([Module.Call] and the role helpers) borrows a warm instance, writes the input
// into the guest's reusable buffer, makes one wasm call and appends the output to a buffer the
// caller owns. It allocates nothing beyond what the WebAssembly runtime's termination guard
// needs, and nothing at all for trusted modules.
//
// The package knows nothing of processes, HTTP or networks: the host and cluster packages build
// on it. Types of the underlying WebAssembly runtime never appear in its API.
package runtime
