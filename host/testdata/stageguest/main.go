// Command stageguest is the host's test guest for work-queue stages on the native ABI: it
// exports wasmpod_stage (guest-sdk/go/stage). Its input is the whole input file.
//
// With config "mode" unset it is a per-file stage:
//
//	fail...   fails with code 3 and the message "stageguest: asked to fail"
//	spin...   spins forever (the host must cut it at its deadline)
//	anything  returns the input upper-cased
//
// With config "mode" = "merge" it is a merge stage: the input is framed as guest-sdk/ABI.md
// section 2.1 describes, and the output is "N parts: " followed by the parts joined with "|"
// (a missing part is "<missing>"). Malformed framing fails with code 4.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/stage"
)

var sink uint64

func init() {
	mode, _ := wasmpod.Config("mode")
	stage.Handle(func(in []byte) ([]byte, error) {
		if mode == "merge" {
			return merge(in)
		}
		switch {
		case bytes.HasPrefix(in, []byte("fail")):
			return nil, wasmpod.Code(3, errors.New("stageguest: asked to fail"))
		case bytes.HasPrefix(in, []byte("spin")):
			for {
				sink = sink*6364136223846793005 + 1
			}
		}
		return bytes.ToUpper(in), nil
	})
}

// merge decodes the section 2.1 framing strictly: a count, then each part's length and bytes,
// and nothing after the last part.
func merge(in []byte) ([]byte, error) {
	bad := func(format string, args ...any) error {
		return wasmpod.Code(4, fmt.Errorf("stageguest: malformed merge input: "+format, args...))
	}
	if len(in) < 4 {
		return nil, bad("%d bytes, no count", len(in))
	}
	n := binary.LittleEndian.Uint32(in)
	rest := in[4:]
	parts := make([]string, 0, min(n, 1024))
	for i := uint32(0); i < n; i++ {
		if len(rest) < 4 {
			return nil, bad("part %d has no length", i)
		}
		l := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if l == 0xFFFFFFFF {
			parts = append(parts, "<missing>")
			continue
		}
		if uint64(l) > uint64(len(rest)) {
			return nil, bad("part %d is %d bytes, only %d left", i, l, len(rest))
		}
		parts = append(parts, string(rest[:l]))
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return nil, bad("%d bytes after the last part", len(rest))
	}
	return fmt.Appendf(nil, "%d parts: %s", n, strings.Join(parts, "|")), nil
}

func main() {}
