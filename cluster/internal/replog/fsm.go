package replog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/hashicorp/raft"
)

// Tags of the kinds releases before replog wrote, which the snapshot formats of those releases
// name: the lease table (whose entries are JSON objects, hence '{') and the work queue.
const (
	TagLeases byte = '{'
	TagQueue  byte = 'Q'
)

// Snapshot formats. WPS3 (this release): the magic, then one section per kind: its tag byte
// and its persisted state in chunks (a big-endian uint32 length, that many bytes; a zero
// length ends the section); a zero tag ends the snapshot. WPS2 (the release before): the
// magic, a flag byte (1: a queue follows), 3 zero bytes, the lease table's JSON length
// (uint64) and JSON, then the queue's state to the end. Older still: the bare lease JSON.
var (
	magicV3 = []byte("WPS3")
	magicV2 = []byte("WPS2")
)

const maxChunk = 1 << 20

// fsm dispatches committed entries to the kind their first byte names. Entries of a kind
// this node does not know (a newer release's) are ignored.
type fsm struct {
	kinds map[byte]*Kind
	// legacyVoters reports whether some voter runs a release that reads only WPS2.
	legacyVoters func() bool
	// stored holds the entries' store times for TimedMachines.
	stored *receipts
}

func (f *fsm) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		return nil
	}
	k := f.kinds[l.Data[0]]
	if k == nil {
		return nil
	}
	if tm, ok := k.Machine.(TimedMachine); ok {
		return tm.ApplyStored(l.Index, l.Data[1:], f.stored.stored(l.Index))
	}
	return k.Machine.Apply(l.Index, l.Data[1:])
}

// ApplyBatch makes fsm a raft.BatchingFSM: each run of consecutive commands of a kind whose
// machine is a BatchMachine (and not a TimedMachine) goes to its ApplyBatch at once, every
// other entry to Apply.
func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	for i := 0; i < len(logs); {
		bm, tag := f.batchable(logs[i])
		j := i + 1
		for bm != nil && j < len(logs) {
			if next, t := f.batchable(logs[j]); next == nil || t != tag {
				break
			}
			j++
		}
		if j-i == 1 {
			out[i] = f.Apply(logs[i])
			i = j
			continue
		}
		indexes, bodies := make([]uint64, 0, j-i), make([][]byte, 0, j-i)
		for _, l := range logs[i:j] {
			indexes, bodies = append(indexes, l.Index), append(bodies, l.Data[1:])
		}
		res := bm.ApplyBatch(indexes, bodies)
		if len(res) != len(bodies) {
			panic(fmt.Sprintf("replog: %s's ApplyBatch gave %d results for %d entries", f.kinds[tag].Name, len(res), len(bodies)))
		}
		copy(out[i:j], res)
		i = j
	}
	return out
}

// batchable returns the BatchMachine of l's kind and its tag, or nil if l is not a command
// of such a kind.
func (f *fsm) batchable(l *raft.Log) (BatchMachine, byte) {
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		return nil, 0
	}
	k := f.kinds[l.Data[0]]
	if k == nil {
		return nil, 0
	}
	if _, timed := k.Machine.(TimedMachine); timed {
		return nil, 0
	}
	bm, _ := k.Machine.(BatchMachine)
	return bm, l.Data[0]
}

