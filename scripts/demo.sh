#!/usr/bin/env bash
# A walk through Evident on embedded defaults: starts `evident serve` in a
# scratch directory, posts the signed records of one production change
# (CHG-2026-07-03-1421: change opened, plan, policy decision, approval, apply,
# verification), shows a refusal, proves one entry's inclusion against the
# pinned log key, stops the server, and verifies the whole log offline.
set -euo pipefail
source "$(dirname "$0")/toolchain.sh"
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/evident" "$root/cmd/evident"
cd "$work"
addr=127.0.0.1:${EVIDENT_DEMO_PORT:-8089}
url=http://$addr
./evident serve --listen "$addr" --operator demo@example.com >serve.out 2>serve.log &
pid=$!
for _ in $(seq 100); do grep -q '^log key:' serve.out 2>/dev/null && break; sleep 0.1; done
cat serve.out
logkey=$(sed -n 's/^log key: //p' serve.out)

echo; echo "== posting the change flow with the development runner key"
for kind in change.opened plan.created policy.evaluated approval.granted apply.started apply.completed verification.completed; do
  printf '%-24s ' "$kind"
  ./evident record post --server "$url" --key evident-data/dev-runner.key \
    --file "$root/evidence/testdata/kinds/$kind.json" | tr -d '\n ' | cut -c1-100
done

echo; echo "== a runner may not write the log's own records (expect a refusal)"
./evident record post --server "$url" --key evident-data/dev-runner.key \
  --file "$root/evidence/testdata/kinds/bootstrap.json" || true

echo; echo "== inclusion proof of the approval (entry 4), checked against the pinned log key"
./evident proof --server "$url" --index 4 --log-key "$logkey" >proof.json
head -c 400 proof.json; echo " ..."

echo; echo "== stop the server and verify the whole log offline"
kill -TERM "$pid"; wait "$pid" || true; pid=
./evident verify --data evident-data --log-key "$logkey"
