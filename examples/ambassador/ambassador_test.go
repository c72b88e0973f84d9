// Package ambassador is the ambassador example's end-to-end test (see README.md).
package ambassador

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/podtest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

type memcached struct {
	addr string
	cmd  *exec.Cmd
}

func startMemcached(t *testing.T) *memcached {
	t.Helper()
	bin := wasmbuild.RequireTool(t, "memcached")
	port := podtest.FreePort(t)
	m := &memcached{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	m.cmd = exec.Command(bin, "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "16", "-u", "root")
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.kill)
	podtest.WaitFor(t, 10*time.Second, "memcached "+m.addr, func() bool {
		c, err := net.Dial("tcp", m.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return m
}

func (m *memcached) kill() {
	if m.cmd.ProcessState == nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
	}
}

// rawGet reads key from one backend with a plain memcached client (the text protocol by hand).
func rawGet(t *testing.T, addr, key string) (string, bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "get %s\r\n", key)
	r := bufio.NewReader(c)
	line, _ := r.ReadString('\n')
	if line == "END\r\n" {
		return "", false
	}
	var k string
	var flags, n int
	if _, err := fmt.Sscanf(line, "VALUE %s %d %d\r\n", &k, &flags, &n); err != nil || k != key {
		t.Fatalf("%s: get %s: %q", addr, key, line)
	}
	b := make([]byte, n+2)
	if _, err := readFull(r, b); err != nil {
		t.Fatal(err)
	}
	return string(b[:n]), true
}

func readFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

const keys = 300

func spec(t *testing.T, ms ...*memcached) string {
	t.Helper()
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.addr)
	}
	repl := []string{"127.0.0.1:11211,127.0.0.1:11212,127.0.0.1:11213", strings.Join(addrs, ",")}
	if len(ms) == 4 {
		repl = append(repl, "127.0.0.1:11213]", ms[2].addr+", "+ms[3].addr+"]")
	}
	repl = append(repl, "127.0.0.1:11211", ms[0].addr, "127.0.0.1:11212", ms[1].addr, "127.0.0.1:11213", ms[2].addr)
	return podtest.CopyExample(t, "ambassador", []string{"cache-main", "memcache-ambassador"}, repl...)
}

func where(t *testing.T, h *podtest.Host) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := range keys {
		k := fmt.Sprintf("key-%d", i)
		code, body := h.Get("GET", "/where/"+k, nil)
		if code != 200 {
			t.Fatalf("where %s: %d %s", k, code, body)
		}
		out[k] = strings.TrimSpace(body)
	}
	return out
}

func TestAmbassador(t *testing.T) {
	ms := []*memcached{startMemcached(t), startMemcached(t), startMemcached(t), startMemcached(t)}
	h := podtest.Start(t, spec(t, ms[:3]...))

	for i := range keys {
		k := fmt.Sprintf("key-%d", i)
		if code, body := h.Get("PUT", "/k/"+k, []byte("value of "+k)); code != 204 {
			t.Fatalf("PUT %s: %d %s", k, code, body)
		}
	}
	placed := where(t, h)
	per := map[string]int{}
	for k, b := range placed {
		per[b]++
		if v, ok := rawGet(t, b, k); !ok || v != "value of "+k {
			t.Fatalf("%s is not on %s, the backend it hashed to (%q, %v)", k, b, v, ok)
		}
		if code, body := h.Get("GET", "/k/"+k, nil); code != 200 || body != "value of "+k {
			t.Fatalf("GET %s: %d %q", k, code, body)
		}
	}
	for _, m := range ms[:3] {
		if per[m.addr] == 0 {
			t.Fatalf("no key landed on %s: %v", m.addr, per)
		}
	}
	t.Logf("keys per backend: %v", per)

	t.Run("one backend down", func(t *testing.T) {
		dead := ms[1]
		dead.kill()
		for k, b := range placed {
			code, body := h.Get("GET", "/k/"+k, nil)
			if b == dead.addr {
				if code != 502 || !strings.Contains(body, dead.addr) || !strings.Contains(body, "unavailable") {
					t.Fatalf("key %s of the dead backend: %d %q, want 502 naming %s", k, code, body, dead.addr)
				}
			} else if code != 200 || body != "value of "+k {
				t.Fatalf("key %s of live backend %s: %d %q", k, b, code, body)
			}
		}
	})

	t.Run("adding a backend moves about 1/N of the keys", func(t *testing.T) {
		h.Kill()
		h4 := podtest.Start(t, spec(t, ms...))
		after := where(t, h4)
		moved := 0
		for k, b := range placed {
			if after[k] != b {
				moved++
				if after[k] != ms[3].addr {
					t.Fatalf("%s moved from %s to %s, not to the new backend", k, b, after[k])
				}
			}
		}
		frac := float64(moved) / keys
		t.Logf("adding a 4th backend moved %d of %d keys (%.2f, ideal 0.25)", moved, keys, frac)
		if frac < 0.10 || frac > 0.40 {
			t.Fatalf("moved %.2f of the keys, want about 1/4", frac)
		}
	})
}
