#!/usr/bin/env bash
# dashboard-screenshot.sh — a PNG of the admin dashboard (GET / on the admin
# listener) while ringress is under load.
#
# Starts, all on 127.0.0.1:
#   * a backend: nginx, 1 worker, on three ports ($PORT_BASE..+2), a 100-byte
#     answer for any path except /nope (404)
#   * ringress (--threads $THREADS) on $PORT_BASE+5, admin listener on
#     $PORT_BASE+6, with routes "api" (/api/ -> group app), "static"
#     (/static/ -> group static), "old" (/old: a 301 from ringress), "err"
#     (/err: a 503 from ringress) and "default" (/ -> app). Group app has two
#     nginx ports and one dead port ($PORT_BASE+9, health-checked, so it
#     shows as down); group static has the third nginx port.
# then runs wrk (-t1 -c$CONNS, $DURATION s) cycling through a mix of paths
# (mostly 2xx, a few 3xx, 4xx and 5xx), opens the dashboard in headless
# Chromium after $LEAD s of load, lets it poll for $WAIT s of real time
# (DevTools protocol on a pipe, driven by a small Python script), and saves
# the screenshot to $OUT (bench-scripts/results/dashboard.png by default).
#
# Exits non-zero when setup fails (install, build, a server that does not
# start, wrk or the browser failing) or no PNG was written. Console errors on
# the page are printed as warnings.
#
# Environment knobs (defaults in brackets):
#   DURATION [20]   seconds of wrk load (must cover LEAD + WAIT)
#   LEAD     [3]    seconds of load before the page is opened
#   WAIT     [10]   seconds the page polls before the screenshot
#   CONNS    [16]   wrk connections
#   THREADS  [2]    ringress workers
#   PORT_BASE [19470] first of the ports listed above
#   WIDTH / HEIGHT [1280 / 900] screenshot size
#   OUT      [bench-scripts/results/dashboard.png]
#   SKIP_BUILD=1    don't run cargo build (use RINGRESS_BIN as it is)
#   RINGRESS_BIN    [target/release/ringress]
#   KEEP_TMP=1      keep the temp dir (configs, logs)
set -euo pipefail

DURATION=${DURATION:-20}
LEAD=${LEAD:-3}
WAIT=${WAIT:-10}
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}
PORT_BASE=${PORT_BASE:-19470}
WIDTH=${WIDTH:-1280}
HEIGHT=${HEIGHT:-900}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
HOST=127.0.0.1 # all traffic stays on loopback

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RINGRESS_BIN=${RINGRESS_BIN:-$REPO_ROOT/target/release/ringress}
OUT=${OUT:-$SCRIPT_DIR/results/dashboard.png}

log() { printf '[dashboard] %s\n' "$*" >&2; }
die() {
    printf '[dashboard] ERROR: %s\n' "$*" >&2
    exit 1
}

for v in DURATION LEAD WAIT CONNS THREADS PORT_BASE WIDTH HEIGHT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((WAIT >= 2 && CONNS >= 1 && THREADS >= 1)) || die "need WAIT >= 2, CONNS >= 1, THREADS >= 1"
((DURATION >= LEAD + WAIT + 2)) || die "DURATION must be at least LEAD + WAIT + 2"
((PORT_BASE >= 1024 && PORT_BASE + 9 <= 65535)) || die "PORT_BASE out of range"
B1=$PORT_BASE B2=$((PORT_BASE + 1)) B3=$((PORT_BASE + 2))
PROXY_PORT=$((PORT_BASE + 5)) ADMIN_PORT=$((PORT_BASE + 6)) DEAD_PORT=$((PORT_BASE + 9))

# ---------------------------------------------------------------------------
# Tools (Debian packages), as the other bench scripts do.
# ---------------------------------------------------------------------------
need_pkgs=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
    log "installing: ${need_pkgs[*]}"
    SUDO=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install ${need_pkgs[*]}"
        SUDO=(sudo)
    fi
    # Keep the package's own nginx service from starting on :80.
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
CHROMIUM=$(command -v chromium) || die "chromium not found"

