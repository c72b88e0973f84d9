//go:build wasip1

package wphttp

//go:wasmexport wasmpod_http
func export(n int32) int64 { return call(n) }
