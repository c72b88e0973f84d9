//go:build wasip1

package merge

//go:wasmexport wasmpod_merge
func export(n int32) int64 { return call(n) }
