#!/usr/bin/env bash
# slowloris.sh — a normal client's req/s and p99 while 10,000 slowloris
# connections (one header byte a second, never finishing) and 10,000 idle
# ones (connected, silent) hammer the proxy; ringress and nginx in turn,
# one worker each (harness: vs-lib.sh).
#
# Per proxy and round: wrk -t1 -c$CONNS -d$DURATION --latency on /small.txt (100 B
# from the origin, no cache), calm; then the attack starts
# (slowloris_attack.py, two processes from 127.0.0.10-19 and
# 127.0.0.20-29, each reopening a connection the server closes, for
# ATTACK_SECS) and the same wrk run is measured under it. Resident memory
# of the proxy before, during (highest of one sample a second) and after
# (3 s after the attackers left); each attacker reports its connections'
# lives and how many outlived the head timeout + 1 s.
#
# Both proxies get comparable edge settings (the defaults a sane edge
# would run with):
#   ringress: timeouts.client_head 10 s, min_head_rate 500 B/s after 5 s
#     (the defaults), listener max_conns 19000, max_conns_per_ip 800,
#     [overload] keepalive_threshold 0.8 -> keepalive_timeout 2 s
#   nginx: client_header_timeout 10 s, worker_connections 19000,
#     limit_conn 800 per address (nginx counts only connections with a
#     request in progress: it does not limit idle or slow-head ones),
#     reset_timedout_connection on
# (19000: the process's descriptor limit here is 20000 and cannot be
# raised; the attack's 20,000 connections cannot all be held.)
# The attackers run at nice 19 on the load core: on a 2-CPU machine they
# share it with wrk and the origin, and at equal priority their CPU, not
# the proxy, decided the normal client's req/s.
#
#   bench-scripts/slowloris.sh                 # about 3 min after the build
#   SKIP_BUILD=1 bench-scripts/slowloris.sh
#
# Knobs: DURATION [6] ROUNDS [2] CONNS [32] ATTACK_SECS [20] SLOW_CONNS [10000]
# IDLE_CONNS [10000] PORT_BASE [19380] SKIP_RINGRESS SKIP_BUILD
# RINGRESS_BIN KEEP_TMP RESULTS_DIR [bench-scripts/results]
# PROXY_CPU / BACKEND_CPU / WRK_CPU (cpu-placement.sh).
# The report also gives the proxy's CPU use and how busy the load core
# (wrk, the origin and the attackers share it on 2 CPUs) was in each run:
# a load core near 100 % means the client side, not the proxy, set the
# pace. Writes results/slowloris.md and results/slowloris.json. Exits non-zero
# only when setup fails; a missed goal is reported, not an error.
set -euo pipefail
BENCH=slowloris
PORT_BASE=${PORT_BASE:-19380}
DURATION=${DURATION:-6}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-2}
ATTACK_SECS=${ATTACK_SECS:-20}
SLOW_CONNS=${SLOW_CONNS:-10000}
IDLE_CONNS=${IDLE_CONNS:-10000}
HEAD_TIMEOUT=10
# shellcheck source=bench-scripts/vs-lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vs-lib.sh"
SREPORT=(python3 "$SCRIPT_DIR/slowloris_report.py")
ATTACK=(python3 "$SCRIPT_DIR/slowloris_attack.py")
SROWS=$TMP/slowloris-rows.jsonl

NGINX_PORT=$((PORT_BASE + 2)) RINGRESS_PORT=$((PORT_BASE + 3))
check_ports_free "$ORIGIN_PORT" "$ORIGIN_NOLOG_PORT" "$NGINX_PORT" "$RINGRESS_PORT"
build_ringress
start_origin

sources() { # first last: 127.0.0.first,...,127.0.0.last
    local i out=()
    for ((i = $1; i <= $2; i++)); do out+=("127.0.0.$i"); done
    local IFS=,
    echo "${out[*]}"
}

