package podspec

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wasmpod/wasmpod/runtime"
)

// ValidateOptions selects the checks of [Pod.Validate] that look outside the spec.
type ValidateOptions struct {
	// CheckFiles requires every module's wasm file to exist and be a regular file, and every
	// hostPath volume to be usable: an existing directory, or for DirectoryOrCreate a path that
	// is a directory or does not exist yet.
	CheckFiles bool
	// VerifyDigests reads every wasm file that has a sha256 and compares the digests. It implies
	// CheckFiles. (The host, which reads the bytes anyway, can instead call Module.CheckDigest.)
	VerifyDigests bool
}

// Validate checks the pod and returns a *SpecError listing every problem (wrapping
// ErrInvalidSpec), or nil. For a parsed Pod, problems name the line of the field; call
// ApplyDefaults first on a Pod built in Go, since unset fields are invalid. Validate does not
// change the Pod.
//
// Beyond the per-field rules documented on each type, a pod must have: unique module and volume
// names; at most one main and at most one merge module; a main module if it has a sidecar,
// ambassador or adapter; a network allowlist only on ambassadors; volume mounts of defined
// volumes only; unique pipeline names, and pipeline stages naming modules of role stage.
func (p *Pod) Validate(opts ValidateOptions) error {
	ps := &problems{}
	if p.src != nil {
		ps.file = p.src.file
	}
	(&validator{p: p, probs: ps, opts: opts}).run()
	return ps.err()
}

// CheckDigest compares the sha256 of wasm, the module's file contents, with m.SHA256. It returns
// nil when they match or the module declares no digest, else an error wrapping ErrInvalidSpec
// that gives both digests.
func (m *Module) CheckDigest(wasm []byte) error {
	if m.SHA256 == "" {
		return nil
	}
	sum := sha256.Sum256(wasm)
	got := hex.EncodeToString(sum[:])
	if strings.EqualFold(got, m.SHA256) {
		return nil
	}
	return &FieldError{Msg: fmt.Sprintf("module %q: sha256 mismatch: spec says %s, file has %s", m.Name, strings.ToLower(m.SHA256), got)}
}

type validator struct {
	p      *Pod
	probs  *problems
	opts   ValidateOptions
	failed map[string]bool // paths the decoder could not read: their problems are already reported

	volumeNames []string // sorted, for suggestions
	modNames    []string // sorted, for suggestions
	stages      []string // names of the modules of role stage, sorted, for suggestions
	modules     map[string]*Module
}

// errorf reports a problem at path unless the decoder already reported one there or above.
func (v *validator) errorf(path, format string, args ...any) {
	if len(v.failed) > 0 {
		for p := path; ; p = parentPath(p) {
			if v.failed[p] {
				return
			}
			if p == "" {
				break
			}
		}
	}
	v.probs.add(v.p.lineOf(path), path, format, args...)
}

// lineOf returns the line of path, or of its closest ancestor that has one, or 0.
func (p *Pod) lineOf(path string) int {
	if p.src == nil {
		return 0
	}
	for {
		if l, ok := p.src.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parentPath(path)
	}
}

// written reports whether path was set in the parsed file (false for a Pod built in Go).
func (p *Pod) written(path string) bool {
	if p.src == nil {
		return false
	}
	_, ok := p.src.lines[path]
	return ok
}

// where describes the location of path for a message about another field: "spec.modules[0],
// line 5", or just the path when lines are unknown.
func (p *Pod) where(path string) string {
	if l := p.lineOf(path); l > 0 {
		return fmt.Sprintf("%s, line %d", path, l)
	}
	return path
}

func (v *validator) run() {
	p := v.p
	switch {
	case p.APIVersion == "":
		v.errorf("apiVersion", "required field is missing (use %s)", APIVersion)
	case p.APIVersion != APIVersion:
		v.errorf("apiVersion", "unsupported apiVersion %q (use %s)", truncate(p.APIVersion), APIVersion)
	}
	switch {
	case p.Kind == "":
		v.errorf("kind", "required field is missing (use %s)", KindPod)
	case p.Kind != KindPod:
		v.errorf("kind", "unsupported kind %q (use %s)", truncate(p.Kind), KindPod)
	}
	v.metadata()
	v.spec()
}

func (v *validator) metadata() {
	m := &v.p.Metadata
	if m.Name == "" {
		v.errorf("metadata.name", "required field is missing")
	} else if msg := subdomainProblem(m.Name); msg != "" {
		v.errorf("metadata.name", "%s", msg)
	}
	for _, k := range sortedKeys(m.Labels) {
		kp := keyPath("metadata.labels", k)
		if msg := qualifiedNameProblem(k); msg != "" {
			v.errorf(kp, "invalid label key: %s", msg)
		}
		if msg := labelValueProblem(m.Labels[k]); msg != "" {
			v.errorf(kp, "invalid label value: %s", msg)
		}
	}
	total := 0
	for _, k := range sortedKeys(m.Annotations) {
		total += len(k) + len(m.Annotations[k])
		if msg := qualifiedNameProblem(k); msg != "" {
			v.errorf(keyPath("metadata.annotations", k), "invalid annotation key: %s", msg)
		}
	}
	if total > 256*1024 {
		v.errorf("metadata.annotations", "annotations take %d bytes; the limit is 256Ki", total)
	}
}

