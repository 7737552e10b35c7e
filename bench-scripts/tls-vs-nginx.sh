#!/usr/bin/env bash
# tls-vs-nginx.sh — ringress vs nginx terminating TLS, one worker each.
#
# Starts, all on 127.0.0.1:
#   * a backend: nginx, 1 worker, plain HTTP, serving a fixed 100-byte static
#     file (hello.txt, so every response carries Content-Length) for any GET
#   * nginx as a 1-worker TLS-terminating reverse proxy to that backend
#     (TLSv1.2 + TLSv1.3, shared session cache + session tickets, ALPN as
#     nginx sets it), with upstream keep-alive (keepalive 1024,
#     proxy_http_version 1.1, Connection "")
#   * ringress with one worker (--threads 1) and a TLS listener, routing / to
#     the same backend
# Both proxies use the same ECDSA P-256 self-signed certificate (for
# localhost and 127.0.0.1), made with the openssl CLI in the temp dir.
#
# Workloads (WORKLOADS, all three by default), each with wrk -t1 -c$CONNS:
#   keepalive   https://.../ with keep-alive: TLS record cost + proxying
#   close       -H "Connection: close": a new TCP + TLS connection per
#               request. wrk's OpenSSL client RESUMES the TLS session on
#               every reconnect (it keeps the SSL object, and its session,
#               across reconnects), so these are resumed TLSv1.3 handshakes
#               (PSK + ECDHE, no certificate, no signature), not full ones.
#   close-full  as close, but against a second listener of each proxy with
#               session resumption turned off (nginx: ssl_session_cache off,
#               ssl_session_tickets off; ringress: session_cache = 0,
#               session_tickets = false), so every request costs a full
#               handshake (ECDHE + ECDSA P-256 signature).
# For close and close-full, requests/s = handshakes/s. wrk starts its latency
# clock when it writes the request, after the handshake, so p99 there does
# NOT include the handshake itself.
#
# Before measuring it checks, with openssl s_client, what each TLS listener
# negotiates and whether it resumes a session; and (PROBE_WRK=1) it counts
# how many of wrk's reconnects nginx saw as resumed ($ssl_session_reused,
# logged by an extra probe-only server block of the nginx proxy).
#
# Rounds alternate: each round runs every workload, and within a workload
# backend / nginx / ringress in turn. Prints one markdown table per workload
# (best and median over the rounds) and one verdict line per workload.
#
# Exits non-zero only when setup fails (install, build, a server that does not
# start or dies, wrk failing). Losing to nginx is reported, not an error.
#
# Environment knobs (defaults in brackets):
#   DURATION [10]      seconds per measured wrk run
#   WARMUP   [3]       seconds of wrk warm-up per target and workload
#   ROUNDS   [2]       measured rounds
#   CONNS    [64]      wrk connections (-c); wrk always uses -t1
#   WORKLOADS ["keepalive close close-full"]  which workloads, in that order
#   BACKEND_PORT [19180]  NGINX_PORT [19181]  RINGRESS_PORT [19182]
#   NGINX_FULL_PORT [19183]  RINGRESS_FULL_PORT [19184]  (close-full)
#   PROBE_PORT [19185] nginx probe-only server block (PROBE_WRK=1)
#   PROBE_WRK [1]      1 = count wrk's session reuse against nginx (1 s run)
#   PROXY_CPU / BACKEND_CPU / WRK_CPU   override the CPU choice (see below)
#   SKIP_RINGRESS=1    measure only backend + nginx (no cargo build)
#   SKIP_BUILD=1       don't run cargo build (use an existing binary)
#   RINGRESS_BIN       path of the ringress binary [target/release/ringress]
#   RINGRESS_ARGS      extra ringress arguments, split on spaces [none], e.g.
#                      RINGRESS_ARGS="--log info,rustls=error"
#   KEEP_TMP=1         keep the temp dir (certs, configs, logs, wrk outputs)
set -euo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64}
WORKLOADS=${WORKLOADS:-keepalive close close-full}
BACKEND_PORT=${BACKEND_PORT:-19180}
NGINX_PORT=${NGINX_PORT:-19181}
RINGRESS_PORT=${RINGRESS_PORT:-19182}
NGINX_FULL_PORT=${NGINX_FULL_PORT:-19183}
RINGRESS_FULL_PORT=${RINGRESS_FULL_PORT:-19184}
PROBE_PORT=${PROBE_PORT:-19185}
PROBE_WRK=${PROBE_WRK:-1}
SKIP_RINGRESS=${SKIP_RINGRESS:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
RINGRESS_ARGS=${RINGRESS_ARGS:-}
HOST=127.0.0.1 # all traffic stays on loopback

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RINGRESS_BIN=${RINGRESS_BIN:-$REPO_ROOT/target/release/ringress}

log() { printf '[tls-vs-nginx] %s\n' "$*" >&2; }
die() {
    printf '[tls-vs-nginx] ERROR: %s\n' "$*" >&2
    exit 1
}

for v in DURATION WARMUP ROUNDS CONNS BACKEND_PORT NGINX_PORT RINGRESS_PORT NGINX_FULL_PORT RINGRESS_FULL_PORT PROBE_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((ROUNDS >= 1)) || die "ROUNDS must be >= 1"
((DURATION >= 1)) || die "DURATION must be >= 1"
((CONNS >= 1)) || die "CONNS must be >= 1"
read -r -a WL <<<"$WORKLOADS"
((${#WL[@]} >= 1)) || die "WORKLOADS is empty"
WANT_FULL=0
for w in "${WL[@]}"; do
    case $w in
    keepalive | close) ;;
    close-full) WANT_FULL=1 ;;
    *) die "unknown workload '$w' in WORKLOADS (known: keepalive close close-full)" ;;
    esac
done

# ---------------------------------------------------------------------------
# CPU placement (same rules as vs-nginx.sh).
#
# The proxy under test (nginx's one worker, or ringress's one worker) gets
# PROXY_CPU; the backend nginx and wrk get the other CPUs.
#   * PROXY_CPU is 0: ringress pins worker i to core i by itself, so its single
#     worker lands on core 0 whatever we do; nginx's worker is put on the same
#     core with worker_cpu_affinity so both proxies run on the same core.
#   * On a 2-core machine (like this project's): backend nginx and wrk share
#     CPU 1 (taskset -c 1).
#   * With 3+ usable CPUs we spread them out: backend and wrk each get their
#     own CPU, preferring CPUs that are not hyper-thread siblings of CPU 0 (so
#     the proxy has its physical core to itself), backend first, then wrk.
#   * With 1 CPU everything shares CPU 0 (numbers are then not meaningful).
# Each choice can be overridden with PROXY_CPU / BACKEND_CPU / WRK_CPU.
# ---------------------------------------------------------------------------
# shellcheck source=bench-scripts/cpu-placement.sh
source "$SCRIPT_DIR/cpu-placement.sh"
for v in PROXY_CPU BACKEND_CPU WRK_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a CPU number (got '${!v}')"
done
((PROXY_CPU == 0)) || log "WARNING: PROXY_CPU=$PROXY_CPU, but ringress pins its worker 0 to core 0 itself"

# nginx worker_cpu_affinity wants a bit mask, rightmost bit = CPU 0.
cpu_mask() {
    local m=1 i
    for ((i = 0; i < $1; i++)); do m+=0; done
    echo "$m"
}

# ---------------------------------------------------------------------------
# Tools: install what is missing (Debian packages), as CI machines are fresh.
# ---------------------------------------------------------------------------
need_pkgs=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v timeout >/dev/null 2>&1 || need_pkgs+=(coreutils)
if ((${#need_pkgs[@]})); then
    log "installing: ${need_pkgs[*]}"
    SUDO=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install ${need_pkgs[*]}"
        SUDO=(sudo)
    fi
    # Keep the package's own nginx service from being started on :80 while
    # installing (only if no policy-rc.d is there already; removed right after).
    added_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]] && ((EUID == 0)); then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1
    fi
    install_ok=1
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || install_ok=0
    if ((install_ok)); then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || install_ok=0
    fi
    ((added_policy)) && rm -f /usr/sbin/policy-rc.d
    ((install_ok)) || die "apt-get install ${need_pkgs[*]} failed"
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found"
command -v wrk >/dev/null 2>&1 || die "wrk not found"
command -v openssl >/dev/null 2>&1 || die "openssl not found"
"$NGINX" -V 2>&1 | grep -q -- --with-http_ssl_module || die "$NGINX is built without http_ssl_module"

# ---------------------------------------------------------------------------
# Build ringress.
# ---------------------------------------------------------------------------
if [[ $SKIP_RINGRESS != 1 ]]; then
    if [[ $SKIP_BUILD != 1 ]]; then
        [[ -d $HOME/.cargo/bin ]] && PATH=$HOME/.cargo/bin:$PATH
        command -v cargo >/dev/null 2>&1 || die "cargo not found (set SKIP_BUILD=1 and RINGRESS_BIN, or SKIP_RINGRESS=1)"
        log "cargo build --release (in $REPO_ROOT)"
        (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
    fi
    [[ -x $RINGRESS_BIN ]] || die "ringress binary not found at $RINGRESS_BIN"
fi

# ---------------------------------------------------------------------------
# Process bookkeeping and cleanup (runs on normal exit, errors and Ctrl-C).
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringress-tls-vs-nginx.XXXXXX")
PIDS=()   # long-lived servers we started
WRK_PID=  # the wrk run in progress, if any
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    [[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 30; i++)); do # up to 3 s each, then KILL
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
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

# Raise the fd limit when we can (no-op if not allowed).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
ports=("$BACKEND_PORT" "$NGINX_PORT")
((WANT_FULL)) && ports+=("$NGINX_FULL_PORT")
[[ $PROBE_WRK == 1 ]] && ports+=("$PROBE_PORT")
if [[ $SKIP_RINGRESS != 1 ]]; then
    ports+=("$RINGRESS_PORT")
    ((WANT_FULL)) && ports+=("$RINGRESS_FULL_PORT")
fi
for p in "${ports[@]}"; do
    ! port_in_use "$p" || die "port $HOST:$p is already in use"
done

# ---------------------------------------------------------------------------
# Certificate: ECDSA P-256, self-signed, for localhost and 127.0.0.1 (an
# end-entity certificate: CA:FALSE, serverAuth). The key is PKCS#8 PEM.
# ---------------------------------------------------------------------------
CERT=$TMP/cert.pem
KEY=$TMP/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$KEY" -out "$CERT" -days 30 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=serverAuth" >"$TMP/openssl-req.log" 2>&1 || {
    cat "$TMP/openssl-req.log" >&2
    die "openssl req (certificate generation) failed"
}
chmod 600 "$KEY"
log "made ECDSA P-256 self-signed certificate for localhost/127.0.0.1 in $TMP"

# Wait (bounded) for URL to answer 200; fail if PID died. Extra args go to
# curl (for https: --cacert, so the served certificate is verified too).
wait_url() {
    local name=$1 url=$2 pid=$3 logf=$4 i
    shift 4
    for ((i = 0; i < 100; i++)); do # 100 x 0.1 s = 10 s
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during startup; log ($logf):"
            tail -n 30 "$logf" >&2 2>/dev/null || true
            die "$name failed to start"
        fi
        if curl -fsS -o /dev/null --max-time 1 "$@" "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not answer $url within 10 s; last curl error:"
    curl -fsS -o /dev/null --max-time 1 "$@" "$url" >&2 || true
    log "log ($logf):"
    tail -n 30 "$logf" >&2 2>/dev/null || true
    die "$name failed to start"
}

NGINX_HAS_E=0 # -e (startup error log path) exists since nginx 1.19.5
nginx_help=$("$NGINX" -h 2>&1 || true)
[[ $nginx_help == *"-e filename"* ]] && NGINX_HAS_E=1
WORKER_CONNS=$((CONNS * 2 + 256 > 1024 ? CONNS * 2 + 256 : 1024))

# Common nginx top-level + http settings. $1 = prefix dir, $2 = cpu.
nginx_common() {
    local dir=$1 cpu=$2
    ((EUID == 0)) && echo "user root;"
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity $(cpu_mask "$cpu");
worker_rlimit_nofile $((WORKER_CONNS * 2));
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections $WORKER_CONNS;
}
EOF
}
nginx_http_common() {
    local dir=$1
    cat <<EOF
    access_log off;
    # Client keep-alive for as long as wrk runs (default would close every
    # 1000 requests and make wrk reconnect).
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
EOF
}

start_nginx() { # name dir cpu logfile
    local name=$1 dir=$2 cpu=$3 logf=$4
    local args=(-p "$dir" -c "$dir/nginx.conf")
    ((NGINX_HAS_E)) && args+=(-e "$dir/error.log")
    "$NGINX" -t "${args[@]}" >"$logf" 2>&1 || {
        cat "$logf" >&2
        die "$name: nginx -t failed"
    }
    taskset -c "$cpu" "$NGINX" "${args[@]}" >>"$logf" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# ---------------------------------------------------------------------------
# Backend: nginx, 1 worker, plain HTTP, fixed 100-byte static file for GET /.
# ---------------------------------------------------------------------------
B=$TMP/backend
mkdir -p "$B/www"
printf '%-99s\n' "hello from backend" >"$B/www/hello.txt" # exactly 100 bytes
{
    nginx_common "$B" "$BACKEND_CPU"
    cat <<EOF
http {
$(nginx_http_common "$B")
    default_type text/plain;
    open_file_cache max=16;
    server {
        listen $HOST:$BACKEND_PORT backlog=4096;
        root $B/www;
        location / {
            try_files /hello.txt =404;
        }
    }
}
EOF
} >"$B/nginx.conf"
log "starting backend nginx on $HOST:$BACKEND_PORT (cpu $BACKEND_CPU)"
start_nginx backend "$B" "$BACKEND_CPU" "$B/stdout.log"
BACKEND_PID=$LAST_PID
wait_url backend "http://$HOST:$BACKEND_PORT/" "$BACKEND_PID" "$B/error.log"

# ---------------------------------------------------------------------------
# nginx TLS reverse proxy: 1 worker, upstream keep-alive.
#   NGINX_PORT       sessions resumable (shared cache + tickets)
#   NGINX_FULL_PORT  resumption off (close-full workload only)
#   PROBE_PORT       as NGINX_PORT, plus an access log of $ssl_session_reused
#                    (only hit by the 1 s wrk probe, never measured)
# ---------------------------------------------------------------------------
N=$TMP/nginx-proxy
mkdir -p "$N"
nginx_location() {
    cat <<EOF
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
EOF
}
{
    nginx_common "$N" "$PROXY_CPU"
    cat <<EOF
http {
$(nginx_http_common "$N")
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    upstream backend {
        server $HOST:$BACKEND_PORT;
        keepalive 1024;
        keepalive_requests 100000000;
        keepalive_timeout 75s;
    }
    server {
        listen $HOST:$NGINX_PORT ssl backlog=4096;
$(nginx_location)
    }
EOF
    if ((WANT_FULL)); then
        cat <<EOF
    server {
        listen $HOST:$NGINX_FULL_PORT ssl backlog=4096;
        ssl_session_cache off;
        ssl_session_tickets off;
$(nginx_location)
    }
EOF
    fi
    if [[ $PROBE_WRK == 1 ]]; then
        cat <<EOF
    log_format reuse '\$ssl_session_reused \$ssl_protocol \$ssl_cipher \$ssl_curve';
    server {
        listen $HOST:$PROBE_PORT ssl backlog=4096;
        access_log $N/probe-access.log reuse;
$(nginx_location)
    }
EOF
    fi
    echo "}"
} >"$N/nginx.conf"
log "starting nginx TLS proxy on $HOST:$NGINX_PORT (cpu $PROXY_CPU)"
start_nginx nginx-proxy "$N" "$PROXY_CPU" "$N/stdout.log"
NGINX_PID=$LAST_PID
wait_url nginx-proxy "https://$HOST:$NGINX_PORT/" "$NGINX_PID" "$N/error.log" --cacert "$CERT"
((WANT_FULL)) && wait_url nginx-proxy "https://$HOST:$NGINX_FULL_PORT/" "$NGINX_PID" "$N/error.log" --cacert "$CERT"

# ---------------------------------------------------------------------------
# ringress: one worker (pins itself to core 0), TLS listener(s).
# ---------------------------------------------------------------------------
RINGRESS_PID=
if [[ $SKIP_RINGRESS != 1 ]]; then
    R=$TMP/ringress
    mkdir -p "$R"
    {
        cat <<EOF
[runtime]
threads = 1

[[listeners]]
name = "https"
bind = "$HOST:$RINGRESS_PORT"
[listeners.tls]
certs = [ { cert = "$CERT", key = "$KEY" } ]
EOF
        if ((WANT_FULL)); then
            cat <<EOF

[[listeners]]
name = "https-full"
bind = "$HOST:$RINGRESS_FULL_PORT"
[listeners.tls]
certs = [ { cert = "$CERT", key = "$KEY" } ]
session_tickets = false
session_cache = 0
EOF
        fi
        cat <<EOF

[[routes]]
path_prefix = "/"
upstream = "backend"

[upstreams.backend]
servers = ["$HOST:$BACKEND_PORT"]
EOF
    } >"$R/ringress.toml"
    read -r -a extra_args <<<"$RINGRESS_ARGS"
    log "starting ringress on $HOST:$RINGRESS_PORT (cpu $PROXY_CPU)${RINGRESS_ARGS:+ with $RINGRESS_ARGS}"
    taskset -c "$PROXY_CPU" "$RINGRESS_BIN" --config "$R/ringress.toml" --threads 1 "${extra_args[@]}" >"$R/ringress.log" 2>&1 &
    RINGRESS_PID=$!
    PIDS+=("$RINGRESS_PID")
    wait_url ringress "https://$HOST:$RINGRESS_PORT/" "$RINGRESS_PID" "$R/ringress.log" --cacert "$CERT"
    ((WANT_FULL)) && wait_url ringress "https://$HOST:$RINGRESS_FULL_PORT/" "$RINGRESS_PID" "$R/ringress.log" --cacert "$CERT"
fi

# ---------------------------------------------------------------------------
# TLS probes (openssl s_client, bounded by timeout): what each listener
# negotiates, and whether a second connection resumes the first's session.
# ---------------------------------------------------------------------------
PROBE_REQ=$'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
# tls_probe PORT -> "protocol cipher group resumed(yes/no)"
tls_probe() {
    local port=$1 sess=$TMP/probe-$1.sess out1 out2 proto cipher group resumed=no
    rm -f "$sess"
    # -ign_eof: keep reading until the server closes, so TLSv1.3 tickets
    # (sent after the handshake) reach -sess_out.
    out1=$(printf '%s' "$PROBE_REQ" | timeout 5 openssl s_client -connect "$HOST:$port" -servername localhost \
        -CAfile "$CERT" -verify_return_error -sess_out "$sess" -ign_eof 2>&1) || true
    printf '%s\n' "$out1" >"$TMP/probe-$port-1.txt"
    read -r proto cipher < <(awk '/^(New|Reused), / {gsub(/,/, ""); print $2, $5; exit}' <<<"$out1") || true
    group=$(awk -F': ' '/^(Server Temp Key|Negotiated TLS1.3 group):/ {split($2, a, ","); print a[1]; exit}' <<<"$out1")
    if [[ -s $sess ]]; then
        out2=$(printf '%s' "$PROBE_REQ" | timeout 5 openssl s_client -connect "$HOST:$port" -servername localhost \
            -CAfile "$CERT" -sess_in "$sess" -ign_eof 2>&1) || true
        printf '%s\n' "$out2" >"$TMP/probe-$port-2.txt"
        grep -q '^Reused, ' <<<"$out2" && resumed=yes
    fi
    echo "${proto:-?} ${cipher:-?} ${group:-?} $resumed"
}

declare -A PROBE=()
probe_ports=("nginx:$NGINX_PORT")
((WANT_FULL)) && probe_ports+=("nginx-full:$NGINX_FULL_PORT")
if [[ $SKIP_RINGRESS != 1 ]]; then
    probe_ports+=("ringress:$RINGRESS_PORT")
    ((WANT_FULL)) && probe_ports+=("ringress-full:$RINGRESS_FULL_PORT")
fi
for pp in "${probe_ports[@]}"; do
    PROBE[${pp%%:*}]=$(tls_probe "${pp#*:}")
    log "s_client probe ${pp%%:*} (port ${pp#*:}): protocol/cipher/group/resumes = ${PROBE[${pp%%:*}]}"
done
((WANT_FULL)) && [[ ${PROBE[nginx-full]##* } == yes ]] && log "WARNING: nginx's resumption-off server block resumed a session (s_client)"

# ---------------------------------------------------------------------------
# wrk driving and parsing.
# ---------------------------------------------------------------------------
# to_ms "1.23ms" -> 1.23 ; handles us, ms, s, m, h
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0 || n == "") { print "nan"; exit }
        printf "%.3f", n * f
    }'
}

# cpu_sample CPU -> "total idle" jiffies of that CPU from /proc/stat
cpu_sample() { awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6}' /proc/stat; }
# cpu_busy "t0 i0" "t1 i1" -> busy percent between the samples
cpu_busy() {
    awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); dt = y[1] - x[1]
        if (dt > 0) printf "%.0f", 100 * (dt - (y[2] - x[2])) / dt; else print "n/a"}'
}
CPU_BUSY_PROXY=n/a CPU_BUSY_LOAD=n/a

# run_wrk OUTFILE SECONDS URL SERVERPID CONNS [extra wrk args...] — runs wrk
# in the background and waits, so Ctrl-C interrupts right away (cleanup
# kills wrk too).
run_wrk() {
    local out=$1 secs=$2 url=$3 spid=$4 conns=$5 rc=0 p0 l0
    shift 5
    p0=$(cpu_sample "$PROXY_CPU") l0=$(cpu_sample "$WRK_CPU")
    taskset -c "$WRK_CPU" wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s --latency "$@" "$url" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=
    CPU_BUSY_PROXY=$(cpu_busy "$p0" "$(cpu_sample "$PROXY_CPU")")
    CPU_BUSY_LOAD=$(cpu_busy "$l0" "$(cpu_sample "$WRK_CPU")")
    if ((rc != 0)); then
        cat "$out" >&2
        die "wrk against $url failed (exit $rc)"
    fi
    kill -0 "$spid" 2>/dev/null || die "server behind $url died during the run"
}

# parse OUTFILE -> "rps p99ms errors"
parse_wrk() {
    local f=$1 rps p99 errs
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p99=$(awk '$1 == "99%" {print $2}' "$f" | tail -n 1)
    errs=$(awk '/Non-2xx or 3xx responses:/ {e += $NF}
               /Socket errors:/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) {x = $i; sub(/,/, "", x); e += x}}
               END {print e + 0}' "$f")
    [[ -n $rps && -n $p99 ]] || {
        cat "$f" >&2
        die "could not parse wrk output $f"
    }
    echo "$rps $(to_ms "$p99") $errs"
}

# wrk's session reuse, seen from nginx: 1 s of Connection: close traffic
# against the probe-only server block, then count $ssl_session_reused.
WRK_REUSE=""
if [[ $PROBE_WRK == 1 ]]; then
    run_wrk "$TMP/wrk-probe.txt" 1 "https://$HOST:$PROBE_PORT/" "$NGINX_PID" 4 -H "Connection: close"
    # nginx writes the access log entry after the response; give it a moment.
    sleep 0.2
    if [[ -s $N/probe-access.log ]]; then
        WRK_REUSE=$(awk '{n++; if ($1 == "r") r++; p[$2]++} END {s = ""; for (k in p) s = s k " "; printf "%d of %d connections resumed (%s)", r, n, s}' "$N/probe-access.log")
        WRK_REUSE=${WRK_REUSE% )}
        WRK_REUSE+=")"
    else
        WRK_REUSE="no requests logged"
    fi
    log "wrk session reuse (nginx probe, wrk -c4 -d1s, Connection: close): $WRK_REUSE"
