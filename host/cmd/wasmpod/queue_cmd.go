package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/host/internal/client"
	"github.com/wasmpod/wasmpod/internal/spans"
)

const (
	// pollInterval is how often a waiting command asks for the job's progress.
	pollInterval = 200 * time.Millisecond
	// pollFailureLimit is how long a wait tolerates failing polls (a Raft election, a replica
	// that has not applied the submit yet) before it gives up.
	pollFailureLimit = 30 * time.Second
	// lineEvery is how often the plain progress line is printed when stderr is not a terminal.
	lineEvery = time.Second
)

// queueVerbs is `wasmpod queue ...`: the client verbs of the cluster's work queue.
func queueVerbs(cf *clientFlags) *cobra.Command {
	type runFunc func(ctx context.Context, c *client.Client, args []string, w, ew io.Writer) error
	run := func(fn runFunc, c func() (*client.Client, error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cl, err := c()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return fn(ctx, cl, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		}
	}
	wrap := func(cmd *cobra.Command, fn runFunc) *cobra.Command {
		cmd.RunE = run(fn, cf.client)
		cf.add(cmd)
		return cmd
	}
	jsonOut := func() bool { return cf.output == "json" }

	root := &cobra.Command{Use: "queue", Short: "The cluster's work queue: submit files to a pipeline, follow jobs, fetch their outputs"}

	var pipeline, nameRoot string
	var wait bool
	submit := wrap(&cobra.Command{
		Use:   "submit --pipeline NAME FILE...",
		Short: "Upload files and submit them as one job of a pipeline; prints the job id",
		Long: `Upload FILEs to the host's blob store and submit them as one job of the pipeline.

Each input is named by its path relative to the deepest directory holding all the files (or to
--name-root): /usr/share/doc/bash/changelog.Debian.gz and /usr/share/doc/zsh/changelog.gz become
bash/changelog.Debian.gz and zsh/changelog.gz. Directories, unreadable files and two files with
one name are refused before anything is uploaded.

The job id is printed on stdout. With --wait a progress bar (a progress line every second when
stderr is not a terminal) follows the job: the command exits 0 when the job is done, 1 when it
finished with dead-lettered tasks (listed with their last error).

When TRACEPARENT is set (a W3C traceparent, as otel-cli and CI systems export it), the submit
carries it: on a host with tracing on, the job's spans (the submit and every task attempt) join
that trace. Without it the host's submit span starts the job's trace.`,
		Args: cobra.MinimumNArgs(1),
	}, func(ctx context.Context, c *client.Client, args []string, w, ew io.Writer) error {
		job, err := submitFiles(ctx, c, pipeline, args, nameRoot, ew)
		if err != nil {
			return err
		}
		if jsonOut() {
			if err := writeJSON(w, job); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(w, job.ID)
		}
		if !wait {
			return nil
		}
		j, err := followJob(ctx, c, job, ew)
		if err != nil {
			return err
		}
		return reportJob(ctx, c, j, ew)
	})
	submit.Flags().StringVar(&pipeline, "pipeline", "", "the pipeline to run the files through")
	_ = submit.MarkFlagRequired("pipeline")
	submit.Flags().StringVar(&nameRoot, "name-root", "", "name inputs by their path relative to this directory")
	submit.Flags().BoolVar(&wait, "wait", false, "follow the job with a progress bar until it finishes")

	status := wrap(&cobra.Command{Use: "status", Short: "Show every pipeline stage's queue counters and this host's workers", Args: cobra.NoArgs},
		func(ctx context.Context, c *client.Client, _ []string, w, _ io.Writer) error {
			st, err := c.QueueStatus(ctx)
			if err != nil {
				return err
			}
			if jsonOut() {
				return writeJSON(w, st)
			}
			return statusTables(w, st)
		})

	pipelines := wrap(&cobra.Command{Use: "pipelines", Short: "List the defined pipelines and their stages", Args: cobra.NoArgs},
		func(ctx context.Context, c *client.Client, _ []string, w, _ io.Writer) error {
			ps, err := c.Pipelines(ctx)
			if err != nil {
				return err
			}
			if jsonOut() {
				return writeJSON(w, ps)
			}
			return pipelinesTable(w, ps)
		})

	var limit int
	jobs := wrap(&cobra.Command{Use: "jobs", Short: "List the newest jobs with their state and progress", Args: cobra.NoArgs},
		func(ctx context.Context, c *client.Client, _ []string, w, _ io.Writer) error {
			js, err := c.Jobs(ctx, pipeline, limit)
			if err != nil {
				return err
			}
			if jsonOut() {
				return writeJSON(w, js)
			}
			return jobsTable(w, js, time.Now())
		})
	jobs.Flags().IntVar(&limit, "limit", 0, "list at most this many jobs (0: the host's default, 100)")

	job := wrap(&cobra.Command{Use: "job ID", Short: "Show a job's state, per-stage progress and outputs", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, c *client.Client, args []string, w, _ io.Writer) error {
			id, err := parseJobID(args[0])
			if err != nil {
				return err
			}
			j, err := c.Job(ctx, id)
			if err != nil {
				return err
			}
			if jsonOut() {
				return writeJSON(w, j)
			}
			return describeJob(w, j, time.Now())
		})

	dead := wrap(&cobra.Command{Use: "dead", Short: "List dead-lettered tasks with their last error", Args: cobra.NoArgs},
		func(ctx context.Context, c *client.Client, _ []string, w, _ io.Writer) error {
			ts, err := c.DeadTasks(ctx, pipeline)
			if err != nil {
				return err
			}
			if jsonOut() {
				return writeJSON(w, ts)
			}
			return deadTable(w, ts)
		})
	for _, cmd := range []*cobra.Command{jobs, dead} {
		cmd.Flags().StringVar(&pipeline, "pipeline", "", "only this pipeline's")
	}

	task := wrap(&cobra.Command{Use: "task ID", Short: "Show a task with its inputs, output and every failed attempt", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, c *client.Client, args []string, w, _ io.Writer) error {
			id, err := parseTaskID(args[0])
			if err != nil {
				return err
			}
			t, err := c.Task(ctx, id)
			if err != nil {
				return err
			}
			if jsonOut() {
				return writeJSON(w, t)
			}
			return describeTask(w, t)
		})

	retry := wrap(&cobra.Command{Use: "retry ID", Short: "Put a dead-lettered task back in its stage queue, attempts reset", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, c *client.Client, args []string, w, _ io.Writer) error {
			id, err := parseTaskID(args[0])
			if err != nil {
				return err
			}
			t, err := c.RetryTask(ctx, id)
			if err != nil {
				return err
			}
			if jsonOut() {
				return writeJSON(w, t)
			}
			fmt.Fprintf(w, "task %d of job %d is back in %s's queue\n", t.ID, t.Job, stageLabel(t.Pipeline, t.StageName, t.Stage))
			return nil
		})

	// get writes files: -o is its output directory, so it takes the connection flags alone.
	var outDir string
	var getWait bool
	get := &cobra.Command{
		Use:   "get ID -o DIR",
		Short: "Download a finished job's outputs into DIR, verifying each one's sha256",
		Long: `Download every output of job ID into DIR/<name>, creating parent directories and
verifying each file's sha256. Names that would escape DIR are refused before anything is written.
A running job is an error unless --wait, which follows it to the end first. Exits 1 when the job
finished with dead-lettered tasks (their outputs are missing).`,
		Args: cobra.ExactArgs(1),
	}
	get.RunE = run(func(ctx context.Context, c *client.Client, args []string, w, ew io.Writer) error {
		id, err := parseJobID(args[0])
		if err != nil {
			return err
		}
		return getOutputs(ctx, c, id, outDir, getWait, w, ew)
	}, cf.connect)
	cf.addConn(get)
	get.Flags().StringVarP(&outDir, "output-dir", "o", "", "directory to write the outputs into (created if missing)")
	_ = get.MarkFlagRequired("output-dir")
	get.Flags().BoolVar(&getWait, "wait", false, "wait for a running job to finish first")

	root.AddCommand(submit, status, pipelines, jobs, job, dead, task, retry, get)
	return root
}

func parseJobID(s string) (queue.JobID, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("job id %q: want a positive integer", s)
	}
	return queue.JobID(n), nil
}

