#!/usr/bin/env bash
# observability-cost.sh — what an access log costs, ringress against nginx.
#
# Four proxies, one worker each, all pinned (with every thread they start:
# ringress's log writer included) to PROXY_CPU, in front of one fast backend
# (a ringress answering a fixed 100-byte body by itself, on BACKEND_CPU), so
# that the proxy's CPU limits req/s:
#   ringress-off   no access log (metrics are always counted)
#   ringress-on    [access_log] format = "json" to a file, and /metrics
#                  scraped once a second from its admin listener
#   nginx-off      proxy_pass with access_log off
#   nginx-on       proxy_pass with access_log to a file (combined, nginx's
#                  default: one write(2) per request)
# Each round runs wrk -t1 -c64 keep-alive for DURATION seconds against each
# of them, in an order that rotates from round to round; the log files are
# emptied before each run. Reports, per proxy, the median req/s and the
# median CPU time per request (utime + stime of the proxy process over the
# run, from /proc/PID/stat, divided by the requests wrk completed: on a
# 2-core machine wrk and the backend share a core and may limit req/s, so
# CPU per request is the steadier measure of what the log costs), and the
# on/off ratios of both. The cost of counting metrics itself (always on) is measured by
# ab.sh against the build before it: A=<commit before> B=<this build>.
#
# Knobs: ROUNDS [5] DURATION [8] BIN [target/release/ringress, built if
# missing] PORT_BASE [19680] PROXY_CPU / BACKEND_CPU / WRK_CPU
# (cpu-placement.sh) KEEP_TMP=1.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
PORT_BASE=${PORT_BASE:-19680}
KEEP_TMP=${KEEP_TMP:-0}
HOST=127.0.0.1 # loopback only
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
BIN=${BIN:-$REPO_ROOT/target/release/ringress}

log() { printf '[obs-cost] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
# shellcheck source=bench-scripts/cpu-placement.sh
source "$SCRIPT_DIR/cpu-placement.sh"
for tool in wrk nginx curl taskset python3; do
    command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] || die "$tool is needed (apt-get install $tool)"
done
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
# shellcheck source=bench-scripts/cost-lib.sh
source "$SCRIPT_DIR/cost-lib.sh"
build_if_missing
start_tmp obs-cost