fi

# Workloads: targets, URLs, extra wrk args and labels.
declare -A WL_TITLE=(
    [keepalive]="keep-alive (TLS records + proxying; one handshake per connection)"
    [close]="Connection: close, new TCP + TLS connection per request (wrk resumes the TLS session: resumed handshakes)"
    [close-full]="Connection: close, new TCP + TLS connection per request, resumption off on the server (full handshakes)"
)
declare -A WL_UNIT=([keepalive]="requests/s" [close]="handshakes/s (= req/s)" [close-full]="handshakes/s (= req/s)")
declare -A LABEL=(
    [backend]="backend direct, plain HTTP (reference)"
    [nginx]="nginx TLS proxy, 1 worker"
    [ringress]="ringress TLS, 1 worker"
)
wl_targets() { # workload -> targets in run order
    local t=()
    [[ $1 != close-full ]] && t+=(backend) # no TLS on the backend: close-full = close there
    t+=(nginx)
    [[ $SKIP_RINGRESS != 1 ]] && t+=(ringress)
    echo "${t[*]}"
}
target_url() { # workload target -> URL
    case $2 in
    backend) echo "http://$HOST:$BACKEND_PORT/" ;;
    nginx) if [[ $1 == close-full ]]; then echo "https://$HOST:$NGINX_FULL_PORT/"; else echo "https://$HOST:$NGINX_PORT/"; fi ;;
    ringress) if [[ $1 == close-full ]]; then echo "https://$HOST:$RINGRESS_FULL_PORT/"; else echo "https://$HOST:$RINGRESS_PORT/"; fi ;;
    esac
}
declare -A SPID=([backend]=$BACKEND_PID [nginx]=$NGINX_PID [ringress]=$RINGRESS_PID)
wl_args() { # workload -> extra wrk args (one per line)
    [[ $1 == keepalive ]] || printf '%s\n' -H "Connection: close"
}

