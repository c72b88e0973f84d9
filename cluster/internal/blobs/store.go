package blobs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/fsync"
)

// DefaultMaxSize is the largest blob a store accepts when Open is given no limit (1 GiB).
const DefaultMaxSize int64 = 1 << 30

// Sentinel errors; test for them with errors.Is.
var (
	// ErrNotFound: the blob is not in the store (local or, for Fetch, the peer's).
	ErrNotFound = errors.New("blobs: not found")
	// ErrCorrupt: content does not hash to the sha it was supposed to have.
	ErrCorrupt = errors.New("blobs: content does not match its sha256")
	// ErrTooLarge: content is longer than the store's maximum blob size.
	ErrTooLarge = errors.New("blobs: too large")
	// ErrInvalid: a malformed sha string or request.
	ErrInvalid = errors.New("blobs: invalid")
	// ErrProtocol: the peer sent something that is not a valid reply. The connection is
	// unusable afterwards.
	ErrProtocol = errors.New("blobs: protocol error")
)

const (
	tmpDirName = "tmp"
	blobMode   = 0o644
	dirMode    = 0o755
	copyBuf    = 256 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}

// Store is a content-addressed file store in one directory. It is safe for concurrent use.
// A directory must be used by one Store (one process) at a time: Open clears its temp files.
type Store struct {
	dir     string
	tmp     string
	maxSize int64

	moved atomic.Uint64 // names the files StageMove moves into tmp (emptied at Open)

	gmu   sync.Mutex   // guards the group commit:
	queue []*commitReq // commits waiting for the next batch
	busy  bool         // a batch is being committed

	fmu        sync.Mutex // serialises Flush
	pmu        sync.Mutex // guards the pending blobs (pending.go):
	pending    map[string]*pendingBlob
	pendingMem int64 // bytes of pending blobs held in memory

	syncMu sync.Mutex
	syncFD *os.File // the store's directory, for syncfs (Linux; opened with the first pending blob)
	closed bool
}

// Close releases what the store holds open. It does not flush pending blobs (see Flush). The
// store stays usable for everything but pending blobs, which later Flushes sync file by file.
// Idempotent.
func (s *Store) Close() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.closed = true
	if s.syncFD == nil {
		return nil
	}
	err := s.syncFD.Close()
	s.syncFD = nil
	return err
}

// Open opens the store in dir, creating it (and its fan-out directories) if needed, and
// removes temporary files left behind by a crash. maxSize bounds a blob's size in bytes;
// maxSize <= 0 means DefaultMaxSize.
func Open(dir string, maxSize int64) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("blobs: open: empty directory: %w", ErrInvalid)
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blobs: open %s: %w", dir, err)
	}
	s := &Store{dir: abs, tmp: filepath.Join(abs, tmpDirName), maxSize: maxSize}
	if err := os.MkdirAll(abs, dirMode); err != nil {
		return nil, fmt.Errorf("blobs: open: %w", err)
	}
	// Anything in tmp is a Put that never completed: it was never acknowledged.
	if err := os.RemoveAll(s.tmp); err != nil {
		return nil, fmt.Errorf("blobs: open: removing stale temp files: %w", err)
	}
	if err := os.Mkdir(s.tmp, dirMode); err != nil {
		return nil, fmt.Errorf("blobs: open: %w", err)
	}
	// Create every fan-out directory now, so that a Put only ever has to fsync the one
	// directory its blob is renamed into.
	for i := range 256 {
		if err := os.Mkdir(filepath.Join(abs, fmt.Sprintf("%02x", i)), dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("blobs: open: %w", err)
		}
	}
	if err := syncDir(abs); err != nil {
		return nil, fmt.Errorf("blobs: open: %w", err)
	}
	return s, nil
}

// Dir returns the store's (absolute) directory.
func (s *Store) Dir() string { return s.dir }

// MaxSize returns the largest blob size the store accepts.
func (s *Store) MaxSize() int64 { return s.maxSize }

// ValidSHA reports (ErrInvalid) whether sha is not 64 lowercase hex digits.
func ValidSHA(sha string) error {
	if len(sha) != 2*sha256.Size {
		return fmt.Errorf("blobs: sha %q: want %d hex digits: %w", truncate(sha, 80), 2*sha256.Size, ErrInvalid)
	}
	for i := 0; i < len(sha); i++ {
		c := sha[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("blobs: sha %q: not lowercase hex: %w", sha, ErrInvalid)
		}
	}
	return nil
}

