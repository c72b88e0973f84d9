package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// TestPipelinesEndToEnd runs `wasmpod run` on a pod with a pipeline: the host defines it and
// runs its workers, a job submitted through the admin API goes through a command stage and a
// native stage, and SIGTERM stops the workers and the modules cleanly.
func TestPipelinesEndToEnd(t *testing.T) {
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	native := wasmbuild.Go(t, filepath.Join(root, "host/testdata/stageguest"))
	command := wasmbuild.GoCommand(t, filepath.Join(root, "host/testdata/stagecmd"))
	h := startHost(t, writePod(t, fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: e2e-pipeline}
spec:
  terminationGracePeriodSeconds: 10
  modules:
    - {name: cmd, role: stage, wasm: %s, resources: {timeout: 10s, concurrency: 2}}
    - {name: up, role: stage, wasm: %s}
  pipelines:
    - {name: shout, stages: [{module: cmd}, {module: up}]}
`, command, native)), "")

	code, body := h.adminDo("PUT", "/v1/blobs", []byte("hello"))
	if code != 201 && code != 200 {
		t.Fatalf("put blob: %d %s", code, body)
	}
	var blob struct {
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	}
	if err := json.Unmarshal([]byte(body), &blob); err != nil {
		t.Fatal(err)
	}
	submit := fmt.Sprintf(`{"inputs":[{"name":"greeting.txt","sha256":%q,"size":%d}]}`, blob.SHA256, blob.Size)
	var job queue.Job
	waitFor(t, time.Minute, "the pipeline to take jobs", func() bool {
		code, body = h.adminDo("POST", "/v1/queue/pipelines/shout/jobs", []byte(submit))
		return code == 201 && json.Unmarshal([]byte(body), &job) == nil
	})
	waitFor(t, time.Minute, "the job to finish", func() bool {
		code, body = h.adminDo("GET", fmt.Sprintf("/v1/queue/jobs/%d", job.ID), nil)
		return code == 200 && json.Unmarshal([]byte(body), &job) == nil && job.IsFinished()
	})
	if job.State != queue.JobDone || len(job.Outputs) != 1 || job.Outputs[0].Name != "greeting.txt" {
		t.Fatalf("job: %s", body)
	}
	if code, body = h.adminDo("GET", "/v1/blobs/"+job.Outputs[0].SHA256, nil); code != 200 || body != "GREETING.TXT: HELLO" {
		t.Fatalf("output: %d %q", code, body)
	}
	var st struct {
		Calls string `json:"calls"`
		Ready bool   `json:"ready"`
	}
	if code, body = h.adminDo("GET", "/v1/modules/cmd", nil); code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Calls != "command" || !st.Ready {
		t.Errorf("command module status: %d %s", code, body)
	}
	if code := h.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	log := h.stderr.String()
	for _, want := range []string{"pipeline defined", "pipeline stage workers started", "module stopped", "stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("host log lacks %q", want)
		}
	}
}