func (v *validator) spec() {
	s := &v.p.Spec
	if len(s.Modules) == 0 {
		v.errorf("spec.modules", "at least one module is required")
	}
	volumes := v.volumes()
	names := map[string]string{} // module name -> path of its first module
	var mains, merges []string   // module paths
	for i := range s.Modules {
		m := &s.Modules[i]
		mp := fmt.Sprintf("spec.modules[%d]", i)
		switch {
		case m.Name == "":
			v.errorf(mp+".name", "required field is missing")
		case labelProblem(m.Name) != "":
			v.errorf(mp+".name", "%s", labelProblem(m.Name))
		}
		if m.Name != "" {
			if first, dup := names[m.Name]; dup {
				v.errorf(mp+".name", "duplicate module name %q (also %s)", m.Name, v.p.where(first))
			} else {
				names[m.Name] = mp
			}
		}
		v.module(mp, m, volumes)
		switch m.Role {
		case RoleMain:
			mains = append(mains, mp)
		case RoleMerge:
			merges = append(merges, mp)
		}
	}
	for _, mp := range mains[min(1, len(mains)):] {
		note := ""
		if !v.p.written(mp + ".role") {
			note = "; role defaults to main when not set"
		}
		v.errorf(mp+".role", "more than one main module (%s is main too)%s", v.p.where(mains[0]), note)
	}
	for _, mp := range merges[min(1, len(merges)):] {
		v.errorf(mp+".role", "more than one merge module (%s is merge too)", v.p.where(merges[0]))
	}
	if len(mains) == 0 {
		for i := range s.Modules {
			if r := s.Modules[i].Role; r.Helper() {
				v.errorf(fmt.Sprintf("spec.modules[%d].role", i), "role %s serves a main module, but the pod has none", r)
			}
		}
	}

	if s.Scatter != nil {
		v.scatter(s.Scatter)
	}
	v.pipelines()

	switch s.RestartPolicy {
	case RestartAlways, RestartOnFailure, RestartNever:
	default:
		valid := []string{string(RestartAlways), string(RestartOnFailure), string(RestartNever)}
		v.errorf("spec.restartPolicy", "unknown restart policy %q%s", truncate(string(s.RestartPolicy)), didYouMean(string(s.RestartPolicy), valid))
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		v.errorf("spec.terminationGracePeriodSeconds", "must not be negative, got %d", *g)
	}
	b := &s.RestartBackoff
	v.positiveDuration("spec.restartBackoff.initial", b.Initial)
	v.positiveDuration("spec.restartBackoff.max", b.Max)
	v.positiveDuration("spec.restartBackoff.resetAfter", b.ResetAfter)
	if b.Initial > 0 && b.Max > 0 && b.Max < b.Initial {
		v.errorf("spec.restartBackoff.max", "max (%s) is less than initial (%s)", b.Max, b.Initial)
	}
}

// volumes checks spec.volumes and returns the defined volume names.
func (v *validator) volumes() map[string]bool {
	defined := map[string]bool{}
	first := map[string]string{}
	for i := range v.p.Spec.Volumes {
		vol := &v.p.Spec.Volumes[i]
		vp := fmt.Sprintf("spec.volumes[%d]", i)
		switch {
		case vol.Name == "":
			v.errorf(vp+".name", "required field is missing")
		case labelProblem(vol.Name) != "":
			v.errorf(vp+".name", "%s", labelProblem(vol.Name))
		}
		if vol.Name != "" {
			if f, dup := first[vol.Name]; dup {
				v.errorf(vp+".name", "duplicate volume name %q (also %s)", vol.Name, v.p.where(f))
			} else {
				first[vol.Name] = vp
			}
			defined[vol.Name] = true
		}
		switch {
		case vol.EmptyDir == nil && vol.HostPath == nil:
			v.errorf(vp, "a volume needs exactly one source: emptyDir or hostPath")
		case vol.EmptyDir != nil && vol.HostPath != nil:
			v.errorf(vp, "a volume needs exactly one source, got both emptyDir and hostPath")
		}
		if vol.EmptyDir != nil && vol.EmptyDir.SizeLimit < 0 {
			v.errorf(vp+".emptyDir.sizeLimit", "must not be negative, got %d", int64(vol.EmptyDir.SizeLimit))
		}
		if h := vol.HostPath; h != nil {
			v.hostPath(vp+".hostPath", h)
		}
	}
	return defined
}

