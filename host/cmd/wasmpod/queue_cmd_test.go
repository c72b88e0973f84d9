package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/host/internal/client"
)

func TestQueueInputNames(t *testing.T) {
	for _, c := range []struct {
		name  string
		files []string
		root  string
		want  []string
		err   string
	}{
		{"deepest common parent", []string{"/usr/share/doc/bash/changelog.Debian.gz", "/usr/share/doc/zsh/changelog.gz"}, "",
			[]string{"bash/changelog.Debian.gz", "zsh/changelog.gz"}, ""},
		{"one file: its base name", []string{"/var/log/syslog.1.gz"}, "", []string{"syslog.1.gz"}, ""},
		{"files in one directory", []string{"/d/a", "/d/b"}, "", []string{"a", "b"}, ""},
		{"a file above the others", []string{"/d/x/y/a", "/d/b", "/d/x/c"}, "", []string{"x/y/a", "b", "x/c"}, ""},
		{"common prefix is not a common directory", []string{"/data/ab/f", "/data/abc/g"}, "", []string{"ab/f", "abc/g"}, ""},
		{"the root directory", []string{"/a", "/b/c"}, "", []string{"a", "b/c"}, ""},
		{"name root", []string{"/usr/share/doc/bash/changelog.gz"}, "/usr/share", []string{"doc/bash/changelog.gz"}, ""},
		{"name root with a trailing slash", []string{"/usr/share/doc/x"}, "/usr/share/", []string{"doc/x"}, ""},
		{"outside the name root", []string{"/etc/passwd"}, "/usr/share", nil, "not below --name-root"},
		{"the name root itself", []string{"/usr/share"}, "/usr/share", nil, "not a clean relative path"},
		{"the same file twice", []string{"/d/a", "/d/./a"}, "", nil, `would both be named "a"`},
		{"two files one name under the root", []string{"/x/a/f", "/x/a/../a/f"}, "/x", nil, "would both be named"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := inputNames(c.files, c.root)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("inputNames = %v, %v; want an error with %q", got, err, c.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Fatalf("inputNames = %q, %v; want %q", got, err, c.want)
			}
		})
	}
	// Relative paths are named from the working directory's view.
	wd, _ := os.Getwd()
	got, err := inputNames([]string{"testdata-x/a", "testdata-x/b/c"}, "")
	if err != nil || !slices.Equal(got, []string{"a", "b/c"}) {
		t.Fatalf("relative: %q, %v (wd %s)", got, err, wd)
	}
}

func TestQueueCheckInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := write("in/a.txt", "hello"), write("in/sub/b.txt", "")
	in, err := checkInputs([]string{a, b}, "")
	if err != nil {
		t.Fatal(err)
	}
	if in[0].name != "a.txt" || in[0].size != 5 || in[1].name != "sub/b.txt" || in[1].size != 0 {
		t.Fatalf("inputs %+v", in)
	}
	// Every problem is named, before anything is uploaded.
	_, err = checkInputs([]string{a, filepath.Join(dir, "in/sub"), filepath.Join(dir, "missing")}, "")
	if err == nil || !strings.Contains(err.Error(), "is a directory") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("dir and missing file: %v", err)
	}
	if os.Getuid() != 0 { // root reads anything
		locked := write("in/locked", "x")
		os.Chmod(locked, 0)
		if _, err := checkInputs([]string{a, locked}, ""); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("unreadable file: %v", err)
		}
	}
}