# Per workload|target results.
declare -A BEST_RPS=() BEST_P99=() ERRS=() BUSY=() BEST_CPR=() ALL_RPS=() ALL_P99=() ALL_CPR=()

if ((WARMUP > 0)); then
    for w in "${WL[@]}"; do
        mapfile -t extra < <(wl_args "$w")
        for t in $(wl_targets "$w"); do
            log "warm-up: $w / $t, ${WARMUP}s"
            run_wrk "$TMP/wrk-warmup-$w-$t.txt" "$WARMUP" "$(target_url "$w" "$t")" "${SPID[$t]}" "$CONNS" "${extra[@]}"
        done
    done
fi

log "measuring: wrk -t1 -c$CONNS -d${DURATION}s --latency, $ROUNDS round(s), workloads per round: ${WL[*]}"
for ((r = 1; r <= ROUNDS; r++)); do
    for w in "${WL[@]}"; do
        mapfile -t extra < <(wl_args "$w")
        for t in $(wl_targets "$w"); do
            k="$w|$t"
            f=$TMP/wrk-r$r-$w-$t.txt
            run_wrk "$f" "$DURATION" "$(target_url "$w" "$t")" "${SPID[$t]}" "$CONNS" "${extra[@]}"
            res=$(parse_wrk "$f")
            read -r rps p99 errs <<<"$res"
            log "$(printf 'round %d  %-10s %-9s %12s req/s   p99 %9s ms   errors %s   cpu busy: proxy cpu %s%%, wrk cpu %s%%' \
                "$r" "$w" "$t" "$rps" "$p99" "$errs" "$CPU_BUSY_PROXY" "$CPU_BUSY_LOAD")"
            BUSY[$k]="${BUSY[$k]:+${BUSY[$k]} }$CPU_BUSY_PROXY/$CPU_BUSY_LOAD"
            if [[ -z ${BEST_RPS[$k]:-} ]] || awk -v a="$rps" -v b="${BEST_RPS[$k]}" 'BEGIN {exit !(a > b)}'; then
                BEST_RPS[$k]=$rps
            fi
            if [[ -z ${BEST_P99[$k]:-} ]] || awk -v a="$p99" -v b="${BEST_P99[$k]}" 'BEGIN {exit !(a < b)}'; then
                BEST_P99[$k]=$p99
            fi
            ERRS[$k]=$((${ERRS[$k]:-0} + errs))
            ALL_RPS[$k]="${ALL_RPS[$k]:-} $rps"
            ALL_P99[$k]="${ALL_P99[$k]:-} $p99"
            # CPU time the proxy's core spent per request (busy share of the
            # core divided by the request rate): the efficiency measure that
            # still holds when the load side limits req/s.
            cpr=$(awk -v b="$CPU_BUSY_PROXY" -v r="$rps" 'BEGIN { if (b ~ /^[0-9]+$/ && r > 0) printf "%.2f", b * 10000 / r; else print "nan" }')
            if [[ $cpr != nan ]]; then
                ALL_CPR[$k]="${ALL_CPR[$k]:-} $cpr"
                if [[ -z ${BEST_CPR[$k]:-} ]] || awk -v a="$cpr" -v b="${BEST_CPR[$k]}" 'BEGIN {exit !(a < b)}'; then
                    BEST_CPR[$k]=$cpr
                fi
            fi
        done
    done
