#!/usr/bin/env bash
# Runs every check and test of the project: formatting, go vet, staticcheck,
# the race detector on the concurrent packages, and the whole test suite
# against real components (Badger, real processes, real HTTP on 127.0.0.1).
# Tools are installed by scripts/setup.sh into the user cache.
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"
cd "$(dirname "$0")/.."

bin=$(scripts/setup.sh)
export PATH="$bin:$PATH"
# Tests that need an installed tool (OpenTofu, MinIO, promtool, ...) fail
# instead of skipping when it is missing.
export EVIDENT_REQUIRE_TOOLS=1

# Everything builds as the image's binary does (scripts/build.sh: no cgo,
# trimmed paths), so the image test reuses the packages the tests compiled
# instead of building every dependency a second time (minutes on a cold
# cache). The race detector needs cgo and says so below.
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go') 2>&1 || true)
if [[ -n "$unformatted" ]]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
staticcheck ./...

echo "== govulncheck"
# The database setup.sh built, beside its bin directory: no network needed.
govulncheck -db "file://$(dirname "$bin")/vulndb" ./...

echo "== race detector (short mode)"
CGO_ENABLED=1 go test -race -short -count=1 ./ledger/ ./ingest/ ./verifier/ ./audit/ ./policies/ ./replica/ ./internal/progress/ ./witness/

echo "== tests"
go test -count=1 -timeout 60m ./...