for p in $B1 $B2 $B3 $PROXY_PORT $ADMIN_PORT $DEAD_PORT; do
    if ss -ltnH "sport = :$p" 2>/dev/null | grep -q .; then die "port $p is in use (set PORT_BASE)"; fi
done

if [[ $SKIP_BUILD != 1 ]]; then
    [[ -d $HOME/.cargo/bin ]] && PATH=$HOME/.cargo/bin:$PATH
    command -v cargo >/dev/null 2>&1 || die "cargo not found (set SKIP_BUILD=1 and RINGRESS_BIN)"
    log "cargo build --release (in $REPO_ROOT)"
    (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
fi
[[ -x $RINGRESS_BIN ]] || die "ringress binary not found at $RINGRESS_BIN"

# ---------------------------------------------------------------------------
# Cleanup of everything started here, on any exit.
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringress-dashboard.XXXXXX")
PIDS=()
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $KEEP_TMP == 1 ]]; then log "kept temp dir: $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url, what
    local i
    for ((i = 0; i < 100; i++)); do
        curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$2 did not answer $1 within 10 s"
}

# ---------------------------------------------------------------------------
# Backend, ringress, load.
# ---------------------------------------------------------------------------
BODY=$(printf 'x%.0s' {1..100})
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen $HOST:$B1 reuseport; listen $HOST:$B2 reuseport; listen $HOST:$B3 reuseport;
        default_type text/plain;
        location = /nope { return 404; }
        location / { return 200 "$BODY"; }
    }
}
EOF
"$NGINX" -c "$TMP/nginx.conf" -p "$TMP" >"$TMP/nginx.out" 2>&1 &
PIDS+=($!)
wait_http "http://$HOST:$B1/" "nginx"

cat >"$TMP/ringress.toml" <<EOF
[admin]
bind = "$HOST:$ADMIN_PORT"

[[listeners]]
name = "main"
bind = "$HOST:$PROXY_PORT"

