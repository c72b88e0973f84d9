package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/internal/spans"
)

// Queue is what the admin API needs of the cluster's work queue: the blob store, pipelines,
// jobs, tasks and this node's workers (*cluster.Queue implements it).
type Queue interface {
	PutBlob(ctx context.Context, r io.Reader) (sha string, size int64, err error)
	OpenBlob(ctx context.Context, sha string) (io.ReadCloser, int64, error)
	Pipelines() ([]queue.Pipeline, error)
	Submit(ctx context.Context, pipeline string, inputs []queue.File, requestID string) (queue.JobID, error)
	Job(id queue.JobID) (queue.Job, error)
	WaitJob(ctx context.Context, id queue.JobID) (queue.Job, error)
	Jobs(pipeline string, limit int) ([]queue.Job, error)
	QueueStats() ([]queue.StageStats, error)
	DeadTasks(pipeline string) ([]queue.TaskInfo, error)
	Task(id queue.TaskID) (queue.TaskInfo, error)
	RetryTask(ctx context.Context, id queue.TaskID) error
	WorkerStats() []cluster.WorkerStats
}

var _ Queue = (*cluster.Queue)(nil)

// BlobRef is the answer to PUT /v1/blobs: the stored content's address and length.
type BlobRef struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// SubmitRequest is the body of POST /v1/queue/pipelines/{name}/jobs.
type SubmitRequest struct {
	Inputs []queue.File `json:"inputs"`
	// RequestID (optional, at most 128 bytes) makes the submit idempotent: a client that got
	// no answer sends the same body again and gets the job the first request created.
	RequestID string `json:"request_id,omitempty"`
}

// QueueStatus is the answer to GET /v1/queue/status: every stage queue's counters (the
// replicated state, as this node sees it) and this node's worker pools.
type QueueStatus struct {
	Stages  []queue.StageStats    `json:"stages"`
	Workers []cluster.WorkerStats `json:"workers"`
}

const (
	// maxSubmitBody bounds a submit body: about 100k inputs with short names.
	maxSubmitBody = 16 << 20
	// maxProblems bounds how many bad inputs a refused submit names.
	maxProblems = 20
	// maxJobsLimit caps ?limit= of GET /v1/queue/jobs.
	maxJobsLimit = 10000
)