// path is a valid sha's address.
func (s *Store) path(sha string) string { return filepath.Join(s.dir, sha[:2], sha) }

// Put stores r's content (read to EOF) and returns its hex sha256 and size. The content is
// streamed to a temporary file, hashed, fsynced and renamed to its address (dropped if the
// blob is already present), and the directory is fsynced before Put returns. Content longer
// than the store's maximum fails with ErrTooLarge; on any error nothing is stored.
//
// Concurrent Puts (and Commits) share their fsyncs: see Commit.
func (s *Store) Put(r io.Reader) (sha string, size int64, err error) {
	return s.put("", r)
}

// PutExpect is Put for content that must hash to sha: it fails with ErrCorrupt, storing
// nothing, when it does not, and with ErrInvalid when sha is malformed.
func (s *Store) PutExpect(sha string, r io.Reader) (size int64, err error) {
	if err := ValidSHA(sha); err != nil {
		return 0, err
	}
	_, size, err = s.put(sha, r)
	return size, err
}

// Import copies the regular file at path into the store.
func (s *Store) Import(path string) (sha string, size int64, err error) {
	p, err := s.StageFile(path)
	if err != nil {
		return "", 0, err
	}
	if err := s.Commit(p); err != nil {
		return "", 0, err
	}
	return p.SHA256, p.Size, nil
}

// Staged is content written to the store's temporary directory and hashed, but neither
// durable nor at its address yet: Commit stores it, Discard drops it. A crash before Commit
// returns loses it (Open removes temporary files).
type Staged struct {
	SHA256 string
	Size   int64
	tmp    string
	// content is the file's bytes when StageMove read them in one piece to hash them (at
	// most keptContent), so that Pend need not read the file again; stat is the file's stat
	// from before that read, for Pend to check that the file is still the one hashed.
	content []byte
	stat    os.FileInfo
}

// keptContent is the largest staged file whose bytes StageMove keeps for Pend: a task's small
// output, which goes in its completion's log entry.
const keptContent = 64 << 10

// StageFile stages a copy of the regular file at path (see Staged). It does not fsync:
// Commit does, for every blob committed together.
func (s *Store) StageFile(path string) (Staged, error) {
	f, err := os.Open(path)
	if err != nil {
		return Staged{}, fmt.Errorf("blobs: import: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err := s.importable(path, st, err); err != nil {
		return Staged{}, err
	}
	return s.stage("", f)
}

// importable checks the result of a stat of the file at path that StageFile or StageMove is
// to import: a regular file within the size limit.
func (s *Store) importable(path string, st os.FileInfo, err error) error {
	if err != nil {
		return fmt.Errorf("blobs: import: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("blobs: import %s: not a regular file: %w", path, ErrInvalid)
	}
	if st.Size() > s.maxSize {
		return fmt.Errorf("blobs: import %s: %d bytes, limit %d: %w", path, st.Size(), s.maxSize, ErrTooLarge)
	}
	return nil
}

// StageMove stages the regular file at path by moving it into the store's temporary directory
// instead of copying it (see Staged): no new file is written, and nothing is left at path. It
// is for a file nothing writes to any more, such as a finished task's output. A file with other
// names (hard links: the store's blob would be a file that can change under another name) or
// on another file system is copied, as StageFile does, and left at path; a symbolic link is
// refused. It does not fsync: Commit does.
//
// What is renamed is whatever has the name when the rename happens: a file swapped for another
// one, a symbolic link or a file with another name after the check (by whatever can still
// write to path's directory) is removed again once moved, and refused (ErrInvalid). Such a
// swap cannot make the store take a file it would not have taken at the check.
func (s *Store) StageMove(path string) (Staged, error) {
	st, err := os.Lstat(path) // a symbolic link is not a regular file: refused
	if err := s.importable(path, st, err); err != nil {
		return Staged{}, err
	}
	if linkCount(st) != 1 {
		return s.StageFile(path)
	}
	tmp := filepath.Join(s.tmp, fmt.Sprintf("mv-%d", s.moved.Add(1)))
	if err := renameFile(path, tmp); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) && errors.Is(le.Err, syscall.EXDEV) {
			return s.StageFile(path)
		}
		return Staged{}, fmt.Errorf("blobs: import: %w", err)
	}
	if err := sameMoved(path, st, tmp); err != nil {
		os.Remove(tmp)
		return Staged{}, err
	}
	p, err := s.hashStaged(tmp)
	if err != nil {
		os.Remove(tmp)
		return Staged{}, err
	}
	return p, nil
}

