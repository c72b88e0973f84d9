package runtime

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// imageBacking holds an image's memory in a memfd. Each instance maps it copy-on-write
// (MAP_PRIVATE): creating an instance copies nothing, pages the instance never writes stay
// shared with every other instance of the module, and none of it is Go heap.
//
// A freed instance's memory is kept for the next one (up to maxSpareMemories and
// maxSpareBytes), restored to the image by copying rather than mapped again: a fresh mapping
// costs a page fault for every page an instance touches (~150 for a run of a small Go command),
// and on some virtual machines a fault costs as much as copying ~75 pages (15.9 us against
// 0.2 us on this project's 2-core VM of 2026-12-05), while a kept memory's pages stay mapped.
// The restore is exact: the image's bytes over the image's range, zeros over what the instance
// grew into (TestCommandImageRunsDoNotLeak).
type imageBacking struct {
	fd   int
	size uint64

	mu     sync.Mutex
	closed bool
	src    []byte   // the memfd mapped read-only and shared: what a kept memory is restored from
	spare  [][]byte // reservations restored to the image, ready for the next instance
}

// maxSpareMemories bounds the memories kept per image: enough for a command's concurrent runs
// or a pool's churn, each holding at most the image plus spareZeroMax of resident pages.
// maxSpareBytes bounds what they hold together, so a module with a large image keeps fewer
// (none above 64 MiB) instead of holding hundreds of MiB after a pool shrinks.
const (
	maxSpareMemories = 4
	maxSpareBytes    = 64 << 20
)

// spareZeroMax is how much of what an instance grew into beyond the image is cleared by
// writing zeros (its pages stay mapped for the next instance); beyond it pages are dropped
// (MADV_DONTNEED: zero-filled on the next touch), so a kept memory's resident size stays small.
const spareZeroMax = 1 << 20

func newImageBacking(name string, mem []byte) (*imageBacking, error) {
	fd, err := unix.MemfdCreate("wasmpod-image-"+name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	for off := 0; off < len(mem); {
		n, err := unix.Pwrite(fd, mem[off:], int64(off))
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("write image: %w", err)
		}
		off += n
	}
	return &imageBacking{fd: fd, size: uint64(len(mem))}, nil
}

// close releases the memfd and the kept memories (instances keep their mappings; what they
// free later is unmapped). Idempotent.
func (b *imageBacking) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for _, r := range b.spare {
		_ = unix.Munmap(r)
	}
	b.spare = nil
	if b.src != nil {
		_ = unix.Munmap(b.src)
		b.src = nil
	}
	unix.Close(b.fd)
}

// bytes reads the image back (to check an instance against it).
func (b *imageBacking) bytes() ([]byte, error) {
	mem := make([]byte, b.size)
	for off := 0; off < len(mem); {
		n, err := unix.Pread(b.fd, mem[off:], int64(off))
		if err != nil || n == 0 {
			return nil, fmt.Errorf("read image: %v", err)
		}
		off += n
	}
	return mem, nil
}

// view calls fn with the image's bytes mapped read-only from the memfd: off the Go heap (an
// image may be as large as the memory limit), and unmapped when fn returns.
func (b *imageBacking) view(fn func(mem []byte) error) error {
	if b.size == 0 {
		return fn(nil)
	}
	mem, err := unix.Mmap(b.fd, 0, int(b.size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map image: %w", err)
	}
	defer unix.Munmap(mem)
	return fn(mem)
}

// cowMemory is an instance's linear memory: one reservation of the module's memory limit
// (anonymous, MAP_NORESERVE: address space, not memory) whose first b.size bytes map the image
// privately, or a kept reservation restored to the same state. Growing only lengthens the
// slice; the address never changes. Free hands the reservation back to b.
type cowMemory struct {
	b     *imageBacking
	res   []byte // the reservation, len = limit; nil once freed
	hw    uint64 // the largest size the instance had: what a restore must cover
	pages *atomic.Uint64
	// closing is the engine's flag (Engine.rtClosing): set, Free may be running under a call
	// still in flight, so it leaves the reservation mapped (see Free).
	closing *atomic.Bool
}

// newMemory returns a copy-on-write view of the image under limit bytes: a kept one when there
// is one of that limit, else a fresh mapping.
func (b *imageBacking) newMemory(limit uint64, pages *atomic.Uint64) (*cowMemory, error) {
	if limit < b.size {
		return nil, fmt.Errorf("image of %d bytes is over the memory limit of %d", b.size, limit)
	}
	b.mu.Lock()
	for i := len(b.spare) - 1; i >= 0; i-- {
		if r := b.spare[i]; uint64(len(r)) == limit {
			b.spare = append(b.spare[:i], b.spare[i+1:]...)
			b.mu.Unlock()
			return &cowMemory{b: b, res: r, pages: pages}, nil
		}
	}
	b.mu.Unlock()
	res, err := unix.Mmap(-1, 0, int(limit), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("reserve %d bytes: %w", limit, err)
	}
	if b.size > 0 {
		if _, err := unix.MmapPtr(b.fd, 0, unsafe.Pointer(&res[0]), uintptr(b.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED); err != nil {
			_ = unix.Munmap(res)
			return nil, fmt.Errorf("map image: %w", err)
		}
	}
	return &cowMemory{b: b, res: res, pages: pages}, nil
}

// Reallocate implements experimental.LinearMemory: within the reservation, at the same address.
func (c *cowMemory) Reallocate(size uint64) []byte {
	if c.res == nil || size > uint64(len(c.res)) {
		return nil
	}
	c.hw = max(c.hw, size)
	c.pages.Store(size / 65536)
	return c.res[:size:size]
}

// Free implements experimental.LinearMemory: the reservation is restored and kept for the next
// instance (see imageBacking), or unmapped. Idempotent.
//
// While the engine closes its wazero runtime, which frees the memory of every instance it still
// has, including one whose call has not returned (cut calls unwind at their next check, a call
// blocked in a host function later), the reservation is left mapped instead: unmapping it would
// fault the guest's goroutine and so the whole process, and keeping it would hand a memory the
// guest still writes to the next instance. The mapping then lasts until the process exits
// (TestEngineCloseUnderRunningCall).
func (c *cowMemory) Free() {
	r := c.res
	if r == nil {
		return
	}
	c.res = nil
	if c.closing != nil && c.closing.Load() {
		return
	}
	if !c.b.keep(r, c.hw) {
		_ = unix.Munmap(r)
	}
}

// keep restores r, whose instance had grown to hw bytes, to the image and keeps it; false when
// it is not kept (the backing is closed, enough are kept, or the image cannot be read).
func (b *imageBacking) keep(r []byte, hw uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || len(b.spare) >= maxSpareMemories || uint64(len(b.spare)+1)*(b.size+spareZeroMax) > maxSpareBytes {
		return false
	}
	if b.src == nil && b.size > 0 {
		src, err := unix.Mmap(b.fd, 0, int(b.size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return false
		}
		b.src = src
	}
	hw = min(max(hw, b.size), uint64(len(r)))
	copy(r[:b.size], b.src)
	grown := r[b.size:hw]
	zero := grown[:min(uint64(len(grown)), spareZeroMax)]
	clear(zero)
	if rest := grown[len(zero):]; len(rest) > 0 {
		// Page-aligned: b.size is a multiple of the wasm page, and so is spareZeroMax.
		if err := unix.Madvise(rest, unix.MADV_DONTNEED); err != nil {
			return false
		}
	}
	b.spare = append(b.spare, r)
	return true
}
