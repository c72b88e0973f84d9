package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/queue"
)

// fakeQueue is an in-memory Queue: blobs in a map, one pipeline "logs", jobs and tasks as
// set by the test; err, when set, fails every call.
type fakeQueue struct {
	mu     sync.Mutex
	blobs  map[string][]byte
	err    error
	inputs []queue.File // the last submit's
	jobs   map[queue.JobID]queue.Job
	tasks  map[queue.TaskID]queue.TaskInfo
	stats  []queue.StageStats
	work   []cluster.WorkerStats
	// listed and dead are what Jobs and DeadTasks answer.
	listed []queue.Job
	dead   []queue.TaskInfo
	// changed is closed (and replaced) by setJob.
	changed chan struct{}
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{blobs: map[string][]byte{}, jobs: map[queue.JobID]queue.Job{}, tasks: map[queue.TaskID]queue.TaskInfo{}, changed: make(chan struct{})}
}

// setJob stores j and wakes WaitJob's waiters.
func (f *fakeQueue) setJob(j queue.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[j.ID] = j
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeQueue) WaitJob(ctx context.Context, id queue.JobID) (queue.Job, error) {
	for {
		f.mu.Lock()
		changed := f.changed
		f.mu.Unlock()
		j, err := f.Job(id)
		if err != nil || j.IsFinished() {
			return j, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return j, ctx.Err()
		}
	}
}

func (f *fakeQueue) PutBlob(_ context.Context, r io.Reader) (string, int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", 0, fmt.Errorf("blobs: write: %w", err)
	}
	if f.err != nil {
		return "", 0, f.err
	}
	sum := sha256.Sum256(b)
	sha := hex.EncodeToString(sum[:])
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[sha] = b
	return sha, int64(len(b)), nil
}

