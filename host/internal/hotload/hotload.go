// Package hotload keeps a running pod in step with its files: it watches (fsnotify) the modules
// marked watch: true, a plugin file or a directory of them, and the pod file itself.
//
// A new or changed .wasm file is taken once it is complete: no write to it for Settle, the same
// size and modification time before and after it was read, a whole WebAssembly module that
// plays the module's part (podspec's CheckWasm: the ABI and the role's export or Extism
// function, validate's rules), and, when NAME.wasm.sha256 sits beside it, the digest that file
// names. A file over the compile budget's MaxModuleBytes (and a pod file over
// podspec.MaxPodFileBytes) is refused from its size, unread. Then it goes through the
// supervisor's upgrade path: loaded, warmed, probed and switched in, or rolled back when it
// never gets ready. A deleted plugin file leaves the running version in place (and says so).
// Writers should write to a name that is not NAME.wasm (a dot file, or NAME.wasm.part) and
// rename it into place, or write NAME.wasm.sha256 after NAME.wasm.
//
// A file of a plugin directory that is refused (not a module that fits, or a version that never
// gets ready) is renamed NAME.wasm.refused, so that neither this watcher nor the next start runs
// it (podspec.NewestWasm only sees NAME.wasm). If it is written to after that, its writer had
// only stalled: it is moved back and checked again once complete.
//
// The pod file is reloaded when its content changes: any event in its directory makes the
// watcher compare the content (read through symlinks) with what it last loaded, since a
// Kubernetes ConfigMap volume changes the file by swapping a ..data symlink and no event names
// the file itself. Reload (on SIGHUP) re-reads it regardless. It is validated like `wasmpod
// validate`; a bad file is refused with those errors and the pod keeps running as it was. A good
// one is applied module by module, and only the module entries that changed from the pod file
// last applied (its spec, or the content of the wasm file it names) are reconfigured
// (Reconfigure, the upgrade path again): a module whose entry did not change keeps the version
// it runs, such as one uploaded through the admin API. If one module's change fails, the
// modules this reload already changed are put back to the spec and version they ran, so a
// reload is applied whole or not at all; when a module cannot be put back, the error says so
// (ErrPartlyApplied). What a running pod cannot change (modules added, removed or renamed, a
// role or priority, pod-level fields) is reported as needing a restart and not applied.
package hotload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/internal/regfile"
	"github.com/wasmpod/wasmpod/runtime"
)

// Config configures a Watcher. Start from DefaultConfig.
type Config struct {
	// PodFile is the pod spec's path; "" watches no pod file.
	PodFile string
	// Pod is the pod as it runs now (what PodFile held when the pod started).
	Pod *podspec.Pod
	// Supervisor runs the pod.
	Supervisor *supervisor.Supervisor
	// Logger receives what the watcher does. Nil discards.
	Logger *slog.Logger
	// Settle is how long a file must see no write before it is read.
	Settle time.Duration
	// Applied, if set, is called after each reload or plugin change is handled, with its
	// error (nil when applied). For tests and the admin API's event log.
	Applied func(what string, err error)
}

// DefaultConfig returns the host's settings.
func DefaultConfig() Config {
	return Config{
		// 150ms: a copy or a compiler's write of a few MB ends well within it, and a plugin
		// dropped in still serves well within a second.
		Settle: 150 * time.Millisecond,
	}
}

