// Command accesslog-main is the main module of examples/sidecar: an HTTP handler (the http
// role) that answers every request and appends one access-log line per request to a file on a
// volume it shares with the log-saver sidecar.
//
// Each line is "<unix-nanos> <method> <uri> <status> <body-bytes>\n". The file is opened,
// appended to and closed within every request (never held open), so when the sidecar renames
// it away the next request creates a fresh file, and a write that had opened the old file
// completes within this module's call deadline: the sidecar waits longer than that before it
// compresses a rotated file (see plugins/log-saver).
//
// Config keys: log (the access log path, default /logs/access.log).
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/wphttp"
)

var logPath = "/logs/access.log"

func setup() error {
	if v, ok := wasmpod.Config("log"); ok && v != "" {
		logPath = v
	}
	return nil
}

// appendLine appends one line in a single write to a file opened for appending.
func appendLine(line []byte) error {
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func serve(req *wphttp.Request) *wphttp.Response {
	body := fmt.Sprintf("ok %s\n", req.URI)
	resp := &wphttp.Response{Status: 200, Body: []byte(body)}
	resp.Header.Set("Content-Type", "text/plain; charset=utf-8")
	line := strconv.FormatInt(time.Now().UnixNano(), 10) + " " + req.Method + " " + req.URI + " 200 " + strconv.Itoa(len(body)) + "\n"
	if err := appendLine([]byte(line)); err != nil {
		// The request is answered either way; a failed log write is reported and counted.
		wasmpod.Errorf("access log %s: %v", logPath, err)
		logFailures.Inc()
	}
	return resp
}

var logFailures wasmpod.Counter

func init() {
	wasmpod.OnStart(func() error {
		logFailures = wasmpod.NewCounter("accesslog_write_failures_total", "Access-log lines that could not be written.")
		return setup()
	})
	wphttp.Handle(serve)
}

func main() {}
