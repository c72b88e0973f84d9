package admin

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/host/internal/version"
)

// serveVersion answers GET /v1/version with the binary's build information (version.Info):
// what `wasmpod version -o json` prints. It shows no secret, so it needs no token.
func serveVersion(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, fmt.Errorf("no route %s /v1/version (allowed: GET, HEAD)", ctx.Method()))
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, version.Get())
}

// newBuildInfo is the wasmpod_build_info gauge: always 1, with the build as labels, the way
// Prometheus' own exporters export <name>_build_info (version, revision, goversion, goos,
// goarch), so that `wasmpod_build_info * on(instance) group_left(version) ...` joins a
// version onto any other series, and a fleet's versions are one query during an upgrade.
func newBuildInfo(info version.Info) prometheus.Collector {
	goos, goarch, _ := strings.Cut(info.Platform, "/")
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "wasmpod_build_info",
		Help: "A metric with a constant '1' value labeled by the version, revision and Go toolchain wasmpod was built with.",
		ConstLabels: prometheus.Labels{
			"version":   info.Version,
			"revision":  info.Commit,
			"goversion": info.GoVersion,
			"goos":      goos,
			"goarch":    goarch,
		},
	})
	g.Set(1)
	return g
}
