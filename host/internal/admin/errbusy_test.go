package admin

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/host/internal/supervisor"
)

// TestBusyIsConflict: a command refused because another operation holds the module (an
// upgrade waiting for its new version to get ready) answers 409 with the supervisor's message,
// which names that operation; a busy wait cut by the shutdown is 503 as any closed request.
func TestBusyIsConflict(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("module %q: an upgrade is under way (since 12s); try again, or stop the module, which cuts it: %w", "web", supervisor.ErrBusy), fasthttp.StatusConflict},
		{fmt.Errorf("module %q: a restart is under way (since 1s): %w: %w", "web", supervisor.ErrBusy, supervisor.ErrClosed), fasthttp.StatusServiceUnavailable},
	} {
		var ctx fasthttp.RequestCtx
		writeSupError(&ctx, tc.err)
		if got := ctx.Response.StatusCode(); got != tc.want {
			t.Errorf("%v: status %d, want %d", tc.err, got, tc.want)
		}
		if body := string(ctx.Response.Body()); tc.want == fasthttp.StatusConflict && !strings.Contains(body, "an upgrade is under way") {
			t.Errorf("409 body %s does not name the operation", body)
		}
	}
}
