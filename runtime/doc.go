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
// Modules built for the Extism ABI (they import from "extism:host/env") load with
// [ModuleConfig].ABI set to [ABIExtism] (or [ABIAuto], see [DetectABI]) and run through extism
// go-sdk behind the same Module: the same pool, lifecycle, limits and statistics; roles map to
// Extism functions ([ModuleConfig].ExtismFunctions); the config map is the plugin's config,
// mounts its allowed paths, and [ModuleConfig].AllowedHosts the hosts its http_request may
// reach (none by default; wasmpod implements http_request itself so that every redirect is
// checked too). Their calls cost what Extism's cost (tens of microseconds, see bench/).
//
// The package knows nothing of processes or servers: the host and cluster packages build on it.
// The only network access it gives a guest is an Extism plugin's http_request to its allowed
// hosts. Types of the underlying WebAssembly runtimes never appear in its API.
package runtime
