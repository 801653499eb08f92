# Rekor v2 (rekor-tiles) with its POSIX backend, for the anchoring tests: the
# tests start it on 127.0.0.1 with its tiles in a temporary directory. Its
# main package is named posix, so it is built to a name that says what it is.
rekor_tiles_version=v2.3.0
# v2.4 needs github.com/sigstore/fulcio v1.9, which the module proxy here
# refuses. It is built with the project's Go.
if ! installed rekor-tiles-server; then
  echo "setup: building rekor-tiles $rekor_tiles_version with $(go_release)" >&2
  work=$(mktemp -d)
  (
    cd "$work"
    GOFLAGS=-mod=mod GOBIN="$work/bin" \
      go install -trimpath "github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix@$rekor_tiles_version"
  ) >&2
  mv "$work/bin/posix" "$bin/rekor-tiles-server"
  rm -rf "$work"
  mark_installed rekor-tiles-server
fi
