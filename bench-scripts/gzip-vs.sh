#!/usr/bin/env bash
# gzip-vs.sh — gzip of a 20 KB HTML page, and a compressed cache hit:
# ringress vs nginx, one worker each, in one run.
#
# Starts, all on 127.0.0.1 (harness: vs-lib.sh):
#   * origin: nginx, 1 worker, no compression of its own, serving one
#     deterministic ~20 KB HTML page (vs_report.py html) with Cache-Control:
#     max-age=3600 as /page.html (access log on: counts what reaches it) and
#     as /pass/page.html (access log off)
#   * nginx, 1 worker: gzip on, gzip_comp_level 1 (nginx's default),
#     gzip_types text/html (always on), gzip_proxied any;
#     /pass/ proxied without a cache, / through proxy_cache (nginx stores
#     the identity body and gzips every hit)
#   * ringress, --threads 1: compress = { algorithms = ["gzip"], level =
#     (see below), types = ["text/html", ...] } on both routes, and
#     cache = { zone = "main" } on / (ringress stores the compressed variant)
# both on PROXY_CPU. Scenarios, every request with Accept-Encoding: gzip:
#   gzip       GET /pass/page.html: the origin's page compressed on every
#              request (goal: ringress >= 1.5 x nginx)
#   gzip-hit   GET /page.html: a compressed cache hit (origin access log must
#              not grow during the runs)
# Probes record the compressed size each proxy sends. ringress's level
# (RINGRESS_GZIP_LEVEL=auto, the default) is the lowest whose body is within
# 10 % of nginx's level-1 body, found by starting ringress at levels 1, 2, ...
# before measuring; the report names the level and the sizes tried. With a
# fixed level the report says when the sizes are more than 10 % apart.
# The header names the library ringress's --version says it gzips small
# whole bodies with (ISA-L or libdeflate, see build.rs).
#
#   bench-scripts/gzip-vs.sh                      # about 3 min after the build
#   SKIP_RINGRESS=1 bench-scripts/gzip-vs.sh      # nginx only
#
# Knobs: DURATION [10] WARMUP [3] ROUNDS [3] CONNS [64] PORT_BASE [19880]
# RINGRESS_GZIP_LEVEL [auto] SKIP_RINGRESS SKIP_BUILD RINGRESS_BIN KEEP_TMP
# RESULTS_DIR [bench-scripts/results] PROXY_CPU / BACKEND_CPU / WRK_CPU.
# Exits non-zero only when setup fails, a proxy sends no gzip or serves no
# hits; a missed goal is reported, not an error.
set -euo pipefail
BENCH=gzip
PORT_BASE=${PORT_BASE:-19880}
RINGRESS_GZIP_LEVEL=${RINGRESS_GZIP_LEVEL:-auto}
# shellcheck source=bench-scripts/vs-lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vs-lib.sh"
[[ $RINGRESS_GZIP_LEVEL =~ ^([1-9]|auto)$ ]] || die "RINGRESS_GZIP_LEVEL must be 1..9 or auto"

NGINX_PORT=$((PORT_BASE + 2)) RINGRESS_PORT=$((PORT_BASE + 4))
check_ports_free "$ORIGIN_PORT" "$ORIGIN_NOLOG_PORT" "$NGINX_PORT" "$RINGRESS_PORT"
build_ringress

start_origin
start_nginx_proxy nginx "$NGINX_PORT" "        gzip on;
        gzip_comp_level 1;
        gzip_types text/plain text/css application/javascript application/json;
        gzip_proxied any;
        location /pass/ {
            proxy_pass http://origin_nolog;
        }
        location / {
            proxy_pass http://origin;
            proxy_cache hot;
            add_header X-Cache-Status \$upstream_cache_status;
        }"
PROXIES=(nginx)
NGINX_GZIP_BYTES=$(wire_bytes nginx "$PASS_PAGE_PATH")
ringress_toml() { # level
    local compress="compress = { algorithms = [\"gzip\"], level = $1, types = [\"text/html\", \"text/plain\", \"text/css\", \"application/javascript\", \"application/json\"] }"
    echo "[cache.main]
max_size = \"256MiB\"
max_object = \"8MiB\"

[[routes]]
path_prefix = \"/pass/\"
upstream = \"origin_nolog\"
$compress

[[routes]]
path_prefix = \"/\"
upstream = \"origin\"
cache = { zone = \"main\" }
$compress

[[routes]]
path_prefix = \"/pass-level1/\"
upstream = \"origin_nolog\"
${compress/level = $1/level = 1}"
}
# within_band A B: A within +-10 % of B (vs_report.py's SIZE_BAND).
within_band() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(b > 0 && a >= 0.9 * b && a <= 1.1 * b) }'; }
LEVEL_NOTE="level $RINGRESS_GZIP_LEVEL as set"
[[ $SKIP_RINGRESS == 1 ]] && LEVEL_NOTE="ringress skipped"
# The library the binary gzips small whole bodies with (ISA-L at level 1
# when its build found libisal, else libdeflate), from its --version.
WHOLE_GZIP_NOTE="ringress skipped"
if [[ $SKIP_RINGRESS != 1 ]]; then
    WHOLE_GZIP_NOTE=$("$RINGRESS_BIN" --version | sed -n 's/.*(whole-body gzip: \(.*\))$/\1/p')
    WHOLE_GZIP_NOTE="${WHOLE_GZIP_NOTE:-not reported (a build before ISA-L: libdeflate)} at level 1, libdeflate at 2-9"
