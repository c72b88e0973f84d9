// Package snapshot stores module state snapshots in the host's state directory.
//
// A snapshot file is a header followed by the state bytes:
//
//	magic   "WPSNAP\x00\x01" (8 bytes: name and format version 1)
//	u32     length of the module name, then the name (at most 253 bytes)
//	[32]    sha256 of the wasm module that wrote the state
//	[32]    sha256 of the state bytes
//	u64     length of the state bytes
//	state bytes (exactly that many; nothing may follow)
//
// All integers are little-endian. Files are written atomically (temporary file, fsync, rename,
// fsync of the directory), so a crash leaves either the old snapshot or the new one. Decode
// refuses anything that does not check out with an error wrapping ErrCorrupt: a corrupt state is
// never fed to a guest.
package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/wasmpod/wasmpod/internal/regfile"
)

// Magic opens every snapshot file.
const Magic = "WPSNAP\x00\x01"

// MaxNameLen bounds the module name stored in a header.
const MaxNameLen = 253

// MaxStateBytes bounds the state a snapshot may hold (the runtime's output limit is far below).
const MaxStateBytes = 1 << 30

const fixedHeader = len(Magic) + 4 + 32 + 32 + 8

var (
	// ErrCorrupt: the snapshot file is damaged or is not a snapshot.
	ErrCorrupt = errors.New("corrupt snapshot")
	// ErrMismatch: the snapshot is intact but belongs to another module.
	ErrMismatch = errors.New("snapshot belongs to another module")
)

// Snapshot is a decoded snapshot.
type Snapshot struct {
	Module string
	// WasmSHA256 is the hex sha256 of the module version that wrote the state.
	WasmSHA256 string
	State      []byte
}

// Encode returns the file form of s. wasmSHA256 must be 64 hex digits or empty.
func Encode(s Snapshot) ([]byte, error) {
	if len(s.Module) == 0 || len(s.Module) > MaxNameLen {
		return nil, fmt.Errorf("snapshot: module name must be 1..%d bytes, got %d", MaxNameLen, len(s.Module))
	}
	var wasmSum [32]byte
	if s.WasmSHA256 != "" {
		b, err := hex.DecodeString(s.WasmSHA256)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("snapshot: wasm sha256 %q is not 64 hex digits", s.WasmSHA256)
		}
		copy(wasmSum[:], b)
	}
	out := make([]byte, 0, fixedHeader+len(s.Module)+len(s.State))
	out = append(out, Magic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(s.Module)))
	out = append(out, s.Module...)
	out = append(out, wasmSum[:]...)
	sum := sha256.Sum256(s.State)
	out = append(out, sum[:]...)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(s.State)))
	out = append(out, s.State...)
	return out, nil
}

// Decode parses a snapshot file. Every failure wraps ErrCorrupt and says what was wrong.
func Decode(b []byte) (Snapshot, error) {
	var s Snapshot
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return s, fmt.Errorf("%w: bad magic (not a wasmpod snapshot, or an unknown format version)", ErrCorrupt)
	}
	b = b[len(Magic):]
	if len(b) < 4 {
		return s, fmt.Errorf("%w: truncated header", ErrCorrupt)
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if n == 0 || n > MaxNameLen || uint64(len(b)) < uint64(n)+32+32+8 {
		return s, fmt.Errorf("%w: bad module name length %d or truncated header", ErrCorrupt, n)
	}
	s.Module = string(b[:n])
	b = b[n:]
	if w := b[:32]; !bytes.Equal(w, make([]byte, 32)) {
		s.WasmSHA256 = hex.EncodeToString(w)
	}
	var want [32]byte
	copy(want[:], b[32:64])
	size := binary.LittleEndian.Uint64(b[64:72])
	b = b[72:]
	if size > MaxStateBytes || size != uint64(len(b)) {
		return Snapshot{}, fmt.Errorf("%w: header says %d state bytes, file holds %d", ErrCorrupt, size, len(b))
	}
	if got := sha256.Sum256(b); got != want {
		return Snapshot{}, fmt.Errorf("%w: state sha256 is %x, header says %x", ErrCorrupt, got, want)
	}
	s.State = b
	return s, nil
}

// Store keeps one snapshot per module in a directory.
type Store struct {
	dir string
}

// NewStore returns a store in dir, creating it (0700) if needed.
func NewStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: state dir: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Path returns the file a module's snapshot is kept in.
func (st *Store) Path(module string) string { return filepath.Join(st.dir, module+".snap") }

// Save writes the module's snapshot atomically.
func (st *Store) Save(s Snapshot) error {
	b, err := Encode(s)
	if err != nil {
		return err
	}
	return WriteFileAtomic(st.Path(s.Module), b)
}

// Load reads the module's snapshot. No file: (nil, nil). A damaged file or one written for
// another module is refused with an error wrapping ErrCorrupt or ErrMismatch naming the file.
func (st *Store) Load(module string) (*Snapshot, error) {
	p := st.Path(module)
	b, err := readBounded(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, ErrCorrupt) {
		return nil, fmt.Errorf("snapshot %s refused: %w", p, err)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	s, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s refused: %w", p, err)
	}
	if s.Module != module {
		return nil, fmt.Errorf("snapshot %s refused: %w: written for %q, not %q", p, ErrMismatch, s.Module, module)
	}
	return &s, nil
}

// maxFileBytes is the largest snapshot file Decode could accept.
const maxFileBytes = fixedHeader + MaxNameLen + MaxStateBytes

// readBounded reads a snapshot file: a regular file (through symlinks) of at most maxFileBytes.
// Anything else wraps ErrCorrupt, without reading it: a FIFO would block the open and the read,
// a device (/dev/zero) would be read until memory ran out (internal/regfile).
func readBounded(path string) ([]byte, error) {
	b, err := regfile.Read(path, int64(maxFileBytes))
	if errors.Is(err, regfile.ErrNotRegular) || errors.Is(err, regfile.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return b, err
}

// WriteFileAtomic writes b to path through a temporary file in the same directory, fsyncs it,
// renames it into place and fsyncs the directory.
func WriteFileAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("snapshot: write: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("snapshot: fsync: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("snapshot: close: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("snapshot: rename: %w", err)
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
