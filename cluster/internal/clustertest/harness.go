//go:build linux

// Package clustertest runs wasmpod cluster nodes as separate processes, each
// in its own network namespace on a private bridge, and checks the history
// of elections and fenced writes they report.
package clustertest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Net is a set of namespaces joined by a bridge that lives in its own
// namespace: nothing is added to the host's namespace, and every address
// exists only inside the test's namespaces.
type Net struct {
	t      testing.TB
	prefix string
	subnet string // "10.A.B"
	sw     string
	mu     sync.Mutex
	nss    []string
	procs  []*Proc
	ctl    *nsDialer
	Hist   *History
	dir    string
}

// Available reports why netns tests cannot run here ("" if they can).
func Available() string {
	if os.Geteuid() != 0 {
		return "netns tests need root (CI runs as root)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "netns tests need iproute2 (`ip`)"
	}
	name := "wpprobe" + randHex(3)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "cannot create network namespaces: " + strings.TrimSpace(string(out))
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	return ""
}

// NetemAvailable reports whether tc netem works inside a namespace.
func (n *Net) NetemAvailable(ns string) bool {
	if _, err := exec.LookPath("tc"); err != nil {
		return false
	}
	err := exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms").Run()
	if err == nil {
		_ = exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "lo", "root").Run()
	}
	return err == nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewNet creates the switch namespace and a control namespace from which
// the test itself talks to the nodes. Everything is removed at cleanup.
func NewNet(t testing.TB) *Net {
	if why := Available(); why != "" {
		t.Skip("skipping multi-process netns test: " + why)
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	n := &Net{t: t, prefix: "wp" + randHex(3), subnet: fmt.Sprintf("10.%d.%d", 200+int(b[0])%50, b[1]), Hist: &History{}, dir: t.TempDir()}
	n.sw = n.prefix + "-sw"
	t.Cleanup(n.teardown)
	n.addNS(n.sw)
	n.ip("-n", n.sw, "link", "add", "br0", "type", "bridge")
	n.ip("-n", n.sw, "link", "set", "br0", "up")
	ctl := n.AddHost("ctl", 250)
	d, err := newNSDialer(ctl)
	if err != nil {
		t.Fatalf("control namespace dialer: %v", err)
	}
	n.ctl = d
	return n
}

func (n *Net) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (n *Net) addNS(name string) {
	n.ip("netns", "add", name)
	n.mu.Lock()
	n.nss = append(n.nss, name)
	n.mu.Unlock()
	n.ip("-n", name, "link", "set", "lo", "up")
}

// IP of host number i in the test subnet.
func (n *Net) IP(i int) string { return fmt.Sprintf("%s.%d", n.subnet, i) }

// NS is the namespace name of host label.
func (n *Net) NS(label string) string { return n.prefix + "-" + label }

// AddHost creates namespace label with address IP(i) on the bridge.
func (n *Net) AddHost(label string, i int) string {
	ns := n.NS(label)
	n.addNS(ns)
	port := fmt.Sprintf("p%d", i)
	n.ip("-n", n.sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	n.ip("-n", n.sw, "link", "set", port, "master", "br0")
	n.ip("-n", n.sw, "link", "set", port, "up")
	n.ip("-n", ns, "addr", "add", n.IP(i)+"/24", "dev", "eth0")
	n.ip("-n", ns, "link", "set", "eth0", "up")
	return ns
}

// Cut drops all traffic between the hosts of a and those of b (blackhole
// routes in both directions); Heal removes the routes.
func (n *Net) Cut(a, b map[string]int) { n.routes("add", a, b) }

// Heal undoes Cut.
func (n *Net) Heal(a, b map[string]int) { n.routes("del", a, b) }

func (n *Net) routes(op string, a, b map[string]int) {
	for la, ia := range a {
		for lb, ib := range b {
			n.ip("-n", n.NS(la), "route", op, "blackhole", n.IP(ib)+"/32")
			n.ip("-n", n.NS(lb), "route", op, "blackhole", n.IP(ia)+"/32")
		}
	}
}

// Netem sets (or with "" clears) a netem qdisc on a host's eth0.
func (n *Net) Netem(label, spec string) error {
	args := []string{"netns", "exec", n.NS(label), "tc", "qdisc", "replace", "dev", "eth0", "root", "netem"}
	if spec == "" {
		args = []string{"netns", "exec", n.NS(label), "tc", "qdisc", "del", "dev", "eth0", "root"}
	} else {
		args = append(args, strings.Fields(spec)...)
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// Proc is a process started in a namespace.
type Proc struct {
	Label  string
	cmd    *exec.Cmd
	stderr string
	done   chan struct{}
	mu     sync.Mutex
	exited bool
}

// Start runs bin with args in host label's namespace; its stdout (JSON
// events) feeds the history.
func (n *Net) Start(label, bin string, args ...string) *Proc {
	n.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.NS(label), bin}, args...)...)
	// Whatever a node puts in its temporary directory (a queue without --state-dir) goes in
	// the test's own directory, removed once teardown has killed the nodes: a SIGKILLed
	// node cannot remove it, and it would pile up in /tmp with every run.
	cmd.Env = append(os.Environ(), "TMPDIR="+n.dir)
	errPath := filepath.Join(n.dir, label+fmt.Sprintf("-%d.stderr", time.Now().UnixNano()))
	ef, err := os.Create(errPath)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd.Stderr = ef
	out, err := cmd.StdoutPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start %s: %v", label, err)
	}
	p := &Proc{Label: label, cmd: cmd, stderr: errPath, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				n.Hist.Add(e)
			}
		}
		_ = cmd.Wait()
		ef.Close()
		p.mu.Lock()
		p.exited = true
		p.mu.Unlock()
		close(p.done)
	}()
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	return p
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the process to exit, up to d.
func (p *Proc) Wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Stderr returns the tail of the process's stderr.
func (p *Proc) Stderr() string {
	b, _ := os.ReadFile(p.stderr)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Client is an HTTP client whose connections are made in the control
// namespace.
func (n *Net) Client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: n.ctl.DialContext, DisableKeepAlives: true}}
}

