#!/usr/bin/env bash
# Builds the release `tandem` with profile-guided optimisation (PGO): an
# instrumented build serves a fixed training load over TLS, LLVM merges the
# profile it wrote, and a second build lays the code out by it. The profile is
# made fresh every time, by the compiler doing the build, so it always matches
# the source and the LLVM that reads it. See bench/README.md ("The
# profile-guided build" and "Fifth round") for what it buys.
#
#   bash bench/pgo.sh                                   # host target
#   bash bench/pgo.sh --target x86_64-unknown-linux-musl
#
# Writes target/pgo/tandem (the optimised binary; its path is the last line on
# stdout). Needs llvm-profdata from the same or an older-but-compatible LLVM:
# `rustup component add llvm-tools`, or set LLVM_PROFDATA (Debian's llvm-19
# reads what Rust 1.95's LLVM 22 writes). Before building anything, it checks
# that llvm-profdata reads what this compiler writes (a throwaway instrumented
# program, run and merged); when none does, it exits with status 3 and says
# why, and bench/lib.sh falls back to a plain release build.
# Environment: LLVM_PROFDATA, TRAIN_SECONDS (per training run, default 2),
# TANDEM_PORT, TANDEM_ADMIN_PORT.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

TARGET=""
case "${1:-}" in
"") ;;
--target)
    [[ -n "${2:-}" ]] || die "--target needs a target triple"
    TARGET="$2"
    ;;
*) die "usage: bench/pgo.sh [--target TRIPLE]" ;;
esac
TRAIN_SECONDS="${TRAIN_SECONDS:-2}"
[[ "$TRAIN_SECONDS" =~ ^[0-9]+$ && "$TRAIN_SECONDS" -ge 1 ]] || die "TRAIN_SECONDS must be whole seconds"

need cargo rustc
HOST="$(rustc -vV | awk '/^host:/ { print $2 }')"
TARGET="${TARGET:-$HOST}"

# The one from rustup's llvm-tools matches the compiler; otherwise the newest
# installed LLVM's, which must still read the compiler's raw profile format
# (the merge fails loudly when it cannot).
find_profdata() {
    local candidate
    if [[ -n "${LLVM_PROFDATA:-}" ]]; then
        printf '%s\n' "$LLVM_PROFDATA"
        return
    fi
    candidate="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
    if [[ -x "$candidate" ]]; then
        printf '%s\n' "$candidate"
        return
    fi
    if command -v llvm-profdata >/dev/null 2>&1; then
        command -v llvm-profdata
        return
    fi
    candidate="$(ls -d /usr/lib/llvm-*/bin/llvm-profdata 2>/dev/null | sort -V | tail -n 1)"
    printf '%s\n' "$candidate"
}

# No usable llvm-profdata: status 3, which bench/lib.sh turns into a plain
# release build.
unusable() {
    printf 'error: %s\n' "$*" >&2
    printf "note: a profile-guided build needs an llvm-profdata as new as rustc's LLVM (%s): 'rustup component add llvm-tools', or an LLVM from your distribution, or LLVM_PROFDATA\n" \
        "$(rustc -vV | awk '/^LLVM version:/ { print $3 }')" >&2
    exit 3
}

# Whether $PROFDATA merges a raw profile this rustc writes: a one-line
# program, instrumented, run and merged, in a second or two.
profdata_reads_rustc() {
    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/tandem-pgo-probe.XXXXXX")"
    printf 'fn main() {}\n' >"$dir/probe.rs"
    local ok=0
    (cd "$dir" && rustc -O -Cprofile-generate="$dir/raw" probe.rs -o probe >/dev/null 2>&1 &&
        ./probe && "$PROFDATA" merge -o probe.profdata raw >/dev/null 2>&1) || ok=1
    rm -rf "$dir"
    return "$ok"
}

