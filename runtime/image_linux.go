package runtime

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// imageBacking holds an image's memory in a memfd. Each instance maps it copy-on-write
// (MAP_PRIVATE): creating an instance copies nothing, pages the instance never writes stay
// shared with every other instance of the module, and none of it is Go heap.
type imageBacking struct {
	fd     int
	size   uint64
	closed bool
}

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

// close releases the memfd (instances keep their mappings). Idempotent; not concurrent.
func (b *imageBacking) close() {
	if !b.closed {
		b.closed = true
		unix.Close(b.fd)
	}
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

// cowMemory is an instance's linear memory: one reservation of the module's memory limit
// (anonymous, MAP_NORESERVE: address space, not memory) whose first b.size bytes map the image
// privately. Growing only lengthens the slice; the address never changes.
type cowMemory struct {
	res   []byte // the reservation, len = limit
	pages *atomic.Uint64
}

// newMemory maps a fresh copy-on-write view of the image under limit bytes.
func (b *imageBacking) newMemory(limit uint64, pages *atomic.Uint64) (*cowMemory, error) {
	if limit < b.size {
		return nil, fmt.Errorf("image of %d bytes is over the memory limit of %d", b.size, limit)
	}
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
	return &cowMemory{res: res, pages: pages}, nil
}

// Reallocate implements experimental.LinearMemory: within the reservation, at the same address.
func (c *cowMemory) Reallocate(size uint64) []byte {
	if c.res == nil || size > uint64(len(c.res)) {
		return nil
	}
	c.pages.Store(size / 65536)
	return c.res[:size:size]
}

// Free implements experimental.LinearMemory.
func (c *cowMemory) Free() {
	if c.res != nil {
		_ = unix.Munmap(c.res)
		c.res = nil
	}
}
