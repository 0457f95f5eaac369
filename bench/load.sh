#!/usr/bin/env bash
# Load benchmark of `tandem serve` against a minimal reference server
# (TLS + HTTP/1.1 + JSON parsing, fixed answer) and a stricter floor (the same,
# validating the JSON without building it), measured in the same run on the
# same machine. See bench/README.md.
#
#   bash bench/load.sh                 # 10 s per cell + 2 s warm-up
#   DURATION=5 bash bench/load.sh      # quicker, noisier
#
# Environment: DURATION, WARMUP (seconds), BODIES ("small medium large"),
# CONCURRENCY ("1 16 64"), ROUNDS (1: runs per cell and server, alternating
# which goes first; medians reported), REFERENCE_ALLOCATOR (system or
# mimalloc), TANDEM_BUILD (pgo or release), FIXTURES (dir of the bodies),
# TANDEM_PORT, TANDEM_ADMIN_PORT, REFERENCE_PORT, FLOOR_PORT, SKIP_BUILD=1, KEEP_TMP=1.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
BODIES="${BODIES:-small medium large}"
CONCURRENCY="${CONCURRENCY:-1 16 64}"
ROUNDS="${ROUNDS:-1}"
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 9 ]] || die "ROUNDS must be 1 to 9"
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 600 ]] ||
    die "DURATION must be whole seconds between 1 and 600"
[[ "$WARMUP" =~ ^[0-9]+$ && "$WARMUP" -le 60 ]] || die "WARMUP must be whole seconds, at most 60"

need cargo openssl curl jq awk getconf
for body in $BODIES; do
    [[ -f "$FIXTURES/$body.json" ]] || die "no bench body $FIXTURES/$body.json (set FIXTURES)"
done
[[ "${SKIP_BUILD:-0}" == 1 ]] || build_all
check_ports "$TANDEM_PORT" "$TANDEM_ADMIN_PORT" "$REFERENCE_PORT" "$FLOOR_PORT"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench.XXXXXX")"
trap finish_run EXIT
trap 'exit 130' INT TERM

make_cert "$TMP"
start_tandem "$TMP"
start_reference "$TMP"
start_floor "$TMP"
wait_until 30 "tandem serve" "$TANDEM_PID" tandem_ready
wait_until 30 "reference-server" "$REFERENCE_PID" reference_ready
wait_until 30 "floor-server" "$FLOOR_PID" floor_ready
sleep 1
TANDEM_IDLE_KIB="$(status_kib "$TANDEM_PID" VmRSS)"
REFERENCE_IDLE_KIB="$(status_kib "$REFERENCE_PID" VmRSS)"
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# measure NAME PID URL BODY CONCURRENCY [loadgen args]: one loadgen run; prints
# its JSON line with the server's CPU seconds added, and the load generator's
# own (it shares the cores, so what it spends on an answer the server cannot).
measure() {
    local name="$1" pid="$2" url="$3" body="$4" conc="$5" out before after client
    shift 5
    alive "$pid" || die "$name is not running (see its log: KEEP_TMP=1)"
    before="$(cpu_ticks "$pid")"
    out="$( { TIMEFORMAT='%3U %3S'; time timeout $((DURATION + WARMUP + 60)) "$LOADGEN_BIN" \
        --url "$url" --body "$FIXTURES/$body.json" --concurrency "$conc" \
        --duration-secs "$DURATION" --warmup-secs "$WARMUP" \
        --ca "$TMP/tls.crt" --server-name localhost --label "$name" "$@"; } 2>"$TMP/loadgen.err")" ||
        die "loadgen against $name failed: $(cat "$TMP/loadgen.err")"
    after="$(cpu_ticks "$pid")"
    client="$(tail -n 1 "$TMP/loadgen.err" | awk '{ print $1 + $2 }')"
    jq -c --argjson ticks "$((after - before))" --argjson hz "$CLK_TCK" --argjson client "$client" \
        '. + {server: $ARGS.named.name, cpu_s: ($ticks / $hz),
              cpu_s_per_10k: (if .all_requests > 0
                               then ($ticks / $hz) / .all_requests * 10000 else null end),
              loadgen_cpu_s: $client}' \
        --arg name "$name" <<<"$out"
}

