// Command metrics-main is the main module of examples/adapter: an HTTP handler that emits its
// metrics the way many applications do, as statsd lines, appended to a file on a volume it
// shares with the prom-adapter module, which turns them into Prometheus series on the host's
// /metrics. It knows nothing of Prometheus.
//
// Per request it appends, in one write:
//
//	http_requests:1|c|#method:GET
//	http_response_bytes:<n>|g
//	http_handle:<ms>|ms
//
// Like plugins/accesslog-main it opens the file for every write, so the adapter can rotate it.
//
// Config keys: statsd (the file, default /metrics/main.statsd).
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/wphttp"
)

var path = "/metrics/main.statsd"

func emit(lines string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(lines); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func serve(req *wphttp.Request) *wphttp.Response {
	start := time.Now()
	body := []byte(fmt.Sprintf("hello from %s\n", req.URI))
	resp := &wphttp.Response{Status: 200, Body: body}
	resp.Header.Set("Content-Type", "text/plain; charset=utf-8")
	ms := float64(time.Since(start).Microseconds()) / 1000
	lines := "http_requests:1|c|#method:" + req.Method + "\n" +
		"http_response_bytes:" + strconv.Itoa(len(body)) + "|g\n" +
		"http_handle:" + strconv.FormatFloat(ms, 'f', 3, 64) + "|ms\n"
	if err := emit(lines); err != nil {
		wasmpod.Errorf("statsd %s: %v", path, err)
	}
	return resp
}

func init() {
	wasmpod.OnStart(func() error {
		if v, ok := wasmpod.Config("statsd"); ok && v != "" {
			path = v
		}
		return nil
	})
	wphttp.Handle(serve)
}

func main() {}
