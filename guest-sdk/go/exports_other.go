//go:build !wasip1

package wasmpod

import "github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"

// Off wasip1, package wasmpodtest runs the lifecycle exports through these registrations.
func init() {
	core.Register("wasmpod_start", start)
	core.Register("wasmpod_stop", stop)
	core.Register("wasmpod_health", health)
	core.Register("wasmpod_tick", tick)
	core.Register("wasmpod_snapshot", snapshot)
	core.Register("wasmpod_restore", restore)
}