func parseTaskID(s string) (queue.TaskID, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("task id %q: want a positive integer", s)
	}
	return queue.TaskID(n), nil
}

// localInput is one file of a submit.
type localInput struct {
	path string // as given
	name string // the input's name in the job
	size int64
}

// inputNames names the files of a submit by their paths relative to root, or when root is ""
// to the deepest directory holding them all, as slash paths. A file outside root, a name that
// is not a valid input name, and two files with one name are refused.
func inputNames(files []string, root string) ([]string, error) {
	abs := make([]string, len(files))
	for i, f := range files {
		a, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		abs[i] = a
	}
	base := root
	if root == "" {
		base = commonDir(abs)
	} else {
		a, err := filepath.Abs(root)
		if err != nil {
			return nil, err
		}
		base = a
	}
	names := make([]string, len(files))
	seen := make(map[string]int, len(files))
	var errs []error
	for i, a := range abs {
		rel, err := filepath.Rel(base, a)
		if err != nil || !filepath.IsLocal(rel) {
			errs = append(errs, fmt.Errorf("%s is not below --name-root %s", files[i], root))
			continue
		}
		name := filepath.ToSlash(rel)
		if err := queue.ValidFileName(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", files[i], err))
			continue
		}
		if j, dup := seen[name]; dup {
			errs = append(errs, fmt.Errorf("%s and %s would both be named %q", files[j], files[i], name))
			continue
		}
		seen[name] = i
		names[i] = name
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return names, nil
}

// commonDir is the deepest directory holding every one of the absolute paths.
func commonDir(abs []string) string {
	dir := filepath.Dir(abs[0])
	for _, a := range abs[1:] {
		for !isWithin(dir, a) {
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return dir
}

// isWithin reports whether path p is below directory dir.
func isWithin(dir, p string) bool {
	if !strings.HasSuffix(dir, string(filepath.Separator)) {
		dir += string(filepath.Separator)
	}
	return strings.HasPrefix(p, dir)
}

// checkInputs names the files and checks that each is a readable regular file, naming every
// problem, before anything is uploaded.
func checkInputs(files []string, root string) ([]localInput, error) {
	names, err := inputNames(files, root)
	if err != nil {
		return nil, err
	}
	in := make([]localInput, len(files))
	var errs []error
	for i, f := range files {
		fi, err := os.Stat(f)
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case fi.IsDir():
			errs = append(errs, fmt.Errorf("%s is a directory: give the files in it", f))
			continue
		case !fi.Mode().IsRegular():
			errs = append(errs, fmt.Errorf("%s is not a regular file", f))
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fh.Close()
		in[i] = localInput{path: f, name: names[i], size: fi.Size()}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return in, nil
}

// submitFiles checks and uploads the files, then submits the job.
func submitFiles(ctx context.Context, c *client.Client, pipeline string, files []string, root string, ew io.Writer) (queue.Job, error) {
	in, err := checkInputs(files, root)
	if err != nil {
		return queue.Job{}, err
	}
	var total int64
	for _, f := range in {
		total += f.size
	}
	var bar *progressbar.ProgressBar
	if isTerminal(ew) {
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(ew), progressbar.OptionSetDescription("uploading"),
			progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionFullWidth(),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(ew) }))
		defer func() {
			if !bar.IsFinished() {
				_ = bar.Exit()
			}
		}()
	}
	inputs := make([]queue.File, len(in))
	for i, f := range in {
		ref, err := uploadFile(ctx, c, f, bar)
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(ew, "interrupted: no job was submitted")
				return queue.Job{}, exitError{130}
			}
			return queue.Job{}, err
		}
		inputs[i] = queue.File{Name: f.name, SHA256: ref.SHA256, Size: ref.Size}
	}
	c.Traceparent = traceparentFromEnv(ew)
	// One request id for the submit: asking again after a 503 (no quorum yet, a leader
	// election) cannot create a second job.
	var rid [16]byte
	_, _ = rand.Read(rid[:])
	requestID := hex.EncodeToString(rid[:])
	deadline := time.Now().Add(time.Minute)
	for {
		job, err := c.Submit(ctx, pipeline, inputs, requestID)
		if err == nil || !strings.Contains(err.Error(), "503") || time.Now().After(deadline) || ctx.Err() != nil {
			return job, err
		}
		select {
		case <-ctx.Done():
			return job, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// traceparentFromEnv is $TRACEPARENT, the environment's carrier of a W3C trace context,
// normalised; "" when unset. A malformed value is reported on ew and ignored (as the
// specification asks of a malformed header): the submit is then not part of the caller's trace.
func traceparentFromEnv(ew io.Writer) string {
	v := strings.TrimSpace(os.Getenv("TRACEPARENT"))
	if v == "" {
		return ""
	}
	sc, ok := spans.ParseTraceparent([]byte(v))
	if !ok {
		fmt.Fprintf(ew, "warning: TRACEPARENT=%q is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>): ignored\n", v)
		return ""
	}
	return string(spans.AppendTraceparent(nil, sc))
}

// barWriter counts bytes on a progress bar, ignoring its errors (a file that grew).
type barWriter struct{ bar *progressbar.ProgressBar }

func (b barWriter) Write(p []byte) (int, error) {
	if b.bar != nil {
		_ = b.bar.Add(len(p))
	}
	return len(p), nil
}

// uploadFile streams one file to the blob store and checks that the host stored what was read.
func uploadFile(ctx context.Context, c *client.Client, f localInput, bar *progressbar.ProgressBar) (client.BlobRef, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return client.BlobRef{}, err
	}
	defer fh.Close()
	h := sha256.New()
	ref, err := c.PutBlob(ctx, io.TeeReader(fh, io.MultiWriter(h, barWriter{bar})), f.size)
	if err != nil {
		return ref, fmt.Errorf("upload %s: %w", f.path, err)
	}
	if local := hex.EncodeToString(h.Sum(nil)); ref.SHA256 != local || ref.Size != f.size {
		return ref, fmt.Errorf("upload %s: the host stored %d bytes with sha256 %s, the file has %d bytes with sha256 %s (did it change?)",
			f.path, ref.Size, ref.SHA256, f.size, local)
	}
	return ref, nil
}

// followJob waits for a job to finish with a progress display on ew. On Ctrl-C it says how
// far the job got (it keeps running) and ends the command with exit code 130.
func followJob(ctx context.Context, c *client.Client, job queue.Job, ew io.Writer) (queue.Job, error) {
	p := newProgress(ew, job.ID)
	// Each ask is held by the host until the job finishes or pollInterval passes: the end is
	// seen at once, the progress as often as before.
	j, err := waitJob(ctx, func(ctx context.Context) (queue.Job, error) { return c.WaitJob(ctx, job.ID, pollInterval) }, p, pollInterval)
	p.end()
	if err == nil {
		return j, nil
	}
	if ctx.Err() == nil {
		return j, err
	}
	if j.ID == 0 {
		j = job
	}
	done, dead, total := j.Counts()
	fmt.Fprintf(ew, "interrupted: job %d keeps running (%d/%d tasks done, %d dead); see `wasmpod queue job %d`, fetch its outputs with `wasmpod queue get %d -o DIR --wait`\n",
		j.ID, done, total, dead, j.ID, j.ID)
	return j, exitError{130}
}

// waitJob polls the job every interval until it finishes or ctx ends, reporting each answer to
// p. Failing polls are tolerated for pollFailureLimit. It returns the last job seen.
func waitJob(ctx context.Context, get func(context.Context) (queue.Job, error), p progress, every time.Duration) (queue.Job, error) {
	var last queue.Job
	var failing time.Time
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		j, err := get(ctx)
		switch {
		case err == nil:
			failing = time.Time{}
			last = j
			p.update(j)
			if j.IsFinished() {
				return j, nil
			}
		case ctx.Err() != nil:
			return last, ctx.Err()
		case failing.IsZero():
			failing = time.Now()
		case time.Since(failing) > pollFailureLimit:
			return last, err
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-tick.C:
		}
	}
}