func TestQueueOutputPaths(t *testing.T) {
	sha := strings.Repeat("e", 64)
	files := func(names ...string) []queue.File {
		var fs []queue.File
		for _, n := range names {
			fs = append(fs, queue.File{Name: n, SHA256: sha})
		}
		return fs
	}
	for _, c := range []struct {
		name  string
		files []queue.File
		err   string
	}{
		{"ok", files("a", "dir/b", "dir/sub/c"), ""},
		{"parent", files("../x"), "outside the output directory"},
		{"parent inside", files("a/../../x"), "outside the output directory"},
		{"absolute", files("/etc/passwd"), "outside the output directory"},
		{"dot", files("."), "outside the output directory"},
		{"empty", files(""), "outside the output directory"},
		{"unclean", files("a//b"), "outside the output directory"},
		{"backslash", files(`a\..\..\x`), "outside the output directory"},
		{"duplicate", files("a", "a"), `two outputs are named "a"`},
		{"below a file", files("a", "a/b"), `"a/b" is below output "a"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			paths, err := outputPaths(c.files)
			if c.err == "" {
				if err != nil || len(paths) != len(c.files) || paths[1] != filepath.FromSlash("dir/b") {
					t.Fatalf("outputPaths = %q, %v", paths, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("outputPaths = %q, %v; want an error with %q", paths, err, c.err)
			}
		})
	}
}

func TestQueueProgressLine(t *testing.T) {
	for _, c := range []struct {
		done, dead, total, since int
		elapsed                  time.Duration
		want                     string
	}{
		{0, 0, 10, 0, 0, "job 3: 0/10 tasks done, 0 failed, rate -, ETA -"},
		{4, 1, 10, 5, 2 * time.Second, "job 3: 4/10 tasks done, 1 failed, 2.5 tasks/s, ETA 2s"},
		{10, 0, 10, 10, 4 * time.Second, "job 3: 10/10 tasks done, 0 failed, 2.5 tasks/s, ETA 0s"},
	} {
		if got := progressLine(3, c.done, c.dead, c.total, c.since, c.elapsed); got != c.want {
			t.Errorf("progressLine = %q, want %q", got, c.want)
		}
	}
	// The plain progress prints at most every `every`, and the last state at the end.
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	p := &lineProgress{w: &buf, every: time.Second, now: func() time.Time { return now }}
	job := func(done int) queue.Job {
		return queue.Job{ID: 3, State: queue.JobRunning, Stages: []queue.StageProgress{{Expected: 10, Done: done}}}
	}
	for i := range 10 { // 2 s of polls every 200 ms
		p.update(job(i))
		now = now.Add(200 * time.Millisecond)
	}
	p.end()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "job 3: 0/10") || !strings.HasPrefix(lines[2], "job 3: 9/10") {
		t.Fatalf("progress lines:\n%s", buf.String())
	}
}

func TestQueueWaitJob(t *testing.T) {
	var calls int
	get := func(context.Context) (queue.Job, error) {
		calls++
		switch calls {
		case 1:
			return queue.Job{}, errors.New("404: not applied on this replica yet")
		case 2:
			return queue.Job{ID: 1, State: queue.JobRunning}, nil
		case 3:
			return queue.Job{}, errors.New("503: electing")
		}
		return queue.Job{ID: 1, State: queue.JobPartial}, nil
	}
	var buf bytes.Buffer
	j, err := waitJob(context.Background(), get, &lineProgress{w: &buf, every: time.Hour, now: time.Now}, time.Millisecond)
	if err != nil || j.State != queue.JobPartial || calls != 4 {
		t.Fatalf("waitJob = %+v, %v after %d calls", j, err, calls)
	}
	// Interrupted: the last job seen, and the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	get = func(context.Context) (queue.Job, error) {
		if calls++; calls == 3 {
			cancel()
		}
		return queue.Job{ID: 2, State: queue.JobRunning}, nil
	}
	j, err = waitJob(ctx, get, &lineProgress{w: &buf, every: time.Hour, now: time.Now}, time.Millisecond)
	if !errors.Is(err, context.Canceled) || j.ID != 2 {
		t.Fatalf("interrupted waitJob = %+v, %v", j, err)
	}
}

func TestQueueTables(t *testing.T) {
	var b bytes.Buffer
	statusTables(&b, client.QueueStatus{
		Stages:  []queue.StageStats{{Pipeline: "logs", Stage: 0, Name: "gunzip", Stats: queue.Stats{Depth: 5, Ready: 3, Leased: 2, Retries: 7, Dead: 1, Completed: 40}}},
		Workers: []cluster.WorkerStats{{Pipeline: "logs", Stage: 0, Running: 2, Completed: 30, Failed: 4, LeaseLost: 1}},
	})
	for _, want := range []string{"PIPELINE   STAGE    DEPTH   READY   LEASED   RETRIES   DEAD   COMPLETED",
		"logs       gunzip   5       3       2        7         1      40", "Workers on this host:", "logs       gunzip   2         30          4        1"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	statusTables(&b, client.QueueStatus{})
	if b.String() != "no pipelines\n\nno workers on this host\n" {
		t.Errorf("empty status: %q", b.String())
	}

	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	jobs := []queue.Job{{ID: 12, Pipeline: queue.Pipeline{Name: "logs", Stages: []queue.StageDef{{Name: "gunzip"}, {Name: "wc", Merge: true}}},
		Inputs: make([]queue.File, 3), State: queue.JobPartial, Created: now.Add(-time.Minute), Finished: now.Add(-30 * time.Second),
		Stages:  []queue.StageProgress{{Name: "gunzip", Expected: 3, Done: 2, Dead: 1}, {Name: "wc", Expected: 1, Done: 1}},
		Outputs: []queue.File{{Name: "wc", Size: 9, SHA256: strings.Repeat("f", 64)}}}}
	b.Reset()
	jobsTable(&b, jobs, now)
	if !strings.Contains(b.String(), "12   logs       partial   3/4          1      3        1m0s   30s") {
		t.Errorf("jobs:\n%s", b.String())
	}
	b.Reset()
	describeJob(&b, jobs[0], now)
	for _, want := range []string{"State:     partial", "Tasks:     3/4 done, 1 dead", "Stage 0:   gunzip: 2/3 done, 1 dead",
		"Stage 1:   wc (merge): 1/1 done, 0 dead", "Outputs:   1\n  wc  9 bytes  sha256 ffffffffffff\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("job lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	deadTable(&b, []queue.TaskInfo{{ID: 7, Job: 12, Pipeline: "logs", Stage: 0, StageName: "gunzip", Attempts: 5,
		Errors: []queue.AttemptError{{Attempt: 4, Message: "old"}, {Attempt: 5, Message: "gzip: invalid header\n  at byte 0"}}}})
	if !strings.Contains(b.String(), "7      12    logs/gunzip   5          gzip: invalid header at byte 0") {
		t.Errorf("dead:\n%s", b.String())
	}
	if got := oneLine(strings.Repeat("x", 200), 10); got != "xxxxxxxxx…" {
		t.Errorf("oneLine = %q", got)
	}
}

// fakeAPI is the admin API's queue routes in memory: blobs, one job that finishes after a few
// polls with one output per input (its content upper-cased) and, with deadSlot set, one dead
// task.
type fakeAPI struct {
	mu       sync.Mutex
	blobs    map[string][]byte
	job      queue.Job
	polls    int
	deadSlot int // -1: none
	badSHA   bool
	badName  string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	put := func(b []byte) string {
		s := sha256.Sum256(b)
		sha := hex.EncodeToString(s[:])
		f.blobs[sha] = b
		return sha
	}
	switch {
	case r.Method == "PUT" && r.URL.Path == "/v1/blobs":
		if r.Header.Get("Authorization") != "Bearer tok" {
			reply(401, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		b, _ := io.ReadAll(r.Body)
		sha := put(b)
		if f.badSHA {
			sha = strings.Repeat("0", 64)
		}
		reply(201, client.BlobRef{SHA256: sha, Size: int64(len(b))})
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/blobs/"):
		if r.Header.Get("Authorization") != "Bearer tok" { // job files need the token, as on the host
			reply(401, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		b, ok := f.blobs[strings.TrimPrefix(r.URL.Path, "/v1/blobs/")]
		if !ok {
			reply(404, map[string]string{"error": "not found"})
			return
		}
		w.Write(b)
	case r.Method == "POST" && r.URL.Path == "/v1/queue/pipelines/logs/jobs":
		var req struct{ Inputs []queue.File }
		json.NewDecoder(r.Body).Decode(&req)
		for _, in := range req.Inputs {
			if _, ok := f.blobs[in.SHA256]; !ok {
				reply(400, map[string]string{"error": "input not uploaded: " + in.Name})
				return
			}
		}
		f.job = queue.Job{ID: 5, Pipeline: queue.Pipeline{Name: "logs"}, Inputs: req.Inputs, State: queue.JobRunning,
			Stages: []queue.StageProgress{{Name: "upper", Expected: len(req.Inputs)}}}
		reply(201, f.job)
	case r.Method == "GET" && r.URL.Path == "/v1/queue/jobs/5":
		if f.job.ID == 0 {
			reply(404, map[string]string{"error": "no job 5"})
			return
		}
		f.polls++
		if f.polls >= 3 && !f.job.IsFinished() {
			f.job.State = queue.JobDone
			for i, in := range f.job.Inputs {
				if i == f.deadSlot {
					f.job.State = queue.JobPartial
					f.job.Stages[0].Dead++
					continue
				}
				out := bytes.ToUpper(f.blobs[in.SHA256])
				name := in.Name + ".up"
				if f.badName != "" {
					name = f.badName
				}
				f.job.Outputs = append(f.job.Outputs, queue.File{Name: name, SHA256: put(out), Size: int64(len(out))})
				f.job.Stages[0].Done++
			}
		}
		reply(200, f.job)
	case r.Method == "GET" && r.URL.Path == "/v1/queue/dead":
		reply(200, []queue.TaskInfo{{ID: 77, Job: 5, Pipeline: "logs", StageName: "upper", Attempts: 3, State: "dead",
			Errors: []queue.AttemptError{{Attempt: 3, Message: "upper: input is not text"}}}})
	default:
		reply(404, map[string]string{"error": "no route " + r.Method + " " + r.URL.Path})
	}
}

// runCLI runs the wasmpod command line in process.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var o, e bytes.Buffer
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(args)
	err = root.Execute()
	return o.String(), e.String(), err
}

func TestQueueSubmitWaitAndGet(t *testing.T) {
	t.Setenv("WASMPOD_TOKEN", "tok")
	for _, c := range []struct {
		name     string
		deadSlot int
		code     int // exit code of submit --wait and get; 0: no error
	}{
		{"done", -1, 0},
		{"partial", 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			api := &fakeAPI{blobs: map[string][]byte{}, deadSlot: c.deadSlot}
			srv := httptest.NewServer(api)
			defer srv.Close()
			dir := t.TempDir()
			var files []string
			for _, n := range []string{"docs/bash/changelog", "docs/zsh/changelog", "docs/zsh/NEWS"} {
				p := filepath.Join(dir, n)
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.WriteFile(p, []byte("content of "+n), 0o644)
				files = append(files, p)
			}
			out, errOut, err := runCLI(t, append([]string{"queue", "submit", "--admin", srv.URL, "--pipeline", "logs", "--wait"}, files...)...)
			if code := exitCode(err); code != c.code {
				t.Fatalf("submit --wait: exit %d (%v), want %d\nstdout: %s\nstderr: %s", code, err, c.code, out, errOut)
			}
			if out != "5\n" {
				t.Fatalf("submit printed %q, want the job id", out)
			}
			names := []string{api.job.Inputs[0].Name, api.job.Inputs[1].Name, api.job.Inputs[2].Name}
			if !slices.Equal(names, []string{"bash/changelog", "zsh/changelog", "zsh/NEWS"}) {
				t.Fatalf("input names %q", names)
			}
			if !strings.Contains(errOut, "job 5: 0/3 tasks done") {
				t.Errorf("no progress line:\n%s", errOut)
			}
			if c.code == 1 && (!strings.Contains(errOut, "job 5 partial: 1 of 3 tasks dead-lettered") || !strings.Contains(errOut, "upper: input is not text")) {
				t.Errorf("partial job report:\n%s", errOut)
			}

			outDir := filepath.Join(t.TempDir(), "out")
			out, errOut, err = runCLI(t, "queue", "get", "--admin", srv.URL, "5", "-o", outDir)
			if code := exitCode(err); code != c.code {
				t.Fatalf("get: exit %d (%v), want %d\nstdout: %s\nstderr: %s", code, err, c.code, out, errOut)
			}
			for i, n := range []string{"bash/changelog", "zsh/changelog", "zsh/NEWS"} {
				b, err := os.ReadFile(filepath.Join(outDir, filepath.FromSlash(n+".up")))
				if i == c.deadSlot {
					if err == nil {
						t.Errorf("output of the dead task %s exists", n)
					}
					continue
				}
				if want := strings.ToUpper("content of docs/" + n); string(b) != want {
					t.Errorf("output %s = %q, %v; want %q", n, b, err, want)
				}
			}
		})
	}
}

func TestQueueSubmitRefusesBeforeUploading(t *testing.T) {
	t.Setenv("WASMPOD_TOKEN", "tok")
	api := &fakeAPI{blobs: map[string][]byte{}, deadSlot: -1}
	srv := httptest.NewServer(api)
	defer srv.Close()
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	os.WriteFile(a, []byte("a"), 0o644)
	_, _, err := runCLI(t, "queue", "submit", "--admin", srv.URL, "--pipeline", "logs", a, dir, filepath.Join(dir, "nope"))
	if err == nil || !strings.Contains(err.Error(), "is a directory") || len(api.blobs) != 0 {
		t.Fatalf("submit with a directory: %v, %d blobs uploaded", err, len(api.blobs))
	}
	// The host's sha256 must be the file's.
	api.badSHA = true
	_, _, err = runCLI(t, "queue", "submit", "--admin", srv.URL, "--pipeline", "logs", a)
	if err == nil || !strings.Contains(err.Error(), "did it change?") {
		t.Fatalf("submit with a wrong stored sha256: %v", err)
	}
}

func TestQueueGetRefusals(t *testing.T) {
	t.Setenv("WASMPOD_TOKEN", "tok")
	api := &fakeAPI{blobs: map[string][]byte{}, deadSlot: -1}
	srv := httptest.NewServer(api)
	defer srv.Close()
	f := filepath.Join(t.TempDir(), "in")
	os.WriteFile(f, []byte("x"), 0o644)
	if _, _, err := runCLI(t, "queue", "submit", "--admin", srv.URL, "--pipeline", "logs", f); err != nil {
		t.Fatal(err)
	}
	outDir := t.TempDir()
	_, _, err := runCLI(t, "queue", "get", "--admin", srv.URL, "5", "-o", outDir)
	if err == nil || !strings.Contains(err.Error(), "job 5 is still running (0/1 tasks done)") {
		t.Fatalf("get on a running job: %v", err)
	}
	api.badName = "../escaped"
	_, _, err = runCLI(t, "queue", "get", "--admin", srv.URL, "--wait", "5", "-o", outDir)
	if err == nil || !strings.Contains(err.Error(), `output "../escaped" would be written outside the output directory`) {
		t.Fatalf("get with an escaping name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(outDir), "escaped")); err == nil {
		t.Fatal("the escaping output was written")
	}
	// A symlink inside the output directory does not take a write out of it.
	api.mu.Lock()
	api.job.Outputs[0].Name = "link/x"
	api.mu.Unlock()
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(outDir, "link"))
	_, _, err = runCLI(t, "queue", "get", "--admin", srv.URL, "5", "-o", outDir)
	if err == nil || !strings.Contains(err.Error(), "path escapes from parent") {
		t.Fatalf("get through a symlink out of the output directory: %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("wrote %v outside the output directory", ents)
	}
}

func TestQueueIDs(t *testing.T) {
	for _, s := range []string{"0", "-1", "x", "1.5", ""} {
		if _, err := parseJobID(s); err == nil {
			t.Errorf("parseJobID(%q) accepted", s)
		}
	}
	if id, err := parseTaskID("42"); err != nil || id != 42 {
		t.Errorf("parseTaskID(42) = %d, %v", id, err)
	}
}

func exitCode(err error) int {
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	return -1 // an error main prints
}
