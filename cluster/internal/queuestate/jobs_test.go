package queuestate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// fileOf is a valid File whose content is name itself.
func fileOf(name string) queue.File {
	sum := sha256.Sum256([]byte(name))
	return queue.File{Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(name))}
}

func filesOf(names ...string) []queue.File {
	out := make([]queue.File, len(names))
	for i, n := range names {
		out[i] = fileOf(n)
	}
	return out
}

func mustDefine(t *testing.T, q *Queue, p queue.Pipeline) {
	t.Helper()
	if err := q.DefinePipeline(p); err != nil {
		t.Fatalf("DefinePipeline(%+v): %v", p, err)
	}
}

func mustSubmit(t *testing.T, q *Queue, request, pipeline string, inputs []queue.File) queue.JobID {
	t.Helper()
	id, err := q.Submit(context.Background(), request, pipeline, inputs)
	if err != nil {
		t.Fatalf("Submit(%q, %q): %v", request, pipeline, err)
	}
	return id
}

func mustJob(t *testing.T, q *Queue, id queue.JobID) queue.Job {
	t.Helper()
	j, err := q.Job(id)
	if err != nil {
		t.Fatalf("Job(%d): %v", id, err)
	}
	return j
}

// leaseStage leases the next task of stage k and decodes its StageTask.
func leaseStage(t *testing.T, q *Queue, pipeline string, k int) (Lease, StageTask) {
	t.Helper()
	l := mustLease(t, q, StageQueue(pipeline, k), "w")
	var st StageTask
	if err := json.Unmarshal(l.Payload, &st); err != nil {
		t.Fatalf("payload of task %d is not a StageTask: %v: %s", l.TaskID, err, l.Payload)
	}
	if st.Stage != k {
		t.Fatalf("task %d from %s names stage %d", l.TaskID, StageQueue(pipeline, k), st.Stage)
	}
	return l, st
}

func mustComplete(t *testing.T, q *Queue, l Lease, out queue.File) {
	t.Helper()
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Complete(l, b); err != nil {
		t.Fatalf("Complete(task %d, %s): %v", l.TaskID, out.Name, err)
	}
}

// outName is the output a test worker produces for a stage task: stage name + its inputs.
func outName(stage string, st StageTask) string {
	names := make([]string, len(st.Inputs))
	for i, f := range st.Inputs {
		names[i] = f.Name
	}
	return stage + "/" + strings.Join(names, "+")
}

// wantStages checks a job's per-stage counters, as {expected, done, dead} triples.
func wantStages(t *testing.T, j queue.Job, want ...[3]int) {
	t.Helper()
	if len(j.Stages) != len(want) {
		t.Fatalf("job %d has %d stages; want %d", j.ID, len(j.Stages), len(want))
	}
	for k, w := range want {
		s := j.Stages[k]
		if got := [3]int{s.Expected, s.Done, s.Dead}; got != w {
			t.Errorf("job %d stage %d (%s) {expected, done, dead} = %v; want %v", j.ID, k, s.Name, got, w)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func threeStage(name string) queue.Pipeline {
	return queue.Pipeline{Name: name, Stages: []queue.StageDef{{Name: "a"}, {Name: "b"}, {Name: "c", Merge: true}}}
}

func TestDefinePipelineValidation(t *testing.T) {
	one := []queue.StageDef{{Name: "s"}}
	tests := []struct {
		name string
		p    queue.Pipeline
	}{
		{"empty name", queue.Pipeline{Name: "", Stages: one}},
		{"upper case", queue.Pipeline{Name: "Thumbs", Stages: one}},
		{"slash", queue.Pipeline{Name: "a/b", Stages: one}},
		{"space", queue.Pipeline{Name: "a b", Stages: one}},
		{"leading dash", queue.Pipeline{Name: "-a", Stages: one}},
		{"trailing dot", queue.Pipeline{Name: "a.", Stages: one}},
		{"65 characters", queue.Pipeline{Name: strings.Repeat("a", 65), Stages: one}},
		{"no stages", queue.Pipeline{Name: "p"}},
		{"empty stage list", queue.Pipeline{Name: "p", Stages: []queue.StageDef{}}},
		{"65 stages", queue.Pipeline{Name: "p", Stages: make([]queue.StageDef, 65)}},
		{"bad stage name", queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "ok"}, {Name: "Bad"}}}},
		{"empty stage name", queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: ""}}}},
		{"negative max attempts", queue.Pipeline{Name: "p", Stages: one, MaxAttempts: -1}},
		{"max attempts too big", queue.Pipeline{Name: "p", Stages: one, MaxAttempts: 1001}},
		{"negative backoff", queue.Pipeline{Name: "p", Stages: one, Backoff: -time.Second}},
	}
	q, _, _ := newTest(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Validate(); !errors.Is(err, queue.ErrInvalid) {
				t.Errorf("Validate = %v; want ErrInvalid", err)
			}
			if err := q.DefinePipeline(tt.p); !errors.Is(err, queue.ErrInvalid) {
				t.Errorf("DefinePipeline = %v; want ErrInvalid", err)
			}
		})
	}
	if ps, err := q.Pipelines(); err != nil || len(ps) != 0 {
		t.Fatalf("Pipelines after invalid definitions = %+v, %v; want none", ps, err)
	}

	// The limits themselves are valid, and a redefinition replaces.
	valid := []queue.Pipeline{
		{Name: "a", Stages: one},
		{Name: strings.Repeat("b", 64), Stages: make([]queue.StageDef, 64), MaxAttempts: 1000, Backoff: time.Hour},
		{Name: "c0.x_y-z", Stages: []queue.StageDef{{Name: "m", Merge: true}}},
		{Name: "a", Stages: []queue.StageDef{{Name: "s"}, {Name: "t"}}},
	}
	for i := range valid[1].Stages {
		valid[1].Stages[i].Name = fmt.Sprint("s", i)
	}
	for _, p := range valid {
		mustDefine(t, q, p)
	}
	ps, err := q.Pipelines()
	if err != nil {
		t.Fatal(err)
	}
	want := []queue.Pipeline{valid[3], valid[1], valid[2]} // by name
	if !reflect.DeepEqual(ps, want) {
		t.Fatalf("Pipelines = %+v; want %+v", ps, want)
	}
}