func (f *fakeQueue) OpenBlob(_ context.Context, sha string) (io.ReadCloser, int64, error) {
	if f.err != nil {
		return nil, 0, f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[sha]
	if !ok {
		return nil, 0, fmt.Errorf("%w: blob %s", queue.ErrNotFound, sha)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func (f *fakeQueue) Pipelines() ([]queue.Pipeline, error) {
	return []queue.Pipeline{{Name: "logs", Stages: []queue.StageDef{{Name: "gunzip"}, {Name: "wc", Merge: true}}}}, f.err
}

func (f *fakeQueue) Submit(_ context.Context, p string, in []queue.File, requestID string) (queue.JobID, error) {
	if f.err != nil {
		return 0, f.err
	}
	if p != "logs" {
		return 0, fmt.Errorf("%w: pipeline %q is not defined", queue.ErrNotFound, p)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inputs = in
	id := queue.JobID(len(f.jobs) + 1)
	f.jobs[id] = queue.Job{ID: id, Pipeline: queue.Pipeline{Name: p}, Inputs: in, State: queue.JobRunning}
	return id, nil
}

func (f *fakeQueue) Job(id queue.JobID) (queue.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return j, fmt.Errorf("queue: job %d: %w", id, queue.ErrNotFound)
	}
	return j, f.err
}

func (f *fakeQueue) Jobs(string, int) ([]queue.Job, error)      { return f.listed, f.err }
func (f *fakeQueue) QueueStats() ([]queue.StageStats, error)    { return f.stats, f.err }
func (f *fakeQueue) DeadTasks(string) ([]queue.TaskInfo, error) { return f.dead, f.err }
func (f *fakeQueue) WorkerStats() []cluster.WorkerStats         { return f.work }

func (f *fakeQueue) Task(id queue.TaskID) (queue.TaskInfo, error) {
	t, ok := f.tasks[id]
	if !ok {
		return t, fmt.Errorf("%w: task %d", queue.ErrNotFound, id)
	}
	return t, f.err
}

func (f *fakeQueue) RetryTask(_ context.Context, id queue.TaskID) error {
	t, ok := f.tasks[id]
	switch {
	case f.err != nil:
		return f.err
	case !ok:
		return fmt.Errorf("%w: task %d", queue.ErrNotFound, id)
	case t.State != "dead":
		return fmt.Errorf("%w: task %d is %s", queue.ErrNotDead, id, t.State)
	}
	t.State = "ready"
	f.tasks[id] = t
	return nil
}

// serveQueueAPI runs the admin listener (as New builds it, without a supervisor: only the
// queue routes are used) on a loopback listener; it returns the address.
func serveQueueAPI(t *testing.T, q Queue, cfg Config) string {
	t.Helper()
	cfg.Queue = q
	if cfg.Token == "" {
		cfg.Token = "tok"
	}
	s := &Server{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	srv := s.adminServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { s.cancel(); srv.Shutdown(); <-done })
	return ln.Addr().String()
}

func queueConfig() Config {
	cfg := DefaultConfig()
	cfg.MaxAdminBody = 64 << 10
	cfg.MaxBlobBytes = 1 << 20
	return cfg
}

func do(t *testing.T, method, url, token string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestQueueRoutes(t *testing.T) {
	sha := strings.Repeat("a", 64)
	input := func(name string) string { return fmt.Sprintf(`{"name":%q,"sha256":%q,"size":3}`, name, sha) }
	for _, c := range []struct {
		name, method, path, token, body string
		err                             error
		status                          int
		want                            string // in the body
	}{
		{"pipelines", "GET", "/v1/queue/pipelines", "", "", nil, 200, `"gunzip"`},
		{"submit", "POST", "/v1/queue/pipelines/logs/jobs", "tok", `{"inputs":[` + input("a.gz") + `,` + input("b/c.gz") + `]}`, nil, 201, `"state": "running"`},
		{"submit without token", "POST", "/v1/queue/pipelines/logs/jobs", "", `{"inputs":[` + input("a.gz") + `]}`, nil, 401, "bearer token"},
		{"submit with a wrong token", "POST", "/v1/queue/pipelines/logs/jobs", "nope", `{"inputs":[` + input("a.gz") + `]}`, nil, 401, "bearer token"},
		{"submit to an unknown pipeline", "POST", "/v1/queue/pipelines/nope/jobs", "tok", `{"inputs":[` + input("a.gz") + `]}`, nil, 404, "not defined"},
		{"submit unknown field", "POST", "/v1/queue/pipelines/logs/jobs", "tok", `{"inputs":[` + input("a.gz") + `],"x":1}`, nil, 400, "unknown field"},
		{"submit unknown file field", "POST", "/v1/queue/pipelines/logs/jobs", "tok", `{"inputs":[{"name":"a","sha256":"` + sha + `","size":1,"mode":7}]}`, nil, 400, "unknown field"},
		{"submit duplicate names", "POST", "/v1/queue/pipelines/logs/jobs", "tok", `{"inputs":[` + input("a.gz") + `,` + input("a.gz") + `]}`, nil, 400, `name \"a.gz\" is also inputs[0]'s`},
		{"submit no inputs", "POST", "/v1/queue/pipelines/logs/jobs", "tok", `{"inputs":[]}`, nil, 400, "at least one file"},
		{"submit without quorum", "POST", "/v1/queue/pipelines/logs/jobs", "tok", `{"inputs":[` + input("a.gz") + `]}`, cluster.ErrNoQuorum, 503, "no quorum"},
		{"submit failing", "POST", "/v1/queue/pipelines/logs/jobs", "tok", `{"inputs":[` + input("a.gz") + `]}`, errors.New("disk on fire"), 500, "disk on fire"},
		{"submit GET", "GET", "/v1/queue/pipelines/logs/jobs", "", "", nil, 405, "allowed: POST"},
		{"jobs", "GET", "/v1/queue/jobs?pipeline=logs&limit=5", "", "", nil, 200, "[]"},
		{"jobs bad limit", "GET", "/v1/queue/jobs?limit=-1", "", "", nil, 400, "limit"},
		{"job unknown", "GET", "/v1/queue/jobs/99", "", "", nil, 404, "not found"},
		{"job bad id", "GET", "/v1/queue/jobs/x1", "", "", nil, 400, "positive integer"},
		{"job bad wait", "GET", "/v1/queue/jobs/1?wait=soon", "", "", nil, 400, `wait=\"soon\": want a duration`},
		{"job negative wait", "GET", "/v1/queue/jobs/1?wait=-1s", "", "", nil, 400, "want a duration"},
		{"job unknown, waited for", "GET", "/v1/queue/jobs/99?wait=10s", "", "", nil, 404, "not found"},
		{"status", "GET", "/v1/queue/status", "", "", nil, 200, `"workers": []`},
		{"dead", "GET", "/v1/queue/dead?pipeline=logs", "", "", nil, 200, "[]"},
		{"task", "GET", "/v1/queue/tasks/7", "", "", nil, 200, `"state": "dead"`},
		{"task unknown", "GET", "/v1/queue/tasks/8", "", "", nil, 404, "not found"},
		{"retry", "POST", "/v1/queue/tasks/7/retry", "tok", "", nil, 200, `"state": "ready"`},
		{"retry a live task", "POST", "/v1/queue/tasks/9/retry", "tok", "", nil, 409, "not dead"},
		{"retry without token", "POST", "/v1/queue/tasks/7/retry", "", "", nil, 401, "bearer token"},
		{"retry unknown", "POST", "/v1/queue/tasks/8/retry", "tok", "", nil, 404, "not found"},
		{"unknown route", "GET", "/v1/queue/nope", "", "", nil, 404, "no route"},
		{"blob bad sha", "GET", "/v1/blobs/xyz", "tok", "", nil, 400, "64 lowercase hex"},
		{"blob unknown", "GET", "/v1/blobs/" + sha, "tok", "", nil, 404, "not found"},
		{"blobs GET", "GET", "/v1/blobs", "", "", nil, 405, "allowed: PUT"},
		{"status on a closed node", "GET", "/v1/queue/status", "", "", cluster.ErrClosed, 503, "shut down"},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := newFakeQueue()
			q.err = c.err
			q.tasks[7] = queue.TaskInfo{ID: 7, Pipeline: "logs", Job: 1, State: "dead"}
			q.tasks[9] = queue.TaskInfo{ID: 9, Pipeline: "logs", Job: 1, State: "leased"}
			addr := serveQueueAPI(t, q, queueConfig())
			code, body := do(t, c.method, "http://"+addr+c.path, c.token, strings.NewReader(c.body))
			if code != c.status || !strings.Contains(body, c.want) {
				t.Fatalf("%s %s: %d %s; want %d with %q", c.method, c.path, code, body, c.status, c.want)
			}
		})
	}
}

func TestQueueSubmitAnswersTheJob(t *testing.T) {
	q := newFakeQueue()
	addr := serveQueueAPI(t, q, queueConfig())
	// Over 8 KiB: past what fasthttp reads before the handler, so serveAdmin reads the rest.
	var in []string
	for i := range 200 {
		in = append(in, fmt.Sprintf(`{"name":"dir/file-%03d.gz","sha256":%q,"size":%d}`, i, strings.Repeat("b", 64), i))
	}
	body := `{"inputs":[` + strings.Join(in, ",") + `]}`
	if len(body) < 8<<10 {
		t.Fatalf("body of %d bytes: want more than 8 KiB", len(body))
	}
	code, resp := do(t, "POST", "http://"+addr+"/v1/queue/pipelines/logs/jobs", "tok", strings.NewReader(body))
	if code != 201 {
		t.Fatalf("submit: %d %s", code, resp)
	}
	var j queue.Job
	if err := json.Unmarshal([]byte(resp), &j); err != nil || j.ID != 1 || len(j.Inputs) != 200 {
		t.Fatalf("job %+v, %v", j, err)
	}
	if len(q.inputs) != 200 || q.inputs[199].Name != "dir/file-199.gz" || q.inputs[199].Size != 199 {
		t.Fatalf("inputs reached the queue as %v", q.inputs[len(q.inputs)-1])
	}
}

func TestQueueNotConfigured(t *testing.T) {
	addr := serveQueueAPI(t, nil, queueConfig())
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/queue/status"}, {"PUT", "/v1/blobs"}, {"GET", "/v1/blobs/" + strings.Repeat("a", 64)},
	} {
		code, body := do(t, r.method, "http://"+addr+r.path, "tok", strings.NewReader("x"))
		if code != 404 || !strings.Contains(body, "no work queue") {
			t.Errorf("%s %s without a queue: %d %s", r.method, r.path, code, body)
		}
	}
}

func TestBlobUploadAndDownload(t *testing.T) {
	q := newFakeQueue()
	addr := serveQueueAPI(t, q, queueConfig())
	for _, size := range []int{0, 1, 100 << 10, 1 << 20} { // 1 MiB: exactly the limit
		content := bytes.Repeat([]byte("wasmpod!"), size/8+1)[:size]
		code, body := do(t, "PUT", "http://"+addr+"/v1/blobs", "tok", bytes.NewReader(content))
		if code != 201 {
			t.Fatalf("put %d bytes: %d %s", size, code, body)
		}
		var ref BlobRef
		if err := json.Unmarshal([]byte(body), &ref); err != nil || ref.SHA256 != shaOf(content) || ref.Size != int64(size) {
			t.Fatalf("put %d bytes: %s (%v)", size, body, err)
		}
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/blobs/"+ref.SHA256, nil)
		req.Header.Set("Authorization", "Bearer tok") // a job's files are its submitter's data
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, content) || resp.ContentLength != int64(size) {
			t.Fatalf("get %d bytes: %d, %d bytes, content-length %d", size, resp.StatusCode, len(got), resp.ContentLength)
		}
	}
	// Chunked (no Content-Length): bounded while it streams.
	pr, pw := io.Pipe()
	go func() { pw.Write(bytes.Repeat([]byte("x"), 1000)); pw.Close() }()
	if code, body := do(t, "PUT", "http://"+addr+"/v1/blobs", "tok", pr); code != 201 || !strings.Contains(body, `"size": 1000`) {
		t.Fatalf("chunked put: %d %s", code, body)
	}
}

