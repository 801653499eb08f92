# staticcheck, run by scripts/test.sh.
# Built by the project's Go: staticcheck reads code of a Go release no newer than its own.
install_go_tool staticcheck honnef.co/go/tools/cmd/staticcheck v0.8.2
