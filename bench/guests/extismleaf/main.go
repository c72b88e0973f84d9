// Command extismleaf is the benchmark leaf written for the Extism ABI with extism go-pdk: the
// same logic as plugins/benchleaf (sum the input bytes, return the sum as 8 little-endian bytes)
// so bench/ can compare a native-ABI call with an Extism call on equal guest work.
package main

import "github.com/extism/go-pdk"

//go:wasmexport leaf
func leaf() int32 {
	in := pdk.Input()
	var s uint64
	for _, b := range in {
		s += uint64(b)
	}
	var out [8]byte
	for i := range out {
		out[i] = byte(s >> (8 * i))
	}
	pdk.Output(out[:])
	return 0
}

//go:wasmexport noop
func noop() int32 { return 0 }

func main() {}