// rawRequest sends a request head and body (the body from another goroutine: the server may
// answer and stop reading before it is all sent), and returns the status line and whether the
// server closed the connection.
func rawRequest(t *testing.T, addr, head string, body []byte) (status string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	go c.Write(body) // may block on a full window when the server stops reading
	br := bufio.NewReader(c)
	status, err = br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(status), br)), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	return strings.TrimSpace(status), resp.Close
}

func TestBlobBodyLimits(t *testing.T) {
	q := newFakeQueue()
	addr := serveQueueAPI(t, q, queueConfig()) // admin bodies 64 KiB, blobs 1 MiB
	auth := "Authorization: Bearer tok\r\n"
	chunked := func(n int) []byte {
		var b bytes.Buffer
		for n > 0 {
			k := min(n, 16<<10)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", k, bytes.Repeat([]byte("y"), k))
			n -= k
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	}
	for _, c := range []struct {
		name   string
		head   string
		body   []byte
		status string
		closed bool
	}{
		{"blob over the limit, announced", "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 1048577\r\n\r\n", make([]byte, 64<<10), "413", true},
		{"blob over the limit, chunked", "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n", chunked(1<<20 + 1), "413", true},
		{"blob within the limit, chunked", "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n", chunked(1 << 20), "201", false},
		{"blob without a token: refused before the body is read", "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", make([]byte, 64<<10), "401", true},
		{"other route past MaxAdminBody, announced", "POST /v1/queue/pipelines/logs/jobs HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 65537\r\n\r\n", make([]byte, 16<<10), "413", true},
		{"other route past MaxAdminBody, chunked", "POST /v1/queue/pipelines/logs/jobs HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n", chunked(65 << 10), "413", true},
		{"other route within MaxAdminBody, chunked", "POST /v1/queue/pipelines/logs/jobs HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n", chunked(60 << 10), "400", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, closed := rawRequest(t, addr, c.head, c.body)
			if !strings.Contains(status, " "+c.status+" ") || closed != c.closed {
				t.Fatalf("got %q, closed %v; want %s, closed %v", status, closed, c.status, c.closed)
			}
		})
	}
}

