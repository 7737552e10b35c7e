#!/usr/bin/env bash
# instructions.sh — user-space instructions ringress spends per request,
# counted by valgrind's callgrind: the same number on every run, to within
# a few percent, where wall-clock A/B runs on a shared VM move by 10-20 %.
#
#   bench-scripts/instructions.sh                 # target/release/ringress (built)
#   bench-scripts/instructions.sh OLD_BIN NEW_BIN # A/B of two builds
#   VS="nginx haproxy" bench-scripts/instructions.sh  # and the same count
#                                                 # for nginx and HAProxy
#   HEADERS=browser bench-scripts/instructions.sh # requests with the
#                                                 # headers a browser sends
#
# For each binary and each mode (keep-alive; a new connection per request)
# it starts ringress (one worker, --io $IO) under callgrind in front of a
# 1-worker nginx backend serving a 100-byte file, sends it 100 requests
# with oha, stops it, and counts every instruction of the process; then
# again with 100 + $REQUESTS requests. The difference divided by $REQUESTS
# is the cost of one request, start-up and shutdown cancelling out.
# Kernel work (TCP, io_uring) is not counted: callgrind sees user space
# only. Traffic goes to 127.0.0.1 only; every wait has a time limit.
#
# Environment knobs (defaults in brackets):
#   REQUESTS [6000]   requests in the measured difference
#   CONNS    [16]     oha connections
#   REPEAT   [2]      measurements per binary and mode
#   IO       [epoll]  ringress --io (epoll or io_uring). Under valgrind an
#                     io_uring ringress sometimes does not stop on SIGTERM
#                     after new-connection runs (never seen without
#                     valgrind), so epoll is the default; io_uring counts
#                     are higher (23.2k against 21.5k per keep-alive request
#                     on ef231e6): the drivers differ in user space too.
#   VS       []       reference proxies counted the same way, one worker
#                     each, in front of the same backend: "nginx",
#                     "haproxy" or both (nginx with master_process off,
#                     upstream keepalive; HAProxy -db, nbthread 1,
#                     http-reuse always). Their counts include their own
#                     start-up and shutdown just as ringress's do, and
#                     cancel out the same way.
#   HEADERS  [minimal] minimal: the 4 request headers oha sends (124
#                     bytes); browser: 12 headers, 621 bytes (a browser's
#                     user-agent and accept, cookie, referer, sec-fetch-*)
#   MODES    [keep-alive close]
#   NGINX_ACCESS_LOG [off]  the reference nginx's access_log line, e.g.
#                     "@TMP@/nginx.log combined" to count its log's cost
#   EXTRA_TOML []     appended to ringress's config, with @TMP@ replaced by
#                     the temp dir (e.g. an [access_log] writing there)
#   BACKEND_PORT [19090]  PORT [19091]
#   KEEP_CG=DIR       keep each large run's callgrind output in DIR (as
#                     BIN-MODE.cg) for callgrind_annotate
#   SKIP_BUILD=1      don't run cargo build (only with explicit binaries
#                     or an existing target/release/ringress)
set -euo pipefail

REQUESTS=${REQUESTS:-6000}
CONNS=${CONNS:-16}
REPEAT=${REPEAT:-2}
IO=${IO:-epoll}
BACKEND_PORT=${BACKEND_PORT:-19090}
PORT=${PORT:-19091}
SKIP_BUILD=${SKIP_BUILD:-0}
VS=${VS:-}
HEADERS=${HEADERS:-minimal}
MODES=${MODES:-keep-alive close}
HOST=127.0.0.1

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

log() { printf '[instructions] %s\n' "$*" >&2; }
die() {
    printf '[instructions] ERROR: %s\n' "$*" >&2
    exit 1
}

for v in REQUESTS CONNS REPEAT BACKEND_PORT PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((REQUESTS >= 100 && CONNS >= 1 && REPEAT >= 1)) || die "REQUESTS >= 100, CONNS >= 1, REPEAT >= 1"
[[ $IO == io_uring || $IO == epoll ]] || die "IO must be io_uring or epoll (got '$IO')"
for v in $VS; do
    [[ $v == nginx || $v == haproxy ]] || die "VS takes nginx and haproxy (got '$v')"
