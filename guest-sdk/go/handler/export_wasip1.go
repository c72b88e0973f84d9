//go:build wasip1

package handler

//go:wasmexport wasmpod_handle
func export(n int32) int64 { return call(n) }