func TestBlobTimeouts(t *testing.T) {
	s := &Server{cfg: Config{Token: "tok", BlobTimeout: time.Hour}}
	for _, c := range []struct {
		name, method, uri, auth string
		read, write             time.Duration
	}{
		{"authorized upload", "PUT", "/v1/blobs", "Bearer tok", time.Hour, 0},
		{"upload without token", "PUT", "/v1/blobs", "", 0, 0},
		{"upload with a wrong token", "PUT", "/v1/blobs", "Bearer x", 0, 0},
		{"authorized download", "GET", "/v1/blobs/abc?x=1", "Bearer tok", 0, time.Hour},
		{"download without token (refused at once)", "GET", "/v1/blobs/abc?x=1", "", 0, 0},
		{"other route", "POST", "/v1/queue/pipelines/logs/jobs", "Bearer tok", 0, 0},
	} {
		var h fasthttp.RequestHeader
		h.SetMethod(c.method)
		h.SetRequestURI(c.uri)
		if c.auth != "" {
			h.Set("Authorization", c.auth)
		}
		rc := s.blobTimeouts(&h)
		if rc.ReadTimeout != c.read || rc.WriteTimeout != c.write || rc.MaxRequestBodySize != 0 {
			t.Errorf("%s: %+v", c.name, rc)
		}
	}
}

