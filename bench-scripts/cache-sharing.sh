#!/usr/bin/env bash
# cache-sharing.sh — origin fetches, hit ratio and memory of one shared
# cache zone against per-core private caches, on Zipf traffic.
#
# The same request streams (zipf-keys.lua, fixed seeds, a fixed number of
# requests) go to three setups, each started fresh with an empty cache:
#   A  one ringress process, 1 worker;
#   B  "before": two ringress processes of 1 worker each, wrk's connections
#      split evenly between their ports — what SO_REUSEPORT did to private
#      per-core caches (each process has its own zone, so every object can
#      be fetched and stored once per process);
#   C  "after": one ringress process, 2 workers sharing the zone.
# once with a zone large enough for everything (BIG_SIZE) and once with
# QUARTER_PCT % of the origin's body bytes. B's processes get half the
# budget each, so the three setups have the same total max_size ("max_size
# is for the whole process", and a per-core cache would have split it).
#
# Origin: nginx serving KEYS static files /obj/1..KEYS of 2-16 KiB (size
# fixed per key), Cache-Control: max-age=3600; its access log counts the
# fetches. Writes the table to bench-scripts/results/cache-sharing.txt (OUT).
# All traffic goes to 127.0.0.1; every wait and run has a time limit.
set -euo pipefail

KEYS=${KEYS:-20000}
ALPHA=${ALPHA:-1.0}
REQUESTS=${REQUESTS:-200000} # total per setup, split evenly over 2 wrk threads
CONNS=${CONNS:-64}           # total wrk connections (B: half per process)
MAX_SECONDS=${MAX_SECONDS:-120}
BIG_SIZE=${BIG_SIZE:-512MiB}
QUARTER_PCT=${QUARTER_PCT:-25}
BUDGETS=${BUDGETS:-big quarter}
SETUPS=${SETUPS:-A B C}
PORT_BASE=${PORT_BASE:-19650} # origin, A/C or B1, B2, admin ports after
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
HOST=127.0.0.1

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RINGRESS_BIN=${RINGRESS_BIN:-$REPO_ROOT/target/release/ringress}
OUT=${OUT:-$SCRIPT_DIR/results/cache-sharing.txt}
REPORT=(python3 "$SCRIPT_DIR/sharing_report.py")
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[cache-sharing] %s\n' "$*" >&2; }
die() {
    printf '[cache-sharing] ERROR: %s\n' "$*" >&2
    exit 1
}
for v in KEYS REQUESTS CONNS MAX_SECONDS QUARTER_PCT PORT_BASE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((KEYS >= 1 && REQUESTS >= 2 && CONNS >= 2 && CONNS % 2 == 0)) ||
    die "KEYS >= 1, REQUESTS >= 2 and an even CONNS >= 2 are needed"
for b in $BUDGETS; do [[ $b == big || $b == quarter ]] || die "BUDGETS: '$b' is not big or quarter"; done
for s in $SETUPS; do [[ $s == [ABC] ]] || die "SETUPS: '$s' is not A, B or C"; done
for t in nginx wrk curl python3 taskset timeout; do
    command -v "$t" >/dev/null 2>&1 || [[ -x /usr/sbin/$t ]] || die "$t not found"
done
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

ORIGIN_PORT=$PORT_BASE
PORT1=$((PORT_BASE + 1)) PORT2=$((PORT_BASE + 2))
ADMIN1=$((PORT_BASE + 3)) ADMIN2=$((PORT_BASE + 4))

