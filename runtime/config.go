package runtime

import (
	"context"
	"fmt"
	"time"
)

// Config configures an [Engine]. Start from [DefaultConfig].
type Config struct {
	// CacheDir is where compiled machine code is kept between runs, so a second start of the
	// same module compiles nothing. Empty keeps compiled code in memory only.
	CacheDir string

	// CacheMaxBytes bounds CacheDir: when its entries hold more, the least recently used are
	// removed (a later load of their module compiles it again), when the engine starts and at
	// most once a minute after a compile. 0 means the default; negative, no bound.
	CacheMaxBytes int64

	// Logs receives guest log lines (the log import, stdout and stderr). Nil discards them.
	Logs LogSink

	// Events receives every lifecycle transition of every module of this engine. Nil drops them.
	// It is called synchronously and must not block or call back into the module.
	Events func(Event)

	// MaxOutputBytes bounds a call's output; a larger output fails the call with ErrOutput.
	MaxOutputBytes uint32

	// MaxInputBytes bounds a call's input (after framing); a larger input fails with ErrInput.
	MaxInputBytes uint32

	// Imports are extra host functions in the "wasmpod" import namespace, for layers above the
	// runtime (for example pod-local calls). Names must not clash with the ABI's own imports.
	Imports []HostFunction

	// CompileBudget bounds what compiling one untrusted module may cost (see [CompileBudget]);
	// the zero value means DefaultCompileBudget().
	CompileBudget CompileBudget

	// DisableImages turns instance images off: every instance is then initialised by running
	// the module's initialisation (_initialize) again. Images are on by default because they
	// are exact and make an instance some 10-100x cheaper to create; turn them off to rule them
	// out when debugging a guest's initialisation, or to save the second compilation at load.
	// Module.Info().Image says whether a module has one, and if not, why.
	DisableImages bool
}

// DefaultConfig returns the configuration the wasmpod host uses.
func DefaultConfig() Config {
	return Config{
		// No cache dir: a library user opts in to writing to disk; the host sets its state dir.
		CacheDir: "",
		// 1 GiB: some 60 versions of a Go guest (15-18 MB of machine code each), a few hundred
		// of a C or Rust one; months of upgrades without filling a disk.
		CacheMaxBytes: 1 << 30,
		// 16 MiB: far above any leaf/merge result, small enough that a runaway guest cannot make
		// the host copy gigabytes.
		MaxOutputBytes: 16 << 20,
		// 64 MiB: the largest input the host ever frames (an HTTP body is capped well below it).
		MaxInputBytes: 64 << 20,
	}
}

