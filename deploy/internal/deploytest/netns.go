package deploytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Net is a private network of namespaces on a bridge that lives in a namespace of its own, as
// a Kubernetes node gives each pod its own IP: nothing is added to this machine's namespace.
// The test reaches the hosts through Client, which dials from a namespace on the same bridge.
type Net struct {
	t      *testing.T
	prefix string
	subnet string
	nss    []string
	ctl    string
}

// NetAvailable says why network namespaces cannot be used here ("" when they can).
func NetAvailable() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root (CI runs as root)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "network namespaces need iproute2 (`ip`)"
	}
	return ""
}

// NewNet creates the bridge and the test's own namespace; everything goes at cleanup. It
// skips the test where namespaces cannot be made.
func NewNet(t *testing.T) *Net {
	t.Helper()
	if why := NetAvailable(); why != "" {
		Skip(t, why)
	}
	b := make([]byte, 3)
	rand.Read(b)
	n := &Net{t: t, prefix: "wpd" + hex.EncodeToString(b), subnet: fmt.Sprintf("10.%d.%d", 150+int(b[0])%50, b[1])}
	t.Cleanup(n.teardown)
	sw := n.addNS("sw")
	n.ip("-n", sw, "link", "add", "br0", "type", "bridge")
	n.ip("-n", sw, "link", "set", "br0", "up")
	n.ctl = n.AddHost("ctl", 250)
	return n
}

func (n *Net) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (n *Net) addNS(label string) string {
	ns := n.prefix + "-" + label
	n.ip("netns", "add", ns)
	n.nss = append(n.nss, ns)
	n.ip("-n", ns, "link", "set", "lo", "up")
	return ns
}

// IP is the address of host number i.
func (n *Net) IP(i int) string { return fmt.Sprintf("%s.%d", n.subnet, i) }

// AddHost creates a namespace with address IP(i) on the bridge; it returns its name.
func (n *Net) AddHost(label string, i int) string {
	ns := n.addNS(label)
	sw := n.prefix + "-sw"
	port := fmt.Sprintf("p%d", i)
	n.ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	n.ip("-n", sw, "link", "set", port, "master", "br0")
	n.ip("-n", sw, "link", "set", port, "up")
	n.ip("-n", ns, "addr", "add", n.IP(i)+"/24", "dev", "eth0")
	n.ip("-n", ns, "link", "set", "eth0", "up")
	return ns
}

// Client is an HTTP client whose connections start in the test's namespace on the bridge.
func (n *Net) Client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetNS(n.ctl, func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

func (n *Net) teardown() {
	for i := len(n.nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", n.nss[i]).CombinedOutput(); err != nil {
			n.t.Logf("ip netns del %s: %v: %s", n.nss[i], err, out)
		}
	}
}

// inNetNS runs fn on a thread of its own moved into network namespace ns ("" runs fn here).
// A socket or child process made by fn stays in ns. The thread is never reused: its goroutine
// ends locked, so the Go runtime discards it.
func inNetNS(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}
