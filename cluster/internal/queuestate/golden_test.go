package queuestate

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// The replicated queue's formats are persistent: commands sit in the Raft log, snapshots and
// bbolt files outlive the binary that wrote them, and replicas of two versions apply the same
// log during a rolling upgrade. The golden files under testdata were written by the code before
// the machine moved packages; a change to any encoding fails this test. A deliberate format
// change is a new version behind a gate (state format, record version, snapshot magic), with
// new golden files beside the old ones, never an edit of these.
var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden.json and testdata/snapshot-wpq1.hex")

const (
	goldenFile   = "testdata/golden.json"
	snapshotFile = "testdata/snapshot-wpq1.hex"
)

// goldenLease is a lease with every field set.
var goldenLease = Lease{ID: 7, TaskID: 3, Pipeline: "p/0", Worker: "node-a/p/0/1", Attempt: 2,
	Payload: []byte(`{"job":1,"stage":0,"slot":1}`), ExpiresAt: t0.Add(30 * time.Second)}

// goldenCommands has one command per operation with every field the operation uses.
func goldenCommands() map[string]Command {
	in := filesOf("in/a.txt", "in/b/c.gz")
	return map[string]Command{
		"define": {Op: OpDefine, At: t0, Pipeline: &queue.Pipeline{Name: "p", MaxAttempts: 3, Backoff: 2 * time.Second,
			Stages: []queue.StageDef{{Name: "a"}, {Name: "m", Merge: true}}}},
		"submit": {Op: OpSubmit, At: t0.Add(time.Millisecond), Request: "req-1", Name: "p", Inputs: in,
			Trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", MaxAttempts: 4, Backoff: time.Second},
		"lease":     {Op: OpLease, At: t0.Add(time.Second), Name: "p/0", Worker: "node-a/p/0/1", LeaseFor: 30 * time.Second},
		"heartbeat": {Op: OpHeartbeat, At: t0.Add(2 * time.Second), Lease: &goldenLease, LeaseFor: 30 * time.Second},
		"complete":  {Op: OpComplete, At: t0.Add(3 * time.Second), Lease: &goldenLease, Output: ptr(fileOf("out/a.txt"))},
		"fail":      {Op: OpFail, At: t0.Add(4 * time.Second), Lease: &goldenLease, Error: "exit status 1: \"bad\" input"},
		"retry":     {Op: OpRetry, At: t0.Add(5 * time.Second), Task: 9},
		"prune":     {Op: OpPrune, At: t0.Add(6 * time.Second), Before: t0.Add(-time.Hour)},
		"complete_lease": {Op: OpCompleteLease, At: t0.Add(7 * time.Second), Lease: &goldenLease, Output: ptr(fileOf("out/a.txt")),
			Name: "p/0", Worker: "node-a/p/0/1", LeaseFor: 30 * time.Second},
	}
}

// goldenResponses has one response of each shape a command returns.
func goldenResponses() map[string]Response {
	lost := responseOf(fmt.Errorf("%w: lease 7 of task 3 was superseded", queue.ErrLeaseLost))
	other := responseOf(fmt.Errorf("disk full"))
	return map[string]Response{
		"lease":                     {Lease: &goldenLease},
		"submit":                    {Job: 12},
		"prune":                     {Prune: &PruneResult{Jobs: 2, Tasks: 5}},
		"lease_lost":                lost,
		"other":                     other,
		"complete_lease":            {Code: lost.Code, Error: lost.Error, Next: &goldenLease},
		"complete_lease_next_error": {Next: nil, NextCode: "invalid", NextError: "invalid argument: bad queue name"},
	}
}

// rawState lists every bucket, sequence, key and value of the machine's file, in order.
func rawState(t testing.TB, m *Machine) []byte {
	t.Helper()
	var buf bytes.Buffer
	var walk func(path string, b *bolt.Bucket) error
	walk = func(path string, b *bolt.Bucket) error {
		fmt.Fprintf(&buf, "bucket %s seq %d\n", path, b.Sequence())
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(path+"/"+hex.EncodeToString(k), b.Bucket(k))
			}
			fmt.Fprintf(&buf, "%s %x %x\n", path, k, v)
			return nil
		})
	}
	read(t, m, func(q *Queue) error {
		return q.db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(hex.EncodeToString(name), b) })
		})
	})
	return buf.Bytes()
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// goldenScript runs a fixed random script and returns its log, responses, raw state, reader
// view and snapshot (the state as of the snapshot).
func goldenScript(t *testing.T, seed uint64, steps int) (log, resps, raw []byte, view string, snap []byte) {
	m := newMachine(t)
	s := newScript(t, m, seed)
	s.run(steps)
	for i := range s.log {
		log = append(append(log, s.log[i]...), '\n')
		resps = append(append(resps, s.resps[i]...), '\n')
	}
	snap = snapshotBytes(t, m) // first: it records the machine's clock in the file
	return log, resps, rawState(t, m), dump(t, m), snap
}

