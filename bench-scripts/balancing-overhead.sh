#!/usr/bin/env bash
# balancing-overhead.sh — ringress requests/s with 100 upstream servers vs 1.
#
# Starts, all on 127.0.0.1:
#   * a backend: ONE nginx process, 1 worker, listening on $SERVERS ports
#     ($BACKEND_PORT..$BACKEND_PORT+$SERVERS-1, 19300-19399 by default), each
#     serving the same fixed 100-byte static file for any GET (as vs-nginx.sh)
#   * ringress with one worker (--threads 1) and one listener per target, all
#     in one config so that everything else is identical:
#       one         $LISTEN_PORT     -> group of 1 server (the first port)
#       hundred     $LISTEN_PORT+1   -> all servers, balance = "round_robin"
#       least_conn  $LISTEN_PORT+2   -> all servers, balance = "least_conn"
#       p2c         $LISTEN_PORT+3   -> all servers, balance = "p2c"
#       random      $LISTEN_PORT+4   -> all servers, balance = "random"
#       hash        $LISTEN_PORT+5   -> all servers, hash = { key = "path" }
# then drives each with wrk (-t1 -c$CONNS --latency), alternating the targets
# within each of $ROUNDS rounds (the starting target rotates every round),
# and prints a markdown table of medians and one verdict line per balancer:
#   overhead = 1 - (median req/s with $SERVERS servers) / (median req/s with 1)
#   PASS when overhead < $THRESHOLD % and there were no errors.
#
# wrk sends GET / every time, so the hash balancer (key = path) sends all of
# it to one server. With HASH_PATHS > 0 (default 1000) two more targets run
# wrk with a small Lua script that cycles through that many distinct paths
# (/p/0, /p/1, ...): "one, N paths" (the baseline) and "hash, N paths" (which
# then spreads over all the servers); the hash-over-paths verdict compares
# those two, so both pay the same Lua cost in wrk.
#
# Exits non-zero only when setup fails (install, build, a server that does not
# start or dies, wrk failing). A FAIL verdict is reported, not an error.
#
# Environment knobs (defaults in brackets):
#   DURATION [8]        seconds per measured wrk run
#   WARMUP   [3]        seconds of wrk warm-up per target before measuring
#   ROUNDS   [3]        measured rounds (each round runs every target once)
#   CONNS    [64]       wrk connections (-c); wrk always uses -t1
#   SERVERS  [100]      servers in the big groups (backend ports)
#   BALANCERS ["round_robin least_conn p2c random hash"]  big groups to measure
#   HASH_PATHS [1000]   distinct paths for the extra hash pair; 0 = skip it
#   THRESHOLD [10]      verdict threshold, percent of req/s lost
#   LISTEN_PORT [19290] first ringress listener port (one per target)
#   BACKEND_PORT [19300] first backend port
#   STATUS_PORT [BACKEND_PORT+SERVERS] backend nginx stub_status (counts the
#                       upstream connections ringress opens during each run)
#   PROXY_CPU / BACKEND_CPU / WRK_CPU   override the CPU choice (as vs-nginx.sh)
#   SKIP_BUILD=1        don't run cargo build (use an existing binary)
#   RINGRESS_BIN        path of the ringress binary [target/release/ringress]
#   KEEP_TMP=1          keep the temp dir (configs, logs, raw wrk outputs)
set -euo pipefail

DURATION=${DURATION:-8}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SERVERS=${SERVERS:-100}
BALANCERS=${BALANCERS:-round_robin least_conn p2c random hash}
HASH_PATHS=${HASH_PATHS:-1000}
THRESHOLD=${THRESHOLD:-10}
LISTEN_PORT=${LISTEN_PORT:-19290}
BACKEND_PORT=${BACKEND_PORT:-19300}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
HOST=127.0.0.1 # all traffic stays on loopback

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RINGRESS_BIN=${RINGRESS_BIN:-$REPO_ROOT/target/release/ringress}

