#!/usr/bin/env bash
# Hyperparameter search on validation splits carved from each train file (never the test
# files): prints NDCG@10 / Recall@20 per setting, best last per model.
# Usage: bench/tune.sh SPLITS_DIR   (needs target/release/candor)
set -euo pipefail
splits=${1:?usage: bench/tune.sh SPLITS_DIR}
bin="$(cd "$(dirname "$0")" && pwd)/../target/release/candor"
run() { # model, params...
  local model=$1; shift
  local args=(); for p in "$@"; do args+=(--param "$p"); done
  local line; line=$("$bin" eval --splits "$splits" --validate --model "$model" --json "${args[@]}")
  echo "$model $* $(echo "$line" | sed -E 's/.*"ndcg@10":([0-9.]+),"recall@20":([0-9.]+).*/ndcg@10=\1 recall@20=\2/')"
}
{ for k in 50 100 200 400; do for s in 0 10 50 100; do run knn knn.neighbours=$k knn.shrink=$s; done; done; } | tee /dev/stderr | sed -E 's/(.*ndcg@10=)([0-9.]+)(.*)/\2 \1\2\3/' | sort -n | tail -1 | cut -d' ' -f2- | sed 's/^/best: /'
{ for l in 5 10 20 30 50; do for a in 0.5 1 2 4; do run als als.lambda=$l als.alpha=$a; done; done; } | tee /dev/stderr | sed -E 's/(.*ndcg@10=)([0-9.]+)(.*)/\2 \1\2\3/' | sort -n | tail -1 | cut -d' ' -f2- | sed 's/^/best: /'
{ for l in 100 200 300 500 800 1200; do run ease ease.lambda=$l; done; } | tee /dev/stderr | sed -E 's/(.*ndcg@10=)([0-9.]+)(.*)/\2 \1\2\3/' | sort -n | tail -1 | cut -d' ' -f2- | sed 's/^/best: /'
{ for l in 10 50 100 200 400; do for p in 0.1 0.2 0.33 0.5; do run edlae edlae.lambda=$l edlae.dropout=$p; done; done; } | tee /dev/stderr | sed -E 's/(.*ndcg@10=)([0-9.]+)(.*)/\2 \1\2\3/' | sort -n | tail -1 | cut -d' ' -f2- | sed 's/^/best: /'
