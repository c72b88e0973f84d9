// Package stagerun runs the tasks of a pod's work-queue pipelines on the pod's stage modules:
// a Runner is the cluster.StageRunner of one pipeline stage. Each run goes to the version of the
// module that is current when the run starts (so an upgrade takes effect for the next task),
// admitted and scheduled by the supervisor like any other work of the pod.
//
// A stage module is one of two kinds (see package supervisor):
//
//   - a WASI command: it runs once per task on its input files, seen below /in under their
//     job-relative names, and is called as `NAME /in/INPUT... /out/OUTPUT`; it must leave exactly
//     one regular file below /out (OUTPUT is only the suggested name), which becomes the task's
//     output under its path relative to /out;
//   - a module exporting wasmpod_stage: one call per task, the input file's contents in, the
//     output file's contents out, written as outputName. A merge stage's call gets all its inputs
//     in one input, framed as guest-sdk/ABI.md section 2.1 describes (u32 count, then each input
//     as u32 length and bytes), in the order given. Inputs and outputs live in guest memory, so
//     they are bounded by the engine's call limits (64 MiB in, 16 MiB out by default): larger
//     files need a command stage, which streams them.
package stagerun

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/runtime"
)

// ErrOutput is wrapped by the error of a run that did not produce exactly one output file.
var ErrOutput = errors.New("stage output")

// Runner runs the tasks of one pipeline stage on a stage module of the pod. It is safe for
// concurrent use.
type Runner struct {
	sup    *supervisor.Supervisor
	module string
	merge  bool
}

var _ cluster.StageRunner = (*Runner)(nil)

// New returns the runner of a stage served by the named module, which must have role stage.
// merge says whether the stage is a merge stage (one run over all outputs of the stage before).
func New(sup *supervisor.Supervisor, module string, merge bool) (*Runner, error) {
	m := sup.Pod().Module(module)
	if m == nil {
		return nil, fmt.Errorf("stagerun: module %q: %w", module, supervisor.ErrNotFound)
	}
	if m.Role != podspec.RoleStage {
		return nil, fmt.Errorf("stagerun: module %q has role %s, not stage: %w", module, m.Role, supervisor.ErrInvalid)
	}
	return &Runner{sup: sup, module: module, merge: merge}, nil
}

// Module returns the name of the module the runner runs.
func (r *Runner) Module() string { return r.module }

// RunStage runs one delivery of a task (cluster.StageRunner): it writes exactly one file below
// outDir and returns its path relative to outDir, in slash form. The run's deadline is ctx's
// (the worker's per-delivery timeout), or the module's resources.timeout when ctx has none.
func (r *Runner) RunStage(ctx context.Context, inputs []cluster.StageInput, outputName, outDir string) (string, error) {
	switch {
	case len(inputs) == 0:
		return "", fmt.Errorf("stage %q: no input files", r.module)
	case !r.merge && len(inputs) != 1:
		return "", fmt.Errorf("stage %q runs once per input file, but got %d inputs (only a merge stage takes several)", r.module, len(inputs))
	}
	if err := queue.ValidFileName(outputName); err != nil {
		return "", fmt.Errorf("stage %q: output name: %w", r.module, err)
	}
	ctx, run, err := r.sup.AcquireStage(ctx, r.module)
	if err != nil {
		return "", fmt.Errorf("stage %q: %w", r.module, err)
	}
	var out string
	if run.Command != nil {
		out, err = r.runCommand(ctx, run.Command, inputs, outputName, outDir)
	} else {
		out, err = r.runModule(ctx, run, inputs, outputName, outDir)
	}
	run.Done(err)
	return out, err
}

// runCommand runs a WASI command stage and checks that it wrote exactly one file.
func (r *Runner) runCommand(ctx context.Context, cmd *runtime.Command, inputs []cluster.StageInput, outputName, outDir string) (string, error) {
	in := make([]runtime.CommandInput, len(inputs))
	for i, x := range inputs {
		in[i] = runtime.CommandInput{Name: x.Name, Path: x.Path}
	}
	res, err := cmd.RunInputs(ctx, in, outputName, outDir)
	if err != nil {
		return "", fmt.Errorf("stage %q: %w", r.module, err)
	}
	names := make([]string, 0, len(res.Outputs))
	for _, p := range res.Outputs {
		rel, err := filepath.Rel(outDir, p)
		if err != nil {
			return "", fmt.Errorf("stage %q: output %s: %w", r.module, p, err)
		}
		names = append(names, filepath.ToSlash(rel))
	}
	if len(names) == 1 {
		if err := queue.ValidFileName(names[0]); err != nil {
			os.Remove(res.Outputs[0])
			return "", fmt.Errorf("stage %q: %w: %w", r.module, ErrOutput, err)
		}
		return names[0], nil
	}
	// A failed attempt leaves nothing behind.
	for _, p := range res.Outputs {
		os.Remove(p)
	}
	if len(names) == 0 {
		return "", fmt.Errorf("stage %q: %w: the command exited successfully but wrote no file below %s (it must write exactly one, e.g. %s/%s)",
			r.module, ErrOutput, runtime.CommandOutputDir, runtime.CommandOutputDir, outputName)
	}
	const show = 8
	list := names[:min(len(names), show)]
	more := ""
	if len(names) > show {
		more = fmt.Sprintf(" and %d more", len(names)-show)
	}
	return "", fmt.Errorf("stage %q: %w: the command wrote %d files below %s (%s%s); it must write exactly one",
		r.module, ErrOutput, len(names), runtime.CommandOutputDir, strings.Join(list, ", "), more)
}

