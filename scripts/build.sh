#!/usr/bin/env bash
# Builds the evident binary the container image ships, reproducibly: a
# static binary (no cgo), paths trimmed, no VCS stamp, the version given
# (default: the commit, or "devel" outside a checkout). The same sources,
# Go release and version give the same bytes. The Dockerfile runs this.
#
#   scripts/build.sh OUT [VERSION]
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: scripts/build.sh OUT [VERSION]}
version=${2:-$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo devel)}
cd "$root"
CGO_ENABLED=0 go build -trimpath -buildvcs=false \
  -ldflags "-s -w -buildid= -X main.version=$version" -o "$out" ./cmd/evident
