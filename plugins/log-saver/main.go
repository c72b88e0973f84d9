// Command log-saver is the sidecar of examples/sidecar: on every tick it rotates the access log
// main appends to on their shared volume and archives each rotated file, gzipped, into an
// archive directory, so that every line is archived exactly once (see Saver for how the race
// with main's appends is closed). It runs at low priority: its ticks only use spare CPU, and
// its failures (a trap, a stop, an upgrade) never touch main, which keeps answering and
// appending; whatever accumulates meanwhile is archived by the next tick that runs.
//
// Config keys:
//
//	log         the access log (default /logs/access.log)
//	archive     the archive directory (default /logs/archive)
//	settle      how long a rotated file rests before it is archived, a Go duration above main's
//	            call timeout (default 10s)
//	fault_file  fault injection for demos and tests: when this file exists, the next tick exits
//	            the instance (a trap); unset by default
package main

import (
	"fmt"
	"os"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
)

var (
	saver     = &Saver{Log: "/logs/access.log", Archive: "/logs/archive", Settle: 10 * time.Second}
	faultFile string
	archived  wasmpod.Counter
	lines     wasmpod.Counter
)

func setup() error {
	if v, ok := wasmpod.Config("log"); ok && v != "" {
		saver.Log = v
	}
	if v, ok := wasmpod.Config("archive"); ok && v != "" {
		saver.Archive = v
	}
	if v, ok := wasmpod.Config("settle"); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return wasmpod.Codef(2, "config settle %q: not a duration", v)
		}
		saver.Settle = d
	}
	faultFile, _ = wasmpod.Config("fault_file")
	archived = wasmpod.NewCounter("logsaver_archives_total", "Rotated access logs archived.")
	lines = wasmpod.NewCounter("logsaver_lines_total", "Access-log lines archived.")
	return nil
}

func tick(now time.Time) error {
	if faultFile != "" {
		if _, err := os.Stat(faultFile); err == nil {
			fmt.Fprintln(os.Stderr, "log-saver: fault file present, exiting")
			os.Exit(3)
		}
	}
	st, err := saver.Tick(now)
	archived.Add(float64(st.Archived))
	lines.Add(float64(st.Lines))
	if err != nil {
		return fmt.Errorf("log-saver: %w", err)
	}
	return nil
}

func init() {
	wasmpod.OnStart(setup)
	wasmpod.OnTick(tick)
}

func main() {}