[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "app"

[[routes]]
name = "static"
path_prefix = "/static/"
upstream = "static"

[[routes]]
name = "old"
path_exact = "/old"
redirect = { status = 301, to = "/" }

[[routes]]
name = "err"
path_exact = "/err"
respond = { status = 503, body = "unavailable" }

[[routes]]
name = "default"
path_prefix = "/"
upstream = "app"

[upstreams.app]
servers = ["$HOST:$B1", "$HOST:$B2", "$HOST:$DEAD_PORT"]
connect_timeout = "1s"
health_check = { path = "/", interval = "1s", timeout = "1s", healthy = 2, unhealthy = 2 }

[upstreams.static]
servers = ["$HOST:$B3"]
EOF
"$RINGRESS_BIN" --config "$TMP/ringress.toml" --threads "$THREADS" >"$TMP/ringress.log" 2>&1 &
PIDS+=($!)
wait_http "http://$HOST:$PROXY_PORT/" "ringress"
wait_http "http://$HOST:$ADMIN_PORT/health" "the admin listener"
stats=$(curl -fsS --max-time 2 "http://$HOST:$ADMIN_PORT/stats" || true)
[[ $stats == *time_ms* ]] || log "WARNING: /stats has no time_ms (got '${stats:0:80}'): the page will show no numbers"

# 20 paths: 14 to 2xx routes, 2 redirects, 2 x 404, 2 x 503.
cat >"$TMP/mix.lua" <<'EOF'
local paths = { "/", "/api/users", "/api/orders", "/static/app.js", "/", "/api/users",
  "/static/style.css", "/", "/api/items", "/", "/old", "/nope", "/api/users", "/err",
  "/static/logo.png", "/", "/api/orders", "/old", "/nope", "/err" }
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
EOF
log "load: wrk -t1 -c$CONNS -d${DURATION}s through ringress on :$PROXY_PORT"
timeout $((DURATION + 15)) wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$TMP/mix.lua" \
    "http://$HOST:$PROXY_PORT/" >"$TMP/wrk.out" 2>&1 &
WRK=$!
PIDS+=("$WRK")
sleep "$LEAD"

# ---------------------------------------------------------------------------
# The screenshot: Chromium's DevTools protocol on fds 3 (in) and 4 (out).
# ---------------------------------------------------------------------------
cat >"$TMP/shot.py" <<'EOF'
import base64, fcntl, json, os, select, subprocess, sys, time

chromium, url, out, wait_s, width, height, profile = sys.argv[1:8]
wait_s, width, height = int(wait_s), int(width), int(height)

def high(fd):  # a close-on-exec copy at 10 or above, so dup2 onto 3/4 cannot collide
    n = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return n

cmd_r, cmd_w = os.pipe()
out_r, out_w = os.pipe()
cmd_r, out_w = high(cmd_r), high(out_w)

def to_fds():
    os.dup2(cmd_r, 3)
    os.dup2(out_w, 4)

proc = subprocess.Popen(
    [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
     "--disable-extensions", "--no-first-run", "--no-default-browser-check",
     "--remote-debugging-pipe", "--user-data-dir=" + profile,
     "--window-size=%d,%d" % (width, height), "--hide-scrollbars", "about:blank"],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    stderr=open(profile + ".log", "wb"), close_fds=False, preexec_fn=to_fds)
os.close(cmd_r)
os.close(out_w)

buf, events, next_id, session = b"", [], 1, None

def message(deadline):
    global buf
    while b"\0" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([out_r], [], [], left)[0]:
            raise SystemExit("chromium: no answer in time")
        chunk = os.read(out_r, 1 << 20)
        if not chunk:
            raise SystemExit("chromium exited")
        buf += chunk
    msg, buf = buf.split(b"\0", 1)
    return json.loads(msg)

def call(method, params=None):
    global next_id
    i, next_id = next_id, next_id + 1
    m = {"id": i, "method": method, "params": params or {}}
    if session:
        m["sessionId"] = session
    os.write(cmd_w, json.dumps(m).encode() + b"\0")
    deadline = time.monotonic() + 20
    while True:
        r = message(deadline)
        if r.get("id") == i:
            if "error" in r:
                raise SystemExit("%s: %s" % (method, r["error"]))
            return r.get("result", {})
        events.append(r)

try:
    target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    call("Runtime.enable")
    call("Log.enable")
    call("Emulation.setDeviceMetricsOverride",
         {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    call("Page.navigate", {"url": url})
    time.sleep(wait_s)  # real time: the page polls once a second
    polls = call("Runtime.evaluate", {"expression": "document.body.dataset.polls",
                                       "returnByValue": True})["result"].get("value")
    shot = call("Page.captureScreenshot", {"format": "png"})["data"]
    with open(out, "wb") as f:
        f.write(base64.b64decode(shot))
    bad = [e for e in events
           if e.get("method") == "Runtime.exceptionThrown"
           or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error")
           or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]
    for e in bad:
        print("WARNING: console error: %s" % json.dumps(e["params"])[:300], file=sys.stderr)
    print("page polled %s times; screenshot %s (%d bytes)" % (polls, out, os.path.getsize(out)))
    try:
        call("Browser.close")
    except SystemExit:
        pass
finally:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
EOF
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"
log "opening http://$HOST:$ADMIN_PORT/ in headless chromium for ${WAIT}s"
timeout $((WAIT + 60)) python3 "$TMP/shot.py" "$CHROMIUM" "http://$HOST:$ADMIN_PORT/" "$OUT" \
    "$WAIT" "$WIDTH" "$HEIGHT" "$TMP/chromium-profile" >&2 ||
    die "the screenshot failed (browser log: $TMP/chromium-profile.log; KEEP_TMP=1 keeps it)"

wait "$WRK" || die "wrk failed: $(tail -5 "$TMP/wrk.out")"
grep -E 'Requests/sec|Non-2xx|Socket errors' "$TMP/wrk.out" >&2 || true
[[ -s $OUT ]] || die "no screenshot at $OUT"
log "saved $OUT"