// Watcher watches a running pod's files. Close stops it.
type Watcher struct {
	cfg  Config
	log  *slog.Logger
	fsw  *fsnotify.Watcher
	sup  *supervisor.Supervisor
	kick chan struct{} // Reload requests

	mu      sync.Mutex
	pod     *podspec.Pod         // the pod file last applied whole
	pending map[string]time.Time // path -> last event

	// Owned by the loop goroutine (and New before it starts).
	last    map[string]fileEntry // module -> its entry in the pod file last applied to it
	podHash string               // sha256 of the pod file's content at the last load; "" unreadable
	aside   map[string]string    // NAME.wasm.refused set aside by this watcher -> NAME.wasm

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// New starts watching. The pod must be running (or starting) under cfg.Supervisor.
func New(cfg Config) (*Watcher, error) {
	if cfg.Pod == nil || cfg.Supervisor == nil {
		return nil, errors.New("hotload: Pod and Supervisor are required")
	}
	if cfg.Settle <= 0 {
		cfg.Settle = DefaultConfig().Settle
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("hotload: %w", err)
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger, fsw: fsw, sup: cfg.Supervisor, kick: make(chan struct{}, 1),
		pod: cfg.Pod, pending: map[string]time.Time{}, done: make(chan struct{}),
		last: map[string]fileEntry{}, aside: map[string]string{}}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	dirs := map[string]bool{}
	if cfg.PodFile != "" {
		abs, err := filepath.Abs(cfg.PodFile)
		if err != nil {
			fsw.Close()
			return nil, fmt.Errorf("hotload: %w", err)
		}
		w.cfg.PodFile = abs
		dirs[filepath.Dir(abs)] = true
		if b, err := podspec.ReadPodFile(abs); err == nil {
			w.podHash = digest(b)
		}
	}
	for i := range cfg.Pod.Spec.Modules {
		m := &cfg.Pod.Spec.Modules[i]
		e := fileEntry{spec: m}
		// The files as they are now stand for what the pod started with.
		if f, err := cfg.Pod.WasmFile(m); err == nil {
			if b, err := readModule(f); err == nil {
				e.sha = digest(b)
			}
		}
		w.last[m.Name] = e
	}
	for _, d := range w.watchedDirs(cfg.Pod) {
		dirs[d] = true
	}
	for d := range dirs {
		if err := fsw.Add(d); err != nil {
			fsw.Close()
			return nil, fmt.Errorf("hotload: watch %s: %w", d, err)
		}
	}
	go w.loop()
	return w, nil
}

// watchedDirs lists the directories that hold the watched modules' files.
func (w *Watcher) watchedDirs(pod *podspec.Pod) []string {
	var out []string
	for i := range pod.Spec.Modules {
		m := &pod.Spec.Modules[i]
		if !m.Watch {
			continue
		}
		p, _ := filepath.Abs(pod.ResolvePath(m.Wasm))
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			out = append(out, p)
		} else {
			out = append(out, filepath.Dir(p))
		}
	}
	return out
}

// Reload re-reads the pod file (as on SIGHUP); the result is logged (and passed to Applied).
func (w *Watcher) Reload() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Close stops watching and waits for a change being applied to finish. Idempotent.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		w.cancel()
		err = w.fsw.Close()
		<-w.done
	})
	return err
}

func (w *Watcher) loop() {
	defer close(w.done)
	tick := time.NewTicker(w.cfg.Settle / 3)
	defer tick.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			w.event(ev)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.log.Warn("file watch error", "err", err)
		case <-w.kick:
			w.reloadPod("SIGHUP", true)
		case now := <-tick.C:
			w.settled(now)
		}
	}
}

// fileEntry is a module's entry in a pod file as applied: its spec and the digest of the wasm
// file it named then ("" if unreadable).
type fileEntry struct {
	spec *podspec.Module
	sha  string
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// refusedSuffix is appended to a refused plugin file's name: podspec.IsPluginFile no longer
// matches it, so NewestWasm (this watcher, and the next start) skips it.
const refusedSuffix = ".refused"

// event records a change; it is acted on once the file has settled.
func (w *Watcher) event(ev fsnotify.Event) {
	name := ev.Name
	if w.cfg.PodFile != "" && filepath.Dir(name) == filepath.Dir(w.cfg.PodFile) {
		// Whatever the name: a ConfigMap update renames a ..data symlink, and the pod file's
		// content changes without an event of its own. reloadPod compares the content.
		w.mu.Lock()
		w.pending[w.cfg.PodFile] = time.Now()
		w.mu.Unlock()
	}
	if orig, ok := w.aside[name]; ok && ev.Has(fsnotify.Write) {
		w.writtenAside(name, orig)
		return
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if _, err := os.Stat(name); err != nil {
			w.removed(name)
			return
		}
	}
	if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Create) {
		return
	}
	if strings.HasSuffix(name, ".wasm.sha256") {
		name = strings.TrimSuffix(name, ".sha256") // a checksum that arrives completes its file
	}
	if w.moduleFor(name) == nil {
		return
	}
	w.mu.Lock()
	w.pending[name] = time.Now()
	w.mu.Unlock()
}