func (v *validator) hostPath(hp string, h *HostPathVolumeSource) {
	if !h.Type.valid() {
		hint := " (a WASI mount is a directory: use Directory or DirectoryOrCreate)"
		if m := suggestValue(string(h.Type), []string{string(HostPathDirectory), string(HostPathDirectoryOrCreate)}); m != "" {
			hint = fmt.Sprintf("; did you mean %q?", m)
		}
		v.errorf(hp+".type", "unsupported hostPath type %q%s", truncate(string(h.Type)), hint)
	}
	if h.Path == "" {
		v.errorf(hp+".path", "required field is missing")
		return
	}
	if !v.opts.CheckFiles && !v.opts.VerifyDigests || !h.Type.valid() {
		return
	}
	resolved := v.p.ResolvePath(h.Path)
	fi, err := os.Stat(resolved)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if h.Type != HostPathDirectoryOrCreate {
			v.errorf(hp+".path", "directory not found: %s (use type: DirectoryOrCreate to have it created)", absPath(resolved))
		}
	case err != nil:
		v.errorf(hp+".path", "cannot use %s: %v", absPath(resolved), err)
	case !fi.IsDir():
		v.errorf(hp+".path", "%s is not a directory", absPath(resolved))
	}
}

// module checks one module's own fields; names and roles across modules are checked by spec.
func (v *validator) module(mp string, m *Module, volumes map[string]bool) {
	if !m.Role.Valid() {
		valid := make([]string, 0, 7)
		for _, r := range Roles() {
			valid = append(valid, string(r))
		}
		v.errorf(mp+".role", "unknown role %q%s", truncate(string(m.Role)), didYouMean(string(m.Role), valid))
	}
	switch m.ABI {
	case ABINative, ABIExtism:
	default:
		v.errorf(mp+".abi", "unknown abi %q%s", truncate(string(m.ABI)), didYouMean(string(m.ABI), []string{string(ABINative), string(ABIExtism)}))
	}
	v.wasm(mp, m)
	for _, k := range sortedKeys(m.Config) {
		if msg := configKeyProblem(k); msg != "" {
			v.errorf(keyPath(mp+".config", k), "%s", msg)
		}
	}
	v.resources(mp+".resources", &m.Resources)
	if m.Priority < MinPriority || m.Priority > MaxPriority {
		v.errorf(mp+".priority", "priority %d is out of range [%d, %d]", m.Priority, MinPriority, MaxPriority)
	}
	switch t := m.TickInterval; {
	case t < 0:
		v.errorf(mp+".tickInterval", "must not be negative, got %s", t)
	case t > 0 && t.Std() < time.Millisecond:
		v.errorf(mp+".tickInterval", "tick interval %s is too short (at least 1ms)", t)
	}
	v.probe(mp+".livenessProbe", m.LivenessProbe, true)
	v.probe(mp+".readinessProbe", m.ReadinessProbe, false)
	v.probe(mp+".startupProbe", m.StartupProbe, true)
	v.mounts(mp, m, volumes)
	if s := m.AllowScale; s != nil {
		v.scale(mp, s, &m.Resources)
	}
	if n := m.Network; n != nil {
		switch {
		case m.ABI == ABIExtism:
			v.network(mp+".network.allow", n.Allow, true)
		case m.Role != RoleAmbassador:
			v.errorf(mp+".network", "only an ambassador or an Extism module may have a network allowlist (this module's role is %s, abi %s); route outbound traffic through an ambassador", m.Role, m.ABI)
		default:
			v.network(mp+".network.allow", n.Allow, false)
		}
	}
	v.extism(mp, m)
}

// extism checks what only Extism modules may have: extism options and resources.vars.
func (v *validator) extism(mp string, m *Module) {
	if m.ABI != ABIExtism {
		if m.Extism != nil {
			v.errorf(mp+".extism", "extism options are for Extism modules; set abi: extism or remove them")
		}
		if m.Resources.Vars != 0 {
			v.errorf(mp+".resources.vars", "vars are Extism's (var_get, var_set); this module's abi is %s", m.ABI)
		}
		return
	}
	switch r := m.Resources.Vars; {
	case r < 0:
		v.errorf(mp+".resources.vars", "must not be negative, got %d", int64(r))
	case r > MaxVars:
		v.errorf(mp+".resources.vars", "vars %s exceeds %s", r, Quantity(MaxVars))
	}
	if x := m.Extism; x != nil && x.Function != "" {
		if msg := functionNameProblem(x.Function); msg != "" {
			v.errorf(mp+".extism.function", "%s", msg)
		}
	}
}

// functionNameProblem describes what is wrong with an export name, or returns "".
func functionNameProblem(name string) string {
	if len(name) > 1024 {
		return "function name longer than 1024 bytes"
	}
	if !utf8.ValidString(name) {
		return "function name is not valid UTF-8"
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Sprintf("function name %q has a control character", truncate(name))
		}
	}
	return ""
}

