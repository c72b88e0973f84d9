//go:build !wasip1

package stage

import "github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"

// Off wasip1, package wasmpodtest runs the export through this registration.
func init() { core.Register("wasmpod_stage", call) }
