#!/usr/bin/env bash
# rate-limit-cost.sh — what a rate-limit check costs per request, and how
# exact a limit stays under load over a longer run.
#
# Cost: one ringress with one worker (on PROXY_CPU) answering by itself
# (`respond`, no backend, so the check is a visible part of the work) on
#   /plain    no limit
#   /own      a client_ip limit never reached (the worker's own table)
#   /shared   a header-key limit never reached (the buckets the workers
#             share, taken in leases)
#   /refused  a limit every request is over (the 429 with its headers)
# wrk -t1 -c64 keep-alive for DURATION s against each, rotating, ROUNDS
# rounds; reports median req/s and CPU µs per request (utime + stime of
# the process over the run / requests).
#
# Accuracy: a second ringress with two workers, limits of RATE/s (burst
# 100) on the client address and on a header; wrk -c64 for SOAK seconds
# against each; admitted = requests - non-2xx, and (admitted - burst) /
# seconds against RATE.
#
# Knobs: ROUNDS [3] DURATION [5] SOAK [20] RATE [1000] PORT_BASE [19780]
# BIN [target/release/ringress, built if missing] PROXY_CPU / WRK_CPU
# (cpu-placement.sh) KEEP_TMP=1. Traffic only to 127.0.0.1.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
SOAK=${SOAK:-20}
RATE=${RATE:-1000}
PORT_BASE=${PORT_BASE:-19780}
KEEP_TMP=${KEEP_TMP:-0}
HOST=127.0.0.1
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
BIN=${BIN:-$REPO_ROOT/target/release/ringress}

log() { printf '[rate-limit] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
# shellcheck source=bench-scripts/cpu-placement.sh
source "$SCRIPT_DIR/cpu-placement.sh"
for tool in wrk curl taskset python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install $tool)"
done
# shellcheck source=bench-scripts/cost-lib.sh
source "$SCRIPT_DIR/cost-lib.sh"
build_if_missing
start_tmp rate-limit

