// Command peerd is a stand-in for a wasmpod node's internal scatter endpoint, for tests and
// benchmarks until the host binary serves it: it loads one leaf module per shard (each with
// its own read-only /data mount if given) and serves them on loopback over fasthttp or
// net/http. It prints "LISTEN host:port" on stdout once it accepts connections and runs until
// SIGTERM or SIGINT.
//
//	peerd -leaf leaf.wasm -shard s0=/corpus/s0 -shard s1=/corpus/s1 [-transport nethttp]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/peerhttp"
	"github.com/wasmpod/wasmpod/runtime"
)

type shardFlags []string

func (s *shardFlags) String() string     { return strings.Join(*s, ",") }
func (s *shardFlags) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "peerd:", err)
		os.Exit(1)
	}
}

func run() error {
	var shards shardFlags
	listen := flag.String("listen", "127.0.0.1:0", "address of the internal endpoint")
	transport := flag.String("transport", "fasthttp", "fasthttp or nethttp")
	leafPath := flag.String("leaf", "", "leaf module (.wasm)")
	cacheDir := flag.String("cache", "", "compilation cache directory")
	concurrency := flag.Int("concurrency", 4, "instances per shard module")
	pages := flag.Uint("pages", 1024, "memory limit per instance, in 64 KiB pages")
	flag.Var(&shards, "shard", "name[=dir]: a shard to serve; dir is mounted read-only at /data (repeatable)")
	flag.Parse()
	if *leafPath == "" || len(shards) == 0 {
		return errors.New("need -leaf and at least one -shard")
	}
	wasm, err := os.ReadFile(*leafPath)
	if err != nil {
		return err
	}
	ctx := context.Background()
	ecfg := runtime.DefaultConfig()
	ecfg.CacheDir = *cacheDir
	eng, err := runtime.NewEngine(ctx, ecfg)
	if err != nil {
		return err
	}
	defer eng.Close(ctx)
	ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	if err != nil {
		return err
	}
	defer ep.Close()
	for _, s := range shards {
		name, dir, _ := strings.Cut(s, "=")
		cfg := runtime.DefaultModuleConfig(name)
		cfg.MaxConcurrency = *concurrency
		cfg.MaxMemoryPages = uint32(*pages)
		if dir != "" {
			cfg.Mounts = []runtime.Mount{{HostPath: dir, GuestPath: "/data", ReadOnly: true}}
		}
		m, err := eng.Load(ctx, wasm, cfg)
		if err != nil {
			return err
		}
		if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
			return err
		}
		if err := ep.Register(name, scatter.NewModuleLeaf(m)); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	var shutdown func(context.Context) error
	switch *transport {
	case "fasthttp":
		srv := peerhttp.NewServer(ep, peerhttp.DefaultConfig())
		go func() { errc <- srv.Serve(ln) }()
		shutdown = srv.Shutdown
	case "nethttp":
		srv := &http.Server{Handler: ep, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
				return
			}
			errc <- nil
		}()
		shutdown = srv.Shutdown
	default:
		ln.Close()
		return fmt.Errorf("unknown transport %q", *transport)
	}
	fmt.Printf("LISTEN %s\n", ln.Addr())
	select {
	case <-stop:
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = shutdown(sctx)
	<-errc
	return err
}