done

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
# median of a space-separated list of numbers
median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo
echo "## ringress vs nginx, TLS termination — one worker each, same plain-HTTP backend"
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s --latency against https://$HOST:PORT/, ${WARMUP}s warm-up per target and workload,"
echo "$ROUNDS round(s); each round runs the workloads ${WL[*]}, and in each the targets in turn."
echo "CPUs: proxy worker on $PROXY_CPU, backend nginx on $BACKEND_CPU, wrk on $WRK_CPU ($(nproc) usable). Backend: nginx, 1 worker, plain HTTP, 100-byte static file."
echo "Certificate: ECDSA P-256, self-signed, same cert and key for both proxies. nginx: ssl_protocols TLSv1.2 TLSv1.3,"
echo "ssl_session_cache shared:SSL:10m, ssl_session_tickets on. ringress: listener tls defaults (tickets on, session cache on)."
echo
echo "TLS probes (openssl s_client; protocol, cipher, key-exchange group, does a 2nd connection resume the 1st's session):"
echo
for pp in "${probe_ports[@]}"; do
    read -r proto cipher group resumed <<<"${PROBE[${pp%%:*}]}"
    echo "- ${pp%%:*} (port ${pp#*:}): $proto, $cipher, $group, resumes: $resumed"
done
[[ -n $WRK_REUSE ]] && {
    echo
    echo "wrk session reuse on reconnect, seen by nginx (\$ssl_session_reused, 1 s probe, -c4, Connection: close): $WRK_REUSE."
}
echo
echo "Ratios are against the nginx proxy: a req/s ratio >= 1 and a p99 ratio <= 1 mean ringress is at least as good."
echo "proxy-core CPU µs/req = (busy share of the proxy's core) / (requests/s): lower is better, and it still means something"
echo "when the load side (wrk on CPU $WRK_CPU) limits req/s. In the close workloads p99 is measured by wrk from writing the"
echo "request, i.e. after the handshake: it does not include the handshake."

