package queuestate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// t0 is the leader's clock at the first command of a machine test.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func machineConfig() Config {
	cfg := DefaultConfig()
	cfg.LeaseDuration = 10 * time.Second
	cfg.MaxAttempts = 3
	cfg.BackoffBase = time.Second
	cfg.BackoffCap = 4 * time.Second
	return cfg
}

func openMachineAt(t testing.TB, path string) *Machine {
	t.Helper()
	m, err := OpenMachine(path, machineConfig())
	if err != nil {
		t.Fatalf("OpenMachine: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func newMachine(t testing.TB) *Machine {
	t.Helper()
	return openMachineAt(t, filepath.Join(t.TempDir(), "machine.db"))
}

func encodeCmd(t testing.TB, c Command) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("encode %+v: %v", c, err)
	}
	return b
}

func decodeResp(t testing.TB, b []byte) Response {
	t.Helper()
	var r Response
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("response %q does not decode: %v", b, err)
	}
	return r
}

// do applies c and checks that its error is want (nil: success).
func do(t testing.TB, m *Machine, c Command, want error) Response {
	t.Helper()
	r := decodeResp(t, m.Apply(encodeCmd(t, c)))
	err := r.Err()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s at %v: %v (code %q)", c.Op, c.At, err, r.Code)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s at %v = %v (code %q); want %v", c.Op, c.At, err, r.Code, want)
	case want != nil && (r.Lease != nil || r.Job != 0):
		t.Fatalf("failed %s returned %+v", c.Op, r)
	}
	return r
}

// read runs fn on the machine's queue and fails the test on an error.
func read(t testing.TB, m *Machine, fn func(q *Queue) error) {
	t.Helper()
	if err := m.Read(fn); err != nil {
		t.Fatalf("read: %v", err)
	}
}

// txID is the id of the machine file's last committed write transaction.
func txID(t testing.TB, m *Machine) int {
	t.Helper()
	var id int
	read(t, m, func(q *Queue) error {
		return q.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	})
	return id
}

// machineDump is everything a replica's readers can see.
type machineDump struct {
	Pipelines []queue.Pipeline
	JobList   []queue.Job
	Jobs      []queue.Job
	Stages    []queue.StageStats
	Dead      []queue.TaskInfo
	Tasks     []Task
	Infos     []queue.TaskInfo
	Next      []string
}

func dump(t testing.TB, m *Machine) string {
	t.Helper()
	var d machineDump
	read(t, m, func(q *Queue) error {
		var err error
		if d.Pipelines, err = q.Pipelines(); err != nil {
			return err
		}
		if d.JobList, err = q.Jobs("", 1000); err != nil {
			return err
		}
		for _, j := range d.JobList {
			full, err := q.Job(j.ID)
			if err != nil {
				return err
			}
			d.Jobs = append(d.Jobs, full)
		}
		if d.Stages, err = q.StageStats(); err != nil {
			return err
		}
		if d.Dead, err = q.DeadTasks(""); err != nil {
			return err
		}
		for id := queue.TaskID(1); ; id++ {
			task, err := q.Get(id)
			if errors.Is(err, queue.ErrNotFound) {
				break
			}
			if err != nil {
				return err
			}
			d.Tasks = append(d.Tasks, task)
			ti, err := q.TaskInfo(id)
			if err != nil {
				return err
			}
			d.Infos = append(d.Infos, ti)
		}
		for _, s := range d.Stages {
			name := StageQueue(s.Pipeline, s.Stage)
			at, ok, err := q.NextReady(name, t0)
			if err != nil {
				return err
			}
			d.Next = append(d.Next, fmt.Sprintf("%s %v %v", name, at, ok))
		}
		return nil
	})
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// diffDumps names the first line where two dumps differ.
func diffDumps(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			lo := max(0, i-6)
			return fmt.Sprintf("line %d:\n%s\n- %s\n+ %s", i+1, strings.Join(al[lo:i], "\n"), x, y)
		}
	}
	return "no difference"
}

func mergePipeline(name string) *queue.Pipeline {
	return &queue.Pipeline{Name: name, Stages: []queue.StageDef{{Name: "a"}, {Name: "m", Merge: true}}, MaxAttempts: 2}
}

func TestOpenMachineRemovesPreviousFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.db")

	// A file that is not a queue at all.
	if err := os.WriteFile(path, []byte("left over by a previous run"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := OpenMachine(path, machineConfig())
	if err != nil {
		t.Fatalf("OpenMachine over a garbage file: %v", err)
	}
	do(t, m, Command{Op: OpDefine, At: t0, Pipeline: mergePipeline("p")}, nil)
	do(t, m, Command{Op: OpSubmit, At: t0, Name: "p", Inputs: filesOf("x")}, nil)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// A previous machine's state is dropped, not reused.
	m = openMachineAt(t, path)
	read(t, m, func(q *Queue) error {
		ps, err := q.Pipelines()
		if err != nil || len(ps) != 0 {
			t.Errorf("Pipelines = %+v, %v; want none", ps, err)
		}
		if _, err := q.Job(1); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Job(1) = %v; want ErrNotFound", err)
		}
		if _, err := q.Get(1); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Get(1) = %v; want ErrNotFound", err)
		}
		return nil
	})

	// A path that cannot be removed is an error.
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if m, err := OpenMachine(filepath.Join(dir, "sub"), machineConfig()); err == nil {
		_ = m.Close()
		t.Fatal("OpenMachine over a non-empty directory succeeded")
	}
	if m, err := OpenMachine(filepath.Join(dir, "no", "such", "dir", "m.db"), machineConfig()); err == nil {
		_ = m.Close()
		t.Fatal("OpenMachine in a missing directory succeeded")
	}
	bad := machineConfig()
	bad.LeaseDuration = 0
	if m, err := OpenMachine(filepath.Join(dir, "bad.db"), bad); !errors.Is(err, queue.ErrInvalid) {
		if m != nil {
			_ = m.Close()
		}
		t.Fatalf("OpenMachine with a bad config = %v; want ErrInvalid", err)
	}
}

func TestResponseErr(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error // nil: no error
	}{
		{"success", nil, nil},
		{"empty", fmt.Errorf("queue: lease from %q: %w", "p/0", queue.ErrEmpty), queue.ErrEmpty},
		{"lease lost", fmt.Errorf("complete: %w: superseded", queue.ErrLeaseLost), queue.ErrLeaseLost},
		{"not found", fmt.Errorf("x: %w", queue.ErrNotFound), queue.ErrNotFound},
		{"not dead", queue.ErrNotDead, queue.ErrNotDead},
		{"invalid", fmt.Errorf("a: %w", fmt.Errorf("b: %w", queue.ErrInvalid)), queue.ErrInvalid},
		{"corrupt", queue.ErrCorrupt, queue.ErrCorrupt},
		{"closed", queue.ErrClosed, queue.ErrClosed},
		{"other", errors.New("disk on fire"), nil},
	}
	sentinels := []error{queue.ErrEmpty, queue.ErrLeaseLost, queue.ErrNotFound, queue.ErrNotDead, queue.ErrInvalid, queue.ErrCorrupt, queue.ErrClosed}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Through the wire, as a follower sees it.
			b, err := json.Marshal(responseOf(tt.err))
			if err != nil {
				t.Fatal(err)
			}
			r := decodeResp(t, b)
			got := r.Err()
			if tt.err == nil {
				if got != nil || r.Code != "" {
					t.Fatalf("Err() = %v, code %q; want nil", got, r.Code)
				}
				return
			}
			if got == nil || got.Error() != tt.err.Error() {
				t.Fatalf("Err() = %v; want message %q", got, tt.err.Error())
			}
			for _, s := range sentinels {
				if errors.Is(got, s) != (s == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v", got, s, errors.Is(got, s))
				}
			}
			var re *RemoteError
			if errors.As(got, &re) != (tt.want != nil) {
				t.Errorf("errors.As RemoteError = %v; want %v", re, tt.want != nil)
			}
		})
	}
	// Unknown codes still carry the message.
	r := Response{Code: "from-the-future", Error: "boom"}
	if err := r.Err(); err == nil || err.Error() != "boom" || errors.Is(err, queue.ErrInvalid) {
		t.Fatalf("unknown code: Err() = %v", err)
	}
}