BACKEND=$((PORT_BASE)) R_OFF=$((PORT_BASE + 1)) R_ON=$((PORT_BASE + 2)) R_ADMIN=$((PORT_BASE + 3))
N_OFF=$((PORT_BASE + 4)) N_ON=$((PORT_BASE + 5))
wait_http() { # port
    local i
    for ((i = 0; i < 100; i++)); do
        curl -fsS -o /dev/null --max-time 1 "http://$HOST:$1/" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing answers on $HOST:$1"
}
declare -A PID_OF=()
ringress() { # name port extra-toml cpu
    local dir=$TMP/$1
    mkdir -p "$dir"
    printf '%s\n' "$3" >"$dir/ringress.toml"
    taskset -c "$4" "$BIN" --config "$dir/ringress.toml" --threads 1 --no-pin >"$dir/log" 2>&1 &
    PIDS+=($!)
    PID_OF[$1]=$!
    wait_http "$2"
}
ticks() { # pid: utime + stime in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
ringress backend "$BACKEND" "[[listeners]]
name = \"main\"
bind = \"$HOST:$BACKEND\"
[[routes]]
respond = { status = 200, body = \"$(printf '%-99s' 'hello')\n\" }" "$BACKEND_CPU"
proxy_toml() { # port
    printf '[[listeners]]\nname = "main"\nbind = "%s:%s"\n[upstreams.b]\nservers = ["%s:%s"]\n[[routes]]\nupstream = "b"\n' \
        "$HOST" "$1" "$HOST" "$BACKEND"
}
ringress ringress-off "$R_OFF" "$(proxy_toml "$R_OFF")" "$PROXY_CPU"
ringress ringress-on "$R_ON" "$(proxy_toml "$R_ON")
[admin]
bind = \"$HOST:$R_ADMIN\"
[access_log]
path = \"$TMP/ringress-on/access.log\"
format = \"json\"" "$PROXY_CPU"
nginx_proxy() { # name port access-log-line
    local dir=$TMP/$1
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
$( ((EUID == 0)) && echo "user root;")
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    $3
    upstream b { server $HOST:$BACKEND; keepalive 64; }
    client_body_temp_path $dir/cb; proxy_temp_path $dir/p; fastcgi_temp_path $dir/f;
    uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;
    server {
        listen $HOST:$2;
        location / {
            proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    taskset -c "$PROXY_CPU" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout" 2>&1 &
    PIDS+=($!)
    PID_OF[$1]=$!
    wait_http "$2"
}
nginx_proxy nginx-off "$N_OFF" "access_log off;"
nginx_proxy nginx-on "$N_ON" "access_log $TMP/nginx-on/access.log combined;"

# /metrics once a second while the run lasts, as a Prometheus server would.
scraper() {
    while sleep 1; do curl -fsS -o /dev/null --max-time 2 "http://$HOST:$R_ADMIN/metrics" || true; done
}
scraper &
PIDS+=($!)

declare -A PORTS=([ringress-off]=$R_OFF [ringress-on]=$R_ON [nginx-off]=$N_OFF [nginx-on]=$N_ON)
NAMES=(ringress-off ringress-on nginx-off nginx-on)
RESULTS=$TMP/results.txt
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#NAMES[@]}; i++)); do
        name=${NAMES[$(((i + r) % ${#NAMES[@]}))]}
        : >"$TMP/ringress-on/access.log" 2>/dev/null || true
        : >"$TMP/nginx-on/access.log" 2>/dev/null || true
        out=$TMP/$name-r$r.txt
        k0=$(ticks "${PID_OF[$name]}")
        taskset -c "$WRK_CPU" wrk -t1 -c64 -d"${DURATION}s" "http://$HOST:${PORTS[$name]}/" >"$out" 2>&1 || die "wrk failed against $name"
        k1=$(ticks "${PID_OF[$name]}")
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        done_requests=$(awk '/requests in/ {print $1}' "$out")
        us=$(python3 -c "print(round(($k1 - $k0) / $CLK_TCK * 1e6 / $done_requests, 2))")
        log "round $r $name: $rps req/s, $us CPU us/req"
        echo "$name $rps $us" >>"$RESULTS"
        if [[ $name == ringress-on ]]; then
            # Lines of the run's last tick may still be on their way.
            sleep 0.3
            LOGGED=$(wc -l <"$TMP/ringress-on/access.log")
            SENT=$(awk '/requests in/ {print $1}' "$out")
            log "ringress-on logged $LOGGED lines for $SENT requests"
            ((LOGGED > 0)) || die "ringress-on wrote no access log line"
        fi
    done
done
python3 - "$RESULTS" "$ROUNDS" "$DURATION" <<'EOF'
import statistics, sys
runs, cpu = {}, {}
for line in open(sys.argv[1]):
    name, rps, us = line.split()
    runs.setdefault(name, []).append(float(rps))
    cpu.setdefault(name, []).append(float(us))
med = {k: statistics.median(v) for k, v in runs.items()}
mcpu = {k: statistics.median(v) for k, v in cpu.items()}
print(f"## observability-cost.sh: {sys.argv[2]} rounds x {sys.argv[3]} s, wrk -t1 -c64 keep-alive, one proxy worker\n")
print("| proxy | median req/s | median CPU µs/req | req/s runs |")
print("|---|---:|---:|---|")
for k in ("ringress-off", "ringress-on", "nginx-off", "nginx-on"):
    print(f"| {k} | {med[k]:,.0f} | {mcpu[k]:.2f} | {', '.join(f'{x:,.0f}' for x in runs[k])} |")
for who, on, off in (("ringress (access log + scrapes)", "ringress-on", "ringress-off"), ("nginx (access log)", "nginx-on", "nginx-off")):
    r = med[on] / med[off]
    c = mcpu[on] / mcpu[off]
    print(f"\n{who}: req/s on/off {r:.3f}, CPU per request on/off {c:.3f} (+{100 * (c - 1):.1f} %)")
print(f"\nringress-on / nginx-on: req/s {med['ringress-on'] / med['nginx-on']:.2f}x, CPU per request {mcpu['ringress-on'] / mcpu['nginx-on']:.2f}x")
EOF
