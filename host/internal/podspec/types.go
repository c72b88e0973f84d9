package podspec

import (
	"encoding/json"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// APIVersion is the apiVersion every spec must declare.
const APIVersion = "wasmpod.dev/v1"

// KindPod is the only kind of object a spec holds.
const KindPod = "Pod"

// Pod is a parsed pod spec: a set of WebAssembly modules started, supervised and stopped as one
// unit. Field names and JSON tags are those of the YAML file.
type Pod struct {
	// APIVersion must be APIVersion ("wasmpod.dev/v1"). Required.
	APIVersion string `json:"apiVersion"`
	// Kind must be "Pod". Required.
	Kind string `json:"kind"`
	// Metadata names the pod.
	Metadata ObjectMeta `json:"metadata"`
	// Spec says what runs in the pod.
	Spec PodSpec `json:"spec"`

	// BaseDir is the directory relative paths in the spec (wasm files, hostPath volumes) are
	// resolved against: the spec file's directory for Load, the baseDir argument for Parse.
	// Empty means the process's working directory. Not part of the YAML or JSON.
	BaseDir string `json:"-"`

	// src remembers where each field was in the parsed file, so Validate can name lines.
	src *source
}

// source is where a Pod was parsed from.
type source struct {
	file  string
	lines map[string]int // field path -> 1-based line of the field
}

// ObjectMeta is the pod's identity, as in Kubernetes.
type ObjectMeta struct {
	// Name identifies the pod on this host: a DNS-1123 subdomain (lowercase letters, digits, '-'
	// and '.', at most 253 characters). Required.
	Name string `json:"name"`
	// Labels are identifying key/value pairs (Kubernetes label syntax), shown by the admin API and
	// usable as selectors by tools.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are free-form notes (Kubernetes annotation syntax: qualified keys, any values,
	// at most 256 KiB in total).
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PodSpec is what runs in a pod and how it is supervised.
type PodSpec struct {
	// Modules are the pod's modules, like a Kubernetes pod's containers. At least one.
	Modules []Module `json:"modules"`
	// Volumes are directories modules can mount.
	Volumes []Volume `json:"volumes,omitempty"`
	// RestartPolicy says which stopped modules are restarted. Default Always.
	RestartPolicy RestartPolicy `json:"restartPolicy"`
	// TerminationGracePeriodSeconds is how long modules get, from the moment the pod is asked to
	// stop, to drain in-flight calls, snapshot and run wasmpod_stop before they are closed. 0
	// closes them at once. Default 30. Use [PodSpec.GracePeriod] to read it.
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
	// RestartBackoff is the delay between restarts of a failing module (CrashLoopBackOff).
	RestartBackoff Backoff `json:"restartBackoff"`
	// Scatter, when set, makes the pod a scatter/gather service: the ingress path Scatter.Path
	// fans each request out to every shard and merges the parts (see [Scatter]).
	Scatter *Scatter `json:"scatter,omitempty"`
	// Pipelines are work-queue pipelines whose stages are modules of this pod (role stage): the
	// host defines each one in the cluster's replicated queue when the pod starts and runs
	// workers for its stages (see [Pipeline]).
	Pipelines []Pipeline `json:"pipelines,omitempty"`
}

// Pipeline is a durable, at-least-once chain of file-in/file-out stages run by the cluster's work
// queue: a job submitted to it is a set of input files; stage 0 runs once per input file, and
// stage k+1 once per output of stage k (or, for a merge stage, once per job over all of them).
// A task that fails is retried with exponential backoff, up to MaxAttempts deliveries, then
// dead-lettered.
//
// Each stage runs a module of the pod with role stage, and that module's resources say how the
// stage runs on this node: resources.concurrency is how many of its tasks run at once,
// resources.timeout is each delivery's deadline, resources.memory bounds each run's memory. A
// module may serve stages of several pipelines: each stage gets its own workers, and their runs
// share the module's concurrency.
type Pipeline struct {
	// Name identifies the pipeline in the cluster (jobs are submitted to it by name): 1 to 64
	// lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit.
	// Required, unique in the pod. Nodes that define the same name replace each other's
	// definition, so give every node of a cluster the same pipelines.
	Name string `json:"name"`
	// MaxAttempts is how many deliveries a task gets before it is dead-lettered, 1 to 1000.
	// Default 0: the cluster's default (5).
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
	// Backoff is the base of the exponential delay before a failed task is retried (base, 2 x
	// base, 4 x base, ... up to the cluster's cap). Default 0: the cluster's default.
	Backoff Duration `json:"backoff,omitempty"`
	// Stages are the pipeline's stages, in order: stage k's outputs are stage k+1's inputs.
	// 1 to 64 stages.
	Stages []PipelineStage `json:"stages"`
}

// PipelineStage is one stage of a pipeline.
type PipelineStage struct {
	// Module names the module (role stage) that runs the stage. Required.
	Module string `json:"module"`
	// Merge makes the stage run once per job, after every task of the previous stage has
	// finished, over all their outputs (in input order); without it the stage runs once per
	// input. Not allowed on the first stage, which has no previous stage.
	Merge bool `json:"merge,omitempty"`
}

// MaxPipelineStages is the most stages a pipeline may have.
const MaxPipelineStages = 64

// MaxPipelineAttempts is the largest maxAttempts.
const MaxPipelineAttempts = 1000

// Queue returns the pipeline's definition for the cluster's work queue: a stage is named after
// its module. A pipeline that passed validation gives a definition the queue accepts.
func (p *Pipeline) Queue() queue.Pipeline {
	q := queue.Pipeline{
		Name:        p.Name,
		Stages:      make([]queue.StageDef, len(p.Stages)),
		MaxAttempts: int(p.MaxAttempts),
		Backoff:     p.Backoff.Std(),
	}
	for i, s := range p.Stages {
		q.Stages[i] = queue.StageDef{Name: s.Module, Merge: s.Merge}
	}
	return q
}

// Scatter is a scatter/gather service: a leaf module split into shards, each held by one or more
// nodes of the cluster, and a merge module that combines the shards' parts. The node that takes
// a request on Path is its root: it calls the shards it holds through their warm pools, the
// others on the nodes that advertise them by gossip (over a pooled keep-alive client to their
// internal endpoint), and merges what arrives before the deadline. Placement is explicit: each
// node's pod lists every shard, with a local leaf module for the ones it holds and remote: true
// for the rest.
type Scatter struct {
	// Path is the ingress path of the root (exact match; the request body is the leaf input, the
	// merge output the response body). Other paths still go to the main module, if any.
	// Default "/".
	Path string `json:"path"`
	// Merge names the module (role merge) that combines the parts. Default: the pod's merge
	// module.
	Merge string `json:"merge"`
	// Shards are the service's shards, in the order the merge receives their parts. At least one.
	Shards []ScatterShard `json:"shards"`
	// Replicas is the most copies of a shard the root uses: the local one first, then nodes
	// advertising the shard. A failed or slow copy fails over (or is hedged) to the next.
	// Default 2.
	Replicas int32 `json:"replicas"`
	// Deadline bounds one request: every leaf call, remote call and the merge share it.
	// Default 200ms.
	Deadline Duration `json:"deadline"`
	// MergeReserve is the part of the deadline kept for the merge: shards still pending at
	// deadline - mergeReserve are reported missing. Default 10ms; less than deadline.
	MergeReserve Duration `json:"mergeReserve"`
	// Hedge tunes hedged requests to a second replica of a slow remote shard.
	Hedge Hedge `json:"hedge"`
}

// ScatterShard is one shard of a scatter service: exactly one of Leaf and Remote is set.
type ScatterShard struct {
	// Name identifies the shard in gossip (what nodes advertise), on the internal endpoint and in
	// the Wasmpod-Missing-Shards header: a DNS-1123 label, unique in the service. Keep it short:
	// a node advertises its shards in at most ~500 bytes of gossip metadata. Required.
	Name string `json:"name"`
	// Leaf is the module (role leaf) that serves the shard on this node.
	Leaf string `json:"leaf,omitempty"`
	// Remote says this node does not hold the shard: other nodes do, as their gossip says.
	Remote bool `json:"remote,omitempty"`
}

// Hedge tunes hedged requests: a remote shard still pending after its hedge delay (its recent
// latency percentile, never below Min) gets a second request to another replica, and the first
// answer wins.
type Hedge struct {
	// Disabled turns hedging off (failover after an error stays).
	Disabled bool `json:"disabled,omitempty"`
	// Min is the floor of the hedge delay. Default 1ms.
	Min Duration `json:"min"`
	// Initial is the hedge delay of a shard with too few latency samples yet. Default 5ms.
	Initial Duration `json:"initial"`
	// Percentile is the latency percentile used as the hedge delay, 1 to 100. Default 95.
	Percentile int32 `json:"percentile"`
}

// Local reports whether the shard is held by this node.
func (s *ScatterShard) Local() bool { return s.Leaf != "" }

// RestartPolicy says which stopped modules are restarted, with the meanings Kubernetes gives them.
type RestartPolicy string

// Restart policies.
const (
	// RestartAlways restarts a module whenever it stops or fails, like a Kubernetes container.
	RestartAlways RestartPolicy = "Always"
	// RestartOnFailure restarts a module that failed (a start that did not succeed, a failed
	// liveness probe), not one that stopped cleanly.
	RestartOnFailure RestartPolicy = "OnFailure"
	// RestartNever never restarts; a failed module stays failed.
	RestartNever RestartPolicy = "Never"
)

// Backoff is the restart delay schedule: after the n-th consecutive failure a module waits
// Initial * 2^(n-1), capped at Max; a module that has run for ResetAfter without failing starts
// again from Initial. The defaults are Kubernetes' CrashLoopBackOff; tests set short values.
type Backoff struct {
	// Initial is the delay before the first restart. Default 10s.
	Initial Duration `json:"initial"`
	// Max caps the delay. Default 5m.
	Max Duration `json:"max"`
	// ResetAfter is how long a module must run to have its failure count reset. Default 10m.
	ResetAfter Duration `json:"resetAfter"`
}

// Delay returns how long to wait before restarting a module that has failed failures times in a
// row (failures >= 1; smaller values are treated as 1).
func (b Backoff) Delay(failures int) time.Duration {
	d, limit := b.Initial.Std(), b.Max.Std()
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Module is one WebAssembly module of a pod, the counterpart of a Kubernetes container.
type Module struct {
	// Name identifies the module within the pod: a DNS-1123 label (lowercase letters, digits and
	// '-', at most 63 characters). Required, unique in the pod.
	Name string `json:"name"`
	// Role is the part the module plays, which decides the export the host calls (see
	// guest-sdk/ABI.md) and when the module starts and stops. Default main.
	Role Role `json:"role"`
	// Wasm is the path of the module's .wasm file; a relative path is relative to the spec
	// file's directory (see [Pod.ResolvePath]). With Watch it may name a directory: the module
	// runs the newest .wasm file in it. Required.
	Wasm string `json:"wasm"`
	// Watch makes the host watch Wasm (the file, or the directory of .wasm files) while the pod
	// runs: a new or changed .wasm file, once complete (no write for a moment, a whole module,
	// matching NAME.wasm.sha256 when that file exists), is loaded, warmed, probed and switched in
	// like an upgrade, and rolled back if it never gets ready. A deleted file leaves the running
	// version in place. Not allowed with sha256 (the point is to take new bytes).
	Watch bool `json:"watch,omitempty"`
	// SHA256, when set, is the expected hex sha256 of the wasm file (64 hex digits, either
	// case); a file with another digest is refused.
	SHA256 string `json:"sha256,omitempty"`
	// ABI is the calling convention the module was built for. Default native.
	ABI ABI `json:"abi"`
	// Extism tunes an Extism module (abi: extism); not allowed on native modules.
	Extism *ExtismOptions `json:"extism,omitempty"`
	// Trusted runs the module without the termination guard: calls are cheaper, but a call that
	// runs past its deadline is not cut, so the timeout is only advisory. For vetted modules.
	Trusted bool `json:"trusted,omitempty"`
	// Priority decides which modules keep running when the node is oversubscribed. Default
	// normal (0).
	Priority Priority `json:"priority"`
	// Config is the module's configuration, read by the guest with the config_get import.
	// Keys follow Kubernetes ConfigMap key rules; values are strings (quote numbers and
	// booleans).
	Config map[string]string `json:"config,omitempty"`
	// Resources bounds what the module may use.
	Resources Resources `json:"resources"`
	// TickInterval, when not zero, is how often the host calls the module's wasmpod_tick export.
	// Default 0: no ticks.
	TickInterval Duration `json:"tickInterval,omitempty"`
	// LivenessProbe, when set, restarts the module when wasmpod_health reports it unhealthy (2 or
	// more, a failed call or a timeout) FailureThreshold times in a row.
	LivenessProbe *Probe `json:"livenessProbe,omitempty"`
	// ReadinessProbe, when set, takes the module out of traffic while wasmpod_health returns
	// anything but 0, and puts it back after SuccessThreshold successes.
	ReadinessProbe *Probe `json:"readinessProbe,omitempty"`
	// StartupProbe, when set, holds off the liveness and readiness probes until it succeeds once,
	// and fails the module if it does not within InitialDelaySeconds + FailureThreshold *
	// PeriodSeconds.
	StartupProbe *Probe `json:"startupProbe,omitempty"`
	// VolumeMounts are the pod volumes this module sees, as WASI preopened directories.
	VolumeMounts []VolumeMount `json:"volumeMounts,omitempty"`
	// AllowScale, when set, lets the module ask for more or fewer warm instances with the scale
	// import ("replicate yourself"), within [Min, Max]. Without it scale returns -1.
	AllowScale *Scale `json:"allowScale,omitempty"`
	// Network lists the outbound destinations the module may reach: for an ambassador (native
	// ABI) its connections, for an Extism module of any role its http_request calls. Other
	// native modules have no network; they reach the outside through an ambassador.
	Network *Network `json:"network,omitempty"`
}

// ExtismOptions tune an Extism module.
type ExtismOptions struct {
	// Function is the exported function that serves the module's role, for plugins whose
	// functions are not named after a role (count_vowels, run_test, ...). A main module's
	// function gets the request body and its output is the response body. Default: the
	// function named like the role's call: http (framed requests, guest-sdk/ABI.md 2.2) or
	// handle for main and helpers, leaf, merge, stage.
	Function string `json:"function,omitempty"`
}

// Role is the part a module plays in its pod.
type Role string

// Roles. The handler export each role's calls go to is given in guest-sdk/ABI.md.
const (
	// RoleMain serves the pod's requests (wasmpod_handle or wasmpod_http). At most one per pod.
	RoleMain Role = "main"
	// RoleSidecar extends main (log shipping, cache warming, ...) with its own budget and
	// failures. Needs a main in the pod.
	RoleSidecar Role = "sidecar"
	// RoleAmbassador proxies main's outbound traffic; the only role that may have a network
	// allowlist. Needs a main in the pod.
	RoleAmbassador Role = "ambassador"
	// RoleAdapter presents main's output to the outside in a uniform form. Needs a main in the
	// pod.
	RoleAdapter Role = "adapter"
	// RoleLeaf answers one shard of a scatter/gather query (wasmpod_leaf).
	RoleLeaf Role = "leaf"
	// RoleMerge combines the leaves' partial results (wasmpod_merge). At most one per pod.
	RoleMerge Role = "merge"
	// RoleStage runs a stage of a work-queue pipeline (see [Pipeline]): it turns input files into
	// one output file. The module either exports wasmpod_stage (input file contents in, output
	// file contents out) or is a plain WASI command (exports _start), run once per task on its
	// input files below /in, writing its one output file below /out.
	RoleStage Role = "stage"
)

// Roles returns every valid role, in the order the documentation lists them.
func Roles() []Role {
	return []Role{RoleMain, RoleSidecar, RoleAmbassador, RoleAdapter, RoleLeaf, RoleMerge, RoleStage}
}

// Valid reports whether r is one of [Roles].
func (r Role) Valid() bool {
	for _, v := range Roles() {
		if r == v {
			return true
		}
	}
	return false
}

// Helper reports whether r is a role that serves main (sidecar, ambassador, adapter). Helpers
// start before main and stop after it.
func (r Role) Helper() bool {
	return r == RoleSidecar || r == RoleAmbassador || r == RoleAdapter
}

// ABI is the calling convention of a module.
type ABI string

// ABIs.
const (
	// ABINative is wasmpod's own guest ABI (guest-sdk/ABI.md): one wasm call per request.
	ABINative ABI = "native"
	// ABIExtism is the Extism plugin convention, for reusing existing Extism plugins.
	ABIExtism ABI = "extism"
)

// Resources bounds what a module may use. A zero field takes its default (see
// [DefaultResources]), as Kubernetes does for probe fields.
type Resources struct {
	// Memory is the most linear memory one instance may have (Kubernetes quantity: "64Mi").
	// At least one wasm page (64Ki), at most 4Gi. Default 64Mi.
	Memory Quantity `json:"memory"`
	// Timeout is the deadline of one call. Default 5s.
	Timeout Duration `json:"timeout"`
	// Concurrency is the most calls in flight at once, which is also the most instances the
	// module has (an instance serves one call at a time). Default 4.
	Concurrency int32 `json:"concurrency"`
	// MinInstances is how many warm instances are kept even when idle; at least 1, at most
	// Concurrency. Default 1.
	MinInstances int32 `json:"minInstances"`
	// Vars bounds the Extism vars (var_get/var_set) one instance may hold, names and values
	// together (Kubernetes quantity). Each instance has its own vars; set concurrency 1 for one
	// store. Extism modules only; at most 64Mi. Default 1Mi (Extism's default).
	Vars Quantity `json:"vars,omitempty"`
	// Logs bounds the rate of the module's log lines (see [LogLimits]). Default: 1,000 lines a
	// second with a burst of 10,000, and 1Mi a second with a burst of 10Mi.
	Logs *LogLimits `json:"logs,omitempty"`
}

// LogLimits bounds the rate of a module's log lines (its log import, stdout, stderr, Extism's
// log_* and the host's lines about it), like journald's RateLimitIntervalSec and
// RateLimitBurst: a token bucket of lines and one of bytes. A line over either is dropped, not
// waited for, and counted; when the module may log again, one warning line says how many lines
// were dropped. A zero field takes its default.
type LogLimits struct {
	// LinesPerSecond is the rate at which the line bucket refills. Default 1000.
	LinesPerSecond int32 `json:"linesPerSecond,omitempty"`
	// Burst is the most lines the module may log at once, after a quiet spell. Default 10000.
	Burst int32 `json:"burst,omitempty"`
	// BytesPerSecond is the rate at which the byte bucket refills (Kubernetes quantity; a line
	// counts at most 8Ki, the longest line kept). Default 1Mi.
	BytesPerSecond Quantity `json:"bytesPerSecond,omitempty"`
	// BurstBytes is the most bytes the module may log at once; at least 8Ki. Default 10Mi.
	BurstBytes Quantity `json:"burstBytes,omitempty"`
	// Unlimited turns the limit off (for a vetted module whose logs are its job, such as a log
	// shipper); the other fields must then be unset.
	Unlimited bool `json:"unlimited,omitempty"`
}

// MinLogBurstBytes is the smallest resources.logs.burstBytes: the longest log line kept.
const MinLogBurstBytes = 8 * Ki

// MaxVars is the largest resources.vars.
const MaxVars = 64 * Mi

// WasmPageSize is the size of a WebAssembly memory page.
const WasmPageSize = 64 * Ki

// MaxMemory is the largest memory limit: the whole 32-bit address space, 65536 pages.
const MaxMemory = 4 * Gi

// MemoryPages returns the memory limit as a number of 64 KiB wasm pages: the largest number of
// whole pages that fits in Memory, so the limit is never exceeded (100Ki gives 1 page).
func (r Resources) MemoryPages() uint32 {
	if r.Memory <= 0 {
		return 0
	}
	return uint32(min(r.Memory, MaxMemory) / WasmPageSize)
}

// Probe says how often and how patiently the host calls a module's wasmpod_health export. The
// fields and defaults are those of a Kubernetes probe; a zero field takes its default.
type Probe struct {
	// InitialDelaySeconds is the wait after the module starts before the first probe. Default 0.
	InitialDelaySeconds int32 `json:"initialDelaySeconds"`
	// PeriodSeconds is the time between probes. Default 10.
	PeriodSeconds int32 `json:"periodSeconds"`
	// TimeoutSeconds is the deadline of one probe call. Default 1.
	TimeoutSeconds int32 `json:"timeoutSeconds"`
	// SuccessThreshold is how many successes in a row count as success after a failure. Must be 1
	// for liveness and startup probes. Default 1.
	SuccessThreshold int32 `json:"successThreshold"`
	// FailureThreshold is how many failures in a row count as failure. Default 3.
	FailureThreshold int32 `json:"failureThreshold"`
}

// InitialDelay returns InitialDelaySeconds as a duration.
func (p Probe) InitialDelay() time.Duration {
	return time.Duration(p.InitialDelaySeconds) * time.Second
}

// Period returns PeriodSeconds as a duration.
func (p Probe) Period() time.Duration { return time.Duration(p.PeriodSeconds) * time.Second }

// Timeout returns TimeoutSeconds as a duration.
func (p Probe) Timeout() time.Duration { return time.Duration(p.TimeoutSeconds) * time.Second }

// Scale bounds the warm instance pool a module may ask for with the scale import.
type Scale struct {
	// Min is the fewest warm instances the module may shrink to; at least 1. Default: the
	// module's resources.minInstances.
	Min int32 `json:"min"`
	// Max is the most warm instances the module may grow to; at most resources.concurrency.
	// Default: resources.concurrency.
	Max int32 `json:"max"`
}

// Network is a module's outbound allowlist.
type Network struct {
	// Allow lists the destinations the module may reach, each "host:port": a DNS name
	// (optionally "*.example.com", any subdomain), an IPv4 address or a bracketed IPv6 address,
	// and a port from 1 to 65535. An Extism module may also give a host without a port (any
	// port), as Extism's allowed_hosts do. Every redirect is checked against the same list.
	// Empty: no outbound connections.
	Allow []string `json:"allow,omitempty"`
}

// VolumeMount makes a pod volume visible to a module.
type VolumeMount struct {
	// Name is the name of a volume in spec.volumes. Required.
	Name string `json:"name"`
	// MountPath is where the guest sees the directory: an absolute, clean path such as "/data".
	// Unique within the module. Required.
	MountPath string `json:"mountPath"`
	// ReadOnly mounts the volume read-only for this module.
	ReadOnly bool `json:"readOnly,omitempty"`
}

// Volume is a directory modules of the pod can mount. Exactly one source must be set.
type Volume struct {
	// Name identifies the volume in volumeMounts: a DNS-1123 label. Required, unique in the pod.
	Name string `json:"name"`
	// EmptyDir is a fresh, empty directory created when the pod starts and deleted when it stops.
	EmptyDir *EmptyDirVolumeSource `json:"emptyDir,omitempty"`
	// HostPath is an existing directory of the host.
	HostPath *HostPathVolumeSource `json:"hostPath,omitempty"`
}

// EmptyDirVolumeSource is a scratch directory living as long as the pod.
type EmptyDirVolumeSource struct {
	// SizeLimit, when not zero, is the most bytes the directory may hold.
	SizeLimit Quantity `json:"sizeLimit,omitempty"`
}

// HostPathVolumeSource is a directory of the host.
type HostPathVolumeSource struct {
	// Path is the host directory; a relative path is relative to the spec file's directory (see
	// [Pod.ResolvePath]). Required.
	Path string `json:"path"`
	// Type checks the path before the pod starts, as in Kubernetes. Only directory types exist,
	// because a WASI mount is a preopened directory.
	Type HostPathType `json:"type,omitempty"`
}

// HostPathType is the check made on a hostPath before the pod starts.
type HostPathType string

// Host path types.
const (
	// HostPathUnset (the default) expects an existing directory, like HostPathDirectory: a WASI
	// preopen cannot be made of something that is not there.
	HostPathUnset HostPathType = ""
	// HostPathDirectory expects an existing directory.
	HostPathDirectory HostPathType = "Directory"
	// HostPathDirectoryOrCreate creates the directory (mode 0755) when it does not exist.
	HostPathDirectoryOrCreate HostPathType = "DirectoryOrCreate"
)

func (t HostPathType) valid() bool {
	return t == HostPathUnset || t == HostPathDirectory || t == HostPathDirectoryOrCreate
}

// GracePeriod returns TerminationGracePeriodSeconds as a duration, or the default when unset.
func (s *PodSpec) GracePeriod() time.Duration {
	secs := int64(DefaultTerminationGracePeriodSeconds)
	if s.TerminationGracePeriodSeconds != nil {
		secs = *s.TerminationGracePeriodSeconds
	}
	return time.Duration(secs) * time.Second
}

// Module returns the module with the given name, or nil. The pointer refers into p.Spec.Modules.
func (p *Pod) Module(name string) *Module {
	for i := range p.Spec.Modules {
		if p.Spec.Modules[i].Name == name {
			return &p.Spec.Modules[i]
		}
	}
	return nil
}

// Main returns the pod's main module, or nil if it has none.
func (p *Pod) Main() *Module {
	for i := range p.Spec.Modules {
		if p.Spec.Modules[i].Role == RoleMain {
			return &p.Spec.Modules[i]
		}
	}
	return nil
}

// Pipeline returns the pipeline with the given name, or nil. The pointer refers into
// p.Spec.Pipelines.
func (p *Pod) Pipeline(name string) *Pipeline {
	for i := range p.Spec.Pipelines {
		if p.Spec.Pipelines[i].Name == name {
			return &p.Spec.Pipelines[i]
		}
	}
	return nil
}

// Volume returns the volume with the given name, or nil. The pointer refers into p.Spec.Volumes.
func (p *Pod) Volume(name string) *Volume {
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == name {
			return &p.Spec.Volumes[i]
		}
	}
	return nil
}

// StartOrder returns the modules in the order the host starts them, following Kubernetes' native
// sidecar semantics, so main never runs without the modules that serve it:
//
//  1. helpers (sidecar, ambassador, adapter), in spec order;
//  2. main;
//  3. every other module (leaf, merge, stage), in spec order.
//
// The host should start a module only once the modules before it are running (for a module
// with a startup probe: once that probe has succeeded). The pointers refer into p.Spec.Modules.
func (p *Pod) StartOrder() []*Module {
	out := make([]*Module, 0, len(p.Spec.Modules))
	for _, tier := range []func(Role) bool{
		Role.Helper,
		func(r Role) bool { return r == RoleMain },
		func(r Role) bool { return !r.Helper() && r != RoleMain },
	} {
		for i := range p.Spec.Modules {
			if tier(p.Spec.Modules[i].Role) {
				out = append(out, &p.Spec.Modules[i])
			}
		}
	}
	return out
}

// StopOrder returns the modules in the order the host stops them: exactly the reverse of
// [Pod.StartOrder], so helpers stop last and main can drain through its ambassador and
// adapter. The grace period is shared by the whole pod, not given to each module.
func (p *Pod) StopOrder() []*Module {
	out := p.StartOrder()
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// ResolvePath returns path resolved against the pod's BaseDir when it is relative, else path.
func (p *Pod) ResolvePath(path string) string {
	if path == "" || filepath.IsAbs(path) || p.BaseDir == "" {
		return path
	}
	return filepath.Join(p.BaseDir, path)
}

// Marshal returns the canonical JSON form of the pod, defaults included, as served by the admin
// API. Quantities and durations are strings in canonical form ("64Mi", "5s"), priorities are
// numbers, maps have sorted keys. The output is also valid YAML: [Parse] reads it back to an
// equal Pod. (Characters YAML does not accept raw, such as DEL or U+0085, are written as \u
// escapes.)
func (p *Pod) Marshal() ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return yamlSafe(b), nil
}

// yamlSafe rewrites characters that a YAML reader refuses or treats as line breaks into \u
// escapes. encoding/json writes them raw, and they can only occur inside strings, where the
// escape means the same thing.
func yamlSafe(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if yamlPrintable(r) || r == '\n' {
			if out != nil {
				out = append(out, b[i:i+size]...)
			}
			i += size
			continue
		}
		if out == nil {
			out = append(make([]byte, 0, len(b)+16), b[:i]...)
		}
		const hex = "0123456789abcdef"
		out = append(out, '\\', 'u', hex[r>>12&0xF], hex[r>>8&0xF], hex[r>>4&0xF], hex[r&0xF])
		i += size
	}
	if out == nil {
		return b
	}
	return out
}

// yamlPrintable reports whether a YAML 1.2 reader accepts r raw inside a quoted scalar without
// taking it for a line break.
func yamlPrintable(r rune) bool {
	switch {
	case r == '\t' || (r >= 0x20 && r <= 0x7E):
		return true
	case r >= 0xA0 && r <= 0xD7FF:
		return r != 0x2028 && r != 0x2029
	case r >= 0xE000 && r <= 0xFFFD:
		return r != 0xFEFF
	case r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}
