#!/usr/bin/env bash
# The DP quality curve on ml-100k: NDCG@10 and Recall@20 of DP popularity, the DP item model
# (dense) and the DP item model as served (sparsified), for ε in {0.5, 1, 2, 4, 8, ∞} at
# δ = 1e-5, each the mean over the three seed splits and NOISE_SEEDS noise draws, and the
# ratio to the non-private EDLAE (the model served without DP) on the same splits.
# Usage: bench/dp-curve.sh SPLITS_DIR [NOISE_SEEDS]   (needs target/release/candor)
set -euo pipefail
splits=${1:?usage: bench/dp-curve.sh SPLITS_DIR [NOISE_SEEDS]}
seeds=${2:-3}
bin="$(cd "$(dirname "$0")" && pwd)/../target/release/candor"
field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/"; }
reference=$("$bin" eval --splits "$splits" --model edlae --json | field 'ndcg@10')
echo "non-private EDLAE NDCG@10: $reference"
echo
echo "| model | ε | NDCG@10 | Recall@20 | × EDLAE |"
echo "|---|---|---|---|---|"
for model in dp-popularity dp dp-served; do
  for s in $(seq 1 "$seeds"); do
    "$bin" eval --splits "$splits" --model "$model" --epsilon 0.5,1,2,4,8,inf --json \
      --param dp.noise_seed="$s"
  done | awk -v ref="$reference" '
    { match($0, /"model":"[^"]*"/); name = substr($0, RSTART + 9, RLENGTH - 10)
      match($0, /"ndcg@10":[0-9.]+/); n = substr($0, RSTART + 10, RLENGTH - 10)
      match($0, /"recall@20":[0-9.]+/); r = substr($0, RSTART + 12, RLENGTH - 12)
      if (!(name in count)) order[++k] = name
      count[name]++; ndcg[name] += n; recall[name] += r }
    END { for (i = 1; i <= k; i++) { name = order[i]; split(name, p, " ε=")
      printf "| %s | %s | %.4f | %.4f | %.3f× |\n", p[1], p[2], ndcg[name] / count[name],
        recall[name] / count[name], ndcg[name] / count[name] / ref } }'
done