// TestMachineApply applies every operation through an encoded Command with explicit times.
func TestMachineApply(t *testing.T) {
	m := newMachine(t)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	job := func(id queue.JobID) queue.Job {
		var j queue.Job
		read(t, m, func(q *Queue) error { var err error; j, err = q.Job(id); return err })
		return j
	}

	changed := m.Changed()
	do(t, m, Command{Op: OpDefine, At: at(0)}, queue.ErrInvalid)
	do(t, m, Command{Op: OpDefine, At: at(0), Pipeline: &queue.Pipeline{Name: "Bad", Stages: []queue.StageDef{{Name: "s"}}}}, queue.ErrInvalid)
	do(t, m, Command{Op: OpDefine, At: at(0), Pipeline: &queue.Pipeline{Name: "p"}}, queue.ErrInvalid)
	do(t, m, Command{Op: OpDefine, At: at(0), Pipeline: mergePipeline("p")}, nil)
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by a define")
	}

	do(t, m, Command{Op: OpSubmit, At: at(0), Name: "nope", Inputs: filesOf("x")}, queue.ErrNotFound)
	do(t, m, Command{Op: OpSubmit, At: at(0), Name: "p"}, queue.ErrInvalid)
	do(t, m, Command{Op: OpSubmit, At: at(0), Name: "p", Inputs: filesOf("../x")}, queue.ErrInvalid)
	r := do(t, m, Command{Op: OpSubmit, At: at(time.Second), Request: "r1", Name: "p", Inputs: filesOf("x", "y")}, nil)
	if r.Job != 1 {
		t.Fatalf("submit = %+v; want job 1", r)
	}
	if r := do(t, m, Command{Op: OpSubmit, At: at(2 * time.Second), Request: "r1", Name: "p", Inputs: filesOf("z")}, nil); r.Job != 1 {
		t.Fatalf("repeated submit = %+v; want job 1", r)
	}
	if j := job(1); !j.Created.Equal(at(time.Second)) || len(j.Inputs) != 2 {
		t.Fatalf("job = %+v; want created at the command's time", j)
	}

	// Every applied command wakes the waiters, an empty lease too: applying it may have
	// expired leases (and so started a merge in another queue).
	changed = m.Changed()
	do(t, m, Command{Op: OpLease, At: at(3 * time.Second), Name: StageQueue("p", 1), Worker: "w"}, queue.ErrEmpty)
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by an applied empty lease")
	}
	do(t, m, Command{Op: OpLease, At: at(3 * time.Second), Name: "", Worker: "w"}, queue.ErrInvalid)
	r = do(t, m, Command{Op: OpLease, At: at(3 * time.Second), Name: StageQueue("p", 0), Worker: "w1"}, nil)
	l1 := r.Lease
	if l1 == nil || l1.Attempt != 1 || l1.Worker != "w1" || !l1.ExpiresAt.Equal(at(13*time.Second)) {
		t.Fatalf("lease = %+v; want attempt 1 expiring at +13s", l1)
	}
	var st StageTask
	if err := json.Unmarshal(l1.Payload, &st); err != nil || st.Job != 1 || st.Slot != 0 {
		t.Fatalf("lease payload %s: %+v, %v", l1.Payload, st, err)
	}

	do(t, m, Command{Op: OpHeartbeat, At: at(5 * time.Second)}, queue.ErrInvalid)
	r = do(t, m, Command{Op: OpHeartbeat, At: at(5 * time.Second), Lease: l1}, nil)
	if r.Lease == nil || !r.Lease.ExpiresAt.Equal(at(15*time.Second)) || r.Lease.ID != l1.ID {
		t.Fatalf("heartbeat = %+v; want expiry at +15s", r.Lease)
	}
	l1 = r.Lease
	do(t, m, Command{Op: OpComplete, At: at(6 * time.Second)}, queue.ErrInvalid)
	do(t, m, Command{Op: OpComplete, At: at(6 * time.Second), Lease: l1}, queue.ErrInvalid) // a pipeline task needs an output
	do(t, m, Command{Op: OpComplete, At: at(6 * time.Second), Lease: l1, Output: &queue.File{Name: "/abs", SHA256: fileOf("a").SHA256}}, queue.ErrInvalid)
	do(t, m, Command{Op: OpComplete, At: at(6 * time.Second), Lease: l1, Output: ptr(fileOf("out/x"))}, nil)
	do(t, m, Command{Op: OpComplete, At: at(6 * time.Second), Lease: l1, Output: ptr(fileOf("out/x"))}, queue.ErrLeaseLost)
	do(t, m, Command{Op: OpHeartbeat, At: at(6 * time.Second), Lease: l1}, queue.ErrLeaseLost)
	wantStages(t, job(1), [3]int{2, 1, 0}, [3]int{1, 0, 0})
	if j := job(1); j.State != queue.JobRunning {
		t.Fatalf("job = %+v", j)
	}

	// The second input fails twice (the pipeline's MaxAttempts is 2) and dies.
	l2 := do(t, m, Command{Op: OpLease, At: at(7 * time.Second), Name: StageQueue("p", 0), Worker: "w2"}, nil).Lease
	do(t, m, Command{Op: OpFail, At: at(8 * time.Second)}, queue.ErrInvalid)
	do(t, m, Command{Op: OpFail, At: at(8 * time.Second), Lease: l2, Error: "boom 1"}, nil)
	do(t, m, Command{Op: OpFail, At: at(8 * time.Second), Lease: l2, Error: "again"}, queue.ErrLeaseLost)
	do(t, m, Command{Op: OpLease, At: at(8*time.Second + 999*time.Millisecond), Name: StageQueue("p", 0), Worker: "w2"}, queue.ErrEmpty)
	l2 = do(t, m, Command{Op: OpLease, At: at(9 * time.Second), Name: StageQueue("p", 0), Worker: "w2"}, nil).Lease
	if l2.Attempt != 2 {
		t.Fatalf("redelivery %+v; want attempt 2", l2)
	}
	do(t, m, Command{Op: OpFail, At: at(10 * time.Second), Lease: l2, Error: "boom 2"}, nil)
	j := job(1)
	wantStages(t, j, [3]int{2, 1, 1}, [3]int{1, 0, 0})
	var dead []queue.TaskInfo
	read(t, m, func(q *Queue) error { var err error; dead, err = q.DeadTasks("p"); return err })
	if len(dead) != 1 || dead[0].ID != l2.TaskID || len(dead[0].Errors) != 2 || !dead[0].Finished.Equal(at(10*time.Second)) {
		t.Fatalf("DeadTasks = %+v", dead)
	}

	// The merge runs over the surviving output.
	lm := do(t, m, Command{Op: OpLease, At: at(11 * time.Second), Name: StageQueue("p", 1), Worker: "w"}, nil).Lease
	if err := json.Unmarshal(lm.Payload, &st); err != nil || len(st.Inputs) != 1 || st.Inputs[0] != fileOf("out/x") {
		t.Fatalf("merge payload %s", lm.Payload)
	}
	do(t, m, Command{Op: OpComplete, At: at(12 * time.Second), Lease: lm, Output: ptr(fileOf("merged"))}, nil)
	if j := job(1); j.State != queue.JobPartial || !j.Finished.Equal(at(12*time.Second)) {
		t.Fatalf("job = %+v; want partial at +12s", j)
	}

	// Retry.
	do(t, m, Command{Op: OpRetry, At: at(13 * time.Second), Task: 999}, queue.ErrNotFound)
	do(t, m, Command{Op: OpRetry, At: at(13 * time.Second), Task: l1.TaskID}, queue.ErrNotDead)
	do(t, m, Command{Op: OpRetry, At: at(13 * time.Second), Task: l2.TaskID}, nil)
	if j := job(1); j.State != queue.JobRunning {
		t.Fatalf("job after retry = %+v", j)
	}
	l2 = do(t, m, Command{Op: OpLease, At: at(13 * time.Second), Name: StageQueue("p", 0), Worker: "w2"}, nil).Lease
	if l2.Attempt != 1 {
		t.Fatalf("lease after retry = %+v", l2)
	}
	do(t, m, Command{Op: OpComplete, At: at(14 * time.Second), Lease: l2, Output: ptr(fileOf("out/y"))}, nil)
	lm = do(t, m, Command{Op: OpLease, At: at(15 * time.Second), Name: StageQueue("p", 1), Worker: "w"}, nil).Lease
	do(t, m, Command{Op: OpComplete, At: at(16 * time.Second), Lease: lm, Output: ptr(fileOf("merged/all"))}, nil)
	j = job(1)
	if j.State != queue.JobDone || !j.Finished.Equal(at(16*time.Second)) || len(j.Outputs) != 1 || j.Outputs[0] != fileOf("merged/all") {
		t.Fatalf("job = %+v", j)
	}

	do(t, m, Command{Op: "enqueue", At: at(17 * time.Second)}, queue.ErrInvalid)
	do(t, m, Command{Op: "", At: at(17 * time.Second)}, queue.ErrInvalid)

	// After Close every operation answers closed.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	do(t, m, Command{Op: OpDefine, At: at(18 * time.Second), Pipeline: mergePipeline("q")}, queue.ErrClosed)
	do(t, m, Command{Op: OpLease, At: at(18 * time.Second), Name: "p/0"}, queue.ErrClosed)
}

