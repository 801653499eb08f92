#!/usr/bin/env bash
# Refreshes the GraphiQL assets embedded in the binary (query/graphiql/) from
# the npm registry: GraphiQL's UMD build and the React it runs on, gzipped.
# Run it when upgrading GraphiQL, then `go test ./query -run GraphiQL`.
set -euo pipefail
graphiql=3.8.3 react=18.3.1
out="$(cd "$(dirname "$0")/.." && pwd)/query/graphiql"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "graphiql@$graphiql" "react@$react" "react-dom@$react" >/dev/null
for f in *.tgz; do mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done
gzip -9 -c "graphiql-$graphiql/package/graphiql.min.js" >"$out/graphiql.min.js.gz"
gzip -9 -c "graphiql-$graphiql/package/graphiql.min.css" >"$out/graphiql.min.css.gz"
gzip -9 -c "react-$react/package/umd/react.production.min.js" >"$out/react.production.min.js.gz"
gzip -9 -c "react-dom-$react/package/umd/react-dom.production.min.js" >"$out/react-dom.production.min.js.gz"
{ cat "graphiql-$graphiql/package/LICENSE"; echo; cat "react-$react/package/LICENSE"; } >"$out/LICENSES.txt"
echo "vendored graphiql $graphiql, react $react into $out"
