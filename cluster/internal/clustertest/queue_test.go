package clustertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/internal/podtest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

const queueToken = "queue-test-token"

// queueCluster is a set of real `wasmpod run` processes, one per network namespace, each
// running the slow stage of the "slow" pipeline.
type queueCluster struct {
	t     *testing.T
	net   *Net
	bin   string
	pod   string
	token string
	key   string // gossip key file: mutual TLS between the nodes is derived from it
	dirs  map[int]string
	procs map[int]*Proc
}

func newQueueCluster(t *testing.T) *queueCluster {
	n := NewNet(t) // skips when netns is unavailable
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	wasm := wasmbuild.GoCommand(t, filepath.Join(root, "cluster", "internal", "clustertest", "testdata", "slowstage"))
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.yaml")
	spec := fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: queue-test}
spec:
  modules:
    - name: slow
      role: stage
      wasm: %s
      resources: {memory: 64Mi, timeout: 20s, concurrency: 2}
  pipelines:
    - name: slow
      maxAttempts: 10
      backoff: 200ms
      stages:
        - module: slow
`, wasm)
	if err := os.WriteFile(pod, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(queueToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &queueCluster{t: t, net: n, bin: podtest.Binary(t), pod: pod, token: tok, key: podtest.GossipKeyFile(t), dirs: map[int]string{}, procs: map[int]*Proc{}}
}

func (c *queueCluster) admin(i int) string { return "http://" + c.net.IP(i) + ":9901" }

// start starts (or restarts, with its state) node i; join lists the nodes it may join.
func (c *queueCluster) start(i int, join ...int) {
	l := label(i)
	if _, ok := c.dirs[i]; !ok {
		c.net.AddHost(l, i)
		c.dirs[i] = c.t.TempDir()
	}
	args := []string{"run", c.pod, "--node-name", l, "--bind", c.net.IP(i) + ":7946",
		"--admin", c.net.IP(i) + ":9901", "--listen", c.net.IP(i) + ":8080",
		"--state-dir", c.dirs[i], "--token-file", c.token, "--queue-lease", "2s", "--queue-backoff", "200ms",
		"--gossip-key-file", c.key}
	var js []string
	for _, j := range join {
		js = append(js, c.net.IP(j)+":7946")
	}
	if len(js) > 0 {
		args = append(args, "--join", strings.Join(js, ","))
	}
	c.procs[i] = c.net.Start(l, c.bin, args...)
}

// running reports how many deliveries node i's workers have in flight.
func (c *queueCluster) running(i int) (int, error) {
	var st struct {
		Workers []struct {
			Running int `json:"running"`
		} `json:"workers"`
	}
	if _, err := c.do("GET", c.admin(i)+"/v1/queue/status", nil, &st); err != nil {
		return 0, err
	}
	n := 0
	for _, w := range st.Workers {
		n += w.Running
	}
	return n, nil
}

// leader returns the index of the Raft leader as node i sees it.
func (c *queueCluster) leader(t *testing.T, i int) int {
	t.Helper()
	var ms []member
	if _, err := c.do("GET", c.admin(i)+"/v1/members", nil, &ms); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		var n int
		if _, err := fmt.Sscanf(m.Name, "n%d", &n); err == nil && m.Leader {
			return n
		}
	}
	t.Fatalf("no leader in %+v", ms)
	return 0
}

// killMidTask kills node i with SIGKILL while its workers hold tasks.
func (c *queueCluster) killMidTask(i int) {
	waitFor(c.t, 60*time.Second, fmt.Sprintf("n%d mid-task", i), func() error {
		n, err := c.running(i)
		if err == nil && n == 0 {
			err = fmt.Errorf("no task in flight")
		}
		return err
	})
	c.kill(i)
}

func (c *queueCluster) kill(i int) {
	p := c.procs[i]
	_ = p.Signal(syscall.SIGKILL)
	if !p.Wait(10 * time.Second) {
		c.t.Fatalf("%s did not die", p.Label)
	}
}

func (c *queueCluster) do(method, url string, body io.Reader, out any) (int, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+queueToken)
	resp, err := c.net.Client(30 * time.Second).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	if out != nil {
		if s, ok := out.(*[]byte); ok {
			*s = b
			return resp.StatusCode, nil
		}
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

// submit uploads the inputs through node i and submits a job; it returns the job id once the
// submit is acknowledged (0 and the error otherwise).
func (c *queueCluster) submit(i int, inputs map[string]string) (queue.JobID, error) {
	var files []queue.File
	for name, content := range inputs {
		var put struct {
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
		}
		if _, err := c.do("PUT", c.admin(i)+"/v1/blobs", strings.NewReader(content), &put); err != nil {
			return 0, err
		}
		files = append(files, queue.File{Name: name, SHA256: put.SHA256, Size: put.Size})
	}
	body, _ := json.Marshal(map[string]any{"inputs": files})
	var j queue.Job
	if _, err := c.do("POST", c.admin(i)+"/v1/queue/pipelines/slow/jobs", bytes.NewReader(body), &j); err != nil {
		return 0, err
	}
	return j.ID, nil
}

func (c *queueCluster) job(i int, id queue.JobID) (queue.Job, error) {
	var j queue.Job
	_, err := c.do("GET", fmt.Sprintf("%s/v1/queue/jobs/%d", c.admin(i), id), nil, &j)
	return j, err
}

func (c *queueCluster) blob(i int, sha string) (string, error) {
	var b []byte
	_, err := c.do("GET", c.admin(i)+"/v1/blobs/"+sha, nil, &b)
	return string(b), err
}

// submitted is the acknowledged submits, with what each input should become.
type submitted map[queue.JobID]map[string]string

func (c *queueCluster) submitMany(t *testing.T, via, jobs, files int, tag string, acked submitted) {
	t.Helper()
	for j := range jobs {
		in := map[string]string{}
		for f := range files {
			in[fmt.Sprintf("%s-%d/file-%d", tag, j, f)] = fmt.Sprintf("%s job %d file %d", tag, j, f)
		}
		var id queue.JobID
		waitFor(t, 60*time.Second, "an acknowledged submit", func() (err error) {
			id, err = c.submit(via, in)
			return err
		})
		acked[id] = in
	}
}

// check waits until every acknowledged job has finished through node i, then verifies that
// every input produced its output (none lost) and reports the redeliveries (duplicates).
func (c *queueCluster) check(t *testing.T, i int, acked submitted) (redelivered int) {
	t.Helper()
	for id, in := range acked {
		var j queue.Job
		waitFor(t, 3*time.Minute, fmt.Sprintf("job %d finished", id), func() (err error) {
			if j, err = c.job(i, id); err != nil {
				return err
			}
			if !j.IsFinished() {
				return fmt.Errorf("job %d %s %+v", id, j.State, j.Stages)
			}
			return nil
		})
		if j.State != queue.JobDone || len(j.Outputs) != len(in) {
			t.Fatalf("job %d lost work: state %s, %d outputs for %d inputs: %+v", id, j.State, len(j.Outputs), len(in), j.Stages)
		}
		for _, o := range j.Outputs {
			got, err := c.blob(i, o.SHA256)
			if err != nil {
				t.Fatalf("job %d output %s: %v", id, o.Name, err)
			}
			if want := "done:" + in[o.Name]; got != want {
				t.Fatalf("job %d output %s = %q, want %q", id, o.Name, got, want)
			}
		}
		for _, s := range j.Stages {
			redelivered += s.Redelivered
		}
	}
	return redelivered
}

// TestQueueSurvivesKills: a 3-node cluster of real hosts. A worker host is killed with
// SIGKILL mid-task and restarted; later another host is killed for good, and work submitted
// before and after keeps flowing on the remaining two. Every acknowledged submit completes
// with the right output; redeliveries (possible duplicates) are counted.
func TestQueueSurvivesKills(t *testing.T) {
	c := newQueueCluster(t)
	c.start(1)
	waitFor(t, 60*time.Second, "n1 up", func() error { _, err := c.do("GET", c.admin(1)+"/v1/queue/pipelines", nil, nil); return err })
	c.start(2, 1)
	c.start(3, 1)
	waitFor(t, 60*time.Second, "three voters", func() error {
		var ms []member
		if _, err := c.do("GET", c.admin(1)+"/v1/members", nil, &ms); err != nil {
			return err
		}
		voters := 0
		for _, m := range ms {
			if m.Voter && m.State == "alive" {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("%d live voters: %+v", voters, ms)
		}
		return nil
	})

	acked := submitted{}
	c.submitMany(t, 1, 6, 5, "a", acked)
	c.killMidTask(3) // a worker, mid-task
	c.submitMany(t, 2, 2, 5, "b", acked)
	c.start(3, 1, 2) // back with its state
	red := c.check(t, 1, acked)
	t.Logf("FIGURE worker SIGKILL mid-task and restart: %d jobs, %d tasks, none lost, %d redelivered", len(acked), countTasks(acked), red)
	if red == 0 {
		t.Fatal("the killed worker's tasks were not redelivered: was it holding any?")
	}

	// Now the Raft leader itself, for good: the queue's state must come through the other two.
	victim := c.leader(t, 1)
	var alive []int
	for i := 1; i <= 3; i++ {
		if i != victim {
			alive = append(alive, i)
		}
	}
	acked2 := submitted{}
	c.submitMany(t, alive[0], 4, 5, "c", acked2)
	c.killMidTask(victim)
	c.submitMany(t, alive[1], 2, 5, "d", acked2)
	red2 := c.check(t, alive[0], acked2)
	t.Logf("FIGURE Raft leader n%d SIGKILL mid-task, for good: %d jobs, %d tasks, none lost, %d redelivered", victim, len(acked2), countTasks(acked2), red2)
	if red2 == 0 {
		t.Fatal("the killed node's tasks were not redelivered: was it holding any?")
	}
	for id := range acked {
		if _, err := c.job(alive[1], id); err != nil {
			t.Fatalf("job %d from before the node loss: %v", id, err)
		}
	}
}

// TestQueueSingleNodeRestart: one host killed with SIGKILL while tasks are in flight comes back
// with its state and finishes every acknowledged job.
func TestQueueSingleNodeRestart(t *testing.T) {
	c := newQueueCluster(t)
	c.start(1)
	acked := submitted{}
	c.submitMany(t, 1, 5, 6, "s", acked)
	c.killMidTask(1)
	c.start(1)
	red := c.check(t, 1, acked)
	t.Logf("FIGURE single node SIGKILL with tasks in flight: %d jobs, %d tasks, none lost, %d redelivered", len(acked), countTasks(acked), red)
}

func countTasks(s submitted) int {
	n := 0
	for _, in := range s {
		n += len(in)
	}
	return n
}