func ptr[T any](v T) *T { return &v }

// script drives a machine with random commands at a random (growing) leader clock and
// returns every encoded command with its response, so that the same log can be replayed.
type script struct {
	t     *testing.T
	rng   *rand.Rand
	now   time.Time
	m     *Machine // the leader: responses come from it
	held  []Lease
	log   [][]byte
	resps [][]byte
	codes map[string]int
	// stamp, if set, adds the proposer's settings to each command.
	stamp func(*Command)
}

func (s *script) apply(c Command) Response {
	c.At = s.now
	if s.stamp != nil {
		s.stamp(&c)
	}
	data := encodeCmd(s.t, c)
	resp := s.m.Apply(data)
	s.log = append(s.log, data)
	s.resps = append(s.resps, resp)
	r := decodeResp(s.t, resp)
	s.codes[string(c.Op)+":"+r.Code]++
	return r
}

func (s *script) run(steps int) {
	pipelines := []string{"three", "merge", "solo"}
	stages := map[string]int{"three": 3, "merge": 2, "solo": 1}
	for range steps {
		s.now = s.now.Add(time.Duration(s.rng.IntN(4000)) * time.Millisecond)
		if s.rng.IntN(40) == 0 {
			s.now = s.now.Add(12 * time.Second) // every lease expires
		}
		switch op := s.rng.IntN(20); {
		case op < 2:
			p := pipelines[s.rng.IntN(len(pipelines))]
			var names []string
			for i := range 1 + s.rng.IntN(4) {
				names = append(names, fmt.Sprintf("in/%d-%d", len(s.log), i))
			}
			req := ""
			if s.rng.IntN(2) == 0 {
				req = fmt.Sprint("req-", s.rng.IntN(10))
			}
			s.apply(Command{Op: OpSubmit, Request: req, Name: p, Inputs: filesOf(names...)})
		case op < 9:
			p := pipelines[s.rng.IntN(len(pipelines))]
			r := s.apply(Command{Op: OpLease, Name: StageQueue(p, s.rng.IntN(stages[p])), Worker: fmt.Sprint("w", s.rng.IntN(3))})
			if r.Lease != nil {
				s.held = append(s.held, *r.Lease)
			}
		case op < 18 && len(s.held) > 0:
			i := s.rng.IntN(len(s.held))
			l := s.held[i]
			switch k := s.rng.IntN(10); {
			case k < 6:
				out := fileOf(fmt.Sprintf("out/%d/%d", l.TaskID, l.ID))
				if s.rng.IntN(20) == 0 {
					out.SHA256 = "bad" // refused: the lease stays held
				}
				s.apply(Command{Op: OpComplete, Lease: &l, Output: &out})
			case k < 9:
				s.apply(Command{Op: OpFail, Lease: &l, Error: fmt.Sprint("failed at ", s.now)})
			default:
				if r := s.apply(Command{Op: OpHeartbeat, Lease: &l}); r.Lease != nil {
					s.held[i] = *r.Lease
					continue
				}
			}
			if s.rng.IntN(4) != 0 { // sometimes keep a finished lease around to replay it late
				s.held = append(s.held[:i], s.held[i+1:]...)
			}
		default:
			var dead []queue.TaskInfo
			read(s.t, s.m, func(q *Queue) error { var err error; dead, err = q.DeadTasks(""); return err })
			id := queue.TaskID(s.rng.IntN(50))
			if len(dead) > 0 && s.rng.IntN(4) != 0 {
				id = dead[s.rng.IntN(len(dead))].ID
			}
			s.apply(Command{Op: OpRetry, Task: id})
		}
	}
}

func newScript(t *testing.T, m *Machine, seed uint64) *script {
	s := &script{t: t, rng: rand.New(rand.NewPCG(seed, 7)), now: t0, m: m, codes: map[string]int{}}
	s.apply(Command{Op: OpDefine, Pipeline: &queue.Pipeline{Name: "three", MaxAttempts: 2,
		Stages: []queue.StageDef{{Name: "a"}, {Name: "b"}, {Name: "c", Merge: true}}}})
	s.apply(Command{Op: OpDefine, Pipeline: &queue.Pipeline{Name: "merge", Backoff: 500 * time.Millisecond,
		Stages: []queue.StageDef{{Name: "m", Merge: true}, {Name: "post"}}}})
	s.apply(Command{Op: OpDefine, Pipeline: &queue.Pipeline{Name: "solo", MaxAttempts: 1, Stages: []queue.StageDef{{Name: "s"}}}})
	return s
}

// replay applies a log to m, checking each response against the leader's.
func replay(t *testing.T, m *Machine, log, resps [][]byte) {
	t.Helper()
	for i, data := range log {
		if got := m.Apply(data); !bytes.Equal(got, resps[i]) {
			t.Fatalf("command %d %s: response %s; leader's %s", i, data, got, resps[i])
		}
	}
}

