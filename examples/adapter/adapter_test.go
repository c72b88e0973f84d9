// Package adapter is the adapter example's end-to-end test (see README.md).
package adapter

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/podtest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

const requests = 25

func TestAdapter(t *testing.T) {
	spec := podtest.CopyExample(t, "adapter", []string{"metrics-main", "prom-adapter"})
	h := podtest.Start(t, spec)
	for i := range requests {
		if code, body := h.Get("GET", fmt.Sprintf("/x/%d", i), nil); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	want := fmt.Sprintf(`app_http_requests_total{module="adapter",pod="adapter"} %d`, requests)
	var metrics string
	podtest.WaitFor(t, time.Minute, "adapted series on /metrics", func() bool {
		_, metrics = podtest.Do("GET", "http://"+h.Admin+"/metrics", nil, "")
		return strings.Contains(metrics, want)
	})
	for _, s := range []string{`app_http_response_bytes{module="adapter",pod="adapter"}`, `app_http_handle_seconds_count{module="adapter",pod="adapter"} 25`} {
		if !strings.Contains(metrics, s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}

	t.Run("promtool", func(t *testing.T) {
		p := wasmbuild.RequireTool(t, "promtool")
		cmd := exec.Command(p, "check", "metrics")
		cmd.Stdin = strings.NewReader(metrics)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	})

	t.Run("prometheus", func(t *testing.T) {
		bin := wasmbuild.RequireTool(t, "prometheus")
		dir := t.TempDir()
		cfg := filepath.Join(dir, "prom.yml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n  - job_name: wasmpod\n    static_configs: [{targets: ['%s']}]\n", h.Admin)), 0o644)
		web := fmt.Sprintf("127.0.0.1:%d", podtest.FreePort(t))
		cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+web)
		var log strings.Builder
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		q := "http://" + web + "/api/v1/query?query=" + url.QueryEscape(`app_http_requests_total{pod="adapter",module="adapter"}`)
		var got string
		podtest.WaitFor(t, 90*time.Second, "the adapted series through Prometheus' query API", func() bool {
			code, body := podtest.Do("GET", q, nil, "")
			if code != 200 {
				return false
			}
			var r struct {
				Status string `json:"status"`
				Data   struct {
					Result []struct {
						Metric map[string]string `json:"metric"`
						Value  [2]any            `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			if json.Unmarshal([]byte(body), &r) != nil || r.Status != "success" || len(r.Data.Result) != 1 {
				return false
			}
			got = fmt.Sprint(r.Data.Result[0].Value[1])
			return got == fmt.Sprint(requests) && r.Data.Result[0].Metric["job"] == "wasmpod"
		})
		t.Logf("Prometheus: app_http_requests_total = %s", got)
	})
}
