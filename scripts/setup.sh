#!/usr/bin/env bash
# Installs the pinned tools the tests and checks need into the user cache
# directory (outside the clone), so a second run is fast. Prints the bin
# directory to add to PATH. Needs only Go, gcc, the Go module proxy and the
# Debian package registry.
#
# Each tool has its own file in scripts/setup.d/, sourced in name order; it
# pins its version and the Go release that builds it, and calls the helpers
# below, which skip a tool already built from exactly the same inputs.
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"

cache="${EVIDENT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/evident-tools}"
bin="$cache/bin"
mkdir -p "$bin"
setup_file="$(realpath "${BASH_SOURCE[0]}")"

# A tool's marker is a digest of everything its build depends on: this file
# (the helpers, their flags), the tool's own setup.d file (its version, tags
# and flags) and the Go release that builds it. A marker naming only the
# version once kept a tool built by an older Go installed after the move to
# a newer one, and hid that the newer one could not build it.
stamp() { # go-release: the marker of the tools of the setup.d file being read
  { cat "$setup_file" "$tool_file"; echo "$1"; } | sha256sum | cut -d' ' -f1
}

# The Go release that builds a tool, chosen in its setup.d file as build_go
# (a toolchain name such as go1.26.8); the project's own by default.
go_release() {
  GOTOOLCHAIN="${build_go:-$GOTOOLCHAIN}" go env GOVERSION
}

installed() { # name: true when name is in bin, built from these inputs
  [[ -x "$bin/$1" && "$(cat "$cache/$1.stamp" 2>/dev/null)" == "$(stamp "$(go_release)")" ]]
}

mark_installed() { # name
  stamp "$(go_release)" >"$cache/$1.stamp"
}

install_go_tool() { # name module version
  local name=$1 module=$2 version=$3
  installed "$name" && return
  echo "setup: installing $name $version with $(go_release)" >&2
  GOTOOLCHAIN="${build_go:-$GOTOOLCHAIN}" GOBIN="$bin" go install "$module@$version" >&2
  mark_installed "$name"
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

for tool_file in "$(dirname "$setup_file")"/setup.d/*.sh; do
  build_go=
  # shellcheck source=/dev/null
  source "$tool_file"
done

echo "$bin"