// TestMachineDeterminism: replicas applying the same log answer the same and read the same.
func TestMachineDeterminism(t *testing.T) {
	codes := map[string]int{}
	states := map[queue.JobState]int{}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			leader := newMachine(t)
			s := newScript(t, leader, seed)
			s.run(600)
			follower := newMachine(t)
			replay(t, follower, s.log, s.resps)
			want := dump(t, leader)
			if got := dump(t, follower); got != want {
				t.Fatalf("follower differs from leader at %s", diffDumps(want, got))
			}
			var jobs []queue.Job
			read(t, leader, func(q *Queue) error { var err error; jobs, err = q.Jobs("", 1000); return err })
			for _, j := range jobs {
				states[j.State]++
			}
			for k, n := range s.codes {
				codes[k] += n
			}
		})
	}
	// The scripts got somewhere: jobs finished, tasks died, late workers were refused.
	t.Logf("job states %v; op:code counts %v", states, codes)
	for _, k := range []string{"lease:", "lease:empty", "complete:", "complete:lease_lost", "complete:invalid", "fail:",
		"heartbeat:", "retry:", "retry:not_dead", "submit:"} {
		if codes[k] == 0 {
			t.Errorf("the scripts never produced %q", k)
		}
	}
	if states[queue.JobDone] == 0 || states[queue.JobPartial] == 0 {
		t.Errorf("job states %v; want some done and some partial", states)
	}
}

// TestMachineReadsArePassive: reads never write, even when a lease has long expired by the
// wall clock; only a command whose time is past the expiry ends the lease.
func TestMachineReadsArePassive(t *testing.T) {
	m := newMachine(t)
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC) // leases expire long before the wall clock
	do(t, m, Command{Op: OpDefine, At: past, Pipeline: mergePipeline("p")}, nil)
	do(t, m, Command{Op: OpSubmit, At: past, Name: "p", Inputs: filesOf("x", "y")}, nil)
	l := do(t, m, Command{Op: OpLease, At: past, Name: "p/0", Worker: "w"}, nil).Lease

	tx := txID(t, m)
	before := dump(t, m)
	for range 3 {
		read(t, m, func(q *Queue) error {
			s, err := q.Stats("p/0")
			if err != nil || s.Leased != 1 || s.Depth != 1 || s.Retries != 0 {
				t.Errorf("Stats = %+v, %v; want the expired lease still counted", s, err)
			}
			task, err := q.Get(l.TaskID)
			if err != nil || task.State != StateLeased || task.LeaseID != l.ID {
				t.Errorf("Get = %+v, %v; want still leased", task, err)
			}
			if ti, err := q.TaskInfo(l.TaskID); err != nil || ti.State != "leased" {
				t.Errorf("TaskInfo = %+v, %v", ti, err)
			}
			if d, err := q.Dead("p/0"); err != nil || len(d) != 0 {
				t.Errorf("Dead = %+v, %v", d, err)
			}
			// NextReady reports work now: a ready task, and an expired lease.
			if at, ok, err := q.NextReady("p/0", time.Now()); err != nil || !ok || time.Since(at) > time.Minute {
				t.Errorf("NextReady = %v, %v, %v; want now", at, ok, err)
			}
			return nil
		})
		if got := dump(t, m); got != before {
			t.Fatalf("a read changed the state: %s", diffDumps(before, got))
		}
	}
	if got := txID(t, m); got != tx {
		t.Fatalf("reads committed write transactions: tx %d -> %d", tx, got)
	}

	// A command before the expiry leaves the lease alone; one at the expiry ends it.
	do(t, m, Command{Op: OpLease, At: past.Add(5 * time.Second), Name: "p/0", Worker: "w"}, nil)
	do(t, m, Command{Op: OpLease, At: past.Add(6 * time.Second), Name: "p/0", Worker: "w"}, queue.ErrEmpty)
	read(t, m, func(q *Queue) error {
		if s, err := q.Stats("p/0"); err != nil || s.Leased != 2 {
			t.Errorf("Stats = %+v, %v; want 2 leased", s, err)
		}
		return nil
	})
	do(t, m, Command{Op: OpLease, At: past.Add(10 * time.Second), Name: "p/0", Worker: "w"}, queue.ErrEmpty) // expired, backing off
	read(t, m, func(q *Queue) error {
		s, err := q.Stats("p/0")
		if err != nil || s.Leased != 1 || s.Depth != 1 || s.Ready != 0 || s.Retries != 1 {
			t.Errorf("Stats after the expiry = %+v, %v; want 1 leased, 1 backing off", s, err)
		}
		if task, err := q.Get(l.TaskID); err != nil || task.State != StateReady || len(task.Errors) != 1 {
			t.Errorf("Get = %+v, %v; want ready with the expiry recorded", task, err)
		}
		return nil
	})
	r := do(t, m, Command{Op: OpLease, At: past.Add(11 * time.Second), Name: "p/0", Worker: "w"}, nil)
	if r.Lease.TaskID != l.TaskID || r.Lease.Attempt != 2 {
		t.Fatalf("redelivery = %+v", r.Lease)
	}
	do(t, m, Command{Op: OpComplete, At: past.Add(12 * time.Second), Lease: l, Output: ptr(fileOf("late"))}, queue.ErrLeaseLost)
}

func snapshotBytes(t *testing.T, m *Machine) []byte {
	t.Helper()
	persist, release, err := m.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer release()
	var buf bytes.Buffer
	if err := persist(&buf); err != nil {
		t.Fatalf("persist: %v", err)
	}
	return buf.Bytes()
}

// TestMachineSnapshotRestore: a restored replica reads like the one that took the snapshot (as
// of the snapshot), and applies the rest of the log to the same state.
func TestMachineSnapshotRestore(t *testing.T) {
	leader := newMachine(t)
	s := newScript(t, leader, 42)
	s.run(300)
	atSnapshot := dump(t, leader)
	persist, release, err := leader.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	cut := len(s.log)
	// The leader goes on while the snapshot is written, as under Raft.
	var buf bytes.Buffer
	persisted := make(chan error, 1)
	go func() {
		defer release()
		persisted <- persist(&buf)
	}()
	s.run(50)
	if err := <-persisted; err != nil {
		t.Fatal(err)
	}
	release() // idempotent
	snap := buf.Bytes()

	// A fresh machine, and one with other state of its own.
	fresh := newMachine(t)
	busy := newMachine(t)
	do(t, busy, Command{Op: OpDefine, At: t0, Pipeline: mergePipeline("elsewhere")}, nil)
	do(t, busy, Command{Op: OpSubmit, At: t0, Name: "elsewhere", Inputs: filesOf("e")}, nil)
	for name, m := range map[string]*Machine{"fresh": fresh, "busy": busy} {
		t.Run(name, func(t *testing.T) {
			changed := m.Changed()
			if err := m.Restore(bytes.NewReader(snap)); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			select {
			case <-changed:
			default:
				t.Error("Restore did not signal a change")
			}
			if got := dump(t, m); got != atSnapshot {
				t.Errorf("restored replica differs from the leader at the snapshot: %s", diffDumps(atSnapshot, got))
			}
			// The rest of the log applies as it did on the leader.
			replay(t, m, s.log[cut:], s.resps[cut:])
			if want, got := dump(t, leader), dump(t, m); got != want {
				t.Fatalf("after the rest of the log: %s", diffDumps(want, got))
			}
		})
	}
	if _, err := os.Stat(fresh.path + ".restore"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Restore left %s.restore behind: %v", fresh.path, err)
	}
}

