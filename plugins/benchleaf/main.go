// Command benchleaf is the guest the benchmarks call: a handler that does nothing (the cost of
// one call), a leaf that sums its input bytes (the cost of a small real call) and a merge that
// sums the leaves' 8-byte sums (the gather step of the fan-out benchmarks).
package main

import (
	"encoding/binary"
	"fmt"

	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
	"github.com/wasmpod/wasmpod/guest-sdk/go/leaf"
	"github.com/wasmpod/wasmpod/guest-sdk/go/merge"
)

var sumOut, mergeOut [8]byte

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
	// sum of the parts, each an 8-byte little-endian uint64; a missing part counts as 0.
	merge.Handle(func(parts []merge.Part) ([]byte, error) {
		var s uint64
		for i, p := range parts {
			if p.Missing {
				continue
			}
			if len(p.Data) != 8 {
				return nil, fmt.Errorf("part %d: %d bytes, want 8", i, len(p.Data))
			}
			s += binary.LittleEndian.Uint64(p.Data)
		}
		binary.LittleEndian.PutUint64(mergeOut[:], s)
		return mergeOut[:], nil
	})
}

func main() {}
