#!/usr/bin/env bash
# Measures ingest throughput and acknowledgment latency, inclusion-proof
# latency, the server's resident memory, and offline verification time.
# Starts a server in a scratch directory trusting a fresh load key, posts
# RECORDS signed records (~1.5 KB, ed25519; all signed before the clock
# starts, so the generator's signing does not compete with the server) from
# 64 concurrent clients over
# loopback, times PROOFS inclusion proofs, stops the server and runs
# `evident verify` on its data directory (fast and full).
#
#   scripts/load.sh [RECORDS] [PROOFS]     # defaults 200000 and 20000
#
# EVIDENT_LOAD_KEEP=DIR keeps the data directory there for later runs
# (e.g. `evident verify --data DIR`).
# EVIDENT_LOAD_APPLY_EVERY=N makes every Nth record an apply of its change
# (the approval judge's realistic mix; 0, the default, posts plans only).
# EVIDENT_LOAD_GATES=N asks the apply gate N times after posting.
# EVIDENT_LOAD_QUERY_SECONDS=S runs the GraphQL audit queries from 100
# clients for S seconds while ingesting 2,000 records/s (evident query-load).
# EVIDENT_LOAD_POLICIES=false measures with the policies off (the default is on, as in serve).
# EVIDENT_LOAD_WITNESS=1 has a real witness (litewitness, from
# scripts/setup.sh, its key in its own ssh-agent) cosign the checkpoints.
# EVIDENT_LOAD_PROFILE=FILE writes a CPU profile of the server, taken during
# the first EVIDENT_LOAD_PROFILE_SECONDS (default 20) of the posting, to FILE
# (read it with `go tool pprof -top FILE`).
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"
root=$(cd "$(dirname "$0")/.." && pwd)
records=${1:-200000}
proofs=${2:-20000}
work=$(mktemp -d)
# The profile's path, taken relative to where the script was started.
profile_out=$(realpath -m "${EVIDENT_LOAD_PROFILE:-profile.pb.gz}")
pid=
witness_pids=()
cleanup() {
  for p in "${witness_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n "$pid" ]]; then
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true # the data directory moves only once the server has let go
  fi
  if [[ -n "${EVIDENT_LOAD_KEEP:-}" && -d "$work/data" ]]; then
    rm -rf "$EVIDENT_LOAD_KEEP" && mv "$work/data" "$EVIDENT_LOAD_KEEP"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/evident" "$root/cmd/evident"
cd "$work"
./evident keys generate --name load --dir keys >/dev/null
cat >evident.yaml <<YAML
data: data
trust:
  runners:
    - name: load
      publicKey: keys/load.pub
      scope: {environments: ["*"]}
policies:
  enabled: ${EVIDENT_LOAD_POLICIES:-true}  # the server's default; false measures the log alone
YAML
addr=127.0.0.1:${EVIDENT_LOAD_PORT:-8188}
if [[ -n "${EVIDENT_LOAD_WITNESS:-}" ]]; then
  PATH="$("$root/scripts/setup.sh"):$PATH"
  origin=evident.load/witnessed
  ./evident keys generate --name log --origin "$origin" --dir keys >/dev/null
  ssh-keygen -q -t ed25519 -N '' -f witness.key
  ssh-agent -D -a "$work/agent.sock" >/dev/null 2>&1 &
  witness_pids+=($!)
  for _ in $(seq 100); do [[ -S "$work/agent.sock" ]] && break; sleep 0.05; done
  SSH_AUTH_SOCK="$work/agent.sock" ssh-add -q witness.key
  waddr=127.0.0.1:${EVIDENT_LOAD_WITNESS_PORT:-7388}
  litewitness -name witness.load/w1 -db witness.db -ssh-agent "$work/agent.sock" \
    -key "$(ssh-keygen -l -E sha256 -f witness.key.pub | awk '{print $2}')" -listen "$waddr" >witness.log 2>&1 &
  witness_pids+=($!)
  for _ in $(seq 100); do grep -q 'msg=listening' witness.log 2>/dev/null && break; sleep 0.1; done
  witnessctl add-log -db witness.db -origin "$origin" 2>/dev/null
  witnessctl add-key -db witness.db -origin "$origin" -key "$(cat keys/log.vkey)" 2>/dev/null
  cat >>evident.yaml <<YAML
log: {origin: $origin, keyFile: keys/log.key}
witness:
  witnesses:
    - {name: witness.load/w1, url: "http://$waddr", key: $(grep -o 'vkey=[^ ]*' witness.log | cut -d= -f2)}
YAML
fi
profile_args=()
if [[ -n "${EVIDENT_LOAD_PROFILE:-}" ]]; then
  pprof_addr=127.0.0.1:${EVIDENT_LOAD_PPROF_PORT:-6188}
  profile_args=(--pprof "$pprof_addr")
fi
./evident serve --config evident.yaml --listen "$addr" "${profile_args[@]}" >serve.out 2>serve.log &
pid=$!
for _ in $(seq 100); do grep -q '^log key:' serve.out 2>/dev/null && break; sleep 0.1; done

# The peak of anonymous (Go heap, stacks) and file-backed (Badger's mapped
# tables) resident memory, sampled each second.
( peak_anon=0 peak_file=0
  while [[ -r /proc/$pid/status ]]; do
    a=$(awk '/^RssAnon/{print $2}' /proc/$pid/status 2>/dev/null || echo 0)
    f=$(awk '/^RssFile/{print $2}' /proc/$pid/status 2>/dev/null || echo 0)
    ((a > peak_anon)) && peak_anon=$a; ((f > peak_file)) && peak_file=$f
    echo "$peak_anon $peak_file" >"$work/peaks"; sleep 1
  done ) &
# The server's CPU (user + system, in clock ticks) across the load command:
# signing happens before the clock starts, while the server idles.
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
cpu0=$(cpu)
if [[ -n "${EVIDENT_LOAD_PROFILE:-}" ]]; then
  curl -fsS -o "$profile_out" "http://$pprof_addr/debug/pprof/profile?seconds=${EVIDENT_LOAD_PROFILE_SECONDS:-20}" &
  profiling=$!
fi
./evident load --server "http://$addr" --key keys/load.key --records "$records" --concurrency 64 --proofs "$proofs" --presign "$records" \
  --apply-every "${EVIDENT_LOAD_APPLY_EVERY:-0}" --gates "${EVIDENT_LOAD_GATES:-0}"
cpu1=$(cpu)
if [[ -n "${EVIDENT_LOAD_PROFILE:-}" ]]; then
  wait "$profiling" && echo "server CPU profile: $profile_out"
fi
echo "server CPU during the load: $(( (cpu1 - cpu0) * 1000000 / $(getconf CLK_TCK) / records )) µs per record (ingest, proofs and gate checks together)"
if [[ -n "${EVIDENT_LOAD_WITNESS:-}" ]]; then
  sleep 1 # the last checkpoint's round
  echo "witnessed checkpoint: $(curl -fsS "http://$addr/v1/checkpoint/witnessed" | sed -n 2p) of $(curl -fsS "http://$addr/v1/checkpoint" | sed -n 2p) entries signed"
fi
if [[ -n "${EVIDENT_LOAD_QUERY_SECONDS:-}" ]]; then
  echo "audit queries, one client:"
  ./evident query-load --server "http://$addr" --clients 1 --duration "${EVIDENT_LOAD_QUERY_SECONDS}s" ||
    echo "query-load reported errors (above)"
  echo "audit queries, 100 clients while ingesting 2,000 records/s:"
  ./evident query-load --server "http://$addr" --key keys/load.key --clients 100 \
    --duration "${EVIDENT_LOAD_QUERY_SECONDS}s" --ingest-rate 2000 ||
    echo "query-load reported errors (above)"
fi
echo "server memory: $(grep -E '^(VmHWM|VmRSS|RssAnon|RssFile)' /proc/$pid/status | tr -s ' \t' ' ' | paste -sd' ')"
read -r peak_anon peak_file <"$work/peaks"
echo "server memory peaks (sampled): RssAnon $((peak_anon / 1024)) MiB, RssFile $((peak_file / 1024)) MiB"
kill -TERM "$pid"; wait "$pid" || true; pid=
echo "verify --fast (chain, tree, checkpoints):"
./evident verify --data data --fast 2>/dev/null
echo "verify (also every signature and index):"
./evident verify --data data 2>/dev/null
