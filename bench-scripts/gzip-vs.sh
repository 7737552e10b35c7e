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
#     $RINGRESS_GZIP_LEVEL, types = ["text/html", ...] } on both routes, and
#     cache = { zone = "main" } on / (ringress stores the compressed variant)
# both on PROXY_CPU. Scenarios, every request with Accept-Encoding: gzip:
#   gzip       GET /pass/page.html: the origin's page compressed on every
#              request (goal: ringress >= 1.5 x nginx)
#   gzip-hit   GET /page.html: a compressed cache hit (origin access log must
#              not grow during the runs)
# Probes record the compressed size each proxy sends. When ringress's and
# nginx's differ by more than 10 % the report says the two are not
# comparable: rerun with RINGRESS_GZIP_LEVEL set to the level whose size
# matches nginx's, and say so.
#
#   bench-scripts/gzip-vs.sh                      # about 3 min after the build
#   SKIP_RINGRESS=1 bench-scripts/gzip-vs.sh      # nginx only
#
# Knobs: DURATION [10] WARMUP [3] ROUNDS [3] CONNS [64] PORT_BASE [19880]
# RINGRESS_GZIP_LEVEL [1] SKIP_RINGRESS SKIP_BUILD RINGRESS_BIN KEEP_TMP
# RESULTS_DIR [bench-scripts/results] PROXY_CPU / BACKEND_CPU / WRK_CPU.
# Exits non-zero only when setup fails, a proxy sends no gzip or serves no
# hits; a missed goal is reported, not an error.
set -euo pipefail
BENCH=gzip
PORT_BASE=${PORT_BASE:-19880}
RINGRESS_GZIP_LEVEL=${RINGRESS_GZIP_LEVEL:-1}
# shellcheck source=bench-scripts/vs-lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vs-lib.sh"
[[ $RINGRESS_GZIP_LEVEL =~ ^[1-9]$ ]] || die "RINGRESS_GZIP_LEVEL must be 1..9"

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
if [[ $SKIP_RINGRESS != 1 ]]; then
    compress="compress = { algorithms = [\"gzip\"], level = $RINGRESS_GZIP_LEVEL, types = [\"text/html\", \"text/plain\", \"text/css\", \"application/javascript\", \"application/json\"] }"
    start_ringress ringress "$RINGRESS_PORT" "[cache.main]
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
$compress"
    PROXIES+=(ringress)
fi

declare -A S_PATH=([gzip]=$PASS_PAGE_PATH [gzip-hit]=$PAGE_PATH) S_KIND=([gzip]=pass [gzip-hit]=hits)
SCENARIOS=(gzip gzip-hit)
for s in "${SCENARIOS[@]}"; do
    for p in "${PROXIES[@]}"; do
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
        while read -r p; do
            measure "$s" "$p" "${S_PATH[$s]}" "$r" gzip "${S_KIND[$s]}"
        done < <(rotate "$((r - 1))" "${PROXIES[@]}")
    done
done

mapfile -t META < <(meta_common)
report "title=gzip of a 20 KB HTML page, and a compressed cache hit: ringress vs nginx, one worker each" \
    "page=$(wc -c <"$TMP/origin/www$PAGE_PATH") B text/html (vs_report.py html $PAGE_BYTES), Cache-Control: max-age=3600; every request sends Accept-Encoding: gzip" \
    "scenarios=gzip: /pass/page.html, no cache, compressed on every request; gzip-hit: /page.html through the cache" \
    "nginx=gzip on, gzip_comp_level 1, gzip_proxied any; gzip-hit: proxy_cache in /dev/shm stores the identity body, gzip runs on every hit" \
    "ringress=--threads 1, compress gzip level $RINGRESS_GZIP_LEVEL on both routes; gzip-hit: cache = { zone = \"main\" } (the compressed variant is stored)" \
    "${META[@]}"
