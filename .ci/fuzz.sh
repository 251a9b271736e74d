#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers of untrusted input (cargo fuzz, libFuzzer, nightly,
# AddressSanitizer): the TC-string decoder, the policy parser and the event batch splitter,
# each for FUZZ_SECONDS (default 60) from the committed synthetic corpus. Fails on a crash.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
for target in tcf policy events; do
  work=$(mktemp -d)
  echo "-- $target (${seconds}s)"
  # The first corpus directory is written to; the committed one is only read.
  cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 2>&1 | tail -40
  rm -rf "$work"
done
