// Command neverready is a test guest whose health check never reports ready: an upgrade to it
// must roll back. Its handler answers "neverready".
package main

import (
	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
)

func init() {
	wasmpod.OnHealth(func() wasmpod.Health { return wasmpod.NotReady })
	handler.Handle(func([]byte) ([]byte, error) { return []byte("neverready"), nil })
}

func main() {}
