package leader_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/podtest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// TestLeaderExample runs the example for real: the fenced store and three `wasmpod run`
// processes on loopback, each a cluster node running examples/leader/pod.yaml. It checks that
// the nodes find each other, that exactly one node writes at a time (the store's history),
// and that a leader frozen with SIGSTOP past its lease has its write-behind rejected by the
// store after SIGCONT while another node took over.
func TestLeaderExample(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "wasmpod")
	storeBin := filepath.Join(dir, "store")
	for out, pkg := range map[string]string{bin: "../../host/cmd/wasmpod", storeBin: "./store"} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	wasm := wasmbuild.Go(t, "../../plugins/leader")

	store := start(t, "store", storeBin, "--listen", "127.0.0.1:0")
	storeAddr := store.waitMatch(t, regexp.MustCompile(`store listening on (\S+)`))
	pod, err := os.ReadFile("pod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(string(pod), "leader.wasm", wasm, 1)
	spec = strings.Replace(spec, "http://127.0.0.1:7070", "http://"+storeAddr, 1)
	specPath := filepath.Join(dir, "pod.yaml")
	if err := os.WriteFile(specPath, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}

	// The operator's token: reading a lease shows its fencing token only to the operator and
	// to the holder's app (issue 12), and this test compares the store's tokens with it.
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(operatorToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const n = 3
	nodes := make([]*proc, n)
	admins := make([]string, n)
	var join string
	t0 := time.Now()
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		gossip := freePort(t)
		args := []string{"run", specPath, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--state-dir", filepath.Join(dir, name), "--node-name", name,
			"--bind", gossip, "--raft-addr", "127.0.0.1:0", "--cluster-label", "leader-example",
			"--token-file", tokenFile, "--gossip-key-file", podtest.GossipKeyFile(t)}
		if join != "" {
			args = append(args, "--join", join)
		} else {
			join = gossip
		}
		nodes[i] = start(t, name, bin, args...)
		admins[i] = nodes[i].waitMatch(t, regexp.MustCompile(`admin API listening" addr=(\S+)`))
	}
	for i, p := range nodes {
		if p.waitAny(t, 60*time.Second, "pod running", "does not provide") == "does not provide" {
			t.Fatalf("node %d refused the leader module's election import; host log:\n%s", i+1, p.out.String())
		}
	}
	waitFor(t, 30*time.Second, "3 alive members on every node", func() bool {
		for _, a := range admins {
			var ms []struct{ State string }
			if getJSON(a, "/v1/members", &ms) != nil || len(ms) != n {
				return false
			}
			for _, m := range ms {
				if m.State != "alive" {
					return false
				}
			}
		}
		return true
	})
	t.Logf("gossip: 3 alive members on every node %.2fs after the first node started", time.Since(t0).Seconds())

	type lease struct {
		Held   bool   `json:"held"`
		Holder string `json:"holder"`
		Token  uint64 `json:"token"`
	}
	var first lease
	waitFor(t, 30*time.Second, "a leader", func() bool {
		return getJSON(admins[0], "/v1/election/leader-demo", &first) == nil && first.Held
	})
	waitFor(t, 30*time.Second, "leader writes in the store", func() bool { return len(storeLog(t, storeAddr).Writes) >= 5 })
	leader := int(first.Holder[1] - '1')
	t.Logf("leader %s with token %d", first.Holder, first.Token)

	// Freeze the leader past its lease (TTL 2 s), wait until another node writes, thaw it.
	nodes[leader].signal(t, syscall.SIGSTOP)
	frozen := time.Now()
	var failover time.Duration
	waitFor(t, 30*time.Second, "another node writing", func() bool {
		for _, w := range storeLog(t, storeAddr).Writes {
			if w.Token > first.Token {
				failover = time.Since(frozen)
				return true
			}
		}
		return false
	})
	time.Sleep(time.Until(frozen.Add(6 * time.Second)))
	nodes[leader].signal(t, syscall.SIGCONT)
	t.Logf("failover: a new leader's first admitted write %.2fs after SIGSTOP of the leader", failover.Seconds())
	waitFor(t, 30*time.Second, "the thawed leader's stale write rejected", func() bool {
		return len(storeLog(t, storeAddr).Rejected) > 0
	})
	time.Sleep(time.Second)

	log := storeLog(t, storeAddr)
	for _, r := range log.Rejected {
		if r.Token != first.Token {
			t.Errorf("rejected write with token %d, want only the frozen leader's %d", r.Token, first.Token)
		}
		if r.Token >= log.Highest {
			t.Errorf("rejected token %d is not stale (highest %d)", r.Token, log.Highest)
		}
	}
	// Exactly one writer at a time: admitted tokens never go back, each token has one holder,
	// and once a token is overtaken it is never admitted again.
	holders := map[uint64]string{}
	var last uint64
	for _, w := range log.Writes {
		holder, _, _ := strings.Cut(w.Data, " ")
		if w.Token < last {
			t.Errorf("store admitted token %d after %d", w.Token, last)
		}
		if h, ok := holders[w.Token]; ok && h != holder {
			t.Errorf("token %d written by %s and %s", w.Token, h, holder)
		}
		holders[w.Token], last = holder, w.Token
	}
	if len(holders) < 2 {
		t.Errorf("store saw %d leader terms, want at least 2 (before and after the freeze)", len(holders))
	}
	t.Logf("store: %d admitted writes over %d terms, %d rejected stale writes (tokens %v)", len(log.Writes), len(holders), len(log.Rejected), tokens(log.Rejected))
	for _, p := range nodes {
		p.signal(t, syscall.SIGTERM)
	}
	for _, p := range nodes {
		p.wait(t)
	}
}

