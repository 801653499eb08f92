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
go test -race -short -count=1 ./ledger/ ./ingest/ ./verifier/ ./policies/ ./tiles/

echo "== tests"
go test -count=1 -timeout 60m ./...
