#!/usr/bin/env python3
"""cpu_split.py: where each proxy's CPU goes per request, from perf samples.

compare.sh records every sample on the proxy's CPU (`perf record -C CPU`,
cpu-clock, which samples idle time too) during one run per proxy, and calls

    cpu_split.py SCENARIO NAME=REPORT:RPS [NAME=REPORT:RPS ...]

where REPORT is `perf report --stdio -q -n --sort comm,dso,sym -g none
-t '|' --percent-limit 0` of that recording and RPS the run's req/s. It
prints a markdown table: the CPU time per request on the proxy's CPU, split
into the kernel's TCP/IP work (loopback delivery to the peer included: on
127.0.0.1 the sender pays for it), the event interface (io_uring or epoll),
syscall entry and fd lookup, scheduling, wake-ups and interrupts, kernel
memory management, the rest of the kernel, and the proxy's own user space
(libraries and vDSO included). Samples of other processes on the CPU are
listed apart (the other proxies, idle; the kernel's ksoftirqd/N when it
takes over softirq work under load); idle samples are left out. Then the ceiling that follows for
ringress against the cheaper of nginx and HAProxy: that proxy's CPU per
request divided by ringress's TCP/IP work alone, the ratio ringress would
reach if everything else it does cost nothing, and the time per request
left for everything else at 1.5x.

The split is by kernel symbol name, a heuristic: a function is counted where
it runs, not on whose behalf (a lock released with interrupts pending is
counted under scheduling and interrupts, whatever took it). Every proxy is
split by the same rules, so the columns compare.
"""

import re
import sys

# Process names of each proxy: only the profiled proxy's count as its own
# (the others sit idle on the same CPU). ringress names its threads
# ringress-*; io_uring's kernel workers for it are iou-wrk-* / iou-sqp-*.
PROXY_COMM = {
    "ringress": re.compile(r"^(ringress|iou-)"),
    "nginx": re.compile(r"^nginx"),
    "haproxy": re.compile(r"^haproxy"),
}
IDLE_COMM = re.compile(r"^swapper")

# Kernel symbols, tried in this order.
KERNEL_CLASSES = [
    ("events", re.compile(r"^(__)?(io_|io_uring|ep_|epoll|do_epoll|tctx_|task_work)|_sys_(io_uring|epoll)")),
    ("tcp/ip", re.compile(
        r"tcp|udp|skb|inet|^_*ip_|ipv4|^_*dev_|netif|^_*net_|napi|loopback|sock|^_*sk_|bbr|datagram"
        r"|_copy_(to|from)_iter|copy_user|csum|^_*dst_|neigh|^eth_|^nf_|validate_xmit|rps_|softirq"
        r"|^_*local_bh|_bh$|backlog|raw_local_deliver|page_frag")),
    ("syscall", re.compile(
        r"syscall|^entry_|exit_to_user|^_*x64_sys_|^_*sys_|fget|fput|fdget|import_iovec|iovec"
        r"|rw_verify|security_|apparmor|copy_msghdr|move_addr|^_*fsnotify")),
    ("sched/irq", re.compile(
        r"sched|switch|wake|ttwu|enqueue|dequeue|update_curr|update_load|pick_next|_raw_spin_unlock_irq"
        r"|_raw_spin_lock_irq|hrtimer|tick|apic|irq|sysvec|idle|halt|psi_|cpuacct|account|rcu|^_*smp_"
        r"|call_function|timer")),
    ("memory", re.compile(
        r"slab|kmem|kmalloc|kfree|alloc_pages|free_pages|^_*page_|freelist|rmqueue|memcg|refill_stock"
        r"|obj_cgroup|folio|^mm_|^_*free_|^_*alloc_")),
]
COLUMNS = ["tcp/ip", "events", "syscall", "sched/irq", "memory", "other kernel", "user space"]


def split(path, comm_rx):
    """Samples per class of the proxy, of other tasks, and in total (idle included)."""
    counts = {c: 0 for c in COLUMNS}
    other_tasks = 0
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = [p.strip() for p in line.split("|")]
            if len(parts) < 5 or not parts[1].isdigit():
                continue
            n = int(parts[1])
            comm, dso, sym = parts[2], parts[3], parts[4]
            total += n
            if IDLE_COMM.match(comm):
                continue
            if not comm_rx.match(comm):
                other_tasks += n
                continue
            if not sym.startswith("[k]"):
                counts["user space"] += n
                continue
            name = sym[3:].strip()
            for cls, rx in KERNEL_CLASSES:
                if rx.search(name):
                    counts[cls] += n
                    break
            else:
                counts["other kernel"] += n
    return counts, other_tasks, total


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: cpu_split.py SCENARIO NAME=REPORT:RPS ...")
    scenario = sys.argv[1]
    rows = {}
    for arg in sys.argv[2:]:
        name, _, rest = arg.partition("=")
        path, _, rps = rest.rpartition(":")
        comm_rx = PROXY_COMM.get(name) or re.compile("^" + re.escape(name))
        counts, other, total = split(path, comm_rx)
        rps = float(rps)
        if total == 0 or rps <= 0:
            sys.exit("no samples or no requests for %s in %s" % (name, path))
        # cpu-clock samples cover the whole time, so samples / total is a
        # share of the CPU; divided by the requests per second, µs/request.
        us = lambda n: n / total * 1e6 / rps
        rows[name] = ({c: us(v) for c, v in counts.items()}, us(other), rps, total)

    print("| %s | req/s | proxy µs/req | %s | other tasks µs/req | samples |" % (
        scenario, " | ".join(COLUMNS)))
    print("|---|" + "---:|" * (len(COLUMNS) + 4))
    for name, (cls, other, rps, total) in rows.items():
        print("| %s | %.0f | %.2f | %s | %.2f | %d |" % (
            name, rps, sum(cls.values()), " | ".join("%.2f" % cls[c] for c in COLUMNS), other, total))
    refs = [n for n in ("nginx", "haproxy") if n in rows]
    if "ringress" in rows and refs:
        r = rows["ringress"][0]
        r_total, r_tcp = sum(r.values()), r["tcp/ip"]
        # The 1.5x target is against both: the cheaper of them sets the bar.
        ref = min(refs, key=lambda n: sum(rows[n][0].values()))
        f = rows[ref][0]
        f_total = sum(f.values())
        print()
        which = " (the cheaper of %s here)" % " and ".join(refs) if len(refs) > 1 else ""
        print("TCP/IP work is %.0f %% of ringress's CPU per request and %.0f %% of %s's"
              "%s. With TCP/IP as it costs ringress in this run, "
              "if everything else ringress does cost nothing it would do at most **%.2f×** "
              "%s's requests per CPU. For 1.5×, everything but TCP/IP would have to fit in "
              "%.2f µs per request; ringress spends %.2f µs there now (user space %.2f), "
              "%s %.2f." % (
                  100 * r_tcp / r_total, 100 * f["tcp/ip"] / f_total, ref, which,
                  f_total / r_tcp, ref, f_total / 1.5 - r_tcp,
                  r_total - r_tcp, r["user space"], ref, f_total - f["tcp/ip"]))


if __name__ == "__main__":
    main()
