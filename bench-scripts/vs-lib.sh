# shellcheck shell=bash
# vs-lib.sh — the harness of cache-vs.sh and gzip-vs.sh (sourced, not run):
# tools, the ringress build, process bookkeeping and clean-up, one origin,
# the proxies under test (nginx, Varnish, ringress; one worker each, all
# pinned to PROXY_CPU) and one measured wrk run. Parsing, the records and
# the report are vs_report.py's.
#
# The sourcing script sets, before sourcing:
#   BENCH       cache | gzip (the bench name in the records, the log prefix)
#   PORT_BASE   first of the ports used (origin, origin-nolog, proxies...)
#   NEED_VARNISH  1 to install and allow Varnish
# and may set: DURATION [10] WARMUP [3] ROUNDS [3] CONNS [64]
# PIPELINE [1] (requests wrk pipelines per connection, pipeline.lua: with
# one 2-CPU machine wrk's core, not the proxy's, limits the fastest
# proxy's req/s; pipelining cuts wrk's cost per request for every proxy
# alike) SKIP_RINGRESS SKIP_BUILD RINGRESS_BIN KEEP_TMP RESULTS_DIR
# PROXY_CPU / BACKEND_CPU / WRK_CPU (cpu-placement.sh).
#
# Every wait here has a time limit and every run a fixed duration; traffic
# goes to 127.0.0.1 only.

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
PIPELINE=${PIPELINE:-1}
SKIP_RINGRESS=${SKIP_RINGRESS:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
NEED_VARNISH=${NEED_VARNISH:-0}
HOST=127.0.0.1 # all traffic stays on loopback

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RINGRESS_BIN=${RINGRESS_BIN:-$REPO_ROOT/target/release/ringress}
RESULTS_DIR=${RESULTS_DIR:-$SCRIPT_DIR/results}
REPORT=(python3 "$SCRIPT_DIR/vs_report.py")
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[%s-vs] %s\n' "$BENCH" "$*" >&2; }
die() {
    printf '[%s-vs] ERROR: %s\n' "$BENCH" "$*" >&2
    exit 1
}
for v in DURATION WARMUP ROUNDS CONNS PORT_BASE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((ROUNDS >= 1 && DURATION >= 1 && CONNS >= 1)) || die "ROUNDS, DURATION and CONNS must be >= 1"

# shellcheck source=bench-scripts/cpu-placement.sh
source "$SCRIPT_DIR/cpu-placement.sh"

# ---------------------------------------------------------------------------
# Tools (Debian packages when missing) and the ringress build.
# ---------------------------------------------------------------------------
apt_install() { # pkg...
    log "installing: $*"
    local sudo=() added_policy=0 ok=1
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install $*"
        sudo=(sudo)
    fi
    # Keep the packages' own services (nginx on :80, varnish on :6081) from
    # starting while installing.
    if [[ ! -e /usr/sbin/policy-rc.d ]] && ((EUID == 0)); then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || ok=0
    if ((ok)); then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || ok=0
    fi
    ((added_policy)) && rm -f /usr/sbin/policy-rc.d
    ((ok))
}
need_pkgs=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v timeout >/dev/null 2>&1 || need_pkgs+=(coreutils)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
if ((NEED_VARNISH)); then
    command -v varnishd >/dev/null 2>&1 || [[ -x /usr/sbin/varnishd ]] || need_pkgs+=(varnish)
fi
if ((${#need_pkgs[@]})); then
    apt_install "${need_pkgs[@]}" || die "apt-get install ${need_pkgs[*]} failed"
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
VARNISHD=$(command -v varnishd 2>/dev/null || echo /usr/sbin/varnishd)

build_ringress() {
    [[ $SKIP_RINGRESS == 1 ]] && return 0
    if [[ $SKIP_BUILD != 1 ]]; then
        [[ -d $HOME/.cargo/bin ]] && PATH=$HOME/.cargo/bin:$PATH
        command -v cargo >/dev/null 2>&1 || die "cargo not found (SKIP_BUILD=1 with RINGRESS_BIN, or SKIP_RINGRESS=1)"
        log "cargo build --release (in $REPO_ROOT)"
        (cd "$REPO_ROOT" && timeout 3600 cargo build --release >&2) || die "cargo build --release failed"
    fi
    [[ -x $RINGRESS_BIN ]] || die "ringress binary not found at $RINGRESS_BIN"
}

# ---------------------------------------------------------------------------
# Process bookkeeping and clean-up (normal exit, errors and Ctrl-C).
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringress-$BENCH-vs.XXXXXX")
# nginx's proxy_cache files live in memory, as ringress's and Varnish's
# (-s malloc) objects do.
SHM=$(mktemp -d "/dev/shm/ringress-$BENCH-vs.XXXXXX")
ROWS=$TMP/rows.jsonl
PIDS=()    # servers we started
CHILD_PID= # the wrk run in progress, if any
stop_pid() { # pid: TERM, up to 3 s, then KILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    [[ -n $CHILD_PID ]] && stop_pid "$CHILD_PID"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$SHM"
    if [[ $KEEP_TMP == 1 ]]; then
        log "kept temp dir: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM
in_child() { # CMD...: in the background, waited for, so that Ctrl-C stops it at once
    local rc=0
    "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=
    return "$rc"
}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
check_ports_free() { # port...
    local p
    for p in "$@"; do ! port_in_use "$p" || die "port $HOST:$p is already in use"; done
}
# wait_http NAME PORT PATH PID LOG: up to 10 s for GET PATH to answer 200.
wait_http() {
    local name=$1 port=$2 path=$3 pid=$4 logf=$5 i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logf" >&2 2>/dev/null || true
            die "$name exited during start-up (log above, $logf)"
        fi
        curl -fsS -o /dev/null --max-time 1 "http://$HOST:$port$path" 2>/dev/null && return 0
        sleep 0.1
    done
    tail -n 30 "$logf" >&2 2>/dev/null || true
    die "$name did not answer GET $path on $HOST:$port within 10 s (log above, $logf)"
}
cpu_mask() { # nginx worker_cpu_affinity: bit mask, rightmost bit = CPU 0
    local m=1 i
    for ((i = 0; i < $1; i++)); do m+=0; done
    echo "$m"
}

# ---------------------------------------------------------------------------
# Servers. Each start_* records the PID to measure in SERVER_PID[name] and
# the port in SERVER_PORT[name].
# ---------------------------------------------------------------------------
declare -A SERVER_PID=() SERVER_PORT=()
ORIGIN_PORT=$PORT_BASE             # access log on: counts what reaches the origin
ORIGIN_NOLOG_PORT=$((PORT_BASE + 1)) # access log off: for pass-through routes
ORIGIN_LOG=$TMP/origin/access.log
SMALL_PATH=/small.txt SMALL_BYTES=100
LARGE_PATH=/64k.bin LARGE_BYTES=65536
PAGE_PATH=/page.html PAGE_BYTES=20000
PASS_PAGE_PATH=/pass/page.html # the same page, for routes without a cache

nginx_main() { # dir cpu: the top of an nginx.conf, one worker
    ((EUID == 0)) && echo "user root;"
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity $(cpu_mask "$2");
worker_rlimit_nofile 65536;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 20000; }
EOF
}
# tcp_nopush stays off in every nginx here: with it, nginx's keep-alive
# answers of 64 KiB (proxy_cache hits) and 20 KB (origin) stalled for about
# 40 ms each (21 req/s on one connection, against 2,100 without it).
nginx_http_common() { # dir sendfile(on|off)
    cat <<EOF
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    sendfile $2;
    tcp_nopush off;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}
run_nginx() { # name dir cpu port health-path
    local name=$1 dir=$2 cpu=$3 args=(-p "$2" -c "$2/nginx.conf")
    [[ $("$NGINX" -h 2>&1) == *"-e filename"* ]] && args+=(-e "$dir/error.log")
    "$NGINX" -t "${args[@]}" >"$dir/stdout.log" 2>&1 || {
        cat "$dir/stdout.log" >&2
        die "$name: nginx -t failed"
    }
    log "$name: nginx on $HOST:$4 (cpu $cpu)"
    taskset -c "$cpu" "$NGINX" "${args[@]}" >>"$dir/stdout.log" 2>&1 &
    SERVER_PID[$name]=$!
    SERVER_PORT[$name]=$4
    PIDS+=($!)
    wait_http "$name" "$4" "$5" $! "$dir/error.log"
}

# The origin: nginx, 1 worker on BACKEND_CPU, static files with
# Cache-Control: max-age=3600 and no compression of its own.
start_origin() {
    local dir=$TMP/origin
    mkdir -p "$dir/www"
    printf '%-99s\n' "small object from the origin" >"$dir/www${SMALL_PATH}"
    mkdir -p "$dir/www/pass"
    head -c "$LARGE_BYTES" /dev/zero | tr '\0' 'x' >"$dir/www${LARGE_PATH}"
    "${REPORT[@]}" html "$PAGE_BYTES" >"$dir/www${PAGE_PATH}"
    cp "$dir/www${PAGE_PATH}" "$dir/www${PASS_PAGE_PATH}"
    mkdir -p "$dir/www/pass-level1"
    cp "$dir/www${PAGE_PATH}" "$dir/www/pass-level1${PAGE_PATH}"
    {
        nginx_main "$dir" "$BACKEND_CPU"
        cat <<EOF
http {
$(nginx_http_common "$dir" on)
    types { text/plain txt; text/html html; application/octet-stream bin; }
    gzip off;
    open_file_cache max=16;
    server {
        listen $HOST:$ORIGIN_PORT backlog=4096;
        access_log $ORIGIN_LOG;
        root $dir/www;
        add_header Cache-Control "max-age=3600";
    }
    server {
        listen $HOST:$ORIGIN_NOLOG_PORT backlog=4096;
        access_log off;
        root $dir/www;
        add_header Cache-Control "max-age=3600";
    }
}
EOF
    } >"$dir/nginx.conf"
    run_nginx origin "$dir" "$BACKEND_CPU" "$ORIGIN_PORT" "$SMALL_PATH"
    local f size
    for f in "$SMALL_PATH:$SMALL_BYTES" "$LARGE_PATH:$LARGE_BYTES"; do
        size=$(curl -fsS -o /dev/null -w '%{size_download}' "http://$HOST:$ORIGIN_PORT${f%%:*}") || die "origin: GET ${f%%:*} failed"
        [[ $size == "${f##*:}" ]] || die "origin: GET ${f%%:*} gave $size bytes, expected ${f##*:}"
    done
}
origin_count() { wc -l <"$ORIGIN_LOG"; }

# nginx as the proxy under test. $3: the locations (server-level lines).
start_nginx_proxy() { # name port locations-and-server-lines
    local dir=$TMP/$1
    mkdir -p "$dir"
    {
        nginx_main "$dir" "$PROXY_CPU"
        cat <<EOF
http {
$(nginx_http_common "$dir" off)
    access_log off;
    open_file_cache max=1000 inactive=1h;
    proxy_cache_path $SHM/$1 levels=1:2 keys_zone=hot:10m max_size=256m inactive=1h use_temp_path=off;
    upstream origin {
        server $HOST:$ORIGIN_PORT;
        keepalive 1024;
        keepalive_requests 100000000;
        keepalive_timeout 75s;
    }
    upstream origin_nolog {
        server $HOST:$ORIGIN_NOLOG_PORT;
        keepalive 1024;
        keepalive_requests 100000000;
        keepalive_timeout 75s;
    }
    server {
        listen $HOST:$2 backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
$3
    }
}
EOF
    } >"$dir/nginx.conf"
    run_nginx "$1" "$dir" "$PROXY_CPU" "$2" "$SMALL_PATH"
}

# Varnish: the whole varnishd (manager, child, every thread) pinned to
# PROXY_CPU, one thread pool, objects in memory, the built-in VCL with the
# origin as its backend.
VARNISH_POOL_MIN=${VARNISH_POOL_MIN:-$((CONNS + 36))}
start_varnish() { # name port
    local dir=$TMP/$1
    mkdir -p "$dir"
    log "$1: varnishd on $HOST:$2 (cpu $PROXY_CPU, thread_pools=1, thread_pool_min=$VARNISH_POOL_MIN)"
    taskset -c "$PROXY_CPU" "$VARNISHD" -F -j none -n "$dir/work" -a "$HOST:$2" -b "$HOST:$ORIGIN_PORT" \
        -s malloc,256m -T none -p thread_pools=1 -p "thread_pool_min=$VARNISH_POOL_MIN" \
        -p thread_pool_max=1000 >"$dir/varnishd.log" 2>&1 &
    SERVER_PID[$1]=$!
    SERVER_PORT[$1]=$2
    PIDS+=($!)
    wait_http "$1" "$2" "$SMALL_PATH" $! "$dir/varnishd.log"
}

# ringress, one worker pinned to PROXY_CPU. $3: the routes and the rest of
# the config (everything but the listener and the upstreams).
start_ringress() { # name port toml
    local dir=$TMP/$1
    mkdir -p "$dir"
    cat >"$dir/ringress.toml" <<EOF
[runtime]
threads = 1

[[listeners]]
name = "main"
bind = "$HOST:$2"

[upstreams.origin]
servers = ["$HOST:$ORIGIN_PORT"]

[upstreams.origin_nolog]
servers = ["$HOST:$ORIGIN_NOLOG_PORT"]

$3
EOF
    log "$1: ringress on $HOST:$2 (cpu $PROXY_CPU, --threads 1)"
    taskset -c "$PROXY_CPU" "$RINGRESS_BIN" --config "$dir/ringress.toml" --threads 1 --no-pin >"$dir/ringress.log" 2>&1 &
    SERVER_PID[$1]=$!
    SERVER_PORT[$1]=$2
    PIDS+=($!)
    wait_http "$1" "$2" "$SMALL_PATH" $! "$dir/ringress.log"
}

# The floor (floor.c): a fixed-answer epoll server with the origin's small
# and large objects in memory, pinned to PROXY_CPU like the proxies. It
# does the least any server must (read, find the head's end and the path,
# write), so its req/s is what the load side allows here and its CPU per
# request what the kernel's TCP work costs alone.
start_floor() { # name port
    local dir=$TMP/$1 www=$TMP/origin/www
    mkdir -p "$dir"
    command -v cc >/dev/null 2>&1 || apt_install gcc libc6-dev || die "no C compiler for floor.c"
    cc -O2 -o "$dir/floor" "$SCRIPT_DIR/floor.c" 2>"$dir/cc.log" || die "floor.c did not build: $(cat "$dir/cc.log")"
    log "$1: floor.c on $HOST:$2 (cpu $PROXY_CPU)"
    taskset -c "$PROXY_CPU" "$dir/floor" "$2" "$SMALL_PATH" "$www$SMALL_PATH" "$LARGE_PATH" "$www$LARGE_PATH" \
        >"$dir/floor.log" 2>&1 &
    SERVER_PID[$1]=$!
    SERVER_PORT[$1]=$2
    PIDS+=($!)
    wait_http "$1" "$2" "$SMALL_PATH" $! "$dir/floor.log"
}

stop_server() { # name: stop it and forget it
    local pid=${SERVER_PID[$1]} p keep=()
    stop_pid "$pid"
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=(${keep[@]+"${keep[@]}"})
    unset "SERVER_PID[$1]" "SERVER_PORT[$1]"
}
# wire_bytes NAME PATH: the body size NAME sends for PATH with
# Accept-Encoding: gzip (as sent: compressed when it compresses).
wire_bytes() {
    curl -fsS -o /dev/null --max-time 5 -H "Accept-Encoding: gzip" -w '%{size_download}' \
        "http://$HOST:${SERVER_PORT[$1]}$2" || die "$1: GET $2 failed"
}

# ---------------------------------------------------------------------------
# Measuring.
# ---------------------------------------------------------------------------
# warm NAME PATH [gzip]: a few requests so that the object is stored (and a
# later probe can check it is now a hit).
warm() {
    local h=() i
    [[ ${3:-} == gzip ]] && h=(-H "Accept-Encoding: gzip")
    for ((i = 0; i < 3; i++)); do
        curl -fsS -o /dev/null --max-time 5 ${h[@]+"${h[@]}"} "http://$HOST:${SERVER_PORT[$1]}$2" ||
            die "$1: GET $2 failed"
    done
}
# probe SCENARIO NAME PATH [--gzip] [--expect-hit]: one GET, recorded.
probe() {
    local s=$1 name=$2 path=$3
    shift 3
    "${REPORT[@]}" probe "$ROWS" --bench "$BENCH" --scenario "$s" --proxy "$name" \
        --url "http://$HOST:${SERVER_PORT[$name]}$path" "$@" >&2 || die "$name: probe of $path failed"
}
# wrk_run OUT SECS NAME PATH [gzip]: one wrk run against NAME, bounded.
wrk_run() {
    local out=$1 secs=$2 name=$3 path=$4 h=() pipe=() rc=0 p
    [[ ${5:-} == gzip ]] && h=(-H "Accept-Encoding: gzip")
    ((PIPELINE > 1)) && pipe=(-s "$SCRIPT_DIR/pipeline.lua")
    in_child taskset -c "$WRK_CPU" timeout "$((secs + 30))" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s \
        ${h[@]+"${h[@]}"} ${pipe[@]+"${pipe[@]}"} "http://$HOST:${SERVER_PORT[$name]}$path" \
        ${pipe[@]+-- "$PIPELINE"} >"$out" 2>&1 || rc=$?
    if ((rc != 0)); then
        cat "$out" >&2
        die "wrk against $name $path failed (exit $rc)"
    fi
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || die "a server (PID $p) died during the run against $name"; done
}
# measure SCENARIO NAME PATH ROUND gzip|plain hits|pass: one measured run,
# recorded with the proxy's CPU time and, for hits, the requests the origin
# saw meanwhile (it must be 0).
measure() {
    local s=$1 name=$2 path=$3 r=$4 enc=$5 kind=$6 out k0 k1 o0 o1 extra=()
    out=$TMP/wrk-$s-$name-r$r.txt
    k0=$("${REPORT[@]}" ticks "${SERVER_PID[$name]}")
    o0=$(origin_count)
    wrk_run "$out" "$DURATION" "$name" "$path" "$enc"
    k1=$("${REPORT[@]}" ticks "${SERVER_PID[$name]}")
    o1=$(origin_count)
    [[ $kind == hits ]] && extra=(--expect-hits --origin-requests "$((o1 - o0))")
    "${REPORT[@]}" record "$ROWS" --bench "$BENCH" --scenario "$s" --proxy "$name" --round "$r" \
        --wrk "$out" --ticks "$((k1 - k0))" --clk-tck "$CLK_TCK" ${extra[@]+"${extra[@]}"} >&2 ||
        die "could not parse wrk output $out"
}
# rotate I ITEM...: the items rotated left by I (each round starts with
# another proxy, so that none always runs right after another).
rotate() {
    local i=$1 n
    shift
    n=$#
    local items=("$@") k
    for ((k = 0; k < n; k++)); do printf '%s\n' "${items[$(((k + i) % n))]}"; done
}
# report TITLE META...: the report to stdout and, with the records and the
# summary, to RESULTS_DIR/$BENCH-vs.{txt,json}.
report() {
    local meta=() m
    for m in "$@"; do meta+=(--meta "$m"); done
    mkdir -p "$RESULTS_DIR"
    "${REPORT[@]}" report "$ROWS" --bench "$BENCH" --json "$RESULTS_DIR/$BENCH-vs.json" "${meta[@]}" \
        >"$RESULTS_DIR/$BENCH-vs.txt" || die "vs_report.py report failed"
    cat "$RESULTS_DIR/$BENCH-vs.txt"
    log "wrote $RESULTS_DIR/$BENCH-vs.txt and $BENCH-vs.json"
}
ringress_version() {
    if [[ $SKIP_RINGRESS == 1 ]]; then
        echo "ringress skipped"
    elif [[ $RINGRESS_BIN == "$REPO_ROOT/target/release/ringress" ]]; then
        echo "ringress built from $(git -C "$REPO_ROOT" rev-parse --short HEAD)$([[ -n $(git -C "$REPO_ROOT" status --porcelain -- src Cargo.toml Cargo.lock) ]] && echo ' + uncommitted changes')"
    else
        echo "ringress binary $RINGRESS_BIN (sha256 $(sha256sum "$RINGRESS_BIN" | cut -c1-12))"
    fi
}
meta_common() { # the lines every report starts with
    printf '%s\n' \
        "load=wrk -t1 -c$CONNS -d${DURATION}s keep-alive$( ((PIPELINE > 1)) && echo ", $PIPELINE requests pipelined per connection (bench-scripts/pipeline.lua)"), ${WARMUP}s warm-up per proxy and scenario, $ROUNDS rounds, proxy order rotated each round" \
        "cpus=proxy under test on CPU $PROXY_CPU (one worker/thread pool, whole process pinned); origin nginx on CPU $BACKEND_CPU; wrk on CPU $WRK_CPU; $(nproc) CPUs" \
        "cpu_us_per_req=utime+stime of the proxy's whole process tree over the run / requests completed" \
        "versions=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); $( ((NEED_VARNISH)) && "$VARNISHD" -V 2>&1 | grep -o 'varnish-[0-9.]*' | head -n1 | sed 's/$/; /')$(ringress_version)" \
        "loadavg=$LOADAVG_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (anything else running on the machine weighs on the numbers)" \
        "date=$(date -u +%Y-%m-%dT%H:%MZ)"
}
