package cluster

import (
	"fmt"
	"sync"
)

// CheckToken is the fencing rule: a write with token is admitted when token
// is at least the highest token the store has admitted for that lease.
// Equal tokens are the same term of the same leader.
func CheckToken(highest, token uint64) error {
	if token == 0 {
		return fmt.Errorf("%w: zero fencing token", ErrInvalid)
	}
	if token < highest {
		return fmt.Errorf("%w: token %d < %d", ErrStaleToken, token, highest)
	}
	return nil
}

// Fence is an in-memory fencing check for a store: per lease name, it
// remembers the highest admitted token and rejects smaller ones. Stores
// that persist data should persist the highest token with the data, in the
// same transaction, and use CheckToken.
type Fence struct {
	mu      sync.Mutex
	highest map[string]uint64
}

// Admit records token for name, or returns ErrStaleToken.
func (f *Fence) Admit(name string, token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.highest == nil {
		f.highest = map[string]uint64{}
	}
	if err := CheckToken(f.highest[name], token); err != nil {
		return err
	}
	f.highest[name] = token
	return nil
}

// Highest returns the highest admitted token for name.
func (f *Fence) Highest(name string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.highest[name]
}