log() { printf '[balancing] %s\n' "$*" >&2; }
die() {
    printf '[balancing] ERROR: %s\n' "$*" >&2
    exit 1
}

for v in DURATION WARMUP ROUNDS CONNS SERVERS HASH_PATHS THRESHOLD LISTEN_PORT BACKEND_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((ROUNDS >= 1)) || die "ROUNDS must be >= 1"
((DURATION >= 1)) || die "DURATION must be >= 1"
((CONNS >= 1)) || die "CONNS must be >= 1"
((SERVERS >= 2 && SERVERS <= 1000)) || die "SERVERS must be 2..1000"
((HASH_PATHS <= 100000)) || die "HASH_PATHS must be <= 100000"
((THRESHOLD >= 1 && THRESHOLD <= 100)) || die "THRESHOLD must be 1..100"

# Balancer -> listener/group name. round_robin is the "hundred" group.
declare -A GROUP_OF=([round_robin]=hundred [least_conn]=least_conn [p2c]=p2c [random]=random [hash]=hash)
read -r -a BAL <<<"$BALANCERS"
((${#BAL[@]} >= 1)) || die "BALANCERS is empty"
for b in "${BAL[@]}"; do
    [[ -n ${GROUP_OF[$b]:-} ]] || die "unknown balancer '$b' in BALANCERS (round_robin least_conn p2c random hash)"
done
[[ " ${BAL[*]} " == *" hash "* ]] || HASH_PATHS=0

LAST_BACKEND_PORT=$((BACKEND_PORT + SERVERS - 1))
STATUS_PORT=${STATUS_PORT:-$((LAST_BACKEND_PORT + 1))}
[[ $STATUS_PORT =~ ^[0-9]+$ ]] || die "STATUS_PORT must be a port number (got '$STATUS_PORT')"
LAST_LISTEN_PORT=$((LISTEN_PORT + ${#BAL[@]}))
((LAST_BACKEND_PORT <= 65535 && LAST_LISTEN_PORT <= 65535 && STATUS_PORT <= 65535)) || die "ports out of range"
if ((STATUS_PORT >= BACKEND_PORT && STATUS_PORT <= LAST_BACKEND_PORT)) ||
    ((STATUS_PORT >= LISTEN_PORT && STATUS_PORT <= LAST_LISTEN_PORT)); then
    die "STATUS_PORT $STATUS_PORT overlaps the backend or listener ports"
fi
if ((LISTEN_PORT <= LAST_BACKEND_PORT && BACKEND_PORT <= LAST_LISTEN_PORT)); then
    die "listener ports $LISTEN_PORT-$LAST_LISTEN_PORT overlap backend ports $BACKEND_PORT-$LAST_BACKEND_PORT"
fi

# ---------------------------------------------------------------------------
# CPU placement (same rules as vs-nginx.sh).
#
# ringress's single worker runs on PROXY_CPU (0: ringress pins worker i to
# core i by itself). The backend nginx and wrk get the other CPUs: on a
# 2-core machine they share CPU 1; with 3+ CPUs each gets its own, avoiding
# CPU 0's hyper-thread siblings when possible. With 1 CPU everything shares
# CPU 0 (numbers are then not meaningful).
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
command -v timeout >/dev/null 2>&1 || need_pkgs+=(coreutils)
command -v ss >/dev/null 2>&1 || need_pkgs+=(iproute2)
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
if [[ $SKIP_BUILD != 1 ]]; then
    [[ -d $HOME/.cargo/bin ]] && PATH=$HOME/.cargo/bin:$PATH
    command -v cargo >/dev/null 2>&1 || die "cargo not found (set SKIP_BUILD=1 and RINGRESS_BIN)"
    log "cargo build --release (in $REPO_ROOT)"
    (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
fi
[[ -x $RINGRESS_BIN ]] || die "ringress binary not found at $RINGRESS_BIN"

# ---------------------------------------------------------------------------
# Process bookkeeping and cleanup (runs on normal exit, errors and Ctrl-C).
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringress-balancing.XXXXXX")
PIDS=()  # long-lived servers we started
WRK_PID= # the wrk run in progress, if any
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

# Raise the fd limit when we can (no-op if not allowed): the backend holds
# $SERVERS listening sockets plus ringress's per-server pools.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
for ((p = LISTEN_PORT; p <= LAST_LISTEN_PORT; p++)); do
    ! port_in_use "$p" || die "port $HOST:$p is already in use"
done
for ((p = BACKEND_PORT; p <= LAST_BACKEND_PORT; p++)); do
    ! port_in_use "$p" || die "port $HOST:$p is already in use"
done
! port_in_use "$STATUS_PORT" || die "port $HOST:$STATUS_PORT is already in use"

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
# Listening sockets + wrk's connections (direct checks) + ringress's pools,
# which can reach about CONNS connections per server in the worst case.
WORKER_CONNS=$((SERVERS + CONNS * 2 + SERVERS * CONNS + 256))
((WORKER_CONNS >= 1024)) || WORKER_CONNS=1024

# ---------------------------------------------------------------------------
# Backend: ONE nginx, 1 worker, listening on all $SERVERS ports, fixed
# 100-byte static file for GET /.
# ---------------------------------------------------------------------------
B=$TMP/backend
mkdir -p "$B/www"
printf '%-99s\n' "hello from backend" >"$B/www/hello.txt" # exactly 100 bytes
{
    ((EUID == 0)) && echo "user root;"
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity $(cpu_mask "$BACKEND_CPU");
worker_rlimit_nofile $((WORKER_CONNS * 2));
pid $B/nginx.pid;
error_log $B/error.log warn;
events {
    worker_connections $WORKER_CONNS;
}
http {
    access_log off;
    # Client keep-alive for as long as wrk runs (default would close every
    # 1000 requests and make ringress reconnect).
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $B/client_body;
    proxy_temp_path $B/proxy;
    fastcgi_temp_path $B/fastcgi;
    uwsgi_temp_path $B/uwsgi;
    scgi_temp_path $B/scgi;
    default_type text/plain;
    open_file_cache max=16;
    server {
EOF
    for ((p = BACKEND_PORT; p <= LAST_BACKEND_PORT; p++)); do
        echo "        listen $HOST:$p backlog=4096;"
    done
    cat <<EOF
        root $B/www;
        location / {
            try_files /hello.txt =404;
        }
    }
    # Not on a backend port: only read between runs, never proxied to.
    server {
        listen $HOST:$STATUS_PORT;
        location = /status {
            stub_status;
        }
    }
}
EOF
} >"$B/nginx.conf"
nginx_args=(-p "$B" -c "$B/nginx.conf")
((NGINX_HAS_E)) && nginx_args+=(-e "$B/error.log")
"$NGINX" -t "${nginx_args[@]}" >"$B/stdout.log" 2>&1 || {
    cat "$B/stdout.log" >&2
    die "backend: nginx -t failed"
}
log "starting backend nginx on $HOST:$BACKEND_PORT-$LAST_BACKEND_PORT ($SERVERS ports, cpu $BACKEND_CPU)"
taskset -c "$BACKEND_CPU" "$NGINX" "${nginx_args[@]}" >>"$B/stdout.log" 2>&1 &
BACKEND_PID=$!
PIDS+=("$BACKEND_PID")
wait_http backend "$BACKEND_PORT" "$BACKEND_PID" "$B/error.log"
for ((p = BACKEND_PORT; p <= LAST_BACKEND_PORT; p++)); do # one bounded check per port
    curl -fsS -o /dev/null --max-time 2 "http://$HOST:$p/" || die "backend does not answer on $HOST:$p"
done

# ---------------------------------------------------------------------------
# ringress: one worker (pins itself to core 0), one listener per target.
# ---------------------------------------------------------------------------
R=$TMP/ringress
mkdir -p "$R"
ALL_SERVERS=$(for ((p = BACKEND_PORT; p <= LAST_BACKEND_PORT; p++)); do printf '"%s:%d", ' "$HOST" "$p"; done)
ALL_SERVERS="[${ALL_SERVERS%, }]"
declare -A LPORT=([one]=$LISTEN_PORT)
{
    cat <<EOF
[runtime]
threads = 1

[[listeners]]
name = "one"
bind = "$HOST:$LISTEN_PORT"
EOF
    i=1
    for b in "${BAL[@]}"; do
        g=${GROUP_OF[$b]}
        LPORT[$g]=$((LISTEN_PORT + i))
        printf '\n[[listeners]]\nname = "%s"\nbind = "%s:%d"\n' "$g" "$HOST" "${LPORT[$g]}"
        i=$((i + 1))
    done
    printf '\n[[routes]]\nlisteners = ["one"]\npath_prefix = "/"\nupstream = "one"\n'
    for b in "${BAL[@]}"; do
        g=${GROUP_OF[$b]}
        printf '\n[[routes]]\nlisteners = ["%s"]\npath_prefix = "/"\nupstream = "%s"\n' "$g" "$g"
    done
    printf '\n[upstreams.one]\nservers = ["%s:%d"]\nbalance = "round_robin"\n' "$HOST" "$BACKEND_PORT"
    for b in "${BAL[@]}"; do
        g=${GROUP_OF[$b]}
        printf '\n[upstreams.%s]\nservers = %s\nbalance = "%s"\n' "$g" "$ALL_SERVERS" "$b"
        [[ $b == hash ]] && printf 'hash = { key = "path" }\n'
    done
} >"$R/ringress.toml"
if ! "$RINGRESS_BIN" --config "$R/ringress.toml" --check >"$R/check.log" 2>&1; then
    log "ringress --check rejected the config ($R/ringress.toml):"
    cat "$R/check.log" >&2
    KEEP_TMP=1
    die "ringress config rejected"
fi
log "starting ringress on $HOST:$LISTEN_PORT-$LAST_LISTEN_PORT (cpu $PROXY_CPU)"
taskset -c "$PROXY_CPU" "$RINGRESS_BIN" --config "$R/ringress.toml" --threads 1 >"$R/ringress.log" 2>&1 &
RINGRESS_PID=$!
PIDS+=("$RINGRESS_PID")
for g in "${!LPORT[@]}"; do
    wait_http "ringress ($g)" "${LPORT[$g]}" "$RINGRESS_PID" "$R/ringress.log"
done

# wrk Lua script cycling through HASH_PATHS distinct paths (requests built
# once in init, so each request costs wrk one table lookup).
PATHS_LUA=$TMP/paths.lua
cat >"$PATHS_LUA" <<EOF
local n = $HASH_PATHS
local reqs = {}
local i = 0
init = function(args)
    for k = 0, n - 1 do
        reqs[k + 1] = wrk.format("GET", "/p/" .. k)
    end
end
request = function()
    i = i % n + 1
    return reqs[i]
end
EOF

# ---------------------------------------------------------------------------
# Targets: key -> port, wrk script, baseline for the ratio, label.
# ---------------------------------------------------------------------------
TARGETS=(one)
declare -A PORT=([one]=$LISTEN_PORT) SCRIPT=([one]="") BASE=([one]=one) BALNAME=([one]="(1 server)")
declare -A LABEL=([one]="1 server (baseline)")
for b in "${BAL[@]}"; do
    g=${GROUP_OF[$b]}
    TARGETS+=("$g")
    PORT[$g]=${LPORT[$g]} SCRIPT[$g]="" BASE[$g]=one BALNAME[$g]=$b
    LABEL[$g]="$SERVERS servers, $b"
done
if [[ -n ${LABEL[hash]:-} ]]; then
    LABEL[hash]="$SERVERS servers, hash path (every request is GET /: one server gets it all)"
    BALNAME[hash]="hash (path /)"
fi
if ((HASH_PATHS > 0)); then
    TARGETS+=(one_paths hash_paths)
    PORT[one_paths]=$LISTEN_PORT SCRIPT[one_paths]=$PATHS_LUA BASE[one_paths]=one_paths
    BALNAME[one_paths]="(1 server, $HASH_PATHS paths)"
    LABEL[one_paths]="1 server, $HASH_PATHS paths via wrk Lua (baseline for the next row)"
    PORT[hash_paths]=${LPORT[hash]} SCRIPT[hash_paths]=$PATHS_LUA BASE[hash_paths]=one_paths
    BALNAME[hash_paths]="hash ($HASH_PATHS paths)"
    LABEL[hash_paths]="$SERVERS servers, hash path, $HASH_PATHS paths via wrk Lua"
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

# cpu_sample CPU -> "total idle steal" jiffies of that CPU from /proc/stat
cpu_sample() { awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6, $9 + 0}' /proc/stat; }
# cpu_steal "t0 i0 s0" "t1 i1 s1" -> percent of the time the hypervisor took
cpu_steal() {
    awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); dt = y[1] - x[1]
        if (dt > 0) printf "%.0f", 100 * (y[3] - x[3]) / dt; else print "n/a"}'
}
# cpu_busy "t0 i0" "t1 i1" -> busy percent between the samples
cpu_busy() {
    awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); dt = y[1] - x[1]
        if (dt > 0) printf "%.0f", 100 * (dt - (y[2] - x[2])) / dt; else print "n/a"}'
}
CPU_BUSY_PROXY=n/a CPU_BUSY_LOAD=n/a STEAL=n/a NEW_UPSTREAM=n/a

# Connections the backend nginx has accepted so far (stub_status), or "".
backend_accepts() {
    curl -fsS --max-time 2 "http://$HOST:$STATUS_PORT/status" 2>/dev/null | awk 'NR == 3 && $1 ~ /^[0-9]+$/ {print $1}'
}

# Upstream connections of ringress right after a run: "active servers all",
# where active = established connections to the backend ports that sent
# something in the last 2 s (i.e. used by the run that just ended), servers =
# distinct backend ports among those, all = every established upstream
# connection (idle pooled ones of the other groups included).
upstream_conns() {
    ss -Htni state established "( dport >= :$BACKEND_PORT and dport <= :$LAST_BACKEND_PORT )" 2>/dev/null |
        awk '
            $0 !~ /^[ \t]/ { n = split($NF, a, ":"); port = a[n]; all++; next }
            {
                if (match($0, /lastsnd:[0-9]+/)) {
                    ms = substr($0, RSTART + 8, RLENGTH - 8) + 0
                    if (ms <= 2000) { active++; seen[port] = 1 }
                }
            }
            END { s = 0; for (p in seen) s++; printf "%d %d %d\n", active, s, all }' ||
        echo "n/a n/a n/a"
}

# run_wrk OUTFILE SECONDS PORT SCRIPT — wrk in the background (bounded by
# timeout), so Ctrl-C interrupts right away (cleanup kills wrk too).
run_wrk() {
    local out=$1 secs=$2 port=$3 script=$4 rc=0 p0 l0 p1 l1 a0 a1 extra=()
    [[ -n $script ]] && extra=(-s "$script")
    a0=$(backend_accepts)
    p0=$(cpu_sample "$PROXY_CPU") l0=$(cpu_sample "$WRK_CPU")
    timeout -k 5 $((secs + 30)) taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s --latency \
        "${extra[@]}" "http://$HOST:$port/" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=
    p1=$(cpu_sample "$PROXY_CPU") l1=$(cpu_sample "$WRK_CPU")
    CPU_BUSY_PROXY=$(cpu_busy "$p0" "$p1")
    CPU_BUSY_LOAD=$(cpu_busy "$l0" "$l1")
    STEAL="$(cpu_steal "$p0" "$p1")/$(cpu_steal "$l0" "$l1")"
    a1=$(backend_accepts)
    # New ringress->backend connections during the run (the status request
    # itself is one accept).
    NEW_UPSTREAM=n/a
    [[ -n $a0 && -n $a1 ]] && NEW_UPSTREAM=$((a1 - a0 - 1))
    if ((rc != 0)); then
        cat "$out" >&2
        die "wrk against $HOST:$port failed (exit $rc)"
    fi
    kill -0 "$RINGRESS_PID" 2>/dev/null || die "ringress died during the run (log: $R/ringress.log)"
    kill -0 "$BACKEND_PID" 2>/dev/null || die "backend nginx died during the run (log: $B/error.log)"
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

declare -A BEST_RPS=() ERRS=() BUSY=() ALL_RPS=() ALL_P99=() ALL_CPR=() ALL_PBUSY=() CONNS_SEEN=() NEWC=()
STEAL_RUNS=() # runs with more than 10% steal time on the proxy or wrk CPU

if ((WARMUP > 0)); then
    for t in "${TARGETS[@]}"; do
        log "warm-up: $t, ${WARMUP}s"
        run_wrk "$TMP/wrk-warmup-$t.txt" "$WARMUP" "${PORT[$t]}" "${SCRIPT[$t]}"
    done
fi

# Idle check before each round: how busy the proxy and wrk CPUs are with
# none of our load running (anything else on the machine skews the numbers).
IDLE_BUSY=()
NT=${#TARGETS[@]}
log "measuring: wrk -t1 -c$CONNS -d${DURATION}s --latency, $ROUNDS round(s) of $NT targets: ${TARGETS[*]}"
for ((r = 1; r <= ROUNDS; r++)); do
    p0=$(cpu_sample "$PROXY_CPU") l0=$(cpu_sample "$WRK_CPU")
    sleep 1
    IDLE_BUSY+=("$(cpu_busy "$p0" "$(cpu_sample "$PROXY_CPU")")/$(cpu_busy "$l0" "$(cpu_sample "$WRK_CPU")")")
    for ((j = 0; j < NT; j++)); do
        t=${TARGETS[$(((j + r - 1) % NT))]} # rotate the starting target each round
        f=$TMP/wrk-r$r-$t.txt
        run_wrk "$f" "$DURATION" "${PORT[$t]}" "${SCRIPT[$t]}"
        uc=$(upstream_conns)
        res=$(parse_wrk "$f")
        read -r rps p99 errs <<<"$res"
        read -r uc_active uc_servers uc_all <<<"$uc"
        log "$(printf 'round %d  %-10s %10s req/s  p99 %8s ms  errors %s  cpu busy: proxy %s%%, wrk %s%% (steal %s%%)  upstream conns: %s active to %s servers, %s established, %s new' \
            "$r" "$t" "$rps" "$p99" "$errs" "$CPU_BUSY_PROXY" "$CPU_BUSY_LOAD" "$STEAL" "$uc_active" "$uc_servers" "$uc_all" "$NEW_UPSTREAM")"
        NEWC[$t]="${NEWC[$t]:+${NEWC[$t]} }$NEW_UPSTREAM"
        for s_ in ${STEAL//\// }; do
            if [[ $s_ =~ ^[0-9]+$ ]] && ((s_ > 10)); then
                STEAL_RUNS+=("r$r:$t:$STEAL")
                break
            fi
        done
        BUSY[$t]="${BUSY[$t]:+${BUSY[$t]} }$CPU_BUSY_PROXY/$CPU_BUSY_LOAD"
        CONNS_SEEN[$t]="${CONNS_SEEN[$t]:+${CONNS_SEEN[$t]}, }$uc_active/$uc_servers/$uc_all"
        if [[ -z ${BEST_RPS[$t]:-} ]] || awk -v a="$rps" -v b="${BEST_RPS[$t]}" 'BEGIN {exit !(a > b)}'; then
            BEST_RPS[$t]=$rps
        fi
        ERRS[$t]=$((${ERRS[$t]:-0} + errs))
        ALL_RPS[$t]="${ALL_RPS[$t]:-} $rps"
        ALL_P99[$t]="${ALL_P99[$t]:-} $p99"
        # CPU time the proxy's core spent per request (busy share of the core
        # divided by the request rate), as vs-nginx.sh computes it.
        cpr=$(awk -v b="$CPU_BUSY_PROXY" -v r="$rps" 'BEGIN { if (b ~ /^[0-9]+$/ && r > 0) printf "%.2f", b * 10000 / r; else print "nan" }')
        [[ $cpr != nan ]] && ALL_CPR[$t]="${ALL_CPR[$t]:-} $cpr"
        [[ $CPU_BUSY_PROXY =~ ^[0-9]+$ ]] && ALL_PBUSY[$t]="${ALL_PBUSY[$t]:-} $CPU_BUSY_PROXY"
    done
done

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "nan" && b != "nan" && b > 0) printf "%.3f", a / b; else print "n/a" }'; }
# median of a space-separated list of numbers
median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "nan" || v == "") print "n/a"; else printf f, v }'; }

declare -A MED_RPS=() MED_P99=() MED_CPR=() MED_PBUSY=()
for t in "${TARGETS[@]}"; do
    MED_RPS[$t]=$(median "${ALL_RPS[$t]}")
    MED_P99[$t]=$(median "${ALL_P99[$t]}")
    MED_CPR[$t]=$(median "${ALL_CPR[$t]:-}")
    MED_PBUSY[$t]=$(median "${ALL_PBUSY[$t]:-}")
done

echo
echo "## ringress load-balancing overhead — $SERVERS upstream servers vs 1, one worker"
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s --latency, ${WARMUP}s warm-up per target, $ROUNDS round(s) alternating the targets (starting target rotates per round)."
echo "Backend: one nginx, 1 worker, on $SERVERS ports ($BACKEND_PORT-$LAST_BACKEND_PORT), 100-byte static file. ringress: --threads 1, one listener per target in one config."
echo "CPUs: ringress worker on $PROXY_CPU, backend nginx on $BACKEND_CPU, wrk on $WRK_CPU ($(nproc) usable)."
echo
echo "| target | balance | median req/s | best req/s | median p99 ms | req/s ratio vs 1 server (median) | proxy-core CPU µs/req (median) | CPU µs/req ratio vs 1 server | errors | upstream conns after each round (active / servers / all) | new upstream conns per round | CPU busy % per round (proxy/wrk) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"
for t in "${TARGETS[@]}"; do
    base=${BASE[$t]}
    printf '| %s | %s | %.0f | %.0f | %.3f | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "${BALNAME[$t]}" \
        "${MED_RPS[$t]}" "${BEST_RPS[$t]}" "${MED_P99[$t]}" \
        "$(ratio "${MED_RPS[$t]}" "${MED_RPS[$base]}")" "$(fmt "${MED_CPR[$t]}" '%.2f')" \
        "$(ratio "${MED_CPR[$t]}" "${MED_CPR[$base]}")" "${ERRS[$t]}" "${CONNS_SEEN[$t]}" "${NEWC[$t]}" "${BUSY[$t]}"
done
echo
echo "proxy-core CPU µs/req: (busy share of the proxy's core) / (requests/s), median over the rounds; lower is better."
echo "Upstream conns (ss, right after each run): active = established ringress->backend connections that sent data in the"
echo "last 2 s (used by that run), servers = distinct backend ports among them, all = every established upstream"
echo "connection, including idle pooled ones of the other groups (per-server keep-alive pools, idle_timeout 30 s)."
echo "New upstream conns: connections the backend accepted during the run (nginx stub_status); 0 = all pooled."
echo "Idle CPU busy % before each round (proxy/wrk, 1 s, nothing of ours running): ${IDLE_BUSY[*]}."
echo

noisy=""
for x in "${IDLE_BUSY[@]}"; do
    for b in ${x//\// }; do
        [[ $b =~ ^[0-9]+$ ]] && ((b > 15)) && noisy+=" $x"
    done
done
if [[ -n $noisy ]]; then
    echo "WARNING: the proxy or wrk CPU was busy while idle before a round (${noisy# }): something else was running,"
    echo "so this run is noisy. Re-run on a quiet machine."
    echo
fi
if ((${#STEAL_RUNS[@]})); then
    echo "WARNING: the hypervisor took more than 10% of the proxy or wrk CPU (steal %, proxy/wrk) in: ${STEAL_RUNS[*]}."
    echo "Those runs are slowed by the host, not by ringress; use more rounds."
    echo
fi
if [[ $WRK_CPU == "$BACKEND_CPU" ]]; then
    echo "Note: wrk and the backend share CPU $WRK_CPU and do the same work per request for every target, so when the wrk"
    echo "cpu is near 100% busy and the proxy core is not, req/s is limited by the load side; the CPU µs/req ratio then"
    echo "shows the proxy's own balancing cost better than the req/s ratio."
    echo
fi
sed 's/\x1b\[[0-9;]*m//g' "$R/ringress.log" >"$R/ringress.plain.log"
n_warn=$(grep -c ' WARN ' "$R/ringress.plain.log" || true)
n_err=$(grep -c ' ERROR ' "$R/ringress.plain.log" || true)
echo "ringress log during the run: ${n_warn:-0} WARN and ${n_err:-0} ERROR lines."
if ((${n_warn:-0} + ${n_err:-0} > 0)); then
    echo "Most frequent:"
    echo
    grep -E ' (WARN|ERROR) ' "$R/ringress.plain.log" | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -n 3 |
        awk '{n = $1; sub(/^ *[0-9]+ /, ""); printf "- %d x `%s`\n", n, $0}'
fi
echo

# One verdict per big target: overhead = 1 - median req/s / baseline median.
for t in "${TARGETS[@]}"; do
    base=${BASE[$t]}
    [[ $t == "$base" ]] && continue
    ov=$(awk -v a="${MED_RPS[$t]}" -v b="${MED_RPS[$base]}" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
    ov_best=$(awk -v a="${BEST_RPS[$t]}" -v b="${BEST_RPS[$base]}" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
    cpu_ov=$(awk -v a="${MED_CPR[$t]}" -v b="${MED_CPR[$base]}" 'BEGIN { if (a != "nan" && b != "nan" && b > 0) printf "%+.1f%%", 100 * (a / b - 1); else print "n/a" }')
    detail="median $(fmt "${MED_RPS[$t]}" '%.0f') vs $(fmt "${MED_RPS[$base]}" '%.0f') req/s; best-of overhead ${ov_best}%; proxy CPU µs/req ${cpu_ov}; proxy core busy $(fmt "${MED_PBUSY[$t]}" '%.0f')% vs $(fmt "${MED_PBUSY[$base]}" '%.0f')%"
    errs=$((ERRS[$t] + ERRS[$base]))
    if awk -v o="$ov" -v th="$THRESHOLD" 'BEGIN {exit !(o < th)}' && ((errs == 0)); then
        echo "Result (${BALNAME[$t]}, $SERVERS servers vs 1): PASS — overhead ${ov}% < ${THRESHOLD}% ($detail)."
    else
        why="overhead ${ov}% >= ${THRESHOLD}%"
        ((errs == 0)) || why="$why; $errs errors"
        awk -v o="$ov" -v th="$THRESHOLD" 'BEGIN {exit !(o < th)}' && why="$errs errors"
        echo "Result (${BALNAME[$t]}, $SERVERS servers vs 1): FAIL — $why ($detail)."
    fi
done
