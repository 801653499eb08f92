# Sourced by the other scripts: the go command runs the Go release go.mod
# names. A machine's own Go (with GOTOOLCHAIN=local) does not switch on
# go.mod's line by itself; with GOTOOLCHAIN set, the go command fetches that
# release from the module proxy once (about 10 seconds) and caches it.
# Go 1.27.3 is the release whose standard library govulncheck finds clean.
GOTOOLCHAIN="go$(sed -n 's/^go //p' "$(dirname "${BASH_SOURCE[0]}")/../go.mod")"
export GOTOOLCHAIN
