#!/usr/bin/env bash
# Soak: runs a server for MINUTES under steady load, ingesting RATE records/s
# (default 2,000) while CLIENTS concurrent clients (default 20) run the
# GraphQL audit queries (evident query-load), and prints the server's
# memory every SAMPLE seconds. It fails if any query or post fails, if the
# server dies, if the anonymous memory (Go heap and stacks) of the last
# third of the run exceeds the middle third's peak by more than 25%, or if
# the log does not verify afterwards.
#
#   scripts/soak.sh [MINUTES] [RATE] [CLIENTS]    # defaults 30, 2000, 20
#
# EVIDENT_SOAK_SAMPLE=S samples memory every S seconds (default 30).
# EVIDENT_SOAK_KEEP=DIR keeps the data directory there.
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"
root=$(cd "$(dirname "$0")/.." && pwd)
minutes=${1:-30}
rate=${2:-2000}
clients=${3:-20}
sample=${EVIDENT_SOAK_SAMPLE:-30}
work=$(mktemp -d)
pid= sampler=
cleanup() {
  [[ -n "$sampler" ]] && kill "$sampler" 2>/dev/null
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null
  if [[ -n "${EVIDENT_SOAK_KEEP:-}" && -d "$work/data" ]]; then
    rm -rf "$EVIDENT_SOAK_KEEP" && mv "$work/data" "$EVIDENT_SOAK_KEEP"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/evident" "$root/cmd/evident"
cd "$work"
./evident keys generate --name soak --dir keys >/dev/null
cat >evident.yaml <<YAML
data: data
listen: 127.0.0.1:0
trust:
  runners:
    - name: soak
      publicKey: keys/soak.pub
      scope: {environments: ["*"]}
YAML
./evident serve --config evident.yaml >serve.out 2>serve.log &
pid=$!
for _ in $(seq 300); do grep -q '^log key:' serve.out 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^evident serving on //p' serve.out)
[[ -n "$url" ]] || { echo "serve did not start:"; cat serve.log; exit 1; }
echo "soak: ${minutes}m at ${rate} records/s with ${clients} query clients against $url (pid $pid)"

# One line per sample: elapsed seconds, resident memory split into
# anonymous (heap, stacks) and file-backed (Badger's mapped tables), the
# peak so far, and the log's size.
start=$(date +%s)
( printf '%8s %10s %10s %10s %10s %10s\n' seconds rss_mib anon_mib file_mib hwm_mib entries
  while [[ -r /proc/$pid/status ]]; do
    read -r rss anon file hwm < <(awk '/^VmRSS/{r=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} /^VmHWM/{h=$2} END{print r, a, f, h}' /proc/$pid/status)
    n=$(curl -fsS "$url/healthz" 2>/dev/null | awk '{print $2}' || echo '?')
    printf '%8d %10d %10d %10d %10d %10s\n' $(( $(date +%s) - start )) $((rss / 1024)) $((anon / 1024)) $((file / 1024)) $((hwm / 1024)) "$n"
    sleep "$sample"
  done ) | tee memory.txt &
sampler=$!

status=0
./evident query-load --server "$url" --key keys/soak.key --clients "$clients" \
  --duration "${minutes}m" --ingest-rate "$rate" | tee queries.txt || status=$?
kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; sampler=
if ! kill -0 "$pid" 2>/dev/null; then
  echo "FAIL: the server died"; tail -20 serve.log; exit 1
fi
[[ $status == 0 ]] || { echo "FAIL: query-load reported errors (exit $status)"; status=1; }
errors=$(grep -c 'level=ERROR' serve.log || true)
echo "server log errors: $errors"
if [[ $errors != 0 ]]; then grep 'level=ERROR' serve.log | head -5; status=1; fi
# The rate held: at least 90% of the target over the whole run.
achieved=$(sed -n 's/^ingest meanwhile: [0-9]* records acknowledged (\([0-9]*\)\/s.*/\1/p' queries.txt)
if [[ -z "$achieved" || $achieved -lt $((rate * 9 / 10)) ]]; then
  echo "FAIL: ingest held ${achieved:-?} records/s, below 90% of the target $rate"; status=1
fi

# Flat memory: the last third's anonymous peak against the middle third's
# (the first third is warm-up: caches and memtables filling).
awk -v status="$status" 'NR > 1 { anon[++n] = $3 }
  END {
    if (n < 6) { print "memory: too few samples to judge flatness (" n ")"; exit 0 }
    a = int(n / 3); b = int(2 * n / 3)
    for (i = a + 1; i <= b; i++) if (anon[i] > mid) mid = anon[i]
    for (i = b + 1; i <= n; i++) if (anon[i] > last) last = anon[i]
    growth = (last - mid) * 100 / (mid > 0 ? mid : 1)
    printf "memory: anonymous peak %d MiB in the middle third, %d MiB in the last third (%+.0f%%)\n", mid, last, growth
    if (growth > 25) { print "FAIL: memory keeps growing"; exit 1 }
  }' memory.txt || status=1

kill -TERM "$pid"; wait "$pid" || { echo "FAIL: serve did not stop cleanly"; status=1; }; pid=
echo "verify --fast:"
./evident verify --data data --fast 2>/dev/null || status=1
[[ $status == 0 ]] && echo "soak: OK" || echo "soak: FAILED"
exit "$status"
