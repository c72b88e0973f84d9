// Command node is the test binary for the multi-process cluster tests: one
// wasmpod cluster node with a tiny control API, an optional app loop that
// campaigns for a lease and writes to a fenced store, or (with -store) the
// fenced store itself. Every event goes to stdout as one JSON line, for the
// history checker.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/peerhttp"
)

// Event is one line of history.
type Event struct {
	T      int64  `json:"t"` // unix nanoseconds
	Node   string `json:"node"`
	Ev     string `json:"ev"`
	Lease  string `json:"lease,omitempty"`
	Token  uint64 `json:"token,omitempty"`
	Expiry int64  `json:"expiry,omitempty"` // unix nanoseconds, holder's local deadline
	Writer string `json:"writer,omitempty"`
	Err    string `json:"err,omitempty"`
}

var (
	outMu sync.Mutex
	enc   = json.NewEncoder(os.Stdout)
)

func emit(e Event) {
	if e.T == 0 {
		e.T = time.Now().UnixNano()
	}
	outMu.Lock()
	_ = enc.Encode(e)
	outMu.Unlock()
}

func main() {
	var (
		name      = flag.String("name", "", "node name")
		bind      = flag.String("bind", "", "gossip address ip:port")
		join      = flag.String("join", "", "comma-separated gossip addresses")
		keyFile   = flag.String("gossip-key-file", "", "gossip key file")
		label     = flag.String("label", "", "cluster label")
		stateDir  = flag.String("state-dir", "", "state dir")
		httpAddr  = flag.String("http", "", "control API address")
		lease     = flag.String("lease", "", "app loop: campaign for this lease")
		store     = flag.String("store", "", "app loop: fenced store URL")
		storeMode = flag.Bool("store-mode", false, "run the fenced store instead of a node")
		noCheck   = flag.Bool("write-without-expiry-check", false, "app writes whenever it believes it holds the lease, even past its deadline (exercises fencing)")
		verbose   = flag.Bool("v", false, "memberlist and raft logs to stderr")
		loss      = flag.Float64("gossip-loss", 0, "userspace fault injection: drop this fraction of outgoing gossip packets (when tc netem is missing)")
		delay     = flag.Duration("gossip-delay", 0, "userspace fault injection: delay gossip packets and dials by this mean, jitter +-half")
		tlsCA     = flag.String("tls-ca", "", "cluster CA certificate (PEM)")
		tlsCert   = flag.String("tls-cert", "", "node certificate (PEM)")
		tlsKey    = flag.String("tls-key", "", "node key (PEM)")
		insecure  = flag.Bool("insecure-cluster", false, "no key and no certificates: plain TCP between nodes")
		scatterAt = flag.String("scatter", "", "serve a scatter endpoint (shard \"secret\", answering the node name) on this address, behind the cluster's mutual TLS")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *storeMode {
		runStore(ctx, *httpAddr)
		return
	}
	cfg := cluster.DefaultConfig()
	cfg.NodeName = *name
	cfg.BindAddr = *bind
	if *join != "" {
		cfg.Join = strings.Split(*join, ",")
	}
	cfg.ClusterLabel = *label
	cfg.StateDir = *stateDir
	if *keyFile != "" {
		k, err := cluster.LoadGossipKey(*keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		cfg.GossipKey = k
	}
	if *tlsCA != "" {
		t, err := cluster.LoadTLS(*tlsCA, *tlsCert, *tlsKey)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		cfg.TLS = t
	}
	cfg.InsecureCluster = *insecure
	if *verbose {
		cfg.LogOutput = os.Stderr
	}
	cfg.Gossip.DropRate, cfg.Gossip.Delay = *loss, *delay
	n, err := cluster.Start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	emit(Event{Node: *name, Ev: "start"})
	events, cancelEvents := n.Subscribe(64)
	defer cancelEvents()
	go func() { // membership changes, for flapping checks; ends when cancelEvents closes the channel
		for e := range events {
			emit(Event{Node: *name, Ev: "member", Writer: e.Member.Name, Err: e.Type + ":" + string(e.Member.State)})
		}
	}()
	if *scatterAt != "" {
		stopScatter, err := serveScatter(n, *scatterAt, *name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer stopScatter()
	}
	srv := &http.Server{Addr: *httpAddr, Handler: api(n), ReadTimeout: 5 * time.Second, WriteTimeout: 35 * time.Second, IdleTimeout: 30 * time.Second}
	go func() { _ = srv.ListenAndServe() }()
	var wg sync.WaitGroup
	if *lease != "" {
		wg.Add(1)
		go func() { defer wg.Done(); app(ctx, n, *lease, *store, !*noCheck) }()
	}
	<-ctx.Done()
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = n.Shutdown(sctx)
	emit(Event{Node: *name, Ev: "stop"})
}

// app is a leader-only worker: campaign, renew every TTL/3, write with the
// token every 100 ms while holding.
func app(ctx context.Context, n *cluster.Node, name, store string, checkExpiry bool) {
	var (
		mu      sync.Mutex
		holding bool
		cur     cluster.Lease
	)
	client := &http.Client{Timeout: 2 * time.Second}
	go func() { // writer
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			mu.Lock()
			ok, l := holding, cur
			mu.Unlock()
			if !ok || store == "" || (checkExpiry && l.ValidFor() <= 0) {
				continue
			}
			u := store + "/write?" + url.Values{"lease": {name}, "token": {strconv.FormatUint(l.Token, 10)}, "writer": {n.Name()}}.Encode()
			emit(Event{Node: n.Name(), Ev: "write", Lease: name, Token: l.Token})
			resp, err := client.Post(u, "text/plain", nil)
			if err != nil {
				emit(Event{Node: n.Name(), Ev: "write_error", Lease: name, Token: l.Token, Err: err.Error()})
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ev := "write_ok"
			if resp.StatusCode != http.StatusOK {
				ev = "write_rejected"
			}
			emit(Event{Node: n.Name(), Ev: ev, Lease: name, Token: l.Token})
		}
	}()
	var lastRenew time.Time
	for {
		select {
		case <-ctx.Done():
			mu.Lock()
			if holding {
				rctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, _ = n.Elections().Resign(rctx, name, cluster.ResignRequest{Session: "app", Token: cur.Token})
				cancel()
			}
			mu.Unlock()
			return
		case <-time.After(100 * time.Millisecond):
		}
		mu.Lock()
		h, l := holding, cur
		mu.Unlock()
		if !h {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			nl, err := n.Elections().Campaign(cctx, name, cluster.CampaignRequest{Session: "app"})
			cancel()
			if err == nil {
				emit(Event{Node: n.Name(), Ev: "grant", Lease: name, Token: nl.Token, Expiry: nl.Expiry.UnixNano()})
				mu.Lock()
				holding, cur = true, nl
				mu.Unlock()
				lastRenew = time.Now()
			}
			continue
		}
		if time.Since(lastRenew) < time.Duration(l.TTLMillis)*time.Millisecond/3 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, l.ValidFor()+time.Millisecond)
		nl, err := n.Elections().Renew(rctx, name, cluster.RenewRequest{Session: "app", Token: l.Token})
		cancel()
		switch {
		case err == nil:
			emit(Event{Node: n.Name(), Ev: "renew", Lease: name, Token: nl.Token, Expiry: nl.Expiry.UnixNano()})
			mu.Lock()
			cur = nl
			mu.Unlock()
			lastRenew = time.Now()
		case errors.Is(err, cluster.ErrStaleToken) || l.ValidFor() <= 0:
			emit(Event{Node: n.Name(), Ev: "lost", Lease: name, Token: l.Token, Err: err.Error()})
			mu.Lock()
			holding = false
			mu.Unlock()
		}
	}
}

func api(n *cluster.Node) http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "lease": v})
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"status": n.Status(), "members": n.Members()}, nil)
	})
	// A member's call to another member's scatter endpoint, over the cluster's mutual TLS (the
	// control case of the outsider tests: members do get through).
	mux.HandleFunc("GET /scatter-call", func(w http.ResponseWriter, r *http.Request) {
		pc := scatter.DefaultPeerConfig()
		pc.Dial = n.DialMember
		p, err := scatter.NewFastHTTPPeer(r.FormValue("addr"), pc)
		if err != nil {
			reply(w, nil, err)
			return
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var id scatter.RequestID
		copy(id[:], strconv.FormatInt(time.Now().UnixNano(), 16))
		out, err := p.Leaf("secret").Call(ctx, id, nil, nil)
		reply(w, string(out), err)
	})
	mux.HandleFunc("GET /lease/{name}", func(w http.ResponseWriter, r *http.Request) {
		l, err := n.Elections().Get(r.Context(), r.PathValue("name"))
		reply(w, l, err)
	})
	mux.HandleFunc("POST /lease/{name}/campaign", func(w http.ResponseWriter, r *http.Request) {
		l, err := n.Elections().Campaign(r.Context(), r.PathValue("name"), cluster.CampaignRequest{Session: r.FormValue("session")})
		reply(w, l, err)
	})
	return mux
}