// TestMachineRestoreRejects: a snapshot that is not one fails and leaves the state as it was.
func TestMachineRestoreRejects(t *testing.T) {
	src := newMachine(t)
	s := newScript(t, src, 5)
	s.run(100)
	good := snapshotBytes(t, src)
	random := make([]byte, 64<<10)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	future := func() []byte { // a queue file of another format version
		m := newMachine(t)
		read(t, m, func(q *Queue) error {
			return q.update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(kFormat, []byte{recordVersion + 1}) })
		})
		return snapshotBytes(t, m)
	}()
	tests := []struct {
		name string
		data []byte
	}{
		{"text", []byte("this is not a snapshot")},
		{"zero page", make([]byte, 4096)},
		{"random", random},
		{"other format version", future},
		{"empty", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMachine(t)
			r := newScript(t, m, 6)
			r.run(100)
			before := dump(t, m)
			if err := m.Restore(bytes.NewReader(tt.data)); err == nil {
				t.Errorf("Restore(%d bytes of %s) succeeded", len(tt.data), tt.name)
			}
			if got := dump(t, m); got != before {
				t.Fatalf("state after the refused Restore: %s", diffDumps(before, got))
			}
			// And it still applies.
			r.run(20)
			if _, err := os.Stat(m.path + ".restore"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Restore left %s.restore behind: %v", m.path, err)
			}
		})
	}
	// A failing reader too.
	m := newMachine(t)
	before := dump(t, m)
	if err := m.Restore(&failingReader{data: good[:4096]}); err == nil {
		t.Error("Restore from a failing reader succeeded")
	}
	if got := dump(t, m); got != before {
		t.Fatalf("state after the failed read: %s", diffDumps(before, got))
	}
}

type failingReader struct{ data []byte }

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("connection reset")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestMachineApplyRefuses: a command that does not decode, or names no valid operation, is
// answered invalid and changes nothing a reader can see.
func TestMachineApplyRefuses(t *testing.T) {
	m := newMachine(t)
	s := newScript(t, m, 11)
	s.run(200)
	last := s.now
	stamp := func(format string) []byte { return fmt.Appendf(nil, format, last.Format(time.RFC3339Nano)) }
	tests := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"truncated", []byte(`{"op":"lease"`)},
		{"not json", []byte("lease p/0")},
		{"binary", []byte{0xff, 0xfe, 0x00, 0x01}},
		{"array", []byte(`[1,2]`)},
		{"string", []byte(`"define"`)},
		{"bad time", []byte(`{"op":"lease","at":"yesterday","name":"three/0"}`)},
		{"op is a number", []byte(`{"op":1}`)},
		{"pipeline is a string", stamp(`{"op":"define","at":%q,"pipeline":"x"}`)},
		{"trailing garbage", stamp(`{"op":"lease","at":%q,"name":"three/0"} x`)},
		{"unknown op", stamp(`{"op":"enqueue","at":%q,"name":"three/0"}`)},
		{"define without pipeline", stamp(`{"op":"define","at":%q}`)},
		{"complete without lease", stamp(`{"op":"complete","at":%q}`)},
		{"empty object", []byte(`{}`)},
		{"null", []byte(`null`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, tx := dump(t, m), txID(t, m)
			r := decodeResp(t, m.Apply(tt.data))
			if r.Code != "invalid" || !errors.Is(r.Err(), queue.ErrInvalid) || r.Lease != nil || r.Job != 0 {
				t.Fatalf("Apply(%q) = %+v; want an invalid-argument response", tt.data, r)
			}
			if got := dump(t, m); got != before {
				t.Errorf("Apply(%q) changed what readers see: %s", tt.data, diffDumps(before, got))
			}
			if got := txID(t, m); got != tx {
				t.Errorf("Apply(%q) committed a write: tx %d -> %d", tt.data, tx, got)
			}
		})
	}
	// The machine goes on.
	s.run(50)
}

// FuzzMachineApply feeds arbitrary commands (one per line) to a machine holding a running
// job, and to one with group commit: Apply must never panic, must always answer a decodable
// Response (the same from both machines, which must read the same after), and the state must
// stay readable.
func FuzzMachineApply(f *testing.F) {
	at := t0.Format(time.RFC3339Nano)
	out := fileOf("out")
	outJSON, _ := json.Marshal(out)
	seeds := []string{
		fmt.Sprintf(`{"op":"lease","at":%q,"name":"fz/0","worker":"w"}`, at),
		fmt.Sprintf(`{"op":"lease","at":%q,"name":"fz/0","worker":"w"}`+"\n"+
			`{"op":"complete","at":%q,"lease":{"id":1,"task_id":1},"output":%s}`, at, at, outJSON),
		fmt.Sprintf(`{"op":"lease","at":%q,"name":"fz/0","worker":"w"}`+"\n"+
			`{"op":"fail","at":%q,"lease":{"id":1,"task_id":1},"error":"x"}`+"\n"+
			`{"op":"lease","at":"2030-01-01T00:00:05Z","name":"fz/0","worker":"w"}`+"\n"+
			`{"op":"fail","at":"2030-01-01T00:00:05Z","lease":{"id":3,"task_id":1},"error":"y"}`+"\n"+
			`{"op":"retry","at":"2030-01-01T00:00:06Z","task":1}`, at, at),
		fmt.Sprintf(`{"op":"lease","at":%q,"name":"fz/0","worker":"w"}`+"\n"+
			`{"op":"heartbeat","at":"2030-01-01T00:00:09Z","lease":{"id":1,"task_id":1}}`+"\n"+
			`{"op":"lease","at":"2030-01-01T01:00:00Z","name":"fz/0","worker":"w"}`, at),
		fmt.Sprintf(`{"op":"submit","at":%q,"request":"r","name":"fz","inputs":[%s]}`, at, outJSON),
		fmt.Sprintf(`{"op":"define","at":%q,"pipeline":{"name":"fz2","stages":[{"name":"m","merge":true}],"max_attempts":1,"backoff":1}}`, at),
		`{"op":"lease","at":"0001-01-01T00:00:00Z","name":"fz/0"}`,
		`{"op":"lease","at":"9999-12-31T23:59:59Z","name":"fz/0"}`,
		`{"op":"retry","task":18446744073709551615}`,
		`{"op":"complete","lease":{"id":0,"task_id":0}}`,
		fmt.Sprintf(`{"op":"lease","at":%q,"name":"fz/0","worker":"w"}`+"\n"+
			`{"op":"complete_lease","at":%q,"lease":{"id":1,"task_id":1},"output":%s,"name":"fz/0","worker":"w"}`+"\n"+
			`{"op":"complete_lease","at":%q,"lease":{"id":1,"task_id":1},"output":%s,"name":"fz/1","worker":"w"}`, at, at, outJSON, at, outJSON),
		`{"op":"complete_lease","at":"2030-01-01T00:00:00Z","lease":{"id":7,"task_id":2}}`,
		// Outputs carried by the completion: right, wrong bytes, not base64, without an output.
		fmt.Sprintf(`{"op":"lease","at":%q,"name":"fz/0","worker":"w"}`+"\n"+
			`{"op":"complete","at":%q,"lease":{"id":1,"task_id":1},"output":%s,"content":"b3V0"}`, at, at, outJSON),
		fmt.Sprintf(`{"op":"lease","at":%q,"name":"fz/0","worker":"w"}`+"\n"+
			`{"op":"complete_lease","at":%q,"lease":{"id":1,"task_id":1},"output":%s,"content":"b3V1","name":"fz/0","worker":"w"}`, at, at, outJSON),
		fmt.Sprintf(`{"op":"complete","at":%q,"lease":{"id":1,"task_id":1},"output":%s,"content":"!!"}`, at, outJSON),
		`{"op":"complete","lease":{"id":1,"task_id":1},"content":"b3V0"}`,
		`{"op":"complete_lease","at":"2030-01-01T00:00:00Z","name":"fz/0","worker":"w"}`,
		"",
		"\x00",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// m applies every command alone; g, fed the same, with group commit (a transaction
		// open across commands, committed every 4): both must answer and read the same.
		m, g := newMachine(t), newMachine(t)
		g.SetGroupCommit(4, time.Hour)
		for _, x := range []*Machine{m, g} {
			do(t, x, Command{Op: OpDefine, At: t0, Pipeline: mergePipeline("fz")}, nil)
			do(t, x, Command{Op: OpSubmit, At: t0, Name: "fz", Inputs: filesOf("x", "y")}, nil)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			b := m.Apply(line)
			if gb := g.Apply(line); !bytes.Equal(gb, b) {
				t.Fatalf("Apply(%q) = %s; with group commit %s", line, b, gb)
			}
			var r Response
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("Apply(%q) = %q: not a Response: %v", line, b, err)
			}
			if err := r.Err(); err != nil && (r.Lease != nil || r.Job != 0) {
				t.Fatalf("Apply(%q) = %+v: an error with a result", line, r)
			}
			if errors.Is(r.Err(), queue.ErrCorrupt) {
				t.Fatalf("Apply(%q) = %+v: corrupted the state", line, r)
			}
		}
		if dm, dg := dump(t, m), dump(t, g); dm != dg { // every read still works
			t.Fatalf("with group commit: %s", diffDumps(dm, dg))
		}
	})
}

