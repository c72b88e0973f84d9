// Command kit is the runtime's test-kit guest: one module that plays every role and whose
// handler obeys commands, so runtime tests can drive every path of the ABI.
//
// Handler commands (the whole request is the command):
//
//	echo:<x>       returns x
//	fail:<msg>     fails with code 7 and message msg
//	panic:<msg>    panics with msg (the SDK fails the call; the instance stays usable)
//	exit:<n>       os.Exit(n) (WASI proc_exit)
//	loop           spins forever in a tight loop that makes no calls
//	clockloop      spins forever, reading the clock (a host call) every iteration
//	alloc:<MiB>    allocates and touches that many MiB, keeps them in a global, returns the block count
//	log:<msg>      logs msg at info and writes it to stdout and stderr
//	config:<key>   returns the config value; code 4 if missing
//	metric:<n>     adds n to counter kit_ops_total, sets gauge kit_last, observes histogram kit_value
//	state          returns the state counter in decimal
//	inc            increments the state counter (and returns it)
//	started        returns how many times start ran in this instance
//	ticks          returns how many ticks this instance has seen
//	scale:<d>      calls Scale(d) and returns the new target, or -1 if scaling is refused
//	sethealth:<n>  makes health return n from now on
//	rand           returns math/rand/v2's next Uint64 and a map iteration order (instances must differ)
//
// Unknown commands fail with code 2.
//
// Lifecycle: start counts starts and defines the metrics; health returns the override set by
// sethealth, else what config key "health" says (ready 0, notready 1, unhealthy 2, missing 0);
// tick counts and logs; snapshot returns the state counter in decimal; restore parses it;
// stop logs "stopping grace=<ms>".
//
// The leaf sums its input bytes (a little-endian uint64); the merge joins present parts with
// newlines, prefixed by "missing=N\n" when parts are missing; the stage upper-cases its input;
// the HTTP handler echoes the request body with headers X-Method, X-URI and Content-Type, and
// answers with the status given by a query parameter status=<n> (default 200).
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
	"github.com/wasmpod/wasmpod/guest-sdk/go/leaf"
	"github.com/wasmpod/wasmpod/guest-sdk/go/merge"
	"github.com/wasmpod/wasmpod/guest-sdk/go/stage"
	"github.com/wasmpod/wasmpod/guest-sdk/go/wphttp"
)

var (
	state     int64
	starts    int
	ticks     int
	healthSet = -1
	hoard     [][]byte // memory kept by alloc
	spin      uint64   // written by loop so the loop has an effect

	ops   wasmpod.Counter
	last  wasmpod.Gauge
	value wasmpod.Histogram

	sumOut [8]byte
	out    []byte
)

func init() {
	wasmpod.OnStart(func() error {
		starts++
		ops = wasmpod.NewCounter("kit_ops_total", "metric commands run")
		last = wasmpod.NewGauge("kit_last", "last metric command value")
		value = wasmpod.NewHistogram("kit_value", "metric command values")
		return nil
	})
	wasmpod.OnHealth(health)
	wasmpod.OnTick(func(now time.Time) error {
		ticks++
		wasmpod.Infof("tick %d now=%d", ticks, now.UnixMilli())
		return nil
	})
	wasmpod.OnSnapshot(func() ([]byte, error) {
		return strconv.AppendInt(nil, state, 10), nil
	})
	wasmpod.OnRestore(func(b []byte) error {
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return fmt.Errorf("kit: bad state %q: %w", b, err)
		}
		state = n
		return nil
	})
	wasmpod.OnStop(func(grace time.Duration) error {
		wasmpod.Infof("stopping grace=%d", grace.Milliseconds())
		return nil
	})

	handler.Handle(command)
	leaf.Handle(sum)
	merge.Handle(join)
	stage.Handle(func(in []byte) ([]byte, error) { return []byte(strings.ToUpper(string(in))), nil })
	wphttp.Handle(serveHTTP)
}

func health() wasmpod.Health {
	if healthSet >= 0 {
		return wasmpod.Health(healthSet)
	}
	v, _ := wasmpod.Config("health")
	switch v {
	case "notready":
		return wasmpod.NotReady
	case "unhealthy":
		return wasmpod.Unhealthy
	default:
		return wasmpod.Healthy
	}
}

