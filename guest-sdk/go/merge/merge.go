// Package merge adds the scatter/gather merge role to a wasmpod plugin: importing it exports
// wasmpod_merge (guest-sdk/ABI.md, section 2.1), which decodes the framed parts and runs the
// function given to Handle.
//
// Parts, and the Data of each part, alias the guest buffer and an SDK-owned slice that are
// reused on the next call: do not retain them after the function returns; copy what you keep.
package merge

import (
	"encoding/binary"
	"errors"
	"fmt"

	_ "github.com/wasmpod/wasmpod/guest-sdk/go" // required exports and lifecycle
	"github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"
)

// Part is one shard's partial result.
type Part struct {
	Data    []byte // the leaf's output; nil when Missing
	Missing bool   // the shard failed or missed its deadline
}

// MissingLength is the length that marks a missing part in the framing.
const MissingLength = 0xFFFFFFFF

// ErrMalformed is wrapped by every Decode error.
var ErrMalformed = errors.New("malformed merge framing")

var (
	fn    func([]Part) ([]byte, error)
	parts []Part // reused across calls
)

// Handle registers the merge function; call it from an init function. It gets one Part per
// shard, in shard order, and returns the merged result. Malformed framing fails the call
// without calling fn. A returned error fails the call (wrap it with wasmpod.Code to pick the
// code); a panic fails the call with the panic message and leaves the instance usable.
func Handle(f func(parts []Part) ([]byte, error)) { fn = f }

func call(n int32) int64 {
	if fn == nil {
		return core.Call("merge", n, nil)
	}
	return core.Call("merge", n, func(in []byte) ([]byte, error) {
		var err error
		parts, err = Decode(parts, in)
		if err != nil {
			return nil, err
		}
		return fn(parts)
	})
}

// Decode parses merge framing (u32 count, then count times u32 length and length bytes, a
// length of MissingLength meaning a missing part with no bytes) into dst[:0], reusing its
// storage, and returns it. Each Data aliases in (capacity clipped to the part). Trailing bytes
// are an error.
func Decode(dst []Part, in []byte) ([]Part, error) {
	dst = dst[:0]
	if len(in) < 4 {
		return dst, fmt.Errorf("%w: %d bytes, want at least 4", ErrMalformed, len(in))
	}
	count := binary.LittleEndian.Uint32(in)
	rest := in[4:]
	if uint64(count) > uint64(len(rest))/4 {
		return dst, fmt.Errorf("%w: count %d does not fit in %d bytes", ErrMalformed, count, len(rest))
	}
	if cap(dst) < int(count) {
		dst = make([]Part, 0, count)
	}
	for i := uint32(0); i < count; i++ {
		if len(rest) < 4 {
			return dst[:0], fmt.Errorf("%w: part %d: truncated length", ErrMalformed, i)
		}
		n := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if n == MissingLength {
			dst = append(dst, Part{Missing: true})
			continue
		}
		if uint64(n) > uint64(len(rest)) {
			return dst[:0], fmt.Errorf("%w: part %d: length %d exceeds the %d bytes left", ErrMalformed, i, n, len(rest))
		}
		dst = append(dst, Part{Data: rest[:n:n]})
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return dst[:0], fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	return dst, nil
}

// Append appends the framing of parts to dst and returns it (the host's side of Decode; tests
// use it). A Missing part is encoded as missing whatever its Data. It panics if a part is
// 0xFFFFFFFF bytes or longer, which the framing cannot express.
func Append(dst []byte, parts []Part) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(parts)))
	for i, p := range parts {
		if p.Missing {
			dst = binary.LittleEndian.AppendUint32(dst, MissingLength)
			continue
		}
		if uint64(len(p.Data)) >= MissingLength {
			panic(fmt.Sprintf("merge: part %d too large to frame", i))
		}
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p.Data)))
		dst = append(dst, p.Data...)
	}
	return dst
}