// TestMachineRestoreTruncated: a cut-off snapshot is refused and the state kept. It runs in a
// child process, because bbolt may panic in a goroutine of its own on a damaged file, which
// would take the whole test binary down.
func TestMachineRestoreTruncated(t *testing.T) {
	if os.Getenv("QUEUE_TEST_RESTORE_CHILD") == "1" {
		restoreTruncated(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMachineRestoreTruncated$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "QUEUE_TEST_RESTORE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		lines := strings.SplitN(string(out), "\n", 25)
		t.Fatalf("restoring truncated snapshots (child process): %v\n%s", err, strings.Join(lines[:min(len(lines), 24)], "\n"))
	}
}

func restoreTruncated(t *testing.T) {
	src := newMachine(t)
	newScript(t, src, 5).run(100)
	good := snapshotBytes(t, src)
	for _, n := range []int{len(good) - 1, len(good) - 4096, len(good) / 2, 4 * 4096, 4096, 100} {
		t.Run(fmt.Sprintf("%d of %d bytes", n, len(good)), func(t *testing.T) {
			m := newMachine(t)
			newScript(t, m, 6).run(50)
			before := dump(t, m)
			if err := m.Restore(bytes.NewReader(good[:n])); err == nil {
				t.Errorf("Restore of a truncated snapshot succeeded")
			}
			if got := dump(t, m); got != before {
				t.Fatalf("state after the refused Restore: %s", diffDumps(before, got))
			}
		})
	}
}

// gatedWriter is a slow snapshot sink: its first Write waits for gate.
type gatedWriter struct{ gate chan struct{} }

func (w *gatedWriter) Write(p []byte) (int, error) {
	<-w.gate
	return len(p), nil
}

// TestMachineSnapshotPersistDoesNotStallApply: the log's applier goes on while a snapshot is
// being persisted to a slow sink, also when the file has to grow meanwhile.
func TestMachineSnapshotPersistDoesNotStallApply(t *testing.T) {
	m := newMachine(t)
	do(t, m, Command{Op: OpDefine, At: t0, Pipeline: mergePipeline("p")}, nil)
	persist, release, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	sink := &gatedWriter{gate: gate}
	persisted := make(chan error, 1)
	go func() {
		defer release()
		persisted <- persist(sink)
	}()
	applied := make(chan error, 1)
	go func() {
		// About 2 MB of jobs and tasks: the file grows well past its size at the snapshot.
		for i := range 200 {
			var names []string
			for k := range 20 {
				names = append(names, fmt.Sprintf("inputs/%03d/%s-%02d.dat", i, strings.Repeat("x", 100), k))
			}
			c := Command{Op: OpSubmit, At: t0, Name: "p", Inputs: filesOf(names...)}
			data, _ := json.Marshal(c)
			var r Response
			if err := json.Unmarshal(m.Apply(data), &r); err != nil || r.Err() != nil {
				applied <- fmt.Errorf("submit %d: %v %v", i, err, r.Err())
				return
			}
		}
		applied <- nil
	}()
	select {
	case err := <-applied:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Apply stalled for 10s while a snapshot was being persisted")
		close(gate)
		gate = nil
		if err := <-applied; err != nil {
			t.Error(err)
		}
	}
	if gate != nil {
		close(gate)
	}
	if err := <-persisted; err != nil {
		t.Fatalf("persist: %v", err)
	}
}

// TestMachineSubmitValidation: a submit through the log is refused exactly when Queue.Submit
// refuses it.
func TestMachineSubmitValidation(t *testing.T) {
	tests := []struct {
		name     string
		request  string
		pipeline string
		inputs   []queue.File
		want     error
	}{
		{"request id of 128 bytes", strings.Repeat("r", 128), "p", filesOf("a"), nil},
		{"request id too long", strings.Repeat("s", 129), "p", filesOf("a"), queue.ErrInvalid},
		{"request id far too long", strings.Repeat("t", 40000), "p", filesOf("a"), queue.ErrInvalid},
		{"undefined pipeline", "", "nope", filesOf("a"), queue.ErrNotFound},
		{"no inputs", "", "p", nil, queue.ErrInvalid},
		{"escaping input", "", "p", filesOf("../a"), queue.ErrInvalid},
	}
	q, _, _ := newTest(t, nil)
	mustDefine(t, q, *mergePipeline("p"))
	m := newMachine(t)
	do(t, m, Command{Op: OpDefine, At: t0, Pipeline: mergePipeline("p")}, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := q.Submit(context.Background(), tt.request, tt.pipeline, tt.inputs); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("Queue.Submit = %v; want %v", err, tt.want)
			}
			r := decodeResp(t, m.Apply(encodeCmd(t, Command{Op: OpSubmit, At: t0, Request: tt.request, Name: tt.pipeline, Inputs: tt.inputs})))
			if err := r.Err(); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("Machine submit = %v (code %q); want %v", err, r.Code, tt.want)
			}
		})
	}
}