func (v *validator) wasm(mp string, m *Module) {
	if m.SHA256 != "" {
		if msg := sha256Problem(m.SHA256); msg != "" {
			v.errorf(mp+".sha256", "%s", msg)
		}
		if m.Watch {
			v.errorf(mp+".watch", "a watched module takes whatever new bytes appear; remove sha256 (or watch)")
		}
	}
	if m.Wasm == "" {
		v.errorf(mp+".wasm", "required field is missing (the path of the module's .wasm file)")
		return
	}
	if strings.Contains(m.Wasm, "://") {
		v.errorf(mp+".wasm", "%q is a URL; wasm must be a file path (relative to the spec's directory)", truncate(m.Wasm))
		return
	}
	if !v.opts.CheckFiles && !v.opts.VerifyDigests {
		return
	}
	resolved, err := v.p.WasmFile(m)
	if err != nil {
		v.errorf(mp+".wasm", "%v", err)
		return
	}
	// At most the compile budget's MaxModuleBytes: the engine the host runs modules in has the
	// default budget, and a larger file is refused from its size, unread.
	wasm, err := runtime.ReadModuleFile(resolved, runtime.DefaultConfig().CompileBudget)
	if err != nil {
		v.errorf(mp+".wasm", "cannot read wasm file: %v", err)
		return
	}
	if v.opts.VerifyDigests && m.SHA256 != "" && sha256Problem(m.SHA256) == "" {
		if err := m.CheckDigest(wasm); err != nil {
			v.errorf(mp+".sha256", "sha256 mismatch for %s: spec says %s, file has %s", absPath(resolved), strings.ToLower(m.SHA256), sha256Hex(wasm))
			return
		}
	}
	if err := m.CheckWasm(wasm); err != nil {
		field := ".wasm"
		if m.Extism != nil && m.Extism.Function != "" && errors.Is(err, runtime.ErrNoExport) {
			field = ".extism.function"
		}
		v.errorf(mp+field, "%s: %v", absPath(resolved), err)
	}
}

// WasmFile returns the file the module runs: Wasm resolved against the pod's directory, or for
// a watched module whose Wasm is a directory, the newest .wasm file in it (see NewestWasm). The
// error says what is missing.
func (p *Pod) WasmFile(m *Module) (string, error) {
	resolved := p.ResolvePath(m.Wasm)
	fi, err := os.Stat(resolved)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("wasm file not found: %s", absPath(resolved))
	case err != nil:
		return "", fmt.Errorf("cannot read wasm file: %w", err)
	case fi.IsDir() && m.Watch:
		f, err := NewestWasm(resolved)
		if err != nil {
			return "", err
		}
		return f, nil
	case fi.IsDir():
		return "", fmt.Errorf("%s is a directory; set watch: true to run the newest .wasm file in it", absPath(resolved))
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%s is not a regular file", absPath(resolved))
	}
	return resolved, nil
}

// NewestWasm returns the .wasm file of dir modified last (ties: the greater name). Names
// starting with "." are skipped (editors' and copy tools' temporary files).
func NewestWasm(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("cannot read plugin directory: %w", err)
	}
	var best string
	var bestTime time.Time
	for _, e := range entries {
		if !IsPluginFile(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if t := fi.ModTime(); best == "" || t.After(bestTime) || (t.Equal(bestTime) && e.Name() > filepath.Base(best)) {
			best, bestTime = filepath.Join(dir, e.Name()), t
		}
	}
	if best == "" {
		return "", fmt.Errorf("plugin directory %s holds no .wasm file yet; put the first version in before starting the pod", absPath(dir))
	}
	return best, nil
}

// IsPluginFile reports whether a file name in a watched directory is a plugin: NAME.wasm, not
// starting with ".".
func IsPluginFile(name string) bool {
	return strings.HasSuffix(name, ".wasm") && len(name) > len(".wasm") && !strings.HasPrefix(name, ".")
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// absPath makes a path absolute for a message, keeping it as is if that fails.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func (v *validator) resources(rp string, r *Resources) {
	switch {
	case r.Memory < 0:
		v.errorf(rp+".memory", "must not be negative, got %d", int64(r.Memory))
	case r.Memory < WasmPageSize:
		v.errorf(rp+".memory", "memory %s is less than one wasm page (64Ki)", r.Memory)
	case r.Memory > MaxMemory:
		v.errorf(rp+".memory", "memory %s exceeds 4Gi, the most a 32-bit wasm module can address", r.Memory)
	}
	v.positiveDuration(rp+".timeout", r.Timeout)
	v.atLeastOne(rp+".concurrency", r.Concurrency)
	v.atLeastOne(rp+".minInstances", r.MinInstances)
	if r.Concurrency > 0 && r.MinInstances > r.Concurrency {
		v.errorf(rp+".minInstances", "minInstances (%d) exceeds concurrency (%d), the most instances the module may have", r.MinInstances, r.Concurrency)
	}
	v.logLimits(rp+".logs", r.Logs)
}