var (
	errNoQueue = errors.New("no work queue: this host runs none")
	shaRE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// parseSubmit reads {"inputs": [{"name", "sha256", "size"}, ...], "request_id": "..."}: strict (unknown fields and
// trailing data refused), at least one input, every input a valid file, names unique and no
// name below another (a file cannot also be a directory). Every problem is named, up to
// maxProblems.
func parseSubmit(body []byte) ([]queue.File, string, error) {
	if len(body) > maxSubmitBody {
		return nil, "", fmt.Errorf("%w: submit body larger than %d bytes", queue.ErrInvalid, maxSubmitBody)
	}
	var r SubmitRequest
	if err := decodeOne(body, &r); errors.Is(err, errTrailing) {
		return nil, "", fmt.Errorf("%w: submit body: %v", queue.ErrInvalid, err)
	} else if err != nil {
		return nil, "", fmt.Errorf(`%w: submit body must be {"inputs": [{"name", "sha256", "size"}, ...]}: %v`, queue.ErrInvalid, err)
	}
	if len(r.RequestID) > queue.MaxRequestID {
		return nil, "", fmt.Errorf("%w: submit body: request_id longer than %d bytes", queue.ErrInvalid, queue.MaxRequestID)
	}
	if len(r.Inputs) == 0 {
		return nil, "", fmt.Errorf(`%w: submit body: "inputs" needs at least one file`, queue.ErrInvalid)
	}
	var problems []string
	seen := make(map[string]int, len(r.Inputs))
	for i := range r.Inputs {
		f := &r.Inputs[i]
		if err := f.Validate(); err != nil {
			problems = append(problems, fmt.Sprintf("inputs[%d]: %s", i, strings.TrimPrefix(err.Error(), queue.ErrInvalid.Error()+": ")))
			continue
		}
		if j, dup := seen[f.Name]; dup {
			problems = append(problems, fmt.Sprintf("inputs[%d]: name %q is also inputs[%d]'s", i, f.Name, j))
			continue
		}
		seen[f.Name] = i
	}
	for i := range r.Inputs {
		name := r.Inputs[i].Name
		if seen[name] != i {
			continue // invalid or a duplicate: named above
		}
		for dir := name; ; {
			k := strings.LastIndexByte(dir, '/')
			if k < 0 {
				break
			}
			dir = dir[:k]
			if j, ok := seen[dir]; ok {
				problems = append(problems, fmt.Sprintf("inputs[%d]: name %q is below inputs[%d]'s %q, a file", i, name, j, dir))
				break
			}
		}
	}
	if n := len(problems); n > 0 {
		if n > maxProblems {
			problems = append(problems[:maxProblems], fmt.Sprintf("and %d more", n-maxProblems))
		}
		return nil, "", fmt.Errorf("%w: %d bad inputs: %s", queue.ErrInvalid, n, strings.Join(problems, "; "))
	}
	return r.Inputs, r.RequestID, nil
}

// QueueErrorStatus maps a work-queue error to an HTTP status.
func QueueErrorStatus(err error) int {
	switch {
	case err == nil:
		return fasthttp.StatusOK
	case errors.Is(err, queue.ErrInvalid), errors.Is(err, cluster.ErrInvalid):
		return fasthttp.StatusBadRequest
	case errors.Is(err, queue.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return fasthttp.StatusNotFound
	case errors.Is(err, queue.ErrNotDead):
		return fasthttp.StatusConflict
	case errors.Is(err, cluster.ErrNoQuorum), errors.Is(err, cluster.ErrClosed), errors.Is(err, queue.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fasthttp.StatusServiceUnavailable
	}
	return fasthttp.StatusInternalServerError
}

func writeQueueError(ctx *fasthttp.RequestCtx, err error) {
	writeError(ctx, QueueErrorStatus(err), err)
}

// queueRoute is one work-queue route: method and path segments below /v1/, "*" matching one
// non-empty segment that becomes an argument.
type queueRoute struct {
	method string
	path   []string
	serve  func(s *Server, ctx *fasthttp.RequestCtx, q Queue, args []string)
}

var queueRoutes = []queueRoute{
	{fasthttp.MethodPut, []string{"blobs"}, (*Server).putBlob},
	{fasthttp.MethodGet, []string{"blobs", "*"}, (*Server).getBlob},
	{fasthttp.MethodGet, []string{"queue", "pipelines"}, (*Server).pipelines},
	{fasthttp.MethodPost, []string{"queue", "pipelines", "*", "jobs"}, (*Server).submit},
	{fasthttp.MethodGet, []string{"queue", "jobs"}, (*Server).jobs},
	{fasthttp.MethodGet, []string{"queue", "jobs", "*"}, (*Server).job},
	{fasthttp.MethodGet, []string{"queue", "status"}, (*Server).queueStatus},
	{fasthttp.MethodGet, []string{"queue", "dead"}, (*Server).deadTasks},
	{fasthttp.MethodGet, []string{"queue", "tasks", "*"}, (*Server).task},
	{fasthttp.MethodPost, []string{"queue", "tasks", "*", "retry"}, (*Server).retryTask},
}

// matchQueueRoute matches a path's segments below /v1/ against a route pattern.
func matchQueueRoute(pattern, segs []string) (args []string, ok bool) {
	if len(pattern) != len(segs) {
		return nil, false
	}
	for i, p := range pattern {
		switch {
		case p == "*":
			if segs[i] == "" || len(segs[i]) > 128 || strings.ContainsAny(segs[i], "%?#") {
				return nil, false
			}
			args = append(args, segs[i])
		case p != segs[i]:
			return nil, false
		}
	}
	return args, true
}

// isQueuePath reports whether path is under /v1/blobs or /v1/queue.
func isQueuePath(path string) bool {
	for _, p := range []string{"/v1/blobs", "/v1/queue"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

func isBlobUpload(ctx *fasthttp.RequestCtx) bool {
	return ctx.IsPut() && string(ctx.Path()) == "/v1/blobs"
}

// serveQueue answers the work-queue routes; false if the path is none of them. Mutating
// routes (PUT, POST) need the bearer token.
func (s *Server) serveQueue(ctx *fasthttp.RequestCtx, path, method string) bool {
	if !isQueuePath(path) {
		return false
	}
	q := s.cfg.Queue
	if q == nil {
		if isBlobUpload(ctx) {
			ctx.SetConnectionClose() // the body is unread
		}
		writeError(ctx, fasthttp.StatusNotFound, errNoQueue)
		return true
	}
	segs := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
	var allow []string
	for _, r := range queueRoutes {
		args, ok := matchQueueRoute(r.path, segs)
		if !ok {
			continue
		}
		if r.method != method {
			allow = append(allow, r.method)
			continue
		}
		if (method == fasthttp.MethodPost || method == fasthttp.MethodPut) && !s.authorized(ctx) {
			if isBlobUpload(ctx) {
				ctx.SetConnectionClose()
			}
			return true
		}
		r.serve(s, ctx, q, args)
		return true
	}
	if isBlobUpload(ctx) {
		ctx.SetConnectionClose()
	}
	if len(allow) > 0 {
		ctx.Response.Header.Set("Allow", strings.Join(allow, ", "))
		writeError(ctx, fasthttp.StatusMethodNotAllowed, fmt.Errorf("no route %s %s (allowed: %s)", method, path, strings.Join(allow, ", ")))
		return true
	}
	writeError(ctx, fasthttp.StatusNotFound, fmt.Errorf("no route %s %s", method, path))
	return true
}

// blobTimeouts is the admin listener's HeaderReceived hook: an authorized blob upload may take
// BlobTimeout to arrive, a blob download BlobTimeout to be written. Other requests keep the
// listener's timeouts. Only the timeouts change here; serveAdmin and putBlob bound the bodies.
func (s *Server) blobTimeouts(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	path, _, _ := strings.Cut(string(h.RequestURI()), "?")
	switch {
	case h.IsPut() && path == "/v1/blobs" && s.validToken(h.Peek("Authorization")):
		return fasthttp.RequestConfig{ReadTimeout: s.cfg.BlobTimeout}
	case h.IsGet() && strings.HasPrefix(path, "/v1/blobs/") && (s.cfg.Token == "" || s.validToken(h.Peek("Authorization"))):
		return fasthttp.RequestConfig{WriteTimeout: s.cfg.BlobTimeout}
	}
	return fasthttp.RequestConfig{}
}

// errBlobTooLarge ends an upload past MaxBlobBytes.
var errBlobTooLarge = errors.New("blob larger than the host's limit")

// blobBody reads an upload's body for PutBlob, failing past limit bytes, and records how the
// body ended: the handler tells the client's faults (413, 400, 408) from the store's.
type blobBody struct {
	r        io.Reader
	left     int64 // bytes still allowed
	eof      bool
	tooLarge bool
	err      error // a read error other than EOF
}

func (b *blobBody) Read(p []byte) (int, error) {
	if b.tooLarge {
		return 0, errBlobTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // one byte past the limit tells a body of exactly limit bytes from a larger one
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.tooLarge = true
		return 0, errBlobTooLarge
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil && b.err == nil:
		b.err = err
	}
	return n, err
}

// putBlob serves PUT /v1/blobs: the body, streamed into the blob store, at most MaxBlobBytes.
func (s *Server) putBlob(ctx *fasthttp.RequestCtx, q Queue, _ []string) {
	limit := s.cfg.MaxBlobBytes
	tooLarge := func() {
		ctx.SetConnectionClose()
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Errorf("blob larger than the host's limit of %d bytes", limit))
	}
	if int64(ctx.Request.Header.ContentLength()) > limit {
		tooLarge()
		return
	}
	var r io.Reader = ctx.RequestBodyStream()
	if r == nil { // the body is in memory (no stream), or there is none
		r = bytes.NewReader(ctx.PostBody())
	}
	body := &blobBody{r: r, left: limit}
	bctx, cancel := context.WithTimeout(s.ctx, s.cfg.BlobTimeout)
	defer cancel()
	sha, size, err := q.PutBlob(bctx, body)
	if !body.eof {
		ctx.SetConnectionClose() // the rest of the body is unread
	}
	switch {
	case body.tooLarge:
		tooLarge()
	case body.err != nil:
		writeError(ctx, bodyReadStatus(body.err), fmt.Errorf("reading the blob: %v", body.err))
	case err != nil:
		writeQueueError(ctx, fmt.Errorf("store blob: %w", err))
	default:
		ctx.Response.Header.Set("Location", "/v1/blobs/"+sha)
		writeJSON(ctx, fasthttp.StatusCreated, BlobRef{SHA256: sha, Size: size})
	}
}

// cancelOnClose ends a download's context when fasthttp closes the body stream after
// writing it (or failing to).
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	defer c.cancel()
	return c.ReadCloser.Close()
}

// getBlob serves GET /v1/blobs/{sha256}: the content, streamed.
func (s *Server) getBlob(ctx *fasthttp.RequestCtx, q Queue, args []string) {
	if !s.protectedRead(ctx) {
		return // a job's files are its submitter's data
	}
	sha := args[0]
	if !shaRE.MatchString(sha) {
		writeError(ctx, fasthttp.StatusBadRequest, fmt.Errorf("blob %q: want a sha256 as 64 lowercase hex digits", sha))
		return
	}
	// The stream is read after this handler returns: its context ends when it is closed.
	bctx, cancel := context.WithTimeout(s.ctx, s.cfg.BlobTimeout)
	rc, size, err := q.OpenBlob(bctx, sha)
	if err != nil {
		cancel()
		writeQueueError(ctx, fmt.Errorf("blob %s: %w", sha, err))
		return
	}
	ctx.SetContentType("application/octet-stream")
	ctx.Response.Header.Set("ETag", `"`+sha+`"`)
	ctx.Response.Header.Set("Cache-Control", "private, max-age=31536000, immutable") // content-addressed
	ctx.SetBodyStream(cancelOnClose{rc, cancel}, int(size))
}

func (s *Server) pipelines(ctx *fasthttp.RequestCtx, q Queue, _ []string) {
	ps, err := q.Pipelines()
	if err != nil {
		writeQueueError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, nonNil(ps))
}

// submit serves POST /v1/queue/pipelines/{name}/jobs: 201 with the new job.
func (s *Server) submit(ctx *fasthttp.RequestCtx, q Queue, args []string) {
	name := args[0]
	inputs, requestID, err := parseSubmit(ctx.PostBody())
	if err != nil {
		writeQueueError(ctx, err)
		return
	}
	opCtx, cancel := context.WithTimeout(s.ctx, s.cfg.QueueOpTimeout)
	defer cancel()
	var span trace.Span
	if spans.On() {
		opCtx, span = submitSpan(opCtx, ctx, name, requestID, len(inputs))
	}
	id, err := q.Submit(opCtx, name, inputs, requestID)
	if span != nil {
		if err == nil {
			span.SetAttributes(attribute.Int64("wasmpod.queue.job", int64(id)))
		}
		spans.End(span, err)
	}
	if err != nil {
		writeQueueError(ctx, err)
		return
	}
	job, err := q.Job(id)
	if err != nil {
		// This node's replica has not applied the submit yet: what is known of it.
		job = queue.Job{ID: id, Pipeline: queue.Pipeline{Name: name}, Inputs: inputs, State: queue.JobRunning}
	}
	ctx.Response.Header.Set("Location", fmt.Sprintf("/v1/queue/jobs/%d", id))
	writeJSON(ctx, fasthttp.StatusCreated, job)
}

// submitSpan starts the span "queue.submit" of a job submit: a child of the request's W3C
// traceparent header (the CLI forwards $TRACEPARENT), else a root the sampler decides on. The
// queue keeps its context in the job record, so every task attempt's span ("queue.task", on
// whichever node runs it) is its child. Called when spans.On.
func submitSpan(ctx context.Context, rc *fasthttp.RequestCtx, pipeline, requestID string, inputs int) (context.Context, trace.Span) {
	if tp := rc.Request.Header.Peek(spans.HeaderTraceparent); len(tp) > 0 {
		ctx = spans.WithRemoteParent(ctx, tp)
	}
	attrs := []attribute.KeyValue{attribute.String("wasmpod.queue.pipeline", pipeline), attribute.Int("wasmpod.queue.inputs", inputs)}
	if requestID != "" {
		attrs = append(attrs, attribute.String("wasmpod.queue.request_id", requestID))
	}
	return spans.Start(ctx, "queue.submit", trace.SpanKindServer, attrs...)
}

// jobs serves GET /v1/queue/jobs?pipeline=P&limit=N: the newest jobs first.
func (s *Server) jobs(ctx *fasthttp.RequestCtx, q Queue, _ []string) {
	args := ctx.QueryArgs()
	limit := 0
	if v := args.Peek("limit"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 0 || n > maxJobsLimit {
			writeError(ctx, fasthttp.StatusBadRequest, fmt.Errorf("limit=%q: want an integer 0..%d (0: the host's default)", v, maxJobsLimit))
			return
		}
		limit = n
	}
	js, err := q.Jobs(string(args.Peek("pipeline")), limit)
	if err != nil {
		writeQueueError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, views(js, s.reader(ctx), jobView))
}

// parseID reads a job or task id from a path segment, answering 400 itself when it is not one.
func parseID(ctx *fasthttp.RequestCtx, what, s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		writeError(ctx, fasthttp.StatusBadRequest, fmt.Errorf("%s id %q: want a positive integer", what, s))
		return 0, false
	}
	return n, true
}

// job serves GET /v1/queue/jobs/{id}[?wait=D]: the job as this node's replica has it; with
// wait, the answer is held until the job finishes or D passes (at most MaxWatchWait), and is
// then the job as it stands, 200 either way, so that a client follows a job without polling
// and learns of its end at once.
func (s *Server) job(ctx *fasthttp.RequestCtx, q Queue, args []string) {
	id, ok := parseID(ctx, "job", args[0])
	if !ok {
		return
	}
	wait, err := parseWait(ctx.QueryArgs(), 0, s.cfg.MaxWatchWait)
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err)
		return
	}
	var j queue.Job
	if wait > 0 {
		wctx, cancel := context.WithTimeout(s.ctx, wait)
		j, err = q.WaitJob(wctx, queue.JobID(id))
		cancel()
		if err != nil && wctx.Err() != nil && s.ctx.Err() == nil && j.ID != 0 {
			err = nil // the wait ran out: the job as it stands; the client asks again
		}
	} else {
		j, err = q.Job(queue.JobID(id))
	}
	if err != nil {
		writeQueueError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, jobView(j, s.reader(ctx)))
}

