package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
)

// procKiB reads a "VmRSS:"-style field of /proc/PID/status in KiB.
func procKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestListenerHardening attacks the real binary as issue 12 did, with raw TCP clients: a
// smuggled request on each listener, 32 unauthenticated 63 MiB uploads (peak RSS), and the
// election sidecar from a local client with no credential and with another app's.
func TestListenerHardening(t *testing.T) {
	apps := filepath.Join(t.TempDir(), "apps")
	const billing, reports = "billing-0123456789abcdef", "reports-0123456789abcdef"
	os.WriteFile(apps, []byte("# election sidecar credentials\nbilling "+billing+"\nreports "+reports+"\n"), 0o600)
	h := startHostIn(t, writePod(t, podYAML("podkit", "", "")), "", "--app-token-file", apps)

	t.Run("smuggled request: 400 and close, on both listeners", func(t *testing.T) {
		body := "0\r\n\r\nGET /v1/modules HTTP/1.1\r\nHost: x\r\n\r\n"
		for _, addr := range []string{h.ingress, h.admin} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%s", len(body), body)
			all, _ := io.ReadAll(c) // the whole answer, then the server closes
			c.Close()
			if !strings.HasPrefix(string(all), "HTTP/1.1 400 ") || strings.Count(string(all), "HTTP/1.1 ") != 1 {
				t.Errorf("%s answered %q; want one 400 and the connection closed", addr, all)
			}
		}
	})

	t.Run("32 unauthenticated 63 MiB uploads", func(t *testing.T) {
		pid := h.cmd.Process.Pid
		before := procKiB(t, pid, "VmHWM")
		var wg sync.WaitGroup
		statuses := make([]string, 32)
		for i := range 32 {
			wg.Go(func() {
				c, err := net.Dial("tcp", h.admin)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				fmt.Fprintf(c, "PUT /v1/modules/web/wasm HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 63<<20)
				go func() { // the body, until the server stops taking it
					chunk := make([]byte, 1<<20)
					for n := 0; n < 63; n++ {
						if _, err := c.Write(chunk); err != nil {
							return
						}
					}
				}()
				statuses[i], _ = bufio.NewReader(c).ReadString('\n')
			})
		}
		wg.Wait()
		after := procKiB(t, pid, "VmHWM")
		refused := 0
		for _, s := range statuses {
			if strings.Contains(s, " 401 ") {
				refused++
			}
		}
		t.Logf("peak RSS %d MiB before, %d MiB after; %d of 32 answered 401 (the others saw the close first)", before>>10, after>>10, refused)
		if after-before > 128<<10 {
			t.Errorf("peak RSS grew %d MiB: unauthenticated bodies were read", (after-before)>>10)
		}
		if refused == 0 {
			t.Errorf("no upload was answered 401: %q", statuses)
		}
	})

	t.Run("election sidecar: apps have their own credential", func(t *testing.T) {
		url := "http://" + h.admin + "/v1/election/job"
		var granted cluster.Lease
		waitFor(t, time.Minute, "the app's campaign granted", func() bool {
			code, body := h.do("POST", url+"/campaign", []byte(`{"session":"billing/w1","ttl_ms":60000}`), billing)
			return code == 200 && json.Unmarshal([]byte(body), &granted) == nil && granted.Held && granted.Token > 0
		})
		for _, c := range []struct {
			name, method, path, body, auth string
			status                         int
			seesToken                      bool
		}{
			{"a local client without a token reads", "GET", "", "", "", 200, false},
			{"another app reads", "GET", "", "", reports, 200, false},
			{"the holder's app reads", "GET", "", "", billing, 200, true},
			{"the operator reads", "GET", "", "", token, 200, true},
			{"a local client without a token resigns", "POST", "/resign", fmt.Sprintf(`{"session":"billing/w1","token":%d}`, granted.Token), "", 401, false},
			{"another app resigns the holder", "POST", "/resign", fmt.Sprintf(`{"session":"billing/w1","token":%d}`, granted.Token), reports, 403, false},
			{"another app campaigns as the holder", "POST", "/campaign", `{"session":"billing/w1"}`, reports, 403, false},
		} {
			code, body := h.do(c.method, url+c.path, []byte(c.body), c.auth)
			var l cluster.Lease
			json.Unmarshal([]byte(body), &l)
			if code != c.status || (l.Token == granted.Token) != c.seesToken {
				t.Errorf("%s: %d %s; want %d, token shown %v", c.name, code, body, c.status, c.seesToken)
			}
		}
		if code, body := h.do("GET", "http://"+h.admin+"/debug/pprof/cmdline", nil, ""); code != 401 || strings.Contains(body, "--token-file") {
			t.Errorf("pprof's command line without a token: %d %q; want 401", code, body)
		}
		if code, body := h.do("POST", url+"/resign", []byte(fmt.Sprintf(`{"session":"billing/w1","token":%d}`, granted.Token)), billing); code != 200 {
			t.Errorf("the holder resigns: %d %s", code, body)
		}
	})

	t.Run("app tokens rotate without a restart; a bad file keeps them", func(t *testing.T) {
		url := "http://" + h.admin + "/v1/election/rotate/campaign"
		campaign := func(tok string) int {
			code, _ := h.do("POST", url, []byte(`{"session":"billing","ttl_ms":1000}`), tok)
			return code
		}
		const rotated = "billing-rotated-0123456789"
		os.WriteFile(apps, []byte("billing "+rotated+"\nreports "+reports+"\n"), 0o600)
		h.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, time.Minute, "the rotated token works", func() bool { return campaign(rotated) == 200 })
		if code := campaign(billing); code != 401 {
			t.Fatalf("the replaced token answers %d; want 401", code)
		}
		os.WriteFile(apps, []byte("billing short\n"), 0o600)
		h.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, time.Minute, "the bad file refused", func() bool {
			return strings.Contains(h.stderr.String(), "app token file refused") && strings.Contains(h.stderr.String(), "token shorter than 16 bytes")
		})
		if code := campaign(rotated); code != 200 {
			t.Fatalf("after a refused file the token in force answers %d; want 200", code)
		}
	})
}