// logLimits checks resources.logs: 0 takes the default, unlimited stands alone.
func (v *validator) logLimits(lp string, l *LogLimits) {
	if l == nil {
		return
	}
	if l.Unlimited {
		if l.LinesPerSecond != 0 || l.Burst != 0 || l.BytesPerSecond != 0 || l.BurstBytes != 0 {
			v.errorf(lp+".unlimited", "unlimited turns the log limit off; remove linesPerSecond, burst, bytesPerSecond and burstBytes, or unlimited")
		}
		return
	}
	if l.LinesPerSecond < 0 {
		v.errorf(lp+".linesPerSecond", "must not be negative, got %d (0 takes the default, 1000; unlimited: true turns the limit off)", l.LinesPerSecond)
	}
	if l.Burst < 0 {
		v.errorf(lp+".burst", "must not be negative, got %d (0 takes the default, 10000)", l.Burst)
	}
	if l.BytesPerSecond < 0 {
		v.errorf(lp+".bytesPerSecond", "must not be negative, got %d (0 takes the default, 1Mi; unlimited: true turns the limit off)", int64(l.BytesPerSecond))
	}
	if l.BurstBytes != 0 && l.BurstBytes < MinLogBurstBytes {
		v.errorf(lp+".burstBytes", "burstBytes %s is less than 8Ki, the longest log line (0 takes the default, 10Mi)", l.BurstBytes)
	}
}

func (v *validator) probe(pp string, pr *Probe, successMustBeOne bool) {
	if pr == nil {
		return
	}
	if pr.InitialDelaySeconds < 0 {
		v.errorf(pp+".initialDelaySeconds", "must not be negative, got %d", pr.InitialDelaySeconds)
	}
	v.atLeastOne(pp+".periodSeconds", pr.PeriodSeconds)
	v.atLeastOne(pp+".timeoutSeconds", pr.TimeoutSeconds)
	v.atLeastOne(pp+".failureThreshold", pr.FailureThreshold)
	v.atLeastOne(pp+".successThreshold", pr.SuccessThreshold)
	if successMustBeOne && pr.SuccessThreshold > 1 {
		v.errorf(pp+".successThreshold", "must be 1 for a liveness or startup probe, got %d", pr.SuccessThreshold)
	}
}

func (v *validator) mounts(mp string, m *Module, volumes map[string]bool) {
	paths := map[string]string{}
	for j, vm := range m.VolumeMounts {
		vp := fmt.Sprintf("%s.volumeMounts[%d]", mp, j)
		switch {
		case vm.Name == "":
			v.errorf(vp+".name", "required field is missing")
		case !volumes[vm.Name]:
			switch {
			case len(volumes) == 0:
				v.errorf(vp+".name", "volume %q is not defined (the pod has no spec.volumes)", truncate(vm.Name))
			case len(volumes) > 64:
				// Too many names for a suggestion to be cheap or useful.
				v.errorf(vp+".name", "volume %q is not defined in spec.volumes", truncate(vm.Name))
			default:
				if v.volumeNames == nil {
					v.volumeNames = sortedKeys(volumes)
				}
				v.errorf(vp+".name", "volume %q is not defined in spec.volumes%s", truncate(vm.Name), didYouMean(vm.Name, v.volumeNames))
			}
		}
		switch {
		case vm.MountPath == "":
			v.errorf(vp+".mountPath", "required field is missing")
			continue
		case !strings.HasPrefix(vm.MountPath, "/"):
			v.errorf(vp+".mountPath", "mount path %q must be absolute (e.g. %q)", truncate(vm.MountPath), path.Clean("/"+vm.MountPath))
			continue
		case path.Clean(vm.MountPath) != vm.MountPath:
			v.errorf(vp+".mountPath", "mount path %q is not clean (use %q)", truncate(vm.MountPath), path.Clean(vm.MountPath))
			continue
		}
		if first, dup := paths[vm.MountPath]; dup {
			v.errorf(vp+".mountPath", "mount path %q is already used by %s", vm.MountPath, v.p.where(first))
		} else {
			paths[vm.MountPath] = vp
		}
	}
}

func (v *validator) scale(mp string, s *Scale, r *Resources) {
	sp := mp + ".allowScale"
	v.atLeastOne(sp+".min", s.Min)
	v.atLeastOne(sp+".max", s.Max)
	if s.Min > 0 && s.Max > 0 && s.Min > s.Max {
		v.errorf(sp+".min", "min (%d) exceeds max (%d)", s.Min, s.Max)
		return
	}
	if r.Concurrency > 0 && s.Max > r.Concurrency {
		v.errorf(sp+".max", "max (%d) exceeds resources.concurrency (%d), the most instances the module may have", s.Max, r.Concurrency)
		return
	}
	if s.Min > 0 && s.Max > 0 && r.MinInstances > 0 && (r.MinInstances < s.Min || r.MinInstances > s.Max) {
		v.errorf(mp+".resources.minInstances", "minInstances (%d) lies outside allowScale [%d, %d]; the module starts with that many instances", r.MinInstances, s.Min, s.Max)
	}
}

func (v *validator) network(ap string, allow []string, anyPort bool) {
	seen := map[string]string{}
	for j, dest := range allow {
		dp := fmt.Sprintf("%s[%d]", ap, j)
		problem := destinationProblem
		if anyPort {
			problem = hostProblem
		}
		if msg := problem(dest); msg != "" {
			v.errorf(dp, "%s", msg)
			continue
		}
		key := strings.ToLower(dest)
		if first, dup := seen[key]; dup {
			v.errorf(dp, "duplicate destination %q (also %s)", dest, v.p.where(first))
		} else {
			seen[key] = dp
		}
	}
}

