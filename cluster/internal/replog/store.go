package replog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"

	"github.com/wasmpod/wasmpod/cluster/internal/fsync"
)

// The files of a node's Raft state under Config.DataDir.
const (
	// walDir holds the log and the stable keys (term, vote) since the append-only store.
	walDir = "wal"
	// boltFile is where nodes before it kept them (raft-boltdb); openStore moves it into walDir.
	boltFile = "raft.db"
	// migrateBatch bounds the bytes of one append while an old log is copied.
	migrateBatch = 8 << 20
)

// stableKeys are the keys hashicorp/raft keeps in its stable store: the only state besides the
// log that a node must not lose (forgetting a vote could let it vote twice in one term).
var (
	stableUintKeys = []string{"CurrentTerm", "LastVoteTerm"}
	stableKeys     = []string{"LastVoteCand"}
)

// openStore opens the node's Raft log and stable store in dir: an append-only segment log
// (raft-wal: one fsync per appended batch, where raft-boltdb wrote a B+tree transaction with two).
// A dir that still holds an old node's raft-boltdb file is moved over first, so an upgraded node
// keeps its log, term and vote (see migrateBolt).
func openStore(dir string, logger hclog.Logger) (*walStore, error) {
	wd := filepath.Join(dir, walDir)
	old := filepath.Join(dir, boltFile)
	switch _, err := os.Stat(wd); {
	case err == nil:
		// A migration that stopped after its rename left the old file behind: the log
		// in wd is complete, the old one is stale.
		if err := removeSynced(old); err != nil {
			return nil, fmt.Errorf("remove migrated %s: %w", boltFile, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		switch _, err := os.Stat(old); {
		case err == nil:
			if err := migrateBolt(dir, logger); err != nil {
				return nil, fmt.Errorf("move %s into the append-only log: %w", old, err)
			}
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(wd, 0o700); err != nil {
				return nil, err
			}
		default:
			// Not knowing whether an old log is there must not start an empty one.
			return nil, err
		}
	default:
		return nil, err
	}
	return openWAL(wd, logger)
}

// walStore is an open raft-wal log with the bbolt file of its stable keys and segment list,
// which WAL.Close leaves open (and locked): Close closes both.
type walStore struct {
	*raftwal.WAL
	meta *metadb.BoltMetaDB
}

// segmentSize is the size of the log's segment files; 0 is raft-wal's 64 MiB (preallocated, so
// an append seldom changes the file's size). A test lowers it to make old entries leave the
// tail segment, the only place where raft-wal still serves entries a compaction removed.
var segmentSize = 0

func openWAL(dir string, logger hclog.Logger) (*walStore, error) {
	meta := &metadb.BoltMetaDB{}
	w, err := raftwal.Open(dir, raftwal.WithLogger(logger.Named("wal")), raftwal.WithMetaStore(meta),
		raftwal.WithSegmentSize(segmentSize))
	if err != nil {
		meta.Close()
		return nil, err
	}
	return &walStore{WAL: w, meta: meta}, nil
}

// Close closes the log, then its metadata file; once is enough, more is harmless.
func (s *walStore) Close() error {
	err := s.WAL.Close()
	if e := s.meta.Close(); err == nil {
		err = e
	}
	return err
}

// migrateBolt copies the log and stable keys of dir's raft-boltdb file into a new append-only
// log, then puts that log in place and removes the old file. It writes into a scratch directory
// renamed into place only when complete, so a node stopped at any point finds either the old
// file alone (and starts over) or the complete new log.
func migrateBolt(dir string, logger hclog.Logger) (err error) {
	tmp := filepath.Join(dir, walDir+".migrating")
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	// The timeout: an old node still running on the same dir holds the file's lock.
	src, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, boltFile),
		BoltOptions: &bbolt.Options{Timeout: 10 * time.Second}})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openWAL(tmp, logger)
	if err != nil {
		return err
	}
	n, err := copyLog(dst, src)
	if err == nil {
		err = copyStable(dst, src)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, walDir)); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	src.Close()
	if err := removeSynced(filepath.Join(dir, boltFile)); err != nil {
		return err
	}
	logger.Info("moved the raft log to the append-only store", "dir", dir, "entries", n)
	return nil
}

// copyLog appends every entry of src to the empty dst, in batches of about migrateBatch bytes.
func copyLog(dst, src raft.LogStore) (int, error) {
	first, err := src.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := src.LastIndex()
	if err != nil {
		return 0, err
	}
	if last == 0 {
		return 0, nil
	}
	var (
		batch []*raft.Log
		bytes int
	)
	for i := first; i <= last; i++ {
		e := new(raft.Log)
		if err := src.GetLog(i, e); err != nil {
			return 0, fmt.Errorf("read entry %d of [%d, %d]: %w", i, first, last, err)
		}
		batch = append(batch, e)
		bytes += len(e.Data) + len(e.Extensions)
		if bytes >= migrateBatch || i == last {
			if err := dst.StoreLogs(batch); err != nil {
				return 0, fmt.Errorf("append entries up to %d: %w", i, err)
			}
			batch, bytes = batch[:0], 0
		}
	}
	return int(last - first + 1), nil
}

// copyStable copies raft's stable keys that src holds; a node that never voted has no vote.
func copyStable(dst, src raft.StableStore) error {
	for _, k := range stableUintKeys {
		v, err := src.GetUint64([]byte(k))
		if errors.Is(err, raftboltdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", k, err)
		}
		if err := dst.SetUint64([]byte(k), v); err != nil {
			return fmt.Errorf("write %s: %w", k, err)
		}
	}
	for _, k := range stableKeys {
		v, err := src.Get([]byte(k))
		if errors.Is(err, raftboltdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", k, err)
		}
		if err := dst.Set([]byte(k), v); err != nil {
			return fmt.Errorf("write %s: %w", k, err)
		}
	}
	return nil
}

// removeSynced removes path if it exists and makes the removal durable.
func removeSynced(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes dir's entries durable.
var syncDir = fsync.Path