// settled acts on the files that saw no event for Settle.
func (w *Watcher) settled(now time.Time) {
	w.mu.Lock()
	var ready []string
	for p, t := range w.pending {
		if now.Sub(t) >= w.cfg.Settle {
			ready = append(ready, p)
			delete(w.pending, p)
		}
	}
	w.mu.Unlock()
	sort.Strings(ready)
	for _, p := range ready {
		if p == w.cfg.PodFile {
			w.reloadPod("file changed", false)
			continue
		}
		if m := w.moduleFor(p); m != nil {
			w.plugin(m, p)
		}
	}
}

// moduleFor returns the watched module a plugin file belongs to, or nil.
func (w *Watcher) moduleFor(path string) *podspec.Module {
	if !podspec.IsPluginFile(filepath.Base(path)) {
		return nil
	}
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	for i := range pod.Spec.Modules {
		m := &pod.Spec.Modules[i]
		if !m.Watch {
			continue
		}
		p, _ := filepath.Abs(pod.ResolvePath(m.Wasm))
		if p == path || filepath.Dir(path) == p {
			return w.sup.ModuleSpec(m.Name)
		}
	}
	return nil
}

func (w *Watcher) removed(path string) {
	if path != w.cfg.PodFile { // a pod file gone is still looked at: reloadPod says it is unreadable
		w.mu.Lock()
		delete(w.pending, path)
		w.mu.Unlock()
	}
	delete(w.aside, path)
	if _, err := os.Stat(path + refusedSuffix); err == nil {
		return // set aside by this watcher (refused), not deleted: logged then
	}
	if m := w.moduleFor(path); m != nil {
		w.log.Warn("plugin file deleted: the module keeps running its current version", "module", m.Name, "file", path)
		w.applied("delete "+path, nil)
	}
}

func (w *Watcher) applied(what string, err error) {
	if w.cfg.Applied != nil {
		w.cfg.Applied(what, err)
	}
}

// readModule reads a module file of at most the compile budget's MaxModuleBytes (the budget of
// the supervisor's engine, runtime.DefaultConfig's): a larger one (a core dump named x.wasm) is
// refused from its size, unread, with an error wrapping runtime.ErrCompileBudget.
func readModule(path string) ([]byte, error) {
	return runtime.ReadModuleFile(path, runtime.DefaultConfig().CompileBudget)
}

// ErrIncomplete: the file is still being written, or its checksum file does not match it yet.
var ErrIncomplete = errors.New("file not complete")

// readComplete reads a plugin file that is complete: unchanged while it was read and, when
// NAME.wasm.sha256 exists, matching it.
func readComplete(path string) ([]byte, error) {
	before, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	b, err := readModule(path)
	if err != nil {
		return nil, err
	}
	after, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if before.Size() != after.Size() || !before.ModTime().Equal(after.ModTime()) || int64(len(b)) != after.Size() {
		return nil, fmt.Errorf("%w: %s changed while it was read", ErrIncomplete, path)
	}
	sum, err := regfile.Read(path+".sha256", 4096)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return b, nil
	case err != nil:
		return nil, err
	}
	want, _, _ := strings.Cut(strings.TrimSpace(string(sum)), " ")
	got := sha256.Sum256(b)
	if !strings.EqualFold(want, hex.EncodeToString(got[:])) {
		return nil, fmt.Errorf("%w: %s has sha256 %x, %s.sha256 says %s", ErrIncomplete, path, got, filepath.Base(path), want)
	}
	return b, nil
}

