#!/usr/bin/env bash
# Installs the pinned tools the tests and checks need into the user cache
# directory (outside the clone), so a second run is fast. Prints the bin
# directory to add to PATH. Needs only Go, gcc, the Go module proxy and the
# Debian package registry.
#
# Each tool has its own file in scripts/setup.d/, sourced in name order; it
# pins its version and calls the helpers below, which skip a tool already
# installed at that version.
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"

cache="${EVIDENT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/evident-tools}"
bin="$cache/bin"
mkdir -p "$bin"

installed() { # name version: true when name is in bin at version
  [[ -x "$bin/$1" && "$(cat "$cache/$1.version" 2>/dev/null)" == "$2" ]]
}

mark_installed() { # name version
  echo "$2" >"$cache/$1.version"
}

install_go_tool() { # name module version
  local name=$1 module=$2
  # Built by the project's Go: staticcheck, for one, only reads code of a Go
  # release no newer than its own.
  local version="$3 $GOTOOLCHAIN"
  installed "$name" "$version" && return
  echo "setup: installing $name $version" >&2
  GOBIN="$bin" go install "$module@$3" >&2
  mark_installed "$name" "$version"
}

install_debian_packages() { # package...: installs the ones missing
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "setup: installing Debian packages ${missing[*]}" >&2
  local sudo=
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

for f in "$(dirname "$0")"/setup.d/*.sh; do
  # shellcheck source=/dev/null
  source "$f"
done

echo "$bin"
