package queuestate

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// recordVersion is the first byte of every stored task record. A decoder
// refuses any other value, so a future format change is a new version with
// its own decoder rather than a silent misread.
const recordVersion byte = 1

// Limits the decoder enforces on top of "fits in the record".
const (
	maxPipelineLen = 256
	maxWorkerLen   = 256
	// An attempt error is cut to maxErrorLen bytes, and a task keeps at most maxErrors of
	// them (the first and the latest), so a record stays small however often it fails.
	maxErrorLen = 4096
	maxErrors   = 32
)

// Record layout, version 1 (all integers big-endian or varint):
//
//	version   byte (= 1)
//	state     byte (StateReady..StateDead)
//	id        uint64
//	attempts  uvarint
//	enqueued  varint  unix nanoseconds, 0 = zero time
//	ready     varint
//	leaseID   uvarint
//	leaseExp  varint
//	finished  varint
//	pipeline  uvarint length + bytes (1..256)
//	worker    uvarint length + bytes (0..256)
//	payload   uvarint length + bytes
//	result    uvarint length + bytes
//	nErrors   uvarint, then per error: attempt uvarint, at varint,
//	          message uvarint length + bytes
//
// Nothing may follow the last error.

func encodeTask(t *Task) []byte {
	n := 2 + 8 + 9*7 + 5*binary.MaxVarintLen64 +
		len(t.Pipeline) + len(t.Worker) + len(t.Payload) + len(t.Result)
	for _, e := range t.Errors {
		n += 3*binary.MaxVarintLen64 + len(e.Message)
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion, byte(t.State))
	b = binary.BigEndian.AppendUint64(b, uint64(t.ID))
	b = binary.AppendUvarint(b, uint64(t.Attempts))
	b = binary.AppendVarint(b, timeToNanos(t.EnqueuedAt))
	b = binary.AppendVarint(b, timeToNanos(t.ReadyAt))
	b = binary.AppendUvarint(b, t.LeaseID)
	b = binary.AppendVarint(b, timeToNanos(t.LeaseExpires))
	b = binary.AppendVarint(b, timeToNanos(t.FinishedAt))
	b = appendBytes(b, []byte(t.Pipeline))
	b = appendBytes(b, []byte(t.Worker))
	b = appendBytes(b, t.Payload)
	b = appendBytes(b, t.Result)
	b = binary.AppendUvarint(b, uint64(len(t.Errors)))
	for _, e := range t.Errors {
		b = binary.AppendUvarint(b, uint64(e.Attempt))
		b = binary.AppendVarint(b, timeToNanos(e.At))
		b = appendBytes(b, []byte(e.Message))
	}
	return b
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// decoder reads a record front to back and remembers the first failure.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: offset %d: %s", queue.ErrCorrupt, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) u8(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("%s: truncated", field)
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) uint64(field string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.off < 8 {
		d.fail("%s: truncated", field)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s: bad or truncated uvarint", field)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s: bad or truncated varint", field)
		return 0
	}
	d.off += n
	return v
}

// count reads a uvarint that must fit in an int and be at most limit.
func (d *decoder) count(field string, limit uint64) int {
	v := d.uvarint(field)
	if d.err == nil && v > limit {
		d.fail("%s: %d exceeds limit %d", field, v, limit)
		return 0
	}
	return int(v)
}

// bytes reads a length-prefixed byte string of at most limit bytes. The result
// is a copy: bbolt values are only valid inside their transaction.
func (d *decoder) bytes(field string, limit int) []byte {
	n := d.count(field+" length", uint64(limit))
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < n {
		d.fail("%s: length %d exceeds the %d bytes left", field, n, len(d.b)-d.off)
		return nil
	}
	if n == 0 {
		return nil
	}
	p := make([]byte, n)
	copy(p, d.b[d.off:])
	d.off += n
	return p
}

// decodeTask parses a record written by encodeTask. Every failure wraps
// ErrCorrupt and names the field and offset.
func decodeTask(b []byte) (*Task, error) {
	d := &decoder{b: b}
	if v := d.u8("version"); d.err == nil && v != recordVersion {
		return nil, fmt.Errorf("%w: unsupported record version %d (want %d)", queue.ErrCorrupt, v, recordVersion)
	}
	t := &Task{}
	st := d.u8("state")
	if d.err == nil && (st < byte(StateReady) || st > byte(StateDead)) {
		d.fail("unknown state %d", st)
	}
	t.State = State(st)
	t.ID = queue.TaskID(d.uint64("id"))
	t.Attempts = d.count("attempts", math.MaxInt32)
	t.EnqueuedAt = nanosToTime(d.varint("enqueued"))
	t.ReadyAt = nanosToTime(d.varint("ready"))
	t.LeaseID = d.uvarint("lease id")
	t.LeaseExpires = nanosToTime(d.varint("lease expiry"))
	t.FinishedAt = nanosToTime(d.varint("finished"))
	t.Pipeline = string(d.bytes("pipeline", maxPipelineLen))
	t.Worker = string(d.bytes("worker", maxWorkerLen))
	t.Payload = d.bytes("payload", math.MaxInt32)
	t.Result = d.bytes("result", math.MaxInt32)
	// Each error takes at least 3 bytes, which bounds the allocation.
	nerr := d.count("error count", uint64(len(b)-min(d.off, len(b)))/3)
	if d.err == nil && nerr > 0 {
		t.Errors = make([]queue.AttemptError, 0, nerr)
	}
	for i := 0; i < nerr && d.err == nil; i++ {
		var e queue.AttemptError
		e.Attempt = d.count(fmt.Sprintf("error %d attempt", i), math.MaxInt32)
		e.At = nanosToTime(d.varint(fmt.Sprintf("error %d time", i)))
		e.Message = string(d.bytes(fmt.Sprintf("error %d message", i), math.MaxInt32))
		t.Errors = append(t.Errors, e)
	}
	if d.err == nil && d.off != len(b) {
		d.fail("%d trailing bytes", len(b)-d.off)
	}
	if d.err == nil && t.Pipeline == "" {
		d.fail("empty pipeline")
	}
	if d.err != nil {
		return nil, d.err
	}
	return t, nil
}

func timeToNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosToTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// timeKey is an order-preserving 8-byte encoding of a time (sign bit
// flipped so that times before 1970 still sort first).
func timeKey(t time.Time) [8]byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(timeToNanos(t))^(1<<63))
	return k
}

// indexKey is timeKey(at) followed by the task id: FIFO by time, ties broken
// by enqueue order.
func indexKey(at time.Time, id queue.TaskID) []byte {
	k := make([]byte, 16)
	tk := timeKey(at)
	copy(k, tk[:])
	binary.BigEndian.PutUint64(k[8:], uint64(id))
	return k
}

func idKey(id queue.TaskID) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(id))
}