// goldenValues computes everything the golden files hold.
func goldenValues(t *testing.T) (map[string]string, []byte) {
	g := map[string]string{}
	for name, c := range goldenCommands() {
		g["command/"+name] = string(encodeCmd(t, c))
	}
	for name, r := range goldenResponses() {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		g["response/"+name] = string(b)
	}
	g["task-record"] = hex.EncodeToString(encodeTask(sampleTask()))

	// The bytes of a snapshot are not reproducible (bbolt leaves unused page space as it
	// finds it), so a snapshot is held to its framing and to what it restores.
	log, resps, raw, view, snap := goldenScript(t, 20261203, 400)
	g["script/log-sha256"] = sha(log)
	g["script/responses-sha256"] = sha(resps)
	g["script/file-sha256"] = sha(raw)
	g["script/view-sha256"] = sha([]byte(view))
	checkRestores(t, snap, sha(raw), sha([]byte(view)))

	// A small snapshot, kept whole, for Restore.
	_, _, raw, view, snap = goldenScript(t, 3, 40)
	g["small/file-sha256"] = sha(raw)
	g["small/view-sha256"] = sha([]byte(view))
	checkRestores(t, snap, sha(raw), sha([]byte(view)))
	return g, snap
}

// checkRestores checks a snapshot's framing ("WPQ1", the file's length, the file, its sha256)
// and that a fresh machine restored from it holds the file and view with the given hashes.
func checkRestores(t *testing.T, snap []byte, fileSHA, viewSHA string) {
	t.Helper()
	if len(snap) < 12+sha256.Size || string(snap[:4]) != "WPQ1" {
		t.Fatalf("snapshot of %d bytes starts %q; want WPQ1", len(snap), snap[:min(len(snap), 4)])
	}
	size := binary.BigEndian.Uint64(snap[4:12])
	body, sum := snap[12:len(snap)-sha256.Size], snap[len(snap)-sha256.Size:]
	if size != uint64(len(body)) || sha(body) != hex.EncodeToString(sum) {
		t.Fatalf("snapshot framing: length field %d for %d bytes, checksum %x", size, len(body), sum)
	}
	m := newMachine(t)
	if err := m.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := sha(rawState(t, m)); got != fileSHA {
		t.Errorf("restored file sha256 %s, want %s", got, fileSHA)
	}
	if got := sha([]byte(dump(t, m))); got != viewSHA {
		t.Errorf("restored view sha256 %s, want %s", got, viewSHA)
	}
}

// TestGoldenFormats: commands, responses, task records, the bbolt file a log builds and the
// snapshot taken of it are byte for byte what they were, and an old snapshot restores.
func TestGoldenFormats(t *testing.T) {
	got, snap := goldenValues(t)
	if *updateGolden {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write(snap)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		hx := hex.EncodeToString(z.Bytes())
		var lines strings.Builder
		for len(hx) > 0 {
			n := min(len(hx), 100)
			lines.WriteString(hx[:n] + "\n")
			hx = hx[n:]
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(snapshotFile, []byte(lines.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]string
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%s: %v", goldenFile, err)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s changed:\n got %s\nwant %s", k, got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s is not in %s", k, goldenFile)
		}
	}

	// The golden commands and responses decode to what they encode.
	for name, c := range goldenCommands() {
		var back Command
		if err := json.Unmarshal([]byte(want["command/"+name]), &back); err != nil {
			t.Fatalf("command %s: %v", name, err)
		}
		if !bytes.Equal(encodeCmd(t, back), encodeCmd(t, c)) {
			t.Errorf("command %s does not round-trip: %+v", name, back)
		}
	}
	rec, err := hex.DecodeString(want["task-record"])
	if err != nil {
		t.Fatal(err)
	}
	if task, err := decodeTask(rec); err != nil || !bytes.Equal(encodeTask(task), rec) {
		t.Errorf("golden task record: %+v, %v", task, err)
	}

	// The snapshot written by the old code restores, to the same file and view.
	hx, err := os.ReadFile(snapshotFile)
	if err != nil {
		t.Fatal(err)
	}
	z, err := hex.DecodeString(strings.ReplaceAll(string(hx), "\n", ""))
	if err != nil {
		t.Fatalf("%s: %v", snapshotFile, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("%s: %v", snapshotFile, err)
	}
	old, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", snapshotFile, err)
	}
	checkRestores(t, old, want["small/file-sha256"], want["small/view-sha256"])
}
