#!/usr/bin/env bash
# HTTP benchmarks: starts `candor serve` on a fresh store, sets up a catalogue and consenting
# subjects through the API, then drives POST /v1/events with wrk from a second process:
# batches of 1,000 and single events. Finally tops the store up to 1,000,000 events and reads
# the server's RSS. Usage: bench/http-bench.sh [sqlite|postgres] [seconds]
# Needs: target/release/candor (cargo build --release), wrk (apt-get install wrk), curl.
set -euo pipefail
backend=${1:-sqlite}
secs=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../target/release/candor"
port=18181
dir=$(mktemp -d)
export SUBJECTS=1000 ITEMS=20000 BASE=$(( $(date +%s) - 86400 ))
store_args=()
if [ "$backend" = postgres ]; then
  db="candor_bench_$$"
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" postgres
  store_args=(--store "postgres://postgres@127.0.0.1:5432/$db")
fi
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  [ "$backend" = postgres ] && psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" postgres || true
}
trap cleanup EXIT

RUST_LOG=warn "$bin" serve --data-dir "$dir" --listen 127.0.0.1:$port "${store_args[@]}" > "$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 50); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.2; done
KEY=$("$bin" keys create --role service --data-dir "$dir" "${store_args[@]}")
export KEY
url=http://127.0.0.1:$port
auth=(-H "Authorization: Bearer $KEY" -H "Content-Type: application/json")

python3 - "$ITEMS" > "$dir/items.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"items": [{"id": f"bench-item-{i}", "title": f"Item {i}", "category": f"c{i % 20}"} for i in range(n)]}))
PY
python3 -c "
import json
d = json.load(open('$dir/items.json'))
for k in range(0, len(d['items']), 10000):
    json.dump({'items': d['items'][k:k+10000]}, open('$dir/items-%d.json' % k, 'w'))
"
for f in "$dir"/items-*.json; do curl -sf "${auth[@]}" -X POST --data-binary @"$f" $url/v1/items >/dev/null; done
for s in $(seq 0 $((SUBJECTS - 1))); do
  curl -sf "${auth[@]}" -X PUT -d '{"purposes":{"personalize.content.profiling":true}}' $url/v1/subjects/bench-user-$s/consent >/dev/null
done
echo "backend: $backend; $ITEMS items, $SUBJECTS consenting subjects"

echo "-- batches of 1,000 events (wrk -t2 -c4, ${secs}s)"
RUN=1 BATCH=1000 wrk -t2 -c4 -d"${secs}s" --timeout 30s -s "$here/wrk-events.lua" $url | tail -2
for c in 16 32; do
  echo "-- single events (wrk -t2 -c$c, ${secs}s)"
  RUN=$((c / 8)) BATCH=1 wrk -t2 -c$c -d"${secs}s" -s "$here/wrk-events.lua" $url | tail -2
done

stored=$(curl -sf $url/metrics | awk '/^candor_events_total\{outcome="accepted"/ {print $2}')
echo "-- events stored so far: $stored; topping up to at least 1,000,000"
run=5
while [ "${stored%.*}" -lt 1000000 ]; do
  run=$((run + 1))
  RUN=$run BATCH=1000 wrk -t2 -c4 -d5s --timeout 30s -s "$here/wrk-events.lua" $url > /dev/null
  stored=$(curl -sf $url/metrics | awk '/^candor_events_total\{outcome="accepted"/ {print $2}')
done
rss=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)
echo "server RSS after $stored events: $((rss / 1024)) MiB"
