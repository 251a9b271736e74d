#!/usr/bin/env bash
# Under load, on the demo (SQLite): how long GET /v1/audit/verify (incremental, and full) and a
# DP query take while wrk drives recommendations with 16 connections, then an RSS soak: the
# server's resident memory sampled every minute under continuous recommendation load.
# Usage: bench/soak.sh [soak-minutes]   (0 skips the soak)
# Needs: target/release/candor (cargo build --release), wrk, curl.
set -euo pipefail
minutes=${1:-30}
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../target/release/candor"
port=18282
dir=$(mktemp -d)
cleanup() {
  [ -n "${wrk_pid:-}" ] && kill "$wrk_pid" 2>/dev/null || true
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
RUST_LOG=warn "$bin" demo --data-dir "$dir" --listen 127.0.0.1:$port > "$dir/demo.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q '^admin key:' "$dir/demo.log" 2>/dev/null && break; sleep 0.5; done
KEY=$(awk '/^admin key:/ {print $3}' "$dir/demo.log")
export KEY SUBJECTS=1000
url=http://127.0.0.1:$port
auth=(-H "Authorization: Bearer $KEY")
timed() { curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "${auth[@]}" "$@"; }

echo "-- idle: first verification (whole log), then incremental"
timed "$url/v1/audit/verify"
timed "$url/v1/audit/verify"
entries=$(curl -s "${auth[@]}" "$url/v1/audit/verify?full=true" | sed 's/.*"tree_size":\([0-9]*\).*/\1/')
echo "log entries: $entries"

echo "-- under load (wrk -t2 -c16 recommendations, 30 s): verify and DP queries every 2 s"
wrk -t2 -c16 -d30s --latency -s "$here/wrk-recommend.lua" "$url" > "$dir/wrk.txt" &
wrk_pid=$!
sleep 3
for _ in $(seq 1 10); do
  echo "verify incremental: $(timed "$url/v1/audit/verify")"
  echo "dp top_k query:     $(timed -X POST -H 'Content-Type: application/json' \
    -d '{"kind":"top_k","epsilon":0.05,"k":5}' "$url/v1/analytics/query")"
  sleep 2
done
echo "verify full:        $(timed "$url/v1/audit/verify?full=true")"
wait "$wrk_pid" || true
wrk_pid=
grep -E 'req/s|99%' "$dir/wrk.txt" || true

[ "$minutes" -gt 0 ] || exit 0
echo "-- RSS soak: wrk -t2 -c16 recommendations for $minutes min, RSS every minute (KiB)"
wrk -t2 -c16 -d"$((minutes * 60 + 30))s" -s "$here/wrk-recommend.lua" "$url" > "$dir/soak.txt" &
wrk_pid=$!
for m in $(seq 0 "$minutes"); do
  echo "minute $m: rss $(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
  [ "$m" -lt "$minutes" ] && sleep 60
done
wait "$wrk_pid" || true
wrk_pid=
grep -E 'req/s' "$dir/soak.txt" || true