VERDICTS=()
for w in "${WL[@]}"; do
    read -r -a TG <<<"$(wl_targets "$w")"
    declare -A MED_RPS=() MED_P99=() MED_CPR=()
    for t in "${TG[@]}"; do
        k="$w|$t"
        MED_RPS[$t]=$(median "${ALL_RPS[$k]}")
        MED_P99[$t]=$(median "${ALL_P99[$k]}")
        MED_CPR[$t]=$(median "${ALL_CPR[$k]:-}")
        [[ ${MED_CPR[$t]} == nan ]] || MED_CPR[$t]=$(awk -v v="${MED_CPR[$t]}" 'BEGIN {printf "%.2f", v}')
    done
    echo
    echo "### $w — ${WL_TITLE[$w]}"
    echo
    echo "| target | ${WL_UNIT[$w]} best | median | p99 ms median | p99 ms best | req/s ratio vs nginx (median) | (best) | p99 ratio (median) | proxy-core CPU µs/req median | lowest | CPU µs/req ratio (median) | errors (non-2xx + socket) | CPU busy % per round (proxy/wrk) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    kn="$w|nginx" kr="$w|ringress"
    for t in "${TG[@]}"; do
        k="$w|$t"
        cpr_med=${MED_CPR[$t]} cpr_low=${BEST_CPR[$k]:-nan} cpr_ratio=n/a
        if [[ $t == backend ]]; then
            cpr_med=- cpr_low=- # no proxy in the path: the proxy core is idle
        elif [[ $cpr_med != nan && ${MED_CPR[nginx]} != nan ]]; then
            cpr_ratio=$(ratio "$cpr_med" "${MED_CPR[nginx]}")
        fi
        printf '| %s | %.0f | %.0f | %.3f | %.3f | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" \
            "${BEST_RPS[$k]}" "${MED_RPS[$t]}" "${MED_P99[$t]}" "${BEST_P99[$k]}" \
            "$(ratio "${MED_RPS[$t]}" "${MED_RPS[nginx]}")" "$(ratio "${BEST_RPS[$k]}" "${BEST_RPS[$kn]}")" \
            "$(ratio "${MED_P99[$t]}" "${MED_P99[nginx]}")" "$cpr_med" "$cpr_low" "$cpr_ratio" "${ERRS[$k]}" "${BUSY[$k]}"
    done
    if [[ $SKIP_RINGRESS != 1 ]]; then
        rps_ok=$(awk -v a="${MED_RPS[ringress]}" -v b="${MED_RPS[nginx]}" 'BEGIN {print (a >= b) ? 1 : 0}')
        p99_ok=$(awk -v a="${MED_P99[ringress]}" -v b="${MED_P99[nginx]}" 'BEGIN {print (a <= b) ? 1 : 0}')
        errs=${ERRS[$kr]}
        detail="median req/s ratio $(ratio "${MED_RPS[ringress]}" "${MED_RPS[nginx]}"), best-of ratio $(ratio "${BEST_RPS[$kr]}" "${BEST_RPS[$kn]}"), p99 ratio $(ratio "${MED_P99[ringress]}" "${MED_P99[nginx]}"), CPU µs/req ratio ${cpr_ratio}"
        if ((rps_ok && p99_ok && errs == 0)); then
            VERDICTS+=("Result ($w): ringress >= nginx (median req/s >= nginx, median p99 <= nginx, no errors; $detail).")
        else
            why=()
            ((rps_ok)) || why+=("median req/s below nginx")
            ((p99_ok)) || why+=("median p99 above nginx")
            ((errs == 0)) || why+=("$errs errors")
            reasons=$(printf '%s, ' "${why[@]}")
            VERDICTS+=("Result ($w): ringress NOT >= nginx (${reasons%, }; $detail).")
        fi
    fi
    unset MED_RPS MED_P99 MED_CPR
