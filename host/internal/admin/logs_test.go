package admin

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// TestLogsTailZero: ?tail=0 means no recent lines (`wasmpod logs --tail 0 -f`: "how many recent
// lines to print first"), while a request without tail keeps the default of 100. Before, 0
// reached the log buffer as "all" and printed every kept line.
func TestLogsTailZero(t *testing.T) {
	sup, _ := helloPod(t, "")
	cfg := DefaultConfig()
	cfg.Token = "tok"
	base := serveAdminWith(t, cfg, sup)
	for i := range 150 {
		sup.Logs().Log(runtime.LogEntry{Time: time.Now(), Module: "hello", Source: "guest", Message: fmt.Sprintf("old %d", i)})
	}
	countOld := func(body string) int { return strings.Count(body, `"old `) }

	for q, want := range map[string]int{"": 100, "?tail=0": 0, "?tail=7": 7, "?tail=0&follow=0": 0} {
		resp, body := request(t, "GET", base+"/v1/modules/hello/logs"+q, "tok")
		if resp.StatusCode != 200 || countOld(body) != want {
			t.Errorf("GET logs%s: %d, %d old lines; want 200 and %d", q, resp.StatusCode, countOld(body), want)
		}
	}

	// Following from tail=0: the first line streamed is the one logged after the request.
	req, _ := http.NewRequest("GET", base+"/v1/modules/hello/logs?tail=0&follow=1", nil)
	req.Header.Set("Authorization", "Bearer tok")
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The headers are written with the (empty) tail, so the subscription is in place now.
	sup.Logs().Log(runtime.LogEntry{Time: time.Now(), Module: "hello", Source: "guest", Message: "new line"})
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "new line") {
		t.Fatalf("follow with tail=0 first streamed %q; want the new line, no old ones", line)
	}
}
