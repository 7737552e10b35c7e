# shellcheck shell=bash
# cost-lib.sh — what the *-cost.sh scripts share: build the binary when it
# is missing, and a temp dir whose processes and files go when the script
# exits. Sourced after the script has set log, die, BIN, REPO_ROOT and
# KEEP_TMP.

# Builds $BIN (cargo build --release) unless it is there.
build_if_missing() {
    if [[ ! -x $BIN ]]; then
        log "building $BIN"
        (cd "$REPO_ROOT" && cargo build --release >&2) || die "cargo build --release failed"
    fi
}

# Makes TMP (ringress-NAME.XXXXXX) and, at exit, stops every pid in PIDS
# (TERM, then KILL half a second later) and removes TMP unless KEEP_TMP=1.
start_tmp() { # name
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringress-$1.XXXXXX")
    PIDS=()
    trap cleanup EXIT
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
