package scatter

import (
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
)

// RequestID identifies one request of a Gather across every node it reaches: 16 bytes from a
// cryptographically secure generator, so that knowing earlier ids (an ingress answer shows
// its own) tells nothing about the next ones: no one can send a duplicate ahead of a
// legitimate request to have its shard dropped. Drawn from a ChaCha8 stream seeded from
// crypto/rand, without a system call per request.
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

// idSource hands out unpredictable request ids: a ChaCha8 stream (a CSPRNG) with a secret
// seed from crypto/rand.
type idSource struct {
	mu  sync.Mutex
	rng *rand.ChaCha8
}

func newIDSource() (*idSource, error) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("scatter: request id seed: %w", err)
	}
	return &idSource{rng: rand.NewChaCha8(seed)}, nil
}

func (s *idSource) next() RequestID {
	var id RequestID
	s.mu.Lock()
	_, _ = s.rng.Read(id[:])
	s.mu.Unlock()
	return id
}
