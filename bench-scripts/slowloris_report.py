#!/usr/bin/env python3
"""slowloris_report.py — records and report of slowloris.sh.

    slowloris_report.py rss PID                   # KiB resident, PID and its children
    slowloris_report.py ticks PID                 # CPU ticks of PID and its children
    slowloris_report.py core N                    # "busy total" jiffies of CPU N
    slowloris_report.py record ROWS --target T --phase P --wrk FILE
        [--proxy-share F] [--core-share F]        # busy shares during the run
    slowloris_report.py attack ROWS --target T --result FILE
    slowloris_report.py memory ROWS --target T --phase P --kib N
    slowloris_report.py report ROWS OUT_JSON      # markdown on stdout

ROWS is a JSON-lines file, one record per line. Parsing and the report are
pure functions (test_slowloris_report.py).
"""

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vs_report import ParseError, parse_wrk, tree_ticks  # noqa: E402

# Goals of issue #20 for the normal client under attack.
RPS_GOAL = 0.90
P99_GOAL = 2.0

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_p99_ms(text):
    """The 99% line of wrk --latency, in milliseconds."""
    m = re.search(r"^\s*99%\s+([0-9.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        raise ParseError("no 99% latency line (run wrk with --latency)")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_rss_kib(status_text):
    m = re.search(r"^VmRSS:\s+(\d+) kB", status_text, re.M)
    return int(m.group(1)) if m else 0


def tree_rss_kib(pid, proc="/proc"):
    """Resident KiB of pid and its descendants (nginx: master + worker)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open("%s/%d/status" % (proc, p), encoding="utf-8") as f:
                total += parse_rss_kib(f.read())
            tasks = os.listdir("%s/%d/task" % (proc, p))
        except FileNotFoundError:
            continue
        for t in tasks:
            try:
                with open("%s/%d/task/%s/children" % (proc, p, t), encoding="utf-8") as f:
                    todo.extend(int(c) for c in f.read().split())
            except FileNotFoundError:
                pass
    return total


def parse_core(stat_text, n):
    """/proc/stat -> (busy, total) jiffies of CPU n (idle and iowait are
    not busy)."""
    m = re.search(r"^cpu%d\s+(.*)$" % n, stat_text, re.M)
    if not m:
        raise ParseError("no cpu%d line in /proc/stat" % n)
    v = [int(x) for x in m.group(1).split()]
    total = sum(v[:8])
    return total - v[3] - v[4], total


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def append_row(path, row):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def summarize(rows):
    """Rows -> {target: {"calm": wrk, "attacked": wrk, "rss": {...},
    "attack": [results], "rps_ratio", "p99_ratio", "goal_met", "outlived"}}.
    With several rounds, each wrk figure is the median over the rounds
    (and "rounds" says how many); RSS is the highest seen per phase."""
    out, runs = {}, {}
    for r in rows:
        t = out.setdefault(r["target"], {"rss": {}, "attack": []})
        if r["kind"] == "wrk":
            runs.setdefault((r["target"], r["phase"]), []).append(r)
        elif r["kind"] == "rss":
            t["rss"][r["phase"]] = max(t["rss"].get(r["phase"], 0), r["kib"])
        elif r["kind"] == "attack":
            t["attack"].append(r["result"])
    for (target, phase), rs in runs.items():
        out[target][phase] = {k: _median(x.get(k) for x in rs)
                              for k in ("rps", "p99_ms", "errors", "proxy_share", "core_share")}
        out[target][phase]["rounds"] = len(rs)
    for t in out.values():
        calm, hit = t.get("calm"), t.get("attacked")
        if calm and hit and calm["rps"] and calm["p99_ms"]:
            t["rps_ratio"] = hit["rps"] / calm["rps"]
            t["p99_ratio"] = hit["p99_ms"] / calm["p99_ms"]
            t["goal_met"] = t["rps_ratio"] >= RPS_GOAL and t["p99_ratio"] <= P99_GOAL
        t["outlived"] = sum(a["outlived_closed"] + a["outlived_open"] for a in t["attack"])
    return out


def _f(fmt, v):
    return "-" if v is None else fmt % v


def render(summary):
    lines = [
        "| target | req/s calm | req/s attacked | ratio | p99 calm (ms) | p99 attacked (ms) | ratio "
        "| RSS before / during / after (MiB) | proxy CPU calm / attacked, load core calm / attacked "
        "| goal (>= 90 %, <= 2x) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in sorted(summary.items()):
        calm, hit, rss = t.get("calm", {}), t.get("attacked", {}), t["rss"]
        mib = "/".join(_f("%.1f", rss.get(p, 0) / 1024) for p in ("before", "during", "after"))
        cpu = "/".join(_f("%.0f%%", None if x is None else 100 * x) for x in (
            calm.get("proxy_share"), hit.get("proxy_share"), calm.get("core_share"), hit.get("core_share")))
        goal = {True: "met", False: "missed"}.get(t.get("goal_met"), "-")
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, _f("%.0f", calm.get("rps")), _f("%.0f", hit.get("rps")),
            _f("%.2f", t.get("rps_ratio")), _f("%.2f", calm.get("p99_ms")),
            _f("%.2f", hit.get("p99_ms")), _f("%.2f", t.get("p99_ratio")), mib, cpu, goal))
    lines += [
        "",
        "| target | attack | opened | closed by server | refused at once | life p50 / p99 / max (s) "
        "| outlived deadline + 1 s (closed / still open) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in sorted(summary.items()):
        for a in t["attack"]:
            life = "/".join(_f("%.1f", a.get(k)) for k in ("lifetime_p50_s", "lifetime_p99_s", "lifetime_max_s"))
            lines.append("| %s | %s x %d | %d | %d | %d | %s | %d / %d |" % (
                name, a["mode"], a["target_count"], a["opened"], a["closed_by_server"],
                a["refused_at_once"], life, a["outlived_closed"], a["outlived_open"]))
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("rss")
    s.add_argument("pid", type=int)
    s = sub.add_parser("ticks")
    s.add_argument("pid", type=int)
    s = sub.add_parser("core")
    s.add_argument("n", type=int)
    for name in ("record", "attack", "memory"):
        s = sub.add_parser(name)
        s.add_argument("rows")
        s.add_argument("--target", required=True)
        s.add_argument("--phase")
        s.add_argument("--wrk")
        s.add_argument("--result")
        s.add_argument("--kib", type=int)
        s.add_argument("--proxy-share", type=float)
        s.add_argument("--core-share", type=float)
    s = sub.add_parser("report")
    s.add_argument("rows")
    s.add_argument("out_json")
    a = p.parse_args(argv)
    if a.cmd == "rss":
        print(tree_rss_kib(a.pid))
    elif a.cmd == "ticks":
        print(tree_ticks(a.pid))
    elif a.cmd == "core":
        with open("/proc/stat", encoding="utf-8") as f:
            print("%d %d" % parse_core(f.read(), a.n))
    elif a.cmd == "record":
        with open(a.wrk, encoding="utf-8") as f:
            text = f.read()
        w = parse_wrk(text)
        append_row(a.rows, {"kind": "wrk", "target": a.target, "phase": a.phase,
                            "rps": w["rps"], "errors": w["errors"], "p99_ms": parse_p99_ms(text),
                            "proxy_share": a.proxy_share, "core_share": a.core_share})
    elif a.cmd == "attack":
        with open(a.result, encoding="utf-8") as f:
            append_row(a.rows, {"kind": "attack", "target": a.target, "result": json.load(f)})
    elif a.cmd == "memory":
        append_row(a.rows, {"kind": "rss", "target": a.target, "phase": a.phase, "kib": a.kib})
    else:
        summary = summarize(read_rows(a.rows))
        with open(a.out_json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
        sys.stdout.write(render(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
