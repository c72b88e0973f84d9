//go:build !wasip1

package wasmpodtest_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/leaf"
	"github.com/wasmpod/wasmpod/guest-sdk/go/wasmpodtest"
)

// sumLeaf is plugin code: a leaf that sums its input bytes times the config key "scale",
// counts its calls and rejects empty input with code 2. A plugin registers it in init with
// leaf.Handle(sumLeaf).
func sumLeaf(in []byte) ([]byte, error) {
	calls := wasmpod.NewCounter("sum_calls_total", "Calls of the sum leaf.")
	calls.Inc()
	if len(in) == 0 {
		return nil, wasmpod.Code(2, errors.New("empty input"))
	}
	scale := uint64(1)
	if s, ok := wasmpod.Config("scale"); ok {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("config scale: %w", err)
		}
		scale = n
	}
	var sum uint64
	for _, b := range in {
		sum += uint64(b)
	}
	wasmpod.Infof("summed %d bytes", len(in))
	return binary.LittleEndian.AppendUint64(nil, sum*scale), nil
}

// A plugin author's test, written as an example: set the config, call the leaf the way the
// host does, and check its output, error code and message, logs and metrics. In a plugin the
// leaf.Handle call is in an init function, and the body of the example is a TestXxx function.
func Example() {
	leaf.Handle(sumLeaf) // in the plugin: func init() { leaf.Handle(sumLeaf) }

	wasmpodtest.Reset()
	wasmpodtest.SetConfig("scale", "10")
	out, err := wasmpodtest.CallLeaf([]byte{1, 2, 3})
	fmt.Println(binary.LittleEndian.Uint64(out), err)
	fmt.Println(wasmpodtest.TakeLogs())

	_, err = wasmpodtest.CallLeaf(nil)
	fmt.Println(wasmpod.CodeOf(err), err)

	wasmpodtest.SetConfig("scale", "ten")
	_, err = wasmpodtest.CallLeaf([]byte{1})
	msg, _ := wasmpodtest.TakeError()
	fmt.Println(msg)

	fmt.Println(wasmpodtest.MetricValues("sum_calls_total"))
	// Output:
	// 60 <nil>
	// [info: summed 3 bytes]
	// 2 wasmpod_leaf failed with code 2: empty input
	// config scale: strconv.ParseUint: parsing "ten": invalid syntax
	// [1 1 1]
}