// reportJob ends a followed job: nil when done; when tasks were dead-lettered it lists them
// with their last error on ew and returns exit code 1.
func reportJob(ctx context.Context, c *client.Client, j queue.Job, ew io.Writer) error {
	done, dead, total := j.Counts()
	if j.State == queue.JobDone {
		fmt.Fprintf(ew, "job %d done: %d tasks, %d outputs\n", j.ID, done, len(j.Outputs))
		return nil
	}
	fmt.Fprintf(ew, "job %d %s: %d of %d tasks dead-lettered, %d outputs\n", j.ID, j.State, dead, total, len(j.Outputs))
	ts, err := c.DeadTasks(ctx, j.Pipeline.Name)
	if err != nil {
		fmt.Fprintf(ew, "listing the dead tasks: %v\n", err)
		return exitError{1}
	}
	var mine []queue.TaskInfo
	for _, t := range ts {
		if t.Job == j.ID {
			mine = append(mine, t)
		}
	}
	if len(mine) > 0 {
		if err := deadTable(ew, mine); err != nil {
			return err
		}
		fmt.Fprintf(ew, "retry one with `wasmpod queue retry TASK`\n")
	}
	return exitError{1}
}

// getOutputs downloads a job's outputs into dir.
func getOutputs(ctx context.Context, c *client.Client, id queue.JobID, dir string, wait bool, w, ew io.Writer) error {
	j, err := c.Job(ctx, id)
	if err != nil {
		return err
	}
	if !j.IsFinished() {
		if !wait {
			done, _, total := j.Counts()
			return fmt.Errorf("job %d is still running (%d/%d tasks done): add --wait to wait for it", id, done, total)
		}
		if j, err = followJob(ctx, c, j, ew); err != nil {
			return err
		}
	}
	paths, err := outputPaths(j.Outputs)
	if err != nil {
		return fmt.Errorf("job %d: %w", id, err)
	}
	n, err := download(ctx, c, dir, j.Outputs, paths)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %d files (%d bytes) to %s\n", len(j.Outputs), n, dir)
	if j.State != queue.JobDone {
		return reportJob(ctx, c, j, ew)
	}
	return nil
}

