#!/usr/bin/env bash
# gzip backends, one dated section appended to the results file per run.
# Usage: bench-scripts/gzip-backend.sh [stream|whole] [results file]
#   stream (default): builds benches/compress.rs once per flate2 backend
#          feature (streaming coders) and collects its key=value lines.
#   whole: benches/gzip_whole.rs, the whole-body coders (libdeflate and,
#          where the build found it, ISA-L) on benches' html_page and on
#          gzip-vs.sh's page (vs_report.py html 20000); GZIP_WHOLE_ROUNDS
#          sets its rounds.
# Both add gzip(1) sizes of the pages as the yardstick: `gzip -1 -n` is
# zlib level 1 with nginx's 10-byte header, the bytes nginx's
# gzip_comp_level 1 sends; `whole` adds igzip(1) -0..-3 where installed
# (ISA-L's level 2 is not offered by isal-rs).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-stream}
out=${2:-bench-scripts/results/gzip-backend.txt}
page=$(mktemp --suffix=.html)
vs_page=$(mktemp --suffix=.html)
raw=$(mktemp)
trap 'rm -f "$page" "$vs_page" "$raw"' EXIT

sizes() { # name file: the gzip(1) and igzip(1) sizes of one page
  local line
  line="# $1, $(wc -c <"$2") bytes: gzip -1 -n $(gzip -1 -n -c "$2" | wc -c) B, -6 -n $(gzip -6 -n -c "$2" | wc -c) B"
  if [ "$mode" = whole ] && command -v igzip >/dev/null; then
    for l in 0 1 2 3; do line+=", igzip -$l -n $(igzip -$l -n -c "$2" | wc -c) B"; done
  fi
  echo "$line"
}

case $mode in
  stream)
    for backend in miniz zlib-rs zlib zlib-ng; do
      if [ "$backend" = zlib-ng ] && ! command -v cmake >/dev/null; then
        echo "backend=zlib-ng skipped=no-cmake" >>"$raw"
        continue
      fi
      GZIP_BACKEND=$backend PAGE_OUT=$page \
        cargo bench -q --bench compress --no-default-features --features "gzip-$backend" 2>/dev/null \
        | grep '^backend=' >>"$raw"
    done
    header="page: benches/compress.rs html_page, fed in 4 KiB pieces"
    ;;
  whole)
    python3 bench-scripts/vs_report.py html 20000 >"$vs_page"
    VS_PAGE=$vs_page PAGE_OUT=$page cargo bench -q --bench gzip_whole 2>/dev/null \
      | grep -E '^(page|whole_gzip_backend)=' >>"$raw"
    header="whole-body gzip (benches/gzip_whole.rs): each configuration in turn per round, median round's MB/s with the slowest and fastest"
    ;;
  *)
    echo "usage: $0 [stream|whole] [results file]" >&2
    exit 2
    ;;
esac
before=$( [ -f "$out" ] && wc -l <"$out" || echo 0)
{
  echo
  echo "# $(date -u +%Y-%m-%d) $mode: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $header"
  echo "# gzip(1) $(gzip --version | head -1 | cut -d' ' -f2)$(command -v igzip >/dev/null && echo ", igzip $(igzip -V 2>&1 | grep -o '[0-9][0-9.]*' | head -1)")"
  sizes "html_page (benches/common/page.rs)" "$page"
  if [ "$mode" = whole ]; then sizes "vs_page (vs_report.py html 20000)" "$vs_page"; fi
  cat "$raw"
} >>"$out"
tail -n +"$((before + 1))" "$out"