func TestValidateInputs(t *testing.T) {
	good := fileOf("in/a.txt")
	with := func(mut func(*queue.File)) []queue.File {
		f := good
		mut(&f)
		return []queue.File{f}
	}
	tests := []struct {
		name   string
		inputs []queue.File
		ok     bool
	}{
		{"valid", filesOf("a", "dir/b.gz", "c"), true},
		{"empty", nil, false},
		{"empty slice", []queue.File{}, false},
		{"too many", make([]queue.File, queue.MaxJobInputs+1), false},
		{"duplicate names", []queue.File{fileOf("a"), fileOf("b"), fileOf("a")}, false},
		{"short sha", with(func(f *queue.File) { f.SHA256 = "abc" }), false},
		{"upper-case sha", with(func(f *queue.File) { f.SHA256 = strings.ToUpper(f.SHA256) }), false},
		{"non-hex sha", with(func(f *queue.File) { f.SHA256 = strings.Repeat("g", 64) }), false},
		{"no sha", with(func(f *queue.File) { f.SHA256 = "" }), false},
		{"negative size", with(func(f *queue.File) { f.Size = -1 }), false},
		{"parent", with(func(f *queue.File) { f.Name = "../x" }), false},
		{"dot dot", with(func(f *queue.File) { f.Name = ".." }), false},
		{"dot", with(func(f *queue.File) { f.Name = "." }), false},
		{"inner parent", with(func(f *queue.File) { f.Name = "a/../../x" }), false},
		{"absolute", with(func(f *queue.File) { f.Name = "/etc/passwd" }), false},
		{"unclean", with(func(f *queue.File) { f.Name = "a//b" }), false},
		{"trailing slash", with(func(f *queue.File) { f.Name = "a/" }), false},
		{"dot component", with(func(f *queue.File) { f.Name = "./a" }), false},
		{"empty name", with(func(f *queue.File) { f.Name = "" }), false},
		{"long name", with(func(f *queue.File) { f.Name = strings.Repeat("n", queue.MaxFileName+1) }), false},
		{"backslash", with(func(f *queue.File) { f.Name = `a\b` }), false},
		{"nul", with(func(f *queue.File) { f.Name = "a\x00b" }), false},
	}
	q, _, _ := newTest(t, nil)
	mustDefine(t, q, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := queue.ValidateInputs(tt.inputs)
			if tt.ok {
				if err != nil {
					t.Fatalf("ValidateInputs = %v; want nil", err)
				}
				mustSubmit(t, q, "", "p", tt.inputs)
				return
			}
			if !errors.Is(err, queue.ErrInvalid) {
				t.Fatalf("ValidateInputs = %v; want ErrInvalid", err)
			}
			if id, err := q.Submit(context.Background(), "", "p", tt.inputs); !errors.Is(err, queue.ErrInvalid) {
				t.Fatalf("Submit = %d, %v; want ErrInvalid", id, err)
			}
		})
	}
	// Only the valid case created anything.
	if jobs, err := q.Jobs("", 0); err != nil || len(jobs) != 1 {
		t.Fatalf("Jobs = %+v, %v; want the one valid job", jobs, err)
	}
	if s, err := q.Stats(StageQueue("p", 0)); err != nil || s.Depth != 3 {
		t.Fatalf("Stats = %+v, %v; want the valid job's 3 tasks", s, err)
	}
}

func TestSubmitErrors(t *testing.T) {
	q, _, _ := newTest(t, nil)
	mustDefine(t, q, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		request  string
		pipeline string
		want     error
	}{
		{"undefined pipeline", context.Background(), "", "nope", queue.ErrNotFound},
		{"undefined pipeline with request id", context.Background(), "r", "nope", queue.ErrNotFound},
		{"empty pipeline name", context.Background(), "", "", queue.ErrNotFound},
		{"request id too long", context.Background(), strings.Repeat("r", 129), "p", queue.ErrInvalid},
		{"canceled", canceled, "", "p", context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if id, err := q.Submit(tt.ctx, tt.request, tt.pipeline, filesOf("a")); !errors.Is(err, tt.want) {
				t.Fatalf("Submit = %d, %v; want %v", id, err, tt.want)
			}
		})
	}
	if jobs, err := q.Jobs("", 0); err != nil || len(jobs) != 0 {
		t.Fatalf("Jobs = %+v, %v; want none", jobs, err)
	}
	// A failed submit does not burn its request id.
	id := mustSubmit(t, q, "r", "p", filesOf("a"))
	if j := mustJob(t, q, id); j.Pipeline.Name != "p" {
		t.Fatalf("job = %+v", j)
	}
	if _, err := q.Job(id + 1); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Job(%d) = %v; want ErrNotFound", id+1, err)
	}
}