// outputPaths checks a job's output names before anything is written: each must be a clean
// relative path that stays inside the output directory, unique, and not below another output
// (a file cannot be a directory too). It returns the local relative paths.
func outputPaths(files []queue.File) ([]string, error) {
	paths := make([]string, len(files))
	seen := make(map[string]bool, len(files))
	for i, f := range files {
		p := filepath.FromSlash(f.Name)
		if err := queue.ValidFileName(f.Name); err != nil || !filepath.IsLocal(p) {
			return nil, fmt.Errorf("output %q would be written outside the output directory: refused", f.Name)
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("two outputs are named %q", f.Name)
		}
		seen[f.Name] = true
		paths[i] = p
	}
	for _, f := range files {
		for dir := f.Name; strings.Contains(dir, "/"); {
			dir = dir[:strings.LastIndexByte(dir, '/')]
			if seen[dir] {
				return nil, fmt.Errorf("output %q is below output %q, a file", f.Name, dir)
			}
		}
	}
	return paths, nil
}

// download writes each file to dir/paths[i] through an os.Root, so that nothing (not even a
// symlink inside dir) takes a write outside dir. It returns the bytes written.
func download(ctx context.Context, c *client.Client, dir string, files []queue.File, paths []string) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	var total int64
	for i, f := range files {
		if err := fetchOne(ctx, c, root, paths[i], f); err != nil {
			return total, fmt.Errorf("output %s: %w", f.Name, err)
		}
		total += f.Size
	}
	return total, nil
}

