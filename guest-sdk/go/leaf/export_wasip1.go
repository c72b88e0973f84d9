//go:build wasip1

package leaf

//go:wasmexport wasmpod_leaf
func export(n int32) int64 { return call(n) }