# ---------------------------------------------------------------------------
# Processes and clean-up.
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringress-cache-sharing.XXXXXX")
PIDS=() # every server and wrk we started and have not stopped yet
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
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ $KEEP_TMP == 1 ]]; then log "kept temp dir: $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM
forget_pid() { # pid: drop from PIDS after stopping it
    local p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
for p in "$ORIGIN_PORT" "$PORT1" "$PORT2" "$ADMIN1" "$ADMIN2"; do
    ! port_in_use "$p" || die "port $HOST:$p is already in use"
done
wait_url() { # name url pid: up to 10 s for a 200
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$3" 2>/dev/null || die "$1 exited before answering"
        [[ $(curl -s -o /dev/null -m 1 -w '%{http_code}' "$2" || true) == 200 ]] && return 0
        sleep 0.1
    done
    die "$1 did not answer $2 within 10 s"
}

# ---------------------------------------------------------------------------
# Build, origin tree and origin.
# ---------------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
    [[ -d $HOME/.cargo/bin ]] && PATH=$HOME/.cargo/bin:$PATH
    log "cargo build --release (in $REPO_ROOT)"
    (cd "$REPO_ROOT" && timeout 3600 cargo build --release >&2) || die "cargo build --release failed"
fi
[[ -x $RINGRESS_BIN ]] || die "ringress binary not found at $RINGRESS_BIN"

log "writing $KEYS origin files"
mkdir -p "$TMP/www/obj"
echo ok >"$TMP/www/ready"
# Size of key k: 2048 + (k * 2654435761 mod 2^32) mod 14337, so 2-16 KiB,
# the same on every run and unrelated to the key's popularity.
read -r OBJ_COUNT OBJ_BYTES < <(python3 - "$TMP/www/obj" "$KEYS" <<'EOF'
import sys
d, n = sys.argv[1], int(sys.argv[2])
total = 0
for k in range(1, n + 1):
    size = 2048 + (k * 2654435761 % 2**32) % 14337
    with open(f"{d}/{k}", "wb") as f:
        f.write((b"%d " % k) * (size // len(b"%d " % k) + 1))
        f.truncate(size)
    total += size
print(n, total)
EOF
)
log "origin: $OBJ_COUNT objects, $OBJ_BYTES body bytes"

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx;
    fastcgi_temp_path $TMP/nginx; uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;
    log_format fetch '\$request_uri';
    server {
        listen $HOST:$ORIGIN_PORT;
        root $TMP/www;
        location /obj/ {
            access_log $TMP/nginx/fetches.log fetch;
            default_type application/octet-stream;
            add_header Cache-Control "max-age=3600";
        }
    }
}
EOF
log "starting origin nginx on $HOST:$ORIGIN_PORT"
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stdout.log" 2>&1 &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
wait_url origin "http://$HOST:$ORIGIN_PORT/ready" "$ORIGIN_PID"
: >"$TMP/nginx/fetches.log"

# ---------------------------------------------------------------------------
# One ringress process, one setup.
# ---------------------------------------------------------------------------
size_of() { # big|quarter processes -> one process's max_size
    case $1 in
    big) echo "\"$BIG_SIZE\"" ;;
    quarter) echo $((OBJ_BYTES * QUARTER_PCT / 100 / $2)) ;;
    *) die "unknown budget '$1' (big or quarter)" ;;
    esac
}
RING_PID=
start_ringress() { # dir port admin threads max_size [cpu]: sets RING_PID
    local dir=$1 port=$2 admin=$3 threads=$4 size=$5 cpu=${6:-}
    local cmd=("$RINGRESS_BIN" --config "$dir/ringress.toml" --threads "$threads")
    # Without a cpu, ringress pins worker i to core i itself.
    [[ -n $cpu ]] && cmd=(taskset -c "$cpu" "${cmd[@]}" --no-pin)
    mkdir -p "$dir"
    cat >"$dir/ringress.toml" <<EOF
[[listeners]]
name = "main"
bind = "$HOST:$port"

[admin]
bind = "$HOST:$admin"

[cache.objs]
max_size = $size
max_object = "1MiB"

[[routes]]
path_prefix = "/"
upstream = "origin"
cache = { zone = "objs" }

[upstreams.origin]
servers = ["$HOST:$ORIGIN_PORT"]
EOF
    "${cmd[@]}" >"$dir/ringress.log" 2>&1 &
    RING_PID=$!
    PIDS+=("$RING_PID")
    wait_url "ringress ($dir)" "http://$HOST:$admin/metrics" "$RING_PID"
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
WRK_PIDS=()
start_wrk() { # out port threads conns seed_base: adds to WRK_PIDS
    wrk -t"$3" -c"$4" -d"${MAX_SECONDS}s" --timeout 5s \
        -s "$SCRIPT_DIR/zipf-keys.lua" "http://$HOST:$2" \
        -- "$KEYS" "$ALPHA" $((REQUESTS / 2)) "$5" "$TMP/done" >"$1" 2>&1 &
    WRK_PIDS+=("$!")
    PIDS+=("$!")
}
wait_wrk() { # until both wrk threads sent their share (files $TMP/done.*), then SIGINT
    local i p rc=0 deadline=$((SECONDS + MAX_SECONDS + 10))
    while ((SECONDS < deadline)); do
        compgen -G "$TMP/done.*" | wc -l | grep -qx 2 && break
        kill -0 "${WRK_PIDS[0]}" 2>/dev/null || break
        sleep 0.1
    done
    for p in "${WRK_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${WRK_PIDS[@]}"; do
        for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$p" 2>/dev/null && stop_pid "$p"
        wait "$p" || rc=$?
        forget_pid "$p"
    done
    WRK_PIDS=()
    rm -f "$TMP"/done.*
    return "$rc"
}

run_setup() { # budget setup: one fresh run, its record appended to rows.jsonl
    local budget=$1 setup=$2 dir=$TMP/run-$1-$2
    local pids=() admins=() rc=0 i before after
    mkdir -p "$dir"
    echo "$OBJ_COUNT $OBJ_BYTES $ALPHA" >"$dir/objects"
    case $setup in
    A | C)
        start_ringress "$dir/p1" "$PORT1" "$ADMIN1" "$([[ $setup == A ]] && echo 1 || echo 2)" \
            "$(size_of "$budget" 1)"
        pids=("$RING_PID") admins=("$ADMIN1")
        ;;
    B)
        # One process per CPU, as C's two workers are one per CPU.
        start_ringress "$dir/p1" "$PORT1" "$ADMIN1" 1 "$(size_of "$budget" 2)" 0
        pids=("$RING_PID")
        start_ringress "$dir/p2" "$PORT2" "$ADMIN2" 1 "$(size_of "$budget" 2)" 1
        pids+=("$RING_PID") admins=("$ADMIN1" "$ADMIN2")
        ;;
    *) die "unknown setup '$setup' (A, B or C)" ;;
    esac
    sleep 1 # let start-up allocations settle before the idle RSS
    for i in "${!pids[@]}"; do rss_kib "${pids[$i]}" >"$dir/rss-idle-$i"; done
    before=$(wc -l <"$TMP/nginx/fetches.log")
    log "budget $budget, setup $setup: $REQUESTS requests over $CONNS connections"
    if [[ $setup == B ]]; then
        # Two wrk processes with half the connections each, seeds 1 and 2:
        # the same two key sequences as the two threads of the single wrk.
        start_wrk "$dir/wrk-1.out" "$PORT1" 1 $((CONNS / 2)) 0
        start_wrk "$dir/wrk-2.out" "$PORT2" 1 $((CONNS / 2)) 1
    else
        start_wrk "$dir/wrk-1.out" "$PORT1" 2 "$CONNS" 0
    fi
    wait_wrk || rc=$?
    ((rc == 0)) || die "wrk failed (rc $rc): $(cat "$dir"/wrk-*.out | head -20)"
    grep -q '^zipf:' "$dir/wrk-1.out" || die "zipf-keys.lua printed no summary: $(head -20 "$dir/wrk-1.out")"
    after=$(wc -l <"$TMP/nginx/fetches.log")
    echo $((after - before)) >"$dir/origin-fetches"
    for i in "${!pids[@]}"; do
        kill -0 "${pids[$i]}" 2>/dev/null || die "ringress ${pids[$i]} died; log in $dir"
        curl -s -m 5 -o "$dir/metrics-$i.txt" "http://$HOST:${admins[$i]}/metrics" ||
            die "scraping ${admins[$i]}/metrics failed"
        echo "$(cat "$dir/rss-idle-$i") $(rss_kib "${pids[$i]}")" >"$dir/rss-$i.txt"
    done
    for i in "${pids[@]}"; do
        stop_pid "$i"
        forget_pid "$i"
    done
    "${REPORT[@]}" record "$dir" "$budget" "$setup" >>"$TMP/rows.jsonl"
    log "$(tail -1 "$TMP/rows.jsonl")"
}

