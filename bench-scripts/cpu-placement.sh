# shellcheck shell=bash
# cpu-placement.sh — sourced by the bench scripts (not run on its own):
# picks the CPUs for the proxy under test, the backend and the load
# generator. The proxy gets PROXY_CPU (default 0); the backend and wrk get
# other allowed CPUs, preferring ones that are not hyper-thread siblings of
# CPU 0, and share one when only one is left. Sets PROXY_CPU, BACKEND_CPU,
# WRK_CPU (each overridable from the environment), ALLOWED_CPUS and
# _others (the non-proxy CPUs in order of preference). Needs `log`.
expand_cpu_list() { # "0-3,6" -> "0 1 2 3 6"
    local part a b cpus=() i
    local IFS=,
    for part in $1; do
        if [[ $part == *-* ]]; then
            a=${part%-*} b=${part#*-}
            for ((i = a; i <= b; i++)); do cpus+=("$i"); done
        elif [[ -n $part ]]; then
            cpus+=("$part")
        fi
    done
    [[ ${#cpus[@]} -gt 0 ]] && printf "%s " "${cpus[@]}"; echo
}
ALLOWED_CPUS=$(expand_cpu_list "$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status 2>/dev/null || true)")
[[ -n $ALLOWED_CPUS ]] || ALLOWED_CPUS=$(seq -s ' ' 0 $(($(nproc) - 1)))
CPU0_SIBLINGS=$(expand_cpu_list "$(cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list 2>/dev/null || echo 0)")
read -r -a _allowed <<<"$ALLOWED_CPUS"
_preferred=() _siblings=()
for c in "${_allowed[@]}"; do
    ((c == 0)) && continue
    if [[ " $CPU0_SIBLINGS " == *" $c "* ]]; then _siblings+=("$c"); else _preferred+=("$c"); fi
done
_others=("${_preferred[@]}" "${_siblings[@]}")
PROXY_CPU=${PROXY_CPU:-0}
if ((${#_others[@]} >= 2)); then
    BACKEND_CPU=${BACKEND_CPU:-${_others[0]}}
    WRK_CPU=${WRK_CPU:-${_others[1]}}
elif ((${#_others[@]} == 1)); then
    BACKEND_CPU=${BACKEND_CPU:-${_others[0]}}
    WRK_CPU=${WRK_CPU:-${_others[0]}}
else
    BACKEND_CPU=${BACKEND_CPU:-0}
    WRK_CPU=${WRK_CPU:-0}
    log "WARNING: only one usable CPU; proxy, backend and wrk all share it"
fi
