# staticcheck, run by scripts/test.sh.
install_go_tool staticcheck honnef.co/go/tools/cmd/staticcheck v0.8.2