wait_http() { # port
    local i
    for ((i = 0; i < 100; i++)); do
        curl -sS -o /dev/null --max-time 1 "http://$HOST:$1/plain" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing answers on $HOST:$1"
}
start() { # name port threads cpus toml
    local dir=$TMP/$1
    mkdir -p "$dir"
    printf '%s\n' "$5" >"$dir/ringress.toml"
    taskset -c "$4" "$BIN" --config "$dir/ringress.toml" --threads "$3" --no-pin >"$dir/log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
    wait_http "$2"
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

COST_PORT=$PORT_BASE
SOAK_PORT=$((PORT_BASE + 1))
start cost "$COST_PORT" 1 "$PROXY_CPU" "
[rate_limits.own]
rate = \"1000000000/s\"
burst = 1000000
key = \"client_ip\"
[rate_limits.shared]
rate = \"1000000000/s\"
burst = 1000000
key = \"header:X-Api-Key\"
[rate_limits.refused]
rate = \"1/h\"
key = \"route\"
[[listeners]]
name = \"main\"
bind = \"$HOST:$COST_PORT\"
[[routes]]
path_exact = \"/plain\"
respond = { status = 200, body = \"ok\n\" }
[[routes]]
path_exact = \"/own\"
respond = { status = 200, body = \"ok\n\" }
rate_limit = \"own\"
[[routes]]
path_exact = \"/shared\"
respond = { status = 200, body = \"ok\n\" }
rate_limit = \"shared\"
[[routes]]
path_exact = \"/refused\"
respond = { status = 200, body = \"ok\n\" }
rate_limit = \"refused\""
COST_PID=$LAST_PID

RESULTS=$TMP/cost.txt
PATHS=(plain own shared refused)
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#PATHS[@]}; i++)); do
        p=${PATHS[$(((i + r) % ${#PATHS[@]}))]}
        out=$TMP/$p-r$r.txt
        k0=$(ticks "$COST_PID")
        taskset -c "$WRK_CPU" wrk -t1 -c64 -d"${DURATION}s" -H "X-Api-Key: k1" \
            "http://$HOST:$COST_PORT/$p" >"$out" 2>&1 || die "wrk failed on /$p"
        k1=$(ticks "$COST_PID")
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        n=$(awk '/requests in/ {print $1}' "$out")
        us=$(python3 -c "print(round(($k1 - $k0) / $CLK_TCK * 1e6 / $n, 3))")
        log "round $r /$p: $rps req/s, $us CPU us/req"
        echo "$p $rps $us" >>"$RESULTS"
    done
done

ALL_CPUS=$(echo $ALLOWED_CPUS | tr ' ' ',')
start soak "$SOAK_PORT" 2 "$ALL_CPUS" "
[rate_limits.ip]
rate = \"$RATE/s\"
burst = 100
key = \"client_ip\"
[rate_limits.key]
rate = \"$RATE/s\"
burst = 100
key = \"header:X-Api-Key\"
[[listeners]]
name = \"main\"
bind = \"$HOST:$SOAK_PORT\"
[[routes]]
path_exact = \"/plain\"
respond = { status = 200, body = \"ok\n\" }
[[routes]]
path_exact = \"/ip\"
respond = { status = 200, body = \"ok\n\" }
rate_limit = \"ip\"
[[routes]]
path_exact = \"/key\"
respond = { status = 200, body = \"ok\n\" }
rate_limit = \"key\""
SOAKS=$TMP/soak.txt
for p in ip key; do
    out=$TMP/soak-$p.txt
    t0=$(date +%s.%N)
    wrk -t2 -c64 -d"${SOAK}s" -H "X-Api-Key: k1" "http://$HOST:$SOAK_PORT/$p" >"$out" 2>&1 ||
        die "wrk failed on soak /$p"
    t1=$(date +%s.%N)
    n=$(awk '/requests in/ {print $1}' "$out")
    refused=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$out")
    secs=$(awk '/requests in/ {gsub(/s,/, "", $4); print $4}' "$out")
    echo "$p $n ${refused:-0} $secs $t0 $t1" >>"$SOAKS"
    log "soak /$p: $n requests, ${refused:-0} refused in $secs s"
done

python3 - "$RESULTS" "$SOAKS" "$ROUNDS" "$DURATION" "$RATE" <<'EOF'
import statistics, sys
runs, cpu = {}, {}
for line in open(sys.argv[1]):
    p, rps, us = line.split()
    runs.setdefault(p, []).append(float(rps))
    cpu.setdefault(p, []).append(float(us))
rate = float(sys.argv[5])
print(f"## rate-limit-cost.sh: {sys.argv[3]} rounds x {sys.argv[4]} s, wrk -t1 -c64 keep-alive, one worker answering by itself\n")
print("| route | median req/s | median CPU µs/req | vs /plain |")
print("|---|---:|---:|---:|")
base = statistics.median(cpu["plain"])
for p in ("plain", "own", "shared", "refused"):
    c = statistics.median(cpu[p])
    print(f"| /{p} | {statistics.median(runs[p]):,.0f} | {c:.3f} | {c - base:+.3f} µs |")
print(f"\n## accuracy: {rate:.0f}/s, burst 100, two workers, wrk -t2 -c64\n")
print("| key | requests | let through | seconds | rate let through | error |")
print("|---|---:|---:|---:|---:|---:|")
for line in open(sys.argv[2]):
    p, n, refused, secs, t0, t1 = line.split()
    # wrk's own duration (its first request to its last answer).
    s = float(secs.rstrip("s")) if secs[-1] == "s" else float(secs)
    ok = int(n) - int(refused)
    got = (ok - 100) / s
    print(f"| {'client_ip' if p == 'ip' else 'header'} | {int(n):,} | {ok:,} | {s:.2f} | {got:.1f}/s | {100 * (got - rate) / rate:+.2f} % |")
EOF
