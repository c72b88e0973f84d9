//go:build wasip1

package stage

//go:wasmexport wasmpod_stage
func export(n int32) int64 { return call(n) }
