#!/usr/bin/env python3
"""sharing_report.py — the parsing, records and table of cache-sharing.sh.

  sharing_report.py record DIR BUDGET SETUP   one JSON line from a run's raw files
  sharing_report.py table ROWS.jsonl          the markdown table of those lines

A run's DIR holds what cache-sharing.sh saved for one setup:
  wrk-*.out         wrk's output, one per wrk process (zipf-keys.lua's
                    "zipf:" line included)
  metrics-*.txt     each ringress process's GET /metrics at the end
  rss-*.txt         "IDLE_KIB END_KIB" for each ringress process
  origin-fetches    requests the origin logged during the run
  objects           "COUNT BYTES ALPHA": the keys and body bytes the origin
                    serves, and the Zipf exponent of the requests

Unit tests: python3 -m unittest bench-scripts/test_sharing_report.py
"""

import glob
import json
import os
import re
import sys

SETUP_NAMES = {
    "A": "A: 1 process, 1 worker",
    "B": "B: before, 2 processes x 1 worker",
    "C": "C: after, 1 process, 2 workers",
}

_REQUESTS_RE = re.compile(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m)", re.M)
_ZIPF_RE = re.compile(r"^zipf: (.*)$", re.M)
_ERRORS_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text):
    """Requests, seconds, errors and the zipf line's fields of one wrk run."""
    m = _REQUESTS_RE.search(text)
    if not m:
        raise ValueError("no 'N requests in T' line in wrk output")
    out = {
        "requests": int(m.group(1)),
        "seconds": float(m.group(2)) * _UNIT_S[m.group(3)],
        "errors": 0,
    }
    e = _ERRORS_RE.search(text)
    if e:
        out["errors"] += sum(int(g) for g in e.groups())
    n = _NON2XX_RE.search(text)
    if n:
        out["errors"] += int(n.group(1))
    z = _ZIPF_RE.search(text)
    out["zipf"] = dict(kv.split("=", 1) for kv in z.group(1).split()) if z else {}
    return out


def parse_metrics(text):
    """Prometheus text -> list of (name, {label: value}, float)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            continue
        labels = dict(_LABEL_RE.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def cache_totals(samples):
    """Bytes, objects and requests by result, over all zones and routes."""
    out = {"bytes": 0, "objects": 0, "results": {}}
    for name, labels, value in samples:
        if name == "ringress_cache_bytes":
            out["bytes"] += int(value)
        elif name == "ringress_cache_objects":
            out["objects"] += int(value)
        elif name == "ringress_cache_requests_total":
            r = labels.get("result", "?")
            out["results"][r] = out["results"].get(r, 0) + int(value)
    return out


def expected_fetches(keys, alpha, requests, caches):
    """Fetches that `caches` private caches with no eviction make when
    `requests` Zipf(alpha) requests over `keys` keys are split evenly
    between them: each fetches every key it sees at least once, and key k
    (probability p_k) is seen in r requests with probability 1 - (1-p_k)^r."""
    weights = [k ** -alpha for k in range(1, keys + 1)]
    total = sum(weights)
    share = requests / caches
    return caches * sum(1 - (1 - w / total) ** share for w in weights)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def record(run_dir, budget, setup):
    """One run's record from the raw files in run_dir."""
    wrks = [parse_wrk(_read(p)) for p in sorted(glob.glob(os.path.join(run_dir, "wrk-*.out")))]
    if not wrks:
        raise ValueError(f"no wrk output in {run_dir}")
    caches = [
        cache_totals(parse_metrics(_read(p)))
        for p in sorted(glob.glob(os.path.join(run_dir, "metrics-*.txt")))
    ]
    rss = [
        [int(x) for x in _read(p).split()]
        for p in sorted(glob.glob(os.path.join(run_dir, "rss-*.txt")))
    ]
    results = {}
    for c in caches:
        for k, v in c["results"].items():
            results[k] = results.get(k, 0) + v
    objects = _read(os.path.join(run_dir, "objects")).split()
    keys, key_bytes, alpha = int(objects[0]), int(objects[1]), float(objects[2])
    requests = sum(w["requests"] for w in wrks)
    fetches = int(_read(os.path.join(run_dir, "origin-fetches")).strip())
    return {
        "budget": budget,
        "setup": setup,
        "processes": len(caches),
        "requests": requests,
        "seconds": max(w["seconds"] for w in wrks),
        "errors": sum(w["errors"] for w in wrks),
        "client_hits": sum(int(w["zipf"].get("hits", 0)) for w in wrks),
        "origin_fetches": fetches,
        "hit_ratio": 1.0 - fetches / requests if requests else 0.0,
        "cache_results": results,
        "cache_bytes": sum(c["bytes"] for c in caches),
        "cache_objects": sum(c["objects"] for c in caches),
        "rss_idle_kib": sum(r[0] for r in rss),
        "rss_end_kib": sum(r[1] for r in rss),
        "keys": keys,
        "key_bytes": key_bytes,
        "alpha": alpha,
    }