// runModule calls a wasmpod_stage module on the input (framed, for a merge stage) and writes its
// output to outDir/outputName.
func (r *Runner) runModule(ctx context.Context, run *supervisor.StageRun, inputs []cluster.StageInput, outputName, outDir string) (string, error) {
	var in []byte
	var err error
	if r.merge {
		in, err = r.readFramed(ctx, inputs, run.MaxInputBytes)
	} else {
		in, err = r.readInput(inputs[0], run.MaxInputBytes)
	}
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("stage %q: reading the input took the whole deadline: %w", r.module, err)
	}
	out, err := run.Module.Call(ctx, runtime.RoleStage, in, nil)
	if err != nil {
		return "", fmt.Errorf("stage %q: %w", r.module, err)
	}
	dst := filepath.Join(outDir, filepath.FromSlash(outputName))
	if err := writeFile(dst, out); err != nil {
		return "", fmt.Errorf("stage %q: output %q: %w", r.module, outputName, err)
	}
	return outputName, nil
}

// inputSize returns the size of an input file, which must be a regular file.
func (r *Runner) inputSize(in cluster.StageInput) (int64, error) {
	fi, err := os.Stat(in.Path)
	if err != nil {
		return 0, fmt.Errorf("stage %q: input %q: %w", r.module, in.Name, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("stage %q: input %q: %s is not a regular file", r.module, in.Name, in.Path)
	}
	return fi.Size(), nil
}

// tooLarge is the error for an input over the call limit; what says how large it is.
func (r *Runner) tooLarge(what string, limit int64) error {
	return fmt.Errorf("stage %q: %w: %s, over the limit of %d bytes of a wasmpod_stage call (a stage built as a WASI command reads its files itself, with no such limit)",
		r.module, runtime.ErrInput, what, limit)
}

// readInput reads a per-file stage's input, refusing one over the call limit before reading it.
func (r *Runner) readInput(in cluster.StageInput, limit int64) ([]byte, error) {
	size, err := r.inputSize(in)
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, r.tooLarge(fmt.Sprintf("input %q is %d bytes", in.Name, size), limit)
	}
	b := make([]byte, 0, size)
	b, err = appendFile(b, in.Path, size)
	if err != nil {
		return nil, fmt.Errorf("stage %q: input %q: %w", r.module, in.Name, err)
	}
	return b, nil
}

// readFramed reads a merge stage's inputs into one buffer framed as guest-sdk/ABI.md section
// 2.1: u32 count, then each input as u32 length and its bytes (little-endian), in order. The
// framed size is checked against the call limit before anything is read.
func (r *Runner) readFramed(ctx context.Context, inputs []cluster.StageInput, limit int64) ([]byte, error) {
	sizes := make([]int64, len(inputs))
	total := int64(4)
	for i, in := range inputs {
		size, err := r.inputSize(in)
		if err != nil {
			return nil, err
		}
		sizes[i] = size
		total += 4 + size
		if total > limit {
			return nil, r.tooLarge(fmt.Sprintf("the %d inputs framed for the merge come to %d bytes by input %d (%q) already", len(inputs), total, i, in.Name), limit)
		}
	}
	b := make([]byte, 4, total)
	binary.LittleEndian.PutUint32(b, uint32(len(inputs)))
	for i, in := range inputs {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("stage %q: reading the inputs: %w", r.module, err)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(sizes[i]))
		var err error
		if b, err = appendFile(b, in.Path, sizes[i]); err != nil {
			return nil, fmt.Errorf("stage %q: input %q: %w", r.module, in.Name, err)
		}
	}
	return b, nil
}

// appendFile appends the contents of the file at path, which must be exactly size bytes long (the
// size the framing announced), to b.
func appendFile(b []byte, path string, size int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return b, err
	}
	defer f.Close()
	start := len(b)
	b = b[:start+int(size)]
	if _, err := io.ReadFull(f, b[start:]); err != nil {
		return b[:start], fmt.Errorf("%s changed while being read: %w", path, err)
	}
	var one [1]byte
	if n, _ := f.Read(one[:]); n > 0 {
		return b[:start], fmt.Errorf("%s grew while being read", path)
	}
	return b, nil
}

// writeFile writes b as a new file at dst, making its directories.
func writeFile(dst string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(dst)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}
