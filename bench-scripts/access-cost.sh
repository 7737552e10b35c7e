#!/usr/bin/env bash
# access-cost.sh — what the access layer costs per request: the same route
# open, under basic auth (bcrypt), under JWT (ES256), under an IP list of
# 100,000 prefixes, and behind 20 filter rules plus the default set.
#
# One ringress with one worker (on PROXY_CPU) serves each variant twice:
#   /p/VARIANT  proxied to a backend (a second ringress answering 100
#               bytes by itself, on BACKEND_CPU), the usual case
#   /r/VARIANT  answered by ringress itself (`respond`), so the check is
#               a larger share of the work: the strict view
# wrk -t1 -c64 keep-alive (on WRK_CPU) for DURATION s against each,
# rotating the order every round, ROUNDS rounds, each client sending the
# variant's credential on every request (one user, one token: a real
# client reuses its token, and ringress keeps what it verified per
# worker). Reports median req/s, median CPU µs per request (utime + stime
# of the proxy over the run / requests) and both as ratios to the open
# route. The issue's goal: JWT costs under 10 %.
#
# Needs wrk, curl, taskset, python3 with `cryptography` (the ES256 token
# is signed with tests/data/auth/ec-private.pem, kid ec1 of
# tests/data/auth/jwks-ec.json) and htpasswd (apache2-utils) for the bcrypt
# hash; missing Debian packages are installed.
#
# Knobs: ROUNDS [3] DURATION [5] PORT_BASE [19880] BIN
# [target/release/ringress, built if missing] PROXY_CPU / BACKEND_CPU /
# WRK_CPU (cpu-placement.sh) BCRYPT_COST [10] KEEP_TMP=1 OUT (also write
# the report there). Traffic only to 127.0.0.1.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
PORT_BASE=${PORT_BASE:-19880}
BCRYPT_COST=${BCRYPT_COST:-10}
KEEP_TMP=${KEEP_TMP:-0}
HOST=127.0.0.1
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
BIN=${BIN:-$REPO_ROOT/target/release/ringress}
AUTH_DATA=$REPO_ROOT/tests/data/auth

log() { printf '[access-cost] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
# shellcheck source=bench-scripts/cpu-placement.sh
source "$SCRIPT_DIR/cpu-placement.sh"
need_pkg() { # command package
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2 || die "cannot install $2"
}
need_pkg wrk wrk
need_pkg curl curl
need_pkg htpasswd apache2-utils
for tool in taskset python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done
python3 -c 'import cryptography' 2>/dev/null || need_pkg_py=1
if [[ ${need_pkg_py:-0} == 1 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-cryptography >&2 ||
        die "python3 cryptography is needed"
fi
# shellcheck source=bench-scripts/cost-lib.sh
source "$SCRIPT_DIR/cost-lib.sh"
build_if_missing
start_tmp access-cost

wait_http() { # port path
    local i
    for ((i = 0; i < 100; i++)); do
        curl -sS -o /dev/null --max-time 1 "http://$HOST:$1$2" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing answers on $HOST:$1"
}
start() { # name port cpus toml probe-path
    local dir=$TMP/$1
    mkdir -p "$dir"
    printf '%s\n' "$4" >"$dir/ringress.toml"
    taskset -c "$3" "$BIN" --config "$dir/ringress.toml" --threads 1 --no-pin >"$dir/log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
    wait_http "$2" "$5"
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# Credentials: a bcrypt user, an ES256 token valid for a day.
htpasswd -nbB -C "$BCRYPT_COST" bench s3cret | head -1 >"$TMP/users"
cp "$AUTH_DATA/jwks-ec.json" "$TMP/jwks.json"
TOKEN=$(python3 - "$AUTH_DATA/ec-private.pem" <<'EOF'
import base64, json, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "ec1"}).encode())
now = int(time.time())
claims = {"sub": "bench-user", "iss": "https://issuer.test", "aud": "bench",
          "iat": now, "exp": now + 86400}
body = b64(json.dumps(claims).encode())
der = key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
r, s = decode_dss_signature(der)
print(f"{head}.{body}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")
EOF
)
BASIC=$(printf 'bench:s3cret' | base64)
# 100,000 /24 block-list prefixes that never match the client (127.0.0.1).
python3 - >"$TMP/deny.toml" <<'EOF'
nets = ", ".join(f'"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24"' for i in range(100_000))
print(f"deny = [{nets}]")
EOF
# 20 rules no request of the bench matches (so all are evaluated), in
# each field and match kind, plus the default set.
FILTERS=""
for i in $(seq 1 5); do
    FILTERS+="
[[filters]]
id = \"path-prefix-$i\"
path = { prefix = \"/blocked$i/\" }
[[filters]]
id = \"path-regex-$i\"
path = { regex = \"^/(wp-admin|phpmyadmin|admin$i)/.*\\\\.php\$\" }
[[filters]]
id = \"ua-regex-$i\"
header = { name = \"User-Agent\", regex = \"(?i)(sqlmap|nikto|masscan|scanner$i)\" }
[[filters]]
id = \"query-regex-$i\"
query = { regex = \"(?i)(union\\\\s+select|<script|select$i)\" }"
done

BACKEND_PORT=$PORT_BASE
PROXY_PORT=$((PORT_BASE + 1))
start backend "$BACKEND_PORT" "$BACKEND_CPU" "
[[listeners]]
name = \"main\"
bind = \"$HOST:$BACKEND_PORT\"
[[routes]]
respond = { status = 200, body = \"$(printf 'x%.0s' $(seq 1 99))\n\" }" /
BACKEND_PID=$LAST_PID

VARIANTS=(open basic jwt acl filters)
variant_keys() { # variant
    case $1 in
    open) ;;
    basic) echo "auth = { basic = { users = \"$TMP/users\" } }" ;;
    jwt) echo "auth = { jwt = { jwks = \"$TMP/jwks.json\", issuer = \"https://issuer.test\", audience = \"bench\", algorithms = [\"ES256\"], claims_to_headers = { sub = \"X-User\" } } }" ;;
    acl) cat "$TMP/deny.toml" ;;
    filters) echo 'filters = "default"' ;;
    esac
}
ROUTES=""
for v in "${VARIANTS[@]}"; do
    keys=$(variant_keys "$v")
    [[ $v == filters ]] && keys=""
    ROUTES+="
[[routes]]
name = \"p-$v\"
path_prefix = \"/p/$v\"
upstream = \"backend\"
$keys
[[routes]]
name = \"r-$v\"
path_prefix = \"/r/$v\"
respond = { status = 200, body = \"$(printf 'x%.0s' $(seq 1 99))\n\" }
$keys"
done
# The filter rules apply to the filters routes only; the default set is
# switched on for them.
RULE_ROUTES='routes = ["p-filters", "r-filters"]'
FILTERS=$(printf '%s\n' "$FILTERS" | sed "s/^id = \(.*\)$/id = \1\n$RULE_ROUTES/")
ROUTES=$(printf '%s\n' "$ROUTES" | sed 's/^\(path_prefix = "\/[pr]\/filters"\)$/\1\nfilters = "default"/')
start proxy "$PROXY_PORT" "$PROXY_CPU" "
$FILTERS
[[listeners]]
name = \"main\"
bind = \"$HOST:$PROXY_PORT\"
$ROUTES
[upstreams.backend]
servers = [\"$HOST:$BACKEND_PORT\"]" /p/open
PROXY_PID=$LAST_PID

header_for() { # variant
    case $1 in
    basic) echo "Authorization: Basic $BASIC" ;;
    jwt) echo "Authorization: Bearer $TOKEN" ;;
    *) echo "X-Bench: 1" ;;
    esac
}
# Every variant answers 200 with its credential (and 401 without).
for v in "${VARIANTS[@]}"; do
    for side in p r; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "$(header_for "$v")" "http://$HOST:$PROXY_PORT/$side/$v/x")
        [[ $code == 200 ]] || die "/$side/$v answered $code"
    done