done
echo
# Noise check: with the backend alone, nothing of ours runs on the proxy core.
noisy=""
for w in "${WL[@]}"; do
    for b in ${BUSY[$w|backend]:-}; do
        b=${b%%/*}
        [[ $b =~ ^[0-9]+$ ]] && ((b > 15)) && noisy+=" $w:$b%"
    done
done
if [[ -n $noisy ]]; then
    echo "WARNING: the proxy core (CPU $PROXY_CPU) was busy during backend-only runs (${noisy# }): something else was"
    echo "running on it, so the proxy rows of this run are unreliable. Re-run on a quiet machine."
    echo
fi
if [[ $WRK_CPU == "$BACKEND_CPU" ]]; then
    echo "Note: wrk and the backend share CPU $WRK_CPU, and they do the same work per request whichever proxy is in between"
    echo "(wrk's share includes its own TLS client work), so when the wrk cpu is near 100% busy the load side, not the proxy,"
    echo "is what limits req/s; compare proxy-core CPU µs/req then."
    echo
fi
if [[ $SKIP_RINGRESS != 1 ]]; then
    # What ringress logged (it logs to stderr; every line costs its core).
    sed 's/\x1b\[[0-9;]*m//g' "$R/ringress.log" >"$R/ringress.plain.log"
    n_warn=$(grep -c ' WARN ' "$R/ringress.plain.log" || true)
    n_err=$(grep -c ' ERROR ' "$R/ringress.plain.log" || true)
    echo "ringress log during the run: ${n_warn:-0} WARN and ${n_err:-0} ERROR lines${RINGRESS_ARGS:+ (ringress args: $RINGRESS_ARGS)}."
    if ((${n_warn:-0} + ${n_err:-0} > 0)); then
        echo "Most frequent:"
        echo
        grep -E ' (WARN|ERROR) ' "$R/ringress.plain.log" | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -n 3 |
            awk '{n = $1; sub(/^ *[0-9]+ /, ""); printf "- %d x `%s`\n", n, $0}'
    fi
    echo
    if [[ ${PROBE[ringress]##* } != "${PROBE[nginx]##* }" ]]; then
        echo "WARNING: session resumption differs (s_client: nginx resumes: ${PROBE[nginx]##* }, ringress resumes: ${PROBE[ringress]##* });"
        echo "the close workload then compares different handshake kinds."
        echo
    fi
    if ((WANT_FULL)) && [[ ${PROBE[ringress-full]##* } == yes ]]; then
        echo "WARNING: ringress's resumption-off listener resumed a session (s_client); close-full is not all full handshakes for it."
        echo
    fi
    printf '%s\n' "${VERDICTS[@]}"
else
    echo "Result: ringress skipped (SKIP_RINGRESS=1)."
fi
