// Command guest is the hello example's main module: an HTTP handler (the http role) that greets
// whoever the request names, with the greeting from its config.
//
//	curl localhost:8080/world        -> hello, world
//	curl -d 'wasm' localhost:8080/   -> hello, wasm
package main

import (
	"strings"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/wphttp"
)

func init() {
	wphttp.Handle(func(req *wphttp.Request) *wphttp.Response {
		greeting, ok := wasmpod.Config("greeting")
		if !ok {
			greeting = "hello"
		}
		who := strings.TrimPrefix(req.URI, "/")
		if i := strings.IndexByte(who, '?'); i >= 0 {
			who = who[:i]
		}
		if len(req.Body) > 0 {
			who = string(req.Body)
		}
		if who == "" {
			who = "world"
		}
		resp := &wphttp.Response{Status: 200, Body: []byte(greeting + ", " + who + "\n")}
		resp.Header.Set("Content-Type", "text/plain; charset=utf-8")
		return resp
	})
}

func main() {}
