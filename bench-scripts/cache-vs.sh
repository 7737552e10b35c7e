#!/usr/bin/env bash
# cache-vs.sh — cache hits: ringress vs nginx proxy_cache vs Varnish, one
# worker each, in one run.
#
# Starts, all on 127.0.0.1 (harness: vs-lib.sh):
#   * origin: nginx, 1 worker, static files with Cache-Control:
#     max-age=3600: /small.txt (100 B) and /64k.bin (65,536 B); its access
#     log counts what reaches it
#   * nginx: proxy_cache (keys_zone in /dev/shm, max_size 256m), 1 worker,
#     adds X-Cache-Status: $upstream_cache_status
#   * varnish: varnishd -b origin -s malloc,256m, thread_pools=1, the whole
#     process pinned with taskset
#   * ringress: --threads 1, [cache.main] max_size 256MiB on the route
#   * floor (FLOOR=1, the default): floor.c, a fixed-answer epoll server
#     that holds both objects and does nothing else: the req/s the load
#     side allows and the CPU per request of the TCP work alone
# each proxy on PROXY_CPU. Each object is fetched through each proxy until
# it is stored, and a probe checks the proxy's hit mark (X-Cache-Status HIT,
# two ids in X-Varnish, Cache-Status: ringress; hit). Then ROUNDS rounds of
# wrk -t1 -c$CONNS -d$DURATION per object and proxy, the proxy order rotated
# each round; each run also counts the origin's access-log lines, which must
# not grow (all hits). vs_report.py prints the medians, the ratios
# ringress/nginx (goal >= 1.5) and ringress/varnish (goal >= 1.0), and
# writes results/cache-vs.txt and results/cache-vs.json.
#
#   bench-scripts/cache-vs.sh                     # about 4 min after the build
#   SKIP_RINGRESS=1 bench-scripts/cache-vs.sh     # nginx and Varnish only
#   DURATION=5 ROUNDS=1 bench-scripts/cache-vs.sh # quicker, noisier
#   PIPELINE=4 RESULTS_DIR=bench-scripts/results/pipelined bench-scripts/cache-vs.sh
#                                                 # wrk pipelines 4 requests per connection
#
# Knobs: DURATION [10] WARMUP [3] ROUNDS [3] CONNS [64] PIPELINE [1] PORT_BASE [19780]
# FLOOR [1] SKIP_RINGRESS SKIP_BUILD RINGRESS_BIN KEEP_TMP RESULTS_DIR
# [bench-scripts/results] VARNISH_POOL_MIN [CONNS+36]
# PROXY_CPU / BACKEND_CPU / WRK_CPU (cpu-placement.sh).
# Exits non-zero only when setup fails or a proxy serves no hits; a missed
# goal is reported, not an error.
set -euo pipefail
BENCH=cache
PORT_BASE=${PORT_BASE:-19780}
NEED_VARNISH=1
# shellcheck source=bench-scripts/vs-lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vs-lib.sh"

FLOOR=${FLOOR:-1}
NGINX_PORT=$((PORT_BASE + 2)) VARNISH_PORT=$((PORT_BASE + 3)) RINGRESS_PORT=$((PORT_BASE + 4))
FLOOR_PORT=$((PORT_BASE + 5))
check_ports_free "$ORIGIN_PORT" "$ORIGIN_NOLOG_PORT" "$NGINX_PORT" "$VARNISH_PORT" "$RINGRESS_PORT" "$FLOOR_PORT"
build_ringress

start_origin
start_nginx_proxy nginx "$NGINX_PORT" "        location / {
            proxy_pass http://origin;
            proxy_cache hot;
            add_header X-Cache-Status \$upstream_cache_status;
        }"
start_varnish varnish "$VARNISH_PORT"
PROXIES=(nginx varnish)
if [[ $SKIP_RINGRESS != 1 ]]; then
    start_ringress ringress "$RINGRESS_PORT" '[cache.main]
max_size = "256MiB"
max_object = "8MiB"

[[routes]]
path_prefix = "/"
upstream = "origin"
cache = { zone = "main" }'
    PROXIES+=(ringress)
fi
if [[ $FLOOR == 1 ]]; then
    start_floor floor "$FLOOR_PORT"
    PROXIES+=(floor)
fi

declare -A S_PATH=([hit-small]=$SMALL_PATH [hit-64k]=$LARGE_PATH)
SCENARIOS=(hit-small hit-64k)
for s in "${SCENARIOS[@]}"; do
    for p in "${PROXIES[@]}"; do
        warm "$p" "${S_PATH[$s]}"
        hit=(--expect-hit)
        [[ $p == floor ]] && hit=() # no cache: it holds the objects
        probe "$s" "$p" "${S_PATH[$s]}" ${hit[@]+"${hit[@]}"}
        if ((WARMUP > 0)); then
            log "warm-up: $s $p, ${WARMUP}s"
            wrk_run "$TMP/warmup-$s-$p.txt" "$WARMUP" "$p" "${S_PATH[$s]}"
        fi
    done
done

log "measuring ${SCENARIOS[*]} through ${PROXIES[*]}: $ROUNDS round(s), ${DURATION}s per run"
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SCENARIOS[@]}"; do
        while read -r p; do
            measure "$s" "$p" "${S_PATH[$s]}" "$r" plain hits
        done < <(rotate "$((r - 1))" "${PROXIES[@]}")
    done
done

mapfile -t META < <(meta_common)
FLOOR_META=()
[[ $FLOOR == 1 ]] && FLOOR_META=("floor=bench-scripts/floor.c: one thread, epoll, both objects in memory, answers with one read and one writev and nothing else (no cache, no header edits, no log): a reference for what the load side allows, not a proxy")
report "title=cache hits: ringress vs nginx proxy_cache vs Varnish, one worker each" \
    "objects=hit-small: ${SMALL_BYTES} B text/plain; hit-64k: ${LARGE_BYTES} B application/octet-stream; both Cache-Control: max-age=3600" \
    "nginx=proxy_cache in /dev/shm (levels=1:2, max_size=256m), sendfile off (faster than on for these hits here), open_file_cache, upstream keepalive" \
    "varnish=varnishd -b origin -s malloc,256m -p thread_pools=1 -p thread_pool_min=$VARNISH_POOL_MIN -p thread_pool_max=1000, built-in VCL" \
    "ringress=--threads 1, [cache.main] max_size=256MiB max_object=8MiB, route cache = { zone = \"main\" }" \
    ${FLOOR_META[@]+"${FLOOR_META[@]}"} \
    "${META[@]}"
