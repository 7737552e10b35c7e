#!/usr/bin/env bash
# cache-eviction.sh — hit ratio of the cache store's S3-FIFO against plain
# LRU (same byte budget) on Zipf traffic with a one-off scan, and the store's
# ns per get hit and per insert. Pure simulation: no servers, no network.
# Runs `cargo bench --bench cache_eviction` and writes its tables to
# bench-scripts/results/cache-eviction.txt (OUT overrides).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
OUT=${OUT:-$SCRIPT_DIR/results/cache-eviction.txt}

mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp "${TMPDIR:-/tmp}/ringress-cache-eviction.XXXXXX")
trap 'rm -f "$TMP"' EXIT

(cd "$REPO_ROOT" && cargo bench --bench cache_eviction) >"$TMP"
{
    printf '# cache-eviction.sh — %s, commit %s, %s CPUs\n\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        "$(git -C "$REPO_ROOT" rev-parse --short HEAD)" "$(nproc)"
    cat "$TMP"
} >"$OUT"
cat "$OUT"
