// Command memcache-ambassador is the ambassador of examples/ambassador: main sends it get/set
// requests through the pod-local call ("localhost cache"), and it speaks the memcached text
// protocol to a fleet of real memcached servers, sharding keys over them with a ketama ring, as
// twemproxy does in the paper's example. Connections go out through the host's net imports, so
// only the backends on the pod spec's network.allow list are reachable; they are pooled across
// calls. A backend that is down fails only the keys that hash to it, with an error naming it.
//
// The request format is documented on Request.
//
// Config keys:
//
//	backends  comma-separated memcached addresses, "host:port" (required; each must also be on
//	          the module's network.allow list)
//	pool      idle connections kept per backend (default 2)
//	exptime   expiry of stored items in seconds (default 0: never)
package main

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
	wpnet "github.com/wasmpod/wasmpod/guest-sdk/go/net"
	"github.com/wasmpod/wasmpod/plugins/memcache-ambassador/memcache"
)

var (
	client  *memcache.Client
	exptime int
)

func dial(addr string) (io.ReadWriteCloser, error) { return wpnet.Dial(addr) }

func setup() error {
	v, _ := wasmpod.Config("backends")
	var backends []string
	for _, b := range strings.Split(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			backends = append(backends, b)
		}
	}
	if len(backends) == 0 {
		return wasmpod.Codef(2, "config backends: no memcached backends configured")
	}
	client = memcache.New(backends, dial)
	if p, ok := wasmpod.Config("pool"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return wasmpod.Codef(2, "config pool %q: not a count", p)
		}
		client.MaxIdle = n
	}
	if e, ok := wasmpod.Config("exptime"); ok {
		n, err := strconv.Atoi(e)
		if err != nil || n < 0 {
			return wasmpod.Codef(2, "config exptime %q: not a number of seconds", e)
		}
		exptime = n
	}
	wasmpod.Infof("memcache ambassador over %d backends: %s", len(backends), strings.Join(backends, ", "))
	return nil
}

func handle(in []byte) ([]byte, error) {
	req, err := ParseRequest(in)
	if err != nil {
		return nil, wasmpod.Code(2, err)
	}
	switch req.Op {
	case OpWhere:
		return append([]byte{'B'}, client.Backend(req.Key)...), nil
	case OpGet:
		v, found, err := client.Get(req.Key)
		if err != nil {
			return nil, classify(err)
		}
		if !found {
			return []byte{'M'}, nil
		}
		return append([]byte{'V'}, v...), nil
	default:
		if err := client.Set(req.Key, req.Value, exptime); err != nil {
			return nil, classify(err)
		}
		return []byte{'S'}, nil
	}
}

func classify(err error) error {
	switch {
	case errors.Is(err, memcache.ErrBadKey):
		return wasmpod.Code(2, err)
	case errors.Is(err, memcache.ErrBackend):
		return wasmpod.Code(3, err)
	}
	return wasmpod.Code(4, err)
}

func init() {
	wasmpod.OnStart(setup)
	wasmpod.OnStop(func(time.Duration) error {
		if client != nil {
			client.Close()
		}
		return nil
	})
	handler.Handle(handle)
}

func main() {}
