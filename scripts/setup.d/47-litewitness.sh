# litewitness and witnessctl, a real c2sp.org/tlog-witness witness, for the
# witness cosignature tests: the tests start it on 127.0.0.1 with its SQLite
# database in a temporary directory. Its Ed25519 key lives in an ssh-agent,
# which the tests start from openssh-client.
torchwood_version=v0.10.0
# Go 1.27: torchwood v0.10 requires it.
build_go=go1.27.3
install_go_tool litewitness filippo.io/torchwood/cmd/litewitness "$torchwood_version"
install_go_tool witnessctl filippo.io/torchwood/cmd/witnessctl "$torchwood_version"
install_debian_packages openssh-client