// ModuleConfig configures one loaded module. Start from [DefaultModuleConfig].
type ModuleConfig struct {
	// Name identifies the module in errors, logs, events and statistics. Required.
	Name string

	// SHA256, if set (64 hex digits), must match the module bytes or loading fails with ErrChecksum.
	SHA256 string

	// MaxMemoryPages is the most 64 KiB pages one instance may use. A module that declares more
	// is refused at load; memory.grow past it returns -1 to the guest.
	MaxMemoryPages uint32

	// CallTimeout is the deadline of every call that has no earlier deadline of its own.
	CallTimeout time.Duration

	// MaxConcurrency is the most calls in flight at once, which is also the most instances.
	MaxConcurrency int

	// MinInstances is how many instances are kept warm while the module runs.
	MinInstances int

	// QueueTimeout is how long a call waits for a free instance before failing with ErrOverloaded.
	QueueTimeout time.Duration

	// StopGrace is how long Stop lets in-flight calls finish when the caller gives no grace.
	StopGrace time.Duration

	// Trusted modules run without the termination guard: calls are cheaper, but a runaway call
	// cannot be cut (its deadline is only checked after it returns). Use only for code you trust.
	Trusted bool

	// AllowScale lets the guest resize its warm pool through the scale import, within
	// [ScaleMin, ScaleMax].
	AllowScale bool

	// ScaleMin and ScaleMax bound the warm pool size the guest may ask for; zero means
	// max(MinInstances, 1) and MaxConcurrency.
	ScaleMin, ScaleMax int

	// Yield, if set, is called from a guarded guest's loop checks about every YieldInterval loop
	// iterations, on the calling goroutine, with the call's context. A host scheduler may block
	// in it to give the CPU to more important work (a low-priority module scavenging spare
	// CPU); it must return once cut is closed, which happens when the call is cut (deadline or
	// stop). Not called for trusted or Extism modules.
	Yield func(ctx context.Context, cut <-chan struct{})

	// YieldInterval is the number of loop iterations between two yields; 0 means 32768. Lower
	// values make a Yield scheduler more responsive at a small cost per iteration.
	YieldInterval int32

	// Config is the map the guest reads with the config_get import.
	Config map[string]string

	// Env is the environment the guest sees through WASI. Empty by default (sandboxed).
	Env map[string]string

	// Mounts are the host directories the guest sees through WASI. None by default (sandboxed).
	// For Extism modules they are the manifest's allowed paths.
	Mounts []Mount

	// ABI is the calling convention of the module: ABINative (the default), ABIExtism, or
	// ABIAuto to detect it from the module (see DetectABI).
	ABI ABI

	// ExtismFunctions maps a role to the Extism function that serves it, for Extism modules. A
	// role not in the map is served by the function named like the role (handle, leaf, merge,
	// http, stage). Every role is bytes in, bytes out; merge parts are framed as for native
	// modules (guest-sdk/ABI.md section 2.1), and so are HTTP requests and responses (2.2).
	ExtismFunctions map[Role]string

	// AllowedHosts are the hosts an Extism module may reach with Extism's http_request, each a
	// host name ("api.example.com"), a wildcard for its subdomains ("*.example.com"), an IPv4
	// address or a bracketed IPv6 address, optionally with ":port" (without a port any port is
	// allowed). Empty denies every request. Every redirect is checked against the same list.
	// Native modules have no network access of their own; the list does not apply to them.
	AllowedHosts []string

	// MaxVarBytes bounds the Extism vars (var_get/var_set) one instance may hold, names and
	// values together; a var_set past it fails the call. 0 disables vars (var_set fails, as in
	// Extism). Vars live in an instance: each warm instance has its own, and they are lost when
	// the instance is replaced (trap, deadline, restart, upgrade). Extism modules only.
	MaxVarBytes int64

	// LogLinesPerSecond and LogLineBurst bound the rate of the module's log lines: a token bucket
	// of LogLineBurst lines refilled at LogLinesPerSecond. LogBytesPerSecond and LogByteBurst do
	// the same for their bytes (a line counts at most 8 KiB, the longest line kept). The limit is
	// the module's, whatever instance or source a line comes from (the log import, stdout,
	// stderr, Extism's log_*, and the runtime's own lines about the module). A line over it is
	// dropped, not waited for, and counted (Module.LogsDropped); the next line admitted is
	// preceded by one runtime line (level warn) saying how many lines and bytes were dropped
	// (at most one such line a second; it is not charged to the module).
	// 0 means the default; a negative rate turns that bucket off (no limit).
	LogLinesPerSecond int
	LogLineBurst      int
	LogBytesPerSecond int64
	// LogByteBurst, when set, must be at least 8 KiB, so that the longest line can be logged.
	LogByteBurst int64

	fixed fixedCost // measured at load: what an instance holds besides linear memory
}

// Mount grants a guest access to one host directory.
type Mount struct {
	HostPath  string // directory on the host
	GuestPath string // where the guest sees it, e.g. "/data"
	ReadOnly  bool
	// SizeLimit, when positive, is the most bytes the directory may hold (files' sizes added up);
	// a guest write past it fails (EIO: wazero's WASI has no ENOSPC). Every mount of the same directory shares it.
	// Native modules only: an Extism module's mounts go through Extism's manifest.
	SizeLimit int64
}

// DefaultModuleConfig returns a sandboxed, guarded configuration for the named module.
func DefaultModuleConfig(name string) ModuleConfig {
	return ModuleConfig{
		Name: name,
		// 256 pages = 16 MiB: enough for a Go guest (~2 MB code, a few MB heap), small enough to
		// run hundreds of instances on one host.
		MaxMemoryPages: 256,
		// 5 s: every call has a deadline; long enough for real work, short enough that a stuck
		// guest is noticed within one scrape interval.
		CallTimeout: 5 * time.Second,
		// 4: a small pool keeps idle memory low; raise it for modules on the hot path.
		MaxConcurrency: 4,
		// 1: one warm instance means the first call never pays instantiation.
		MinInstances: 1,
		// 1 s: long enough to ride out a burst, short enough to shed load instead of queueing.
		QueueTimeout: time.Second,
		// 30 s: Kubernetes' terminationGracePeriodSeconds default.
		StopGrace: 30 * time.Second,
		// 1 MiB: Extism's own default, so plugins that keep a counter or a cache in vars run
		// unchanged; small next to the instance's memory.
		MaxVarBytes: 1 << 20,
		// 1,000 lines/s: one line per call at hundreds of calls a second, far more than a
		// healthy module says, far less than the million a second a looping guest sends.
		LogLinesPerSecond: 1000,
		// 10,000 lines: journald's RateLimitBurst; a start-up or a crash's stack dump fits whole.
		LogLineBurst: 10_000,
		// 1 MiB/s: a hundred modules at their limit write 100 MiB/s, what a disk can take for
		// the minutes an operator needs to notice; lines of 1 KiB at the line rate fit.
		LogBytesPerSecond: 1 << 20,
		// 10 MiB: the line burst's ten seconds at the byte rate (10,000 lines of 1 KiB).
		LogByteBurst: 10 << 20,
	}
}