func fetchOne(ctx context.Context, c *client.Client, root *os.Root, p string, f queue.File) (err error) {
	if d := filepath.Dir(p); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	rc, _, err := c.OpenBlob(ctx, f.SHA256)
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".wasmpod-download")
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			root.Remove(tmp)
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), rc)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 || n != f.Size {
		return fmt.Errorf("downloaded %d bytes with sha256 %s, want %d bytes with sha256 %s", n, got, f.Size, f.SHA256)
	}
	if err = out.Close(); err != nil {
		return err
	}
	return root.Rename(tmp, p)
}

// progress shows a job's progress while a command waits for it.
type progress interface {
	update(j queue.Job)
	end()
}

func newProgress(w io.Writer, id queue.JobID) progress {
	if isTerminal(w) {
		return &barProgress{w: w, id: id}
	}
	return &lineProgress{w: w, every: lineEvery, now: time.Now}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// barProgress is a progress bar over the job's tasks: finished (done or dead) of the total,
// with the failed count, rate and ETA.
type barProgress struct {
	w   io.Writer
	id  queue.JobID
	bar *progressbar.ProgressBar
}

func (p *barProgress) update(j queue.Job) {
	done, dead, total := j.Counts()
	fin := done + dead
	limit := max(total, fin, 1)
	desc := fmt.Sprintf("job %d", p.id)
	if dead > 0 {
		desc += fmt.Sprintf(" (%d failed)", dead)
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions(limit, progressbar.OptionSetWriter(p.w), progressbar.OptionSetDescription(desc),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("tasks"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionFullWidth(), progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }))
	} else if p.bar.GetMax() != limit {
		p.bar.ChangeMax(limit)
	}
	p.bar.Describe(desc)
	_ = p.bar.Set(fin)
}