func (n *Net) teardown() {
	n.mu.Lock()
	procs := append([]*Proc(nil), n.procs...)
	nss := append([]string(nil), n.nss...)
	n.mu.Unlock()
	for _, p := range procs {
		_ = p.Signal(syscall.SIGCONT)
		_ = p.Signal(syscall.SIGKILL)
		p.Wait(5 * time.Second)
	}
	if n.t.Failed() || os.Getenv("CT_VERBOSE") != "" {
		for _, p := range procs {
			n.t.Logf("--- stderr of %s:\n%s", p.Label, p.Stderr())
		}
	}
	if n.ctl != nil {
		n.ctl.close()
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", nss[i]).CombinedOutput(); err != nil {
			n.t.Logf("ip netns del %s: %v: %s", nss[i], err, out)
		}
	}
}

// nsDialer makes connections from inside a namespace: a goroutine locked
// to an OS thread that has entered the namespace. The thread is never
// unlocked, so Go discards it when the goroutine ends.
type nsDialer struct {
	reqs chan dialReq
	stop chan struct{}
	once sync.Once
}

type dialReq struct {
	ctx           context.Context
	network, addr string
	res           chan dialRes
}

type dialRes struct {
	c   net.Conn
	err error
}

func newNSDialer(ns string) (*nsDialer, error) {
	d := &nsDialer{reqs: make(chan dialReq), stop: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ready <- err
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		ready <- err
		if err != nil {
			return
		}
		var dl net.Dialer
		for {
			select {
			case <-d.stop:
				return
			case r := <-d.reqs:
				c, err := dl.DialContext(r.ctx, r.network, r.addr)
				r.res <- dialRes{c, err}
			}
		}
	}()
	return d, <-ready
}

func (d *nsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	r := dialReq{ctx: ctx, network: network, addr: addr, res: make(chan dialRes, 1)}
	select {
	case d.reqs <- r:
	case <-d.stop:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res := <-r.res
	return res.c, res.err
}

func (d *nsDialer) close() { d.once.Do(func() { close(d.stop) }) }