func (s *Server) queueStatus(ctx *fasthttp.RequestCtx, q Queue, _ []string) {
	st, err := q.QueueStats()
	if err != nil {
		writeQueueError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, QueueStatus{Stages: nonNil(st), Workers: nonNil(q.WorkerStats())})
}

// deadTasks serves GET /v1/queue/dead?pipeline=P: the dead-lettered tasks, oldest first.
func (s *Server) deadTasks(ctx *fasthttp.RequestCtx, q Queue, _ []string) {
	ts, err := q.DeadTasks(string(ctx.QueryArgs().Peek("pipeline")))
	if err != nil {
		writeQueueError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, views(ts, s.reader(ctx), taskView))
}

func (s *Server) task(ctx *fasthttp.RequestCtx, q Queue, args []string) {
	id, ok := parseID(ctx, "task", args[0])
	if !ok {
		return
	}
	t, err := q.Task(queue.TaskID(id))
	if err != nil {
		writeQueueError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, taskView(t, s.reader(ctx)))
}

// retryTask serves POST /v1/queue/tasks/{id}/retry: the dead-lettered task back in its stage
// queue; 200 with the task, 409 when it is not dead.
func (s *Server) retryTask(ctx *fasthttp.RequestCtx, q Queue, args []string) {
	id, ok := parseID(ctx, "task", args[0])
	if !ok {
		return
	}
	opCtx, cancel := context.WithTimeout(s.ctx, s.cfg.QueueOpTimeout)
	defer cancel()
	if err := q.RetryTask(opCtx, queue.TaskID(id)); err != nil {
		writeQueueError(ctx, err)
		return
	}
	t, err := q.Task(queue.TaskID(id))
	if err != nil {
		t = queue.TaskInfo{ID: queue.TaskID(id)} // not applied on this replica yet
	}
	writeJSON(ctx, fasthttp.StatusOK, t)
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// queueCollector exports the work queue at scrape time: the stage queues' counters (the
// replicated state as this node sees it: every node reports the same values) and this node's
// worker pools. The stage label is the stage's name.
type queueCollector struct {
	q Queue

	depth, ready, leased, retries, dead, completed *prometheus.Desc
	running, wCompleted, wFailed, wLeaseLost       *prometheus.Desc
}

func newQueueCollector(q Queue) *queueCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"pipeline", "stage"}, nil)
	}
	return &queueCollector{
		q:          q,
		depth:      d("wasmpod_queue_depth", "Tasks waiting in the stage queue, ready or backing off."),
		ready:      d("wasmpod_queue_ready", "Waiting tasks that can be leased now."),
		leased:     d("wasmpod_queue_leased", "Tasks under a live lease."),
		retries:    d("wasmpod_queue_retries_total", "Redeliveries scheduled after a failure or an expired lease."),
		dead:       d("wasmpod_queue_dead_letters", "Tasks in the stage's dead-letter list."),
		completed:  d("wasmpod_queue_completed_total", "Tasks completed by the stage."),
		running:    d("wasmpod_queue_worker_running", "Deliveries this node's workers are running now."),
		wCompleted: d("wasmpod_queue_worker_completed_total", "Deliveries this node's workers completed."),
		wFailed:    d("wasmpod_queue_worker_failed_total", "Deliveries this node's workers failed."),
		wLeaseLost: d("wasmpod_queue_worker_lease_lost_total", "Deliveries whose lease this node's workers lost before finishing."),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.depth, c.ready, c.leased, c.retries, c.dead, c.completed,
		c.running, c.wCompleted, c.wFailed, c.wLeaseLost} {
		ch <- d
	}
}

