# Sourced by the other scripts: the go command runs the Go release go.mod's
# toolchain line names, the one whose standard library govulncheck finds
# clean. A Go set to GOTOOLCHAIN=local (as some machines are) ignores that
# line; with GOTOOLCHAIN set, the go command fetches the release from the
# module proxy once (a few seconds) and caches it.
GOTOOLCHAIN="$(sed -n 's/^toolchain //p' "$(dirname "${BASH_SOURCE[0]}")/../go.mod")"
export GOTOOLCHAIN