// renameFile is os.Rename; a test swaps it to change a file between StageMove's check and its
// rename.
var renameFile = os.Rename

// sameMoved checks that tmp, where StageMove has just moved the file at path, is the file
// checked before the move (checked, from Lstat): the same file, still a regular file, and with
// no other name.
func sameMoved(path string, checked os.FileInfo, tmp string) error {
	st, err := os.Lstat(tmp)
	switch {
	case err != nil:
		return fmt.Errorf("blobs: import: %w", err)
	case !os.SameFile(checked, st):
		return fmt.Errorf("blobs: import %s: replaced by another file while it was moved: %w", path, ErrInvalid)
	case !st.Mode().IsRegular():
		return fmt.Errorf("blobs: import %s: no longer a regular file once moved: %w", path, ErrInvalid)
	case linkCount(st) != 1:
		return fmt.Errorf("blobs: import %s: has %d names once moved: %w", path, linkCount(st), ErrInvalid)
	}
	return nil
}

// hashStaged hashes a file moved into tmp and gives it the blobs' mode.
func (s *Store) hashStaged(tmp string) (Staged, error) {
	f, err := openRead(tmp)
	if err != nil {
		return Staged{}, fmt.Errorf("blobs: import: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return Staged{}, fmt.Errorf("blobs: import: %w", err)
	case !st.Mode().IsRegular():
		return Staged{}, fmt.Errorf("blobs: import: not a regular file: %w", ErrInvalid)
	}
	if size := st.Size(); size <= min(keptContent, s.maxSize) {
		// Small: read whole (one byte more tells a file that grew since its stat), hashed
		// and kept.
		b := make([]byte, size+1)
		n, err := io.ReadFull(f, b)
		switch {
		case err == nil: // grew past its stat: hashed as a large one below
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return Staged{}, fmt.Errorf("blobs: import: %w", err)
			}
		case err != io.ErrUnexpectedEOF && err != io.EOF:
			return Staged{}, fmt.Errorf("blobs: import: %w", err)
		default:
			if err := toBlobMode(f, st); err != nil {
				return Staged{}, fmt.Errorf("blobs: import: %w", err)
			}
			sum := sha256.Sum256(b[:n])
			return Staged{SHA256: hex.EncodeToString(sum[:]), Size: int64(n), tmp: tmp, content: b[:n:n], stat: st}, nil
		}
	}
	limit := s.maxSize
	if limit < math.MaxInt64 {
		limit++ // one byte past the maximum: the file may have grown since it was moved
	}
	h := sha256.New()
	bp := bufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(h, io.LimitReader(f, limit), *bp)
	bufPool.Put(bp)
	switch {
	case err != nil:
		return Staged{}, fmt.Errorf("blobs: import: %w", err)
	case n > s.maxSize:
		return Staged{}, fmt.Errorf("blobs: import: more than %d bytes: %w", s.maxSize, ErrTooLarge)
	}
	if err := toBlobMode(f, st); err != nil {
		return Staged{}, fmt.Errorf("blobs: import: %w", err)
	}
	return Staged{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n, tmp: tmp}, nil
}

// toBlobMode gives the file f, whose stat is st, the blobs' mode, unless it has it already (a
// task's output usually does: one system call less per task).
func toBlobMode(f *os.File, st os.FileInfo) error {
	if st.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) == blobMode {
		return nil
	}
	return f.Chmod(blobMode)
}

// Discard removes a staged blob that will not be committed. Idempotent.
func (s *Store) Discard(p Staged) {
	if p.tmp != "" {
		os.Remove(p.tmp) // no-op once committed (renamed or removed)
	}
}

func (s *Store) put(want string, r io.Reader) (sha string, size int64, err error) {
	p, err := s.stage(want, r)
	if err != nil {
		return "", 0, err
	}
	if err := s.Commit(p); err != nil {
		return "", 0, err
	}
	return p.SHA256, p.Size, nil
}