// stageKey labels a series; series with the same labels (two stages of a pipeline with the
// same name, two pools of one stage) are summed, as Prometheus refuses duplicates.
type stageKey struct{ pipeline, stage string }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	type stageSums struct {
		depth, ready, leased, dead float64
		retries, completed         float64
	}
	names := map[stageKey]string{} // (pipeline, stage index) -> stage name
	stats, err := c.q.QueueStats()
	if err == nil {
		sums := map[stageKey]*stageSums{}
		var order []stageKey
		for _, st := range stats {
			name := st.Name
			if name == "" {
				name = strconv.Itoa(st.Stage)
			}
			names[stageKey{st.Pipeline, strconv.Itoa(st.Stage)}] = name
			k := stageKey{st.Pipeline, name}
			s := sums[k]
			if s == nil {
				s = &stageSums{}
				sums[k] = s
				order = append(order, k)
			}
			s.depth += float64(st.Depth)
			s.ready += float64(st.Ready)
			s.leased += float64(st.Leased)
			s.dead += float64(st.Dead)
			s.retries += float64(st.Retries)
			s.completed += float64(st.Completed)
		}
		for _, k := range order {
			s := sums[k]
			for _, m := range []struct {
				d *prometheus.Desc
				t prometheus.ValueType
				v float64
			}{
				{c.depth, prometheus.GaugeValue, s.depth},
				{c.ready, prometheus.GaugeValue, s.ready},
				{c.leased, prometheus.GaugeValue, s.leased},
				{c.dead, prometheus.GaugeValue, s.dead},
				{c.retries, prometheus.CounterValue, s.retries},
				{c.completed, prometheus.CounterValue, s.completed},
			} {
				ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v, k.pipeline, k.stage)
			}
		}
	}
	type workerSums struct{ running, completed, failed, leaseLost float64 }
	wsums := map[stageKey]*workerSums{}
	var order []stageKey
	for _, w := range c.q.WorkerStats() {
		name, ok := names[stageKey{w.Pipeline, strconv.Itoa(w.Stage)}]
		if !ok {
			name = strconv.Itoa(w.Stage)
		}
		k := stageKey{w.Pipeline, name}
		s := wsums[k]
		if s == nil {
			s = &workerSums{}
			wsums[k] = s
			order = append(order, k)
		}
		s.running += float64(w.Running)
		s.completed += float64(w.Completed)
		s.failed += float64(w.Failed)
		s.leaseLost += float64(w.LeaseLost)
	}
	for _, k := range order {
		s := wsums[k]
		ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, s.running, k.pipeline, k.stage)
		ch <- prometheus.MustNewConstMetric(c.wCompleted, prometheus.CounterValue, s.completed, k.pipeline, k.stage)
		ch <- prometheus.MustNewConstMetric(c.wFailed, prometheus.CounterValue, s.failed, k.pipeline, k.stage)
		ch <- prometheus.MustNewConstMetric(c.wLeaseLost, prometheus.CounterValue, s.leaseLost, k.pipeline, k.stage)
	}
}