start_guarded_ringress() {
    local dir=$TMP/ringress
    mkdir -p "$dir"
    cat >"$dir/ringress.toml" <<EOF
[runtime]
threads = 1

[timeouts]
client_head = "${HEAD_TIMEOUT}s"
keepalive = "60s"
min_head_rate = "500B/s"
head_rate_grace = "5s"

[overload]
keepalive_threshold = 0.8
keepalive_timeout = "2s"

[[listeners]]
name = "main"
bind = "$HOST:$RINGRESS_PORT"
backlog = 4096
max_conns = 19000
max_conns_per_ip = 800

[upstreams.origin]
servers = ["$HOST:$ORIGIN_NOLOG_PORT"]

[[routes]]
path_prefix = "/"
upstream = "origin"
EOF
    log "ringress on $HOST:$RINGRESS_PORT (cpu $PROXY_CPU, --threads 1)"
    taskset -c "$PROXY_CPU" "$RINGRESS_BIN" --config "$dir/ringress.toml" --threads 1 --no-pin --log warn \
        >"$dir/ringress.log" 2>&1 &
    SERVER_PID[ringress]=$!
    SERVER_PORT[ringress]=$RINGRESS_PORT
    PIDS+=($!)
    wait_http ringress "$RINGRESS_PORT" "$SMALL_PATH" $! "$dir/ringress.log"
}

start_guarded_nginx() {
    local dir=$TMP/nginx
    mkdir -p "$dir"
    {
        nginx_main "$dir" "$PROXY_CPU" | sed -e "s/worker_connections 20000/worker_connections 19000/" -e "s/worker_rlimit_nofile 65536/worker_rlimit_nofile 20000/"
        cat <<EOF
http {
$(nginx_http_common "$dir" off)
    access_log off;
    client_header_timeout ${HEAD_TIMEOUT}s;
    reset_timedout_connection on;
    limit_conn_zone \$binary_remote_addr zone=perip:10m;
    upstream origin {
        server $HOST:$ORIGIN_NOLOG_PORT;
        keepalive 1024;
    }
    server {
        listen $HOST:$NGINX_PORT backlog=4096;
        limit_conn perip 800;
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://origin;
        }
    }
}
EOF
    } >"$dir/nginx.conf"
    run_nginx nginx "$dir" "$PROXY_CPU" "$NGINX_PORT" "$SMALL_PATH"
}

