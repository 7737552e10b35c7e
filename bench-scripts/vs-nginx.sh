#!/usr/bin/env bash
# vs-nginx.sh — ringress vs nginx, side by side, one worker each.
#
# Starts, all on 127.0.0.1:
#   * a backend: nginx, 1 worker, serving a fixed 100-byte static file
#     (hello.txt, so every response carries Content-Length) for any GET
#   * nginx as a 1-worker reverse proxy to that backend, with upstream
#     keep-alive (keepalive 1024, proxy_http_version 1.1, Connection "")
#   * ringress with one worker (--threads 1), routing / to the same backend
# then drives each with wrk (-t1 -c$CONNS --latency), alternating
# backend / nginx / ringress for $ROUNDS rounds, and prints a markdown table
# with the best of the rounds for each target.
#
# Exits non-zero only when setup fails (install, build, a server that does not
# start or dies, wrk failing). Losing to nginx is reported, not an error.
#
# Environment knobs (defaults in brackets):
#   DURATION [10]      seconds per measured wrk run
#   WARMUP   [3]       seconds of wrk warm-up per target before measuring
#   ROUNDS   [2]       measured rounds (each round: backend, nginx, ringress)
#   CONNS    [64]      wrk connections (-c); wrk always uses -t1
#   BACKEND_PORT [19080]  NGINX_PORT [19081]  RINGRESS_PORT [19082]
#   PROXY_CPU / BACKEND_CPU / WRK_CPU   override the CPU choice (see below)
#   SKIP_RINGRESS=1    measure only backend + nginx (no cargo build)
#   SKIP_BUILD=1       don't run cargo build (use an existing binary)
#   RINGRESS_BIN       path of the ringress binary [target/release/ringress]
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw wrk outputs)
set -euo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64}
BACKEND_PORT=${BACKEND_PORT:-19080}
NGINX_PORT=${NGINX_PORT:-19081}
RINGRESS_PORT=${RINGRESS_PORT:-19082}
SKIP_RINGRESS=${SKIP_RINGRESS:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
HOST=127.0.0.1 # all traffic stays on loopback

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RINGRESS_BIN=${RINGRESS_BIN:-$REPO_ROOT/target/release/ringress}

log() { printf '[vs-nginx] %s\n' "$*" >&2; }
die() {
    printf '[vs-nginx] ERROR: %s\n' "$*" >&2
    exit 1
}

for v in DURATION WARMUP ROUNDS CONNS BACKEND_PORT NGINX_PORT RINGRESS_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((ROUNDS >= 1)) || die "ROUNDS must be >= 1"
((DURATION >= 1)) || die "DURATION must be >= 1"
((CONNS >= 1)) || die "CONNS must be >= 1"

# ---------------------------------------------------------------------------
# CPU placement.
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
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
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
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringress-vs-nginx.XXXXXX")
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
for p in "$BACKEND_PORT" "$NGINX_PORT" "$RINGRESS_PORT"; do
    ! port_in_use "$p" || die "port $HOST:$p is already in use"
done

# Wait (bounded) for http://HOST:PORT/ to answer 200; fail if PID died.
wait_http() {
    local name=$1 port=$2 pid=$3 logf=$4 i
    for ((i = 0; i < 100; i++)); do # 100 x 0.1 s = 10 s
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during startup; log ($logf):"
            tail -n 30 "$logf" >&2 2>/dev/null || true
            die "$name failed to start"
        fi
        if curl -fsS -o /dev/null --max-time 1 "http://$HOST:$port/" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not answer on $HOST:$port within 10 s; log ($logf):"
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
# Backend: nginx, 1 worker, fixed 100-byte static file for GET /.
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
wait_http backend "$BACKEND_PORT" "$BACKEND_PID" "$B/error.log"

# ---------------------------------------------------------------------------
# nginx reverse proxy: 1 worker, upstream keep-alive.
# ---------------------------------------------------------------------------
N=$TMP/nginx-proxy
mkdir -p "$N"
{
    nginx_common "$N" "$PROXY_CPU"
    cat <<EOF
http {
$(nginx_http_common "$N")
    upstream backend {
        server $HOST:$BACKEND_PORT;
        keepalive 1024;
        keepalive_requests 100000000;
        keepalive_timeout 75s;
    }
    server {
        listen $HOST:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$N/nginx.conf"
log "starting nginx proxy on $HOST:$NGINX_PORT (cpu $PROXY_CPU)"
start_nginx nginx-proxy "$N" "$PROXY_CPU" "$N/stdout.log"
NGINX_PID=$LAST_PID
wait_http nginx-proxy "$NGINX_PORT" "$NGINX_PID" "$N/error.log"

# ---------------------------------------------------------------------------
# ringress: one worker (pins itself to core 0).
# ---------------------------------------------------------------------------
RINGRESS_PID=
if [[ $SKIP_RINGRESS != 1 ]]; then
    R=$TMP/ringress
    mkdir -p "$R"
    cat >"$R/ringress.toml" <<EOF
[runtime]
threads = 1

[[listeners]]
name = "main"
bind = "$HOST:$RINGRESS_PORT"

[[routes]]
path_prefix = "/"
upstream = "backend"

[upstreams.backend]
servers = ["$HOST:$BACKEND_PORT"]
EOF
    log "starting ringress on $HOST:$RINGRESS_PORT (cpu $PROXY_CPU)"
    taskset -c "$PROXY_CPU" "$RINGRESS_BIN" --config "$R/ringress.toml" --threads 1 >"$R/ringress.log" 2>&1 &
    RINGRESS_PID=$!
    PIDS+=("$RINGRESS_PID")
    wait_http ringress "$RINGRESS_PORT" "$RINGRESS_PID" "$R/ringress.log"
fi

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

# run_wrk OUTFILE SECONDS PORT SERVERPID — runs wrk in the background and
# waits, so Ctrl-C interrupts right away (cleanup kills wrk too).
run_wrk() {
    local out=$1 secs=$2 port=$3 spid=$4 rc=0 p0 l0
    p0=$(cpu_sample "$PROXY_CPU") l0=$(cpu_sample "$WRK_CPU")
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s --latency \
        "http://$HOST:$port/" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=
    CPU_BUSY_PROXY=$(cpu_busy "$p0" "$(cpu_sample "$PROXY_CPU")")
    CPU_BUSY_LOAD=$(cpu_busy "$l0" "$(cpu_sample "$WRK_CPU")")
    if ((rc != 0)); then
        cat "$out" >&2
        die "wrk against $HOST:$port failed (exit $rc)"
    fi
    kill -0 "$spid" 2>/dev/null || die "server on $HOST:$port died during the run"
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

TARGETS=(backend nginx)
declare -A PORT=([backend]=$BACKEND_PORT [nginx]=$NGINX_PORT)
declare -A SPID=([backend]=$BACKEND_PID [nginx]=$NGINX_PID)
declare -A LABEL=([backend]="backend direct (reference)" [nginx]="nginx proxy, 1 worker" [ringress]="ringress, 1 worker")
if [[ $SKIP_RINGRESS != 1 ]]; then
    TARGETS+=(ringress)
    PORT[ringress]=$RINGRESS_PORT
    SPID[ringress]=$RINGRESS_PID
fi
declare -A BEST_RPS=() BEST_P99=() ERRS=() BUSY=() BEST_CPR=() ALL_RPS=() ALL_P99=()

if ((WARMUP > 0)); then
    for t in "${TARGETS[@]}"; do
        log "warm-up: $t, ${WARMUP}s"
        run_wrk "$TMP/wrk-warmup-$t.txt" "$WARMUP" "${PORT[$t]}" "${SPID[$t]}"
    done
fi

log "measuring: wrk -t1 -c$CONNS -d${DURATION}s --latency, $ROUNDS round(s), order per round: ${TARGETS[*]}"
for ((r = 1; r <= ROUNDS; r++)); do
    for t in "${TARGETS[@]}"; do
        f=$TMP/wrk-r$r-$t.txt
        run_wrk "$f" "$DURATION" "${PORT[$t]}" "${SPID[$t]}"
        res=$(parse_wrk "$f")
        read -r rps p99 errs <<<"$res"
        log "$(printf 'round %d  %-9s %12s req/s   p99 %9s ms   errors %s   cpu busy: proxy cpu %s%%, wrk cpu %s%%' \
            "$r" "$t" "$rps" "$p99" "$errs" "$CPU_BUSY_PROXY" "$CPU_BUSY_LOAD")"
        BUSY[$t]="${BUSY[$t]:+${BUSY[$t]} }$CPU_BUSY_PROXY/$CPU_BUSY_LOAD"
        if [[ -z ${BEST_RPS[$t]:-} ]] || awk -v a="$rps" -v b="${BEST_RPS[$t]}" 'BEGIN {exit !(a > b)}'; then
            BEST_RPS[$t]=$rps
        fi
        if [[ -z ${BEST_P99[$t]:-} ]] || awk -v a="$p99" -v b="${BEST_P99[$t]}" 'BEGIN {exit !(a < b)}'; then
            BEST_P99[$t]=$p99
        fi
        ERRS[$t]=$((${ERRS[$t]:-0} + errs))
        ALL_RPS[$t]="${ALL_RPS[$t]:-} $rps"
        ALL_P99[$t]="${ALL_P99[$t]:-} $p99"
        # CPU time the proxy's core spent per request (busy share of the
        # core divided by the request rate): the efficiency measure that
        # still holds when the load side limits req/s.
        cpr=$(awk -v b="$CPU_BUSY_PROXY" -v r="$rps" 'BEGIN { if (b ~ /^[0-9]+$/ && r > 0) printf "%.2f", b * 10000 / r; else print "nan" }')
        if [[ $cpr != nan ]] && { [[ -z ${BEST_CPR[$t]:-} ]] || awk -v a="$cpr" -v b="${BEST_CPR[$t]}" 'BEGIN {exit !(a < b)}'; }; then
            BEST_CPR[$t]=$cpr
        fi
    done
done

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
# median of a space-separated list of numbers
median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo
echo "## ringress vs nginx — one worker each, same backend"
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s --latency, ${WARMUP}s warm-up per target, $ROUNDS round(s) alternating ${TARGETS[*]}."
echo "Best of the rounds for each target: highest req/s and lowest p99, each taken over all rounds."
echo "CPUs: proxy worker on $PROXY_CPU, backend nginx on $BACKEND_CPU, wrk on $WRK_CPU ($(nproc) usable). Backend: nginx, 1 worker, 100-byte static file."
echo "Ratios are against the nginx proxy: req/s ratio >= 1 and p99 ratio <= 1 mean ringress is at least as good."
echo
echo "| proxy | requests/s | p99 ms | ratio vs nginx (req/s) | p99 ratio | proxy-core CPU µs/req | CPU µs/req ratio | errors (non-2xx + socket) | CPU busy % per round (proxy cpu/wrk cpu) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
for t in "${TARGETS[@]}"; do
    cpr=${BEST_CPR[$t]:-nan} cpr_ratio=n/a
    if [[ $t == backend ]]; then
        cpr=- # no proxy in the path: the proxy core is idle
    elif [[ $cpr != nan && -n ${BEST_CPR[nginx]:-} ]]; then
        cpr_ratio=$(ratio "$cpr" "${BEST_CPR[nginx]}")
    fi
    printf '| %s | %.0f | %.3f | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "${BEST_RPS[$t]}" "${BEST_P99[$t]}" \
        "$(ratio "${BEST_RPS[$t]}" "${BEST_RPS[nginx]}")" "$(ratio "${BEST_P99[$t]}" "${BEST_P99[nginx]}")" \
        "$cpr" "$cpr_ratio" "${ERRS[$t]}" "${BUSY[$t]}"
done
echo
echo "proxy-core CPU µs/req: lowest over the rounds of (busy share of the proxy's core) / (requests/s); lower is better."
echo
echo "Medians over the rounds (steadier than best-of on a noisy machine):"
echo
echo "| proxy | median requests/s | median p99 ms | req/s ratio vs nginx | p99 ratio vs nginx |"
echo "|---|---:|---:|---:|---:|"
declare -A MED_RPS=() MED_P99=()
for t in "${TARGETS[@]}"; do
    MED_RPS[$t]=$(median "${ALL_RPS[$t]}")
    MED_P99[$t]=$(median "${ALL_P99[$t]}")
done
for t in "${TARGETS[@]}"; do
    printf '| %s | %.0f | %.3f | %s | %s |\n' "${LABEL[$t]}" "${MED_RPS[$t]}" "${MED_P99[$t]}" \
        "$(ratio "${MED_RPS[$t]}" "${MED_RPS[nginx]}")" "$(ratio "${MED_P99[$t]}" "${MED_P99[nginx]}")"
done
echo
if [[ $WRK_CPU == "$BACKEND_CPU" ]]; then
    echo "Note: wrk and the backend share CPU $WRK_CPU, and they do the same work per request whichever proxy is in"
    echo "between, so the backend-direct row is roughly the ceiling any proxy can reach here. When the wrk cpu is"
    echo "near 100% busy, the load side, not the proxy, is what limits req/s."
    echo
fi

# verdict LABEL RPS_R RPS_N P99_R P99_N -> one "Result" line
verdict() {
    local rps_ok p99_ok why=() reasons
    rps_ok=$(awk -v a="$2" -v b="$3" 'BEGIN {print (a >= b) ? 1 : 0}')
    p99_ok=$(awk -v a="$4" -v b="$5" 'BEGIN {print (a <= b) ? 1 : 0}')
    if ((rps_ok && p99_ok && ERRS[ringress] == 0)); then
        echo "Result ($1): ringress MEETS the goal (req/s >= nginx, p99 <= nginx, no errors)."
    else
        ((rps_ok)) || why+=("req/s below nginx")
        ((p99_ok)) || why+=("p99 above nginx")
        ((ERRS[ringress] == 0)) || why+=("${ERRS[ringress]} errors")
        reasons=$(printf '%s, ' "${why[@]}")
        echo "Result ($1): ringress does NOT meet the goal (${reasons%, })."
    fi
}

if [[ $SKIP_RINGRESS != 1 ]]; then
    echo
    verdict "medians" "${MED_RPS[ringress]}" "${MED_RPS[nginx]}" "${MED_P99[ringress]}" "${MED_P99[nginx]}"
    verdict "best of rounds" "${BEST_RPS[ringress]}" "${BEST_RPS[nginx]}" "${BEST_P99[ringress]}" "${BEST_P99[nginx]}"
else
    echo "Result: ringress skipped (SKIP_RINGRESS=1)."
fi