for budget in $BUDGETS; do
    for setup in $SETUPS; do run_setup "$budget" "$setup"; done
done

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
{
    printf '# cache-sharing.sh — %s, commit %s, %s CPUs, load average %s at start, %s at end\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(git -C "$REPO_ROOT" rev-parse --short HEAD)" \
        "$(nproc)" "$LOADAVG_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '# %s keys (%s body bytes, %s MiB), Zipf alpha %s, %s requests per setup, %s connections\n' \
        "$OBJ_COUNT" "$OBJ_BYTES" "$((OBJ_BYTES / 1048576))" "$ALPHA" "$REQUESTS" "$CONNS"
    printf '# budgets: big = max_size %s; quarter = %s %% of the body bytes (%s), B: half of it per process\n' \
        "$BIG_SIZE" "$QUARTER_PCT" "$((OBJ_BYTES * QUARTER_PCT / 100))"
    printf '%s\n' "# hit ratio = 1 - origin fetches / requests; stored MiB and objects: ringress_cache_bytes and" \
        "# _objects summed over the processes at the end; RSS: VmRSS summed, 1 s after start and at the end;" \
        "# req/s only for reference (proxies, origin and wrk share the machine's CPUs)" ""
    "${REPORT[@]}" table "$TMP/rows.jsonl"
} >"$OUT"
cat "$OUT"
