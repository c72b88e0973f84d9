// Command podkit is the host's test guest: a request handler (handle role only, so the host's
// ingress sends it raw bodies) that obeys commands, with every lifecycle export.
//
// Commands (the whole request body is the command):
//
//	echo:<x>       returns x
//	log:<msg>      logs msg at info level and returns it
//	fail:<msg>     fails with code 7 and message msg
//	exit:<n>       os.Exit(n) (a trap: the instance is discarded)
//	sethealth:<n>  makes health return n from now on (0 ready, 1 not ready, 2 unhealthy)
//	inc            increments the state counter and returns it
//	state          returns the state counter
//	spin:<n>       burns CPU for n iterations and returns a checksum
//	sleep:<ms>     sleeps ms milliseconds
//	busy:<ms>      burns CPU for ms milliseconds, reading the clock (a host call) in its loop
//	scale:<d>      asks the host to grow (d > 0) or shrink its warm pool; returns the new target
//	version        returns "podkit-1"
//
// Config: "health" (ready|notready|unhealthy) sets the initial health; "failstart" = "true" makes
// the start export fail; "tickspin" = n makes every tick burn n iterations (a CPU-hungry sidecar).
// Snapshot and restore carry the state counter in decimal.
package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
)

var (
	state     int64
	healthSet = -1
	tickSpin  int
	sink      uint64
	out       []byte
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
		if v, _ := wasmpod.Config("failstart"); v == "true" {
			return errors.New("podkit: failstart is set")
		}
		if v, ok := wasmpod.Config("tickspin"); ok {
			tickSpin, _ = strconv.Atoi(v)
		}
		return nil
	})
	wasmpod.OnHealth(func() wasmpod.Health {
		if healthSet >= 0 {
			return wasmpod.Health(healthSet)
		}
		switch v, _ := wasmpod.Config("health"); v {
		case "notready":
			return wasmpod.NotReady
		case "unhealthy":
			return wasmpod.Unhealthy
		}
		return wasmpod.Healthy
	})
	wasmpod.OnTick(func(time.Time) error {
		if tickSpin > 0 {
			spin(tickSpin)
		}
		return nil
	})
	wasmpod.OnSnapshot(func() ([]byte, error) { return strconv.AppendInt(nil, state, 10), nil })
	wasmpod.OnRestore(func(b []byte) error {
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return err
		}
		state = n
		return nil
	})
	handler.Handle(command)
}

func decimal(n int64) ([]byte, error) { out = strconv.AppendInt(out[:0], n, 10); return out, nil }

func command(req []byte) ([]byte, error) {
	cmd, arg, _ := strings.Cut(string(req), ":")
	switch cmd {
	case "echo":
		return []byte(arg), nil
	case "log":
		wasmpod.Infof("%s", arg)
		return []byte(arg), nil
	case "fail":
		return nil, wasmpod.Code(7, errors.New(arg))
	case "exit":
		n, _ := strconv.Atoi(arg)
		os.Exit(n)
	case "sethealth":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 0 {
			return nil, wasmpod.Codef(3, "podkit: bad health %q", arg)
		}
		healthSet = n
		return nil, nil
	case "inc":
		state++
		return decimal(state)
	case "state":
		return decimal(state)
	case "spin":
		n, _ := strconv.Atoi(arg)
		return decimal(int64(spin(n) & 0xffff))
	case "busy":
		ms, _ := strconv.Atoi(arg)
		end := time.Now().Add(time.Duration(ms) * time.Millisecond)
		var x uint64
		for time.Now().Before(end) {
			x += spin(1000)
		}
		return decimal(int64(x & 0xffff))
	case "sleep":
		ms, _ := strconv.Atoi(arg)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return nil, nil
	case "scale":
		d, _ := strconv.Atoi(arg)
		n, ok := wasmpod.Scale(d)
		if !ok {
			n = -1
		}
		return decimal(int64(n))
	case "version":
		return []byte("podkit-1"), nil
	}
	return nil, wasmpod.Codef(2, "podkit: unknown command %q", req)
}

func main() {}