func (p *barProgress) end() {
	if p.bar != nil && !p.bar.IsFinished() {
		_ = p.bar.Exit()
	}
}

// lineProgress prints a progress line at most every `every` (stderr is a log, not a
// terminal), and the last state at the end.
type lineProgress struct {
	w     io.Writer
	every time.Duration
	now   func() time.Time

	start   time.Time
	fin0    int // tasks finished when the wait started
	shown   time.Time
	last    string
	printed bool // last was printed
}

func (p *lineProgress) update(j queue.Job) {
	now := p.now()
	done, dead, total := j.Counts()
	if p.start.IsZero() {
		p.start, p.fin0 = now, done+dead
	}
	p.last = progressLine(j.ID, done, dead, total, done+dead-p.fin0, now.Sub(p.start))
	p.printed = false
	if p.shown.IsZero() || now.Sub(p.shown) >= p.every || j.IsFinished() {
		fmt.Fprintln(p.w, p.last)
		p.shown, p.printed = now, true
	}
}

func (p *lineProgress) end() {
	if p.last != "" && !p.printed {
		fmt.Fprintln(p.w, p.last)
		p.printed = true
	}
}

// progressLine is the plain progress line: finished counts where the wait began are not in
// the rate.
func progressLine(id queue.JobID, done, dead, total, finishedSinceStart int, elapsed time.Duration) string {
	s := fmt.Sprintf("job %d: %d/%d tasks done, %d failed", id, done, total, dead)
	if elapsed <= 0 || finishedSinceStart <= 0 {
		return s + ", rate -, ETA -"
	}
	rate := float64(finishedSinceStart) / elapsed.Seconds()
	left := max(total-done-dead, 0)
	eta := time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf("%s, %.1f tasks/s, ETA %s", s, rate, eta)
}

// stageLabel names a pipeline stage for people: "logs/gunzip".
func stageLabel(pipeline, name string, stage int) string {
	return pipeline + "/" + stageName(name, stage)
}

// oneLine makes a message fit a table cell: whitespace runs (newlines too) become one space,
// and it is cut at n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func lastError(t queue.TaskInfo) string {
	if len(t.Errors) == 0 {
		return "-"
	}
	return t.Errors[len(t.Errors)-1].Message
}

// statusTables prints the stage queues, then this host's worker pools.
func statusTables(w io.Writer, st client.QueueStatus) error {
	names := map[string]string{} // "pipeline/index" -> stage name
	if len(st.Stages) == 0 {
		fmt.Fprintln(w, "no pipelines")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "PIPELINE\tSTAGE\tDEPTH\tREADY\tLEASED\tRETRIES\tDEAD\tCOMPLETED")
		for _, s := range st.Stages {
			names[fmt.Sprintf("%s/%d", s.Pipeline, s.Stage)] = s.Name
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Pipeline, stageName(s.Name, s.Stage), s.Depth, s.Ready, s.Leased, s.Retries, s.Dead, s.Completed)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(st.Workers) == 0 {
		_, err := fmt.Fprintln(w, "no workers on this host")
		return err
	}
	fmt.Fprintln(w, "Workers on this host:")
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "PIPELINE\tSTAGE\tRUNNING\tCOMPLETED\tFAILED\tLEASE LOST")
	for _, wk := range st.Workers {
		name := names[fmt.Sprintf("%s/%d", wk.Pipeline, wk.Stage)]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", wk.Pipeline, stageName(name, wk.Stage), wk.Running, wk.Completed, wk.Failed, wk.LeaseLost)
	}
	return tw.Flush()
}

// stageName is a stage's name, or its index when it has none.
func stageName(name string, stage int) string {
	if name == "" {
		return fmt.Sprint(stage)
	}
	return name
}

