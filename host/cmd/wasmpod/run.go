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
	"github.com/wasmpod/wasmpod/host/internal/logbuf"
	"github.com/wasmpod/wasmpod/host/internal/nodemeta"
	"github.com/wasmpod/wasmpod/host/internal/pipelines"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/scatterservice"
	"github.com/wasmpod/wasmpod/host/internal/statelock"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/host/internal/tracing"
	"github.com/wasmpod/wasmpod/host/internal/version"
	"github.com/wasmpod/wasmpod/runtime"
)

// runOptions are the flags of `wasmpod run`. The cluster flags (--node-name, --bind, --join,
// ...) are their own struct, registered by addClusterFlags.
type runOptions struct {
	listen    string
	admin     string
	stateDir  string
	tokenFile string
	logLevel  string
	logFormat string
	internal  string
	transport string
	cluster   clusterOptions
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
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the admin bearer token (else $WASMPOD_TOKEN; none disables mutating routes)")
	f.StringVar(&o.appTokenFile, "app-token-file", "", "file of the election sidecar's app credentials, one \"APP TOKEN\" a line: an app campaigns, renews and resigns with sessions APP or APP/..., and sees only their fencing tokens")
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

func readToken(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
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

	ctx := context.Background()
	ccfg, err := clusterConfig(o.cluster, o.stateDir, log)
	if err != nil {
		return err
	}
	node, err := cluster.Start(ccfg)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	log.Info("cluster node started", "node", node.Name(), "gossip", node.GossipAddr(), "join", strings.Join(ccfg.Join, ","),
		"encrypted", len(ccfg.GossipKey) > 0, "label", ccfg.ClusterLabel, "mtls", node.Secure())
	if w := node.InsecureWarning(); w != "" {
		log.Warn("WARNING: " + w)
	}
	// Tracing (OTEL_* environment; off and free without an OTLP endpoint). Flushed last, once
	// the host has stopped: the spans of the drained requests are in it.
	tp, err := tracing.FromEnv(ctx, tracing.Options{InstanceID: node.Name(), Version: version.Get().Version, Log: log})
	if err != nil {
		c, cancel := context.WithTimeout(ctx, nodeLeaveTimeout)
		node.Shutdown(c)
		cancel()
		return err
	}
	if tp != nil {
		log.Info("tracing", "endpoint", tp.Endpoint, "sampler", tp.Sampler)
		defer func() {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(c); err != nil {
				log.Warn("tracing: spans lost at shutdown", "err", err)
			}
		}()
	}
	closeNode := func() {
		c, cancel := context.WithTimeout(ctx, nodeLeaveTimeout)
		defer cancel()
		node.Shutdown(c)
	}
	lc := logbuf.DefaultConfig()
	lc.Logger = log
	scfg := supervisor.DefaultConfig()
	scfg.Pod, scfg.StateDir, scfg.Logger, scfg.Logs = pod, o.stateDir, log, logbuf.New(lc)
	// Pod plumbing (pod-local calls, outbound network for modules granted it) resolves modules
	// through the supervisor, which exists only once its engine has these imports: sup is set
	// right below, before any module runs.
	var sup *supervisor.Supervisor
	caps := capability.New(capability.Config{
		Resolve: func(name string) (*runtime.Module, error) {
			m, err := sup.Module(name)
			if errors.Is(err, supervisor.ErrNotFound) {
				err = fmt.Errorf("%w: %v", capability.ErrNoModule, err)
			}
			return m, err
		},
		Allowlist: func(name string) []string {
			// The current spec: a pod reload may have changed it.
			if m := sup.ModuleSpec(name); m != nil && m.Network != nil {
				return m.Network.Allow
			}
			return nil
		},
	})
	defer caps.Close()
	scfg.Imports = append(guestapi.Imports(guestapi.Config{Pod: pod.Metadata.Name, Elections: node}), caps.Functions()...)
	sup, err = supervisor.New(ctx, scfg)
	if err != nil {
		closeNode()
		return err
	}
	grace := pod.Spec.GracePeriod()
	closeSup := func() {
		c, cancel := context.WithTimeout(ctx, grace)
		defer cancel()
		sup.Shutdown(c)
		closeNode()
	}
	adminLn, err := net.Listen("tcp", o.admin)
	if err != nil {
		closeSup()
		return fmt.Errorf("--admin: %w", err)
	}
	ingressLn, err := net.Listen("tcp", o.listen)
	if err != nil {
		adminLn.Close()
		closeSup()
		return fmt.Errorf("--listen: %w", err)
	}
	var sc *scatterservice.Service
	if pod.Spec.Scatter != nil {
		sc, err = listenScatter(o, sup, node, log)
		if err != nil {
			adminLn.Close()
			ingressLn.Close()
			closeSup()
			return err
		}
	}
	closeScatter := func() {
		if sc != nil {
			c, cancel := context.WithTimeout(ctx, grace)
			defer cancel()
			sc.Close(c)
		}
	}
	acfg := admin.DefaultConfig()
	acfg.Token, acfg.Logger, acfg.Cluster = token, log, node
	acfg.AppTokens = appTokens
	acfg.MaxConns, acfg.MaxConnsPerIP = o.maxConns, o.maxConnsPerIP
	acfg.Queue = node
	if w := node.InsecureWarning(); w != "" {
		acfg.Warnings = append(acfg.Warnings, w)
	}
	if sc != nil {
		acfg.Scatter, acfg.ScatterPath = sc, pod.Spec.Scatter.Path
	}
	srv, err := admin.New(acfg, sup)
	if err != nil {
		adminLn.Close()
		ingressLn.Close()
		closeScatter()
		closeSup()
		return err
	}
	srv.Serve(adminLn, nil) // admin first: operators see the pod while it starts
	log.Info("admin API listening", "addr", adminLn.Addr().String(), "mutating", token != "", "apps", len(appTokens))
	var shards nodemeta.Shards // nil without a scatter service (not a nil *Service)
	if sc != nil {
		shards = sc
	}
	meta := nodemeta.Keep(node, adminLn.Addr().String(), sup, shards, metaInterval, log)
	defer meta.Stop()
	startDone := make(chan error, 1)
	go func() { startDone <- sup.Start(ctx) }()
	var sig os.Signal
	var pl *pipelines.Set
	select {
	case err := <-startDone:
		if err == nil && sc != nil {
			err = sc.Start()
		}
		if err != nil {
			ingressLn.Close()
			meta.Stop()
			c, cancel := context.WithTimeout(ctx, grace)
			srv.Shutdown(c)
			cancel()
			closeScatter()
			closeSup()
			return err
		}
	case sig = <-sigs:
	}
	var failure error // a pipeline that could not be set up: the host stops and exits non-zero
	if sig == nil {
		// The pod's pipelines: defined in the cluster (once it has a leader), then a worker pool
		// per stage on this node, running the stage modules that have just started.
		pl = pipelines.Start(node, sup, log)
		meta.Kick()
		srv.Serve(nil, ingressLn)
		log.Info("pod running", "pod", pod.Metadata.Name, "ingress", ingressLn.Addr().String())
		// The pod file (on change and on SIGHUP) and the modules marked watch: true are kept
		// in step with the running pod (hotload).
		hcfg := hotload.DefaultConfig()
		hcfg.PodFile, hcfg.Pod, hcfg.Supervisor, hcfg.Logger = specPath, pod, sup, log
		hl, err := hotload.New(hcfg)
		if err != nil {
			log.Warn("pod file and plugin watch unavailable: changes need a restart", "err", err)
		} else {
			defer hl.Close()
		}
	wait:
		for {
			select {
			case <-hup:
				if hl != nil {
					log.Info("SIGHUP: reloading the pod file", "file", specPath)
					hl.Reload()
				}
			case sig = <-sigs:
				break wait
			case <-pl.Failed():
				failure = pl.Err()
				log.Error("pipeline setup failed: stopping", "err", failure)
				break wait
			}
		}
		if hl != nil {
			hl.Close() // no reload or upgrade races the shutdown
		}
	} else {
		ingressLn.Close()
	}
	if sig != nil {
		log.Info("signal received: draining", "signal", sig.String(), "grace", grace.String())
	}
	done := make(chan error, 1)
	go func() { done <- shutdown(ctx, sup, node, meta, srv, sc, pl, grace) }()
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
// answers (503 once the node left) until the end.
func shutdown(ctx context.Context, sup *supervisor.Supervisor, node *cluster.Node, meta *nodemeta.Keeper, srv *admin.Server, sc *scatterservice.Service, pl *pipelines.Set, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	var errs []error
	plDone := make(chan error, 1)
	if pl != nil {
		go func() { plDone <- pl.Stop(ctx) }()
	} else {
		plDone <- nil
	}
	if err := sup.Drain(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := <-plDone; err != nil {
		errs = append(errs, fmt.Errorf("pipeline workers: %w", err))
	}
	if sc != nil {
		// Drained: no root request or shard call of ours is in flight, and new ones are refused
		// (other roots fail over to other replicas).
		if err := sc.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("scatter: %w", err))
		}
	}
	if err := sup.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	meta.Stop()
	nctx, ncancel := context.WithTimeout(context.WithoutCancel(ctx), nodeLeaveTimeout)
	defer ncancel()
	if err := node.Shutdown(nctx); err != nil {
		errs = append(errs, fmt.Errorf("cluster leave: %w", err))
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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
