#!/usr/bin/env bash
# Builds benches/compress.rs once per flate2 backend feature and collects its
# key=value lines, plus gzip(1) sizes of the same page as a sanity check.
# Usage: bench-scripts/gzip-backend.sh [results file]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-scripts/results/gzip-backend.txt}
page=$(mktemp --suffix=.html)
trap 'rm -f "$page"' EXIT
raw=$(mktemp)
for backend in miniz zlib-rs zlib zlib-ng; do
  if [ "$backend" = zlib-ng ] && ! command -v cmake >/dev/null; then
    echo "backend=zlib-ng skipped=no-cmake" >>"$raw"
    continue
  fi
  GZIP_BACKEND=$backend PAGE_OUT=$page \
    cargo bench -q --bench compress --no-default-features --features "gzip-$backend" 2>/dev/null \
    | grep '^backend=' >>"$raw"
done
{
  echo "# $(date -u +%Y-%m-%d) $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "# page: benches/compress.rs html_page, $(wc -c <"$page") bytes, fed in 4 KiB pieces"
  echo "# gzip(1) $(gzip --version | head -1 | cut -d' ' -f2): -1 $(gzip -1 -c "$page" | wc -c) bytes, -6 $(gzip -6 -c "$page" | wc -c) bytes"
  cat "$raw"
} >"$out"
rm -f "$raw"
cat "$out"