measure_reference() {
    measure reference "$REFERENCE_PID" "https://127.0.0.1:$REFERENCE_PORT/mutate" "$1" "$2"
}

measure_floor() {
    measure floor "$FLOOR_PID" "https://127.0.0.1:$FLOOR_PORT/mutate" "$1" "$2"
}

# Tandem must patch every request: anything else is counted as an error.
measure_tandem() {
    measure tandem "$TANDEM_PID" "https://127.0.0.1:$TANDEM_PORT/mutate?timeout=10s" "$1" "$2" \
        --expect '"patchType":"JSONPatch"'
}

# aggregate JSON-LINES...: one line from several rounds of one server: medians
# of rps and percentiles, sums of requests and errors, CPU over all rounds.
aggregate() {
    printf '%s\n' "$@" | jq -sc '
        def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                           else (.[length / 2 - 1] + .[length / 2]) / 2 end;
        (map(.all_requests) | add) as $all
        | (map(.cpu_s) | add) as $cpu
        | (map(.loadgen_cpu_s) | add) as $client
        | .[0] + {rounds: length, rps: (map(.rps) | median),
                  p50_us: (map(.p50_us) | median), p99_us: (map(.p99_us) | median),
                  max_us: (map(.max_us) | max), requests: (map(.requests) | add),
                  errors: (map(.errors) | add), all_requests: $all, cpu_s: $cpu,
                  cpu_s_per_10k: (if $all > 0 then $cpu / $all * 10000 else null end),
                  loadgen_cpu_s_per_10k: (if $all > 0 then $client / $all * 10000 else null end)}'
}

ROWS=()
RAW="$TMP/results.jsonl"
: >"$RAW"
for body in $BODIES; do
    for conc in $CONCURRENCY; do
        refs=()
        tans=()
        floors=()
        for ((round = 1; round <= ROUNDS; round++)); do
            # Rotate which server goes first, so a burst of outside load
            # does not always land on the same one.
            case $((round % 3)) in
            1)
                log "$body body, concurrency $conc, round $round/$ROUNDS: reference, tandem, floor"
                refs+=("$(measure_reference "$body" "$conc")")
                tans+=("$(measure_tandem "$body" "$conc")")
                floors+=("$(measure_floor "$body" "$conc")")
                ;;
            2)
                log "$body body, concurrency $conc, round $round/$ROUNDS: tandem, floor, reference"
                tans+=("$(measure_tandem "$body" "$conc")")
                floors+=("$(measure_floor "$body" "$conc")")
                refs+=("$(measure_reference "$body" "$conc")")
                ;;
            0)
                log "$body body, concurrency $conc, round $round/$ROUNDS: floor, reference, tandem"
                floors+=("$(measure_floor "$body" "$conc")")
                refs+=("$(measure_reference "$body" "$conc")")
                tans+=("$(measure_tandem "$body" "$conc")")
                ;;
            esac
            printf '%s\n%s\n%s\n' "${refs[-1]}" "${tans[-1]}" "${floors[-1]}" >>"$RAW"
        done
        ref="$(aggregate "${refs[@]}")"
        tan="$(aggregate "${tans[@]}")"
        flo="$(aggregate "${floors[@]}")"
        row="$(jq -rn --argjson t "$tan" --argjson r "$ref" --argjson f "$flo" --arg body "$body" --argjson c "$conc" '
            def f1: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
            def f2: if . == null then "-" else (. * 100 | round / 100 | tostring) end;
            def f3: if . == null then "-" else (. * 1000 | round / 1000 | tostring) end;
            def ratio(a; b): if b > 0 then (a / b | f2) else "-" end;
            [ $body, ($c | tostring),
              ($t.rps | f1), ($t.p50_us | tostring), ($t.p99_us | tostring), ($t.cpu_s_per_10k | f3),
              ($r.rps | f1), ($r.p50_us | tostring), ($r.p99_us | tostring), ($r.cpu_s_per_10k | f3),
              ($f.rps | f1), ($f.p99_us | tostring),
              ratio($t.rps; $r.rps), ratio($t.p99_us; $r.p99_us),
              ratio($t.rps; $f.rps), ratio($t.p99_us; $f.p99_us),
              "\($t.loadgen_cpu_s_per_10k | f3) / \($r.loadgen_cpu_s_per_10k | f3)",
              "\($t.errors)/\($r.errors)/\($f.errors)" ]
            | "| " + join(" | ") + " |"')"
        ROWS+=("$row")
        printf '%s\n' "$row" >&2
    done
