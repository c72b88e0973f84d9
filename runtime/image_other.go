//go:build !linux

package runtime

import (
	"fmt"
	"sync/atomic"
)

// imageBacking holds an image's memory. Without Linux's memfd each instance gets a copy; the
// instance still skips the initialisation.
type imageBacking struct {
	mem  []byte
	size uint64
}

func newImageBacking(name string, mem []byte) (*imageBacking, error) {
	return &imageBacking{mem: append([]byte(nil), mem...), size: uint64(len(mem))}, nil
}

func (b *imageBacking) close() {}

func (b *imageBacking) bytes() ([]byte, error) { return b.mem, nil }

func (b *imageBacking) view(fn func(mem []byte) error) error { return fn(b.mem) }

type cowMemory struct {
	lm      *limitedMemory
	pages   *atomic.Uint64
	closing *atomic.Bool // unused: a copy on the Go heap outlives a Free under a running call
}

func (b *imageBacking) newMemory(limit uint64, pages *atomic.Uint64) (*cowMemory, error) {
	if limit < b.size {
		return nil, fmt.Errorf("image of %d bytes is over the memory limit of %d", b.size, limit)
	}
	lm := &limitedMemory{limit: limit, buf: make([]byte, b.size)}
	copy(lm.buf, b.mem)
	return &cowMemory{lm: lm, pages: pages}, nil
}

func (c *cowMemory) Reallocate(size uint64) []byte {
	b := c.lm.Reallocate(size)
	if b != nil {
		c.pages.Store(size / 65536)
	}
	return b
}

func (c *cowMemory) Free() { c.lm.Free() }
