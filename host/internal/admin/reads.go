package admin

import (
	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
)

// Who may read what on the admin listener. Writes always need a credential (serveAdmin); reads
// fall in three tiers, documented for operators in docs/admin-api.md:
//
//   - public: what probes, scrapers and the status page need, and nothing an operator
//     configured: /healthz, /readyz, /metrics, /v1/version, the console's files, cluster
//     members and status, module and job states and counts, leases without their tokens.
//   - secret: what an operator configured or a guest wrote into an error: module config and
//     spec (config values, the .wasm path, mounts, network allow lists), last errors, job file
//     names and digests, task error messages, fencing tokens, pprof's command line. Shown only
//     with the admin token; without it the answer leaves them out and says "redacted": true.
//     A host without a token shows them to no one remotely (the operator has the pod file).
//   - protected: whole bodies of data or diagnostics: module logs, blob downloads, pprof
//     profiles. They need the admin token when the host has one (401 without it); a host
//     started without a token can authenticate no one and serves them as before (its admin
//     listener is loopback by default), but only to requests naming it by a loopback name or
//     its own address, so a DNS-rebound web page cannot read them (rebinding.go).
//
// Redaction copies the public fields into a new value instead of clearing the secret ones,
// so a field added later stays hidden until someone decides it is public.

// reader reports whether a request carries the admin token: the one credential that sees
// secrets on read routes (an app's election token sees only its own leases' tokens).
func (s *Server) reader(ctx *fasthttp.RequestCtx) bool {
	return s.validToken(ctx.Request.Header.Peek("Authorization"))
}

// protectedRead checks the credential of a protected read, answering 401 itself when the
// host has a token and the request does not carry it.
func (s *Server) protectedRead(ctx *fasthttp.RequestCtx) bool {
	return s.cfg.Token == "" || s.authorized(ctx)
}

// ModuleView is a module's status as the admin API answers it: the whole status for the
// admin token's holder, else its public part with Redacted set.
type ModuleView struct {
	supervisor.ModuleStatus
	// Redacted says the configuration, spec and last error were left out: the reader did
	// not send the admin token.
	Redacted bool `json:"redacted,omitempty"`
}

// moduleView is st as a reader with (authorized) or without the admin token sees it.
func moduleView(st supervisor.ModuleStatus, authorized bool) ModuleView {
	if authorized {
		return ModuleView{ModuleStatus: st}
	}
	return ModuleView{Redacted: true, ModuleStatus: supervisor.ModuleStatus{
		Name: st.Name, Role: st.Role, Priority: st.Priority, State: st.State, Reason: st.Reason,
		Ready: st.Ready, Version: st.Version, SHA256: st.SHA256, PreviousSHA256: st.PreviousSHA256,
		Calls: st.Calls, Restarts: st.Restarts, Failures: st.Failures, Runs: st.Runs,
		LastBackoff: st.LastBackoff, NextRestart: st.NextRestart, StartedAt: st.StartedAt,
		Instances: st.Instances, Target: st.Target,
	}}
}

// JobView is a job as the admin API answers it; without the admin token its input and output
// files are left out (their names, digests and sizes) and Redacted is set.
type JobView struct {
	queue.Job
	Redacted bool `json:"redacted,omitempty"`
}

func jobView(j queue.Job, authorized bool) JobView {
	if authorized {
		return JobView{Job: j}
	}
	return JobView{Redacted: true, Job: queue.Job{ID: j.ID, Pipeline: j.Pipeline, Inputs: []queue.File{},
		State: j.State, Created: j.Created, Finished: j.Finished, Stages: j.Stages}}
}

// TaskView is a task as the admin API answers it; without the admin token its files and its
// error messages (a guest's words) are left out and Redacted is set.
type TaskView struct {
	queue.TaskInfo
	Redacted bool `json:"redacted,omitempty"`
}

func taskView(t queue.TaskInfo, authorized bool) TaskView {
	if authorized {
		return TaskView{TaskInfo: t}
	}
	return TaskView{Redacted: true, TaskInfo: redactTask(t)}
}

// redactTask is t without its files and error messages (the attempts and their times stay).
func redactTask(t queue.TaskInfo) queue.TaskInfo {
	r := queue.TaskInfo{ID: t.ID, Pipeline: t.Pipeline, Job: t.Job, Stage: t.Stage, StageName: t.StageName,
		State: t.State, Attempts: t.Attempts, Worker: t.Worker, Inputs: []queue.File{},
		Enqueued: t.Enqueued, Finished: t.Finished}
	for _, e := range t.Errors {
		r.Errors = append(r.Errors, queue.AttemptError{Attempt: e.Attempt, At: e.At})
	}
	return r
}

// views maps each item through view, as one reader (authorized or not) sees it.
func views[T, V any](items []T, authorized bool, view func(T, bool) V) []V {
	out := make([]V, len(items))
	for i, it := range items {
		out[i] = view(it, authorized)
	}
	return out
}
