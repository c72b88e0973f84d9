// Package podspec reads, checks and defaults wasmpod pod specs: YAML files shaped like a
// Kubernetes Pod that say which WebAssembly modules run together, in which roles, with which
// limits, probes and volumes. The host uses it to load a pod (Load), `wasmpod validate` uses it
// to check one without running it, and the admin API serves a pod's canonical JSON (Pod.Marshal).
//
// A spec looks like this (every field is documented on the Go type of the same name; relative
// paths are relative to the spec file's directory):
//
//	apiVersion: wasmpod.dev/v1
//	kind: Pod
//	metadata:
//	  name: shop
//	  labels: {app: shop}
//	spec:
//	  restartPolicy: Always          # Always (default) | OnFailure | Never
//	  terminationGracePeriodSeconds: 30
//	  restartBackoff: {initial: 10s, max: 5m, resetAfter: 10m}
//	  volumes:
//	    - name: logs
//	      emptyDir: {sizeLimit: 64Mi}
//	    - name: assets
//	      hostPath: {path: ./assets, type: Directory}
//	  modules:
//	    - name: web
//	      role: main                 # main (default) | sidecar | ambassador | adapter | leaf | merge | stage
//	      wasm: web.wasm
//	      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	      config: {greeting: hello}
//	      resources: {memory: 64Mi, timeout: 5s, concurrency: 4, minInstances: 1}
//	      priority: high             # high | normal | low | an integer
//	      readinessProbe: {periodSeconds: 5}
//	      volumeMounts:
//	        - {name: logs, mountPath: /logs}
//	        - {name: assets, mountPath: /assets, readOnly: true}
//	    - name: egress
//	      role: ambassador
//	      wasm: egress.wasm
//	      network: {allow: ["api.example.com:443"]}
//
// A pod whose modules have role stage can declare work-queue pipelines: durable, at-least-once
// chains of file-in/file-out stages, run by the cluster's replicated queue. When the pod starts,
// the host defines each pipeline in the cluster and runs workers for each of its stages; jobs
// (sets of input files) are then submitted to a pipeline by name:
//
//	apiVersion: wasmpod.dev/v1
//	kind: Pod
//	metadata:
//	  name: changelogs
//	spec:
//	  modules:
//	    - name: gunzip
//	      role: stage
//	      wasm: pipeline-gunzip.wasm  # a WASI command: reads /in/NAME.gz, writes /out/NAME
//	      resources: {memory: 32Mi, timeout: 30s, concurrency: 8}
//	    - name: wc
//	      role: stage
//	      wasm: pipeline-wc.wasm
//	    - name: sum
//	      role: stage
//	      wasm: pipeline-sum.wasm
//	  pipelines:
//	    - name: changelogs            # 1..64 lowercase letters, digits, '.', '_', '-'
//	      maxAttempts: 3              # optional; 0 or absent: the cluster's default (5)
//	      backoff: 1s                 # optional; base of the exponential retry backoff
//	      stages:
//	        - module: gunzip          # a module of this pod with role stage
//	        - module: wc
//	        - module: sum
//	          merge: true             # once per job, over every output of the stage before
//
// A stage runs on its module's resources: resources.concurrency is how many of the stage's tasks
// run at once on this node, resources.timeout is the deadline of each delivery (a run past it is
// cut and counts as a failed attempt), resources.memory bounds each run's memory. A stage module
// is either a native module exporting wasmpod_stage (one call: input file contents in, output
// file contents out; a merge stage gets its inputs framed as in guest-sdk/ABI.md section 2.1) or
// a plain WASI command exporting _start, which sees its input files below /in and must write
// exactly one file below /out. A module may serve stages of several pipelines (their runs share
// its concurrency); pipeline names are unique in the pod, and the first stage cannot merge.
//
// Decoding is strict, and every problem is reported at once, each with its file, line and field
// path, in a *SpecError wrapping ErrInvalidSpec:
//
//	pod.yaml:12: spec.modules[1].resources.memory: invalid quantity "64MB" (use Ki, Mi or Gi: "64Mi")
//	pod.yaml:14: spec.modules[1].imag: unknown field "imag"; did you mean "wasm"? (a module runs a .wasm file instead of a container image)
//
// Defaults follow the Kubernetes convention that a zero value means unset; each is documented
// with its reason in defaults.go (see ApplyDefaults). Modules start helpers first (sidecars,
// ambassadors, adapters), then main, then the rest, and stop in the reverse order (see
// Pod.StartOrder).
package podspec
