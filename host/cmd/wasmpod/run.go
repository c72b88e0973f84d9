package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/guestapi"
	"github.com/wasmpod/wasmpod/host/internal/admin"
	"github.com/wasmpod/wasmpod/host/internal/capability"
	"github.com/wasmpod/wasmpod/host/internal/hotload"
	"github.com/wasmpod/wasmpod/host/internal/lifecycle"
	"github.com/wasmpod/wasmpod/host/internal/logbuf"
	"github.com/wasmpod/wasmpod/host/internal/nodemeta"
	"github.com/wasmpod/wasmpod/host/internal/pipelines"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/scatterservice"
	"github.com/wasmpod/wasmpod/host/internal/statelock"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/host/internal/tracing"
	"github.com/wasmpod/wasmpod/host/internal/version"
	"github.com/wasmpod/wasmpod/internal/regfile"
	"github.com/wasmpod/wasmpod/runtime"
)

// runOptions are the flags of `wasmpod run`. The cluster flags (--node-name, --bind, --join,
// ...) are their own struct, registered by addClusterFlags.
type runOptions struct {
	listen   string
	admin    string
	stateDir string
	cacheMax string
	// cacheMaxBytes is cacheMax parsed (run).
	cacheMaxBytes int64
	tokenFile     string
	logLevel      string
	logFormat     string
	internal      string
	transport     string
	cluster       clusterOptions
	// waitStateDir: wait while another process holds the state dir (else fail at once).
	waitStateDir bool
	// appTokenFile: the election sidecar's per-app credentials (admin.ParseAppTokens).
	appTokenFile string
	// maxConns, maxConnsPerIP: admin.Config's limits per listener (0: its defaults).
	maxConns, maxConnsPerIP int
}

func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "wasmpod")
	}
	return ".wasmpod-state"
}

func addRunFlags(cmd *cobra.Command, o *runOptions) {
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", ":8080", "ingress listen address (requests go to the pod's main module)")
	f.StringVar(&o.admin, "admin", "127.0.0.1:9901", "admin API listen address")
	f.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "state directory: snapshots, compilation cache, emptyDir volumes")
	f.StringVar(&o.cacheMax, "cache-max", "1Gi", "most compiled code kept in --state-dir's cache (least recently used removed first); 0: no bound")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the admin bearer token (else $WASMPOD_TOKEN; none disables mutating routes)")
	f.StringVar(&o.appTokenFile, "app-token-file", "", "file of the election sidecar's app credentials, one \"APP TOKEN\" a line: an app campaigns, renews and resigns with sessions APP or APP/..., and sees only their fencing tokens; re-read on change and on SIGHUP")
	f.IntVar(&o.maxConns, "max-conns", admin.DefaultConfig().MaxConns, "most connections per listener; past 90% of it the longest-idle keep-alive connections are closed to make room")
	f.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", admin.DefaultConfig().MaxConnsPerIP, "most connections per listener from one client address (raise it behind a proxy or NAT)")
	f.StringVar(&o.logLevel, "log-level", "info", "host log level: debug, info, warn, error")
	f.StringVar(&o.logFormat, "log-format", "text", "host log format: text or json")
	f.StringVar(&o.internal, "internal", "", "internal scatter endpoint address, where other nodes call this node's shards (pods with spec.scatter only; default: 127.0.0.1:0 standalone, else the gossip bind host with its port + 2)")
	f.BoolVar(&o.waitStateDir, "wait-for-state-dir", true, "when another wasmpod holds --state-dir, wait for it (saying so at once); false fails at once")
	f.StringVar(&o.transport, "scatter-transport", scatterservice.TransportFastHTTP, "client transport to other nodes' shards: fasthttp (pooled keep-alive) or nethttp (net/http, for comparison)")
}