// TestMachineReplicaConfig: commands carry the proposer's lease length, attempt limit and
// backoff, so replicas whose own configuration differs still end up identical.
func TestMachineReplicaConfig(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"lease duration", func(c *Config) { c.LeaseDuration = time.Minute }},
		{"max attempts", func(c *Config) { c.MaxAttempts = 10 }},
		{"backoff base", func(c *Config) { c.BackoffBase = 2 * time.Second }},
		{"backoff cap", func(c *Config) { c.BackoffCap = time.Minute }},
		{"payload limit", func(c *Config) { c.MaxPayloadBytes = 300 }},
	}
	leaderCfg := machineConfig()
	leaderCfg.MaxAttempts = 8 // long enough a backoff to reach the cap
	stamp := func(c *Command) {
		switch c.Op {
		case OpLease, OpHeartbeat:
			c.LeaseFor = leaderCfg.LeaseDuration
		case OpSubmit:
			c.MaxAttempts, c.Backoff = leaderCfg.MaxAttempts, leaderCfg.BackoffBase
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leader := newMachine(t)
			s := newScript(t, leader, 21)
			s.stamp = stamp
			s.run(600)
			// One task that fails often enough for its backoff to reach any cap.
			s.apply(Command{Op: OpDefine, Pipeline: &queue.Pipeline{Name: "flaky", Stages: []queue.StageDef{{Name: "s"}}}})
			s.apply(Command{Op: OpSubmit, Name: "flaky", Inputs: filesOf("f")})
			for range 7 {
				s.now = s.now.Add(time.Hour)
				if r := s.apply(Command{Op: OpLease, Name: StageQueue("flaky", 0), Worker: "w"}); r.Lease != nil {
					s.apply(Command{Op: OpFail, Lease: r.Lease, Error: "flaky"})
				}
			}
			cfg := machineConfig()
			tt.mutate(&cfg)
			follower, err := OpenMachine(filepath.Join(t.TempDir(), "f.db"), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer follower.Close()
			for i, data := range s.log {
				if got := follower.Apply(data); !bytes.Equal(got, s.resps[i]) {
					t.Fatalf("command %d %s: follower answered %s; leader %s", i, data, got, s.resps[i])
				}
			}
			if want, got := dump(t, leader), dump(t, follower); got != want {
				t.Fatalf("follower differs: %s", diffDumps(want, got))
			}
		})
	}
}

func TestMachineHeartbeatLeavesPayloadOut(t *testing.T) {
	m, err := OpenMachine(filepath.Join(t.TempDir(), "m.db"), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	do(t, m, Command{Op: OpDefine, At: at, Pipeline: &queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}}}, nil)
	do(t, m, Command{Op: OpSubmit, At: at, Name: "p", Inputs: filesOf("a")}, nil)
	l := do(t, m, Command{Op: OpLease, At: at, Name: StageQueue("p", 0), Worker: "w"}, nil).Lease
	if l == nil || len(l.Payload) == 0 {
		t.Fatalf("lease %+v: want the task's payload", l)
	}
	hb := do(t, m, Command{Op: OpHeartbeat, At: at.Add(time.Second), Lease: l}, nil).Lease
	if hb == nil || hb.ID != l.ID || len(hb.Payload) != 0 || !hb.ExpiresAt.After(l.ExpiresAt) {
		t.Fatalf("heartbeat answer %+v: want the extended lease without the payload", hb)
	}
}

// TestMachineCompleteLease: OpCompleteLease applies as OpComplete then OpLease at the same
// time would (the same state and answers, compared with a third machine applying the two),
// its lease part stands whatever the completion's outcome, and two replicas applying it agree.
func TestMachineCompleteLease(t *testing.T) {
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	q0, q1 := StageQueue("p", 0), StageQueue("p", 1)
	// setup defines the pipeline, submits a job of three inputs and leases two of its tasks
	// (the leases, in order).
	setup := func(t *testing.T, m *Machine) []*Lease {
		do(t, m, Command{Op: OpDefine, At: at(0), Pipeline: mergePipeline("p")}, nil)
		do(t, m, Command{Op: OpSubmit, At: at(time.Second), Request: "r", Name: "p", Inputs: filesOf("x", "y", "z")}, nil)
		var ls []*Lease
		for i := range 2 {
			ls = append(ls, do(t, m, Command{Op: OpLease, At: at(2 * time.Second), Name: q0, Worker: fmt.Sprint("w", i)}, nil).Lease)
		}
		return ls
	}
	out := ptr(fileOf("out/x"))
	tests := []struct {
		name string
		// before runs on the leases of setup before the combined command, which it returns.
		before   func(t *testing.T, m *Machine, ls []*Lease) Command
		code     string // of the completion
		next     bool   // a task leased
		nextCode string // of the lease part
		// commits is how many write transactions the command commits: one for everything
		// (the first OpCompleteLease also marks the state, CombinedApplied) when no part
		// fails; when one does, that is rolled back and the mark, the completion and the lease
		// commit apart (a failed part commits nothing).
		commits uint64
	}{
		{"complete and lease the next task", func(t *testing.T, m *Machine, ls []*Lease) Command {
			return Command{Op: OpCompleteLease, Lease: ls[0], Output: out, Name: q0, Worker: "w0"}
		}, "", true, "", 1},
		{"lease lost: the lease part is applied all the same", func(t *testing.T, m *Machine, ls []*Lease) Command {
			do(t, m, Command{Op: OpComplete, At: at(3 * time.Second), Lease: ls[0], Output: out}, nil)
			return Command{Op: OpCompleteLease, Lease: ls[0], Output: out, Name: q0, Worker: "w0"}
		}, "lease_lost", true, "", 2},
		{"completion refused (no output): the lease part is applied all the same", func(t *testing.T, m *Machine, ls []*Lease) Command {
			return Command{Op: OpCompleteLease, Lease: ls[0], Name: q0, Worker: "w0"}
		}, "invalid", true, "", 2},
		{"nothing ready: no lease, and no error", func(t *testing.T, m *Machine, ls []*Lease) Command {
			do(t, m, Command{Op: OpLease, At: at(3 * time.Second), Name: q0, Worker: "w2"}, nil)
			return Command{Op: OpCompleteLease, Lease: ls[0], Output: out, Name: q0, Worker: "w0"}
		}, "", false, "", 1},
		{"invalid queue: completed, the lease part fails", func(t *testing.T, m *Machine, ls []*Lease) Command {
			return Command{Op: OpCompleteLease, Lease: ls[0], Output: out, Name: "", Worker: "w0"}
		}, "", false, "invalid", 1},
		{"the last completion starts the merge, which the lease part takes", func(t *testing.T, m *Machine, ls []*Lease) Command {
			l2 := do(t, m, Command{Op: OpLease, At: at(3 * time.Second), Name: q0, Worker: "w2"}, nil).Lease
			do(t, m, Command{Op: OpComplete, At: at(3 * time.Second), Lease: ls[0], Output: ptr(fileOf("out/x"))}, nil)
			do(t, m, Command{Op: OpComplete, At: at(3 * time.Second), Lease: l2, Output: ptr(fileOf("out/z"))}, nil)
			return Command{Op: OpCompleteLease, Lease: ls[1], Output: ptr(fileOf("out/y")), Name: q1, Worker: "w1"}
		}, "", true, "", 1},
		{"the lease part fails inside the shared transaction (a ready index naming no task): completed all the same", func(t *testing.T, m *Machine, ls []*Lease) Command {
			if err := m.q.db.Update(func(tx *bolt.Tx) error { return putIndex(tx, bReady, q0, indexKey(at(0), 999)) }); err != nil {
				t.Fatal(err)
			}
			return Command{Op: OpCompleteLease, Lease: ls[0], Output: out, Name: q0, Worker: "w0"}
		}, "", false, "not_found", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, split := newMachine(t), newMachine(t), newMachine(t)
			var cmd Command
			for _, m := range []*Machine{a, b, split} {
				cmd = tt.before(t, m, setup(t, m))
			}
			cmd.At, cmd.LeaseFor = at(4*time.Second), 20*time.Second
			before := commits(t, a)
			ra, rb := a.Apply(encodeCmd(t, cmd)), b.Apply(encodeCmd(t, cmd))
			if n := commits(t, a) - before; n != tt.commits {
				t.Errorf("the command committed %d write transactions, want %d", n, tt.commits)
			}
			if !bytes.Equal(ra, rb) {
				t.Fatalf("replicas answered differently:\n%s\n%s", ra, rb)
			}
			if da, db := dump(t, a), dump(t, b); da != db {
				t.Fatalf("replicas differ: %s", diffDumps(da, db))
			}
			r := decodeResp(t, ra)
			if r.Code != tt.code || (r.Next != nil) != tt.next || r.NextCode != tt.nextCode || r.Lease != nil {
				t.Fatalf("response %s; want code %q, a next lease %v, next code %q", ra, tt.code, tt.next, tt.nextCode)
			}
			if tt.nextCode != "" && r.NextErr() == nil || tt.nextCode == "" && r.NextErr() != nil {
				t.Fatalf("NextErr() = %v with next code %q", r.NextErr(), r.NextCode)
			}
			if r.Next != nil && (r.Next.Worker != cmd.Worker || r.Next.Pipeline != cmd.Name || !r.Next.ExpiresAt.Equal(at(24*time.Second))) {
				t.Fatalf("next lease %+v; want %s's task of %s expiring at +24s", r.Next, cmd.Worker, cmd.Name)
			}

			// The same two operations as separate commands at the same time.
			complete := cmd
			complete.Op, complete.Name, complete.Worker = OpComplete, "", ""
			rc := decodeResp(t, split.Apply(encodeCmd(t, complete)))
			lease := Command{Op: OpLease, At: cmd.At, Name: cmd.Name, Worker: cmd.Worker, LeaseFor: cmd.LeaseFor}
			rl := decodeResp(t, split.Apply(encodeCmd(t, lease)))
			if rc.Code != r.Code || rc.Error != r.Error {
				t.Fatalf("completion %+v; apart it answers %+v", r, rc)
			}
			if got, want := fmt.Sprintf("%+v", r.Next), fmt.Sprintf("%+v", rl.Lease); got != want {
				t.Fatalf("next lease %s; a lease apart takes %s", got, want)
			}
			if da, ds := dump(t, a), dump(t, split); da != ds {
				t.Fatalf("the combined command and the two apart differ: %s", diffDumps(da, ds))
			}
		})
	}
}

