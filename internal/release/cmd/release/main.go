// Command release builds wasmpod's release binaries (see package release):
//
//	go run ./internal/release/cmd/release [-o build/release] [-targets linux/amd64,...]
//	go run ./internal/release/cmd/release -check [-targets linux/amd64]
//
// The version, commit and date come from git (HEAD's tag, else a pseudo-version); a build from
// a source tarball gives all three with -version, -commit and -date. -check rebuilds targets
// in a fresh clone of the commit, with an empty build cache, and compares them byte for byte
// with -o's SHA256SUMS: the release is reproducible, or the command fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/wasmpod/wasmpod/internal/release"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("o", "build/release", "output directory")
	targets := flag.String("targets", "", "comma-separated GOOS/GOARCH list (default: every release target; with -check: linux/amd64)")
	version := flag.String("version", "", "version to stamp (default: from git)")
	commit := flag.String("commit", "", "commit to stamp (default: git HEAD)")
	date := flag.String("date", "", "commit date to stamp, RFC 3339 UTC (default: HEAD's commit time)")
	allowDirty := flag.Bool("allow-dirty", false, "build a tree with uncommitted changes (the version ends in +dirty)")
	check := flag.Bool("check", false, "rebuild -targets from a fresh clone with an empty build cache and compare with -o's SHA256SUMS")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	var ts []release.Target
	if *targets != "" {
		for _, s := range strings.Split(*targets, ",") {
			t, err := release.ParseTarget(strings.TrimSpace(s))
			if err != nil {
				return err
			}
			ts = append(ts, t)
		}
	}
	if *check {
		return release.Check(ctx, release.CheckOptions{Root: root, Out: *out, Targets: ts, Log: os.Stderr})
	}
	stamp := release.Stamp{Version: *version, Commit: *commit, Date: *date}
	if stamp.Commit == "" || stamp.Date == "" || stamp.Version == "" {
		g, err := release.StampFromGit(ctx, root, *allowDirty)
		if err != nil {
			return err
		}
		if stamp.Version == "" {
			stamp.Version = g.Version
		}
		if stamp.Commit == "" {
			stamp.Commit = g.Commit
		}
		if stamp.Date == "" {
			stamp.Date = g.Date
		}
	}
	fmt.Fprintf(os.Stderr, "wasmpod %s (%s, %s) into %s\n", stamp.Version, stamp.Commit, stamp.Date, *out)
	m, err := release.Build(ctx, release.Options{Root: root, Out: *out, Stamp: stamp, Targets: ts, Log: os.Stderr})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "built with %s: %s, %s\n", m.GoVersion, filepath.Join(*out, "SHA256SUMS"), filepath.Join(*out, "release.json"))
	return nil
}