done
for m in $MODES; do
    [[ $m == keep-alive || $m == close ]] || die "MODES takes keep-alive and close (got '$m')"
done
HEADER_ARGS=()
case $HEADERS in
    minimal) ;;
    browser)
        HEADER_ARGS=(
            -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
            -H "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
            -H "Accept-Language: en-US,en;q=0.9,de;q=0.8"
            -H "Cookie: session=4f9a8c7e2b1d3a5f6e8c9b0a1d2e3f4a; theme=dark; _ga=GA1.2.123456789.1700000000"
            -H "Referer: https://example.com/products/list?page=2"
            -H "Sec-Fetch-Dest: document"
            -H "Sec-Fetch-Mode: navigate"
            -H "Sec-Fetch-Site: same-origin"
            -H "Upgrade-Insecure-Requests: 1"
            -H "Cache-Control: max-age=0"
        )
        ;;
    *) die "HEADERS must be minimal or browser (got '$HEADERS')" ;;
esac

# Tools: Debian packages and oha, installed when missing.
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v nginx >/dev/null || need+=(nginx)
command -v curl >/dev/null || need+=(curl)
[[ " $VS " == *" haproxy "* ]] && ! command -v haproxy >/dev/null && need+=(haproxy)
if ((${#need[@]})); then
    log "installing: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v oha >/dev/null; then
    log "installing oha (cargo install oha)"
    cargo install --locked oha >/dev/null 2>&1 || cargo install oha >/dev/null
fi

BINS=("$@")
if ((${#BINS[@]} == 0)); then
    if ((SKIP_BUILD == 0)); then
        log "building ringress (cargo build --release)"
        (cd "$REPO_ROOT" && cargo build --release --quiet)
    fi
    BINS=("$REPO_ROOT/target/release/ringress")
fi
for b in "${BINS[@]}"; do
    [[ -x $b ]] || die "not an executable: $b"
done

TMP=$(mktemp -d /tmp/ringress-instructions.XXXXXX)
chmod 755 "$TMP" # the backend's worker runs as nobody
BACKEND_PID=
PROXY_PID=
cleanup() {
    if [[ -n $PROXY_PID ]]; then kill -KILL "$PROXY_PID" 2>/dev/null || true; fi
    if [[ -n $BACKEND_PID ]]; then kill -TERM "$BACKEND_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
port_free "$BACKEND_PORT" || die "port $BACKEND_PORT is in use"
port_free "$PORT" || die "port $PORT is in use"

# Waits (up to 30 s: valgrind starts slowly) for a 200 on PORT.
wait_http() {
    local port=$1 pid=$2
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ $(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$HOST:$port/") == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

# Backend: nginx, one worker, a 100-byte file for any GET.
mkdir -p "$TMP/www" "$TMP/nginx"
printf '%-99s\n' "hello from backend" >"$TMP/www/index.html"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen $HOST:$BACKEND_PORT;
        root $TMP/www;
        location / { try_files /index.html =404; }
    }
}
EOF
nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" >/dev/null 2>&1 &
BACKEND_PID=$!
wait_http "$BACKEND_PORT" "$BACKEND_PID" || die "backend nginx did not start (see $TMP/nginx/error.log)"

cat >"$TMP/ringress.toml" <<EOF
[[listeners]]
name = "main"
bind = "$HOST:$PORT"

[upstreams.backend]
servers = [{ addr = "$HOST:$BACKEND_PORT" }]

[[routes]]
upstream = "backend"
EOF
printf '%s\n' "${EXTRA_TOML:-}" | sed "s|@TMP@|$TMP|g" >>"$TMP/ringress.toml"

NGINX_ACCESS_LOG=${NGINX_ACCESS_LOG:-off}
NGINX_ACCESS_LOG=${NGINX_ACCESS_LOG//@TMP@/$TMP}
# The reference proxies, one worker each, with compare.sh's reuse settings
# (nginx: upstream keepalive 1024, HTTP/1.1, Connection ""; HAProxy:
# http-reuse always) but not its connection limits, which only matter for
# 10,000 idle connections.
mkdir -p "$TMP/nginx-proxy"
cat >"$TMP/nginx-proxy/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx-proxy/nginx.pid;
error_log $TMP/nginx-proxy/error.log;
events { worker_connections 4096; }
http {
    access_log $NGINX_ACCESS_LOG;
    keepalive_requests 1000000;
    upstream backend {
        server $HOST:$BACKEND_PORT;
        keepalive 1024;
        keepalive_requests 1000000;
    }
    server {
        listen $HOST:$PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 75s
    timeout server 75s
frontend fe
    bind $HOST:$PORT
    default_backend be
backend be
    server s1 $HOST:$BACKEND_PORT
EOF

# Instructions of one run of TARGET (a ringress binary, nginx or haproxy)
# serving N requests (MODE: keep-alive|close), left in COUNT. Not run in a
# subshell, so the EXIT trap sees PROXY_PID.
count() {
    local target=$1 n=$2 mode=$3 out="$TMP/cg" cmd
    rm -rf "$out" && mkdir -p "$out"
    case $target in
        nginx) cmd=(nginx -c "$TMP/nginx-proxy/nginx.conf" -p "$TMP/nginx-proxy") ;;
        haproxy) cmd=(haproxy -db -f "$TMP/haproxy.cfg") ;;
        *) cmd=("$target" --config "$TMP/ringress.toml" --threads 1 --io "$IO" --no-pin) ;;
    esac
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "${cmd[@]}" >"$TMP/proxy.log" 2>&1 &
    PROXY_PID=$!
    wait_http "$PORT" "$PROXY_PID" || die "$target did not start under valgrind (see $TMP/proxy.log)"
    local extra=(${HEADER_ARGS[@]+"${HEADER_ARGS[@]}"})
    [[ $mode == close ]] && extra+=(--disable-keepalive)
    # The warm-up curl above is one request more on both runs: it cancels.
    # ${extra[@]+...}: an empty array is "unbound" to set -u before bash 4.4.
    timeout 300 oha -n "$n" -c "$CONNS" --no-tui ${extra[@]+"${extra[@]}"} "http://$HOST:$PORT/" >"$TMP/oha.txt" 2>&1 ||
        die "oha failed: $(tail -3 "$TMP/oha.txt")"
    grep -q 'Success rate:.*100.00%' "$TMP/oha.txt" || die "requests failed: $(grep -A3 'Status code' "$TMP/oha.txt")"
    kill -TERM "$PROXY_PID"
    for _ in $(seq 1 300); do
        kill -0 "$PROXY_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$PROXY_PID" 2>/dev/null && die "$target did not stop within 30 s"
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
    COUNT=$(awk '/^summary:/ {s += $2} END {print s + 0}' "$out"/cg.*)
}

TARGETS=("${BINS[@]}")
for v in $VS; do TARGETS+=("$v"); done
echo "| proxy | mode | headers | user-space instructions per request |"
echo "|---|---|---|---|"
for mode in $MODES; do
    for bin in "${TARGETS[@]}"; do
        per=()
        for _ in $(seq 1 "$REPEAT"); do
            count "$bin" 100 "$mode"
            small=$COUNT
            count "$bin" $((100 + REQUESTS)) "$mode"
            per+=($(((COUNT - small) / REQUESTS)))
            if [[ -n ${KEEP_CG:-} ]]; then
                mkdir -p "$KEEP_CG"
                cat "$TMP/cg"/cg.* >"$KEEP_CG/$(basename "$bin")-$mode.cg"
            fi
        done
        log "$bin $mode: ${per[*]}"
        echo "| $bin | $mode | $HEADERS | ${per[*]} |"
    done
done