func TestSubmitIdempotent(t *testing.T) {
	q, _, _ := newTest(t, nil)
	mustDefine(t, q, threeStage("p"))
	mustDefine(t, q, queue.Pipeline{Name: "other", Stages: []queue.StageDef{{Name: "s"}}})
	inputs := filesOf("x", "y", "z")
	first := mustSubmit(t, q, "req-1", "p", inputs)
	tests := []struct {
		name     string
		pipeline string
		inputs   []queue.File
	}{
		{"same request", "p", inputs},
		{"same request, other inputs", "p", filesOf("q")},
		{"same request, other pipeline", "other", inputs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if id := mustSubmit(t, q, "req-1", tt.pipeline, tt.inputs); id != first {
				t.Fatalf("repeated submit = job %d; want %d", id, first)
			}
		})
	}
	if s, err := q.Stats(StageQueue("p", 0)); err != nil || s.Depth != len(inputs) {
		t.Fatalf("Stats = %+v, %v; want %d tasks", s, err, len(inputs))
	}
	if s, err := q.Stats(StageQueue("other", 0)); err != nil || s.Depth != 0 {
		t.Fatalf("Stats(other) = %+v, %v; want no task", s, err)
	}
	if j := mustJob(t, q, first); !reflect.DeepEqual(j.Inputs, inputs) {
		t.Fatalf("job inputs %+v; want the first submit's", j.Inputs)
	}
	// Without a request id every submit is a new job; another id is another job.
	a := mustSubmit(t, q, "", "p", inputs)
	b := mustSubmit(t, q, "", "p", inputs)
	c := mustSubmit(t, q, "req-2", "p", inputs)
	if a == first || b == a || c == b || c == first {
		t.Fatalf("job ids %d %d %d %d; want distinct", first, a, b, c)
	}
	if s, _ := q.Stats(StageQueue("p", 0)); s.Depth != 4*len(inputs) {
		t.Fatalf("depth %d; want %d", s.Depth, 4*len(inputs))
	}
}