rss() { "${SREPORT[@]}" rss "${SERVER_PID[$1]}"; }
memory() { # target phase
    "${SREPORT[@]}" memory "$SROWS" --target "$1" --phase "$2" --kib "$(rss "$1")"
}
share() { # before after ("busy total" jiffies): the busy share between them
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
        if (y[2] > x[2]) printf "%.3f", (y[1] - x[1]) / (y[2] - x[2]); else print 0 }'
}
wrk_phase() { # target phase
    local out=$TMP/wrk-$1-$2.txt k0 k1 c0 c1 t0 t1
    k0=$("${SREPORT[@]}" ticks "${SERVER_PID[$1]}")
    c0=$("${SREPORT[@]}" core "$WRK_CPU")
    t0=$(date +%s.%N)
    in_child taskset -c "$WRK_CPU" timeout "$((DURATION + 30))" wrk -t1 -c"$CONNS" -d"${DURATION}s" \
        --timeout 5s --latency "http://$HOST:${SERVER_PORT[$1]}$SMALL_PATH" >"$out" 2>&1 ||
        die "wrk against $1 failed ($(tail -3 "$out"))"
    t1=$(date +%s.%N)
    k1=$("${SREPORT[@]}" ticks "${SERVER_PID[$1]}")
    c1=$("${SREPORT[@]}" core "$WRK_CPU")
    local proxy_share
    proxy_share=$(awk -v k="$((k1 - k0))" -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", k / hz / (b - a) }')
    "${SREPORT[@]}" record "$SROWS" --target "$1" --phase "$2" --wrk "$out" \
        --proxy-share "$proxy_share" --core-share "$(share "$c0" "$c1")" >&2 ||
        die "could not parse $out"
    log "$1 $2: $(grep -E 'Requests/sec|^ +99%' "$out" | tr -s ' ' | tr '\n' ' ')"
}

attack_one() { # target round
    local t=$1 port=${SERVER_PORT[$1]} slow_pid idle_pid sampler i
    local slow_res=$TMP/attack-$t-$2-slow.json idle_res=$TMP/attack-$t-$2-idle.json
    rm -f "$TMP"/ready-"$t"-*
    log "$t: attack: $SLOW_CONNS slowloris + $IDLE_CONNS idle connections for ${ATTACK_SECS}s"
    taskset -c "$WRK_CPU" nice -n 19 "${ATTACK[@]}" "$HOST" "$port" "$SLOW_CONNS" slowloris "$slow_res" \
        --sources "$(sources 10 19)" --duration "$ATTACK_SECS" --deadline "$HEAD_TIMEOUT" \
        --ready-file "$TMP/ready-$t-slow" 2>"$TMP/attack-$t-slow.log" &
    slow_pid=$!
    PIDS+=($slow_pid)
    taskset -c "$WRK_CPU" nice -n 19 "${ATTACK[@]}" "$HOST" "$port" "$IDLE_CONNS" idle "$idle_res" \
        --sources "$(sources 20 29)" --duration "$ATTACK_SECS" --deadline "$HEAD_TIMEOUT" \
        --ready-file "$TMP/ready-$t-idle" 2>"$TMP/attack-$t-idle.log" &
    idle_pid=$!
    PIDS+=($idle_pid)
    for ((i = 0; i < 200; i++)); do
        [[ -e $TMP/ready-$t-slow && -e $TMP/ready-$t-idle ]] && break
        sleep 0.1
    done
    [[ -e $TMP/ready-$t-slow && -e $TMP/ready-$t-idle ]] || log "$t: attackers not all open after 20 s (measuring anyway)"
    sleep 2
    # RSS once a second while the attack lasts (bounded by ATTACK_SECS).
    (
        for ((i = 0; i < ATTACK_SECS; i++)); do
            memory "$t" during 2>/dev/null || true
            sleep 1
        done
    ) &
    sampler=$!
    wrk_phase "$t" attacked
    for pid in $slow_pid $idle_pid; do
        timeout "$((ATTACK_SECS + 20))" tail --pid="$pid" -f /dev/null || die "attacker $pid did not end"
    done
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    for f in "$slow_res" "$idle_res"; do
        [[ -s $f ]] || die "attacker result $f missing ($(tail -3 "${f%.json}.log"))"
        "${SREPORT[@]}" attack "$SROWS" --target "$t" --result "$f"
    done
}

measure_target() { # target round
    local t=$1 r=$2
    log "$t: round $r"
    wrk -t1 -c"$CONNS" -d"${WARMUP}s" "http://$HOST:${SERVER_PORT[$t]}$SMALL_PATH" >/dev/null 2>&1 || true
    memory "$t" before
    wrk_phase "$t" calm
    attack_one "$t" "$r"
    sleep 3
    memory "$t" after
    kill -0 "${SERVER_PID[$t]}" 2>/dev/null || die "$t died during the attack"
    stop_server "$t"
}

# Each round starts each proxy afresh (RSS "before" is a fresh process),
# the order swapped every round.
for ((round = 1; round <= ROUNDS; round++)); do
    order=(ringress nginx)
    ((round % 2 == 0)) && order=(nginx ringress)
    for t in "${order[@]}"; do
        if [[ $t == ringress ]]; then
            [[ $SKIP_RINGRESS == 1 ]] && continue
            start_guarded_ringress
        else
            start_guarded_nginx
        fi
        measure_target "$t" "$round"
    done
done

mkdir -p "$RESULTS_DIR"
{
    echo "# slowloris.sh — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load at start $LOADAVG_START"
    echo
    echo "Normal client: wrk -t1 -c$CONNS -d${DURATION}s on $SMALL_PATH, medians of $ROUNDS rounds; attack:"
    echo "$SLOW_CONNS slowloris + $IDLE_CONNS idle connections for ${ATTACK_SECS}s (reopened when closed);"
    echo "head timeout ${HEAD_TIMEOUT}s. Lives count from the end of the TCP handshake (accept-queue time included)."
    echo
    "${SREPORT[@]}" report "$SROWS" "$RESULTS_DIR/slowloris.json"
} | tee "$RESULTS_DIR/slowloris.md"
