#!/usr/bin/env bash
# compare.sh — the headline benchmark: ringress vs nginx vs HAProxy, one
# worker each, plain HTTP/1.1, on one machine.
#
# Starts, all on 127.0.0.1:
#   * a backend: nginx, 1 worker, serving / (100 bytes), /64k (64 KiB) and
#     /1m (1 MiB) static files, each with a Content-Length
#   * nginx as a 1-worker reverse proxy (upstream keepalive 1024,
#     proxy_http_version 1.1, Connection "")
#   * HAProxy, 1 thread (nbthread 1, mode http, http-reuse always,
#     option http-keep-alive)
#   * ringress, 1 worker (--threads 1)
# then measures, per scenario, req/s, p99, MB/s, proxy CPU µs/request (the
# proxy's own utime + stime from /proc/PID/stat over the run, divided by the
# requests completed), the busy % of the proxy and load CPUs, and RSS,
# alternating the proxies for $ROUNDS rounds, and writes
# results/compare.md (tables, medians over the rounds, ratios, a verdict per
# target of the performance issue), results/compare.csv (every run) and
# results/compare.png (drawn by plot.py from the CSV).
#
# Scenarios (SCENARIOS, run in this order; memory runs first, on processes
# that have served only a few requests):
#   memory    RSS of each proxy holding $IDLE_CONNS idle keep-alive client
#             connections (idle_conns.py), KiB per connection above its
#             idle baseline
#   ka-c64    wrk -t1 -c64, keep-alive, GET / (100 bytes)
#   ka-c256   wrk -t1 -c256, the same
#   fast-ka-c64 ka-c64 through the proxies to a cheaper backend (ringress
#             answering /fast itself with a fixed 100-byte body), so that the
#             load side outruns every proxy and the proxy, on its own CPU,
#             limits req/s
#   oha-c64   oha -c64, the same as ka-c64 with a second load generator
#   latency   oha -c64 at a fixed $LATENCY_RATE req/s (below every proxy's
#             saturation here), latency corrected for coordinated omission:
#             p50/p90/p99/p99.9 when no proxy is at its limit
#   close     wrk -t1 -c$CLOSE_CONNS -H "Connection: close" (new connection
#             per request)
#   body-64k  wrk -t1 -c$BODY_CONNS, GET /64k
#   body-1m   wrk -t1 -c$BODY_CONNS, GET /1m
#   cap-ka-c64  ka-c64 with each proxy held to $CAP_PCT % of one CPU (a
#             CPU-bandwidth cgroup), so that the proxy, not the load side,
#             limits req/s: requests per unit of CPU, as req/s
#   cap-close close under the same cap
#   scaling   ringress with 2 workers vs 1 worker, wrk -t1 -c256
#   cap-scaling ringress 2 workers held to 2 x $CAP_PCT % vs 1 worker held
#             to $CAP_PCT %, wrk -c256 with a thread on each CPU used
#
# The cap-* scenarios exist because this project's machines have 2 CPUs:
# without a cap the backend and the load generator, sharing the second CPU,
# saturate before any proxy does, and the 2-worker run has no free core. A
# CFS bandwidth cap (cgroup v1 cpu.cfs_quota_us or v2 cpu.max, whichever
# this kernel has; needs root) gives every proxy the same CPU budget and
# leaves the load side several times what the proxy can use, so req/s
# measures what each proxy does with the same CPU. Their p99 is the cap's
# doing (a throttled proxy waits for the next period) and is not judged.
#
# Exits non-zero only when setup fails (install, build, a server that does not
# start or dies, a load generator failing). Missing a target is reported in
# the verdicts, not an error.
#
# Environment knobs (defaults in brackets):
#   DURATION [8]       seconds per measured run
#   WARMUP   [2]       seconds of warm-up per target and scenario (0 = none)
#   ROUNDS   [3]       measured rounds; each round runs every scenario once per
#                      target, starting one target later than the round before
#   SCENARIOS          subset of the scenarios above, space separated [all]
#   OHA      [1]       0 = skip oha (and the oha-c64 and latency scenarios)
#   LATENCY_RATE [10000] requests/s offered in the latency scenario
#   CAP_PCT  [30]      cap-* scenarios: each worker's CPU budget, % of one CPU
#   CAP_PERIOD_US [10000] cap-* scenarios: the CFS bandwidth period (µs)
#   LOAD_SCHED [batch] scheduling policy of the backend and the load generator:
#                      batch (SCHED_BATCH, see "Load-side scheduling" below)
#                      or normal
#   REFERENCE [1]      0 = no backend-direct reference rows
#   PROFILE  [fast-ka-c64 close] uncapped load scenarios to profile: after
#                      the measured rounds, one more run per proxy with perf
#                      recording every sample on PROXY_CPU over its middle
#                      half; cpu_split.py splits each proxy's CPU per request
#                      into TCP/IP, io_uring/epoll, syscalls, scheduling,
#                      memory and user space, and works out the ceiling the
#                      kernel's TCP/IP share puts on ringress/nginx. "" =
#                      none. Needs perf (linux-perf, installed if missing)
#                      and root for kernel symbols; skipped with a warning
#                      without them.
#   IDLE_CONNS [10000] idle connections in the memory scenario
#   IDLE_BATCH [200]   connections opened (and requests in flight) at a time
#   BODY_CONNS [64]    wrk connections for the body scenarios
#   CLOSE_CONNS [64]   wrk connections for the close scenario
#   BACKEND_PORT [19480] NGINX_PORT [19481] HAPROXY_PORT [19482]
#   RINGRESS_PORT [19483] RINGRESS2_PORT [19484] (2-worker ringress, scaling)
#   FAST_PORT [19485] (the fast-ka-c64 scenario's backend)
#   PROXY_CPU / BACKEND_CPU / WRK_CPU / SCALE_CPU   CPU placement (see below)
#   SKIP_BUILD=1       don't run cargo build (use an existing binary)
#   RINGRESS_BIN       path of the ringress binary [target/release/ringress]
#   RESULTS_DIR        where compare.md/.csv/.png go [bench-scripts/results]
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw outputs)
set -euo pipefail

DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
ALL_SCENARIOS="memory ka-c64 ka-c256 fast-ka-c64 oha-c64 latency close body-64k body-1m cap-ka-c64 cap-close scaling cap-scaling"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
OHA=${OHA:-1}
LATENCY_RATE=${LATENCY_RATE:-10000}
CAP_PCT=${CAP_PCT:-30}
CAP_PERIOD_US=${CAP_PERIOD_US:-10000}
LOAD_SCHED=${LOAD_SCHED:-batch}
REFERENCE=${REFERENCE:-1}
PROFILE=${PROFILE-fast-ka-c64 close}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_BATCH=${IDLE_BATCH:-200}
BODY_CONNS=${BODY_CONNS:-64}
CLOSE_CONNS=${CLOSE_CONNS:-64}
BACKEND_PORT=${BACKEND_PORT:-19480}
NGINX_PORT=${NGINX_PORT:-19481}
HAPROXY_PORT=${HAPROXY_PORT:-19482}
RINGRESS_PORT=${RINGRESS_PORT:-19483}
RINGRESS2_PORT=${RINGRESS2_PORT:-19484}
FAST_PORT=${FAST_PORT:-19485}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
# Clock ticks per second: the unit of utime/stime in /proc/PID/stat.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
[[ $CLK_TCK =~ ^[0-9]+$ ]] && ((CLK_TCK > 0)) || CLK_TCK=100
HOST=127.0.0.1 # all traffic stays on loopback

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RINGRESS_BIN=${RINGRESS_BIN:-$REPO_ROOT/target/release/ringress}
RESULTS_DIR=${RESULTS_DIR:-$SCRIPT_DIR/results}

log() { printf '[compare] %s\n' "$*" >&2; }
die() {
    printf '[compare] ERROR: %s\n' "$*" >&2
    exit 1
}

for v in DURATION WARMUP ROUNDS OHA LATENCY_RATE CAP_PCT CAP_PERIOD_US REFERENCE IDLE_CONNS IDLE_BATCH BODY_CONNS CLOSE_CONNS \
    BACKEND_PORT NGINX_PORT HAPROXY_PORT RINGRESS_PORT RINGRESS2_PORT FAST_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((ROUNDS >= 1)) || die "ROUNDS must be >= 1"
((LATENCY_RATE >= 1)) || die "LATENCY_RATE must be >= 1"
((CAP_PCT >= 5 && CAP_PCT <= 50)) || die "CAP_PCT must be 5..50 (the load side needs the rest)"
((CAP_PERIOD_US >= 2000 && CAP_PERIOD_US <= 1000000)) || die "CAP_PERIOD_US must be 2000..1000000"
# Quota per worker, µs per period (the kernel's minimum quota is 1 ms).
CAP_QUOTA_US=$((CAP_PERIOD_US * CAP_PCT / 100))
((CAP_QUOTA_US >= 1000)) || die "CAP_PERIOD_US x CAP_PCT / 100 must be at least 1000 µs (the kernel's minimum quota)"
[[ $LOAD_SCHED == batch || $LOAD_SCHED == normal ]] || die "LOAD_SCHED must be batch or normal (got '$LOAD_SCHED')"
((DURATION >= 2)) || die "DURATION must be >= 2"
((IDLE_CONNS >= 1 && IDLE_BATCH >= 1 && BODY_CONNS >= 1 && CLOSE_CONNS >= 1)) || die "connection counts must be >= 1"

# Scenario selection, kept in the canonical order.
declare -A WANT=()
for s in $SCENARIOS; do
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "unknown scenario '$s' (known: $ALL_SCENARIOS)"
    WANT[$s]=1
done
if ((OHA == 0)); then
    for s in oha-c64 latency; do
        if [[ -n ${WANT[$s]:-} ]]; then
            log "OHA=0: skipping the $s scenario"
            unset "WANT[$s]"
        fi
    done