// echoOn sends "echo:ok" to the pod on c (keep-alive) and reads the answer, which must be 200.
func echoOn(c net.Conn, br *bufio.Reader) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\necho:ok"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// TestIdleFloodOnTheBinary: the real binary with --max-conns 100, and clients from four
// addresses that want 200 idle keep-alive connections (one request each, then quiet,
// reconnecting whenever the host closes one). A legitimate client is served every time.
func TestIdleFloodOnTheBinary(t *testing.T) {
	h := startHostIn(t, writePod(t, podYAML("podkit", "", "")), "", "--max-conns", "100")
	var wg sync.WaitGroup
	var idle, reopened atomic.Int64
	stop := make(chan struct{})
	for a := range 4 {
		from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(a+2))}
		for range 50 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: from}
					c, err := d.Dial("tcp", h.ingress)
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					go func() { <-stop; c.Close() }()
					if echoOn(c, bufio.NewReader(c)) == nil {
						idle.Add(1)
						c.SetDeadline(time.Time{})
						io.Copy(io.Discard, c) // idle until the host closes it
						idle.Add(-1)
						reopened.Add(1)
					}
					c.Close()
					time.Sleep(20 * time.Millisecond)
				}
			})
		}
	}
	defer func() { close(stop); wg.Wait() }()
	// The flood is at the cap once it holds most of the connections, or once the host is
	// closing its idle ones to make room faster than they come back (on a fast machine the
	// churn keeps the number held at any instant below 80).
	waitFor(t, time.Minute, "the flood at the connection cap", func() bool {
		return idle.Load() >= 80 || (idle.Load() >= 40 && reopened.Load() >= 2000)
	})
	var failed []string
	for i := range 20 {
		c, err := net.DialTimeout("tcp", h.ingress, 5*time.Second)
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		if err := echoOn(c, bufio.NewReader(c)); err != nil {
			failed = append(failed, fmt.Sprintf("request %d: %v", i, err))
		}
		c.Close()
		time.Sleep(25 * time.Millisecond)
	}
	t.Logf("flood: %d idle connections held, %d closed by the host and reopened", idle.Load(), reopened.Load())
	if len(failed) > 0 {
		t.Fatalf("legitimate client refused %d of 20 times: %s", len(failed), strings.Join(failed, "; "))
	}
}