PROFDATA="$(find_profdata)"
[[ -n "$PROFDATA" ]] || unusable "llvm-profdata not found"
[[ -x "$PROFDATA" ]] || unusable "LLVM_PROFDATA=$PROFDATA is not an executable"
profdata_reads_rustc || unusable "$PROFDATA ($("$PROFDATA" merge --version 2>&1 | awk '/version/ { print $NF; exit }')) cannot merge the profiles this rustc writes"
log "llvm-profdata: $PROFDATA ($("$PROFDATA" merge --version 2>&1 | awk '/version/ { print $NF; exit }'))"

PGO_DIR="$ROOT_DIR/target/pgo"
PROFILES="$PGO_DIR/profiles"
mkdir -p "$PGO_DIR"

# Its own target directories, so the plain release build's stay warm. With an
# explicit --target, RUSTFLAGS reach only the target's crates, not the build
# scripts, which would otherwise write profiles of their own. Cargo does not
# track the profile's contents: a crate whose source and flags did not change
# keeps the code laid out by an earlier profile of the same path, which only
# matters for speed, and only by as much as the profile moved.
build() {
    local dir="$1" flags="$2"
    (cd "$ROOT_DIR" && RUSTFLAGS="${RUSTFLAGS:-} $flags" CARGO_TARGET_DIR="$PGO_DIR/$dir" \
        cargo build --release --locked --quiet --bin tandem --target "$TARGET")
    printf '%s\n' "$PGO_DIR/$dir/$TARGET/release/tandem"
}

log "building loadgen (host, release)"
cargo build --release --locked --quiet --manifest-path "$BENCH_DIR/Cargo.toml" --bin loadgen

log "building the instrumented tandem ($TARGET)"
rm -rf "$PROFILES"
INSTRUMENTED="$(build generate "-Cprofile-generate=$PROFILES")"

check_ports "$TANDEM_PORT" "$TANDEM_ADMIN_PORT"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tandem-pgo.XXXXXX")"
trap finish_run EXIT
trap 'exit 130' INT TERM

# train CONFIG BODY...: serves CONFIG and sends each body at concurrency 1
# and 16. Every answer must be a 200 echoing the uid; what the training load
# exercises is what the layout favours, so it is the webhook's hot path:
# the bench bodies (a full decision and patch each) and the captured API
# server requests (a dry run, a generated name, a pod that already has a
# native sidecar).
train() {
    local config="$1" body conc
    shift
    # Logging at info, as a cluster runs it. No shutdown delay: the profile
    # is written at exit, so the server must exit when told to, not be killed.
    TANDEM_BIN="$INSTRUMENTED" TANDEM_RUST_LOG=info start_tandem "$TMP" "$config" --shutdown-delay-seconds 0
    wait_until 30 "instrumented tandem serve" "$TANDEM_PID" tandem_ready
    for body in "$@"; do
        for conc in 1 16; do
            "$LOADGEN_BIN" --url "https://127.0.0.1:$TANDEM_PORT/mutate" --body "$body" \
                --concurrency "$conc" --duration-secs "$TRAIN_SECONDS" --warmup-secs 0 \
                --insecure --label pgo >/dev/null ||
                die "training load on $(basename "$body") failed; tandem's log ends:
$(tail -n 5 "$TMP/tandem.log")"
        done
    done
    kill -TERM "$TANDEM_PID"
    wait "$TANDEM_PID" || die "instrumented tandem serve did not exit cleanly"
    PIDS=()
}

log "training: bench bodies and captured admission requests"
"$INSTRUMENTED" certs --out-dir "$TMP" >"$TMP/certs.log" 2>&1 || die "tandem certs failed: $(cat "$TMP/certs.log")"
train "$BENCH_DIR/templates" "$FIXTURES"/{small,medium,large}.json
train "$ROOT_DIR/examples/templates" "$ROOT_DIR"/tests/fixtures/admission-v1.36/*.json

"$PROFDATA" merge -o "$PGO_DIR/tandem.profdata" "$PROFILES"
log "building the optimised tandem ($TARGET)"
OPTIMISED="$(build use "-Cprofile-use=$PGO_DIR/tandem.profdata")"
cp "$OPTIMISED" "$PGO_DIR/tandem"
printf '%s\n' "$PGO_DIR/tandem"
