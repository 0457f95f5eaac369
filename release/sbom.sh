#!/usr/bin/env bash
# A CycloneDX SBOM (JSON) of what the release binary is built from: the
# `tandem` binary's dependency set for the image's target, as Cargo.lock pins
# it; no dev-dependencies. The container image carries the same file (the
# Dockerfile runs this script) at /usr/share/doc/tandem/sbom.cdx.json.
#
#   bash release/sbom.sh                        # writes target/sbom/tandem.cdx.json
#   bash release/sbom.sh --out FILE [--target TRIPLE]
#
# Needs cargo-cyclonedx from crates.io:
#   cargo install --locked cargo-cyclonedx --version 0.5.9
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="target/sbom/tandem.cdx.json"
TARGET="x86_64-unknown-linux-musl"
while [[ $# -gt 0 ]]; do
    case "$1" in
    --out) OUT="${2:?--out needs a file}"; shift 2 ;;
    --target) TARGET="${2:?--target needs a triple}"; shift 2 ;;
    *) printf 'usage: release/sbom.sh [--out FILE] [--target TRIPLE]\n' >&2; exit 2 ;;
    esac
done

if ! cargo cyclonedx --version >/dev/null 2>&1; then
    printf 'error: cargo-cyclonedx is missing: cargo install --locked cargo-cyclonedx --version 0.5.9\n' >&2
    exit 1
fi

# cargo-cyclonedx writes beside Cargo.toml; it is moved from there at once.
# Build-dependencies (what only build scripts use) are left out: nothing of
# them is in the binary. Proc-macros stay, as Cargo counts them.
cargo cyclonedx --format json --target "$TARGET" --no-build-deps \
    --spec-version 1.5 --override-filename tandem.cdx --quiet
mkdir -p "$(dirname "$OUT")"
found="$(ls -1 ./*tandem.cdx*.json 2>/dev/null | head -n 1)"
[[ -n "$found" ]] || { printf 'error: cargo-cyclonedx wrote no SBOM\n' >&2; exit 1; }
mv "$found" "$OUT"
rm -f ./*.cdx.json
printf '%s\n' "$OUT"