def _mib(n):
    return f"{n / 1048576:.1f}"


def table(rows):
    """Markdown: one table per budget, and each setup against C."""
    lines = []
    budgets = []
    for r in rows:
        if r["budget"] not in budgets:
            budgets.append(r["budget"])
    for b in budgets:
        rs = [r for r in rows if r["budget"] == b]
        by = {r["setup"]: r for r in rs}
        lines.append(f"### zone budget {b}")
        lines.append("")
        lines.append(
            "| setup | requests | origin fetches | hit ratio | cache hits (metrics) "
            "| stored MiB | objects | RSS idle MiB | RSS end MiB | errors | req/s |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rs:
            lines.append(
                "| {name} | {req:,} | {f:,} | {hr:.4f} | {hits:,} | {mib} | {obj:,} "
                "| {ri} | {re} | {err} | {rps:,.0f} |".format(
                    name=SETUP_NAMES.get(r["setup"], r["setup"]),
                    req=r["requests"],
                    f=r["origin_fetches"],
                    hr=r["hit_ratio"],
                    hits=r["cache_results"].get("hit", 0),
                    mib=_mib(r["cache_bytes"]),
                    obj=r["cache_objects"],
                    ri=_mib(r["rss_idle_kib"] * 1024),
                    re=_mib(r["rss_end_kib"] * 1024),
                    err=r["errors"],
                    rps=r["requests"] / r["seconds"] if r["seconds"] else 0,
                )
            )
        lines.append("")
        if all(r["cache_objects"] == r["origin_fetches"] for r in rs):
            # Nothing was evicted: the fetches are the distinct keys each cache saw.
            r0 = rs[0]
            one = expected_fetches(r0["keys"], r0["alpha"], r0["requests"], 1)
            two = expected_fetches(r0["keys"], r0["alpha"], r0["requests"], 2)
            lines.append(
                f"Zipf model, no eviction: one cache fetches {one:,.0f} keys, "
                f"two private caches with half the requests each {two:,.0f} ({two / one:.2f}x)."
            )
        if "C" in by:
            c = by["C"]
            for s in ("A", "B"):
                if s not in by:
                    continue
                r = by[s]
                lines.append(
                    "{s}/C: fetches {f}, stored bytes {b}, objects {o}, "
                    "RSS growth {g}, miss ratio {m}".format(
                        s=s,
                        f=_ratio(r["origin_fetches"], c["origin_fetches"]),
                        b=_ratio(r["cache_bytes"], c["cache_bytes"]),
                        o=_ratio(r["cache_objects"], c["cache_objects"]),
                        g=_ratio(
                            r["rss_end_kib"] - r["rss_idle_kib"],
                            c["rss_end_kib"] - c["rss_idle_kib"],
                        ),
                        m=_ratio(1 - r["hit_ratio"], 1 - c["hit_ratio"]),
                    )
                )
        lines.append("")
    return "\n".join(lines)


def _ratio(a, b):
    return f"{a / b:.2f}x" if b else "n/a"


def main(argv):
    if len(argv) == 5 and argv[1] == "record":
        print(json.dumps(record(argv[2], argv[3], argv[4])))
    elif len(argv) == 3 and argv[1] == "table":
        with open(argv[2], encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        print(table(rows))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
