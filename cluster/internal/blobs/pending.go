package blobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// A pending blob is one whose durability is somebody else's: its content is held in a log
// that is itself on disk (the work queue's Raft log carries small outputs in the completions
// that name them), and the store keeps it at hand, in memory or in an unsynced temporary file,
// until Flush writes it to its address the way Commit does, but for many blobs at once. The
// owner of that log must call Flush before it lets the log forget the content (before a
// snapshot lets the log be truncated); after a crash, pending blobs are gone (Open empties the
// temporary directory) and the owner puts them back by replaying its log.
//
// A pending blob is never at its address before its content is durable, so an address only
// ever holds complete content, as for every other way into the store. Has and Size see pending
// blobs; Path and Open flush them first, so every path handed out is an address.
type pendingBlob struct {
	size    int64
	content []byte // nil once written to tmp
	tmp     string // "" until written
}

// AddPending holds content, which must hash to sha, as a pending blob (see Pending). It does
// nothing when the blob is already stored or pending. It fails with ErrInvalid, ErrTooLarge or
// ErrCorrupt when sha or content is not acceptable; it writes nothing to disk.
func (s *Store) AddPending(sha string, content []byte) error {
	if err := ValidSHA(sha); err != nil {
		return err
	}
	if int64(len(content)) > s.maxSize {
		return fmt.Errorf("blobs: pending %s: %d bytes, limit %d: %w", sha[:12], len(content), s.maxSize, ErrTooLarge)
	}
	if sum := sha256.Sum256(content); hex.EncodeToString(sum[:]) != sha {
		return fmt.Errorf("blobs: pending %s: %w", sha[:12], ErrCorrupt)
	}
	if s.isPending(sha) {
		return nil
	}
	if _, err := os.Lstat(s.path(sha)); err == nil {
		return nil
	}
	if err := s.openSyncFD(); err != nil {
		return fmt.Errorf("blobs: pending %s: %w", sha[:12], err)
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if _, ok := s.pending[sha]; !ok {
		s.addPendingLocked(sha, &pendingBlob{size: int64(len(content)), content: bytes.Clone(content)})
	}
	return nil
}

// Pend turns a staged blob of at most max bytes into a pending one (see Pending) and returns
// its content, for the caller to put in its log. ok is false, and nothing changes, when the
// blob is larger than max: commit it instead. The staged file stays where it is until Flush.
// The content is what StageMove kept of a small file (the file checked to be the one it
// hashed, unwritten since), else the file read again and checked against its hash; a staged
// file that changed is refused (ErrCorrupt).
func (s *Store) Pend(p Staged, max int64) (content []byte, ok bool, err error) {
	if p.tmp == "" || p.Size > max {
		return nil, false, nil
	}
	if err := s.openSyncFD(); err != nil {
		return nil, false, fmt.Errorf("blobs: pend: %w", err)
	}
	if content = p.content; content != nil {
		// Kept when it was hashed: the file must still be that one, unwritten since (a write
		// changes its size or its modification time).
		st, err := os.Lstat(p.tmp)
		if err != nil {
			return nil, false, fmt.Errorf("blobs: pend: %w", err)
		}
		if !os.SameFile(st, p.stat) || st.Size() != p.Size || !st.ModTime().Equal(p.stat.ModTime()) {
			return nil, false, fmt.Errorf("blobs: pend %s: the staged file changed: %w", p.SHA256[:12], ErrCorrupt)
		}
	} else {
		f, err := openRead(p.tmp)
		if err != nil {
			return nil, false, fmt.Errorf("blobs: pend: %w", err)
		}
		content, err = io.ReadAll(io.LimitReader(f, p.Size+1))
		f.Close()
		if err != nil {
			return nil, false, fmt.Errorf("blobs: pend: %w", err)
		}
		// Hashed when it was staged; a file that changed since is refused, not published.
		if sum := sha256.Sum256(content); hex.EncodeToString(sum[:]) != p.SHA256 {
			return nil, false, fmt.Errorf("blobs: pend %s: the staged file changed: %w", p.SHA256[:12], ErrCorrupt)
		}
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if old, dup := s.pending[p.SHA256]; dup {
		// Already pending (an earlier task wrote the same bytes): keep one copy.
		if old.tmp == "" {
			old.tmp, old.content = p.tmp, nil
			s.pendingMem -= old.size
		} else {
			os.Remove(p.tmp)
		}
		return content, true, nil
	}
	s.addPendingLocked(p.SHA256, &pendingBlob{size: p.Size, tmp: p.tmp})
	return content, true, nil
}

func (s *Store) addPendingLocked(sha string, b *pendingBlob) {
	if s.pending == nil {
		s.pending = map[string]*pendingBlob{}
	}
	s.pending[sha] = b
	if b.content != nil {
		s.pendingMem += b.size
	}
}

// Pending returns how many blobs are pending and how many of their bytes are held in memory.
func (s *Store) Pending() (blobs int, memBytes int64) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return len(s.pending), s.pendingMem
}

func (s *Store) isPending(sha string) bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	_, ok := s.pending[sha]
	return ok
}