// plugin takes a changed plugin file of module m, if it is complete, new and valid.
func (w *Watcher) plugin(m *podspec.Module, path string) {
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	if f, err := pod.WasmFile(m); err == nil && f != path {
		// A directory: the module runs its newest file; an older one changing is not a new
		// version of it.
		w.log.Info("plugin file changed, but it is not the newest in its directory: ignored", "module", m.Name, "file", path, "newest", f)
		return
	}
	wasm, err := readComplete(path)
	if errors.Is(err, runtime.ErrCompileBudget) {
		w.refuse(m, path, err) // too large to read: no writer makes it smaller
		return
	}
	if err != nil {
		if errors.Is(err, ErrIncomplete) {
			w.log.Info("plugin file not complete yet: waiting", "module", m.Name, "file", path, "why", err)
		} else if !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("plugin file unreadable", "module", m.Name, "file", path, "err", err)
		}
		return
	}
	sha := digest(wasm)
	if st, err := w.sup.Status(m.Name); err == nil && st.SHA256 == sha {
		return // the version it runs (an unchanged file touched, or its checksum file)
	}
	if err := m.CheckWasm(wasm); err != nil {
		// A truncated module does not decode, so a half-written file ends here too (and comes
		// back if its writer goes on: writtenAside).
		w.refuse(m, path, fmt.Errorf("%s: %w", path, err))
		return
	}
	start := time.Now()
	err = w.sup.Upgrade(w.ctx, m.Name, wasm)
	if err != nil {
		w.log.Warn("new plugin version not switched in: the module keeps its current version", "module", m.Name, "file", path, "err", err)
		if errors.Is(err, supervisor.ErrUpgradeFailed) && w.ctx.Err() == nil {
			w.setAside(m, path, err) // the version's own failure, not the watcher closing
		}
	} else {
		w.log.Info("new plugin version serving", "module", m.Name, "file", path, "sha256", sha, "took", time.Since(start).Round(time.Millisecond).String())
		// The file the pod file's entry names now holds this version: a reload does not count
		// it as a change.
		w.last[m.Name] = fileEntry{spec: w.last[m.Name].spec, sha: sha}
	}
	w.applied("plugin "+path, err)
}

// refuse refuses a plugin file that is not a module that fits (err names the file), setting it
// aside.
func (w *Watcher) refuse(m *podspec.Module, path string, err error) {
	w.log.Warn("new plugin file refused: the module keeps its current version", "module", m.Name, "err", err)
	w.setAside(m, path, err)
	w.applied("plugin "+path, err)
}

// setAside renames a refused file of a plugin directory to NAME.wasm.refused, so that it is not
// the newest plugin any more, for this watcher or for the next start. A module whose wasm names
// a single file keeps it: renaming it would leave the pod file naming no file at all.
func (w *Watcher) setAside(m *podspec.Module, path string, why error) {
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	if fi, err := os.Stat(pod.ResolvePath(m.Wasm)); err != nil || !fi.IsDir() {
		return
	}
	to := path + refusedSuffix
	if err := os.Rename(path, to); err != nil {
		w.log.Error("refused plugin file could not be set aside: it stays the newest, and the next start runs it", "module", m.Name, "file", path, "err", fmt.Errorf("hotload: %w", err))
		return
	}
	w.aside[to] = path
	w.log.Warn("refused plugin file set aside: neither this watcher nor the next start runs it", "module", m.Name, "file", path, "renamedTo", to, "why", why)
}

// writtenAside handles a write to a file this watcher set aside: its writer had only stalled
// (a partial copy refused as "not a WebAssembly module"), so the file goes back under its name
// and is checked again once it settles.
func (w *Watcher) writtenAside(aside, orig string) {
	delete(w.aside, aside)
	if _, err := os.Lstat(orig); err == nil {
		// A new file took the name meanwhile: moving this one back would overwrite it.
		w.log.Warn("a refused plugin file is being written to, but its name is taken again: it stays set aside", "file", aside)
		return
	}
	if err := os.Rename(aside, orig); err != nil {
		w.log.Warn("a refused plugin file is being written to, but could not be moved back", "file", aside, "err", fmt.Errorf("hotload: %w", err))
		return
	}
	w.log.Info("a refused plugin file is still being written: moved back, checked again once complete", "file", orig)
	w.mu.Lock()
	w.pending[orig] = time.Now()
	w.mu.Unlock()
}

