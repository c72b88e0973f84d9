package runtime

import (
	"crypto/sha256"
	"sync"
)

// compileLocks serialises compiles of identical bytes, process-wide.
//
// wazero v1.12.0 publishes a module it reads from the on-disk compilation cache to its
// in-memory table before it has compiled the module's entry preambles (wazero/wazero#2547): a
// second compile of the same bytes on the same wazero engine (one runtime, or runtimes sharing a
// CompilationCache, as the Extism runtimes do) finds it there and returns, and instantiating it
// then panics in moduleEngine.NewFunction, or calls through an empty preamble. With one compile of
// given bytes at a time the second finds the module whole. Compiles of different bytes still run
// in parallel; a second compile of the same bytes waits for the first, which it would repeat
// otherwise. The wait is for compiles the compile budget bounds, so it does not watch the load's
// context. Extism plugins also compile extism's kernel, the same bytes every time, which this
// package does not see: they take extismKey as well, and so take turns with each other.
var compileLocks = keyedLocks{m: map[[32]byte]*keyedLock{}}

// extismKey is the key every Extism compile holds (extism go-sdk compiles its kernel in each).
var extismKey = [32]byte{'e', 'x', 't', 'i', 's', 'm'}

// keyedLocks is a set of mutexes by key, each kept while someone holds or waits for it. Safe for
// concurrent use.
type keyedLocks struct {
	mu sync.Mutex
	m  map[[32]byte]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int // holders and waiters, under keyedLocks.mu
}

// lockBytes locks the key of b's content; the returned function unlocks it.
func (k *keyedLocks) lockBytes(b []byte) (unlock func()) {
	return k.lock(sha256.Sum256(b))
}

// lock locks key; the returned function unlocks it.
func (k *keyedLocks) lock(key [32]byte) (unlock func()) {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