// TestPipelineFlow pushes three inputs through a, b and a merge c.
func TestPipelineFlow(t *testing.T) {
	q, c, _ := newTest(t, nil)
	mustDefine(t, q, threeStage("p"))
	inputs := filesOf("in/0", "in/1", "in/2")
	submitted := c.Now()
	id := mustSubmit(t, q, "", "p", inputs)
	c.Advance(time.Second)

	j := mustJob(t, q, id)
	if j.State != queue.JobRunning || !j.Created.Equal(submitted) || !j.Finished.IsZero() || len(j.Outputs) != 0 || j.IsFinished() {
		t.Fatalf("new job = %+v", j)
	}
	if !reflect.DeepEqual(j.Inputs, inputs) || j.Pipeline.Name != "p" || len(j.Pipeline.Stages) != 3 {
		t.Fatalf("new job = %+v", j)
	}
	wantStages(t, j, [3]int{3, 0, 0}, [3]int{3, 0, 0}, [3]int{1, 0, 0})
	for k, name := range []string{"a", "b", "c"} {
		if j.Stages[k].Name != name {
			t.Fatalf("stage %d named %q; want %q", k, j.Stages[k].Name, name)
		}
	}
	if done, dead, total := j.Counts(); done != 0 || dead != 0 || total != 7 {
		t.Fatalf("Counts = %d, %d, %d; want 0, 0, 7", done, dead, total)
	}

	// Stage 0: one task per input, in slot order.
	var leases []Lease
	for slot := range inputs {
		l, st := leaseStage(t, q, "p", 0)
		if st.Job != id || st.Slot != slot || !reflect.DeepEqual(st.Inputs, inputs[slot:slot+1]) {
			t.Fatalf("stage 0 task = %+v; want slot %d of job %d", st, slot, id)
		}
		leases = append(leases, l)
	}
	wantEmpty(t, q, StageQueue("p", 0))
	wantEmpty(t, q, StageQueue("p", 1))
	// Complete out of order: the next stage keeps the slot.
	stage1 := map[int]queue.File{}
	for n, slot := range []int{2, 0, 1} {
		out := fileOf(fmt.Sprintf("a/%d", slot))
		mustComplete(t, q, leases[slot], out)
		stage1[slot] = out
		wantStages(t, mustJob(t, q, id), [3]int{3, n + 1, 0}, [3]int{3, 0, 0}, [3]int{1, 0, 0})
		l, st := leaseStage(t, q, "p", 1)
		if st.Job != id || st.Slot != slot || !reflect.DeepEqual(st.Inputs, []queue.File{out}) {
			t.Fatalf("stage 1 task = %+v; want slot %d with input %+v", st, slot, out)
		}
		leases[slot] = l
	}
	if ti, err := q.TaskInfo(leases[0].TaskID); err != nil || ti.Job != id || ti.Stage != 1 || ti.StageName != "b" || ti.Pipeline != "p" || ti.State != "leased" {
		t.Fatalf("TaskInfo = %+v, %v", ti, err)
	}

	// Stage 1: the merge appears only when every slot is done.
	var outs []queue.File
	for slot := range inputs {
		outs = append(outs, fileOf(fmt.Sprintf("b/%d", slot)))
	}
	for n, slot := range []int{1, 2, 0} {
		wantEmpty(t, q, StageQueue("p", 2))
		mustComplete(t, q, leases[slot], outs[slot])
		wantStages(t, mustJob(t, q, id), [3]int{3, 3, 0}, [3]int{3, n + 1, 0}, [3]int{1, 0, 0})
	}
	ml, mt := leaseStage(t, q, "p", 2)
	if mt.Job != id || mt.Slot != 0 || !reflect.DeepEqual(mt.Inputs, outs) {
		t.Fatalf("merge task = %+v; want inputs %+v in slot order", mt, outs)
	}
	wantEmpty(t, q, StageQueue("p", 2))
	if j := mustJob(t, q, id); j.State != queue.JobRunning || len(j.Outputs) != 0 {
		t.Fatalf("job before the merge completes = %+v", j)
	}

	c.Advance(time.Second)
	final := fileOf("c/merged")
	mustComplete(t, q, ml, final)
	j = mustJob(t, q, id)
	if j.State != queue.JobDone || !j.IsFinished() || !j.Finished.Equal(c.Now()) || !reflect.DeepEqual(j.Outputs, []queue.File{final}) {
		t.Fatalf("finished job = %+v", j)
	}
	wantStages(t, j, [3]int{3, 3, 0}, [3]int{3, 3, 0}, [3]int{1, 1, 0})
	if done, dead, total := j.Counts(); done != 7 || dead != 0 || total != 7 {
		t.Fatalf("Counts = %d, %d, %d; want 7, 0, 7", done, dead, total)
	}
	if ti, err := q.TaskInfo(ml.TaskID); err != nil || ti.Output == nil || *ti.Output != final || ti.State != "done" {
		t.Fatalf("merge TaskInfo = %+v, %v", ti, err)
	}
	stats, err := q.StageStats()
	if err != nil || len(stats) != 3 {
		t.Fatalf("StageStats = %+v, %v", stats, err)
	}
	for k, s := range stats {
		want := uint64(3)
		if k == 2 {
			want = 1
		}
		if s.Pipeline != "p" || s.Stage != k || s.Completed != want || s.Depth != 0 || s.Leased != 0 {
			t.Errorf("StageStats[%d] = %+v", k, s)
		}
	}
	if jobs, err := q.Jobs("p", 0); err != nil || len(jobs) != 1 || jobs[0].State != queue.JobDone {
		t.Fatalf("Jobs = %+v, %v", jobs, err)
	}
}

// TestPipelineMergeFirstAndAfter: a merge as the first stage runs once over every input, and a
// stage after a merge runs once over its output.
func TestPipelineMergeFirstAndAfter(t *testing.T) {
	q, _, _ := newTest(t, nil)
	mustDefine(t, q, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "m", Merge: true}, {Name: "post"}}})
	inputs := filesOf("x", "y")
	id := mustSubmit(t, q, "", "p", inputs)
	wantStages(t, mustJob(t, q, id), [3]int{1, 0, 0}, [3]int{1, 0, 0})
	l, st := leaseStage(t, q, "p", 0)
	if !reflect.DeepEqual(st.Inputs, inputs) {
		t.Fatalf("first-stage merge inputs %+v; want %+v", st.Inputs, inputs)
	}
	wantEmpty(t, q, StageQueue("p", 0))
	mustComplete(t, q, l, fileOf("merged"))
	l, st = leaseStage(t, q, "p", 1)
	if st.Slot != 0 || !reflect.DeepEqual(st.Inputs, filesOf("merged")) {
		t.Fatalf("post task = %+v", st)
	}
	mustComplete(t, q, l, fileOf("final"))
	j := mustJob(t, q, id)
	wantStages(t, j, [3]int{1, 1, 0}, [3]int{1, 1, 0})
	if j.State != queue.JobDone || !reflect.DeepEqual(j.Outputs, filesOf("final")) {
		t.Fatalf("job = %+v", j)
	}
}