// runStore is the fenced store: it admits writes whose token is at least
// the highest it has admitted for the lease.
func runStore(ctx context.Context, addr string) {
	var (
		f  cluster.Fence
		mu sync.Mutex // admit and log in one order
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		name, writer := r.FormValue("lease"), r.FormValue("writer")
		tok, _ := strconv.ParseUint(r.FormValue("token"), 10, 64)
		mu.Lock()
		defer mu.Unlock()
		if err := f.Admit(name, tok); err != nil {
			emit(Event{Node: "store", Ev: "store_reject", Lease: name, Token: tok, Writer: writer, Err: err.Error()})
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		emit(Event{Node: "store", Ev: "store_accept", Lease: name, Token: tok, Writer: writer})
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	go func() { _ = srv.ListenAndServe() }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
}

// secretLeaf answers every scatter call with the node's name: what an outsider must not read.
type secretLeaf struct{ name string }

func (l secretLeaf) Call(_ context.Context, _ scatter.RequestID, _, dst []byte) ([]byte, error) {
	return append(dst, "secret of "+l.name...), nil
}

// serveScatter serves a scatter endpoint the way wasmpod does (peerhttp on a listener wrapped
// in the cluster's mutual TLS).
func serveScatter(n *cluster.Node, addr, name string) (func(), error) {
	ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	if err != nil {
		return nil, err
	}
	if err := ep.Register("secret", secretLeaf{name: name}); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := peerhttp.NewServer(ep, peerhttp.DefaultConfig())
	go func() { _ = srv.Serve(n.SecureListener(ln)) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
