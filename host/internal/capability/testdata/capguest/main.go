// Command capguest exercises the pod-local call and network imports for the capability tests.
// Its handle export takes one command per call:
//
//	echo TEXT          -> TEXT
//	fail               -> guest error 7 "boom"
//	big N              -> N bytes of 'x'
//	call TARGET INPUT  -> the target's response, or "ERR <kind>: <message>"
//	fetch ADDR LINE    -> dial ADDR, send LINE, return the first line answered
//	hold ADDR          -> dial ADDR and keep the connection for later calls
//	use LINE           -> send LINE on the kept connection, return the line answered
//	dialn ADDR N       -> dial ADDR N times keeping every connection; "<opened> <error>"
//	closeall           -> close every kept connection
//	dialtrap ADDR N    -> dial ADDR N times keeping every connection, then exit (the SDK
//	                      turns a panic into a guest error; an exit discards the instance)
//	dialspin ADDR N    -> dial ADDR N times keeping every connection, then loop until cut
//	after MS CMD       -> sleep MS milliseconds, then run CMD
//	badread            -> net_read on handle 1 into a buffer outside memory; "ERR badargs" on -5
//	spin               -> spins forever in pure arithmetic (until cut)
//
// Network failures come back as "ERR <kind>: <message>".
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
	wpnet "github.com/wasmpod/wasmpod/guest-sdk/go/net"
	"github.com/wasmpod/wasmpod/guest-sdk/go/pod"
)

var (
	kept []*wpnet.Conn
	sink uint64
)

func kind(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{pod.ErrNoModule, "nomodule"}, {pod.ErrFailed, "failed"}, {pod.ErrNotAllowed, "notallowed"},
		{pod.ErrTooLarge, "toolarge"}, {wpnet.ErrNotAllowed, "notallowed"}, {wpnet.ErrTooMany, "toomany"},
		{wpnet.ErrTimeout, "timeout"}, {wpnet.ErrClosed, "closed"}, {wpnet.ErrIO, "io"}, {wpnet.ErrBadArgs, "badargs"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}

func errOut(err error) []byte { return []byte("ERR " + kind(err) + ": " + err.Error()) }

func roundTrip(c *wpnet.Conn, line string) ([]byte, error) {
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return nil, err
	}
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(l, "\n")), nil
}

func handle(in []byte) ([]byte, error) {
	cmd, rest, _ := strings.Cut(string(in), " ")
	switch cmd {
	case "echo":
		return []byte(rest), nil
	case "fail":
		return nil, wasmpod.Codef(7, "boom")
	case "big":
		n, _ := strconv.Atoi(rest)
		return []byte(strings.Repeat("x", n)), nil
	case "call":
		target, input, _ := strings.Cut(rest, " ")
		out, err := pod.Call(target, []byte(input))
		if err != nil {
			return errOut(err), nil
		}
		return out, nil
	case "fetch":
		addr, line, _ := strings.Cut(rest, " ")
		c, err := wpnet.Dial(addr)
		if err != nil {
			return errOut(err), nil
		}
		defer c.Close()
		out, err := roundTrip(c, line)
		if err != nil {
			return errOut(err), nil
		}
		return out, nil
	case "hold":
		c, err := wpnet.Dial(rest)
		if err != nil {
			return errOut(err), nil
		}
		kept = append(kept, c)
		return []byte("ok"), nil
	case "use":
		if len(kept) == 0 {
			return []byte("ERR none kept"), nil
		}
		out, err := roundTrip(kept[len(kept)-1], rest)
		if err != nil {
			return errOut(err), nil
		}
		return out, nil
	case "dialn":
		addr, ns, _ := strings.Cut(rest, " ")
		n, _ := strconv.Atoi(ns)
		for i := 0; i < n; i++ {
			c, err := wpnet.Dial(addr)
			if err != nil {
				return []byte(fmt.Sprintf("%d %s", i, errOut(err))), nil
			}
			kept = append(kept, c)
		}
		return []byte(fmt.Sprintf("%d", n)), nil
	case "dialtrap", "dialspin":
		addr, ns, _ := strings.Cut(rest, " ")
		n, _ := strconv.Atoi(ns)
		for i := 0; i < n; i++ {
			c, err := wpnet.Dial(addr)
			if err != nil {
				return []byte(fmt.Sprintf("%d %s", i, errOut(err))), nil
			}
			kept = append(kept, c)
		}
		if cmd == "dialspin" {
			for spin := 0; ; spin++ {
				if spin < 0 {
					return nil, nil
				}
			}
		}
		os.Exit(3)
		return nil, nil
	case "after":
		ms, next, _ := strings.Cut(rest, " ")
		n, _ := strconv.Atoi(ms)
		time.Sleep(time.Duration(n) * time.Millisecond)
		return handle([]byte(next))
	case "badread":
		if rc := rawNetRead(1, 0xFFFFFF00, 4096); rc != -5 {
			return []byte(fmt.Sprintf("net_read returned %d", rc)), nil
		}
		return []byte("ERR badargs"), nil
	case "spin":
		for {
			sink = sink*6364136223846793005 + 1
		}
	case "closeall":
		for _, c := range kept {
			c.Close()
		}
		kept = nil
		return []byte("ok"), nil
	}
	return nil, wasmpod.Codef(2, "unknown command %q", cmd)
}

//go:wasmimport wasmpod net_read
func rawNetRead(h int32, ptr uint32, capacity uint32) int32

func init() { handler.Handle(handle) }

func main() {}
