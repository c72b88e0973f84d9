//go:build wasip1

package wasmpod

//go:wasmexport wasmpod_abi_version
func wasmpodABIVersion() int32 { return abiVersion() }

//go:wasmexport wasmpod_buffer
func wasmpodBuffer(size int32) uint32 { return buffer(size) }

//go:wasmexport wasmpod_start
func wasmpodStart() int32 { return start() }

//go:wasmexport wasmpod_stop
func wasmpodStop(graceMS int64) int32 { return stop(graceMS) }

//go:wasmexport wasmpod_health
func wasmpodHealth() int32 { return health() }

//go:wasmexport wasmpod_tick
func wasmpodTick(nowMS int64) int32 { return tick(nowMS) }

//go:wasmexport wasmpod_snapshot
func wasmpodSnapshot() int64 { return snapshot() }

//go:wasmexport wasmpod_restore
func wasmpodRestore(n int32) int32 { return restore(n) }
