// Command benchleaf is the guest the benchmarks call: a handler that does nothing (the cost of
// one call) and a leaf that sums its input bytes (the cost of a small real call).
package main

import (
	"encoding/binary"

	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
	"github.com/wasmpod/wasmpod/guest-sdk/go/leaf"
)

var sumOut [8]byte

func init() {
	// noop: empty output.
	handler.Handle(func([]byte) ([]byte, error) { return nil, nil })
	// sum of the input bytes as a little-endian uint64.
	leaf.Handle(func(in []byte) ([]byte, error) {
		var s uint64
		for _, b := range in {
			s += uint64(b)
		}
		binary.LittleEndian.PutUint64(sumOut[:], s)
		return sumOut[:], nil
	})
}

func main() {}