fi
if [[ $SKIP_RINGRESS != 1 ]]; then
    if [[ $RINGRESS_GZIP_LEVEL == auto ]]; then
        # The lowest level whose gzip body is within 10 % of nginx's: the
        # two then do comparable work (one zlib level does not give the
        # same size in every deflate implementation).
        tried=()
        for level in 1 2 3 4 5 6 7 8 9; do
            start_ringress ringress-level "$RINGRESS_PORT" "$(ringress_toml "$level")"
            size=$(wire_bytes ringress-level "$PASS_PAGE_PATH")
            stop_server ringress-level
            tried+=("level $level: $size B")
            if within_band "$size" "$NGINX_GZIP_BYTES"; then
                RINGRESS_GZIP_LEVEL=$level
                break
            fi
        done
        [[ $RINGRESS_GZIP_LEVEL != auto ]] || die "no ringress gzip level gives a body within 10 % of nginx's $NGINX_GZIP_BYTES B (${tried[*]})"
        LEVEL_NOTE="level $RINGRESS_GZIP_LEVEL, chosen to match nginx's size: nginx level 1 sends $NGINX_GZIP_BYTES B; ringress $(IFS=,; echo "${tried[*]}")"
        log "ringress gzip $LEVEL_NOTE"
    fi
    start_ringress ringress "$RINGRESS_PORT" "$(ringress_toml "$RINGRESS_GZIP_LEVEL")"
    PROXIES+=(ringress)
fi

declare -A S_PATH=([gzip]=$PASS_PAGE_PATH [gzip-hit]=$PAGE_PATH [gzip-ringress-level1]=/pass-level1/page.html)
declare -A S_KIND=([gzip]=pass [gzip-hit]=hits [gzip-ringress-level1]=pass)
SCENARIOS=(gzip gzip-hit)
declare -A S_PROXIES=([gzip]="${PROXIES[*]}" [gzip-hit]="${PROXIES[*]}")
if [[ $SKIP_RINGRESS != 1 && $RINGRESS_GZIP_LEVEL != 1 ]]; then
    # ringress at level 1 too (bigger bodies than nginx's level 1, so not
    # the comparison; shown for what the level costs).
    SCENARIOS+=(gzip-ringress-level1)
    S_PROXIES[gzip-ringress-level1]=ringress
fi
for s in "${SCENARIOS[@]}"; do
    read -r -a ps <<<"${S_PROXIES[$s]}"
    for p in "${ps[@]}"; do
        warm "$p" "${S_PATH[$s]}" gzip
        if [[ ${S_KIND[$s]} == hits ]]; then
            probe "$s" "$p" "${S_PATH[$s]}" --gzip --expect-hit
        else
            probe "$s" "$p" "${S_PATH[$s]}" --gzip
        fi
        if ((WARMUP > 0)); then
            log "warm-up: $s $p, ${WARMUP}s"
            wrk_run "$TMP/warmup-$s-$p.txt" "$WARMUP" "$p" "${S_PATH[$s]}" gzip
        fi
    done
done

log "measuring ${SCENARIOS[*]} through ${PROXIES[*]}: $ROUNDS round(s), ${DURATION}s per run"
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SCENARIOS[@]}"; do
        read -r -a ps <<<"${S_PROXIES[$s]}"
        while read -r p; do
            measure "$s" "$p" "${S_PATH[$s]}" "$r" gzip "${S_KIND[$s]}"
        done < <(rotate "$((r - 1))" "${ps[@]}")
    done
done

mapfile -t META < <(meta_common)
report "title=gzip of a 20 KB HTML page, and a compressed cache hit: ringress vs nginx, one worker each" \
    "page=$(wc -c <"$TMP/origin/www$PAGE_PATH") B text/html (vs_report.py html $PAGE_BYTES), Cache-Control: max-age=3600; every request sends Accept-Encoding: gzip" \
    "scenarios=gzip: /pass/page.html, no cache, compressed on every request; gzip-hit: /page.html through the cache; gzip-ringress-level1 (when the matched level is not 1): ringress alone at level 1, not size-matched" \
    "nginx=gzip on, gzip_comp_level 1, gzip_proxied any; gzip-hit: proxy_cache in /dev/shm stores the identity body, gzip runs on every hit" \
    "ringress=--threads 1, compress gzip on both routes; gzip-hit: cache = { zone = \"main\" } (the compressed variant is stored)" \
    "ringress_gzip_level=$LEVEL_NOTE" \
    "ringress_whole_gzip=$WHOLE_GZIP_NOTE" \
    "${META[@]}"