type record struct {
	Token uint64 `json:"token"`
	Data  string `json:"data"`
}

type storeState struct {
	Highest  uint64   `json:"highest"`
	Writes   []record `json:"writes"`
	Rejected []record `json:"rejected"`
}

func tokens(rs []record) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.Token)
	}
	return out
}

func storeLog(t *testing.T, addr string) storeState {
	t.Helper()
	var s storeState
	if err := getJSON(addr, "/v1/fenced/leader-demo", &s); err != nil {
		t.Fatalf("store: %v", err)
	}
	return s
}

// operatorToken is the nodes' admin token (--token-file).
const operatorToken = "leader-example-operator-token"

// getJSON GETs path with the operator's token and decodes the answer into v.
func getJSON(addr, path string, v any) error {
	c := http.Client{Timeout: 5 * time.Second}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// freePort is a loopback address free for TCP and UDP (memberlist needs both) that no other
// test process is handed (podtest.FreePort).
func freePort(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", podtest.FreePort(t))
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proc is a child process with its output captured.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *podtest.SyncBuffer
	done chan struct{}
}

func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &podtest.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

func (p *proc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatalf("%s: signal %v: %v", p.name, s, err)
	}
}

func (p *proc) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		// A Go process prints the stack of every goroutine on SIGQUIT and exits: the output the
		// test logs then shows where the shutdown hangs.
		p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		t.Fatalf("%s did not exit within 30s of SIGTERM (stacks of its goroutines in its output, from SIGQUIT)", p.name)
	}
}

func (p *proc) waitMatch(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	var m []string
	waitFor(t, 60*time.Second, p.name+" output "+re.String(), func() bool {
		m = re.FindStringSubmatch(p.out.String())
		return m != nil
	})
	return m[1]
}

// waitAny waits until the output contains one of the words and returns it.
func (p *proc) waitAny(t *testing.T, limit time.Duration, words ...string) string {
	t.Helper()
	var found string
	waitFor(t, limit, p.name+" output "+strings.Join(words, " or "), func() bool {
		sc := bufio.NewScanner(strings.NewReader(p.out.String()))
		for sc.Scan() {
			for _, w := range words {
				if strings.Contains(sc.Text(), w) {
					found = w
					return true
				}
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited early:\n%s", p.name, p.out.String())
		default:
		}
		return false
	})
	return found
}
