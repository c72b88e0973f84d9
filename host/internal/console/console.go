// Package console is the operator's web console on the admin listener (/ui/): the embedded
// page (plain HTML, CSS and JavaScript, no build step, nothing fetched from elsewhere) and the
// small in-memory histories it draws from: a ring of per-module call samples for the
// sparklines (Sampler) and the recent scatter answers with their missing shards (AnswerLog).
// The admin package serves both; this package holds no HTTP server of its own.
package console

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files is the console's static tree: index.html, console.js, console.css.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
