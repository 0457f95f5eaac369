#!/usr/bin/env bash
# Soak run: `tandem serve` under steady moderate load (loadgen, 4 keep-alive
# connections, the medium body) for SOAK_MINUTES (default 10), sampling its
# resident memory every 10 s. Reports start, end and max RSS and whether RSS
# grew more than 10% after the first minute (the warm-up: allocator arenas,
# connection buffers). See bench/README.md.
#
#   bash bench/soak.sh
#   SOAK_MINUTES=30 bash bench/soak.sh
#
# Environment: SOAK_MINUTES (1-720), SOAK_CONCURRENCY (4), SOAK_BODY (medium),
# SAMPLE_SECONDS (10), TANDEM_PORT, TANDEM_ADMIN_PORT, SKIP_BUILD=1.
# Writes bench/results/soak.csv (elapsed_s, rss_kib, hwm_kib, cpu_s).
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

SOAK_MINUTES="${SOAK_MINUTES:-10}"
SOAK_CONCURRENCY="${SOAK_CONCURRENCY:-4}"
SOAK_BODY="${SOAK_BODY:-medium}"
SAMPLE_SECONDS="${SAMPLE_SECONDS:-10}"
[[ "$SOAK_MINUTES" =~ ^[0-9]+$ && "$SOAK_MINUTES" -ge 1 && "$SOAK_MINUTES" -le 720 ]] ||
    die "SOAK_MINUTES must be whole minutes between 1 and 720"
[[ "$SAMPLE_SECONDS" =~ ^[0-9]+$ && "$SAMPLE_SECONDS" -ge 1 ]] || die "SAMPLE_SECONDS must be >= 1"
[[ -f "$FIXTURES/$SOAK_BODY.json" ]] || die "no bench body $FIXTURES/$SOAK_BODY.json"
SECONDS_TOTAL=$((SOAK_MINUTES * 60))

need cargo openssl curl jq awk getconf
[[ "${SKIP_BUILD:-0}" == 1 ]] || build_all
check_ports "$TANDEM_PORT" "$TANDEM_ADMIN_PORT"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tandem-soak.XXXXXX")"
LOADGEN_PID=""
cleanup() {
    if [[ -n "$LOADGEN_PID" ]]; then
        kill "$LOADGEN_PID" 2>/dev/null || true
    fi
    finish_run
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_cert "$TMP"
start_tandem "$TMP"
wait_until 30 "tandem serve" "$TANDEM_PID" tandem_ready
sleep 1
IDLE_KIB="$(status_kib "$TANDEM_PID" VmRSS)"

log "soaking for $SOAK_MINUTES min: concurrency $SOAK_CONCURRENCY, $SOAK_BODY body"
timeout $((SECONDS_TOTAL + 60)) "$LOADGEN_BIN" \
    --url "https://127.0.0.1:$TANDEM_PORT/mutate?timeout=10s" \
    --body "$FIXTURES/$SOAK_BODY.json" --concurrency "$SOAK_CONCURRENCY" \
    --duration-secs "$SECONDS_TOTAL" --warmup-secs 0 \
    --ca "$TMP/tls.crt" --server-name localhost --label soak \
    --expect '"patchType":"JSONPatch"' >"$TMP/loadgen.json" &
LOADGEN_PID=$!

mkdir -p "$BENCH_DIR/results"
CSV="$BENCH_DIR/results/soak.csv"
echo "elapsed_s,rss_kib,hwm_kib,cpu_s" >"$CSV"
start=$(date +%s)
cpu0="$(cpu_ticks "$TANDEM_PID")"
# One sample per SAMPLE_SECONDS until the load ends; bounded by the soak time.
while :; do
    now=$(date +%s)
    elapsed=$((now - start))
    alive "$TANDEM_PID" || die "tandem serve died during the soak (KEEP_TMP=1 keeps its log)"
    cpu="$(awk -v t="$(($(cpu_ticks "$TANDEM_PID") - cpu0))" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
    printf '%d,%s,%s,%s\n' "$elapsed" "$(status_kib "$TANDEM_PID" VmRSS)" \
        "$(status_kib "$TANDEM_PID" VmHWM)" "$cpu" >>"$CSV"
    if ! alive "$LOADGEN_PID" || ((elapsed >= SECONDS_TOTAL + 60)); then
        break
    fi
    sleep "$SAMPLE_SECONDS"
done
wait "$LOADGEN_PID" || die "loadgen failed"
LOADGEN_PID=""
result="$(cat "$TMP/loadgen.json")"

# Baseline: the first sample at or after one minute (the first sample when
# the run is shorter than two minutes).
awk -F, -v total="$SECONDS_TOTAL" -v idle="$IDLE_KIB" '
    NR == 1 { next }
    {
        n++; t[n] = $1; r[n] = $2
        if (first == "") first = $2
        if ($2 > max) max = $2
        if (base == "" && (total < 120 || $1 >= 60)) { base = $2; base_t = $1 }
        if (base != "" && $2 > after) after = $2
    }
    END {
        end = r[n]
        printf "idle RSS before load: %.1f MiB\n", idle / 1024
        printf "RSS at start: %.1f MiB, at end: %.1f MiB, max: %.1f MiB (%d samples)\n",
            first / 1024, end / 1024, max / 1024, n
        growth = (end - base) / base * 100
        peak = (after - base) / base * 100
        printf "after the first minute (baseline %.1f MiB at %d s): end %+.1f%%, max %+.1f%%\n",
            base / 1024, base_t, growth, peak
        if (growth > 10) print "RSS GREW more than 10% after the first minute"
        else print "no RSS growth beyond 10% after the first minute"
    }' "$CSV"
jq -r '"load: \(.requests) requests, \(.errors) errors, \(.rps) rps, p50 \(.p50_us) µs, p99 \(.p99_us) µs, max \(.max_us) µs"' <<<"$result"
log "samples in bench/results/soak.csv"
