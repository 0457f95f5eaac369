# Shared by bench/load.sh and bench/soak.sh (sourced, not run).
# Everything listens on 127.0.0.1 only; every wait is bounded.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$BENCH_DIR/.." && pwd)"
FIXTURES="${FIXTURES:-$ROOT_DIR/tests/fixtures/bench}"
# How tandem is built: pgo (bench/pgo.sh, as the container image is) or
# release (a plain `cargo build --release`, for a machine without LLVM's
# llvm-profdata).
TANDEM_BUILD="${TANDEM_BUILD:-pgo}"
case "$TANDEM_BUILD" in
pgo) TANDEM_BIN="${TANDEM_BIN:-$ROOT_DIR/target/pgo/tandem}" ;;
release) TANDEM_BIN="${TANDEM_BIN:-$ROOT_DIR/target/release/tandem}" ;;
*) printf 'error: TANDEM_BUILD must be pgo or release\n' >&2; exit 1 ;;
esac
LOADGEN_BIN="$BENCH_DIR/target/release/loadgen"
REFERENCE_BIN="$BENCH_DIR/target/release/reference-server"
FLOOR_BIN="$BENCH_DIR/target/release/floor-server"

TANDEM_PORT="${TANDEM_PORT:-18443}"
TANDEM_ADMIN_PORT="${TANDEM_ADMIN_PORT:-19090}"
REFERENCE_PORT="${REFERENCE_PORT:-18444}"
FLOOR_PORT="${FLOOR_PORT:-18445}"

# The reference server's allocator: system (what a minimal server uses) or
# mimalloc (Tandem's), to tell the allocator's share of a difference.
REFERENCE_ALLOCATOR="${REFERENCE_ALLOCATOR:-system}"

CLK_TCK="$(getconf CLK_TCK)"
PIDS=()

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ "$REFERENCE_ALLOCATOR" == system || "$REFERENCE_ALLOCATOR" == mimalloc ]] ||
    die "REFERENCE_ALLOCATOR must be system or mimalloc"

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
    done
}

build_all() {
    if [[ "$TANDEM_BUILD" == pgo ]]; then
        log "building tandem (release, profile-guided: bench/pgo.sh)"
        local status=0
        bash "$BENCH_DIR/pgo.sh" >/dev/null || status=$?
        if [[ "$status" == 3 ]]; then
            # No llvm-profdata that reads this compiler's profiles (pgo.sh
            # said why): measure a plain release build instead, and say so.
            log "NOTE: no profile-guided build; measuring a plain release build (TANDEM_BUILD=release), which spends about 30% more CPU per small admission than the image's binary (bench/README.md)"
            TANDEM_BUILD=release
            TANDEM_BIN="$ROOT_DIR/target/release/tandem"
        elif [[ "$status" != 0 ]]; then
            die "bench/pgo.sh failed"
        fi
    fi
    if [[ "$TANDEM_BUILD" == release ]]; then
        log "building tandem (release)"
        (cd "$ROOT_DIR" && cargo build --release --locked --quiet)
    fi
    log "building the bench tools (release; reference allocator: $REFERENCE_ALLOCATOR)"
    local features=()
    [[ "$REFERENCE_ALLOCATOR" == mimalloc ]] && features=(--features mimalloc)
    cargo build --release --locked --quiet --manifest-path "$BENCH_DIR/Cargo.toml" "${features[@]}"
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

check_ports() {
    local p
    for p in "$@"; do
        port_free "$p" || die "127.0.0.1:$p is in use (set TANDEM_PORT, TANDEM_ADMIN_PORT, REFERENCE_PORT)"
    done
}

# Self-signed P-256 certificate for localhost and 127.0.0.1 into $1. Not a CA
# (CA:FALSE), so rustls accepts it as an end entity that is its own anchor.
make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$1/tls.key" -out "$1/tls.crt" -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" >/dev/null 2>&1 \
        || die "openssl could not make a certificate"
}

# start_tandem TMPDIR [CONFIG [SERVE ARGS...]]: starts $TANDEM_BIN serve in the
# background, sets TANDEM_PID. Offline: templates from CONFIG only (default
# bench/templates), native sidecars assumed, and no cluster connection even
# when run inside a pod. Its log goes to TMPDIR/tandem.log.
start_tandem() {
    local dir="$1" config="${2:-$BENCH_DIR/templates}" extra=()
    shift $(($# < 2 ? $# : 2))
    if "$TANDEM_BIN" serve --help 2>/dev/null | grep -q -- '--no-cluster'; then
        extra+=(--no-cluster)
    fi
    RUST_LOG="${TANDEM_RUST_LOG:-warn}" "$TANDEM_BIN" serve \
        --listen "127.0.0.1:$TANDEM_PORT" --admin-listen "127.0.0.1:$TANDEM_ADMIN_PORT" \
        --tls-cert "$dir/tls.crt" --tls-key "$dir/tls.key" \
        --config "$config" --native-sidecars always "${extra[@]}" \
        --log-format json "$@" >>"$dir/tandem.log" 2>&1 &
    TANDEM_PID=$!
    PIDS+=("$TANDEM_PID")
}

start_reference() {
    "$REFERENCE_BIN" --listen "127.0.0.1:$REFERENCE_PORT" \
        --tls-cert "$1/tls.crt" --tls-key "$1/tls.key" >"$1/reference.log" 2>&1 &
    REFERENCE_PID=$!
    PIDS+=("$REFERENCE_PID")
}

# The strict floor: a JSON validation pass that builds nothing, with mimalloc.
start_floor() {
    "$FLOOR_BIN" --listen "127.0.0.1:$FLOOR_PORT" \
        --tls-cert "$1/tls.crt" --tls-key "$1/tls.key" >"$1/floor.log" 2>&1 &
    FLOOR_PID=$!
    PIDS+=("$FLOOR_PID")
}

alive() { kill -0 "$1" 2>/dev/null; }

# finish_run: stops the servers and removes $TMP, unless KEEP_TMP=1.
finish_run() {
    stop_servers
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}

# wait_until SECONDS DESCRIPTION PID COMMAND...: polls COMMAND every 0.1 s.
wait_until() {
    local seconds="$1" what="$2" pid="$3" i
    shift 3
    for ((i = 0; i < seconds * 10; i++)); do
        alive "$pid" || die "$what exited while starting"
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    die "$what not ready after ${seconds}s"
}

# Without curl, so that bench/pgo.sh also runs in a slim build image.
tandem_ready() {
    local status
    exec 3<>"/dev/tcp/127.0.0.1/$TANDEM_ADMIN_PORT" || return 1
    printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
    read -r -t 1 _ status _ <&3 || status=""
    exec 3>&-
    [[ "$status" == 200 ]]
}

reference_ready() {
    https_answers "$REFERENCE_PORT"
}

floor_ready() {
    https_answers "$FLOOR_PORT"
}

https_answers() {
    local code
    code="$(curl -sk --max-time 1 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$1/")" || true
    [[ "$code" != 000 && -n "$code" ]]
}

# status_kib PID FIELD: a /proc/PID/status field (VmRSS, VmHWM) in KiB.
status_kib() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# cpu_ticks PID: utime + stime in clock ticks (the comm field may hold spaces,
# so fields are counted after its closing parenthesis).
cpu_ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

kib_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# Stops only the processes this script started, by pid.
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            alive "$pid" || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
}

machine_summary() {
    local model
    model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
    printf '%s CPUs (%s), %s MiB RAM, Linux %s' "$(nproc)" "${model:-unknown CPU}" \
        "$(awk '/^MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)" "$(uname -r)"
}
