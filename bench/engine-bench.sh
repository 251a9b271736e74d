#!/usr/bin/env bash
# Ingestion through the engine (consent check, encryption, durable commit), 1,000,000 events
# in batches of 10,000 over 2,000 consenting subjects, on SQLite and on PostgreSQL, from one
# and from two concurrent clients, REPEAT times each (default 3).
# Usage: bench/engine-bench.sh   (needs target/release/candor; PostgreSQL on 127.0.0.1:5432)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../target/release/candor"
repeat=${REPEAT:-3}
for backend in sqlite postgres; do
  for clients in 1 2; do
    for _ in $(seq 1 "$repeat"); do
      args=()
      if [ "$backend" = postgres ]; then
        psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS candor_bench" postgres 2>/dev/null
        psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE candor_bench" postgres
        args=(--store postgres://postgres@127.0.0.1:5432/candor_bench)
      fi
      RUST_LOG=warn "$bin" bench ingest --events 1000000 --batch 10000 --subjects 2000 --concurrency "$clients" "${args[@]}" 2>/dev/null | tail -1
    done
  done
done
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS candor_bench" postgres 2>/dev/null || true
