#!/usr/bin/env bash
# ab.sh — paired A/B benchmark of two ringress builds on one machine.
#
# Is build B within BAND_PCT (2 %) of build A? Both builds run side by side
# (one worker each, --threads 1, both on PROXY_CPU; the one not measured sits
# idle), in front of the same backends, and are measured in pairs: in every
# round each scenario runs A then B, or B then A (ABBA...), back to back, so
# that whatever else the machine is doing weighs on both halves of a pair.
#
# Scenarios (as compare.sh's of the same names; SCENARIOS picks a subset):
#   ka-c64       wrk -t1 -c64, keep-alive, GET / (100-byte static file from
#                a 1-worker nginx backend)
#   fast-ka-c64  the same, GET /fast, to a backend that is a second ringress
#                answering by itself (a fixed 100-byte `respond` route), so
#                that the proxy's own CPU limits req/s
#   close        wrk -t1 -c$CLOSE_CONNS -H "Connection: close" (a new client
#                connection per request), GET / from the nginx backend
# Per run: req/s, and the proxy's CPU time per request (utime + stime of the
# proxy process from /proc/PID/stat before and after the run, divided by the
# requests wrk completed). ab_report.py parses wrk's output, keeps one CSV row
# per run and prints the markdown table: medians over the rounds, the B/A
# ratio of the medians, the median and range of the per-pair B/A ratios, and
# a verdict from the per-pair median.
#
# Builds (each is one of, in this order of precedence):
#   A_BIN / B_BIN   a prebuilt binary, used as it is
#   A / B           a git revision: built in a detached worktree
#                   ($WORKTREE_PREFIX-<commit>, removed afterwards) with
#                   cargo build --release and a shared target dir
#                   (BUILD_TARGET), the binary cached as
#                   $BIN_CACHE/<commit>/ringress; a cached commit is not built
#                   again
#   (B unset)       the working tree: cargo build --release in the repo root
# A defaults to HEAD when the working tree has uncommitted changes in src/,
# Cargo.toml, Cargo.lock or build.rs (B is then "the change not yet
# committed"), else to HEAD~1 (B is then "the last commit").
# Both binaries are copied into the temp dir before anything starts, so a
# rebuild elsewhere cannot swap one mid-run.
#
# Exits non-zero only when setup fails (install, build, a server that does
# not start or dies, wrk failing). B outside the band is reported, not an
# error.
#
# Environment knobs (defaults in brackets):
#   A, B, A_BIN, B_BIN  the builds (see above)
#   ROUNDS   [6]       pairs per scenario (even: each build is in each slot equally often)
#   DURATION [8]       seconds per measured run
#   WARMUP   [2]       seconds of warm-up per build and scenario (0 = none)
#   SCENARIOS [ka-c64 fast-ka-c64 close]
#   BAND_PCT [2]       the band of the verdict, %
#   CLOSE_CONNS [64]   wrk connections in the close scenario
#   LOAD_SCHED [batch] batch: backends and wrk run SCHED_BATCH, as in
#                      compare.sh (see its "Load-side scheduling"); normal
#   FAST_BIN           ringress binary of the fast backend [B's]
#   BACKEND_PORT [19580] FAST_PORT [19581] A_PORT [19582] B_PORT [19583]
#   PROXY_CPU / BACKEND_CPU / WRK_CPU   CPU placement (cpu-placement.sh)
#   BIN_CACHE [/tmp/ringress-ab-bin]  BUILD_TARGET [/tmp/ringress-ab-target]
#   WORKTREE_PREFIX [/tmp/ringress-ab]  BUILD_TIMEOUT [3600] seconds per build
#   A_EXTRA_TOML / B_EXTRA_TOML  appended to that build's config, with @DIR@
#                      replaced by its temp dir (e.g. B with an [access_log]
#                      and A without: the log's cost with one binary)
#   CSV_OUT            also write every run's row (ab_report.py's CSV) here
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw wrk outputs)
set -euo pipefail

ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
ALL_SCENARIOS="ka-c64 fast-ka-c64 close"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
BAND_PCT=${BAND_PCT:-2}
CLOSE_CONNS=${CLOSE_CONNS:-64}
LOAD_SCHED=${LOAD_SCHED:-batch}
BACKEND_PORT=${BACKEND_PORT:-19580}
FAST_PORT=${FAST_PORT:-19581}
A_PORT=${A_PORT:-19582}
B_PORT=${B_PORT:-19583}
BIN_CACHE=${BIN_CACHE:-/tmp/ringress-ab-bin}
BUILD_TARGET=${BUILD_TARGET:-/tmp/ringress-ab-target}
WORKTREE_PREFIX=${WORKTREE_PREFIX:-/tmp/ringress-ab}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
KEEP_TMP=${KEEP_TMP:-0}
HOST=127.0.0.1 # all traffic stays on loopback
# Clock ticks per second: the unit of utime/stime in /proc/PID/stat.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
[[ $CLK_TCK =~ ^[0-9]+$ ]] && ((CLK_TCK > 0)) || CLK_TCK=100

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
REPORT=("python3" "$SCRIPT_DIR/ab_report.py")

