#!/usr/bin/env bash
# Day 2 at scale, against bench/fake-apiserver.py holding PODS injected pods
# (default 10,000; every tenth ReplicaSet outdated):
#   1. `tandem serve`'s memory with every pod in its pod watch, against the
#      same server watching no pods (a ratio, and the figure against 64 MiB);
#   2. `tandem status -A` against `kubectl get pods -A -o name` on the same
#      fake, timed alternately (a ratio), and the requests each makes.
# Needs a release build (built when missing) and python3; kubectl is optional.
set -euo pipefail
cd "$(dirname "$0")/.."

PODS="${PODS:-10000}"
PORT="${PORT:-18080}"
ROUNDS="${ROUNDS:-5}"
BIN="${TANDEM_BIN:-target/release/tandem}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '==> %s\n' "$*" >&2; }

[[ -x "$BIN" ]] || cargo build --release --locked

# log-shipper's current hash, as Tandem records it.
HASH="$(printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    tandem.dev/inject: log-shipper\nspec:\n  containers:\n  - name: app\n    image: app\n' |
    "$BIN" inject -c examples/templates -f - 2>/dev/null |
    grep 'tandem.dev/status' | grep -o '[0-9a-f]\{16\}' | head -1)"
[[ -n "$HASH" ]] || { echo "cannot read log-shipper's hash" >&2; exit 1; }

cat >"$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: 'http://127.0.0.1:$PORT'}}]
users: [{name: me, user: {}}]
contexts: [{name: fake, context: {cluster: fake, user: me}}]
current-context: fake
EOF

fake() {
    python3 bench/fake-apiserver.py --pods "$1" --port "$PORT" --hash "$HASH" 2>"$WORK/fake.log" &
    FAKE=$!
    PIDS+=("$FAKE")
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$PORT/version" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "fake API server did not start" >&2
    exit 1
}

"$BIN" certs --out-dir "$WORK/tls" >/dev/null

# Starts `tandem serve` on the fake; waits until its pod counts sum to
# $1 pods, then prints VmRSS and VmHWM in KiB.
serve_rss() {
    "$BIN" serve --kubeconfig "$WORK/kubeconfig" --config examples/templates \
        --tls-cert "$WORK/tls/tls.crt" --tls-key "$WORK/tls/tls.key" \
        --listen 127.0.0.1:18443 --admin-listen 127.0.0.1:19090 \
        --kubernetes-version v1.36.2 --log-format json 2>"$WORK/serve.log" &
    local pid=$!
    PIDS+=("$pid")
    local counted=-1
    for _ in $(seq 600); do
        counted="$(curl -fsS http://127.0.0.1:19090/metrics 2>/dev/null |
            awk '/^tandem_injected_pods\{/ { n += $2 } END { print n + 0 }')"
        if [[ "$counted" == "$1" ]] && curl -fsS http://127.0.0.1:19090/readyz >/dev/null 2>&1; then
            break
        fi
        sleep 0.2
    done
    [[ "$counted" == "$1" ]] || { echo "tandem counted $counted of $1 pods" >&2; cat "$WORK/serve.log" >&2; exit 1; }
    sleep 3 # a few recounts, and the list's garbage returned
    awk '/^VmRSS/ { rss = $2 } /^VmHWM/ { hwm = $2 } END { print rss, hwm }' "/proc/$pid/status"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

log "tandem serve with no injected pods"
fake 0
read -r rss0 hwm0 <<<"$(serve_rss 0)"
kill "$FAKE"; wait "$FAKE" 2>/dev/null || true

log "tandem serve with $PODS injected pods"
fake "$PODS"
read -r rss hwm <<<"$(serve_rss "$PODS")"
python3 - "$PODS" "$rss0" "$hwm0" "$rss" "$hwm" <<'EOF'
import sys
pods, rss0, hwm0, rss, hwm = map(int, sys.argv[1:])
mib = lambda k: k / 1024
print(f"serve, no pods:       RSS {mib(rss0):.1f} MiB (peak {mib(hwm0):.1f} MiB)")
print(f"serve, {pods} pods: RSS {mib(rss):.1f} MiB (peak {mib(hwm):.1f} MiB), "
      f"{rss / rss0:.2f}x the empty watch, {(rss - rss0) / pods * 1024:.0f} bytes per pod; "
      f"{'under' if hwm < 64 * 1024 else 'OVER'} the 64 MiB budget")
EOF

log "tandem status -A over $PODS pods"
"$BIN" status -A -c examples/templates --kubeconfig "$WORK/kubeconfig" >"$WORK/status.txt"
head -3 "$WORK/status.txt" >&2
if command -v kubectl >/dev/null && command -v farm-bench >/dev/null; then
    farm-bench -n "$ROUNDS" --timeout 600 \
        --vs "kubectl get pods -A -o name --kubeconfig $WORK/kubeconfig" \
        -- "$BIN" status -A -c examples/templates --kubeconfig "$WORK/kubeconfig" -o json
else
    time "$BIN" status -A -c examples/templates --kubeconfig "$WORK/kubeconfig" -o json >/dev/null
fi