// TestCompleteInvalidResult: a pipeline task's result must be a JSON File; anything else is
// refused and changes nothing.
func TestCompleteInvalidResult(t *testing.T) {
	q, _, _ := newTest(t, nil)
	mustDefine(t, q, threeStage("p"))
	id := mustSubmit(t, q, "", "p", filesOf("in"))
	l, _ := leaseStage(t, q, "p", 0)
	before := mustJob(t, q, id)
	bad := func(mut func(*queue.File)) []byte {
		f := fileOf("out")
		mut(&f)
		b, _ := json.Marshal(f)
		return b
	}
	tests := []struct {
		name   string
		result []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"not json", []byte("out.txt")},
		{"truncated json", []byte(`{"name":"out"`)},
		{"json null", []byte("null")},
		{"json array", []byte(`[{"name":"out"}]`)},
		{"empty object", []byte(`{}`)},
		{"wrong type", []byte(`{"name":1}`)},
		{"escaping name", bad(func(f *queue.File) { f.Name = "../out" })},
		{"absolute name", bad(func(f *queue.File) { f.Name = "/out" })},
		{"bad sha", bad(func(f *queue.File) { f.SHA256 = "xyz" })},
		{"negative size", bad(func(f *queue.File) { f.Size = -5 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := q.Complete(l, tt.result); !errors.Is(err, queue.ErrInvalid) {
				t.Fatalf("Complete(%q) = %v; want ErrInvalid", tt.result, err)
			}
			task := mustGet(t, q, l.TaskID)
			if task.State != StateLeased || task.LeaseID != l.ID || len(task.Result) != 0 {
				t.Fatalf("task after refused Complete = %+v", task)
			}
			if j := mustJob(t, q, id); !reflect.DeepEqual(j, before) {
				t.Fatalf("job changed: %+v; was %+v", j, before)
			}
			for k := range 3 {
				s, err := q.Stats(StageQueue("p", k))
				want := queue.Stats{}
				if k == 0 {
					want.Leased = 1
				}
				if err != nil || s != want {
					t.Fatalf("Stats(stage %d) = %+v, %v; want %+v", k, s, err, want)
				}
			}
		})
	}
	mustComplete(t, q, l, fileOf("out"))
	wantStages(t, mustJob(t, q, id), [3]int{1, 1, 0}, [3]int{1, 0, 0}, [3]int{1, 0, 0})
}

// TestPipelineDeadLetters: with the pipeline's MaxAttempts of 2 (the queue's is 3) a poison
// input dies after two failures; the rest of the job runs without it and ends partial; a
// Retry brings the input back, re-runs the merge with every output, and the job ends done. A
// merge task that a re-run replaced is stale: its late completion moves nothing.
func TestPipelineDeadLetters(t *testing.T) {
	tests := []struct {
		name string
		// lateMerge: lease the first merge, retry the poison task while it runs, and
		// complete it only after the merge has been re-run.
		lateMerge bool
	}{
		{"merge completes before retry", false},
		{"stale merge completes after re-run", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, c, _ := newTest(t, nil) // MaxAttempts 3
			p := threeStage("p")
			p.MaxAttempts = 2
			mustDefine(t, q, p)
			inputs := filesOf("in/0", "in/poison", "in/2")
			id := mustSubmit(t, q, "", "p", inputs)

			var poison Lease
			for slot := range inputs {
				l, st := leaseStage(t, q, "p", 0)
				if slot == 1 {
					poison = l
					if err := q.Fail(l, "boom 1"); err != nil {
						t.Fatal(err)
					}
					continue
				}
				mustComplete(t, q, l, fileOf(outName("a", st)))
			}
			wantStages(t, mustJob(t, q, id), [3]int{3, 2, 0}, [3]int{3, 0, 0}, [3]int{1, 0, 0})
			wantEmpty(t, q, StageQueue("p", 0)) // backing off
			c.Advance(time.Second)
			l := mustLease(t, q, StageQueue("p", 0), "w")
			if l.TaskID != poison.TaskID || l.Attempt != 2 {
				t.Fatalf("redelivery = %+v; want task %d attempt 2", l, poison.TaskID)
			}
			if err := q.Fail(l, "boom 2"); err != nil {
				t.Fatal(err)
			}
			died := c.Now()

			// Dead after 2 attempts (not the queue's 3), with both errors.
			j := mustJob(t, q, id)
			wantStages(t, j, [3]int{3, 2, 1}, [3]int{2, 0, 0}, [3]int{1, 0, 0})
			if j.State != queue.JobRunning {
				t.Fatalf("job state %v; want running", j.State)
			}
			dead, err := q.DeadTasks("p")
			if err != nil || len(dead) != 1 {
				t.Fatalf("DeadTasks = %+v, %v; want the poison task", dead, err)
			}
			d := dead[0]
			if d.ID != poison.TaskID || d.Job != id || d.Stage != 0 || d.StageName != "a" || d.State != "dead" ||
				d.Attempts != 2 || !d.Finished.Equal(died) || !reflect.DeepEqual(d.Inputs, inputs[1:2]) {
				t.Fatalf("dead task = %+v", d)
			}
			if len(d.Errors) != 2 || d.Errors[0].Message != "boom 1" || d.Errors[1].Message != "boom 2" ||
				d.Errors[0].Attempt != 1 || d.Errors[1].Attempt != 2 {
				t.Fatalf("dead task errors = %+v", d.Errors)
			}
			if s, _ := q.Stats(StageQueue("p", 0)); s.Dead != 1 || s.Completed != 2 || s.Retries != 1 {
				t.Fatalf("Stats(stage 0) = %+v", s)
			}
			if other, err := q.DeadTasks(""); err != nil || !reflect.DeepEqual(other, dead) {
				t.Fatalf("DeadTasks(\"\") = %+v, %v; want %+v", other, err, dead)
			}
			if _, err := q.DeadTasks("nope"); !errors.Is(err, queue.ErrNotFound) {
				t.Fatalf("DeadTasks(nope) = %v; want ErrNotFound", err)
			}

			// The other two go through stage 1; the merge runs over their outputs only.
			for range 2 {
				l, st := leaseStage(t, q, "p", 1)
				mustComplete(t, q, l, fileOf(outName("b", st)))
			}
			wantEmpty(t, q, StageQueue("p", 1))
			wantStages(t, mustJob(t, q, id), [3]int{3, 2, 1}, [3]int{2, 2, 0}, [3]int{1, 0, 0})
			oldMerge, mt := leaseStage(t, q, "p", 2)
			if want := []queue.File{fileOf("b/a/in/0"), fileOf("b/a/in/2")}; !reflect.DeepEqual(mt.Inputs, want) {
				t.Fatalf("merge inputs %+v; want %+v", mt.Inputs, want)
			}
			if !tt.lateMerge {
				mustComplete(t, q, oldMerge, fileOf("c/partial"))
				j = mustJob(t, q, id)
				if j.State != queue.JobPartial || !j.IsFinished() || !j.Finished.Equal(c.Now()) || !reflect.DeepEqual(j.Outputs, filesOf("c/partial")) {
					t.Fatalf("partial job = %+v", j)
				}
				wantStages(t, j, [3]int{3, 2, 1}, [3]int{2, 2, 0}, [3]int{1, 1, 0})
			}

			// Retry: the job runs again.
			c.Advance(time.Second)
			if err := q.Retry(poison.TaskID); err != nil {
				t.Fatal(err)
			}
			j = mustJob(t, q, id)
			if j.State != queue.JobRunning || !j.Finished.IsZero() || j.Stages[0].Dead != 0 || j.Stages[1].Expected != 3 {
				t.Fatalf("job after Retry = %+v", j)
			}
			if dead, err := q.DeadTasks("p"); err != nil || len(dead) != 0 {
				t.Fatalf("DeadTasks after Retry = %+v, %v", dead, err)
			}
			l, st := leaseStage(t, q, "p", 0)
			if l.TaskID != poison.TaskID || l.Attempt != 1 || st.Slot != 1 {
				t.Fatalf("retried delivery = %+v %+v", l, st)
			}
			mustComplete(t, q, l, fileOf(outName("a", st)))
			l, st = leaseStage(t, q, "p", 1)
			if st.Slot != 1 {
				t.Fatalf("stage 1 task for the retried input = %+v", st)
			}
			mustComplete(t, q, l, fileOf(outName("b", st)))
			wantStages(t, mustJob(t, q, id), [3]int{3, 3, 0}, [3]int{3, 3, 0}, [3]int{1, 0, 0})

			newMerge, mt := leaseStage(t, q, "p", 2)
			if newMerge.TaskID == oldMerge.TaskID {
				t.Fatalf("the merge was not re-run as a new task: %+v", newMerge)
			}
			if want := filesOf("b/a/in/0", "b/a/in/poison", "b/a/in/2"); !reflect.DeepEqual(mt.Inputs, want) {
				t.Fatalf("re-run merge inputs %+v; want %+v", mt.Inputs, want)
			}
			if tt.lateMerge {
				before := mustJob(t, q, id)
				mustComplete(t, q, oldMerge, fileOf("c/stale")) // its lease is still live
				if j := mustJob(t, q, id); !reflect.DeepEqual(j, before) {
					t.Fatalf("stale merge moved the job: %+v; was %+v", j, before)
				}
			}
			mustComplete(t, q, newMerge, fileOf("c/all"))
			j = mustJob(t, q, id)
			if j.State != queue.JobDone || !j.Finished.Equal(c.Now()) || !reflect.DeepEqual(j.Outputs, filesOf("c/all")) {
				t.Fatalf("job after re-run = %+v", j)
			}
			wantStages(t, j, [3]int{3, 3, 0}, [3]int{3, 3, 0}, [3]int{1, 1, 0})
		})
	}
}

