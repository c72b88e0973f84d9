// Package hotload keeps a running pod in step with its files: it watches (fsnotify) the modules
// marked watch: true, a plugin file or a directory of them, and the pod file itself.
//
// A new or changed .wasm file is taken once it is complete: no write to it for Settle, the same
// size and modification time before and after it was read, a whole WebAssembly module that
// plays the module's part (podspec's CheckWasm: the ABI and the role's export or Extism
// function, validate's rules), and, when NAME.wasm.sha256 sits beside it, the digest that file
// names. Then it goes through the supervisor's upgrade path: loaded, warmed, probed and switched
// in, or rolled back when it never gets ready. A deleted plugin file leaves the running version
// in place (and says so). Writers should write to a name that is not NAME.wasm (a dot file, or
// NAME.wasm.part) and rename it into place, or write NAME.wasm.sha256 after NAME.wasm.
//
// A change of the pod file (or Reload, on SIGHUP) is validated like `wasmpod validate`; a bad
// file is refused with those errors and the pod keeps running as it was. A good one is applied
// module by module: only modules whose spec or file changed are reconfigured (Reconfigure, the
// upgrade path again). What a running pod cannot change (modules added, removed or renamed, a
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
	pod     *podspec.Pod
	pending map[string]time.Time // path -> last event

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
		pod: cfg.Pod, pending: map[string]time.Time{}, done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	dirs := map[string]bool{}
	if cfg.PodFile != "" {
		abs, err := filepath.Abs(cfg.PodFile)
		if err != nil {
			fsw.Close()
			return nil, err
		}
		w.cfg.PodFile = abs
		dirs[filepath.Dir(abs)] = true
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
			w.reloadPod("SIGHUP")
		case now := <-tick.C:
			w.settled(now)
		}
	}
}

// event records a change; it is acted on once the file has settled.
func (w *Watcher) event(ev fsnotify.Event) {
	name := ev.Name
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
	if name != w.cfg.PodFile && w.moduleFor(name) == nil {
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
			w.reloadPod("file changed")
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
	w.mu.Lock()
	delete(w.pending, path)
	w.mu.Unlock()
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

// ErrIncomplete: the file is still being written, or its checksum file does not match it yet.
var ErrIncomplete = errors.New("file not complete")

// readComplete reads a plugin file that is complete: unchanged while it was read and, when
// NAME.wasm.sha256 exists, matching it.
func readComplete(path string) ([]byte, error) {
	before, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
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
	sum, err := os.ReadFile(path + ".sha256")
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
	if err != nil {
		if errors.Is(err, ErrIncomplete) {
			w.log.Info("plugin file not complete yet: waiting", "module", m.Name, "file", path, "why", err)
		} else if !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("plugin file unreadable", "module", m.Name, "file", path, "err", err)
		}
		return
	}
	sum := sha256.Sum256(wasm)
	sha := hex.EncodeToString(sum[:])
	if st, err := w.sup.Status(m.Name); err == nil && st.SHA256 == sha {
		return // the version it runs (an unchanged file touched, or its checksum file)
	}
	if err := m.CheckWasm(wasm); err != nil {
		// A truncated module does not decode, so a half-written file ends here too.
		err = fmt.Errorf("%s: %w", path, err)
		w.log.Warn("new plugin file refused: the module keeps its current version", "module", m.Name, "err", err)
		w.applied("plugin "+path, err)
		return
	}
	start := time.Now()
	err = w.sup.Upgrade(w.ctx, m.Name, wasm)
	if err != nil {
		w.log.Warn("new plugin version not switched in: the module keeps its current version", "module", m.Name, "file", path, "err", err)
	} else {
		w.log.Info("new plugin version serving", "module", m.Name, "file", path, "sha256", sha, "took", time.Since(start).Round(time.Millisecond).String())
	}
	w.applied("plugin "+path, err)
}

// reloadPod re-reads the pod file and applies what changed.
func (w *Watcher) reloadPod(why string) {
	if w.cfg.PodFile == "" {
		return
	}
	err := w.apply()
	if err != nil {
		w.log.Error("pod file reload refused: the pod keeps running as it was", "why", why, "file", w.cfg.PodFile, "err", err)
	}
	w.applied("pod "+w.cfg.PodFile, err)
}

// ErrNeedsRestart is wrapped by a reload's error for changes a running pod cannot take.
var ErrNeedsRestart = errors.New("needs a restart of the pod")

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
	var errs []error
	changed := 0
	for i := range next.Spec.Modules {
		m := &next.Spec.Modules[i]
		running := w.sup.ModuleSpec(m.Name)
		file, err := next.WasmFile(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("module %q: %w", m.Name, err))
			continue
		}
		wasm, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("module %q: %w", m.Name, err))
			continue
		}
		sum := sha256.Sum256(wasm)
		st, _ := w.sup.Status(m.Name)
		if sameSpec(running, m) && st.SHA256 == hex.EncodeToString(sum[:]) {
			continue
		}
		changed++
		if err := w.sup.Reconfigure(w.ctx, m, wasm); err != nil {
			errs = append(errs, err)
			continue
		}
		w.log.Info("pod reload: module reconfigured", "module", m.Name, "sha256", hex.EncodeToString(sum[:]))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	w.mu.Lock()
	w.pod = next
	w.mu.Unlock()
	for _, d := range w.watchedDirs(next) {
		_ = w.fsw.Add(d) // a module newly marked watch: true
	}
	w.log.Info("pod file reloaded", "file", w.cfg.PodFile, "modulesChanged", changed)
	return nil
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
