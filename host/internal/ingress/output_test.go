package ingress

import (
	"fmt"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/runtime"
)

// TestOversizedOutputIs502: a guest whose output is over the limit is a bad gateway, not a bad
// request; a bad input stays 400.
func TestOversizedOutputIs502(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w: module \"m\": output of 99 bytes is over the limit of 64", runtime.ErrOutput), fasthttp.StatusBadGateway},
		{fmt.Errorf("%w: module \"m\": input of 99 bytes is over the limit of 64", runtime.ErrInput), fasthttp.StatusBadRequest},
	} {
		var ctx fasthttp.RequestCtx
		writeCallError(&ctx, tc.err)
		if got := ctx.Response.StatusCode(); got != tc.want {
			t.Errorf("%v: status %d, want %d", tc.err, got, tc.want)
		}
	}
}