func (c *ModuleConfig) validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: module config: name is required", ErrInvalidModule)
	case c.MaxMemoryPages == 0 || c.MaxMemoryPages > 65536:
		return fmt.Errorf("%w: module %q: MaxMemoryPages %d out of range 1..65536", ErrInvalidModule, c.Name, c.MaxMemoryPages)
	case c.CallTimeout <= 0:
		return fmt.Errorf("%w: module %q: CallTimeout must be positive (every call has a deadline)", ErrInvalidModule, c.Name)
	case c.MaxConcurrency <= 0:
		return fmt.Errorf("%w: module %q: MaxConcurrency must be at least 1", ErrInvalidModule, c.Name)
	case c.MinInstances < 0 || c.MinInstances > c.MaxConcurrency:
		return fmt.Errorf("%w: module %q: MinInstances %d out of range 0..MaxConcurrency (%d)", ErrInvalidModule, c.Name, c.MinInstances, c.MaxConcurrency)
	case c.QueueTimeout < 0:
		return fmt.Errorf("%w: module %q: QueueTimeout must not be negative", ErrInvalidModule, c.Name)
	case c.StopGrace < 0:
		return fmt.Errorf("%w: module %q: StopGrace must not be negative", ErrInvalidModule, c.Name)
	case c.YieldInterval < 0:
		return fmt.Errorf("%w: module %q: YieldInterval must not be negative", ErrInvalidModule, c.Name)
	case c.MaxVarBytes < 0:
		return fmt.Errorf("%w: module %q: MaxVarBytes must not be negative", ErrInvalidModule, c.Name)
	case c.ScaleMin < 0 || c.ScaleMax < 0 || c.ScaleMax > c.MaxConcurrency || (c.ScaleMax > 0 && c.ScaleMin > c.ScaleMax):
		return fmt.Errorf("%w: module %q: scale bounds [%d, %d] must lie within [0, MaxConcurrency=%d] with min <= max", ErrInvalidModule, c.Name, c.ScaleMin, c.ScaleMax, c.MaxConcurrency)
	}
	if err := validLogBursts("module", c.Name, c.LogLineBurst, c.LogByteBurst); err != nil {
		return err
	}
	for _, m := range c.Mounts {
		if m.HostPath == "" || m.GuestPath == "" {
			return fmt.Errorf("%w: module %q: mount needs both a host and a guest path", ErrInvalidModule, c.Name)
		}
	}
	switch c.ABI {
	case ABINative, ABIExtism, ABIAuto:
	default:
		return fmt.Errorf("%w: module %q: unknown ABI %d", ErrInvalidModule, c.Name, int(c.ABI))
	}
	for r, fn := range c.ExtismFunctions {
		if r < 0 || r >= numRoles || fn == "" {
			return fmt.Errorf("%w: module %q: Extism function mapping %s -> %q: want a known role and a function name", ErrInvalidModule, c.Name, r, fn)
		}
	}
	for _, h := range c.AllowedHosts {
		if _, err := parseHostPattern(h); err != nil {
			return fmt.Errorf("%w: module %q: allowed host %q: %v", ErrInvalidModule, c.Name, h, err)
		}
	}
	return nil
}

// validLogBursts checks a module's or command's (kind) log-limit bursts: neither negative, and
// a byte burst that is set holds the longest log line.
func validLogBursts(kind, name string, lineBurst int, byteBurst int64) error {
	switch {
	case lineBurst < 0 || byteBurst < 0:
		return fmt.Errorf("%w: %s %q: LogLineBurst and LogByteBurst must not be negative", ErrInvalidModule, kind, name)
	case byteBurst > 0 && byteBurst < maxLogLine:
		return fmt.Errorf("%w: %s %q: LogByteBurst %d is less than the longest log line (%d bytes)", ErrInvalidModule, kind, name, byteBurst, maxLogLine)
	}
	return nil
}