// TestMergeAllInputsDead: when nothing reaches a merge it is counted dead without running.
func TestMergeAllInputsDead(t *testing.T) {
	tests := []struct {
		name   string
		stages []queue.StageDef
		want   [][3]int
	}{
		{"merge second", []queue.StageDef{{Name: "a"}, {Name: "m", Merge: true}},
			[][3]int{{2, 0, 2}, {1, 0, 1}}},
		{"merge third", []queue.StageDef{{Name: "a"}, {Name: "b"}, {Name: "m", Merge: true}},
			[][3]int{{2, 0, 2}, {0, 0, 0}, {1, 0, 1}}},
		{"stage after merge", []queue.StageDef{{Name: "a"}, {Name: "m", Merge: true}, {Name: "post"}},
			[][3]int{{2, 0, 2}, {1, 0, 1}, {0, 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, c, _ := newTest(t, nil)
			mustDefine(t, q, queue.Pipeline{Name: "p", Stages: tt.stages, MaxAttempts: 1})
			id := mustSubmit(t, q, "", "p", filesOf("x", "y"))
			for range 2 {
				l, _ := leaseStage(t, q, "p", 0)
				if err := q.Fail(l, "poison"); err != nil {
					t.Fatal(err)
				}
			}
			j := mustJob(t, q, id)
			wantStages(t, j, tt.want...)
			if j.State != queue.JobPartial || !j.Finished.Equal(c.Now()) || len(j.Outputs) != 0 {
				t.Fatalf("job = %+v; want partial, finished, no outputs", j)
			}
			for k := 1; k < len(tt.stages); k++ {
				if s, err := q.Stats(StageQueue("p", k)); err != nil || s != (queue.Stats{}) {
					t.Fatalf("Stats(stage %d) = %+v, %v; want nothing run", k, s, err)
				}
			}
		})
	}
}

// TestPipelineLeaseExpiry: a pipeline task whose lease runs out is redelivered with attempt+1
// and the late finisher cannot move the job.
func TestPipelineLeaseExpiry(t *testing.T) {
	q, c, _ := newTest(t, nil)
	mustDefine(t, q, threeStage("p"))
	id := mustSubmit(t, q, "", "p", filesOf("in"))
	l1, st1 := leaseStage(t, q, "p", 0)
	c.Advance(10 * time.Second) // lease
	wantEmpty(t, q, StageQueue("p", 0))
	c.Advance(time.Second) // backoff
	l2, st2 := leaseStage(t, q, "p", 0)
	if l2.TaskID != l1.TaskID || l2.Attempt != 2 || l2.ID == l1.ID || !reflect.DeepEqual(st1, st2) {
		t.Fatalf("redelivery = %+v; first %+v", l2, l1)
	}
	before := mustJob(t, q, id)
	if err := q.Complete(l1, mustJSON(t, fileOf("late"))); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("late Complete = %v; want ErrLeaseLost", err)
	}
	if j := mustJob(t, q, id); !reflect.DeepEqual(j, before) {
		t.Fatalf("late Complete moved the job: %+v", j)
	}
	wantEmpty(t, q, StageQueue("p", 1))
	mustComplete(t, q, l2, fileOf("fresh"))
	wantStages(t, mustJob(t, q, id), [3]int{1, 1, 0}, [3]int{1, 0, 0}, [3]int{1, 0, 0})
	_, st := leaseStage(t, q, "p", 1)
	if !reflect.DeepEqual(st.Inputs, filesOf("fresh")) {
		t.Fatalf("stage 1 inputs %+v; want the fresh output", st.Inputs)
	}
	task := mustGet(t, q, l1.TaskID)
	if len(task.Errors) != 1 || !strings.Contains(task.Errors[0].Message, "expired") {
		t.Fatalf("task errors = %+v", task.Errors)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPipelineBackoff: Pipeline.Backoff replaces the queue's BackoffBase (1s, capped at 4s)
// for the pipeline's tasks, for a Fail as for an expired lease; a cap below it is raised to it.
func TestPipelineBackoff(t *testing.T) {
	tests := []struct {
		name    string
		backoff time.Duration
		expire  bool            // end each attempt by lease expiry instead of Fail
		want    []time.Duration // delay after attempt 1, 2, ...
	}{
		{"queue default", 0, false, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}},
		{"below the cap", 3 * time.Second, false, []time.Duration{3 * time.Second, 4 * time.Second, 4 * time.Second}},
		{"above the cap", 10 * time.Second, false, []time.Duration{10 * time.Second, 10 * time.Second}},
		{"sub-second", 100 * time.Millisecond, false, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}},
		{"on expiry", 3 * time.Second, true, []time.Duration{3 * time.Second, 4 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, c, _ := newTest(t, nil)
			mustDefine(t, q, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}, MaxAttempts: 100, Backoff: tt.backoff})
			mustSubmit(t, q, "", "p", filesOf("in"))
			sq := StageQueue("p", 0)
			for i, d := range tt.want {
				l := mustLease(t, q, sq, "w")
				if l.Attempt != i+1 {
					t.Fatalf("attempt %d; want %d", l.Attempt, i+1)
				}
				end := c.Now()
				if tt.expire {
					c.Advance(10 * time.Second)
					end = c.Now()
					wantEmpty(t, q, sq) // notices the expiry
				} else if err := q.Fail(l, "boom"); err != nil {
					t.Fatal(err)
				}
				task := mustGet(t, q, l.TaskID)
				if task.State != StateReady || !task.ReadyAt.Equal(end.Add(d)) {
					t.Fatalf("after attempt %d: ready at %v (+%v); want +%v", i+1, task.ReadyAt, task.ReadyAt.Sub(end), d)
				}
				if at, ok, err := q.NextReady(sq, c.Now()); err != nil || !ok || !at.Equal(end.Add(d)) {
					t.Fatalf("NextReady = %v, %v, %v; want %v", at, ok, err, end.Add(d))
				}
				c.Advance(d - time.Millisecond/2)
				wantEmpty(t, q, sq)
				c.Advance(time.Millisecond / 2)
			}
		})
	}
}