func newRunCmd() *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run POD.yaml",
		Short: "Run a pod: serve its main module on --listen and the admin API on --admin",
		Long: `Run a pod: serve its main module on --listen and the admin API on --admin.

Every host is a cluster node (gossip membership plus a Raft voter for named elections). With no
cluster flag it is a cluster of one on loopback, ephemeral ports. To form a cluster, start the
first node with --bind (and --node-name), then the others with --join FIRST:PORT. Raft state is
kept under --state-dir/cluster, so fencing tokens keep growing across restarts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(args[0], o)
		},
	}
	addRunFlags(cmd, &o)
	addClusterFlags(cmd, &o.cluster)
	return cmd
}

// cacheMaxBytes parses --cache-max: a quantity such as 512Mi or 2Gi; 0 means no bound.
func cacheMaxBytes(s string) (int64, error) {
	q, err := podspec.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("--cache-max: %w", err)
	}
	if q == 0 {
		return -1, nil
	}
	return int64(q), nil
}

// maxSmallFile bounds the small files the CLI reads (a token, a CA's certificate and key): far
// above any real one, and a device or a huge file named by mistake is refused unread.
const maxSmallFile = 1 << 20

func readToken(file string) (string, error) {
	if file != "" {
		b, err := regfile.Read(file, maxSmallFile)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("token file %s is empty", file)
		}
		return t, nil
	}
	return strings.TrimSpace(os.Getenv("WASMPOD_TOKEN")), nil
}

// readAppTokens reads --app-token-file (none: no app credentials).
func readAppTokens(file string) (map[string]string, error) {
	if file == "" {
		return nil, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--app-token-file: %w", err)
	}
	defer f.Close()
	apps, err := admin.ParseAppTokens(f)
	if err != nil {
		return nil, fmt.Errorf("--app-token-file %s: %w", file, err)
	}
	return apps, nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

func run(specPath string, o runOptions) error {
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if o.cacheMaxBytes, err = cacheMaxBytes(o.cacheMax); err != nil {
		return err
	}
	token, err := readToken(o.tokenFile)
	if err != nil {
		return err
	}
	appTokens, err := readAppTokens(o.appTokenFile)
	if err != nil {
		return err
	}
	if o.maxConns < 1 || o.maxConnsPerIP < 1 {
		return fmt.Errorf("--max-conns %d, --max-conns-per-ip %d: each must be at least 1", o.maxConns, o.maxConnsPerIP)
	}
	pod, err := podspec.Load(specPath)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1) // SIGHUP reloads the pod file once it runs; never ends the host
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	lock, err := lockStateDir(o.stateDir, o.waitStateDir, log)
	if err != nil || lock == nil {
		return err
	}
	defer lock.Release()
	if err := version.StampStateDir(o.stateDir); err != nil { // refuses a format newer than this binary's
		return err
	}
	h, err := compose(pod, o, token, appTokens, log)
	if err != nil {
		return err
	}
	return h.serve(specPath, sigs, hup)
}

// podHost is a running pod host: the parts compose started, and the stack that stops them.
// Its methods run on run's goroutine.
type podHost struct {
	log   *slog.Logger
	pod   *podspec.Pod
	grace time.Duration
	parts lifecycle.Stack // every part started, stopped in reverse on failure and at the end

	node      *cluster.Node
	sup       *supervisor.Supervisor
	sc        *scatterservice.Service // nil: the pod has no spec.scatter
	srv       *admin.Server
	meta      *nodemeta.Keeper
	ingressLn net.Listener
	pl        *pipelines.Set // nil until the pod has started

	appTokenFile string // --app-token-file, re-read on SIGHUP ("" when none)
}

// compose builds the host from its parts, each registering its stop on h.parts as soon as it
// has started: the cluster node, the pod's plumbing and supervisor, the listeners, the scatter
// service and the admin server, which serves the admin API at once (operators see the pod while
// it starts), and the node metadata keeper. The pod itself starts in serve. On error every
// part started so far is stopped, the last first, and nothing is left running.
func compose(pod *podspec.Pod, o runOptions, token string, appTokens map[string]string, log *slog.Logger) (_ *podHost, err error) {
	h := &podHost{log: log, pod: pod, grace: pod.Spec.GracePeriod(), appTokenFile: o.appTokenFile}
	defer func() {
		if err != nil {
			h.parts.Stop(context.Background())
		}
	}()
	// Pod plumbing (pod-local calls, outbound network for modules granted it) resolves modules
	// through the supervisor, which is built with the plumbing's host functions: it is bound
	// to the supervisor once that exists, before any module runs (podModules).
	mods := &podModules{}
	caps := capability.New(capability.Config{Resolve: mods.resolve, Allowlist: mods.allowlist})
	h.parts.PushFunc("pod plumbing", func() { caps.Close() })

	ccfg, err := clusterConfig(o.cluster, o.stateDir, log)
	if err != nil {
		return nil, err
	}
	if h.node, err = cluster.Start(ccfg); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	h.parts.Push("cluster node", h.leave)
	log.Info("cluster node started", "node", h.node.Name(), "gossip", h.node.GossipAddr(), "join", strings.Join(ccfg.Join, ","),
		"encrypted", len(ccfg.GossipKey) > 0, "label", ccfg.ClusterLabel, "mtls", h.node.Secure())
	if w := h.node.InsecureWarning(); w != "" {
		log.Warn("WARNING: " + w)
	}
	// Tracing (OTEL_* environment; off and free without an OTLP endpoint). Its stop flushes the
	// spans; it runs after every part started later, so the drained requests' spans are in it.
	tp, err := tracing.FromEnv(context.Background(), tracing.Options{InstanceID: h.node.Name(), Version: version.Get().Version, Log: log})
	if err != nil {
		return nil, err
	}
	if tp != nil {
		log.Info("tracing", "endpoint", tp.Endpoint, "sampler", tp.Sampler)
		h.parts.Push("tracing", func(context.Context) error {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := tp.Shutdown(c)
			if err != nil {
				log.Warn("tracing: spans lost at shutdown", "err", err)
			}
			return err
		})
	}
	lc := logbuf.DefaultConfig()
	lc.Logger = log
	scfg := supervisor.DefaultConfig()
	scfg.Pod, scfg.StateDir, scfg.Logger, scfg.Logs = pod, o.stateDir, log, logbuf.New(lc)
	scfg.CacheMaxBytes = o.cacheMaxBytes
	scfg.Imports = append(guestapi.Imports(guestapi.Config{Pod: pod.Metadata.Name, Elections: h.node.Elections()}), caps.Functions()...)
	if h.sup, err = supervisor.New(context.Background(), scfg); err != nil {
		return nil, err
	}
	mods.bind(h.sup)
	h.parts.Push("supervisor", h.withGrace(h.sup.Shutdown))

	adminLn, err := net.Listen("tcp", o.admin)
	if err != nil {
		return nil, fmt.Errorf("--admin: %w", err)
	}
	h.parts.PushFunc("admin listener", func() { adminLn.Close() })
	if h.ingressLn, err = net.Listen("tcp", o.listen); err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	h.parts.PushFunc("ingress listener", func() { h.ingressLn.Close() })
	if pod.Spec.Scatter != nil {
		if h.sc, err = listenScatter(o, h.sup, h.node, log); err != nil {
			return nil, err
		}
		h.parts.Push("scatter service", h.withGrace(h.sc.Close))
	}

	acfg := admin.DefaultConfig()
	acfg.Token, acfg.Logger, acfg.Cluster = token, log, clusterAPI{h.node, h.node.Elections()}
	acfg.AppTokens = appTokens
	acfg.MaxConns, acfg.MaxConnsPerIP = o.maxConns, o.maxConnsPerIP
	acfg.Queue = h.node.Queue()
	if w := h.node.InsecureWarning(); w != "" {
		acfg.Warnings = append(acfg.Warnings, w)
	}
	if h.sc != nil {
		acfg.Scatter, acfg.ScatterPath = h.sc, pod.Spec.Scatter.Path
	}
	if h.srv, err = admin.New(acfg, h.sup); err != nil {
		return nil, err
	}
	h.parts.Push("admin server", h.withGrace(h.srv.Shutdown))
	h.srv.Serve(adminLn, nil) // admin first: operators see the pod while it starts
	log.Info("admin API listening", "addr", adminLn.Addr().String(), "mutating", token != "", "apps", len(appTokens))
	if o.appTokenFile != "" { // re-read on change and on SIGHUP; a bad file keeps the tokens in force
		if err := h.srv.WatchAppTokens(o.appTokenFile); err != nil {
			log.Warn("app token file watch unavailable: changes need SIGHUP", "err", err)
		}
	}
	var shards nodemeta.Shards // nil without a scatter service (not a nil *Service)
	if h.sc != nil {
		shards = h.sc
	}
	h.meta = nodemeta.Keep(h.node, adminLn.Addr().String(), h.sup, shards, metaInterval, log)
	h.parts.PushFunc("node metadata", h.meta.Stop)
	return h, nil
}

// withGrace adapts a Shutdown or Close to a stop bounded by the pod's grace period.
func (h *podHost) withGrace(stop func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		c, cancel := context.WithTimeout(ctx, h.grace)
		defer cancel()
		return stop(c)
	}
}

// leave shuts the cluster node down (a graceful leave), bounded by nodeLeaveTimeout on top of
// whatever ctx had left.
func (h *podHost) leave(ctx context.Context) error {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), nodeLeaveTimeout)
	defer cancel()
	return h.node.Shutdown(c)
}

// serve starts the pod, then its scatter service, pipelines, ingress and hotload, and runs
// until SIGTERM or SIGINT (or a pipeline whose setup failed), reloading the pod file on SIGHUP;
// then it shuts the host down within the grace period. A second signal during the shutdown
// returns exit code 2 at once: the process exits without waiting for the parts.
func (h *podHost) serve(specPath string, sigs, hup <-chan os.Signal) error {
	log := h.log
	// Owned by serve: it returns once sup.Start does, which the shutdown ends if a signal
	// comes first (the channel is buffered, so nothing waits for a reader).
	startDone := make(chan error, 1)
	go func() { startDone <- h.sup.Start(context.Background()) }()
	var sig os.Signal
	select {
	case err := <-startDone:
		if err == nil && h.sc != nil {
			err = h.sc.Start()
		}
		if err != nil {
			h.parts.Stop(context.Background())
			return err
		}
	case sig = <-sigs:
	}
	var failure error // a pipeline that could not be set up: the host stops and exits non-zero
	if sig == nil {
		// The pod's pipelines: defined in the cluster (once it has a leader), then a worker pool
		// per stage on this node, running the stage modules that have just started.
		h.pl = pipelines.Start(h.node.Queue(), h.sup, log)
		h.meta.Kick()
		h.srv.Serve(nil, h.ingressLn)
		log.Info("pod running", "pod", h.pod.Metadata.Name, "ingress", h.ingressLn.Addr().String())
		// The pod file (on change and on SIGHUP) and the modules marked watch: true are kept
		// in step with the running pod (hotload).
		hcfg := hotload.DefaultConfig()
		hcfg.PodFile, hcfg.Pod, hcfg.Supervisor, hcfg.Logger = specPath, h.pod, h.sup, log
		hl, err := hotload.New(hcfg)
		if err != nil {
			log.Warn("pod file and plugin watch unavailable: changes need a restart", "err", err)
		}
	wait:
		for {
			select {
			case <-hup:
				if hl != nil {
					log.Info("SIGHUP: reloading the pod file", "file", specPath)
					hl.Reload()
				}
				if h.appTokenFile != "" {
					if err := h.srv.ReloadAppTokens(h.appTokenFile); err != nil {
						log.Error("SIGHUP: app token file refused; the previous app tokens stay", "err", err)
					}
				}
			case sig = <-sigs:
				break wait
			case <-h.pl.Failed():
				failure = h.pl.Err()
				log.Error("pipeline setup failed: stopping", "err", failure)
				break wait
			}
		}
		if hl != nil {
			hl.Close() // no reload or upgrade races the shutdown
		}
	} else {
		h.ingressLn.Close()
	}
	if sig != nil {
		log.Info("signal received: draining", "signal", sig.String(), "grace", h.grace.String())
	}
	// Owned by serve, which waits for it unless a second signal forces the exit.
	done := make(chan error, 1)
	go func() { done <- h.shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			log.Warn("shutdown finished with errors", "err", err)
		}
		if failure != nil {
			return failure
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return exitError{1}
		}
		log.Info("stopped")
		return nil
	case sig := <-sigs:
		log.Error("second signal: forcing exit", "signal", sig.String())
		return exitError{2}
	}
}

// lockStateDir takes the state dir's lock (statelock). While another process holds it, it
// says so at once ("state dir X is in use by pid N; waiting") and waits, or with wait false
// fails with that; SIGTERM or SIGINT while waiting ends the wait, and run with it (nil lock,
// nil error).
func lockStateDir(dir string, wait bool, log *slog.Logger) (*statelock.Lock, error) {
	wsig := make(chan os.Signal, 1)
	signal.Notify(wsig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(wsig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abs := dir
	if a, err := filepath.Abs(dir); err == nil {
		abs = a
	}
	var holder int
	done := make(chan struct{})
	defer close(done)
	var sig atomic.Value
	go func() {
		select {
		case s := <-wsig:
			sig.Store(s)
			cancel()
		case <-done:
		}
	}()
	lock, err := statelock.Acquire(ctx, dir, func(pid int) {
		holder = pid
		if !wait {
			cancel()
			return
		}
		log.Warn(fmt.Sprintf("state dir %s is in use by pid %d; waiting", abs, pid))
	})
	switch {
	case err == nil:
		return lock, nil
	case sig.Load() != nil:
		log.Info("signal received while waiting for the state dir: exiting", "signal", sig.Load().(os.Signal).String())
		return nil, nil
	case errors.Is(err, statelock.ErrInUse):
		return nil, fmt.Errorf("state dir %s is in use by pid %d (--wait-for-state-dir=false)", abs, holder)
	}
	return nil, err
}

// listenScatter opens the internal endpoint's listener (--internal) and prepares the pod's
// scatter service; it advertises the listener's address as other nodes should dial it.
func listenScatter(o runOptions, sup *supervisor.Supervisor, node *cluster.Node, log *slog.Logger) (*scatterservice.Service, error) {
	addr := o.internal
	if addr == "" {
		var err error
		if addr, err = internalListenAddr(o.cluster); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--internal: %w", err)
	}
	// Only members get past the internal endpoint's handshake (mutual TLS of the cluster).
	sc, err := scatterservice.New(sup, node, node.SecureListener(ln), scatterservice.AdvertiseAddr(ln.Addr(), node.GossipAddr()), o.transport, log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return sc, nil
}

// Timings of the cluster node's part in `run`.
const (
	// nodeLeaveTimeout bounds a graceful leave (voter removal + gossip leave): a few Raft
	// commits and one gossip broadcast, on top of the pod's grace period.
	nodeLeaveTimeout = 5 * time.Second
	// metaInterval is how often the advertised metadata are compared with what the pod runs.
	metaInterval = 2 * time.Second
)

// shutdown drains in-flight calls (new ones get 503) while the pipelines' workers stop taking
// tasks and finish their deliveries, then stops the modules in stop order with snapshots, then
// leaves the cluster, then closes the listeners. The workers stop before the modules, so no
// delivery is cut by its module going away (past the grace period they are cut, and their tasks
// redelivered after their leases). The node leaves after the modules stopped, so a module can
// still resign its leases in its stop hook; the admin API closes last, so apps on the node get
// answers (503 once the node left) until the end. This order is not the reverse of the start
// order (the admin server starts after the node and stops after it), so it is spelled out
// here; every stop is idempotent, and the stack then stops whatever is left (the plumbing).
func (h *podHost) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), h.grace)
	defer cancel()
	var errs []error
	plDone := make(chan error, 1)
	if h.pl != nil {
		go func() { plDone <- h.pl.Stop(ctx) }()
	} else {
		plDone <- nil
	}
	if err := h.sup.Drain(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := <-plDone; err != nil {
		errs = append(errs, fmt.Errorf("pipeline workers: %w", err))
	}
	if h.sc != nil {
		// Drained: no root request or shard call of ours is in flight, and new ones are refused
		// (other roots fail over to other replicas).
		if err := h.sc.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("scatter: %w", err))
		}
	}
	if err := h.sup.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	h.meta.Stop()
	if err := h.leave(ctx); err != nil {
		errs = append(errs, fmt.Errorf("cluster leave: %w", err))
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	if err := h.srv.Shutdown(sctx); err != nil {
		errs = append(errs, err)
	}
	h.parts.Stop(ctx) // all stopped above but the plumbing and the listeners (closed already)
	return errors.Join(errs...)
}

// podModules resolves module names for the pod plumbing (package capability) through the
// supervisor. The supervisor is built with the plumbing's host functions, so it exists only
// after them: bind sets it once it does, before any module runs. Safe for concurrent use.
type podModules struct {
	sup atomic.Pointer[supervisor.Supervisor]
}

func (p *podModules) bind(sup *supervisor.Supervisor) { p.sup.Store(sup) }

func (p *podModules) resolve(name string) (*runtime.Module, error) {
	sup := p.sup.Load()
	if sup == nil {
		return nil, fmt.Errorf("%w: %q: the pod has not started", capability.ErrNoModule, name)
	}
	m, err := sup.Module(name)
	if errors.Is(err, supervisor.ErrNotFound) {
		err = fmt.Errorf("%w: %v", capability.ErrNoModule, err)
	}
	return m, err
}

// allowlist is the outbound network allowlist of module name in the current spec (a pod reload
// may have changed it).
func (p *podModules) allowlist(name string) []string {
	if sup := p.sup.Load(); sup != nil {
		if m := sup.ModuleSpec(name); m != nil && m.Network != nil {
			return m.Network.Allow
		}
	}
	return nil
}

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate POD.yaml",
		Short: "Check a pod spec (fields, files, digests) without running it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pod, err := podspec.Load(args[0])
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pod %q is valid: %d module(s)\n", pod.Metadata.Name, len(pod.Spec.Modules))
			return nil
		},
	}
}
