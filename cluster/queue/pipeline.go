package queue

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

// File is a content-addressed file: a job's input, or one stage's output.
type File struct {
	// Name is a clean relative slash path ("bash/changelog.Debian.gz"): what a stage sees below
	// /in, and where `queue get` writes it below its output directory.
	Name string `json:"name"`
	// SHA256 is the hex sha256 of the content, which is also its address in the blob store.
	SHA256 string `json:"sha256"`
	// Size is the content's length in bytes.
	Size int64 `json:"size"`
}

// StageDef is one stage of a pipeline.
type StageDef struct {
	// Name is the stage's name: the pod module that runs it.
	Name string `json:"name"`
	// Merge makes the stage run once per job, after every task of the previous stage has
	// finished (done or dead-lettered), with all their outputs as its inputs.
	Merge bool `json:"merge,omitempty"`
}

// Pipeline describes a chain of stages: stage k's output is stage k+1's input.
type Pipeline struct {
	Name   string     `json:"name"`
	Stages []StageDef `json:"stages"`
	// MaxAttempts overrides the queue's MaxAttempts for this pipeline's tasks (0: default).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Backoff overrides the queue's BackoffBase for this pipeline's tasks (0: default).
	Backoff time.Duration `json:"backoff,omitempty"`
}

// JobID identifies a submitted job; ids grow and are never reused.
type JobID uint64

// JobState is where a job stands.
type JobState string

const (
	// JobRunning: some task of the job has not finished.
	JobRunning JobState = "running"
	// JobDone: every task of the last stage completed.
	JobDone JobState = "done"
	// JobPartial: every task finished, and some were dead-lettered (their outputs are missing).
	JobPartial JobState = "partial"
)

// StageProgress counts one stage's tasks within a job.
type StageProgress struct {
	Name string `json:"name"`
	// Expected is how many tasks this stage will run once the stages before it finish:
	// the input count, less the tasks dead-lettered by earlier stages; 1 for a merge stage.
	Expected int `json:"expected"`
	Done     int `json:"done"`
	Dead     int `json:"dead"`
	// Redelivered counts deliveries after a task's first (failed attempts, expired leases):
	// the runs that may have done the same work twice.
	Redelivered int `json:"redelivered"`
}

// Job is one submit: a set of input files pushed through a pipeline.
type Job struct {
	ID       JobID           `json:"id"`
	Pipeline Pipeline        `json:"pipeline"` // as it was defined when the job was submitted
	Inputs   []File          `json:"inputs"`
	State    JobState        `json:"state"`
	Created  time.Time       `json:"created"`
	Finished time.Time       `json:"finished,omitzero"`
	Stages   []StageProgress `json:"stages"`
	// Outputs are the outputs of the last stage's completed tasks, in input order (one for a
	// final merge stage).
	Outputs []File `json:"outputs,omitempty"`
}

// IsFinished reports whether every task of the job has finished (done or dead).
func (j *Job) IsFinished() bool { return j.State == JobDone || j.State == JobPartial }

