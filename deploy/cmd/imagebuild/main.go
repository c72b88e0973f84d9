// Command imagebuild writes wasmpod's container image (see package image) from a release
// directory, without a Docker daemon:
//
//	go run ./cmd/imagebuild -release ../build/release -o ../build/image/wasmpod.oci.tar \
//	    [-platforms linux/amd64,linux/arm64] [-module hello.wasm ...] [-tag v0.3.0]
//
// The output is an OCI image layout in one tar file. Load or push it with any OCI tool, e.g.
// `skopeo copy oci-archive:build/image/wasmpod.oci.tar docker://REGISTRY/wasmpod:TAG`,
// `podman load -i ...` or `kind load image-archive ...`.
package main

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/wasmpod/wasmpod/deploy/image"
)

type modules []image.Module

func (m *modules) String() string { return fmt.Sprint(*m) }

// Set takes PATH or PATH=NAME.
func (m *modules) Set(s string) error {
	src, name, _ := strings.Cut(s, "=")
	*m = append(*m, image.Module{Src: src, Name: name})
	return nil
}

func main() {
	var cfg image.Config
	var mods modules
	var plats string
	flag.StringVar(&cfg.Release, "release", "build/release", "release directory (make release)")
	flag.StringVar(&cfg.Out, "o", "build/image/wasmpod.oci.tar", "OCI layout tar file to write")
	flag.StringVar(&plats, "platforms", "", "comma-separated linux/ARCH list (default: every linux binary of the release)")
	flag.StringVar(&cfg.Tag, "tag", "", "tag naming the image in the layout (default: the release version)")
	flag.Var(&mods, "module", "a .wasm file to add under "+image.ModulesDir+" (PATH or PATH=NAME; repeatable)")
	flag.Parse()
	if plats != "" {
		cfg.Platforms = slices.DeleteFunc(strings.Split(plats, ","), func(s string) bool { return s == "" })
	}
	cfg.Modules = mods
	res, err := image.Build(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
	fmt.Printf("%s  %s (tag %s)\n", res.Digest, cfg.Out, res.Tag)
	for _, p := range slices.Sorted(maps.Keys(res.Platforms)) {
		fmt.Printf("  %s  %s\n", res.Platforms[p], p)
	}
}