fi
# The cap-* scenarios need a cgroup with the cpu controller, and root.
CAP_ROOT='' CAP_VER=''
cap_find() { # sets CAP_ROOT (mount point) and CAP_VER (1 or 2)
    local mnt fs opts
    while read -r _ mnt fs opts _; do
        if [[ $fs == cgroup && ,$opts, == *,cpu,* ]]; then
            CAP_ROOT=$mnt CAP_VER=1
            return 0
        fi
        if [[ $fs == cgroup2 && -r $mnt/cgroup.controllers ]] && grep -qw cpu "$mnt/cgroup.controllers"; then
            CAP_ROOT=$mnt CAP_VER=2
            return 0
        fi
    done </proc/mounts
    return 1
}
want() { [[ -n ${WANT[$1]:-} ]]; }
want_cap() { want cap-ka-c64 || want cap-close || want cap-scaling; }
# pick_scenarios: SCEN (all selected, in order) and LOAD_SCEN (the ones
# driven by wrk or oha against every target) from WANT.
pick_scenarios() {
    local s
    SCEN=() LOAD_SCEN=()
    for s in $ALL_SCENARIOS; do
        if want "$s"; then SCEN+=("$s"); fi
    done
    for s in "${SCEN[@]}"; do
        [[ $s == memory || $s == scaling || $s == cap-scaling ]] || LOAD_SCEN+=("$s")
    done
}
pick_scenarios
((${#SCEN[@]})) || die "no scenario selected"
# Profiled scenarios: those of PROFILE that run and are not capped (a
# throttled proxy's samples would include the cap's waits).
PROF_SCEN=()
for s in $PROFILE; do
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "PROFILE: unknown scenario '$s'"
    [[ $s == cap-* || $s == memory || $s == scaling ]] && die "PROFILE: '$s' cannot be profiled (uncapped load scenarios only)"
    if want "$s"; then PROF_SCEN+=("$s"); fi
done
# oha-rate: oha at LATENCY_RATE req/s.
declare -A S_TOOL=([ka-c64]=wrk [ka-c256]=wrk [fast-ka-c64]=wrk [oha-c64]=oha [latency]=oha-rate [close]=wrk [body-64k]=wrk [body-1m]=wrk
    [cap-ka-c64]=wrk [cap-close]=wrk)
declare -A S_CONNS=([ka-c64]=64 [ka-c256]=256 [fast-ka-c64]=64 [oha-c64]=64 [latency]=64 [close]=$CLOSE_CONNS [body-64k]=$BODY_CONNS [body-1m]=$BODY_CONNS
    [cap-ka-c64]=64 [cap-close]=$CLOSE_CONNS)
declare -A S_PATH=([ka-c64]=/ [ka-c256]=/ [fast-ka-c64]=/fast [oha-c64]=/ [latency]=/ [close]=/ [body-64k]=/64k [body-1m]=/1m [cap-ka-c64]=/ [cap-close]=/)
declare -A S_TITLE=(
    [ka-c64]="Keep-alive, 100-byte body, wrk -t1 -c64"
    [ka-c256]="Keep-alive, 100-byte body, wrk -t1 -c256"
    [fast-ka-c64]="Proxy-bound keep-alive: 100-byte body from a fast backend, wrk -t1 -c64"
    [oha-c64]="Keep-alive, 100-byte body, oha -c64 (second load generator)"
    [latency]="Latency at a fixed $LATENCY_RATE req/s, keep-alive, 100-byte body, oha -c64"
    [close]="New connection per request, wrk -t1 -c$CLOSE_CONNS -H \"Connection: close\""
    [body-64k]="64 KiB response body, wrk -t1 -c$BODY_CONNS, keep-alive"
    [body-1m]="1 MiB response body, wrk -t1 -c$BODY_CONNS, keep-alive"
    [cap-ka-c64]="Per CPU budget: keep-alive, 100-byte body, wrk -t1 -c64, each proxy held to $CAP_PCT % of one CPU"
    [cap-close]="Per CPU budget: new connection per request, wrk -t1 -c$CLOSE_CONNS, each proxy held to $CAP_PCT % of one CPU"
)

# ---------------------------------------------------------------------------
# CPU placement (as in vs-nginx.sh).
#
# Every proxy's one worker runs on PROXY_CPU (0): ringress pins worker i to
# core i among the CPUs it may use, so it is started under taskset -c 0;
# nginx gets worker_cpu_affinity and taskset, HAProxy taskset. The backend
# and the load generator (wrk, oha, idle_conns.py) get the other CPUs; on a
# 2-core machine they share CPU 1. With 3+ CPUs they each get their own,
# avoiding CPU 0's hyper-thread siblings when possible.
#
# Scaling: the 2-worker ringress runs under taskset -c PROXY_CPU,SCALE_CPU,
# so worker 0 is on PROXY_CPU and worker 1 on SCALE_CPU. SCALE_CPU is a CPU
# used by neither the backend nor the load generator when there is one; on a
# 2-core machine there is none, worker 1 shares CPU 1 with wrk and the
# backend, and the scaling number is reported as not meaningful.
# ---------------------------------------------------------------------------
# shellcheck source=bench-scripts/cpu-placement.sh
source "$SCRIPT_DIR/cpu-placement.sh"
if [[ -z ${SCALE_CPU:-} ]]; then
    for c in "${_others[@]}"; do
        if ((c != BACKEND_CPU && c != WRK_CPU)); then SCALE_CPU=$c && break; fi
    done
    SCALE_CPU=${SCALE_CPU:-$WRK_CPU}
fi
for v in PROXY_CPU BACKEND_CPU WRK_CPU SCALE_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a CPU number (got '${!v}')"
done
SCALE_SHARED=0
((SCALE_CPU == WRK_CPU || SCALE_CPU == BACKEND_CPU || SCALE_CPU == PROXY_CPU)) && SCALE_SHARED=1

# ---------------------------------------------------------------------------
# Load-side scheduling. With fewer than 4 CPUs the backend and the load
# generator share one CPU, and under the default policy each one's wakeups
# can preempt the other. How often depends on the proxy in between, on when
# its responses and requests arrive: measured here with perf on CPU 1, the
# backend was preempted 0.08 times per request behind nginx and 0.02 behind
# ringress under wrk -c64, and 0.30 behind ringress and 0.10 behind nginx
# under oha (its default multi-threaded runtime) at a fixed 10,000 req/s,
# where oha then used 35-40 % more CPU per request behind ringress and
# measured a median latency of 1.9-5.9 ms against 0.7-0.8 ms behind nginx,
# although a packet capture showed ringress passing requests and responses
# on faster than nginx. So the load side's own cost varied with the proxy.
# SCHED_BATCH (any user may set it) turns off wakeup preemption for these
# two processes: 0.001 preemptions per request behind either proxy, medians
# of 0.74-0.84 ms (ringress) and 0.70-0.80 ms (nginx) in the oha case.
# LOAD_SCHED=normal measures with the default policy.
# ---------------------------------------------------------------------------
LOAD_PREFIX=() # set once the tools are installed (below)

cpu_mask() { # nginx worker_cpu_affinity: bit mask, rightmost bit = CPU 0
    local m=1 i
    for ((i = 0; i < $1; i++)); do m+=0; done
    echo "$m"
}

# ---------------------------------------------------------------------------
# Tools: install what is missing (Debian packages, oha from crates.io).
# ---------------------------------------------------------------------------
SUDO=()
if ((EUID != 0)); then SUDO=(sudo); fi
apt_install() { # pkg...
    log "installing: $*"
    ((EUID == 0)) || command -v sudo >/dev/null 2>&1 || die "need root or sudo to install $*"
    # Keep the packages' own services (nginx on :80, haproxy) from being
    # started while installing (only if no policy-rc.d is there already).
    local added_policy=0 ok=1
    if [[ ! -e /usr/sbin/policy-rc.d ]] && ((EUID == 0)); then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || ok=0
    if ((ok)); then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || ok=0
    fi
    ((added_policy)) && rm -f /usr/sbin/policy-rc.d
    return $((!ok))
}
need_pkgs=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx)
command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || need_pkgs+=(haproxy)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
{ command -v taskset && command -v chrt; } >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v pgrep >/dev/null 2>&1 || need_pkgs+=(procps)
command -v ss >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v timeout >/dev/null 2>&1 || need_pkgs+=(coreutils)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
((${#PROF_SCEN[@]} && EUID == 0)) && ! command -v perf >/dev/null 2>&1 && need_pkgs+=(linux-perf)
if ((${#need_pkgs[@]})); then
    apt_install "${need_pkgs[@]}" || die "apt-get install ${need_pkgs[*]} failed"
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy 2>/dev/null || echo /usr/sbin/haproxy)
if [[ $LOAD_SCHED == batch ]]; then
    if chrt --batch 0 true 2>/dev/null; then
        LOAD_PREFIX=(chrt --batch 0)
    else
        log "WARNING: chrt --batch is refused here; the load side runs with the default policy"
        LOAD_SCHED=normal
    fi
fi

# matplotlib for plot.py: whichever python3 has it, else Debian's package.
PLOT_PY=
find_plot_py() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import matplotlib' 2>/dev/null; then
            PLOT_PY=$py
            return 0
        fi
    done
    return 1
}
if ! find_plot_py; then
    apt_install python3-matplotlib || log "WARNING: could not install python3-matplotlib"
    find_plot_py || log "WARNING: no python3 with matplotlib; compare.png will not be drawn"
fi

OHA_BIN=''
OHA_ARGS=()
if want oha-c64 || want latency; then
    OHA_BIN=$(command -v oha 2>/dev/null || true)
    [[ -z $OHA_BIN && -x $HOME/.cargo/bin/oha ]] && OHA_BIN=$HOME/.cargo/bin/oha
    if [[ -z $OHA_BIN ]]; then
        command -v cargo >/dev/null 2>&1 || die "oha is missing and cargo is not there to install it (OHA=0 skips oha)"
        log "installing oha with cargo install oha --locked (a few minutes; bounded to 30 min)"
        timeout 1800 cargo install oha --locked >&2 || die "cargo install oha failed (OHA=0 skips oha)"
        OHA_BIN=$HOME/.cargo/bin/oha
        [[ -x $OHA_BIN ]] || OHA_BIN=$(command -v oha 2>/dev/null || true)
        [[ -n $OHA_BIN ]] || die "oha not found after cargo install"
    fi
    # JSON output: --output-format json (oha >= 1.5) or --json (older);
    # one runtime thread where oha has the option, like wrk -t1.
    oha_help=$("$OHA_BIN" --help 2>&1 || true)
    if [[ $oha_help == *--output-format* ]]; then OHA_ARGS=(--output-format json); else OHA_ARGS=(--json); fi
    [[ $oha_help == *--worker-threads* ]] && OHA_ARGS+=(--worker-threads 1)
fi

# ---------------------------------------------------------------------------
# Build.
# ---------------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
    log "building ringress (cargo build --release)"
    (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
fi
[[ -x $RINGRESS_BIN ]] || die "ringress binary not found at $RINGRESS_BIN"

# ---------------------------------------------------------------------------
# Process bookkeeping and cleanup (runs on normal exit, errors and Ctrl-C).
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringress-compare.XXXXXX")
PIDS=()     # long-lived servers we started
LOAD_PID=   # the wrk / oha / idle_conns.py run in progress, if any
PERF_PID=   # the perf record in progress, if any
CAP_CG=''   # the cgroup of the cap-* scenarios, once made
CAP_ADDED_CPU=0 # 1: we enabled the cpu controller in CAP_ROOT (v2) and undo it
stop_pid() { # pid: TERM, wait up to 3 s, then KILL
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
    [[ -n $LOAD_PID ]] && stop_pid "$LOAD_PID"
    [[ -n $PERF_PID ]] && stop_pid "$PERF_PID"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [[ -n $CAP_CG && -d $CAP_CG ]] && cap_remove
    if ((CAP_ADDED_CPU)); then echo -cpu >"$CAP_ROOT/cgroup.subtree_control" 2>/dev/null || true; fi
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

# ---------------------------------------------------------------------------
# CPU caps (cap-* scenarios): one cgroup of our own under CAP_ROOT. A capped
# proxy's processes are moved into it for the run and back to the cgroup
# they came from afterwards; the quota is set per run (2 workers get twice
# one worker's). cpu.stat's nr_periods / nr_throttled tell whether the cap,
# rather than the load side, was the limit.
# ---------------------------------------------------------------------------
declare -A CAP_FROM=() # pid -> cgroup directory it came from
cap_remove() { # move stragglers back to the root, then remove the cgroup
    local pid i
    while read -r pid; do
        if [[ -n $pid ]]; then echo "$pid" >"$CAP_ROOT/cgroup.procs" 2>/dev/null || true; fi
    done <"$CAP_CG/cgroup.procs" 2>/dev/null
    for ((i = 0; i < 20; i++)); do
        rmdir "$CAP_CG" 2>/dev/null && return 0
        sleep 0.1
    done
    log "WARNING: could not remove $CAP_CG"
}
cap_quota() { # quota µs per CAP_PERIOD_US
    if [[ $CAP_VER == 1 ]]; then
        echo -1 >"$CAP_CG/cpu.cfs_quota_us" &&
            echo "$CAP_PERIOD_US" >"$CAP_CG/cpu.cfs_period_us" &&
            echo "$1" >"$CAP_CG/cpu.cfs_quota_us"
    else
        echo "$1 $CAP_PERIOD_US" >"$CAP_CG/cpu.max"
    fi
}
cap_origin() { # pid -> its cgroup directory in this hierarchy
    local line
    if [[ $CAP_VER == 2 ]]; then
        line=$(grep -m1 '^0::' "/proc/$1/cgroup")
    else
        line=$(grep -m1 -E '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:' "/proc/$1/cgroup")
    fi
    echo "$CAP_ROOT${line##*:}"
}
cap_stat() { awk '$1 == "nr_periods" {p = $2} $1 == "nr_throttled" {t = $2} END {print p + 0, t + 0}' "$CAP_CG/cpu.stat"; }
CAP_STAT0='' THROTTLED=
cap_on() { # quota_us server_pid: cap the server (all its processes)
    local pid pids
    cap_quota "$1" || die "cannot set a CPU quota in $CAP_CG"
    read -r -a pids <<<"$(server_pids "$2")"
    for pid in "${pids[@]}"; do
        CAP_FROM[$pid]=$(cap_origin "$pid")
        echo "$pid" >"$CAP_CG/cgroup.procs" || die "cannot move PID $pid into $CAP_CG"
    done
    CAP_STAT0=$(cap_stat)
}
cap_off() { # server_pid: sets THROTTLED (% of periods throttled since cap_on)
    local pid pids p0 t0 p1 t1
    read -r p0 t0 <<<"$CAP_STAT0"
    read -r p1 t1 <<<"$(cap_stat)"
    THROTTLED=$(awk -v p0="$p0" -v t0="$t0" -v p1="$p1" -v t1="$t1" 'BEGIN {if (p1 > p0) printf "%.0f", 100 * (t1 - t0) / (p1 - p0); else print "n/a"}')
    read -r -a pids <<<"$(server_pids "$1")"
    for pid in "${pids[@]}"; do
        echo "$pid" >"${CAP_FROM[$pid]:-$CAP_ROOT}/cgroup.procs" 2>/dev/null ||
            echo "$pid" >"$CAP_ROOT/cgroup.procs" 2>/dev/null || true
    done
}
if want_cap; then
    why=''
    if ((EUID != 0)); then
        why="they need root (a cgroup of their own)"
    elif ! cap_find; then
        why="no cgroup hierarchy with the cpu controller is mounted"
    elif [[ $CAP_VER == 2 ]] && ! grep -qw cpu "$CAP_ROOT/cgroup.subtree_control"; then
        if echo +cpu >"$CAP_ROOT/cgroup.subtree_control" 2>/dev/null; then
            CAP_ADDED_CPU=1
        else
            why="cannot enable the cpu controller in $CAP_ROOT"
        fi
    fi
    if [[ -z $why ]]; then
        if mkdir "$CAP_ROOT/ringress-compare.$$" 2>/dev/null; then
            CAP_CG=$CAP_ROOT/ringress-compare.$$
            cap_quota "$CAP_QUOTA_US" 2>/dev/null || why="cannot set a CPU quota in $CAP_CG"
        else
            why="cannot create a cgroup under $CAP_ROOT"
        fi
    fi
    if [[ -n $why ]]; then
        log "WARNING: skipping the cap-* scenarios: $why"
        unset 'WANT[cap-ka-c64]' 'WANT[cap-close]' 'WANT[cap-scaling]'
        pick_scenarios
        ((${#SCEN[@]})) || die "no scenario left to run"
    else
        log "cap-* scenarios: cgroup v$CAP_VER $CAP_CG, $CAP_QUOTA_US µs per $CAP_PERIOD_US µs per worker ($CAP_PCT %)"
    fi
fi

# Profiles need perf recording PROXY_CPU with kernel symbols.
if ((${#PROF_SCEN[@]})); then
    why=''
    if ! command -v perf >/dev/null 2>&1; then
        why="perf is not installed"
    elif ((EUID != 0)); then
        why="they need root (kernel samples and symbols of the whole CPU)"
    elif ! perf record -q -C "$PROXY_CPU" -o "$TMP/perf-check.data" -- sleep 0.1 >"$TMP/perf-check.log" 2>&1; then
        why="perf record -C $PROXY_CPU fails here: $(head -n 1 "$TMP/perf-check.log")"
    fi
    if [[ -n $why ]]; then
        log "WARNING: no profiles (PROFILE=${PROFILE}): $why"
        PROF_SCEN=()
    fi
fi

# File descriptors: 10k idle connections need ~10k in the proxy and in the
# client. Raise the soft limit to 65536, or to the hard limit if that is lower.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
if want memory && ((NOFILE < IDLE_CONNS + 1024)); then
    die "open-file limit $NOFILE is too low for IDLE_CONNS=$IDLE_CONNS (need $((IDLE_CONNS + 1024)); raise the hard limit or lower IDLE_CONNS)"
fi
WORKER_CONNS=$((IDLE_CONNS * 2 > 20000 ? IDLE_CONNS * 2 : 20000))
((WORKER_CONNS < NOFILE)) || WORKER_CONNS=$((NOFILE - 64))

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
for p in "$BACKEND_PORT" "$NGINX_PORT" "$HAPROXY_PORT" "$RINGRESS_PORT" "$RINGRESS2_PORT" "$FAST_PORT"; do
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
# Check that PATH through PORT returns 200 with SIZE body bytes.
check_body() {
    local name=$1 port=$2 path=$3 size=$4 got
    got=$(curl -fsS -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "http://$HOST:$port$path" 2>&1) ||
        die "$name: GET $path failed: $got"
    [[ $got == "200 $size" ]] || die "$name: GET $path returned '$got', expected '200 $size'"
}

NGINX_HAS_E=0 # -e (startup error log path) exists since nginx 1.19.5
nginx_help=$("$NGINX" -h 2>&1 || true)
[[ $nginx_help == *"-e filename"* ]] && NGINX_HAS_E=1

nginx_common() { # dir cpu
    local dir=$1 cpu=$2
    ((EUID == 0)) && echo "user root;"
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity $(cpu_mask "$cpu");
worker_rlimit_nofile $NOFILE;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections $WORKER_CONNS;
}
EOF
}
nginx_http_common() { # dir
    local dir=$1
    cat <<EOF
    access_log off;
    # Client keep-alive for as long as the load runs (the default would close
    # every 1000 requests and make wrk reconnect).
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
EOF
}
start_nginx() { # name dir cpu logfile [load: with the load side's scheduling]
    local name=$1 dir=$2 cpu=$3 logf=$4 pre=()
    [[ ${5:-} == load ]] && pre=(${LOAD_PREFIX[@]+"${LOAD_PREFIX[@]}"})
    local args=(-p "$dir" -c "$dir/nginx.conf")
    ((NGINX_HAS_E)) && args+=(-e "$dir/error.log")
    "$NGINX" -t "${args[@]}" >"$logf" 2>&1 || {
        cat "$logf" >&2
        die "$name: nginx -t failed"
    }
    taskset -c "$cpu" ${pre[@]+"${pre[@]}"} "$NGINX" "${args[@]}" >>"$logf" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# ---------------------------------------------------------------------------
# Backend: nginx, 1 worker, static files.
# ---------------------------------------------------------------------------
B=$TMP/backend
mkdir -p "$B/www"
printf '%-99s\n' "hello from backend" >"$B/www/hello.txt" # exactly 100 bytes
head -c 65536 /dev/zero | tr '\0' 'a' >"$B/www/64k.bin"
head -c 1048576 /dev/zero | tr '\0' 'b' >"$B/www/1m.bin"
{
    nginx_common "$B" "$BACKEND_CPU"
    cat <<EOF
http {
$(nginx_http_common "$B")
    default_type application/octet-stream;
    sendfile on;
    open_file_cache max=16;
    server {
        listen $HOST:$BACKEND_PORT backlog=4096;
        root $B/www;
        location = /64k { try_files /64k.bin =404; }
        location = /1m { try_files /1m.bin =404; }
        location / { try_files /hello.txt =404; }
    }
}
EOF
} >"$B/nginx.conf"
log "starting backend nginx on $HOST:$BACKEND_PORT (cpu $BACKEND_CPU)"
start_nginx backend "$B" "$BACKEND_CPU" "$B/stdout.log" load
BACKEND_PID=$LAST_PID
wait_http backend "$BACKEND_PORT" "$BACKEND_PID" "$B/error.log"

# The fast backend (fast-ka-c64): ringress answering every request itself
# with a fixed 100-byte body, two header fields, no file. The nginx backend
# and wrk together need more CPU per request than any proxy here, so on 2
# CPUs the load side limits every small-response scenario; with this one
# it delivered about 56,000 req/s against nginx's 35,000, more than any
# proxy managed on its CPU, so the proxy becomes the limit. The same
# backend for every proxy, on the backend's CPU and scheduling.
FB=$TMP/fast-backend
mkdir -p "$FB"
cat >"$FB/ringress.toml" <<EOF
[[listeners]]
name = "main"
bind = "$HOST:$FAST_PORT"

[[routes]]
respond = { status = 200, body = "$(printf '%-99s' 'hello from the fast backend')\n", content_type = "text/plain" }
EOF
log "starting the fast backend (ringress answering by itself) on $HOST:$FAST_PORT (cpu $BACKEND_CPU)"
taskset -c "$BACKEND_CPU" ${LOAD_PREFIX[@]+"${LOAD_PREFIX[@]}"} "$RINGRESS_BIN" --config "$FB/ringress.toml" --threads 1 >"$FB/ringress.log" 2>&1 &
FAST_PID=$!
PIDS+=("$FAST_PID")
wait_http fast-backend "$FAST_PORT" "$FAST_PID" "$FB/ringress.log"
check_body fast-backend "$FAST_PORT" /fast 100

# ---------------------------------------------------------------------------
# nginx reverse proxy: 1 worker, upstream keep-alive, default buffering.
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
    upstream fast {
        server $HOST:$FAST_PORT;
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
        location /fast {
            proxy_pass http://fast;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$N/nginx.conf"

# ---------------------------------------------------------------------------
# HAProxy: 1 thread, HTTP mode, server-side connection reuse.
# ---------------------------------------------------------------------------
H=$TMP/haproxy
mkdir -p "$H"
# HAProxy wants 2 x maxconn descriptors and, by default (strict-limits),
# refuses to start when it cannot raise the limit that far. Where the hard
# limit is lower (20000 on this project's machines), "no strict-limits" turns
# that into a warning: the memory scenario needs only ~IDLE_CONNS + IDLE_BATCH.
HAPROXY_LIMITS=
((NOFILE < 2 * WORKER_CONNS + 128)) && HAPROXY_LIMITS="no strict-limits"
cat >"$H/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $WORKER_CONNS
    pidfile $H/haproxy.pid
    ${HAPROXY_LIMITS}

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-request 30s
    timeout http-keep-alive 75s

frontend fe
    bind $HOST:$HAPROXY_PORT
    maxconn $WORKER_CONNS
    use_backend fast if { path_beg /fast }
    default_backend be

backend be
    server s1 $HOST:$BACKEND_PORT

backend fast
    server s1 $HOST:$FAST_PORT
EOF
"$HAPROXY" -c -f "$H/haproxy.cfg" >"$H/check.log" 2>&1 || {
    cat "$H/check.log" >&2
    die "haproxy -c failed"
}

# ---------------------------------------------------------------------------
# ringress: one worker (pinned to PROXY_CPU, the only CPU taskset allows).
# ---------------------------------------------------------------------------
ringress_config() { # port threads
    cat <<EOF
[runtime]
threads = $2

[[listeners]]
name = "main"
bind = "$HOST:$1"

[[routes]]
path_prefix = "/fast"
upstream = "fast"

[[routes]]
path_prefix = "/"
upstream = "backend"

[upstreams.backend]
servers = ["$HOST:$BACKEND_PORT"]

[upstreams.fast]
servers = ["$HOST:$FAST_PORT"]
EOF
}
R=$TMP/ringress
mkdir -p "$R"
ringress_config "$RINGRESS_PORT" 1 >"$R/ringress.toml"

PROXIES=(nginx haproxy ringress)
TARGETS=("${PROXIES[@]}")
((REFERENCE)) && TARGETS=(backend "${PROXIES[@]}")
declare -A PORT=([fast]=$FAST_PORT [backend]=$BACKEND_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [ringress]=$RINGRESS_PORT)
declare -A SPID=([backend]=$BACKEND_PID [fast]=$FAST_PID)
declare -A LABEL=([backend]="backend direct (reference)" [nginx]="nginx, 1 worker" [haproxy]="HAProxy, 1 thread"
    [ringress]="ringress, 1 worker" [ringress2]="ringress, 2 workers")

# start_proxy NAME: start one proxy (its config is written above), wait for
# it to answer and check the three bodies through it; sets SPID[NAME].
start_proxy() {
    local t=$1 pid
    log "starting $t on $HOST:${PORT[$t]} (cpu $PROXY_CPU)"
    case $t in
        nginx)
            start_nginx nginx-proxy "$N" "$PROXY_CPU" "$N/stdout.log"
            pid=$LAST_PID
            wait_http nginx-proxy "$NGINX_PORT" "$pid" "$N/error.log"
            ;;
        haproxy)
            # -db: foreground, no master process: one process, one thread.
            taskset -c "$PROXY_CPU" "$HAPROXY" -db -f "$H/haproxy.cfg" >>"$H/haproxy.log" 2>&1 &
            pid=$!
            PIDS+=("$pid")
            wait_http haproxy "$HAPROXY_PORT" "$pid" "$H/haproxy.log"
            ;;
        ringress)
            taskset -c "$PROXY_CPU" "$RINGRESS_BIN" --config "$R/ringress.toml" --threads 1 >>"$R/ringress.log" 2>&1 &
            pid=$!
            PIDS+=("$pid")
            wait_http ringress "$RINGRESS_PORT" "$pid" "$R/ringress.log"
            ;;
    esac
    SPID[$t]=$pid
    check_body "$t" "${PORT[$t]}" / 100
    check_body "$t" "${PORT[$t]}" /64k 65536
    check_body "$t" "${PORT[$t]}" /1m 1048576
    check_body "$t" "${PORT[$t]}" /fast 100
}
# stop_proxy NAME: stop it (bounded) and forget its PID.
stop_proxy() {
    local t=$1 i keep=()
    stop_pid "${SPID[$t]}"
    for i in "${PIDS[@]}"; do [[ $i == "${SPID[$t]}" ]] || keep+=("$i"); done
    PIDS=("${keep[@]}")
    unset 'SPID[$t]'
}
check_body backend "$BACKEND_PORT" / 100
check_body backend "$BACKEND_PORT" /64k 65536
check_body backend "$BACKEND_PORT" /1m 1048576
for t in "${PROXIES[@]}"; do start_proxy "$t"; done

# ---------------------------------------------------------------------------
# Measurement helpers.
# ---------------------------------------------------------------------------
# All PIDs of a server: the process and its children (nginx's worker).
server_pids() { echo "$1 $(pgrep -P "$1" 2>/dev/null | tr '\n' ' ')"; }
# Sum of VmRSS (KiB) over the given PIDs.
rss_kib() {
    local pid sum=0 v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
# CPU time (utime + stime, fields 14 and 15 of /proc/PID/stat, in clock
# ticks) summed over the given PIDs; a process's stat covers all its threads.
# The fields are counted after the last ")", since comm (field 2) may contain
# spaces. A PID that is gone counts 0.
proc_cpu_ticks() {
    local pid st sum=0 fld
    for pid in "$@"; do
        st=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        st=${st##*) }
        read -r -a fld <<<"$st" # fld[0] is field 3 (state): field n is fld[n-3]
        [[ ${fld[11]:-} =~ ^[0-9]+$ && ${fld[12]:-} =~ ^[0-9]+$ ]] || continue
        sum=$((sum + fld[11] + fld[12]))
    done
    echo "$sum"
}
# cpu_sample CPU -> "total idle" jiffies of that CPU; steal_sample -> "total steal"
cpu_sample() { awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6}' /proc/stat; }
steal_sample() { awk '$1 == "cpu" {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9}' /proc/stat; }
cpu_busy() { # "t0 i0" "t1 i1" -> busy percent between the samples
    awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); dt = y[1] - x[1]
        if (dt > 0) printf "%.0f", 100 * (dt - (y[2] - x[2])) / dt; else print "n/a"}'
}
steal_pct() {
    awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); dt = y[1] - x[1]
        if (dt > 0) printf "%.1f", 100 * (y[2] - x[2]) / dt; else print "n/a"}'
}
to_ms() { # "1.23ms" -> 1.23 ; handles us, ms, s, m, h
    awk -v v="$1" 'BEGIN {
        n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0 || n == "") { print "nan"; exit }
        printf "%.3f", n * f
    }'
}
to_mib() { # wrk's Transfer/sec "12.34MB" (1024-based units) -> MiB
    awk -v v="$1" 'BEGIN {
        n = v; sub(/[A-Za-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "B") ? 1 / 1048576 : (u == "KB") ? 1 / 1024 : (u == "MB") ? 1 : (u == "GB") ? 1024 : (u == "TB") ? 1048576 : -1
        if (f < 0 || n == "") { print "nan"; exit }
        printf "%.1f", n * f
    }'
}

# run_load TOOL OUT SECS PORT PATH CONNS CLOSE SPID
# Runs wrk or oha on WRK_CPU (or on LOAD_CPUS with WRK_THREADS threads, when
# set) in the background and waits for it (so Ctrl-C stops it at once). Sets CPU_BUSY_PROXY / CPU_BUSY_LOAD / CPU_BUSY_SCALE
# (busy % of those CPUs over the run, whatever ran on them), PROXY_TICKS (the
# server's own CPU time over the run, clock ticks, all its processes and
# threads; "nan" if a process went away), STEAL (machine-wide steal %), RSS0
# (server RSS before the run) and RSS_MID (server RSS half-way through).
CPU_BUSY_PROXY=n/a CPU_BUSY_LOAD=n/a CPU_BUSY_SCALE=n/a PROXY_TICKS=nan STEAL=n/a RSS0=0 RSS_MID=0
run_load() {
    local tool=$1 out=$2 secs=$3 port=$4 path=$5 conns=$6 close=$7 spid=$8 rc=0 p0 l0 s0 st0 pids k0 k1 pid
    local url="http://$HOST:$port$path" cmd
    read -r -a pids <<<"$(server_pids "$spid")"
    if [[ $tool == wrk ]]; then
        cmd=(wrk -t"${WRK_THREADS:-1}" -c"$conns" -d"${secs}s" --timeout 5s --latency)
        ((close)) && cmd+=(-H "Connection: close")
    else
        cmd=("$OHA_BIN" -z "${secs}s" -c "$conns" --no-tui "${OHA_ARGS[@]}")
        ((close)) && cmd+=(--disable-keepalive)
        # Latency from when each request was due, not from when it went out.
        [[ $tool == oha-rate ]] && cmd+=(-q "$LATENCY_RATE" --latency-correction)
    fi
    RSS0=$(rss_kib "${pids[@]}")
    p0=$(cpu_sample "$PROXY_CPU") l0=$(cpu_sample "$WRK_CPU") s0=$(cpu_sample "$SCALE_CPU") st0=$(steal_sample)
    k0=$(proc_cpu_ticks "${pids[@]}")
    taskset -c "${LOAD_CPUS:-$WRK_CPU}" ${LOAD_PREFIX[@]+"${LOAD_PREFIX[@]}"} "${cmd[@]}" "$url" >"$out" 2>"$out.err" &
    LOAD_PID=$!
    sleep "$(awk -v s="$secs" 'BEGIN {print s / 2}')"
    RSS_MID=$(rss_kib "${pids[@]}")
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=
    k1=$(proc_cpu_ticks "${pids[@]}")
    PROXY_TICKS=$((k1 - k0))
    for pid in "${pids[@]}"; do [[ -e /proc/$pid/stat ]] || PROXY_TICKS=nan; done
    if [[ $PROXY_TICKS != nan ]] && ((PROXY_TICKS < 0)); then PROXY_TICKS=nan; fi
    CPU_BUSY_PROXY=$(cpu_busy "$p0" "$(cpu_sample "$PROXY_CPU")")
    CPU_BUSY_LOAD=$(cpu_busy "$l0" "$(cpu_sample "$WRK_CPU")")
    CPU_BUSY_SCALE=$(cpu_busy "$s0" "$(cpu_sample "$SCALE_CPU")")
    STEAL=$(steal_pct "$st0" "$(steal_sample)")
    if ((rc != 0)); then
        cat "$out" "$out.err" >&2
        die "$tool against $url failed (exit $rc)"
    fi
    kill -0 "$spid" 2>/dev/null || die "server on $HOST:$port died during the run"
}

# parse OUTFILE -> "rps p99ms errors mib_per_s requests" (requests: completed
# in the run, wrk's "N requests in")
parse_wrk() {
    local f=$1 rps p99 errs tr nreq
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    nreq=$(awk '$2 == "requests" && $3 == "in" {print $1; exit}' "$f")
    p99=$(awk '$1 == "99%" {print $2}' "$f" | tail -n 1)
    tr=$(awk '/^Transfer\/sec:/ {print $2}' "$f")
    errs=$(awk '/Non-2xx or 3xx responses:/ {e += $NF}
               /Socket errors:/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) {x = $i; sub(/,/, "", x); e += x}}
               END {print e + 0}' "$f")
    [[ -n $rps && -n $p99 && -n $tr && $nreq =~ ^[0-9]+$ ]] || {
        cat "$f" >&2
        die "could not parse wrk output $f"
    }
    echo "$rps $(to_ms "$p99") $errs $(to_mib "$tr") $nreq"
}
# oha --json: summary.requestsPerSec, latencyPercentiles.p99 (seconds),
# statusCodeDistribution, errorDistribution. Requests cut off by the end of
# the run ("aborted due to deadline") are not errors. Requests completed = the
# responses counted in statusCodeDistribution (any status). Also prints p50,
# p90 and p99.9 (ms) after the five fields parse_wrk gives.
parse_oha() {
    python3 - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]
p99 = (d.get("latencyPercentiles") or {}).get("p99")
codes = d.get("statusCodeDistribution") or {}
ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
errs = sum(v for k, v in codes.items() if not str(k).startswith("2"))
nreq = sum(codes.values())
errs += sum(v for k, v in (d.get("errorDistribution") or {}).items() if "deadline" not in k)
mib = (s.get("sizePerSec") or 0) / 1048576
if not s.get("requestsPerSec") or p99 is None or ok == 0:
    sys.exit("oha output has no successful requests: " + json.dumps(s))
pct = d.get("latencyPercentiles") or {}
more = " ".join("%.3f" % (pct[k] * 1000) if pct.get(k) is not None else "nan" for k in ("p50", "p90", "p99.9"))
print("%.2f %.3f %d %.1f %d %s" % (s["requestsPerSec"], p99 * 1000, errs, mib, nreq, more))
EOF
}

CSV=$TMP/compare.csv
# Columns: proxy_cpu_us_per_req = the proxy's own CPU time over the run
# (proxy_cpu_s, utime + stime of all its processes) / requests completed;
# proxy_cpu_busy / load_cpu_busy = busy % of PROXY_CPU / WRK_CPU from
# /proc/stat, every process on that CPU counted.
echo "scenario,tool,conns,target,round,rps,p99_ms,mib_s,proxy_cpu_us_per_req,proxy_cpu_busy,load_cpu_busy,errors,rss_before_kib,rss_mid_kib,steal_pct,requests,proxy_cpu_s,p50_ms,p90_ms,p999_ms,throttled_pct" >"$CSV"
declare -A ALL_P50=() ALL_P90=() ALL_P999=()
declare -A ALL_RPS=() ALL_P99=() ALL_MIB=() ALL_CPR=() ALL_RSSD=() ALL_RSS=() ERRS=() BUSY=() THR=()
declare -A RPS_R=() CPR_R=() # per round: "SCEN|TARGET|ROUND" -> req/s, CPU µs/req
STEALS=""
MIN_NREQ= # fewest requests in a run with a CPU figure (for the resolution note)
# record SCEN TARGET ROUND TOOL CONNS "rps p99 errs mib requests [p50 p90 p99.9]"
# (cap-* scenarios: THROTTLED is the % of CFS periods the proxy was throttled)
record() {
    local s=$1 t=$2 r=$3 tool=$4 conns=$5 rps p99 errs mib nreq p50 p90 p999 cpr cpus k="$1|$2" rssd
    read -r rps p99 errs mib nreq p50 p90 p999 <<<"$6"
    cpr=$(awk -v k="$PROXY_TICKS" -v n="$nreq" -v hz="$CLK_TCK" 'BEGIN { if (k ~ /^[0-9]+$/ && n > 0) printf "%.2f", k * 1000000 / hz / n; else print "nan" }')
    cpus=$(awk -v k="$PROXY_TICKS" -v hz="$CLK_TCK" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.2f", k / hz }')
    if [[ $t == backend ]]; then # no proxy in the path
        cpr=nan cpus=
    elif [[ $cpr != nan ]]; then
        if [[ -z $MIN_NREQ ]] || ((nreq < MIN_NREQ)); then MIN_NREQ=$nreq; fi
    fi
    rssd=$(awk -v a="$RSS_MID" -v b="${IDLE0[$t]:-$RSS0}" -v c="$conns" 'BEGIN {printf "%.1f", (a - b) / c}')
    ALL_RPS[$k]="${ALL_RPS[$k]:-} $rps"
    RPS_R[$k|$r]=$rps CPR_R[$k|$r]=${cpr/nan/}
    ALL_P99[$k]="${ALL_P99[$k]:-} $p99"
    if [[ -n $p50 ]]; then
        ALL_P50[$k]="${ALL_P50[$k]:-} $p50"
        ALL_P90[$k]="${ALL_P90[$k]:-} $p90"
        ALL_P999[$k]="${ALL_P999[$k]:-} $p999"
    fi
    ALL_MIB[$k]="${ALL_MIB[$k]:-} $mib"
    [[ $cpr != nan ]] && ALL_CPR[$k]="${ALL_CPR[$k]:-} $cpr"
    ALL_RSS[$k]="${ALL_RSS[$k]:-} $RSS_MID"
    ALL_RSSD[$k]="${ALL_RSSD[$k]:-} $rssd"
    ERRS[$k]=$((${ERRS[$k]:-0} + errs))
    BUSY[$k]="${BUSY[$k]:+${BUSY[$k]} }$CPU_BUSY_PROXY/$CPU_BUSY_LOAD"
    local thr=
    [[ $s == cap-* ]] && thr=$THROTTLED && THR[$k]="${THR[$k]:+${THR[$k]} }$thr"
    STEALS="$STEALS $STEAL"
    echo "$s,$tool,$conns,$t,$r,$rps,$p99,$mib,$cpr,$CPU_BUSY_PROXY,$CPU_BUSY_LOAD,$errs,$RSS0,$RSS_MID,$STEAL,$nreq,$cpus,${p50:-},${p90:-},${p999:-},$thr" >>"$CSV"
    log "$(printf 'round %d %-8s %-9s %10s req/s  p99 %8s ms  %7s MiB/s  err %s  proxy cpu %s µs/req  cpu busy proxy %s%% load %s%%  steal %s%%  rss %s KiB' \
        "$r" "$s" "$t" "$rps" "$p99" "$mib" "$errs" "$cpr" "$CPU_BUSY_PROXY" "$CPU_BUSY_LOAD" "$STEAL" "$RSS_MID")"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "") printf "%.2f", a / b; else print "n/a" }'; }
median() { # of a space-separated list
    tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g |
        awk '{v[NR] = $1} END {if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a != "" && b != "" && a + 0 >= b + 0)}'; }

# ---------------------------------------------------------------------------
# Scenario: memory with IDLE_CONNS idle keep-alive connections (first, on
# processes that have served only the start-up checks).
# ---------------------------------------------------------------------------
declare -A MEM_BASE=() MEM_LOADED=() MEM_PER=() MEM_HELD=() MEM_CLOSED=() MEM_ESTAB=()
if want memory; then
    log "memory: $IDLE_CONNS idle keep-alive connections per proxy, $IDLE_BATCH at a time"
    for t in "${PROXIES[@]}"; do
        read -r -a pids <<<"$(server_pids "${SPID[$t]}")"
        sleep 1
        MEM_BASE[$t]=$(rss_kib "${pids[@]}")
        ready=$TMP/idle-$t.ready out=$TMP/idle-$t.out
        taskset -c "$WRK_CPU" ${LOAD_PREFIX[@]+"${LOAD_PREFIX[@]}"} python3 "$SCRIPT_DIR/idle_conns.py" "$HOST" "${PORT[$t]}" "$IDLE_CONNS" "$ready" \
            --batch "$IDLE_BATCH" --open-timeout 90 --hold-max 60 >"$out" 2>&1 &
        LOAD_PID=$!
        for ((i = 0; i < 1000; i++)); do # 1000 x 0.1 s = 100 s (open timeout is 90 s)
            [[ -e $ready ]] && break
            kill -0 "$LOAD_PID" 2>/dev/null || break
            kill -0 "${SPID[$t]}" 2>/dev/null || die "$t died while connections were being opened"
            sleep 0.1
        done
        if [[ ! -e $ready ]]; then
            stop_pid "$LOAD_PID"
            LOAD_PID=
            cat "$out" >&2
            die "memory: idle_conns.py could not open $IDLE_CONNS connections to $t"
        fi
        sleep 3 # let the proxy settle
        MEM_LOADED[$t]=$(rss_kib "${pids[@]}")
        MEM_ESTAB[$t]=$(ss -Htn state established "( sport = :${PORT[$t]} )" 2>/dev/null | wc -l)
        kill -USR1 "$LOAD_PID" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do # up to 10 s to close them
            kill -0 "$LOAD_PID" 2>/dev/null || break
            sleep 0.1
        done
        stop_pid "$LOAD_PID"
        LOAD_PID=
        read -r _ held _ closed < <(grep '^held ' "$out" || echo "held 0 closed_by_server 0")
        MEM_HELD[$t]=$held MEM_CLOSED[$t]=$closed
        MEM_PER[$t]=$(awk -v a="${MEM_LOADED[$t]}" -v b="${MEM_BASE[$t]}" -v n="$IDLE_CONNS" 'BEGIN {printf "%.2f", (a - b) / n}')
        log "$(printf 'memory %-9s baseline %7d KiB, with %d idle conns %7d KiB (%s KiB/conn); established %s, closed by server %s' \
            "$t" "${MEM_BASE[$t]}" "$IDLE_CONNS" "${MEM_LOADED[$t]}" "${MEM_PER[$t]}" "${MEM_ESTAB[$t]}" "$closed")"
        echo "memory,idle_conns.py,$IDLE_CONNS,$t,1,,,,,,,,${MEM_BASE[$t]},${MEM_LOADED[$t]},,,,,,," >>"$CSV"
        kill -0 "${SPID[$t]}" 2>/dev/null || die "$t died during the memory scenario"
    done
    if ((${#LOAD_SCEN[@]})) || want scaling || want cap-scaling; then
        log "memory: restarting the proxies, so the load scenarios start from fresh processes"
        for t in "${PROXIES[@]}"; do
            stop_proxy "$t"
            start_proxy "$t"
        done
    fi
fi
# RSS of each proxy right after (re)start, for the per-connection figure of
# the load scenarios.
declare -A IDLE0=()
sleep 1
for t in "${PROXIES[@]}"; do
    read -r -a pids <<<"$(server_pids "${SPID[$t]}")"
    IDLE0[$t]=$(rss_kib "${pids[@]}")
done

# ---------------------------------------------------------------------------
# Throughput scenarios: warm-up, then alternating rounds.
# ---------------------------------------------------------------------------
scen_close() { [[ $1 == close || $1 == cap-close ]] && echo 1 || echo 0; }
# skip_target SCEN TARGET: the backend-direct row has no proxy to cap.
skip_target() { [[ $1 == cap-* && $2 == backend ]]; }
# server SCEN TARGET: who serves the run; the backend-direct row of
# fast-ka-c64 is the fast backend.
server() { if [[ $1 == fast-* && $2 == backend ]]; then echo fast; else echo "$2"; fi; }
# parse_run SCEN OUTFILE: parse_wrk's or parse_oha's fields, by the
# scenario's tool.
parse_run() {
    if [[ ${S_TOOL[$1]} == wrk ]]; then
        parse_wrk "$2"
    else
        parse_oha "$2" || die "could not parse oha output $2"
    fi
}
# run_target SCEN TARGET OUT SECS: one run of a load scenario against one
# target, under the CPU cap for cap-* scenarios.
run_target() {
    local s=$1 t=$2 sv
    sv=$(server "$s" "$t")
    if [[ $s == cap-* ]]; then cap_on "$CAP_QUOTA_US" "${SPID[$t]}"; fi
    run_load "${S_TOOL[$s]}" "$3" "$4" "${PORT[$sv]}" "${S_PATH[$s]}" "${S_CONNS[$s]}" \
        "$(scen_close "$s")" "${SPID[$sv]}"
    if [[ $s == cap-* ]]; then cap_off "${SPID[$t]}"; fi
}
if ((${#LOAD_SCEN[@]})); then
    if ((WARMUP > 0)); then
        for s in "${LOAD_SCEN[@]}"; do
            for t in "${TARGETS[@]}"; do
                skip_target "$s" "$t" && continue
                log "warm-up: $s $t, ${WARMUP}s"
                run_target "$s" "$t" "$TMP/warmup-$s-$t.txt" "$WARMUP"
            done
        done
    fi
    log "measuring: ${LOAD_SCEN[*]}; ${DURATION}s per run, $ROUNDS round(s), targets ${TARGETS[*]}"
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in "${LOAD_SCEN[@]}"; do
            # Rotate over this scenario's own targets, so every one of them
            # goes first in turn.
            st=()
            for t in "${TARGETS[@]}"; do skip_target "$s" "$t" || st+=("$t"); done
            nt=${#st[@]}
            for ((j = 0; j < nt; j++)); do
                t=${st[$(((j + r - 1) % nt))]}
                f=$TMP/$s-r$r-$t.txt
                run_target "$s" "$t" "$f" "$DURATION"
                res=$(parse_run "$s" "$f")
                record "$s" "$t" "$r" "${S_TOOL[$s]}" "${S_CONNS[$s]}" "$res"
            done
        done
    done
fi

# ---------------------------------------------------------------------------
# Profiles: one more run per proxy of each PROF_SCEN scenario, with perf
# recording every sample on PROXY_CPU (cpu-clock: idle time is sampled too)
# over about the middle half of the run; cpu_split.py turns the samples into
# µs per request by class of work, with the run's req/s. perf itself runs
# on the load CPU, so that it takes nothing from the proxy's.
# ---------------------------------------------------------------------------
declare -A SPLIT=() # scenario -> cpu_split.py's markdown
for s in ${PROF_SCEN[@]+"${PROF_SCEN[@]}"}; do
    split_args=()
    for t in "${PROXIES[@]}"; do
        f=$TMP/profile-$s-$t
        log "profile: $s $t, perf on CPU $PROXY_CPU"
        (sleep "$(awk -v d="$DURATION" 'BEGIN {print d / 4}')" &&
            exec taskset -c "$WRK_CPU" perf record -q -C "$PROXY_CPU" -o "$f.data" -- sleep "$(awk -v d="$DURATION" 'BEGIN {print d / 2}')") >"$f.log" 2>&1 &
        PERF_PID=$!
        run_target "$s" "$t" "$f.txt" "$DURATION"
        wait "$PERF_PID" || die "perf record failed: $(head -n 3 "$f.log")"
        PERF_PID=
        res=$(parse_run "$s" "$f.txt")
        perf report -i "$f.data" --stdio -q -n --sort comm,dso,sym -g none -t '|' --percent-limit 0 >"$f.report" 2>"$f.log" ||
            die "perf report failed: $(head -n 3 "$f.log")"
        split_args+=("$t=$f.report:${res%% *}")
    done
    SPLIT[$s]=$(python3 "$SCRIPT_DIR/cpu_split.py" "${S_TITLE[$s]%%,*}" "${split_args[@]}") || die "cpu_split.py failed on $s"
done

# ---------------------------------------------------------------------------
# Scenario: scaling, ringress 2 workers vs 1 worker.
# ---------------------------------------------------------------------------
RINGRESS2_PID=
declare -A SC_BUSY2=()
# The capped run's load generator: wrk with a thread per CPU, on every CPU
# the 2-worker run uses plus the load CPU (the cap leaves room on them).
CAP_LOAD_CPUS=$(printf '%s\n' "$PROXY_CPU" "$SCALE_CPU" "$WRK_CPU" | sort -un | paste -sd, -)
CAP_WRK_THREADS=$(tr ',' '\n' <<<"$CAP_LOAD_CPUS" | wc -l)
# run_scaling SCEN: ringress 1 worker vs 2 workers, alternating; for
# cap-scaling 1 worker is held to CAP_QUOTA_US and 2 workers to twice that.
run_scaling() {
    local s=$1 r j t f q res conns=256
    local -a SC=(ringress ringress2)
    if [[ $s == cap-scaling ]]; then
        LOAD_CPUS=$CAP_LOAD_CPUS WRK_THREADS=$CAP_WRK_THREADS
    fi
    for ((r = 0; r <= ROUNDS; r++)); do # round 0: warm-up
        ((r == 0 && WARMUP == 0)) && continue
        for ((j = 0; j < 2; j++)); do
            t=${SC[$(((j + r + 1) % 2))]}
            q=$CAP_QUOTA_US
            [[ $t == ringress2 ]] && q=$((2 * CAP_QUOTA_US))
            if [[ $s == cap-scaling ]]; then cap_on "$q" "${SPID[$t]}"; fi
            if ((r == 0)); then
                run_load wrk "$TMP/warmup-$s-$t.txt" "$WARMUP" "${PORT[$t]}" / $conns 0 "${SPID[$t]}"
            else
                f=$TMP/$s-r$r-$t.txt
                run_load wrk "$f" "$DURATION" "${PORT[$t]}" / $conns 0 "${SPID[$t]}"
            fi
            if [[ $s == cap-scaling ]]; then cap_off "${SPID[$t]}"; fi
            if ((r > 0)); then
                res=$(parse_wrk "$f")
                record "$s" "$t" "$r" wrk $conns "$res"
                SC_BUSY2[$s|$t]="${SC_BUSY2[$s|$t]:+${SC_BUSY2[$s|$t]} }$CPU_BUSY_PROXY/$CPU_BUSY_SCALE"
            fi
        done
    done
    LOAD_CPUS='' WRK_THREADS=''
}
if want scaling || want cap-scaling; then
    R2=$TMP/ringress2
    mkdir -p "$R2"
    ringress_config "$RINGRESS2_PORT" 2 >"$R2/ringress.toml"
    log "scaling: starting ringress with 2 workers on $HOST:$RINGRESS2_PORT (cpus $PROXY_CPU,$SCALE_CPU)"
    taskset -c "$PROXY_CPU,$SCALE_CPU" "$RINGRESS_BIN" --config "$R2/ringress.toml" --threads 2 >"$R2/ringress.log" 2>&1 &
    RINGRESS2_PID=$!
    PIDS+=("$RINGRESS2_PID")
    wait_http ringress2 "$RINGRESS2_PORT" "$RINGRESS2_PID" "$R2/ringress.log"
    PORT[ringress2]=$RINGRESS2_PORT
    SPID[ringress2]=$RINGRESS2_PID
    if want scaling; then run_scaling scaling; fi
    if want cap-scaling; then run_scaling cap-scaling; fi
    stop_pid "$RINGRESS2_PID"
fi

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
MD=$TMP/compare.md
declare -A MED_RPS=() MED_P99=() MED_MIB=() MED_CPR=()
for k in "${!ALL_RPS[@]}"; do
    MED_RPS[$k]=$(median "${ALL_RPS[$k]}")
    MED_P99[$k]=$(median "${ALL_P99[$k]}")
    MED_MIB[$k]=$(median "${ALL_MIB[$k]}")
    MED_CPR[$k]=$(median "${ALL_CPR[$k]:-}")
done
fmt0() { [[ -n $1 ]] && printf '%.0f' "$1" || printf 'n/a'; }
fmt2() { [[ -n $1 ]] && printf '%.2f' "$1" || printf 'n/a'; }
git_rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(git -C "$REPO_ROOT" status --porcelain -- src Cargo.toml 2>/dev/null | head -c1)
oha_ver=
[[ -n $OHA_BIN ]] && oha_ver=", $("$OHA_BIN" --version 2>/dev/null | head -n1)"
max_steal=$(tr ' ' '\n' <<<"$STEALS" | sed '/^$/d;/n\/a/d' | sort -g | tail -n1)

{
    echo "# ringress vs nginx vs HAProxy — headline comparison"
    echo
    echo "Generated by \`bench-scripts/compare.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), ringress ${git_rev}${git_dirty:+ (with uncommitted src changes)}."
    echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)."
    echo "Versions: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), HAProxy $("$HAPROXY" -v 2>/dev/null | awk 'NR == 1 {print $3}'), $(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2}')${oha_ver}."
    echo "Load-side scheduling: LOAD_SCHED=$LOAD_SCHED$([[ $LOAD_SCHED == batch ]] && echo " (backend and load generator under SCHED_BATCH, so that neither preempts the other when woken; see the comment in compare.sh)")."
    echo "Settings: DURATION=${DURATION}s per run, WARMUP=${WARMUP}s per target and scenario, ROUNDS=$ROUNDS (targets alternate, each round starting one later); numbers are medians over the rounds."
    echo "CPUs: each proxy's one worker on CPU $PROXY_CPU; backend nginx on CPU $BACKEND_CPU; load generator on CPU $WRK_CPU."
    echo "Backend: nginx, 1 worker, static files. Proxies: nginx (upstream keepalive 1024, default proxy buffering), HAProxy (nbthread 1, http-reuse always), ringress (--threads 1, default config)."
    echo "proxy CPU µs/req = the proxy's own CPU time (utime + stime from /proc/PID/stat, summed over its processes and all their threads: nginx master + worker, HAProxy's one process, ringress's one process) between just before and just after the measured run, divided by the requests completed in that run (wrk's \"N requests in\", oha's status-code counts); median over the rounds. Lower is better; it is the fair efficiency measure when the load side limits req/s, and other processes on CPU $PROXY_CPU do not count in it. Resolution: one clock tick = $(awk -v hz="$CLK_TCK" 'BEGIN {printf "%g", 1000 / hz}') ms of CPU (CLK_TCK $CLK_TCK), i.e. ±$(awk -v hz="$CLK_TCK" -v n="${MIN_NREQ:-0}" 'BEGIN {if (n > 0) printf "%.3f", 1000000 / hz / n; else print "n/a"}') µs/req at most in these runs (fewest requests in a run: ${MIN_NREQ:-n/a})."
    echo "CPU busy % per round (proxy/load) = busy share of the whole CPU $PROXY_CPU / CPU $WRK_CPU from /proc/stat over each run, every process on that CPU counted (other jobs on the machine too) and interrupt/softirq time: it shows saturation, not the proxy's cost. Kernel network work done in softirq context may be charged to /proc/stat's softirq column rather than to the proxy process (it depends on the kernel's IRQ time accounting), so it is in the busy % but not necessarily in proxy CPU µs/req."
    echo "RSS = VmRSS summed over the proxy's processes (nginx: master + worker), sampled half-way through each run; Δ KiB/conn = (that − the proxy's RSS right after it started) / connections, so it includes whatever the proxy kept from earlier runs."
    echo "Max steal time over the runs: ${max_steal:-n/a} %."
    echo
    for s in "${LOAD_SCEN[@]}"; do
        body=0
        [[ $s == body-* ]] && body=1
        echo "## ${S_TITLE[$s]}"
        echo
        if [[ $s == fast-* ]]; then
            echo "Every proxy forwards /fast to a second backend, ringress answering by itself with a fixed 100-byte body (two header fields, no file), on CPU $BACKEND_CPU like the nginx backend; the backend-direct row is wrk against it. The load side then delivers more than any proxy can forward on its one CPU, so the proxy limits req/s: check that the proxy's CPU is near 100 % busy and its req/s below the backend-direct row's."
            echo
        fi
        if [[ $s == cap-* ]]; then
            echo "Each proxy's processes are held to $CAP_QUOTA_US µs of CPU per $CAP_PERIOD_US µs ($CAP_PCT % of one CPU) by a cgroup v$CAP_VER CPU quota, so the proxy, not the load side, limits req/s: req/s here is what each proxy does with the same CPU budget. Kernel work done in softirq context is not charged to the quota (the same packets for every proxy). p99 is mostly the cap's doing (a proxy that has used its quota waits for the next period) and is not a latency figure. Periods throttled (% per round) should be near 100: below that the proxy was not the limit."
            echo
        fi
        if [[ $s == latency ]]; then
            echo "oha -c64 -q $LATENCY_RATE --latency-correction: requests are due at a steady $LATENCY_RATE per second and each one's latency counts from when it was due, so a stall shows however many requests it holds up. At this rate no proxy here is at its limit: the percentiles are the time a request takes, not a queue."
            echo
            echo "| proxy | req/s achieved | p50 ms | p90 ms | p99 ms | p99.9 ms | p99 vs nginx | p99 vs HAProxy | p50 vs nginx | proxy CPU µs/req | CPU µs/req vs nginx | errors | CPU $PROXY_CPU / CPU $WRK_CPU busy % per round (all processes) |"
            echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
            for t in "${TARGETS[@]}"; do
                k="$s|$t" kn="$s|nginx" kh="$s|haproxy"
                cpr=$(fmt2 "${MED_CPR[$k]:-}") cprr=$(ratio "${MED_CPR[$k]:-}" "${MED_CPR[$kn]:-}")
                [[ $t == backend ]] && cpr="–" cprr="–"
                printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" \
                    "$(fmt0 "${MED_RPS[$k]}")" "$(fmt2 "$(median "${ALL_P50[$k]:-}")")" "$(fmt2 "$(median "${ALL_P90[$k]:-}")")" \
                    "$(fmt2 "${MED_P99[$k]}")" "$(fmt2 "$(median "${ALL_P999[$k]:-}")")" \
                    "$(ratio "${MED_P99[$k]}" "${MED_P99[$kn]}")" "$(ratio "${MED_P99[$k]}" "${MED_P99[$kh]}")" \
                    "$(ratio "$(median "${ALL_P50[$k]:-}")" "$(median "${ALL_P50[$kn]:-}")")" \
                    "$cpr" "$cprr" "${ERRS[$k]}" "${BUSY[$k]}"
            done
            echo
            continue
        fi
        if ((body)); then
            echo "| proxy | MiB/s | req/s | p99 ms | MiB/s vs nginx | MiB/s vs HAProxy | p99 vs nginx | proxy CPU µs/req | CPU µs/req vs nginx | CPU µs/req vs HAProxy | RSS MiB under load | Δ KiB/conn | errors | CPU $PROXY_CPU / CPU $WRK_CPU busy % per round (all processes) |"
            echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        else
            echo "| proxy | req/s | p99 ms | req/s vs nginx | req/s vs HAProxy | p99 vs nginx | p99 vs HAProxy | proxy CPU µs/req | CPU µs/req vs nginx | CPU µs/req vs HAProxy | RSS MiB under load | errors | CPU $PROXY_CPU / CPU $WRK_CPU busy % per round (all processes) |"
            echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        fi
        for t in "${TARGETS[@]}"; do
            skip_target "$s" "$t" && continue
            k="$s|$t" kn="$s|nginx" kh="$s|haproxy"
            cpr=$(fmt2 "${MED_CPR[$k]:-}") rss="–" rssd="–"
            cprr=$(ratio "${MED_CPR[$k]:-}" "${MED_CPR[$kn]:-}") cprh=$(ratio "${MED_CPR[$k]:-}" "${MED_CPR[$kh]:-}")
            if [[ $t == backend ]]; then
                cpr="–" cprr="–" cprh="–"
            else
                rss=$(awk -v v="$(median "${ALL_RSS[$k]}")" 'BEGIN {printf "%.1f", v / 1024}')
                rssd=$(fmt2 "$(median "${ALL_RSSD[$k]}")")
            fi
            if ((body)); then
                printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" \
                    "$(fmt0 "${MED_MIB[$k]}")" "$(fmt0 "${MED_RPS[$k]}")" "$(fmt2 "${MED_P99[$k]}")" \
                    "$(ratio "${MED_MIB[$k]}" "${MED_MIB[$kn]}")" "$(ratio "${MED_MIB[$k]}" "${MED_MIB[$kh]}")" \
                    "$(ratio "${MED_P99[$k]}" "${MED_P99[$kn]}")" "$cpr" "$cprr" "$cprh" "$rss" "$rssd" "${ERRS[$k]}" "${BUSY[$k]}"
            else
                printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" \
                    "$(fmt0 "${MED_RPS[$k]}")" "$(fmt2 "${MED_P99[$k]}")" \
                    "$(ratio "${MED_RPS[$k]}" "${MED_RPS[$kn]}")" "$(ratio "${MED_RPS[$k]}" "${MED_RPS[$kh]}")" \
                    "$(ratio "${MED_P99[$k]}" "${MED_P99[$kn]}")" "$(ratio "${MED_P99[$k]}" "${MED_P99[$kh]}")" \
                    "$cpr" "$cprr" "$cprh" \
                    "$rss" "${ERRS[$k]}" "${BUSY[$k]}"
            fi
        done
        echo
        # Rounds are alternated, so the two proxies of one round ran
        # seconds apart: their ratio shows how much of the spread between
        # runs is the machine rather than the proxy.
        pr_rps='' pr_cpr=''
        for ((r = 1; r <= ROUNDS; r++)); do
            pr_rps+=" $(ratio "${RPS_R[$s|ringress|$r]:-}" "${RPS_R[$s|nginx|$r]:-}")"
            pr_cpr+=" $(ratio "${CPR_R[$s|ringress|$r]:-}" "${CPR_R[$s|nginx|$r]:-}")"
        done
        echo "ringress / nginx in each round: req/s${pr_rps}; proxy CPU µs/req${pr_cpr}."
        echo
        if [[ $s == cap-* ]]; then
            for t in "${PROXIES[@]}"; do
                printf -- '- %s: periods throttled %s %%\n' "${LABEL[$t]}" "${THR[$s|$t]:-n/a}"
            done
            echo
        fi
        if [[ $s == body-* ]]; then
            tmpw=$(grep -c 'buffered to a temporary file' "$N/error.log" 2>/dev/null || true)
            echo "MiB/s is wrk's Transfer/sec (1024-based, headers included). nginx error-log lines \"buffered to a temporary file\" so far: ${tmpw:-0}."
            echo
        fi
    done

    if ((${#PROF_SCEN[@]})); then
        echo "## Where each proxy's CPU goes (perf)"
        echo
        echo "One more run per proxy after the measured rounds, with the same settings, and \`perf record -C $PROXY_CPU\` (cpu-clock, which samples idle time too) over its middle half. \`cpu_split.py\` sorts the samples of the proxy's processes by kernel function name into: TCP/IP (including the loopback delivery to the peer, which on 127.0.0.1 the sender pays for); the event interface (io_uring or epoll); syscall entry and fd lookup; scheduling, wake-ups and interrupts; kernel memory management; the rest of the kernel; and the proxy's own user space (libraries and vDSO included). Each is given as µs per request (its share of the CPU ÷ req/s). Softirq work on the proxy's CPU counts here, unlike in proxy CPU µs/req above. Sorting by name is a heuristic, applied the same way to every proxy."
        echo
        for s in ${PROF_SCEN[@]+"${PROF_SCEN[@]}"}; do
            echo "${SPLIT[$s]}"
            echo
        done
    fi

    if want memory; then
        echo "## Memory: $IDLE_CONNS idle keep-alive client connections"
        echo
        echo "idle_conns.py opens $IDLE_CONNS connections, $IDLE_BATCH at a time, sends one GET / on each and reads the response, then holds them all idle; RSS is sampled 3 s later. Measured first, on fresh processes. Limits: nginx worker_connections $WORKER_CONNS, worker_rlimit_nofile $NOFILE; HAProxy maxconn $WORKER_CONNS${HAPROXY_LIMITS:+ with \`$HAPROXY_LIMITS\` (the hard open-file limit here is below the 2 × maxconn HAProxy asks for)}; open-file limit $NOFILE."
        echo
        echo "| proxy | idle RSS KiB | RSS KiB with $IDLE_CONNS conns | KiB per connection | vs nginx | vs HAProxy | established at sample time | closed by proxy while idle |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|"
        for t in "${PROXIES[@]}"; do
            printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "${MEM_BASE[$t]}" "${MEM_LOADED[$t]}" \
                "${MEM_PER[$t]}" "$(ratio "${MEM_PER[$t]}" "${MEM_PER[nginx]}")" "$(ratio "${MEM_PER[$t]}" "${MEM_PER[haproxy]}")" \
                "${MEM_ESTAB[$t]}" "${MEM_CLOSED[$t]}"
        done
        echo
    fi

    declare -A SCALE_RATIO=() SCALE_CPR=()
    for s in scaling cap-scaling; do
        want "$s" || continue
        k1="$s|ringress" k2="$s|ringress2"
        SCALE_RATIO[$s]=$(ratio "${MED_RPS[$k2]}" "${MED_RPS[$k1]}")
        SCALE_CPR[$s]=$(ratio "${MED_CPR[$k2]:-}" "${MED_CPR[$k1]:-}")
        if [[ $s == scaling ]]; then
            echo "## Scaling: ringress 2 workers vs 1 worker"
            echo
            echo "wrk -t1 -c256 on CPU $WRK_CPU, keep-alive, GET /. 1 worker on CPU $PROXY_CPU; 2 workers on CPUs $PROXY_CPU and $SCALE_CPU (worker i pinned to the i-th allowed CPU)."
        else
            echo "## Scaling per CPU budget: ringress 2 workers held to 2 × $CAP_PCT % vs 1 worker held to $CAP_PCT %"
            echo
            echo "wrk -t$CAP_WRK_THREADS -c256 on CPUs $CAP_LOAD_CPUS, keep-alive, GET /. 1 worker on CPU $PROXY_CPU with $CAP_QUOTA_US µs of CPU per $CAP_PERIOD_US µs; 2 workers on CPUs $PROXY_CPU and $SCALE_CPU with $((2 * CAP_QUOTA_US)) µs per $CAP_PERIOD_US µs between them (cgroup v$CAP_VER CPU quota). The two workers together get twice one worker's budget and the load side has the rest of every CPU, so the ratio shows whether a second worker adds its share of requests. The kernel hands quota to each CPU in slices ($(cat /proc/sys/kernel/sched_cfs_bandwidth_slice_us 2>/dev/null || echo '?') µs here), so within a period the split between the two workers can be uneven; that never gives them more CPU in total, and a worker left without quota while the other has some to spare can only lower the 2-worker figure. p99 is mostly the cap's doing. Periods throttled per round: 1 worker ${THR[$k1]:-n/a} %, 2 workers ${THR[$k2]:-n/a} % (near 100: the cap was the limit)."
        fi
        echo
        echo "| ringress | req/s | p99 ms | proxy CPU µs/req (all workers) | CPU $PROXY_CPU / CPU $SCALE_CPU busy % per round (all processes) |"
        echo "|---|---:|---:|---:|---|"
        printf '| 1 worker | %s | %s | %s | %s |\n' "$(fmt0 "${MED_RPS[$k1]}")" "$(fmt2 "${MED_P99[$k1]}")" "$(fmt2 "${MED_CPR[$k1]:-}")" "${SC_BUSY2[$k1]:-}"
        printf '| 2 workers | %s | %s | %s | %s |\n' "$(fmt0 "${MED_RPS[$k2]}")" "$(fmt2 "${MED_P99[$k2]}")" "$(fmt2 "${MED_CPR[$k2]:-}")" "${SC_BUSY2[$k2]:-}"
        echo
        echo "Scaling: 2 workers / 1 worker = **${SCALE_RATIO[$s]}×** req/s; proxy CPU µs/req of 2 workers (both counted) / 1 worker = ${SCALE_CPR[$s]}×."
        if [[ $s == scaling ]] && ((SCALE_SHARED)); then
            echo "This number is **not meaningful** on this machine: with $(nproc) CPUs there is no free core for the second worker, which shares CPU $SCALE_CPU with wrk and the backend nginx; adding a worker takes CPU away from the load side. It needs at least 4 CPUs (2 for ringress, 1 each for the backend and wrk) to measure the target$(want cap-scaling && echo "; the capped run below measures it with a CPU budget per worker instead")."
        fi
        echo
    done

    echo "## Verdicts against the issue's targets"
    echo
    # keep-alive targets: >= 1.5x nginx and HAProxy req/s, p99 <= theirs, no errors
    for s in ka-c64 ka-c256 fast-ka-c64 oha-c64; do
        want "$s" || continue
        kr="$s|ringress" kn="$s|nginx" kh="$s|haproxy" kb="$s|backend"
        rn=$(ratio "${MED_RPS[$kr]}" "${MED_RPS[$kn]}") rh=$(ratio "${MED_RPS[$kr]}" "${MED_RPS[$kh]}")
        pn=$(ratio "${MED_P99[$kr]}" "${MED_P99[$kn]}") ph=$(ratio "${MED_P99[$kr]}" "${MED_P99[$kh]}")
        cn=$(ratio "${MED_CPR[$kr]:-}" "${MED_CPR[$kn]:-}") ch=$(ratio "${MED_CPR[$kr]:-}" "${MED_CPR[$kh]:-}")
        met=1
        ge "$rn" 1.5 || met=0
        ge "$rh" 1.5 || met=0
        ge 1 "$pn" || met=0
        ge 1 "$ph" || met=0
        ((${ERRS[$kr]} == 0)) || met=0
        line="- **${S_TITLE[$s]}** — target ≥ 1.5× nginx and HAProxy req/s with p99 ≤ theirs: "
        if ((met)); then line+="**MET**"; else line+="**NOT MET**"; fi
        line+=" (req/s ${rn}× nginx, ${rh}× HAProxy; p99 ${pn}× nginx, ${ph}× HAProxy; errors ${ERRS[$kr]}; proxy CPU µs/req ${cn}× nginx, ${ch}× HAProxy)."
        if [[ -n ${MED_RPS[$kb]:-} ]]; then
            best=${MED_RPS[$kn]}
            ge "${MED_RPS[$kh]}" "$best" && best=${MED_RPS[$kh]}
            need=$(awk -v b="$best" 'BEGIN {printf "%.0f", 1.5 * b}')
            if ge "$need" "${MED_RPS[$kb]}"; then
                line+=" Note: 1.5× the better of nginx/HAProxy is $need req/s, above what the load side delivered with no proxy at all ($(fmt0 "${MED_RPS[$kb]}") req/s, backend direct), so the req/s part is most likely out of reach on this machine whatever the proxy; the proxy CPU µs/req ratio is the comparison that still means something."
            fi
        fi
        echo "$line"
    done
    if want latency; then
        kr="latency|ringress" kn="latency|nginx" kh="latency|haproxy"
        pn=$(ratio "${MED_P99[$kr]}" "${MED_P99[$kn]}") ph=$(ratio "${MED_P99[$kr]}" "${MED_P99[$kh]}")
        met=1
        ge 1 "$pn" || met=0
        ge 1 "$ph" || met=0
        ge "${MED_RPS[$kr]}" "$(awk -v q="$LATENCY_RATE" 'BEGIN {print 0.97 * q}')" || met=0
        ((${ERRS[$kr]} == 0)) || met=0
        line="- **Latency at a fixed $LATENCY_RATE req/s** — p99 ≤ nginx's and HAProxy's: "
        if ((met)); then line+="**MET**"; else line+="**NOT MET**"; fi
        echo "$line (p99 ${pn}× nginx, ${ph}× HAProxy; p50 $(ratio "$(median "${ALL_P50[$kr]:-}")" "$(median "${ALL_P50[$kn]:-}")")× nginx; $(fmt0 "${MED_RPS[$kr]}") req/s achieved; errors ${ERRS[$kr]})."
    fi
    if want close; then
        kr="close|ringress" kn="close|nginx" kh="close|haproxy"
        rn=$(ratio "${MED_RPS[$kr]}" "${MED_RPS[$kn]}") rh=$(ratio "${MED_RPS[$kr]}" "${MED_RPS[$kh]}")
        cn=$(ratio "${MED_CPR[$kr]:-}" "${MED_CPR[$kn]:-}") ch=$(ratio "${MED_CPR[$kr]:-}" "${MED_CPR[$kh]:-}")
        met=1
        ge "$rn" 1.2 || met=0
        ((${ERRS[$kr]} == 0)) || met=0
        line="- **New connection per request** — target ≥ 1.2× nginx req/s: "
        if ((met)); then line+="**MET**"; else line+="**NOT MET**"; fi
        echo "$line (${rn}× nginx, ${rh}× HAProxy; p99 $(ratio "${MED_P99[$kr]}" "${MED_P99[$kn]}")× nginx; errors ${ERRS[$kr]}; proxy CPU µs/req ${cn}× nginx, ${ch}× HAProxy)."
    fi
    for s in body-64k body-1m; do
        want "$s" || continue
        kr="$s|ringress" kn="$s|nginx" kh="$s|haproxy"
        rn=$(ratio "${MED_MIB[$kr]}" "${MED_MIB[$kn]}") rh=$(ratio "${MED_MIB[$kr]}" "${MED_MIB[$kh]}")
        met=1
        ge "$rn" 1 || met=0
        ((${ERRS[$kr]} == 0)) || met=0
        line="- **${S_TITLE[$s]%%,*}** — target MiB/s ≥ nginx: "
        if ((met)); then line+="**MET**"; else line+="**NOT MET**"; fi
        echo "$line (${rn}× nginx, ${rh}× HAProxy; $(fmt0 "${MED_MIB[$kr]}") vs $(fmt0 "${MED_MIB[$kn]}") MiB/s; RSS under load Δ $(fmt2 "$(median "${ALL_RSSD[$kr]}")") KiB/conn vs nginx $(fmt2 "$(median "${ALL_RSSD[$kn]}")"), HAProxy $(fmt2 "$(median "${ALL_RSSD[$kh]}")"))."
    done
    if want memory; then
        met=1
        ge "${MEM_PER[nginx]}" "${MEM_PER[ringress]}" || met=0
        ((${MEM_HELD[ringress]:-0} == IDLE_CONNS && ${MEM_CLOSED[ringress]:-1} == 0)) || met=0
        line="- **RSS per idle connection** — target ≤ nginx: "
        if ((met)); then line+="**MET**"; else line+="**NOT MET**"; fi
        echo "$line (ringress ${MEM_PER[ringress]} KiB/conn, nginx ${MEM_PER[nginx]}, HAProxy ${MEM_PER[haproxy]}; ringress held ${MEM_HELD[ringress]:-0}, closed ${MEM_CLOSED[ringress]:-?})."
    fi
    if want scaling; then
        line="- **2-worker scaling** — target ≥ 1.8×: "
        if ((SCALE_SHARED)); then
            line+="**NOT MEASURABLE here** (measured ${SCALE_RATIO[scaling]}×, but the second worker shares a CPU with the load generator and the backend; see above). What can be seen here: 2 workers spend ${SCALE_CPR[scaling]}× the CPU per request of 1 worker. Near 1 means a second worker adds little per-request cost of its own: the workers share nothing on the request path, though here the second one also shares its core with the load side."
        elif ge "${SCALE_RATIO[scaling]}" 1.8; then
            line+="**MET** (${SCALE_RATIO[scaling]}×)."
        else
            line+="**NOT MET** (${SCALE_RATIO[scaling]}×)."
        fi
        echo "$line"
    fi
    # Capped verdicts count only where the cap was the limit: the proxy was
    # throttled in at least 80 % of the periods (median over the rounds).
    capped() { ge "$(median "${THR[$1]:-}")" 80; }
    for s in cap-ka-c64 cap-close; do
        want "$s" || continue
        kr="$s|ringress" kn="$s|nginx" kh="$s|haproxy"
        rn=$(ratio "${MED_RPS[$kr]}" "${MED_RPS[$kn]}") rh=$(ratio "${MED_RPS[$kr]}" "${MED_RPS[$kh]}")
        if [[ $s == cap-ka-c64 ]]; then
            goal=1.5 line="- **Keep-alive per CPU budget** ($CAP_PCT % of one CPU each) — target ≥ 1.5× nginx and HAProxy req/s: "
        else
            goal=1.2 line="- **New connection per request per CPU budget** ($CAP_PCT % of one CPU each) — target ≥ 1.2× nginx req/s: "
        fi
        if ! capped "$kr" || ! capped "$kn" || { [[ $s == cap-ka-c64 ]] && ! capped "$kh"; }; then
            line+="**NOT MEASURED** (a proxy was throttled in fewer than 80 % of the periods, so the load side, not the cap, limited it)"
        else
            met=1
            ge "$rn" "$goal" || met=0
            [[ $s == cap-ka-c64 ]] && ! ge "$rh" "$goal" && met=0
            ((${ERRS[$kr]} == 0)) || met=0
            if ((met)); then line+="**MET**"; else line+="**NOT MET**"; fi
        fi
        echo "$line (req/s ${rn}× nginx, ${rh}× HAProxy; errors ${ERRS[$kr]}; periods throttled: ringress ${THR[$kr]:-n/a}, nginx ${THR[$kn]:-n/a}, HAProxy ${THR[$kh]:-n/a} %)."
    done
    if want cap-scaling; then
        line="- **2-worker scaling per CPU budget** (each worker $CAP_PCT % of one CPU) — target ≥ 1.8×: "
        if ! capped "cap-scaling|ringress" || ! capped "cap-scaling|ringress2"; then
            line+="**NOT MEASURED** (throttled in fewer than 80 % of the periods: the load side, not the cap, was the limit)"
        elif ge "${SCALE_RATIO[cap-scaling]}" 1.8; then
            line+="**MET**"
        else
            line+="**NOT MET**"
        fi
        echo "$line (${SCALE_RATIO[cap-scaling]}×; CPU µs/req 2 workers / 1 worker ${SCALE_CPR[cap-scaling]}×)."
    fi
    echo

    echo "## Notes from this run"
    echo
    if ((WRK_CPU == BACKEND_CPU && ${#LOAD_SCEN[@]} && REFERENCE)); then
        echo "- The load generator and the backend share CPU $WRK_CPU and do the same work per request whichever proxy is in between, so the backend-direct row is roughly the ceiling any proxy can reach here. When the load CPU is near 100 % busy, the load side, not the proxy, limits req/s."
    fi
    # ringress colours its log; strip the escapes before counting.
    rlogs=("$R/ringress.log")
    [[ -n ${R2:-} ]] && rlogs+=("$R2/ringress.log")
    sed 's/\x1b\[[0-9;]*m//g' "${rlogs[@]}" >"$TMP/ringress.plain.log" 2>/dev/null || true
    wn=$(grep -c ' WARN ' "$TMP/ringress.plain.log" || true)
    en=$(grep -c ' ERROR ' "$TMP/ringress.plain.log" || true)
    echo "- ringress logs (1- and 2-worker): ${wn:-0} WARN and ${en:-0} ERROR lines."
    if ((${wn:-0} + ${en:-0} > 0)); then
        echo "  Most frequent: $(grep -E ' (WARN|ERROR) ' "$TMP/ringress.plain.log" | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -n 3 | sed -E 's/^ +//' | paste -sd ';' -)"
    fi
    if [[ -s $H/haproxy.log ]]; then
        echo "- HAProxy warnings and alerts on stderr: $(grep -E 'WARNING|ALERT' "$H/haproxy.log" | sed -E 's/^\[[A-Z]+\] *\([0-9]+\) *: *(\[[^]]*\] *)?//' | sort -u | head -n 5 | sed 's/^/"/; s/$/"/' | paste -sd ' ' -)"
    fi
    ne=$(grep -vc 'buffered to a temporary file' "$N/error.log" 2>/dev/null || true)
    echo "- nginx proxy error log: ${ne:-0} line(s) other than temp-file buffering notices."
    if ge "${max_steal:-0}" 10; then
        noisy=$(awk -F, 'NR > 1 && $15 != "" && $15 + 0 >= 10 {printf "%s%s %s round %s (%s %%)", sep, $1, $4, $5, $15; sep = ", "}' "$CSV")
        echo "- WARNING: steal time reached ${max_steal} % in some runs (the machine was busy with other guests): ${noisy}. Those runs' numbers are low; with 2 rounds a median is the mean of both, so one such run moves it. Treat small differences with care."
    fi
    echo "- Raw data: compare.csv (one line per run)."
} >"$MD"

cp "$MD" "$CSV" "$RESULTS_DIR/"
cat "$MD"
# plot.py draws every load scenario but the body sizes.
drawn=0
for s in "${LOAD_SCEN[@]}"; do [[ $s == body-* ]] || drawn=1; done
if [[ -z $PLOT_PY ]]; then
    log "wrote $RESULTS_DIR/compare.md and compare.csv (no matplotlib: no chart)"
elif ((!drawn)); then
    log "wrote $RESULTS_DIR/compare.md and compare.csv (no request-rate scenario: no chart)"
else
    if "$PLOT_PY" "$SCRIPT_DIR/plot.py" "$RESULTS_DIR/compare.csv" "$RESULTS_DIR/compare.png" >&2; then
        log "wrote $RESULTS_DIR/compare.md, compare.csv and compare.png"
    else
        log "WARNING: plot.py failed; wrote $RESULTS_DIR/compare.md and compare.csv"
    fi
fi