type section struct {
	tag     byte
	persist func(io.Writer) error
	release func()
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	tags := make([]int, 0, len(f.kinds))
	for t := range f.kinds {
		tags = append(tags, int(t))
	}
	sort.Ints(tags)
	s := &snapshot{legacy: f.legacyVoters != nil && f.legacyVoters()}
	for _, t := range tags {
		p, r, err := f.kinds[byte(t)].Machine.Snapshot()
		if err != nil {
			s.Release()
			return nil, fmt.Errorf("snapshot of %s: %w", f.kinds[byte(t)].Name, err)
		}
		s.sections = append(s.sections, section{tag: byte(t), persist: p, release: r})
	}
	return s, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReader(rc)
	head, _ := br.Peek(4)
	seen := map[byte]bool{}
	restore := func(tag byte, r io.Reader) error {
		seen[tag] = true
		k := f.kinds[tag]
		if k == nil { // a newer release's kind: skip its state
			_, err := io.Copy(io.Discard, r)
			return err
		}
		if err := k.Machine.Restore(r); err != nil {
			return fmt.Errorf("restore of %s: %w", k.Name, err)
		}
		return nil
	}
	switch {
	case bytes.Equal(head, magicV3):
		_, _ = br.Discard(4)
		for {
			tag, err := br.ReadByte()
			if err != nil {
				return fmt.Errorf("snapshot: section tag: %w", err)
			}
			if tag == 0 {
				break
			}
			cr := &chunkReader{r: br}
			if err := restore(tag, cr); err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, cr); err != nil { // what the machine left
				return fmt.Errorf("snapshot: section %q: %w", tag, err)
			}
		}
	case bytes.Equal(head, magicV2):
		var hdr [16]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return fmt.Errorf("snapshot header: %w", err)
		}
		size := binary.BigEndian.Uint64(hdr[8:])
		if size > 1<<30 {
			return fmt.Errorf("snapshot: lease table of %d bytes", size)
		}
		js := make([]byte, size)
		if _, err := io.ReadFull(br, js); err != nil {
			return fmt.Errorf("snapshot leases: %w", err)
		}
		if err := restore(TagLeases, bytes.NewReader(js)); err != nil {
			return err
		}
		if hdr[4] == 1 {
			if err := restore(TagQueue, br); err != nil {
				return err
			}
		}
	default: // the oldest format: the lease table's JSON
		if err := restore(TagLeases, br); err != nil {
			return err
		}
	}
	for t, k := range f.kinds {
		if !seen[t] {
			if err := k.Machine.Restore(strings.NewReader("")); err != nil {
				return fmt.Errorf("restore of %s (absent from the snapshot): %w", k.Name, err)
			}
		}
	}
	return nil
}

type snapshot struct {
	sections []section
	// legacy: write WPS2 (leases and queue only), which voters of the release before read.
	legacy bool
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	var err error
	if s.legacy {
		err = s.persistV2(sink)
	} else {
		err = s.persistV3(sink)
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) persistV3(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.Write(magicV3); err != nil {
		return err
	}
	for _, sec := range s.sections {
		if err := bw.WriteByte(sec.tag); err != nil {
			return err
		}
		cw := &chunkWriter{w: bw}
		if err := sec.persist(cw); err != nil {
			return fmt.Errorf("snapshot section %q: %w", sec.tag, err)
		}
		if _, err := bw.Write([]byte{0, 0, 0, 0}); err != nil {
			return err
		}
	}
	if err := bw.WriteByte(0); err != nil {
		return err
	}
	return bw.Flush()
}

func (s *snapshot) persistV2(w io.Writer) error {
	var leases bytes.Buffer
	var queue func(io.Writer) error
	for _, sec := range s.sections {
		switch sec.tag {
		case TagLeases:
			if err := sec.persist(&leases); err != nil {
				return err
			}
		case TagQueue:
			queue = sec.persist
		}
	}
	flag := byte(0)
	if queue != nil {
		flag = 1
	}
	hdr := append(append([]byte(nil), magicV2...), flag, 0, 0, 0)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(leases.Len()))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	if _, err := w.Write(leases.Bytes()); err != nil {
		return err
	}
	if queue != nil {
		if err := queue(w); err != nil {
			return errors.Join(errors.New("snapshot: work queue"), err)
		}
	}
	return nil
}

func (s *snapshot) Release() {
	for _, sec := range s.sections {
		if sec.release != nil {
			sec.release()
		}
	}
}

// chunkWriter frames what a machine persists as chunks of at most maxChunk bytes.
type chunkWriter struct{ w io.Writer }

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		m := min(len(p), maxChunk)
		var h [4]byte
		binary.BigEndian.PutUint32(h[:], uint32(m))
		if _, err := c.w.Write(h[:]); err != nil {
			return n, err
		}
		if _, err := c.w.Write(p[:m]); err != nil {
			return n, err
		}
		n += m
		p = p[m:]
	}
	return n, nil
}

// chunkReader reads one section's chunks, returning io.EOF at its end.
type chunkReader struct {
	r    io.Reader
	left int
	done bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		var h [4]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			return 0, fmt.Errorf("snapshot chunk: %w", err)
		}
		n := binary.BigEndian.Uint32(h[:])
		if n == 0 {
			c.done = true
			return 0, io.EOF
		}
		if n > maxChunk {
			return 0, fmt.Errorf("snapshot chunk of %d bytes", n)
		}
		c.left = int(n)
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	if err == io.EOF && c.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// jsonValue is the unit of the legacy streams.
type jsonValue = json.RawMessage
