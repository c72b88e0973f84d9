// Command cache-main is the main module of examples/ambassador: an HTTP key-value front end
// that talks to "localhost cache" through the pod-local call, never to memcached itself.
// Whatever module answers the call (the sharding memcache-ambassador, a single real memcached
// behind a trivial ambassador, a fake in tests) is invisible to it.
//
//	PUT /k/{key}     body = value       -> 204
//	GET /k/{key}                        -> 200 value | 404
//	GET /where/{key}                    -> 200 the backend the key hashes to
//
// A failure of the ambassador comes back as 502 with its message (e.g. which backend is down).
//
// Config keys: cache (the module to call, default "cache").
package main

import (
	"errors"
	"strings"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/pod"
	"github.com/wasmpod/wasmpod/guest-sdk/go/wphttp"
)

var target = "cache"

func text(status int, msg string) *wphttp.Response {
	r := &wphttp.Response{Status: status, Body: []byte(msg + "\n")}
	r.Header.Set("Content-Type", "text/plain; charset=utf-8")
	return r
}

func serve(req *wphttp.Request) *wphttp.Response {
	path, _, _ := strings.Cut(req.URI, "?")
	var cmd []byte
	switch {
	case strings.HasPrefix(path, "/k/") && req.Method == "GET":
		cmd = []byte("get " + path[3:])
	case strings.HasPrefix(path, "/k/") && req.Method == "PUT":
		cmd = append([]byte("set "+path[3:]+"\n"), req.Body...)
	case strings.HasPrefix(path, "/where/") && req.Method == "GET":
		cmd = []byte("where " + path[7:])
	default:
		return text(404, "use GET or PUT /k/{key}, or GET /where/{key}")
	}
	out, err := pod.Call(target, cmd)
	if err != nil {
		var ce *pod.CallError
		if errors.As(err, &ce) && errors.Is(err, pod.ErrFailed) && strings.Contains(ce.Message, "guest error code 2") {
			return text(400, err.Error())
		}
		return text(502, err.Error())
	}
	if len(out) == 0 {
		return text(502, "empty answer from "+target)
	}
	switch out[0] {
	case 'V':
		r := &wphttp.Response{Status: 200, Body: out[1:]}
		r.Header.Set("Content-Type", "application/octet-stream")
		return r
	case 'M':
		return text(404, "not found")
	case 'S':
		return &wphttp.Response{Status: 204}
	case 'B':
		return text(200, string(out[1:]))
	}
	return text(502, "unexpected answer from "+target)
}

func init() {
	wasmpod.OnStart(func() error {
		if v, ok := wasmpod.Config("cache"); ok && v != "" {
			target = v
		}
		return nil
	})
	wphttp.Handle(serve)
}

func main() {}
