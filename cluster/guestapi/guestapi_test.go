package guestapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

func TestStatusOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, StatusOK},
		{cluster.ErrNotLeader, StatusNotLeader},
		{cluster.ErrStaleToken, StatusStaleToken},
		{cluster.ErrNoQuorum, StatusNoQuorum},
		{context.DeadlineExceeded, StatusNoQuorum},
		{cluster.ErrInvalid, StatusInvalid},
		{cluster.ErrClosed, StatusUnavailable},
	} {
		if got := StatusOf(c.err); got != c.want {
			t.Errorf("StatusOf(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if r := Pack(StatusNotLeader, 300); r>>32 != StatusNotLeader || uint32(r) != 300 {
		t.Fatalf("Pack = %#x", r)
	}
}

// fenceStore is a fenced store like examples/leader/store.
type fenceStore struct {
	mu     sync.Mutex
	fence  cluster.Fence
	writes []string
}

func (s *fenceStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, _ := strconv.ParseUint(r.Header.Get(TokenHeader), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fence.Admit(r.URL.Path, tok); err != nil {
		w.WriteHeader(http.StatusConflict)
		return
	}
	s.writes = append(s.writes, r.Header.Get(SessionHeader)+" "+strconv.FormatUint(tok, 10))
}

// TestLeaderPlugin runs plugins/leader in a real engine with these imports, against a real
// single-node cluster and a fenced store: it leads, writes with its token, and a write with a
// token older than one the store admitted is refused.
func TestLeaderPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go guest")
	}
	wasm := wasmbuild.Go(t, "../../plugins/leader")
	cfg := cluster.DefaultConfig()
	cfg.NodeName, cfg.BindAddr, cfg.RaftAddr = "g1", "127.0.0.1:0", "127.0.0.1:0"
	node, err := cluster.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown(context.Background())
	store := &fenceStore{}
	srv := httptest.NewServer(store)
	defer srv.Close()

	ctx := context.Background()
	ecfg := runtime.DefaultConfig()
	ecfg.Imports = Imports(Config{Pod: "p", Elections: node.Elections()})
	eng, err := runtime.NewEngine(ctx, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(ctx)
	mcfg := runtime.DefaultModuleConfig("worker")
	mcfg.MaxConcurrency = 1
	mcfg.Config = map[string]string{"election": "job", StoreConfigKey: srv.URL}
	m, err := eng.Load(ctx, readFile(t, wasm), mcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(ctx, runtime.StopOptions{})
	var st struct {
		Leading bool   `json:"leading"`
		Token   uint64 `json:"token"`
		Writes  int    `json:"writes"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for st.Writes < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("plugin never wrote: %+v", st)
		}
		if err := m.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		out, err := m.Call(ctx, runtime.RoleHandle, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l, err := node.Elections().Get(ctx, "job")
	if err != nil || !l.Held || l.Session != "p/worker" || l.Token != st.Token || !st.Leading {
		t.Fatalf("lease %+v (%v), plugin %+v: want p/worker holding with the plugin's token", l, err, st)
	}
	// A newer token reaches the store (a successor); the plugin's next flush is then stale.
	store.mu.Lock()
	store.fence.Admit("/v1/fenced/job", st.Token+1000)
	store.mu.Unlock()
	var rej struct {
		Rejected int `json:"rejected"`
	}
	for i := 0; i < 5 && rej.Rejected == 0; i++ {
		m.Tick(ctx)
		out, _ := m.Call(ctx, runtime.RoleHandle, nil, nil)
		json.Unmarshal(out, &rej)
	}
	if rej.Rejected == 0 {
		t.Fatal("the store never rejected the plugin's stale token")
	}
	// Imports without a cluster answer unavailable, and a bad op is invalid.
	a := &api{cfg: Config{}}
	if _, s := a.do(ctx, OpGet, "x", "p/m", 0, 0); s != StatusUnavailable {
		t.Fatalf("no cluster: status %d", s)
	}
	a.cfg.Elections, a.cfg.OpTimeout = node.Elections(), time.Second
	if _, s := a.do(ctx, 9, "x", "p/m", 0, 0); s != StatusInvalid {
		t.Fatalf("bad op: status %d", s)
	}
	if _, s := a.do(ctx, OpRenew, "job", "p/other", 1, 0); s != StatusStaleToken {
		t.Fatalf("renew by another session: status %d", s)
	}
	if _, err := node.Elections().Get(ctx, "job"); errors.Is(err, cluster.ErrClosed) {
		t.Fatal(err)
	}
}
