#!/usr/bin/env bash
# Installs the pinned tools the tests and checks need into the user cache
# directory (outside the clone), so a second run is fast. Prints the bin
# directory to add to PATH. Needs only Go and the Go module proxy.
set -euo pipefail

STATICCHECK_VERSION=v0.8.2 # honnef.co/go/tools

cache="${EVIDENT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/evident-tools}"
bin="$cache/bin"
mkdir -p "$bin"

install_go_tool() { # name module version
  local name=$1 module=$2 version=$3 stamp="$cache/$1.version"
  if [[ -x "$bin/$name" && "$(cat "$stamp" 2>/dev/null)" == "$version" ]]; then
    return
  fi
  echo "setup: installing $name $version" >&2
  GOBIN="$bin" go install "$module@$version"
  echo "$version" >"$stamp"
}

install_go_tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION"

echo "$bin"
