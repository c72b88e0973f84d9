//go:build !unix

package podtest

import "os"

// reservePort reserves nothing where file locks are not available: FreePort then guards only
// against its own process handing a port out twice. Closing the nil file it returns is a no-op
// (os.File.Close reports ErrInvalid for nil).
func reservePort(int) (*os.File, bool) { return nil, true }