// reloadPod re-reads the pod file and applies what changed. A file event (force false) reloads
// only if the file's content differs from the last load.
func (w *Watcher) reloadPod(why string, force bool) {
	if w.cfg.PodFile == "" {
		return
	}
	b, err := podspec.ReadPodFile(w.cfg.PodFile) // through symlinks: a ConfigMap's ..data swap shows here
	if err != nil {
		if w.podHash != "" || force {
			w.log.Warn("pod file unreadable: the pod keeps running as it was", "why", why, "file", w.cfg.PodFile, "err", err)
		}
		w.podHash = ""
		if force {
			w.applied("pod "+w.cfg.PodFile, fmt.Errorf("hotload: %w", err))
		}
		return
	}
	h := digest(b)
	if h == w.podHash && !force {
		return // an event in the directory that left the pod file as it was
	}
	// Recorded before applying: a refused file is not tried again until it changes (or SIGHUP).
	w.podHash = h
	err = w.apply()
	switch {
	case errors.Is(err, ErrPartlyApplied):
		w.log.Error("pod file reload failed part way and could not be fully undone: see which modules run the new entries", "why", why, "file", w.cfg.PodFile, "err", err)
	case err != nil:
		w.log.Error("pod file reload refused: the pod keeps running as it was", "why", why, "file", w.cfg.PodFile, "err", err)
	}
	w.applied("pod "+w.cfg.PodFile, err)
}

// ErrNeedsRestart is wrapped by a reload's error for changes a running pod cannot take.
var ErrNeedsRestart = errors.New("needs a restart of the pod")

// ErrPartlyApplied is wrapped by a reload's error when a module's change failed and a module
// this reload had already changed could not be put back: the pod runs part of the new file.
var ErrPartlyApplied = errors.New("reload partly applied")

// change is one module's part of a reload.
type change struct {
	m     *podspec.Module
	entry fileEntry
	wasm  []byte
	why   string
	prev  *podspec.Module // the spec it ran before
	back  []byte          // the version it ran before (the supervisor's bytes)
}

func (w *Watcher) apply() error {
	next, err := podspec.Load(w.cfg.PodFile)
	if err != nil {
		return err // validate's words, every problem with its line
	}
	w.mu.Lock()
	cur := w.pod
	w.mu.Unlock()
	if why := podLevelChange(cur, next); why != "" {
		return fmt.Errorf("%s changed: %w; nothing was applied", why, ErrNeedsRestart)
	}
	// Every file first: a reload that cannot read one applies nothing.
	var changes []change
	for i := range next.Spec.Modules {
		m := &next.Spec.Modules[i]
		file, err := next.WasmFile(m)
		if err != nil {
			return fmt.Errorf("module %q: %w; nothing was applied", m.Name, err)
		}
		wasm, err := readModule(file)
		if err != nil {
			return fmt.Errorf("module %q: %w; nothing was applied", m.Name, err)
		}
		entry := fileEntry{spec: m, sha: digest(wasm)}
		st, _ := w.sup.Status(m.Name)
		why := entryChange(w.last[m.Name], entry)
		if why == "" {
			if st.SHA256 != entry.sha {
				// Not rolled back: the file did not ask for anything new (an admin API upload).
				w.log.Info("pod reload: module left as it runs: its entry in the pod file did not change", "module", m.Name, "runs", short(st.SHA256), "fileHas", short(entry.sha))
			}
			continue
		}
		running := w.sup.ModuleSpec(m.Name)
		if sameSpec(running, m) && st.SHA256 == entry.sha {
			w.last[m.Name] = entry // it already runs this entry
			continue
		}
		// The version it runs, from the pod file or uploaded through the admin API, is what a
		// failed reload puts back.
		back, _, err := w.sup.Wasm(m.Name)
		if err != nil {
			return fmt.Errorf("module %q: %w; nothing was applied", m.Name, err)
		}
		changes = append(changes, change{m: m, entry: entry, wasm: wasm, why: why, prev: running, back: back})
	}
	var done []change
	for _, c := range changes {
		w.log.Info("pod reload: applying module", "module", c.m.Name, "why", c.why, "sha256", short(c.entry.sha))
		if err := w.sup.Reconfigure(w.ctx, c.m, c.wasm); err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", c.m.Name)) {
				err = fmt.Errorf("module %q: %w", c.m.Name, err) // the supervisor's errors name it
			}
			return w.putBack(done, err)
		}
		done = append(done, c)
	}
	for _, c := range done {
		w.last[c.m.Name] = c.entry
	}
	w.mu.Lock()
	w.pod = next
	w.mu.Unlock()
	for _, d := range w.watchedDirs(next) {
		_ = w.fsw.Add(d) // a module newly marked watch: true
	}
	w.log.Info("pod file reloaded", "file", w.cfg.PodFile, "modulesChanged", len(done))
	return nil
}

