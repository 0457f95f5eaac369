#!/usr/bin/env bash
# Runs the fuzz targets concurrently in the background, niced, each for
# SECONDS_PER_TARGET (default 1800), logging to fuzz/logs/<target>.log.
# Usage (from anywhere): fuzz/run-all.sh [target...]   (default: review templates engine)
# Extra libFuzzer flags: FUZZ_FLAGS="-dict=fuzz/dicts/k8s.dict" fuzz/run-all.sh engine
# Wait for them with `wait` semantics of your own, or watch the logs; the
# final statistics are at the end of each log (-print_final_stats=1).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_PER_TARGET:-1800}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(review templates engine)
mkdir -p fuzz/logs
cargo +nightly fuzz build
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    extra=()
    case "$t" in review|engine|inject) extra=(-max_len=200000) ;; esac
    nohup nice -n 19 cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
        "${extra[@]}" ${FUZZ_FLAGS:-} >"fuzz/logs/$t.log" 2>&1 &
    echo "$t: pid $! log fuzz/logs/$t.log"
done