// commits returns the id of m's last committed write transaction: bbolt numbers them.
func commits(t *testing.T, m *Machine) uint64 {
	t.Helper()
	var id uint64
	if err := m.q.db.View(func(tx *bolt.Tx) error { id = uint64(tx.ID()); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestMachineCombinedApplied: the first OpCompleteLease sets the combined flag, in memory and
// as a meta key of the file; it survives a snapshot and restore and a rebuild from the log,
// and a restore of a state that never applied one clears it.
func TestMachineCombinedApplied(t *testing.T) {
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	q0 := StageQueue("p", 0)
	// history applies a pipeline, a job and a lease, then (combined) a complete_lease or the
	// completion alone, and returns the commands applied.
	history := func(t *testing.T, m *Machine, combined bool) []Command {
		cmds := []Command{
			{Op: OpDefine, At: at(0), Pipeline: mergePipeline("p")},
			{Op: OpSubmit, At: at(time.Second), Request: "r", Name: "p", Inputs: filesOf("x", "y")},
			{Op: OpLease, At: at(2 * time.Second), Name: q0, Worker: "w0"},
		}
		for _, c := range cmds {
			do(t, m, c, nil)
		}
		l := do(t, m, Command{Op: OpLease, At: at(2 * time.Second), Name: q0, Worker: "w1"}, nil).Lease
		cmds = append(cmds, Command{Op: OpLease, At: at(2 * time.Second), Name: q0, Worker: "w1"})
		last := Command{Op: OpComplete, At: at(3 * time.Second), Lease: l, Output: ptr(fileOf("out/y"))}
		if combined {
			last.Op, last.Name, last.Worker = OpCompleteLease, q0, "w1"
		}
		do(t, m, last, nil)
		return append(cmds, last)
	}
	hasKey := func(t *testing.T, m *Machine) bool {
		t.Helper()
		var v []byte
		read(t, m, func(q *Queue) error {
			return q.db.View(func(tx *bolt.Tx) error {
				v = append([]byte(nil), tx.Bucket(bMeta).Get(kCombined)...)
				return nil
			})
		})
		if len(v) > 0 && !bytes.Equal(v, []byte{1}) {
			t.Fatalf("meta %q = %x, want 01", kCombined, v)
		}
		return len(v) > 0
	}
	tests := []struct {
		name     string
		combined bool
	}{
		{"complete_lease applied", true},
		{"completion and lease apart", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMachine(t)
			if m.CombinedApplied() {
				t.Fatal("a new machine reports a complete_lease applied")
			}
			cmds := history(t, m, tt.combined)
			check := func(what string, m *Machine) {
				t.Helper()
				if got, key := m.CombinedApplied(), hasKey(t, m); got != tt.combined || key != tt.combined {
					t.Fatalf("%s: CombinedApplied %v, meta key %v; want %v", what, got, key, tt.combined)
				}
			}
			check("applied", m)
			// The key is part of the file format (snapshots carry it): meta "combined" = 01.
			if pinned := fmt.Sprintf("%x %x 01\n", "meta", "combined"); bytes.Contains(rawState(t, m), []byte(pinned)) != tt.combined {
				t.Fatalf("raw state holds %q: %v, want %v", pinned, !tt.combined, tt.combined)
			}
			snap := snapshotBytes(t, m)

			restored := newMachine(t)
			if err := restored.Restore(bytes.NewReader(snap)); err != nil {
				t.Fatal(err)
			}
			check("restored from a snapshot", restored)

			// A replica that applied a complete_lease of its own, restored from this snapshot.
			other := newMachine(t)
			history(t, other, true)
			if err := other.Restore(bytes.NewReader(snap)); err != nil {
				t.Fatal(err)
			}
			check("restored over a state that had applied one", other)

			rebuilt := newMachine(t)
			for _, c := range cmds {
				rebuilt.Apply(encodeCmd(t, c))
			}
			check("rebuilt from the log", rebuilt)
		})
	}
}

// TestMachineJobFinished: JobFinished is closed by the command that finishes a job (its last
// task completed, or dead), not by the commands before it, and by Close.
func TestMachineJobFinished(t *testing.T) {
	m := newMachine(t)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	do(t, m, Command{Op: OpDefine, At: at(0), Pipeline: &queue.Pipeline{Name: "one", Stages: []queue.StageDef{{Name: "s"}}, MaxAttempts: 1}}, nil)
	ch := m.JobFinished()
	do(t, m, Command{Op: OpSubmit, At: at(time.Second), Name: "one", Inputs: filesOf("x", "y")}, nil)
	l1 := do(t, m, Command{Op: OpLease, At: at(2 * time.Second), Name: StageQueue("one", 0), Worker: "w"}, nil).Lease
	l2 := do(t, m, Command{Op: OpLease, At: at(2 * time.Second), Name: StageQueue("one", 0), Worker: "w"}, nil).Lease
	do(t, m, Command{Op: OpComplete, At: at(3 * time.Second), Lease: l1, Output: ptr(fileOf("out/x"))}, nil)
	if closed(ch) {
		t.Fatal("JobFinished closed while the job still had a task to run")
	}
	do(t, m, Command{Op: OpFail, At: at(3 * time.Second), Lease: l2, Error: "boom"}, nil) // one attempt: dead
	if !closed(ch) {
		t.Fatal("JobFinished not closed by the command that finished the job")
	}
	ch = m.JobFinished()
	if closed(ch) {
		t.Fatal("a new JobFinished channel is already closed")
	}
	do(t, m, Command{Op: OpLease, At: at(4 * time.Second), Name: StageQueue("one", 0), Worker: "w"}, queue.ErrEmpty)
	if closed(ch) {
		t.Fatal("JobFinished closed by an empty lease")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Fatal("JobFinished not closed by Close")
	}
}