// stage streams r to a temporary file, hashing it; nothing is fsynced.
func (s *Store) stage(want string, r io.Reader) (p Staged, err error) {
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return Staged{}, fmt.Errorf("blobs: put: %w", err)
	}
	tmpName := f.Name()
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("blobs: put: %w", cerr)
		}
		if err != nil {
			os.Remove(tmpName)
		}
	}()

	limit := s.maxSize
	if limit < math.MaxInt64 {
		limit++ // read one byte past the maximum to detect oversized content
	}
	h := sha256.New()
	bp := bufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(f, h), io.LimitReader(r, limit), *bp)
	bufPool.Put(bp)
	if err != nil {
		return Staged{}, fmt.Errorf("blobs: put: %w", err)
	}
	if n > s.maxSize {
		return Staged{}, fmt.Errorf("blobs: put: more than %d bytes: %w", s.maxSize, ErrTooLarge)
	}
	sha := hex.EncodeToString(h.Sum(nil))
	if want != "" && sha != want {
		return Staged{}, fmt.Errorf("blobs: put: content hashes to %s, want %s: %w", sha, want, ErrCorrupt)
	}
	if err := f.Chmod(blobMode); err != nil {
		return Staged{}, fmt.Errorf("blobs: put: %w", err)
	}
	return Staged{SHA256: sha, Size: n, tmp: tmpName}, nil
}

// commitReq is one caller's part of a group commit. lead is closed when the caller is to
// run the next batch itself; done carries its result.
type commitReq struct {
	ps   []Staged
	lead chan struct{}
	done chan error
}

// Commit makes staged blobs durable at their addresses: each file is fsynced, then renamed
// to its address (or dropped when the blob is already there), then each address directory is
// fsynced, all before Commit returns; once it returns nil the blobs survive a crash. On an
// error some of them may be stored and the rest are removed.
//
// Concurrent calls are committed together (group commit): one caller fsyncs the files of
// every call waiting, concurrently, and the directories once each, then hands the next batch
// to one of the calls that arrived meanwhile. No call waits for more than the batch in
// progress and its own.
func (s *Store) Commit(ps ...Staged) error {
	req := &commitReq{ps: ps, lead: make(chan struct{}), done: make(chan error, 1)}
	s.gmu.Lock()
	s.queue = append(s.queue, req)
	busy := s.busy
	s.busy = true
	s.gmu.Unlock()
	if busy {
		select {
		case err := <-req.done:
			return err
		case <-req.lead:
		}
	}
	s.gmu.Lock()
	batch := s.queue
	s.queue = nil
	s.gmu.Unlock()
	s.commitBatch(batch)
	s.gmu.Lock()
	if len(s.queue) > 0 {
		close(s.queue[0].lead) // it runs the next batch; busy stays set
	} else {
		s.busy = false
	}
	s.gmu.Unlock()
	return <-req.done
}

// commitBatch runs one group commit and answers every request in it.
func (s *Store) commitBatch(batch []*commitReq) {
	var all []*Staged
	for _, r := range batch {
		for i := range r.ps {
			all = append(all, &r.ps[i])
		}
	}
	errs := make([]error, len(all))
	// 1. The content of every file that is not already stored, concurrently (so that the
	// file system can join them in one journal commit).
	present := make([]bool, len(all))
	parallel(len(all), func(i int) {
		p := all[i]
		if _, err := os.Lstat(s.path(p.SHA256)); err == nil && s.touch(p.SHA256) {
			// Already present (blobs are immutable and complete once at their address); its
			// time is now, so that garbage collection gives it a full grace period again.
			present[i] = true
			return
		}
		errs[i] = syncFile(p.tmp)
	})
	// 2. Into place, and each directory once, after the content is durable.
	dirs := map[string][]int{}
	renamed := make([]bool, len(all))
	for i, p := range all {
		if errs[i] == nil && !present[i] {
			if err := os.Rename(p.tmp, s.path(p.SHA256)); err != nil {
				errs[i] = err
			} else {
				renamed[i] = true
			}
		}
		if errs[i] == nil {
			// Also when deduplicated: a concurrent Put may have renamed the blob in without
			// having fsynced the directory yet.
			d := filepath.Dir(s.path(p.SHA256))
			dirs[d] = append(dirs[d], i)
		}
	}
	order := make([]string, 0, len(dirs))
	for d := range dirs {
		order = append(order, d)
	}
	parallel(len(order), func(k int) {
		if err := syncDir(order[k]); err != nil {
			for _, i := range dirs[order[k]] {
				errs[i] = err
			}
		}
	})
	i := 0
	for _, r := range batch {
		var first error
		for range r.ps {
			if !renamed[i] {
				os.Remove(all[i].tmp) // a duplicate or a failure
			}
			if errs[i] != nil && first == nil {
				first = fmt.Errorf("blobs: put: %w", errs[i])
			}
			i++
		}
		r.done <- first
	}
}