// Counts sums a job's progress over its stages: tasks finished so far, dead-lettered, and
// the total the job will run if nothing more fails.
func (j *Job) Counts() (done, dead, total int) {
	for _, s := range j.Stages {
		done += s.Done
		dead += s.Dead
		total += s.Expected
	}
	return done, dead, total
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// Validate checks a pipeline definition and names the first problem.
func (p *Pipeline) Validate() error {
	if !nameRE.MatchString(p.Name) {
		return fmt.Errorf("%w: pipeline name %q: want lowercase letters, digits, '.', '_' or '-', 1..64 characters", ErrInvalid, p.Name)
	}
	if len(p.Stages) == 0 || len(p.Stages) > 64 {
		return fmt.Errorf("%w: pipeline %q: want 1..64 stages, got %d", ErrInvalid, p.Name, len(p.Stages))
	}
	for i, s := range p.Stages {
		if !nameRE.MatchString(s.Name) {
			return fmt.Errorf("%w: pipeline %q stage %d: name %q: want lowercase letters, digits, '.', '_' or '-'", ErrInvalid, p.Name, i, s.Name)
		}
	}
	if p.MaxAttempts < 0 || p.MaxAttempts > 1000 {
		return fmt.Errorf("%w: pipeline %q: maxAttempts %d out of range 0..1000", ErrInvalid, p.Name, p.MaxAttempts)
	}
	if p.Backoff < 0 {
		return fmt.Errorf("%w: pipeline %q: negative backoff %v", ErrInvalid, p.Name, p.Backoff)
	}
	return nil
}

// MaxFileName bounds a file name's length.
const MaxFileName = 1024

// ValidFileName checks that name is a clean relative slash path without "." or ".."
// components, so that it can be placed below a directory without escaping it.
func ValidFileName(name string) error {
	switch {
	case name == "" || len(name) > MaxFileName:
		return fmt.Errorf("%w: file name must be 1..%d bytes", ErrInvalid, MaxFileName)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("%w: file name %q is absolute", ErrInvalid, name)
	case path.Clean(name) != name || name == "." || name == ".." || strings.HasPrefix(name, "../"):
		return fmt.Errorf("%w: file name %q is not a clean relative path", ErrInvalid, name)
	case strings.ContainsAny(name, "\x00\\"):
		return fmt.Errorf("%w: file name %q contains NUL or backslash", ErrInvalid, name)
	}
	return nil
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks a file reference.
func (f *File) Validate() error {
	if err := ValidFileName(f.Name); err != nil {
		return err
	}
	if !shaRE.MatchString(f.SHA256) {
		return fmt.Errorf("%w: file %q: sha256 %q is not 64 lowercase hex digits", ErrInvalid, f.Name, f.SHA256)
	}
	if f.Size < 0 {
		return fmt.Errorf("%w: file %q: negative size", ErrInvalid, f.Name)
	}
	return nil
}

// TaskInfo is a pipeline task as shown to people: the task's state with its payload and
// result decoded.
type TaskInfo struct {
	ID        TaskID         `json:"id"`
	Pipeline  string         `json:"pipeline"`
	Job       JobID          `json:"job"`
	Stage     int            `json:"stage"`
	StageName string         `json:"stage_name"`
	State     string         `json:"state"`
	Attempts  int            `json:"attempts"`
	Worker    string         `json:"worker,omitempty"`
	Inputs    []File         `json:"inputs"`
	Output    *File          `json:"output,omitempty"`
	Errors    []AttemptError `json:"errors,omitempty"`
	Enqueued  time.Time      `json:"enqueued"`
	Finished  time.Time      `json:"finished,omitzero"`
}

// StageStats is one stage queue's counters.
type StageStats struct {
	Pipeline string `json:"pipeline"`
	Stage    int    `json:"stage"`
	Name     string `json:"name"`
	Stats
}

// MaxJobInputs bounds the inputs of one job.
const MaxJobInputs = 100_000

// MaxJobBytes bounds the description of a job's inputs (one log entry; a merge task's payload
// lists them all again).
const MaxJobBytes = 8 << 20

// MaxRequestID bounds a submit's request id.
const MaxRequestID = 128

// ValidateSubmit checks what a submit carries: its request id and its inputs.
func ValidateSubmit(requestID string, inputs []File) error {
	if len(requestID) > MaxRequestID {
		return fmt.Errorf("%w: request id longer than %d bytes", ErrInvalid, MaxRequestID)
	}
	return ValidateInputs(inputs)
}

// ValidateInputs checks a job's inputs: 1..MaxJobInputs valid files with unique names.
func ValidateInputs(inputs []File) error {
	if len(inputs) == 0 || len(inputs) > MaxJobInputs {
		return fmt.Errorf("%w: a job needs 1..%d inputs, got %d", ErrInvalid, MaxJobInputs, len(inputs))
	}
	size := 0
	for i := range inputs {
		size += len(inputs[i].Name) + 100 // name, hash, size and JSON around them
	}
	if size > MaxJobBytes {
		return fmt.Errorf("%w: a job's inputs take about %d bytes to describe, over %d: split the job", ErrInvalid, size, MaxJobBytes)
	}
	seen := make(map[string]int, len(inputs))
	for i := range inputs {
		if err := inputs[i].Validate(); err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
		if j, dup := seen[inputs[i].Name]; dup {
			return fmt.Errorf("%w: inputs %d and %d are both named %q", ErrInvalid, j, i, inputs[i].Name)
		}
		seen[inputs[i].Name] = i
	}
	return nil
}