done

TANDEM_PEAK_KIB="$(status_kib "$TANDEM_PID" VmHWM)"
REFERENCE_PEAK_KIB="$(status_kib "$REFERENCE_PID" VmHWM)"
TANDEM_END_KIB="$(status_kib "$TANDEM_PID" VmRSS)"
REFERENCE_END_KIB="$(status_kib "$REFERENCE_PID" VmRSS)"
LOADAVG_END="$(cut -d' ' -f1-3 /proc/loadavg)"
COMMIT="$(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT_DIR" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    COMMIT="$COMMIT (uncommitted changes)"
fi

report() {
    cat <<EOF
## tandem serve vs. reference server and floor

- date: $STARTED; tandem $COMMIT (build: $TANDEM_BUILD, allocator: mimalloc); reference allocator: $REFERENCE_ALLOCATOR
- machine: $(machine_summary); load average at start $LOADAVG_START, at end $LOADAVG_END
- each cell: ${WARMUP} s warm-up + ${DURATION} s measured, ${ROUNDS} round(s) per server
  (alternating which goes first; medians of rps and percentiles), HTTPS keep-alive
  HTTP/1.1, one connection per unit of concurrency, a fresh request.uid per request;
  loadgen runs on the same machine

The reference parses each body into a \`serde_json::Value\` (allocator: $REFERENCE_ALLOCATOR);
the floor only validates it as JSON, building nothing but the uid (mimalloc).

| body | conc | tandem rps | p50 µs | p99 µs | cpu-s/10k | ref rps | p50 µs | p99 µs | cpu-s/10k | floor rps | p99 µs | rps ×ref | p99 ×ref | rps ×floor | p99 ×floor | loadgen cpu-s/10k t / r | errors t/r/f |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
    printf '%s\n' "${ROWS[@]}"
    cat <<EOF

| memory | tandem | reference |
|---|---|---|
| idle RSS (MiB) | $(kib_to_mib "$TANDEM_IDLE_KIB") | $(kib_to_mib "$REFERENCE_IDLE_KIB") |
| peak RSS under load, VmHWM (MiB) | $(kib_to_mib "$TANDEM_PEAK_KIB") | $(kib_to_mib "$REFERENCE_PEAK_KIB") |
| RSS after the runs (MiB) | $(kib_to_mib "$TANDEM_END_KIB") | $(kib_to_mib "$REFERENCE_END_KIB") |

Targets (issue 11): against the reference built with mimalloc (REFERENCE_ALLOCATOR=mimalloc),
tandem ≥ 1.0× its rps and p99 ≤ 1.0× for every body at concurrency 1, 16 and 64, and within
1.5× of the floor's rps on the small body at concurrency 16; idle RSS under 15 MiB.
EOF
}

mkdir -p "$BENCH_DIR/results"
report | tee "$BENCH_DIR/results/latest.md"
cp "$RAW" "$BENCH_DIR/results/latest.jsonl"
log "wrote bench/results/latest.md and bench/results/latest.jsonl"
