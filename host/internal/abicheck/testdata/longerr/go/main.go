// Command longerr fails every call with a message longer than the host keeps, made of
// multi-byte characters (TestLongErrorMessage).
package main

import (
	"errors"
	"strings"

	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
)

func init() {
	handler.Handle(func([]byte) ([]byte, error) {
		return nil, errors.New("xy" + strings.Repeat("€", 2000))
	})
}

func main() {}