func (v *validator) positiveDuration(p string, d Duration) {
	switch {
	case d < 0:
		v.errorf(p, "must not be negative, got %s", d)
	case d == 0:
		v.errorf(p, "must be positive")
	}
}

func (v *validator) atLeastOne(p string, n int32) {
	switch {
	case n < 0:
		v.errorf(p, "must not be negative, got %d", n)
	case n == 0:
		v.errorf(p, "must be at least 1")
	}
}

// didYouMean returns " (did you mean X?)" for an obvious near miss of s in valid, else
// " (use A, B or C)".
func didYouMean(s string, valid []string) string {
	if m := suggestValue(s, valid); m != "" {
		return fmt.Sprintf("; did you mean %q?", m)
	}
	switch len(valid) {
	case 0:
		return ""
	case 1:
		return " (use " + valid[0] + ")"
	}
	return " (use " + strings.Join(valid[:len(valid)-1], ", ") + " or " + valid[len(valid)-1] + ")"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	qualifiedName    = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	configKey        = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	hostLabel        = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$`)
)

// labelProblem checks a DNS-1123 label (module and volume names).
func labelProblem(s string) string {
	if len(s) <= 63 && dns1123Label.MatchString(s) {
		return ""
	}
	msg := fmt.Sprintf("invalid name %q: must be a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit", truncate(s))
	if lower := strings.ToLower(s); lower != s && len(lower) <= 63 && dns1123Label.MatchString(lower) {
		msg += fmt.Sprintf(" (did you mean %q?)", lower)
	}
	return msg
}

// subdomainProblem checks a DNS-1123 subdomain (the pod name).
func subdomainProblem(s string) string {
	if len(s) <= 253 && dns1123Subdomain.MatchString(s) {
		return ""
	}
	msg := fmt.Sprintf("invalid name %q: must be a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit", truncate(s))
	if lower := strings.ToLower(s); lower != s && len(lower) <= 253 && dns1123Subdomain.MatchString(lower) {
		msg += fmt.Sprintf(" (did you mean %q?)", lower)
	}
	return msg
}

// qualifiedNameProblem checks a Kubernetes label or annotation key: an optional DNS subdomain
// prefix and '/', then a name of at most 63 characters.
func qualifiedNameProblem(k string) string {
	name := k
	if prefix, rest, ok := strings.Cut(k, "/"); ok {
		if prefix == "" || len(prefix) > 253 || !dns1123Subdomain.MatchString(prefix) {
			return fmt.Sprintf("prefix %q must be a DNS-1123 subdomain (e.g. example.com)", truncate(prefix))
		}
		name = rest
	}
	if name == "" || len(name) > 63 || !qualifiedName.MatchString(name) {
		return fmt.Sprintf("%q must be at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, optionally after a prefix and '/'", truncate(k))
	}
	return ""
}

// labelValueProblem checks a Kubernetes label value.
func labelValueProblem(s string) string {
	if s == "" || (len(s) <= 63 && qualifiedName.MatchString(s)) {
		return ""
	}
	return fmt.Sprintf("%q must be empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit", truncate(s))
}

// configKeyProblem checks a config key with Kubernetes ConfigMap key rules.
func configKeyProblem(k string) string {
	if len(k) <= 253 && configKey.MatchString(k) && k != "." && k != ".." {
		return ""
	}
	return fmt.Sprintf("invalid config key %q: use at most 253 letters, digits, '-', '_' and '.' (not \".\" or \"..\")", truncate(k))
}

func sha256Problem(s string) string {
	if strings.HasPrefix(strings.ToLower(s), "sha256:") {
		return fmt.Sprintf("invalid sha256 %q: drop the \"sha256:\" prefix", truncate(s))
	}
	if len(s) != 64 {
		return fmt.Sprintf("invalid sha256 %q: want 64 hex digits, got %d characters", truncate(s), len(s))
	}
	if _, err := hex.DecodeString(s); err != nil {
		return fmt.Sprintf("invalid sha256 %q: want 64 hex digits", truncate(s))
	}
	return ""
}

// destinationProblem checks an ambassador allowlist entry, host:port.
func destinationProblem(dest string) string {
	host, port, err := net.SplitHostPort(dest)
	if err != nil {
		return fmt.Sprintf("invalid destination %q: want host:port, e.g. \"api.example.com:443\" or \"[2001:db8::1]:443\"", truncate(dest))
	}
	if host == "" {
		return fmt.Sprintf("invalid destination %q: missing host", truncate(dest))
	}
	if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" || port[0] == '0' || atoi(port) > 65535 {
		return fmt.Sprintf("invalid destination %q: port must be a number from 1 to 65535", truncate(dest))
	}
	if net.ParseIP(host) != nil {
		return ""
	}
	if strings.Contains(dest, "[") {
		return fmt.Sprintf("invalid destination %q: brackets are for IPv6 addresses only", truncate(dest))
	}
	name := strings.TrimPrefix(host, "*.")
	ok := len(name) <= 253
	for _, l := range strings.Split(name, ".") {
		ok = ok && len(l) <= 63 && hostLabel.MatchString(l)
	}
	if !ok {
		return fmt.Sprintf("invalid destination %q: host must be a DNS name (optionally \"*.\" and a domain) or an IP address", truncate(dest))
	}
	return ""
}

// hostProblem is destinationProblem for an Extism allowed host, where the port is optional:
// "api.example.com" (any port), "api.example.com:443", "*.example.com", "10.0.0.1", "[::1]".
func hostProblem(dest string) string {
	if _, _, err := net.SplitHostPort(dest); err == nil {
		return destinationProblem(dest)
	}
	host := dest
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
			return fmt.Sprintf("invalid host %q: brackets are for IPv6 addresses only", truncate(dest))
		}
		return ""
	}
	if strings.Contains(host, ":") {
		return fmt.Sprintf("invalid host %q: an IPv6 address must be in brackets, e.g. \"[2001:db8::1]\"", truncate(dest))
	}
	return strings.ReplaceAll(destinationProblem(host+":1"), strconv.Quote(host+":1"), strconv.Quote(dest))
}

func atoi(digits string) int {
	n := 0
	for _, c := range digits {
		n = n*10 + int(c-'0')
	}
	return n
}

// scatter checks spec.scatter: the path, the merge module, the shards and their leaf modules,
// and the tuning values.
func (v *validator) scatter(sc *Scatter) {
	const sp = "spec.scatter"
	switch {
	case !strings.HasPrefix(sc.Path, "/"):
		v.errorf(sp+".path", "path %q must start with /", truncate(sc.Path))
	case strings.ContainsAny(sc.Path, "?# \t") || path.Clean(sc.Path) != sc.Path:
		v.errorf(sp+".path", "path %q is not a clean URL path (no query, fragment, spaces, //, . or ..)", truncate(sc.Path))
	case strings.HasPrefix(sc.Path, "/_wasmpod/"):
		v.errorf(sp+".path", "path %q is reserved for the host (/_wasmpod/)", truncate(sc.Path))
	}
	roleOf := func(name string) (Role, bool) {
		if m := v.p.Module(name); m != nil {
			return m.Role, true
		}
		return "", false
	}
	switch r, ok := roleOf(sc.Merge); {
	case sc.Merge == "":
		v.errorf(sp+".merge", "required: the pod has no module with role merge to combine the shards' parts")
	case !ok:
		v.errorf(sp+".merge", "no module named %q in spec.modules%s", truncate(sc.Merge), didYouMean(sc.Merge, v.moduleNames()))
	case r != RoleMerge:
		v.errorf(sp+".merge", "module %q has role %s; the merge module needs role merge", sc.Merge, r)
	}
	if len(sc.Shards) == 0 {
		v.errorf(sp+".shards", "at least one shard is required")
	}
	names := map[string]string{}  // shard name -> path of its first shard
	leaves := map[string]string{} // leaf module -> path of the shard that uses it
	for i := range sc.Shards {
		sh := &sc.Shards[i]
		p := fmt.Sprintf("%s.shards[%d]", sp, i)
		switch {
		case sh.Name == "":
			v.errorf(p+".name", "required field is missing")
		case labelProblem(sh.Name) != "":
			v.errorf(p+".name", "%s", labelProblem(sh.Name))
		default:
			if first, dup := names[sh.Name]; dup {
				v.errorf(p+".name", "duplicate shard name %q (also %s)", sh.Name, v.p.where(first))
			} else {
				names[sh.Name] = p
			}
		}
		switch {
		case sh.Leaf == "" && !sh.Remote:
			v.errorf(p, "set leaf (the module holding the shard on this node) or remote: true (other nodes hold it)")
		case sh.Leaf != "" && sh.Remote:
			v.errorf(p+".remote", "a shard with a local leaf module is not remote; set one of leaf and remote")
		case sh.Leaf != "":
			r, ok := roleOf(sh.Leaf)
			switch {
			case !ok:
				v.errorf(p+".leaf", "no module named %q in spec.modules%s", truncate(sh.Leaf), didYouMean(sh.Leaf, v.moduleNames()))
			case r != RoleLeaf:
				v.errorf(p+".leaf", "module %q has role %s; a shard's module needs role leaf", sh.Leaf, r)
			}
			if first, dup := leaves[sh.Leaf]; dup {
				v.errorf(p+".leaf", "module %q already serves %s: one leaf module holds one shard", sh.Leaf, v.p.where(first))
			} else {
				leaves[sh.Leaf] = p
			}
		}
	}
	if sc.Replicas < 1 {
		v.errorf(sp+".replicas", "must be at least 1, got %d", sc.Replicas)
	}
	v.positiveDuration(sp+".deadline", sc.Deadline)
	if sc.Deadline > 0 && sc.MergeReserve >= sc.Deadline {
		v.errorf(sp+".mergeReserve", "mergeReserve (%s) must be less than deadline (%s)", sc.MergeReserve, sc.Deadline)
	}
	if pc := sc.Hedge.Percentile; pc < 1 || pc > 100 {
		v.errorf(sp+".hedge.percentile", "must be in [1, 100], got %d", pc)
	}
}

// moduleNames returns the pod's module names, sorted, for suggestions.
func (v *validator) moduleNames() []string {
	if v.modNames == nil {
		names := make([]string, 0, len(v.p.Spec.Modules))
		for i := range v.p.Spec.Modules {
			names = append(names, v.p.Spec.Modules[i].Name)
		}
		sort.Strings(names)
		v.modNames = names
	}
	return v.modNames
}

// stageNames returns the names of the pod's modules of role stage, sorted, for suggestions.
func (v *validator) stageNames() []string {
	if v.stages == nil {
		v.stages = []string{}
		for i := range v.p.Spec.Modules {
			if m := &v.p.Spec.Modules[i]; m.Role == RoleStage && m.Name != "" {
				v.stages = append(v.stages, m.Name)
			}
		}
		sort.Strings(v.stages)
	}
	return v.stages
}

// moduleNamed returns the first module with the given name, or nil, without a scan per lookup.
func (v *validator) moduleNamed(name string) *Module {
	if v.modules == nil {
		v.modules = make(map[string]*Module, len(v.p.Spec.Modules))
		for i := range v.p.Spec.Modules {
			m := &v.p.Spec.Modules[i]
			if _, dup := v.modules[m.Name]; !dup {
				v.modules[m.Name] = m
			}
		}
	}
	return v.modules[name]
}

var pipelineName = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// pipelineNameProblem checks a pipeline name (the work queue's name syntax).
func pipelineNameProblem(s string) string {
	if pipelineName.MatchString(s) {
		return ""
	}
	msg := fmt.Sprintf("invalid pipeline name %q: want 1 to 64 lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit", truncate(s))
	if lower := strings.ToLower(s); lower != s && pipelineName.MatchString(lower) {
		msg += fmt.Sprintf(" (did you mean %q?)", lower)
	}
	return msg
}

// pipelines checks spec.pipelines: names, attempts and backoff, and that every stage names a
// module of role stage.
func (v *validator) pipelines() {
	first := map[string]string{} // pipeline name -> path of its first pipeline
	for i := range v.p.Spec.Pipelines {
		pl := &v.p.Spec.Pipelines[i]
		pp := fmt.Sprintf("spec.pipelines[%d]", i)
		switch {
		case pl.Name == "":
			v.errorf(pp+".name", "required field is missing")
		case pipelineNameProblem(pl.Name) != "":
			v.errorf(pp+".name", "%s", pipelineNameProblem(pl.Name))
		default:
			if f, dup := first[pl.Name]; dup {
				v.errorf(pp+".name", "duplicate pipeline name %q (also %s)", pl.Name, v.p.where(f))
			} else {
				first[pl.Name] = pp
			}
		}
		switch a := pl.MaxAttempts; {
		case a < 0:
			v.errorf(pp+".maxAttempts", "must not be negative, got %d (leave it out for the cluster's default)", a)
		case a > MaxPipelineAttempts:
			v.errorf(pp+".maxAttempts", "maxAttempts %d is over the limit of %d", a, MaxPipelineAttempts)
		}
		if pl.Backoff < 0 {
			v.errorf(pp+".backoff", "must not be negative, got %s", pl.Backoff)
		}
		switch n := len(pl.Stages); {
		case n == 0:
			v.errorf(pp+".stages", "at least one stage is required")
		case n > MaxPipelineStages:
			v.errorf(pp+".stages", "%d stages is over the limit of %d", n, MaxPipelineStages)
		}
		for j := range pl.Stages {
			v.pipelineStage(fmt.Sprintf("%s.stages[%d]", pp, j), j, &pl.Stages[j])
		}
	}
}

func (v *validator) pipelineStage(sp string, index int, st *PipelineStage) {
	switch m := v.moduleNamed(st.Module); {
	case st.Module == "":
		v.errorf(sp+".module", "required field is missing (the name of a module with role stage)")
	case m == nil && len(v.stageNames()) == 0:
		v.errorf(sp+".module", "no module named %q in spec.modules (and the pod has no module with role stage)", truncate(st.Module))
	case m == nil:
		v.errorf(sp+".module", "no module named %q in spec.modules%s", truncate(st.Module), didYouMean(st.Module, v.stageNames()))
	case m.Role != RoleStage:
		v.errorf(sp+".module", "module %q has role %s; a pipeline stage needs a module with role stage", st.Module, m.Role)
	}
	if st.Merge && index == 0 {
		v.errorf(sp+".merge", "the first stage cannot merge: a merge stage runs over the outputs of the stage before it")
	}
}