// randMap is built at initialisation; its iteration order comes from the runtime's generator.
var randMap = map[byte]bool{'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true}

func decimal(n int64) ([]byte, error) { return strconv.AppendInt(out[:0], n, 10), nil }

func command(req []byte) ([]byte, error) {
	cmd, arg, _ := strings.Cut(string(req), ":")
	switch cmd {
	case "echo":
		return []byte(arg), nil
	case "fail":
		return nil, wasmpod.Code(7, errors.New(arg))
	case "panic":
		panic(arg)
	case "exit":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return nil, err
		}
		os.Exit(n)
	case "loop":
		for {
			spin++
		}
	case "clockloop": // a runaway loop that makes a host call (the clock) every iteration
		for {
			spin += uint64(time.Now().UnixNano() & 1)
		}
	case "alloc":
		mib, err := strconv.Atoi(arg)
		if err != nil || mib < 0 {
			return nil, fmt.Errorf("kit: bad MiB %q", arg)
		}
		b := make([]byte, mib<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		hoard = append(hoard, b)
		return decimal(int64(len(hoard)))
	case "log":
		wasmpod.Infof("%s", arg)
		fmt.Fprintln(os.Stdout, arg)
		fmt.Fprintln(os.Stderr, arg)
		return nil, nil
	case "config":
		v, ok := wasmpod.Config(arg)
		if !ok {
			return nil, wasmpod.Codef(4, "kit: no config key %q", arg)
		}
		return []byte(v), nil
	case "metric":
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil {
			return nil, err
		}
		ops.Add(v)
		last.Set(v)
		value.Observe(v)
		return nil, nil
	case "state":
		return decimal(state)
	case "inc":
		state++
		return decimal(state)
	case "started":
		return decimal(int64(starts))
	case "rand":
		b := strconv.AppendUint(out[:0], rand.Uint64(), 10)
		for k := range randMap {
			b = append(b, ' ', k)
		}
		return b, nil
	case "ticks":
		return decimal(int64(ticks))
	case "scale":
		d, err := strconv.Atoi(arg)
		if err != nil {
			return nil, err
		}
		n, ok := wasmpod.Scale(d)
		if !ok {
			n = -1
		}
		return decimal(int64(n))
	case "sethealth":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("kit: bad health %q", arg)
		}
		healthSet = n
		return nil, nil
	}
	return nil, wasmpod.Codef(2, "kit: unknown command %q", req)
}

func sum(in []byte) ([]byte, error) {
	var s uint64
	for _, b := range in {
		s += uint64(b)
	}
	binary.LittleEndian.PutUint64(sumOut[:], s)
	return sumOut[:], nil
}

func join(parts []merge.Part) ([]byte, error) {
	out = out[:0]
	missing := 0
	for _, p := range parts {
		if p.Missing {
			missing++
		}
	}
	if missing > 0 {
		out = append(out, "missing="...)
		out = strconv.AppendInt(out, int64(missing), 10)
		out = append(out, '\n')
	}
	first := true
	for _, p := range parts {
		if p.Missing {
			continue
		}
		if !first {
			out = append(out, '\n')
		}
		first = false
		out = append(out, p.Data...)
	}
	return out, nil
}

// serveHTTP answers with the request echoed back: method and URI in headers, same body, and
// the status taken from the query parameter status= if present.
func serveHTTP(r *wphttp.Request) *wphttp.Response {
	status := 200
	if _, q, ok := strings.Cut(r.URI, "?"); ok {
		for _, kv := range strings.Split(q, "&") {
			if v, ok := strings.CutPrefix(kv, "status="); ok {
				if n, err := strconv.Atoi(v); err == nil {
					status = n
				}
			}
		}
	}
	resp := &wphttp.Response{Status: status, Body: append([]byte(nil), r.Body...)}
	resp.Header.Add("X-Method", r.Method)
	resp.Header.Add("X-URI", r.URI)
	resp.Header.Add("Content-Type", r.Header.Get("content-type"))
	return resp
}

func main() {}