log() { printf '[ab] %s\n' "$*" >&2; }
die() {
    printf '[ab] ERROR: %s\n' "$*" >&2
    exit 1
}

for v in ROUNDS DURATION WARMUP CLOSE_CONNS BACKEND_PORT FAST_PORT A_PORT B_PORT BUILD_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((ROUNDS >= 1 && DURATION >= 1 && CLOSE_CONNS >= 1)) || die "ROUNDS, DURATION and CLOSE_CONNS must be >= 1"
[[ $BAND_PCT =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BAND_PCT must be a number (got '$BAND_PCT')"
[[ $LOAD_SCHED == batch || $LOAD_SCHED == normal ]] || die "LOAD_SCHED must be batch or normal"
SCEN=()
for s in $SCENARIOS; do
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "unknown scenario '$s' (known: $ALL_SCENARIOS)"
    SCEN+=("$s")
done
((${#SCEN[@]})) || die "no scenario selected"
declare -A S_PATH=([ka-c64]=/ [fast-ka-c64]=/fast [close]=/)
declare -A S_CONNS=([ka-c64]=64 [fast-ka-c64]=64 [close]=$CLOSE_CONNS)
declare -A S_CLOSE=([ka-c64]=0 [fast-ka-c64]=0 [close]=1)

# shellcheck source=bench-scripts/cpu-placement.sh
source "$SCRIPT_DIR/cpu-placement.sh"

# ---------------------------------------------------------------------------
# Tools: install what is missing with apt-get (as compare.sh does).
# ---------------------------------------------------------------------------
apt_install() { # pkg...
    log "installing: $*"
    local sudo=() added_policy=0 ok=1
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install $*"
        sudo=(sudo)
    fi
    # Keep nginx's own service from starting on :80 while installing.
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
{ command -v taskset && command -v chrt; } >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v timeout >/dev/null 2>&1 || need_pkgs+=(coreutils)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v git >/dev/null 2>&1 || need_pkgs+=(git)
if ((${#need_pkgs[@]})); then
    apt_install "${need_pkgs[@]}" || die "apt-get install ${need_pkgs[*]} failed"
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
LOAD_PREFIX=()
if [[ $LOAD_SCHED == batch ]]; then
    if chrt --batch 0 true 2>/dev/null; then
        LOAD_PREFIX=(chrt --batch 0)
    else
        log "WARNING: chrt --batch is refused here; the load side runs with the default policy"
    fi
fi

# ---------------------------------------------------------------------------
# Process bookkeeping and clean-up (normal exit, errors and Ctrl-C).
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringress-ab.XXXXXX")
PIDS=()     # servers we started
CHILD_PID=  # the build or wrk run in progress, if any
BUILD_WT=   # the build worktree in use, if any
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
remove_worktree() { # path
    git -C "$REPO_ROOT" worktree remove --force "$1" >/dev/null 2>&1 || log "WARNING: could not remove worktree $1"
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    [[ -n $CHILD_PID ]] && stop_pid "$CHILD_PID"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [[ -n $BUILD_WT ]] && remove_worktree "$BUILD_WT"
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
# in_child CMD...: run CMD in the background and wait for it, so that a
# signal reaches the traps (and so the clean-up) at once; returns its status.
in_child() {
    local rc=0
    "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=
    return "$rc"
}
# cargo_build DIR [TARGET_DIR]: cargo build --release there, bounded. Run
# it through in_child only: it execs, so that the PID in_child stops is
# timeout's, which passes the signal on to cargo.
cargo_build() {
    local env=()
    [[ -n ${2:-} ]] && env=(env "CARGO_TARGET_DIR=$2")
    cd "$1" && exec ${env[@]+"${env[@]}"} timeout "$BUILD_TIMEOUT" cargo build --release >&2
}

# ---------------------------------------------------------------------------
# Builds. Each sets BIN (the binary) and LABEL (what it is, for the report).
# ---------------------------------------------------------------------------
BUILD_INPUTS=(src Cargo.toml Cargo.lock build.rs)
tree_dirty() { [[ -n $(git -C "$REPO_ROOT" status --porcelain -- "${BUILD_INPUTS[@]}" 2>/dev/null) ]]; }
short() { git -C "$REPO_ROOT" rev-parse --short "$1"; }

build_rev() { # rev: a cached release binary of that commit, built if missing
    local rev=$1 commit wt
    commit=$(git -C "$REPO_ROOT" rev-parse --verify --quiet "$rev^{commit}") || die "unknown git revision '$rev'"
    BIN=$BIN_CACHE/$commit/ringress
    LABEL="$rev ($(short "$commit"))"
    if [[ -x $BIN ]]; then
        log "$rev: cached build $BIN"
        return 0
    fi
    wt=$WORKTREE_PREFIX-${commit:0:12}
    if [[ -e $wt ]]; then
        git -C "$REPO_ROOT" worktree list --porcelain | grep -qxF "worktree $wt" ||
            die "$wt exists and is not a worktree of this repo; remove it"
        remove_worktree "$wt"
    fi
    git -C "$REPO_ROOT" worktree add --detach "$wt" "$commit" >/dev/null 2>&1 || die "git worktree add $wt $commit failed"
    BUILD_WT=$wt
    log "$rev: building $(short "$commit") in $wt (cargo build --release, target $BUILD_TARGET; bounded to ${BUILD_TIMEOUT}s)"
    in_child cargo_build "$wt" "$BUILD_TARGET" || die "cargo build --release of $rev failed"
    mkdir -p "$BIN_CACHE/$commit"
    cp "$BUILD_TARGET/release/ringress" "$BIN.tmp.$$" && mv "$BIN.tmp.$$" "$BIN"
    remove_worktree "$wt"
    BUILD_WT=
}
build_working_tree() {
    log "B: building the working tree (cargo build --release in $REPO_ROOT; bounded to ${BUILD_TIMEOUT}s)"
    in_child cargo_build "$REPO_ROOT" || die "cargo build --release failed"
    BIN=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/ringress
    if tree_dirty; then
        LABEL="working tree (HEAD $(short HEAD) + uncommitted changes)"
    else
        LABEL="working tree (= HEAD $(short HEAD))"
    fi
}
# resolve NAME: sets BIN_<NAME> (a private copy in TMP) and LABEL_<NAME>.
BIN_A='' BIN_B='' LABEL_A='' LABEL_B=''
resolve() {
    local name=$1 bin_var=${1}_BIN rev_var=$1
    if [[ -n ${!bin_var:-} ]]; then
        BIN=${!bin_var}
        LABEL="binary ${BIN}"
    elif [[ -n ${!rev_var:-} ]]; then
        build_rev "${!rev_var}"
    else
        build_working_tree
    fi
    [[ -x $BIN ]] || die "$name: no executable binary at $BIN"
    mkdir -p "$TMP/$name"
    cp "$BIN" "$TMP/$name/ringress"
    printf -v "BIN_$name" '%s' "$TMP/$name/ringress"
    printf -v "LABEL_$name" '%s, sha256 %s' "$LABEL" "$(sha256sum "$BIN" | cut -c1-12)"
}
if [[ -z ${A_BIN:-} && -z ${A:-} ]]; then
    if tree_dirty; then A=HEAD; else A=HEAD~1; fi
    log "A defaults to $A"
fi
resolve A
resolve B
if cmp -s "$BIN_A" "$BIN_B"; then
    LABEL_B+=" — the same binary as A: an A/A run, which shows the noise floor"
fi
FAST_BIN=${FAST_BIN:-$BIN_B}

# ---------------------------------------------------------------------------
# Servers.
# ---------------------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
for p in "$BACKEND_PORT" "$FAST_PORT" "$A_PORT" "$B_PORT"; do
    ! port_in_use "$p" || die "port $HOST:$p is already in use"
done
# wait_http NAME PORT PID LOG: up to 10 s for GET / to answer 200.
wait_http() {
    local name=$1 port=$2 pid=$3 logf=$4 i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logf" >&2 2>/dev/null || true
            die "$name exited during start-up (log above, $logf)"
        fi
        curl -fsS -o /dev/null --max-time 1 "http://$HOST:$port/" 2>/dev/null && return 0
        sleep 0.1
    done
    tail -n 30 "$logf" >&2 2>/dev/null || true
    die "$name did not answer on $HOST:$port within 10 s (log above, $logf)"
}
check_body() { # name port path size: 200 with exactly SIZE body bytes
    local got
    got=$(curl -fsS -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "http://$HOST:$2$3" 2>&1) ||
        die "$1: GET $3 failed: $got"
    [[ $got == "200 $4" ]] || die "$1: GET $3 returned '$got', expected '200 $4'"
}
cpu_mask() { # nginx worker_cpu_affinity: bit mask, rightmost bit = CPU 0
    local m=1 i
    for ((i = 0; i < $1; i++)); do m+=0; done
    echo "$m"
}
start_backend() { # nginx, 1 worker, a 100-byte static file for any GET
    local dir=$TMP/backend args
    mkdir -p "$dir/www"
    printf '%-99s\n' "hello from backend" >"$dir/www/hello.txt"
    {
        ((EUID == 0)) && echo "user root;"
        cat <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity $(cpu_mask "$BACKEND_CPU");
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type application/octet-stream;
    sendfile on;
    open_file_cache max=16;
    server {
        listen $HOST:$BACKEND_PORT backlog=4096;
        root $dir/www;
        location / { try_files /hello.txt =404; }
    }
}
EOF
    } >"$dir/nginx.conf"
    args=(-p "$dir" -c "$dir/nginx.conf")
    [[ $("$NGINX" -h 2>&1) == *"-e filename"* ]] && args+=(-e "$dir/error.log")
    "$NGINX" -t "${args[@]}" >"$dir/stdout.log" 2>&1 || {
        cat "$dir/stdout.log" >&2
        die "backend: nginx -t failed"
    }
    log "backend nginx on $HOST:$BACKEND_PORT (cpu $BACKEND_CPU)"
    taskset -c "$BACKEND_CPU" ${LOAD_PREFIX[@]+"${LOAD_PREFIX[@]}"} "$NGINX" "${args[@]}" >>"$dir/stdout.log" 2>&1 &
    PIDS+=($!)
    wait_http backend "$BACKEND_PORT" $! "$dir/error.log"
    check_body backend "$BACKEND_PORT" / 100
}
start_fast_backend() { # ringress answering every request itself, 100 bytes
    local dir=$TMP/fast-backend
    mkdir -p "$dir"
    cat >"$dir/ringress.toml" <<EOF
[[listeners]]
name = "main"
bind = "$HOST:$FAST_PORT"

[[routes]]
respond = { status = 200, body = "$(printf '%-99s' 'hello from the fast backend')\n", content_type = "text/plain" }
EOF
    log "fast backend (ringress answering by itself) on $HOST:$FAST_PORT (cpu $BACKEND_CPU)"
    taskset -c "$BACKEND_CPU" ${LOAD_PREFIX[@]+"${LOAD_PREFIX[@]}"} "$FAST_BIN" --config "$dir/ringress.toml" --threads 1 >"$dir/ringress.log" 2>&1 &
    PIDS+=($!)
    wait_http fast-backend "$FAST_PORT" $! "$dir/ringress.log"
    check_body fast-backend "$FAST_PORT" /fast 100
}
declare -A PORT=([A]=$A_PORT [B]=$B_PORT) PROXY_PID=()
start_proxy() { # A|B: the build under test, one worker on PROXY_CPU
    local name=$1 dir=$TMP/$1 bin_var=BIN_$1
    cat >"$dir/ringress.toml" <<EOF
[runtime]
threads = 1

[[listeners]]
name = "main"
bind = "$HOST:${PORT[$name]}"

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
    local extra_var=${name}_EXTRA_TOML
    if [[ -n ${!extra_var:-} ]]; then
        printf '%s\n' "${!extra_var}" | sed "s|@DIR@|$dir|g" >>"$dir/ringress.toml"
    fi
    log "proxy $name on $HOST:${PORT[$name]} (cpu $PROXY_CPU)"
    taskset -c "$PROXY_CPU" "${!bin_var}" --config "$dir/ringress.toml" --threads 1 >>"$dir/ringress.log" 2>&1 &
    PROXY_PID[$name]=$!
    PIDS+=($!)
    wait_http "proxy $name" "${PORT[$name]}" $! "$dir/ringress.log"
    check_body "proxy $name" "${PORT[$name]}" / 100
    check_body "proxy $name" "${PORT[$name]}" /fast 100
}
# Which build runs in which slot (port and start order) alternates from
# pair to pair: in an A/A run (one binary as both builds) with fixed slots,
# the second slot came out up to 14 % worse in every pair.
start_proxies() { # round
    local p pids=()
    for p in "${PIDS[@]}"; do
        if [[ $p == "${PROXY_PID[A]:-}" || $p == "${PROXY_PID[B]:-}" ]]; then
            stop_pid "$p"
        else
            pids+=("$p")
        fi
    done
    PIDS=(${pids[@]+"${pids[@]}"})
    if (($1 % 2 == 1)); then
        PORT=([A]=$A_PORT [B]=$B_PORT)
        start_proxy A
        start_proxy B
    else
        PORT=([A]=$B_PORT [B]=$A_PORT)
        start_proxy B
        start_proxy A
    fi
}
start_backend
start_fast_backend

# ---------------------------------------------------------------------------
# Measuring.
# ---------------------------------------------------------------------------
proxy_ticks() { "${REPORT[@]}" ticks "$1" || die "cannot read /proc/$1/stat"; }
# run_wrk BUILD SCEN SECS OUT: one wrk run against BUILD; sets TICKS (the
# proxy's CPU time over the run, clock ticks).
TICKS=0
run_wrk() {
    local build=$1 s=$2 secs=$3 out=$4 pid=${PROXY_PID[$1]} k0 k1 rc=0 cmd p
    cmd=(wrk -t1 -c"${S_CONNS[$s]}" -d"${secs}s" --timeout 5s)
    ((S_CLOSE[$s])) && cmd+=(-H "Connection: close")
    k0=$(proxy_ticks "$pid")
    in_child taskset -c "$WRK_CPU" ${LOAD_PREFIX[@]+"${LOAD_PREFIX[@]}"} timeout "$((secs + 30))" \
        "${cmd[@]}" "http://$HOST:${PORT[$build]}${S_PATH[$s]}" >"$out" 2>&1 || rc=$?
    k1=$(proxy_ticks "$pid")
    if ((rc != 0)); then
        cat "$out" >&2
        die "wrk against proxy $build ($s) failed (exit $rc)"
    fi
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || die "a server (PID $p) died during $s against $build"; done
    TICKS=$((k1 - k0))
}
CSV=$TMP/runs.csv
warm_up() {
    local s b
    ((WARMUP > 0)) || return 0
    for s in "${SCEN[@]}"; do
        for b in A B; do
            log "warm-up: $s $b, ${WARMUP}s"
            run_wrk "$b" "$s" "$WARMUP" "$TMP/warmup-$s-$b.txt"
        done
    done
}
log "measuring ${SCEN[*]}: $ROUNDS pair(s) each, ${DURATION}s per run"
for ((r = 1; r <= ROUNDS; r++)); do
    start_proxies "$r"
    warm_up
    order=(A B)
    ((r % 2 == 0)) && order=(B A)
    for s in "${SCEN[@]}"; do
        for b in "${order[@]}"; do
            f=$TMP/$s-r$r-$b.txt
            run_wrk "$b" "$s" "$DURATION" "$f"
            "${REPORT[@]}" record "$CSV" --scenario "$s" --round "$r" --build "$b" \
                --wrk "$f" --ticks "$TICKS" --clk-tck "$CLK_TCK" >&2 || die "could not parse wrk output $f"
        done
    done
done

# ---------------------------------------------------------------------------
# Report (stdout).
# ---------------------------------------------------------------------------
log_lines() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -cE ' (WARN|ERROR) ' || true; }
echo "## ab.sh: ${SCEN[*]}; $ROUNDS pair(s), ${DURATION}s per run, ABBA order"
echo
echo "One ringress worker each on CPU $PROXY_CPU; backends on CPU $BACKEND_CPU, wrk on CPU $WRK_CPU ($(nproc) CPUs, load side $LOAD_SCHED). CPU µs/req: the proxy's utime + stime (1/$CLK_TCK s ticks) over the run / requests completed. ringress WARN/ERROR log lines: A $(log_lines "$TMP/A/ringress.log"), B $(log_lines "$TMP/B/ringress.log")."
echo
"${REPORT[@]}" report "$CSV" --a-label "$LABEL_A" --b-label "$LABEL_B" --band-pct "$BAND_PCT" || die "ab_report.py report failed"
if [[ -n ${CSV_OUT:-} ]]; then
    cp "$CSV" "$CSV_OUT"
    log "wrote $CSV_OUT"
fi
