package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/queue"
)

// BlobRef is a stored blob's address and length (the answer to PUT /v1/blobs).
type BlobRef struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// QueueStatus is the work queue's stage counters and the host's worker pools.
type QueueStatus struct {
	Stages  []queue.StageStats    `json:"stages"`
	Workers []cluster.WorkerStats `json:"workers"`
}

// streamHTTP is the client for blob transfers: bounded by the caller's context and the host's
// blob timeout, not by the 2-minute timeout of the other calls.
func (c *Client) streamHTTP() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{}
}

// PutBlob uploads r's size bytes (size < 0: unknown, sent chunked) to the host's blob store.
func (c *Client) PutBlob(ctx context.Context, r io.Reader, size int64) (BlobRef, error) {
	var out BlobRef
	body := r
	if size == 0 {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.url("/v1/blobs"), body)
	if err != nil {
		return out, err
	}
	if size > 0 {
		req.ContentLength = size
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return out, c.send(c.streamHTTP(), req, &out)
}

// OpenBlob downloads a blob: its content and length (-1 when the host did not say). The caller
// closes the reader; it does not check the content against sha.
func (c *Client) OpenBlob(ctx context.Context, sha string) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v1/blobs/"+url.PathEscape(sha)), nil)
	if err != nil {
		return nil, 0, err
	}
	if c.Token != "" { // a job's files need the admin token when the host has one
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.streamHTTP().Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("admin API at %s: %w", c.Base, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, 0, apiError(resp, b)
	}
	return resp.Body, resp.ContentLength, nil
}

// Pipelines lists the defined pipelines.
func (c *Client) Pipelines(ctx context.Context) ([]queue.Pipeline, error) {
	var out []queue.Pipeline
	return out, c.do(ctx, http.MethodGet, "/v1/queue/pipelines", nil, &out)
}

// Submit creates a job of pipeline over inputs, whose contents are already uploaded.
// requestID makes it idempotent: sending the same id again returns the first job. With
// c.Traceparent set, the job's spans join that trace.
func (c *Client) Submit(ctx context.Context, pipeline string, inputs []queue.File, requestID string) (queue.Job, error) {
	var out queue.Job
	b, err := json.Marshal(struct {
		Inputs    []queue.File `json:"inputs"`
		RequestID string       `json:"request_id,omitempty"`
	}{inputs, requestID})
	if err != nil {
		return out, err
	}
	req, err := c.request(ctx, http.MethodPost, "/v1/queue/pipelines/"+url.PathEscape(pipeline)+"/jobs", bytes.NewReader(b))
	if err != nil {
		return out, err
	}
	if c.Traceparent != "" {
		req.Header.Set("traceparent", c.Traceparent)
	}
	return out, c.send(c.client(), req, &out)
}

// Job returns a job with its progress and outputs.
func (c *Client) Job(ctx context.Context, id queue.JobID) (queue.Job, error) {
	var out queue.Job
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/queue/jobs/%d", id), nil, &out)
}

// WaitJob is Job answered once the job has finished or wait has passed, whichever comes first
// (the host caps wait, by default at 5 minutes): a job followed this way is seen finished as
// soon as it is, without polling. A host that does not hold answers answers at once.
func (c *Client) WaitJob(ctx context.Context, id queue.JobID, wait time.Duration) (queue.Job, error) {
	if wait <= 0 {
		return c.Job(ctx, id)
	}
	var out queue.Job
	req, err := c.request(ctx, http.MethodGet, fmt.Sprintf("/v1/queue/jobs/%d?wait=%s", id, wait), nil)
	if err != nil {
		return out, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: wait + 30*time.Second} // the default's 2 minutes would cut a longer wait
	}
	return out, c.send(hc, req, &out)
}

// Jobs lists the newest jobs, of one pipeline or all (""), at most limit (0: the host's
// default).
func (c *Client) Jobs(ctx context.Context, pipeline string, limit int) ([]queue.Job, error) {
	var out []queue.Job
	q := url.Values{}
	if pipeline != "" {
		q.Set("pipeline", pipeline)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	path := "/v1/queue/jobs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// QueueStatus returns the stage counters and the host's worker pools.
func (c *Client) QueueStatus(ctx context.Context) (QueueStatus, error) {
	var out QueueStatus
	return out, c.do(ctx, http.MethodGet, "/v1/queue/status", nil, &out)
}

// DeadTasks lists the dead-lettered tasks of a pipeline ("" for all), oldest first.
func (c *Client) DeadTasks(ctx context.Context, pipeline string) ([]queue.TaskInfo, error) {
	var out []queue.TaskInfo
	path := "/v1/queue/dead"
	if pipeline != "" {
		path += "?pipeline=" + url.QueryEscape(pipeline)
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Task returns one task.
func (c *Client) Task(ctx context.Context, id queue.TaskID) (queue.TaskInfo, error) {
	var out queue.TaskInfo
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/queue/tasks/%d", id), nil, &out)
}

// RetryTask puts a dead-lettered task back in its stage queue and returns it.
func (c *Client) RetryTask(ctx context.Context, id queue.TaskID) (queue.TaskInfo, error) {
	var out queue.TaskInfo
	return out, c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/queue/tasks/%d/retry", id), nil, &out)
}