func pipelinesTable(w io.Writer, ps []queue.Pipeline) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTAGES\tMAX ATTEMPTS\tBACKOFF")
	for _, p := range ps {
		stages := make([]string, len(p.Stages))
		for i, s := range p.Stages {
			stages[i] = s.Name
			if s.Merge {
				stages[i] += " (merge)"
			}
		}
		attempts, backoff := "default", "default"
		if p.MaxAttempts > 0 {
			attempts = fmt.Sprint(p.MaxAttempts)
		}
		if p.Backoff > 0 {
			backoff = p.Backoff.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, strings.Join(stages, " → "), attempts, backoff)
	}
	return tw.Flush()
}

func jobsTable(w io.Writer, js []queue.Job, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tPIPELINE\tSTATE\tTASKS DONE\tDEAD\tINPUTS\tAGE\tDURATION")
	for _, j := range js {
		done, dead, total := j.Counts()
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%d\t%d\t%s\t%s\n", j.ID, j.Pipeline.Name, j.State, done, total, dead, len(j.Inputs),
			age(now, j.Created), took(j))
	}
	return tw.Flush()
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String()
}

func took(j queue.Job) string {
	if j.Finished.IsZero() || j.Created.IsZero() {
		return "-"
	}
	return j.Finished.Sub(j.Created).Round(time.Millisecond).String()
}

func describeJob(w io.Writer, j queue.Job, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	done, dead, total := j.Counts()
	row("ID", j.ID)
	row("Pipeline", j.Pipeline.Name)
	row("State", j.State)
	row("Tasks", fmt.Sprintf("%d/%d done, %d dead", done, total, dead))
	if !j.Created.IsZero() {
		row("Created", fmt.Sprintf("%s (%s ago)", j.Created.Format(time.RFC3339), age(now, j.Created)))
	}
	if !j.Finished.IsZero() {
		row("Finished", fmt.Sprintf("%s (took %s)", j.Finished.Format(time.RFC3339), took(j)))
	}
	var in int64
	for _, f := range j.Inputs {
		in += f.Size
	}
	row("Inputs", fmt.Sprintf("%d files, %d bytes", len(j.Inputs), in))
	for i, s := range j.Stages {
		merge := ""
		if i < len(j.Pipeline.Stages) && j.Pipeline.Stages[i].Merge {
			merge = " (merge)"
		}
		row(fmt.Sprintf("Stage %d", i), fmt.Sprintf("%s%s: %d/%d done, %d dead", s.Name, merge, s.Done, s.Expected, s.Dead))
	}
	row("Outputs", len(j.Outputs))
	if err := tw.Flush(); err != nil || len(j.Outputs) == 0 {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range j.Outputs {
		fmt.Fprintf(tw, "  %s\t%d bytes\tsha256 %.12s\n", f.Name, f.Size, f.SHA256)
	}
	return tw.Flush()
}

func deadTable(w io.Writer, ts []queue.TaskInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "TASK\tJOB\tSTAGE\tATTEMPTS\tLAST ERROR")
	for _, t := range ts {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%s\n", t.ID, t.Job, stageLabel(t.Pipeline, t.StageName, t.Stage), t.Attempts, oneLine(lastError(t), 120))
	}
	return tw.Flush()
}

func describeTask(w io.Writer, t queue.TaskInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	row("ID", t.ID)
	row("Job", t.Job)
	row("Stage", fmt.Sprintf("%s (%d)", stageLabel(t.Pipeline, t.StageName, t.Stage), t.Stage))
	row("State", t.State)
	row("Attempts", t.Attempts)
	if t.Worker != "" {
		row("Worker", t.Worker)
	}
	if !t.Enqueued.IsZero() {
		row("Enqueued", t.Enqueued.Format(time.RFC3339))
	}
	if !t.Finished.IsZero() {
		row("Finished", t.Finished.Format(time.RFC3339))
	}
	for _, f := range t.Inputs {
		row("Input", fmt.Sprintf("%s (%d bytes, sha256 %.12s)", f.Name, f.Size, f.SHA256))
	}
	if t.Output != nil {
		row("Output", fmt.Sprintf("%s (%d bytes, sha256 %.12s)", t.Output.Name, t.Output.Size, t.Output.SHA256))
	}
	for _, e := range t.Errors {
		row(fmt.Sprintf("Attempt %d", e.Attempt), fmt.Sprintf("%s: %s", e.At.Format(time.RFC3339), oneLine(e.Message, 400)))
	}
	return tw.Flush()
}