// TestPipelineKeepsDefinition: a job keeps the definition it was submitted with, including
// its attempt limit, when the pipeline is redefined.
func TestPipelineKeepsDefinition(t *testing.T) {
	q, _, _ := newTest(t, nil)
	mustDefine(t, q, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}, MaxAttempts: 1})
	id := mustSubmit(t, q, "", "p", filesOf("in"))
	mustDefine(t, q, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}, {Name: "t"}}, MaxAttempts: 10})
	l := mustLease(t, q, StageQueue("p", 0), "w")
	if err := q.Fail(l, "once"); err != nil {
		t.Fatal(err)
	}
	j := mustJob(t, q, id)
	if len(j.Stages) != 1 || j.Pipeline.MaxAttempts != 1 || j.State != queue.JobPartial {
		t.Fatalf("job = %+v; want the one-stage definition, dead after one attempt", j)
	}
}

func TestNextReady(t *testing.T) {
	q, c, _ := newTest(t, nil)
	next := func() (time.Time, bool) {
		t.Helper()
		at, ok, err := q.NextReady("p", c.Now())
		if err != nil {
			t.Fatalf("NextReady: %v", err)
		}
		return at, ok
	}
	want := func(name string, wantAt time.Time, wantOK bool) {
		t.Helper()
		at, ok := next()
		if ok != wantOK || (ok && !at.Equal(wantAt)) {
			t.Fatalf("%s: NextReady = %v, %v; want %v, %v", name, at, ok, wantAt, wantOK)
		}
	}
	want("no queue", time.Time{}, false)
	if _, ok, err := q.NextReady("", c.Now()); ok || err != nil {
		t.Fatalf("NextReady(\"\") = %v, %v", ok, err)
	}

	id := mustEnqueue(t, q, "p", "x")
	enqueued := c.Now()
	want("ready now", c.Now(), true)
	c.Advance(time.Minute)
	want("ready since a minute", c.Now(), true)
	if at, ok, err := q.NextReady("p", enqueued.Add(-time.Hour)); err != nil || !ok || !at.Equal(enqueued) {
		t.Fatalf("NextReady before the task was ready = %v, %v, %v; want %v", at, ok, err, enqueued)
	}
	if _, ok, _ := q.NextReady("other", c.Now()); ok {
		t.Fatal("NextReady of another queue reports work")
	}

	l := mustLease(t, q, "p", "w")
	want("leased", l.ExpiresAt, true)
	c.Advance(4 * time.Second)
	l, _ = q.Heartbeat(l)
	want("heartbeat", l.ExpiresAt, true)

	if err := q.Fail(l, "boom"); err != nil {
		t.Fatal(err)
	}
	want("backing off", c.Now().Add(time.Second), true)

	// A backing-off task and a leased one: the earlier wins.
	mustEnqueue(t, q, "p", "y")
	l2 := mustLease(t, q, "p", "w") // y; x is still backing off
	want("backoff before lease expiry", c.Now().Add(time.Second), true)
	c.Advance(time.Second)
	l = mustLease(t, q, "p", "w") // x again
	if l.TaskID != id {
		t.Fatalf("leased %d; want %d", l.TaskID, id)
	}
	want("two leases", l2.ExpiresAt, true)

	// An expired lease nobody noticed yet: work now.
	c.Advance(time.Hour)
	want("expired lease", c.Now(), true)
	if err := q.Complete(l2, nil); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatal(err)
	}
	for range 2 { // both redelivered
		l := mustLease(t, q, "p", "w")
		if err := q.Complete(l, nil); err != nil {
			t.Fatal(err)
		}
	}
	want("all done", time.Time{}, false)

	// Dead tasks are not work.
	mustEnqueue(t, q, "p", "z")
	for range 3 {
		c.Advance(time.Minute)
		if err := q.Fail(mustLease(t, q, "p", "w"), "poison"); err != nil {
			t.Fatal(err)
		}
	}
	if d, _ := q.Dead("p"); len(d) != 1 {
		t.Fatalf("dead = %+v", d)
	}
	want("dead only", time.Time{}, false)
}

