// Command timed is a test guest whose health changes with time, counted from its instance's
// start: it reports not ready until config "readyAfter" (a Go duration) has passed, ready
// after, and unhealthy once config "unhealthyAfter" has passed (each 0 or absent: never).
// With "unhealthyAfter" it is a version that starts and gets ready, then fails its liveness
// probe a little later. Its handler answers "timed".
package main

import (
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
)

var (
	started                    time.Time
	readyAfter, unhealthyAfter time.Duration
)

func duration(key string) time.Duration {
	v, _ := wasmpod.Config(key)
	d, _ := time.ParseDuration(v)
	return d
}

func init() {
	wasmpod.OnStart(func() error {
		started = time.Now()
		readyAfter, unhealthyAfter = duration("readyAfter"), duration("unhealthyAfter")
		return nil
	})
	wasmpod.OnHealth(func() wasmpod.Health {
		ran := time.Since(started)
		switch {
		case unhealthyAfter > 0 && ran >= unhealthyAfter:
			return wasmpod.Unhealthy
		case ran < readyAfter:
			return wasmpod.NotReady
		}
		return wasmpod.Healthy
	})
	handler.Handle(func([]byte) ([]byte, error) { return []byte("timed"), nil })
}

func main() {}