// putBack returns the modules of a failed reload that it had changed (done, in order) to the
// spec and version they ran, last changed first, and returns the reload's error: cause, and
// what was put back or could not be.
func (w *Watcher) putBack(done []change, cause error) error {
	// Not w.ctx: a Close during the put-back waits for it rather than leave the pod half-applied.
	ctx := context.WithoutCancel(w.ctx)
	var back []string
	var failed []error
	for i := len(done) - 1; i >= 0; i-- {
		c := done[i]
		if err := w.sup.Reconfigure(ctx, c.prev, c.back); err != nil {
			// It runs the new entry: the next reload compares with that.
			w.last[c.m.Name] = c.entry
			failed = append(failed, fmt.Errorf("module %q could not be put back and runs the new entry: %w", c.m.Name, err))
			continue
		}
		w.log.Info("pod reload: module put back", "module", c.m.Name)
		back = append(back, fmt.Sprintf("module %q", c.m.Name))
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w; %w: %w", cause, ErrPartlyApplied, errors.Join(failed...))
	}
	if len(back) > 0 {
		return fmt.Errorf("%w; put back to the spec and version they ran: %s", cause, strings.Join(back, ", "))
	}
	return cause
}

// entryChange says what changed in a module's pod file entry from last to e: the spec fields,
// or the content of the wasm file. "" if nothing.
func entryChange(last, e fileEntry) string {
	var why []string
	if last.spec == nil {
		why = append(why, "not applied from the pod file before")
	} else if f := changedFields(last.spec, e.spec); len(f) > 0 {
		why = append(why, "spec changed: "+strings.Join(f, ", "))
	}
	if last.sha != e.sha {
		why = append(why, fmt.Sprintf("wasm file content changed (%s -> %s)", short(last.sha), short(e.sha)))
	}
	return strings.Join(why, "; ")
}

// changedFields lists the top-level fields of a module spec that differ between a and b.
func changedFields(a, b *podspec.Module) []string {
	var ma, mb map[string]json.RawMessage
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	var out []string
	for k, v := range mb {
		if !bytes.Equal(ma[k], v) {
			out = append(out, k)
		}
	}
	for k := range ma {
		if _, ok := mb[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// podLevelChange names what changed between two pods that a running pod cannot take: the
// module set, a module's name, role or priority, or any pod-level field. "" if nothing.
func podLevelChange(a, b *podspec.Pod) string {
	var an, bn []string
	for _, m := range a.Spec.Modules {
		an = append(an, m.Name)
	}
	for _, m := range b.Spec.Modules {
		bn = append(bn, m.Name)
	}
	sort.Strings(an)
	sort.Strings(bn)
	if strings.Join(an, ",") != strings.Join(bn, ",") {
		return fmt.Sprintf("the set of modules (%s -> %s)", strings.Join(an, ","), strings.Join(bn, ","))
	}
	for i := range b.Spec.Modules {
		m := &b.Spec.Modules[i]
		if why := supervisor.RestartOnlyChange(a.Module(m.Name), m); why != "" {
			return fmt.Sprintf("module %q's %s", m.Name, why)
		}
	}
	strip := func(p *podspec.Pod) []byte {
		c := *p
		c.Spec.Modules = nil
		c.BaseDir = ""
		b, _ := json.Marshal(&c)
		return b
	}
	if !bytes.Equal(strip(a), strip(b)) {
		return "a pod-level field (metadata, volumes, restartPolicy, terminationGracePeriodSeconds, restartBackoff, scatter or pipelines)"
	}
	return ""
}

func sameSpec(a, b *podspec.Module) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
