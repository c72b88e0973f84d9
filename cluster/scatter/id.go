package scatter

import (
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync/atomic"
)

// RequestID identifies one request of a Gather across every node it reaches: 8 random bytes
// chosen when the Gather is created, then an 8-byte sequence number. Unique across nodes with
// overwhelming probability, and drawn without a system call per request.
type RequestID [16]byte

// String renders the id as 32 lower-case hex digits (its wire form).
func (id RequestID) String() string { return hex.EncodeToString(id[:]) }

// appendHex appends the wire form of id to dst.
func (id RequestID) appendHex(dst []byte) []byte {
	var b [32]byte
	hex.Encode(b[:], id[:])
	return append(dst, b[:]...)
}

// ParseRequestID parses the 32-hex-digit wire form of a request id.
func ParseRequestID(s []byte) (RequestID, error) {
	var id RequestID
	if len(s) != 32 {
		return id, fmt.Errorf("%w: request id: %d characters, want 32 hex digits", ErrMalformed, len(s))
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return id, fmt.Errorf("%w: request id: not hex", ErrMalformed)
		}
	}
	if _, err := hex.Decode(id[:], s); err != nil {
		return id, fmt.Errorf("%w: request id: %v", ErrMalformed, err)
	}
	return id, nil
}

// idSource hands out request ids: a random prefix and a counter.
type idSource struct {
	prefix [8]byte
	seq    atomic.Uint64
}

func newIDSource() (*idSource, error) {
	s := &idSource{}
	if _, err := crand.Read(s.prefix[:]); err != nil {
		return nil, fmt.Errorf("scatter: request id prefix: %w", err)
	}
	return s, nil
}

func (s *idSource) next() RequestID {
	var id RequestID
	copy(id[:8], s.prefix[:])
	binary.BigEndian.PutUint64(id[8:], s.seq.Add(1))
	return id
}
