// Command hog is a CPU-hungry test sidecar: every tick burns config "spin" loop iterations
// (default 2,000,000) and counts the tick in the counter hog_ticks_total, so a benchmark can
// read how much work the sidecar got done from the host's /metrics. Its handler answers
// "spin:<n>" the same way (returning a checksum) and anything else with "hog".
//
// It keeps no state: without config "snapshot" its snapshot is empty (what the SDK answers
// for a guest without a snapshot hook); with it, its snapshot is that string, which no stateful guest can restore (a
// test of refused handovers). Any saved state is accepted and ignored.
package main

import (
	"strconv"
	"strings"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
)

var (
	spinN = 2_000_000
	sink  uint64
	ticks wasmpod.Counter
)

func spin(n int) uint64 {
	x := sink + 1
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink = x
	return x
}

func init() {
	wasmpod.OnStart(func() error {
		if v, ok := wasmpod.Config("spin"); ok {
			spinN, _ = strconv.Atoi(v)
		}
		ticks = wasmpod.NewCounter("hog_ticks", "Ticks the hog finished.")
		return nil
	})
	wasmpod.OnSnapshot(func() ([]byte, error) {
		v, _ := wasmpod.Config("snapshot")
		return []byte(v), nil // empty without the config, as without a hook
	})
	wasmpod.OnTick(func(time.Time) error {
		spin(spinN)
		ticks.Inc()
		return nil
	})
	handler.Handle(func(req []byte) ([]byte, error) {
		if arg, ok := strings.CutPrefix(string(req), "spin:"); ok {
			n, _ := strconv.Atoi(arg)
			return strconv.AppendUint(nil, spin(n)&0xffff, 10), nil
		}
		return []byte("hog"), nil
	})
}

func main() {}