// parallel runs f(0..n-1) on up to 8 goroutines and waits for them.
func parallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(n, 8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// syncFile and syncDir fsync a file's content and a directory (making renames into it
// durable). They are variables so that a test can check the order of what is made durable.
var (
	syncFile = fsync.Path
	syncDir  = fsync.Path
)

// Has reports whether the blob sha is in the store (false for a malformed sha).
func (s *Store) Has(sha string) bool {
	_, err := s.Size(sha)
	return err == nil
}

// Size returns the size of the stored (or pending) blob sha (ErrNotFound, ErrInvalid).
func (s *Store) Size(sha string) (int64, error) {
	if err := ValidSHA(sha); err != nil {
		return 0, err
	}
	if n, ok := s.pendingSize(sha); ok {
		return n, nil
	}
	st, err := os.Stat(s.path(sha))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("blobs: %s: %w", sha, ErrNotFound)
		}
		return 0, fmt.Errorf("blobs: %w", err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("blobs: %s: not a regular file: %w", sha, ErrNotFound)
	}
	return st.Size(), nil
}

// Path returns the path of the stored blob sha (ErrNotFound, ErrInvalid). Callers may read
// or hard-link it but must not modify it. A pending blob is flushed first (see Flush).
func (s *Store) Path(sha string) (string, error) {
	if err := s.flushIfPending(sha); err != nil {
		return "", err
	}
	if _, err := s.Size(sha); err != nil {
		return "", err
	}
	return s.path(sha), nil
}

// Open opens the stored blob sha for reading and returns it with its size (ErrNotFound,
// ErrInvalid). The caller closes the file. A pending blob is flushed first (see Flush).
func (s *Store) Open(sha string) (*os.File, int64, error) {
	if err := ValidSHA(sha); err != nil {
		return nil, 0, err
	}
	if err := s.flushIfPending(sha); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(s.path(sha))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("blobs: %s: %w", sha, ErrNotFound)
		}
		return nil, 0, fmt.Errorf("blobs: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("blobs: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("blobs: %s: not a regular file: %w", sha, ErrNotFound)
	}
	return f, st.Size(), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Remove deletes a blob (no error if it is already gone). A reader that has the file open
// keeps reading it; a hard link made from Path keeps its content.
func (s *Store) Remove(sha string) error {
	if err := ValidSHA(sha); err != nil {
		return err
	}
	if err := os.Remove(s.path(sha)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blobs: remove %s: %w", sha, err)
	}
	return nil
}

// Walk calls fn for every stored blob with its modification time (when it was stored), in no
// particular order. fn's error stops the walk and is returned.
func (s *Store) Walk(fn func(sha string, stored time.Time) error) error {
	for i := range 256 {
		dir := filepath.Join(s.dir, fmt.Sprintf("%02x", i))
		ents, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("blobs: walk: %w", err)
		}
		for _, e := range ents {
			if ValidSHA(e.Name()) != nil || !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			if err := fn(e.Name(), info.ModTime()); err != nil {
				return err
			}
		}
	}
	return nil
}

// touch sets a stored blob's time to now; false if it is gone.
func (s *Store) touch(sha string) bool {
	now := time.Now()
	return os.Chtimes(s.path(sha), now, now) == nil
}

// RemoveIfOlder deletes a blob stored (or touched) before cutoff; it reports whether it did.
func (s *Store) RemoveIfOlder(sha string, cutoff time.Time) (bool, error) {
	if err := ValidSHA(sha); err != nil {
		return false, err
	}
	st, err := os.Lstat(s.path(sha))
	if err != nil || !st.ModTime().Before(cutoff) {
		return false, nil
	}
	return true, s.Remove(sha)
}
