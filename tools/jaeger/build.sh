#!/usr/bin/env bash
# Builds Jaeger all-in-one, the tool this module pins, once per version into a cache shared by
# every checkout and test run, and prints the binary's path on stdout:
#
#   ${WASMPOD_CACHE:-$XDG_CACHE_HOME/wasmpod or ~/.cache/wasmpod}/jaeger/<hash of go.sum>/jaeger
#
# go.sum names every module of the build with its hash, so a new pin is a new directory. A
# lock (flock) makes concurrent callers wait for one build instead of running several: CI
# starts this script in the background at its start (.ci/run), and the tracing test
# (deploy/tracing) calls it again, which waits for that build and then finds the binary. A
# failed build leaves no binary (the next call tries again); its output goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hash=$(sha256sum "$here/go.sum" | cut -c1-16)
base=${WASMPOD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmpod}
dir=$base/jaeger/$hash
bin=$dir/jaeger
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9
if [ ! -x "$bin" ]; then
  start=$(date +%s)
  echo "building jaeger ($hash) into $dir" >&2
  rm -f "$bin.tmp"
  # GOFLAGS and GOWORK from the caller must not change what is built: this module alone.
  (cd "$here" && GOWORK=off GOFLAGS='-mod=readonly -buildvcs=false' go build -trimpath -ldflags='-s -w' -o "$bin.tmp" github.com/jaegertracing/jaeger/cmd/jaeger) >&2
  mv "$bin.tmp" "$bin"
  echo "built jaeger in $(( $(date +%s) - start ))s" >&2
else
  echo "jaeger cached: $bin" >&2
fi
echo "$bin"