func (s *Store) pendingSize(sha string) (int64, bool) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	b, ok := s.pending[sha]
	if !ok {
		return 0, false
	}
	return b.size, true
}

// Flush makes every blob pending when it is called durable at its address: the content of
// each is written to a temporary file if it is not in one yet, the file system is synced,
// each is renamed to its address (dropped when the blob is stored already), and the file
// system is synced again, so two syncs whatever the number of blobs. Concurrent calls run one
// after the other; a blob added meanwhile may or may not be flushed by the one running. On an
// error the blobs not stored stay pending, and a later Flush tries them again.
func (s *Store) Flush() error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.pmu.Lock()
	batch := make(map[string]*pendingBlob, len(s.pending))
	for sha, b := range s.pending {
		batch[sha] = b
	}
	s.pmu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	var errs []error
	// 1. A file for every blob held in memory. b's fields change under pmu only (Pend may
	// give an in-memory blob a staged file meanwhile).
	for sha, b := range batch {
		s.pmu.Lock()
		content := b.content
		s.pmu.Unlock()
		if content == nil {
			continue
		}
		tmp, err := s.writeTemp(content)
		if err != nil {
			errs = append(errs, fmt.Errorf("blobs: flush %s: %w", sha[:12], err))
			delete(batch, sha)
			continue
		}
		s.pmu.Lock()
		if b.tmp == "" {
			b.tmp, b.content = tmp, nil
			s.pendingMem -= b.size
			tmp = ""
		}
		s.pmu.Unlock()
		if tmp != "" {
			os.Remove(tmp)
		}
	}
	if len(batch) == 0 {
		return errors.Join(errs...)
	}
	// 2. Their content durable before any of them is at its address.
	if err := syncAll(s, batch); err != nil {
		return errors.Join(append(errs, fmt.Errorf("blobs: flush: %w", err))...)
	}
	// 3. Into place.
	placed := map[string]*pendingBlob{}
	for sha, b := range batch {
		s.pmu.Lock()
		tmp := b.tmp
		s.pmu.Unlock()
		if _, err := os.Lstat(s.path(sha)); err == nil {
			os.Remove(tmp)
			s.touch(sha)
			placed[sha] = b
			continue
		}
		if err := os.Rename(tmp, s.path(sha)); err != nil {
			errs = append(errs, fmt.Errorf("blobs: flush %s: %w", sha[:12], err))
			continue
		}
		placed[sha] = b
	}
	// 4. The renames durable; then they are no longer pending.
	if err := syncAll(s, placed); err != nil {
		return errors.Join(append(errs, fmt.Errorf("blobs: flush: %w", err))...)
	}
	s.pmu.Lock()
	for sha, b := range placed {
		if s.pending[sha] == b {
			delete(s.pending, sha)
		}
	}
	s.pmu.Unlock()
	return errors.Join(errs...)
}

// writeTemp writes content to a new temporary file, unsynced.
func (s *Store) writeTemp(content []byte) (string, error) {
	f, err := os.CreateTemp(s.tmp, "pend-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Chmod(blobMode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// flushIfPending flushes when sha is pending, so that its address can be handed out.
func (s *Store) flushIfPending(sha string) error {
	if !s.isPending(sha) {
		return nil
	}
	return s.Flush()
}

// syncAll makes durable what the store wrote before the call: every pending blob's file (its
// content) or rename (its directory entry). On Linux it syncs the store's file system once
// (syncfs); elsewhere it fsyncs each file and directory. A variable so that a test can check
// what Flush makes durable, and when.
var syncAll = syncFS

// syncEach fsyncs each pending blob's temporary file, or, once at its address, its directory.
func syncEach(s *Store, batch map[string]*pendingBlob) error {
	dirs := map[string]bool{}
	for sha, b := range batch {
		if _, err := os.Lstat(b.tmp); err == nil {
			if err := syncFile(b.tmp); err != nil {
				return err
			}
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		dirs[filepath.Join(s.dir, sha[:2])] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}