// TestMergePayloadOverLimit: a merge whose inputs do not fit in MaxPayloadBytes must not
// wedge the job or the stage queue. Every stage-0 task below fits; the merge of all ten does
// not.
func TestMergePayloadOverLimit(t *testing.T) {
	q, c, _ := newTest(t, func(c *Config) { c.MaxPayloadBytes = 1024 })
	mustDefine(t, q, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "a"}, {Name: "m", Merge: true}}, MaxAttempts: 2})
	var names []string
	for i := range 10 {
		names = append(names, fmt.Sprintf("input/file-%02d.txt", i))
	}
	id := mustSubmit(t, q, "", "p", filesOf(names...))
	var leases []Lease
	for range names {
		l, _ := leaseStage(t, q, "p", 0)
		leases = append(leases, l)
	}
	for i, l := range leases {
		if err := q.Complete(l, mustJSON(t, fileOf("out/"+names[i]))); err != nil {
			t.Errorf("Complete of stage-0 task %d (slot %d) = %v; want nil", l.TaskID, i, err)
		}
	}
	if !t.Failed() {
		if _, st := leaseStage(t, q, "p", 1); len(st.Inputs) != len(names) {
			t.Errorf("merge has %d inputs; want %d", len(st.Inputs), len(names))
		}
	}
	// Whatever the outcome for the job, the stage queue keeps working once a refused
	// lease runs out.
	c.Advance(time.Hour)
	for range 5 {
		_, err := q.Lease(context.Background(), StageQueue("p", 0), "w")
		if err != nil && !errors.Is(err, queue.ErrEmpty) {
			t.Fatalf("Lease(stage 0) after the refused completion = %v; want a task or ErrEmpty", err)
		}
		c.Advance(time.Hour)
	}
	if _, err := q.Stats(StageQueue("p", 0)); err != nil {
		t.Fatalf("Stats(stage 0) = %v", err)
	}
	j := mustJob(t, q, id)
	t.Logf("job = %+v", j.Stages)
}