done
for v in basic jwt; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$HOST:$PROXY_PORT/p/$v/x")
    [[ $code == 401 ]] || die "/p/$v without a credential answered $code"
done

RESULTS=$TMP/cost.txt
SCENARIOS=()
for side in p r; do for v in "${VARIANTS[@]}"; do SCENARIOS+=("$side/$v"); done; done
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#SCENARIOS[@]}; i++)); do
        s=${SCENARIOS[$(((i + r) % ${#SCENARIOS[@]}))]}
        v=${s#*/}
        out=$TMP/${s/\//-}-r$r.txt
        k0=$(ticks "$PROXY_PID")
        taskset -c "$WRK_CPU" wrk -t1 -c64 -d"${DURATION}s" -H "$(header_for "$v")" \
            "http://$HOST:$PROXY_PORT/$s/x" >"$out" 2>&1 || die "wrk failed on /$s"
        k1=$(ticks "$PROXY_PID")
        grep -q "Non-2xx" "$out" && die "/$s: non-2xx answers ($(grep Non-2xx "$out"))"
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        n=$(awk '/requests in/ {print $1}' "$out")
        us=$(python3 -c "print(round(($k1 - $k0) / $CLK_TCK * 1e6 / $n, 3))")
        log "round $r /$s: $rps req/s, $us CPU us/req"
        echo "$s $rps $us" >>"$RESULTS"
    done
done

report() {
    python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$(git -C "$REPO_ROOT" rev-parse --short HEAD)" <<'EOF'
import statistics, sys
runs, cpu = {}, {}
for line in open(sys.argv[1]):
    s, rps, us = line.split()
    runs.setdefault(s, []).append(float(rps))
    cpu.setdefault(s, []).append(float(us))
print(f"## access-cost.sh: {sys.argv[2]} rounds x {sys.argv[3]} s, wrk -t1 -c64 keep-alive, one worker, commit {sys.argv[4]}\n")
names = {"open": "open", "basic": "basic auth (bcrypt)", "jwt": "JWT (ES256)",
         "acl": "deny list, 100,000 prefixes", "filters": "20 filter rules + default set"}
for side, title in (("p", "proxied to a backend"), ("r", "answered by ringress (respond)")):
    print(f"### {title}\n")
    print("| route | median req/s | req/s vs open | median CPU µs/req | CPU vs open |")
    print("|---|---:|---:|---:|---:|")
    base_r = statistics.median(runs[f"{side}/open"])
    base_c = statistics.median(cpu[f"{side}/open"])
    for v in ("open", "basic", "jwt", "acl", "filters"):
        r = statistics.median(runs[f"{side}/{v}"])
        c = statistics.median(cpu[f"{side}/{v}"])
        print(f"| {names[v]} | {r:,.0f} | {r / base_r:.3f} | {c:.3f} | {c / base_c:.3f} |")
    print()
EOF
}
if [[ -n ${OUT:-} ]]; then report | tee "$OUT"; else report; fi
