//go:build !unix

package podtest

import "os"

// reservePort reserves nothing where file locks are not available: FreePort then guards only
// against its own process handing a port out twice.
func reservePort(int) (*os.File, bool) {
	f, err := os.Open(os.DevNull)
	return f, err == nil
}
