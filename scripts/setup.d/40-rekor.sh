# Rekor and the Trillian log behind it, for the anchoring tests (the tests
# start them on 127.0.0.1 in a temporary directory). Versions are the ones
# rekor v1.5.4's go.mod requires: newer rekor needs a newer Go.
# MariaDB is Trillian's storage and also holds Rekor's search index, so
# redis-server is not needed.
rekor_version=v1.5.4
trillian_version=v1.7.3
# Go 1.26: Trillian v1.7.3 pins an x/net that builds its HTTP/2 server, which gRPC needs, only before Go 1.27.
build_go=go1.26.8
install_go_tool rekor-server github.com/sigstore/rekor/cmd/rekor-server "$rekor_version"
install_go_tool trillian_log_server github.com/google/trillian/cmd/trillian_log_server "$trillian_version"
install_go_tool trillian_log_signer github.com/google/trillian/cmd/trillian_log_signer "$trillian_version"
install_go_tool createtree github.com/google/trillian/cmd/createtree "$trillian_version"
install_debian_packages mariadb-server
# Trillian's MySQL schema ships in its module; the tests load it from here.
if ! [[ -f "$cache/trillian-$trillian_version/storage.sql" ]]; then
  mkdir -p "$cache/trillian-$trillian_version"
  trillian_dir=$(cd "$cache" && go mod download -json "github.com/google/trillian@$trillian_version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  cp "$trillian_dir/storage/mysql/schema/storage.sql" "$cache/trillian-$trillian_version/storage.sql"
fi