func TestQueueParseSubmit(t *testing.T) {
	sha := strings.Repeat("c", 64)
	f := func(name string, size int) string {
		return fmt.Sprintf(`{"name":%q,"sha256":%q,"size":%d}`, name, sha, size)
	}
	body := func(files ...string) string { return `{"inputs":[` + strings.Join(files, ",") + `]}` }
	for _, c := range []struct {
		name, body string
		n          int
		errs       []string // every one in the error
	}{
		{"ok", body(f("a", 1), f("dir/b", 2)), 2, nil},
		{"empty body", "", 0, []string{"must be"}},
		{"not an object", `[]`, 0, []string{"must be"}},
		{"no inputs", `{}`, 0, []string{"at least one"}},
		{"unknown field", `{"inputs":[],"pipeline":"x"}`, 0, []string{"unknown field"}},
		{"trailing data", body(f("a", 1)) + ` {}`, 0, []string{"trailing data"}},
		{"every problem named", body(f("../x", 1), f("ok", 1), f("/abs", 1), f("ok", 2), f("neg", -1), `{"name":"bad","sha256":"XYZ","size":1}`),
			0, []string{"5 bad inputs", "inputs[0]", "../x", "inputs[2]", "absolute", `inputs[3]: name "ok" is also inputs[1]'s`, "inputs[4]", "negative size", "inputs[5]", "sha256"}},
		{"a file below a file", body(f("a", 1), f("a/b", 1)), 0, []string{`inputs[1]: name "a/b" is below inputs[0]'s "a"`}},
		{"too large", `{"inputs":[` + strings.Repeat(" ", maxSubmitBody) + `]}`, 0, []string{"larger than"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in, _, err := parseSubmit([]byte(c.body))
			if c.errs == nil {
				if err != nil || len(in) != c.n {
					t.Fatalf("parseSubmit: %d inputs, %v; want %d", len(in), err, c.n)
				}
				return
			}
			if err == nil {
				t.Fatalf("parseSubmit accepted %d inputs", len(in))
			}
			if !errors.Is(err, queue.ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			for _, want := range c.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
	// Many bad inputs: the first maxProblems named, the rest counted.
	var many []string
	for range maxProblems + 5 {
		many = append(many, f("", 1))
	}
	if _, _, err := parseSubmit([]byte(body(many...))); err == nil || !strings.Contains(err.Error(), "and 5 more") {
		t.Fatalf("many bad inputs: %v", err)
	}
}

func TestQueueErrorStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 200},
		{fmt.Errorf("x: %w", queue.ErrInvalid), 400},
		{cluster.ErrInvalid, 400},
		{fmt.Errorf("x: %w", queue.ErrNotFound), 404},
		{queue.ErrNotDead, 409},
		{cluster.ErrNoQuorum, 503},
		{cluster.ErrClosed, 503},
		{queue.ErrClosed, 503},
		{context.DeadlineExceeded, 503},
		{errors.New("boom"), 500},
	} {
		if got := QueueErrorStatus(c.err); got != c.want {
			t.Errorf("QueueErrorStatus(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestQueueMetrics(t *testing.T) {
	q := newFakeQueue()
	q.stats = []queue.StageStats{
		{Pipeline: "logs", Stage: 0, Name: "gunzip", Stats: queue.Stats{Depth: 5, Ready: 3, Leased: 2, Retries: 4, Dead: 1, Completed: 10}},
		{Pipeline: "logs", Stage: 1, Name: "wc", Stats: queue.Stats{Completed: 1}},
	}
	q.work = []cluster.WorkerStats{
		{Pipeline: "logs", Stage: 0, Running: 2, Completed: 7, Failed: 1, LeaseLost: 1},
		{Pipeline: "logs", Stage: 0, Running: 1, Completed: 1}, // a second pool of the stage: summed
		{Pipeline: "other", Stage: 3, Running: 1},              // no stats: the index names it
	}
	scrape := func() string {
		t.Helper()
		reg := prometheus.NewRegistry()
		reg.MustRegister(newQueueCollector(q))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
		var b strings.Builder
		enc := expfmt.NewEncoder(&b, textFormat)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				t.Fatal(err)
			}
		}
		return b.String()
	}
	out := scrape()
	for _, want := range []string{
		"# HELP wasmpod_queue_depth Tasks waiting in the stage queue, ready or backing off.",
		"# TYPE wasmpod_queue_depth gauge",
		`wasmpod_queue_depth{pipeline="logs",stage="gunzip"} 5`,
		`wasmpod_queue_depth{pipeline="logs",stage="wc"} 0`,
		`wasmpod_queue_ready{pipeline="logs",stage="gunzip"} 3`,
		`wasmpod_queue_leased{pipeline="logs",stage="gunzip"} 2`,
		"# TYPE wasmpod_queue_retries_total counter",
		`wasmpod_queue_retries_total{pipeline="logs",stage="gunzip"} 4`,
		`wasmpod_queue_dead_letters{pipeline="logs",stage="gunzip"} 1`,
		`wasmpod_queue_completed_total{pipeline="logs",stage="wc"} 1`,
		"# TYPE wasmpod_queue_worker_running gauge",
		`wasmpod_queue_worker_running{pipeline="logs",stage="gunzip"} 3`,
		`wasmpod_queue_worker_running{pipeline="other",stage="3"} 1`,
		`wasmpod_queue_worker_completed_total{pipeline="logs",stage="gunzip"} 8`,
		`wasmpod_queue_worker_failed_total{pipeline="logs",stage="gunzip"} 1`,
		"# TYPE wasmpod_queue_worker_lease_lost_total counter",
		`wasmpod_queue_worker_lease_lost_total{pipeline="logs",stage="gunzip"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("scrape lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\nwasmpod_queue_"); n != 2*6+2*4 {
		t.Errorf("%d series, want %d:\n%s", n, 2*6+2*4, out)
	}
	// A queue that cannot answer exports its workers only, and the scrape still works.
	q.err = cluster.ErrNoQuorum
	if out := scrape(); strings.Contains(out, "wasmpod_queue_depth") || !strings.Contains(out, "wasmpod_queue_worker_running") {
		t.Errorf("scrape without stats:\n%s", out)
	}
}

// FuzzQueueBodies: the submit body and queue paths come from the network; they must be
// refused with an ErrInvalid error, never panic, and an accepted body holds only valid,
// uniquely named files.
func FuzzQueueBodies(f *testing.F) {
	sha := strings.Repeat("d", 64)
	for _, s := range []string{
		`{"inputs":[{"name":"a/b.gz","sha256":"` + sha + `","size":3}]}`,
		`{"inputs":[{"name":"a","sha256":"` + sha + `","size":1},{"name":"a/b","sha256":"` + sha + `","size":1}]}`,
		`{"inputs":[]}`, `{}`, ``, `[]`, `{"inputs":[{"name":"../x","sha256":"","size":-1}]}`, `{"inputs":null}`,
	} {
		f.Add([]byte(s), "/v1/queue/pipelines/logs/jobs")
	}
	f.Add([]byte(`{}`), "/v1/queue/tasks/7/retry")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		in, _, err := parseSubmit(body)
		if err != nil {
			if !errors.Is(err, queue.ErrInvalid) {
				t.Fatalf("parseSubmit error not ErrInvalid: %v", err)
			}
		} else {
			if len(in) == 0 {
				t.Fatalf("parseSubmit accepted %q with no inputs", body)
			}
			seen := map[string]bool{}
			for _, f := range in {
				if f.Validate() != nil || seen[f.Name] {
					t.Fatalf("parseSubmit accepted %q: %+v", body, f)
				}
				seen[f.Name] = true
			}
		}
		segs := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
		for _, r := range queueRoutes {
			if args, ok := matchQueueRoute(r.path, segs); ok {
				for _, a := range args {
					if a == "" || len(a) > 128 || strings.ContainsAny(a, "/%?#") {
						t.Fatalf("route %v accepted argument %q of %q", r.path, a, path)
					}
				}
			}
		}
	})
}

// TestQueueJobWait: GET /v1/queue/jobs/{id}?wait=D holds the answer until the job finishes
// (answering at once when it does) or D passes (answering the running job, 200), D capped at
// MaxWatchWait; without wait the answer is immediate.
func TestQueueJobWait(t *testing.T) {
	q := newFakeQueue()
	q.setJob(queue.Job{ID: 1, State: queue.JobRunning})
	cfg := queueConfig()
	cfg.MaxWatchWait = 300 * time.Millisecond
	addr := serveQueueAPI(t, q, cfg)
	get := func(query string) (int, queue.Job, time.Duration) {
		t.Helper()
		t0 := time.Now()
		code, body := do(t, "GET", "http://"+addr+"/v1/queue/jobs/1"+query, "", nil)
		var j queue.Job
		if err := json.Unmarshal([]byte(body), &j); err != nil {
			t.Fatalf("GET ?%s: %d %s: %v", query, code, body, err)
		}
		return code, j, time.Since(t0)
	}
	// Capped: ?wait=1h waits MaxWatchWait, then answers the running job.
	if code, j, took := get("?wait=1h"); code != 200 || j.State != queue.JobRunning || took < 300*time.Millisecond || took > 10*time.Second {
		t.Fatalf("wait past the cap: %d %s after %v; want 200 running after 300ms", code, j.State, took)
	}
	type answer struct {
		code int
		j    queue.Job
		took time.Duration
	}
	cfg.MaxWatchWait = time.Minute
	addr = serveQueueAPI(t, q, cfg)
	if code, j, took := get(""); code != 200 || j.State != queue.JobRunning || took > 5*time.Second {
		t.Fatalf("no wait: %d %s after %v", code, j.State, took)
	}
	got := make(chan answer, 1)
	go func() {
		code, j, took := get("?wait=30s")
		got <- answer{code, j, took}
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case a := <-got:
		t.Fatalf("answered %d %s before the job finished", a.code, a.j.State)
	default:
	}
	q.setJob(queue.Job{ID: 1, State: queue.JobDone})
	select {
	case a := <-got:
		if a.code != 200 || a.j.State != queue.JobDone {
			t.Fatalf("wait: %d %s; want 200 done", a.code, a.j.State)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held answer did not come when the job finished")
	}
	if code, j, took := get("?wait=30s"); code != 200 || j.State != queue.JobDone || took > 5*time.Second {
		t.Fatalf("wait on a finished job: %d %s after %v; want an answer at once", code, j.State, took)
	}
}
