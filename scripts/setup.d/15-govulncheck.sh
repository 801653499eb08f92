# govulncheck, run by scripts/test.sh, and the Go vulnerability database it
# reads offline. vuln.go.dev cannot be reached from a build machine, but the
# database's source is a module the proxy serves, golang.org/x/vulndb, and its
# indexdb command builds the database from it (about 20 seconds). Pinned: a
# newer database, with a finding the project has not answered yet, is an
# upgrade like any other.
# Built by the project's Go: govulncheck reads code of a Go release no newer
# than its own.
vulndb_version=v0.0.0-20261105234957-e22db6528018
install_go_tool govulncheck golang.org/x/vuln/cmd/govulncheck v1.9.0
install_go_tool indexdb golang.org/x/vulndb/cmd/indexdb "$vulndb_version"
if ! [[ -d "$cache/vulndb" && "$(cat "$cache/vulndb.stamp" 2>/dev/null)" == "$(stamp "$(go_release)")" ]]; then
  echo "setup: building the Go vulnerability database $vulndb_version" >&2
  vulndb_src=$(cd "$cache" && go mod download -json "golang.org/x/vulndb@$vulndb_version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  rm -rf "$cache/vulndb"
  "$bin/indexdb" -vulns "$vulndb_src/data/osv" -out "$cache/vulndb" >&2
  mark_installed vulndb
fi
