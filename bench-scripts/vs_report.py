#!/usr/bin/env python3
"""vs_report.py: the measuring-side helpers, records and reports of
cache-vs.sh and gzip-vs.sh (shared harness: vs-lib.sh).

The shell scripts start the servers and run wrk; this file parses what they
measured, keeps one JSON record per run or probe (named fields), and makes
the reports from those records alone. Only the standard library.

    vs_report.py ticks PID
        utime + stime of PID and all its descendants (nginx's master and
        worker, varnishd's manager and child), clock ticks.
    vs_report.py html BYTES
        a deterministic HTML page of about BYTES bytes (realistic markup:
        head, nav, articles, a table, footer) on stdout.
    vs_report.py probe ROWS --bench B --scenario S --proxy P --url URL
                 [--gzip] [--expect-hit]
        one GET of URL (Accept-Encoding: gzip with --gzip); appends a
        "probe" record: status, body bytes on the wire, Content-Encoding and
        whether the proxy's headers say the answer was a cache hit. Exits 1
        when the status is not 200, when --gzip got no gzip body, or when
        --expect-hit got no hit.
    vs_report.py record ROWS --bench B --scenario S --proxy P --round R
                 --wrk FILE --ticks N --clk-tck HZ [--origin-requests N]
                 [--expect-hits]
        parses wrk's output, appends a "run" record, prints one line.
    vs_report.py report ROWS|RESULTS.json --bench B [--json OUT] [--meta KEY=VALUE ...]
        the text report (stdout): per scenario and proxy the median req/s
        and CPU µs/req over the rounds, the ringress/nginx and
        ringress/varnish ratios of the medians against the goals, the
        compressed sizes and the hit checks; --json also writes the records
        and the summary, with named fields, to OUT.
"""

import argparse
import gzip
import http.client
import json
import os
import re
import statistics
import sys
import urllib.parse

# What each bench is held to: (scenario, proxy, baseline, goal ratio).
# A scenario not listed is reported without a goal.
GOALS = {
    "cache": [
        ("hit-small", "ringress", "nginx", 1.5),
        ("hit-small", "ringress", "varnish", 1.0),
        ("hit-64k", "ringress", "nginx", 1.5),
        ("hit-64k", "ringress", "varnish", 1.0),
    ],
    "gzip": [
        ("gzip", "ringress", "nginx", 1.5),
        # A compressed hit is a cache hit: the cache goal carried over.
        ("gzip-hit", "ringress", "nginx", 1.5),
    ],
}
PROXY_ORDER = ["nginx", "varnish", "ringress", "floor"]
# floor.c (cache-vs.sh): no proxy, a fixed-answer server that does the least
# any server must; its rows show the load side's ceiling.
FLOOR = "floor"
# Compressed sizes further apart than this are not the same work.
SIZE_BAND = 0.10


class ParseError(ValueError):
    pass


# ---------------------------------------------------------------------------
# Parsers.
# ---------------------------------------------------------------------------
def parse_wrk(text):
    """wrk's report -> {"rps", "requests", "seconds", "errors"}.

    errors = socket errors (connect, read, write, timeout) + non-2xx/3xx
    responses.
    """
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)\s*$", text, re.M)
    nreq = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m)\b", text, re.M)
    if not rps or not nreq:
        raise ParseError("not a wrk report (no 'Requests/sec:' or 'N requests in')")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[nreq.group(3)]
    errors = 0
    sock = re.search(r"^\s*Socket errors:(.*)$", text, re.M)
    if sock:
        errors += sum(int(n) for n in re.findall(r"\b(\d+)\b", sock.group(1)))
    non2xx = re.search(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", text, re.M)
    if non2xx:
        errors += int(non2xx.group(1))
    return {"rps": float(rps.group(1)), "requests": int(nreq.group(1)),
            "seconds": float(nreq.group(2)) * unit, "errors": errors}


def parse_proc_stat(text):
    """/proc/PID/stat -> utime + stime in clock ticks (fields 14 and 15;
    counted after the last ')', since comm may hold both)."""
    _, sep, rest = text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 13:
        raise ParseError("not a /proc/PID/stat line")
    return int(fields[11]) + int(fields[12])


def tree_ticks(pid, proc="/proc"):
    """utime + stime of pid and every descendant that is still alive."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open("%s/%d/stat" % (proc, p), encoding="utf-8", errors="replace") as f:
                total += parse_proc_stat(f.read())
            tasks = os.listdir("%s/%d/task" % (proc, p))
        except FileNotFoundError:
            continue  # gone between the listing and the read
        for t in tasks:
            try:
                with open("%s/%d/task/%s/children" % (proc, p, t), encoding="utf-8") as f:
                    todo.extend(int(c) for c in f.read().split())
            except FileNotFoundError:
                pass
    return total


def is_hit(proxy, headers):
    """Do the response headers (a dict with lower-case names) say that
    PROXY answered from its cache?

    nginx: our config adds X-Cache-Status: $upstream_cache_status (HIT).
    varnish: X-Varnish holds two transaction ids on a hit (this request's
    and the one that stored the object), one on a miss or pass.
    ringress: Cache-Status (RFC 9246) `ringress; hit`.
    floor: None (it has no cache; it holds the objects).
    """
    if proxy == FLOOR:
        return None
    if proxy == "nginx":
        return headers.get("x-cache-status", "").strip().upper() == "HIT"
    if proxy == "varnish":
        return len(headers.get("x-varnish", "").split()) == 2
    if proxy == "ringress":
        for entry in headers.get("cache-status", "").split(","):
            params = [p.strip() for p in entry.split(";")]
            if params[0] == "ringress" and "hit" in params[1:]:
                return True
        return False
    raise ValueError("unknown proxy %r" % proxy)


# ---------------------------------------------------------------------------
# A deterministic page.
# ---------------------------------------------------------------------------
WORDS = ("the proxy request response cache worker core upstream origin header body "
         "latency throughput connection stream buffer socket kernel ring queue event "
         "server client route listener config reload metrics health check pool retry "
         "timeout budget deadline shard memory object fresh stale validate compress "
         "gzip encoding vary content length chunked status error log trace sample "
         "window rate limit token bucket balance random hash weight drain graceful").split()


class Lcg:
    """A fixed generator, so that the page is the same bytes everywhere."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self, n):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return (self.state >> 33) % n


def html_page(target, seed=20):
    rng = Lcg(seed)

    def sentence():
        words = [WORDS[rng.next(len(WORDS))] for _ in range(6 + rng.next(12))]
        return words[0].capitalize() + " " + " ".join(words[1:]) + "."

    head = ['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<title>ringress: release notes and benchmarks</title>',
            '<link rel="stylesheet" href="/static/site.css?v=20261207">',
            '<script defer src="/static/app.js?v=20261207"></script>', '</head>', '<body class="docs">',
            '<header class="site-header"><a class="logo" href="/">ringress</a>', '<nav class="main-nav"><ul>']
    head += ['<li class="nav-item"><a href="/docs/%s/">%s</a></li>' % (w, w.capitalize())
             for w in ("install", "config", "routes", "upstreams", "cache", "compression", "tls", "metrics")]
    head += ['</ul></nav></header>', '<main id="content">']
    tail = ['</main>', '<footer class="site-footer"><p>&copy; 2026 ringress authors.',
            '<a href="/privacy/">Privacy</a> &middot; <a href="/contact/">Contact</a></p></footer>',
            '</body>', '</html>', '']
    body, n = [], 0
    size = len("\n".join(head + tail))
    while size < target:
        n += 1
        if n % 5 == 0:
            rows = ['<table class="bench"><thead><tr><th>proxy</th><th>req/s</th><th>p99 ms</th></tr></thead><tbody>']
            for name in ("nginx", "varnish", "ringress"):
                rows.append('<tr><td>%s</td><td>%d</td><td>%d.%02d</td></tr>' % (
                    name, 20000 + rng.next(60000), rng.next(9), rng.next(100)))
            rows.append('</tbody></table>')
            block = "\n".join(rows)
        else:
            paras = ['<p>%s</p>' % " ".join(sentence() for _ in range(2 + rng.next(4)))
                     for _ in range(1 + rng.next(3))]
            block = '<article class="post" id="post-%d">\n<h2><a href="/posts/%d/">%s</a></h2>\n%s\n</article>' % (
                n, n, sentence()[:-1], "\n".join(paras))
        body.append(block)
        size += len(block) + 1
    return "\n".join(head + body + tail)


# ---------------------------------------------------------------------------
# Records.
# ---------------------------------------------------------------------------
def append_record(path, rec):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")


def read_records(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_record(bench, scenario, proxy, round_, wrk, ticks, clk_tck, origin_requests, expect_hits):
    us = ticks * 1e6 / clk_tck / wrk["requests"] if wrk["requests"] > 0 and clk_tck > 0 else None
    return {
        "kind": "run", "bench": bench, "scenario": scenario, "proxy": proxy, "round": round_,
        "rps": round(wrk["rps"], 2), "requests": wrk["requests"], "seconds": wrk["seconds"],
        "errors": wrk["errors"], "proxy_cpu_ticks": ticks, "clk_tck": clk_tck,
        "proxy_cpu_us_per_req": None if us is None else round(us, 3),
        "origin_requests": origin_requests, "expect_hits": expect_hits,
    }


def probe_record(bench, scenario, proxy, status, headers, body, gzip_asked):
    enc = headers.get("content-encoding", "")
    rec = {
        "kind": "probe", "bench": bench, "scenario": scenario, "proxy": proxy, "status": status,
        "wire_bytes": len(body), "content_encoding": enc or None, "gzip_asked": gzip_asked,
        "hit": is_hit(proxy, headers),
        "cache_headers": {k: headers[k] for k in ("x-cache-status", "x-varnish", "age", "cache-status")
                          if k in headers},
    }
    if enc == "gzip":
        rec["identity_bytes"] = len(gzip.decompress(body))
    return rec


def fetch(url, gzip_asked, timeout=5):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("GET", u.path or "/", headers={"Accept-Encoding": "gzip"} if gzip_asked else {})
        resp = conn.getresponse()
        body = resp.read()  # chunked is undone here; no decompression
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Summary and report (from the records alone).
# ---------------------------------------------------------------------------
def summarize(records, bench):
    runs = [r for r in records if r["kind"] == "run" and r["bench"] == bench]
    probes = [r for r in records if r["kind"] == "probe" and r["bench"] == bench]
    scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
    cells = []
    for s in scenarios:
        proxies = sorted({r["proxy"] for r in runs if r["scenario"] == s},
                         key=lambda p: PROXY_ORDER.index(p) if p in PROXY_ORDER else 99)
        for p in proxies:
            rs = [r for r in runs if r["scenario"] == s and r["proxy"] == p]
            cpu = [r["proxy_cpu_us_per_req"] for r in rs if r["proxy_cpu_us_per_req"] is not None]
            origin = [r["origin_requests"] for r in rs if r["origin_requests"] is not None]
            sizes = [q for q in probes if q["scenario"] == s and q["proxy"] == p]
            busy = [r["rps"] * r["proxy_cpu_us_per_req"] / 1e4 for r in rs if r["proxy_cpu_us_per_req"] is not None]
            cells.append({
                "scenario": s, "proxy": p, "rounds": len(rs),
                "rps_median": statistics.median(r["rps"] for r in rs),
                "rps_runs": [r["rps"] for r in rs],
                "cpu_us_per_req_median": statistics.median(cpu) if cpu else None,
                # How much of its core the proxy used (%): well below 100,
                # the load side or the machine, not the proxy, set req/s.
                "proxy_core_busy_pct_median": statistics.median(busy) if busy else None,
                "errors": sum(r["errors"] for r in rs),
                "expect_hits": any(r["expect_hits"] for r in rs),
                "origin_requests": sum(origin) if origin else None,
                "wire_bytes": sizes[-1]["wire_bytes"] if sizes else None,
                "content_encoding": sizes[-1]["content_encoding"] if sizes else None,
                "probe_hit": sizes[-1]["hit"] if sizes else None,
            })
    by = {(c["scenario"], c["proxy"]): c for c in cells}
    ratios = []
    for s in scenarios:
        goals = [g for g in GOALS.get(bench, []) if g[0] == s]
        pairs = {(g[1], g[2]): g[3] for g in goals}
        for base in PROXY_ORDER:
            if base != "ringress" and (s, base) in by and (s, "ringress") in by:
                pairs.setdefault(("ringress", base), None)
        if (s, FLOOR) in by and (s, "nginx") in by:
            # The most any server could show against nginx in this setup.
            pairs.setdefault((FLOOR, "nginx"), None)
        for (p, base), goal in pairs.items():
            a, b = by.get((s, p)), by.get((s, base))
            if not a or not b:
                ratios.append({"scenario": s, "proxy": p, "baseline": base, "goal": goal,
                               "ratio": None, "cpu_ratio": None, "met": None})
                continue
            ratio = a["rps_median"] / b["rps_median"] if b["rps_median"] else None
            # The same ratio in CPU time per request (baseline / proxy: > 1
            # when the proxy spends less), which still holds when the load
            # side or a busy machine limits req/s.
            ca, cb = a["cpu_us_per_req_median"], b["cpu_us_per_req_median"]
            ratios.append({"scenario": s, "proxy": p, "baseline": base, "goal": goal, "ratio": ratio,
                           "cpu_ratio": cb / ca if ca and cb is not None else None,
                           "met": None if goal is None or ratio is None else ratio >= goal})
    return {"cells": cells, "ratios": ratios, "size_checks": size_checks(cells), "hit_checks": hit_checks(cells)}


def size_checks(cells):
    """Per scenario with compressed probes: the sizes, and whether ringress's
    is within SIZE_BAND of nginx's."""
    out = []
    for s in dict.fromkeys(c["scenario"] for c in cells):
        got = {c["proxy"]: c for c in cells if c["scenario"] == s and c["content_encoding"] == "gzip"}
        if "nginx" in got and "ringress" in got:
            n, r = got["nginx"]["wire_bytes"], got["ringress"]["wire_bytes"]
            out.append({"scenario": s, "nginx_bytes": n, "ringress_bytes": r,
                        "ratio": r / n, "comparable": abs(r / n - 1) <= SIZE_BAND})
    return out


def hit_checks(cells):
    """Cells that should have been all hits: did the origin see nothing and
    did the probe carry the proxy's hit mark?"""
    return [{"scenario": c["scenario"], "proxy": c["proxy"], "origin_requests": c["origin_requests"],
             "probe_hit": c["probe_hit"],
             "ok": c["origin_requests"] == 0 and c["probe_hit"] is not False}
            for c in cells if c["expect_hits"]]


def _f(fmt, v):
    return "n/a" if v is None else fmt.format(v)


def render(summary, bench, meta):
    lines = ["## %s" % meta.get("title", bench), ""]
    for k, v in meta.items():
        if k != "title":
            lines.append("- %s: %s" % (k, v))
    if meta:
        lines.append("")
    lines += ["| scenario | proxy | median req/s | req/s per round | median proxy CPU µs/req | proxy core busy % | errors | body bytes | origin requests in the runs |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for c in summary["cells"]:
        body = "n/a" if c["wire_bytes"] is None else "%d%s" % (
            c["wire_bytes"], " gzip" if c["content_encoding"] == "gzip" else "")
        lines.append("| %s | %s | %s | %s | %s | %s | %d | %s | %s |" % (
            c["scenario"], c["proxy"], _f("{:,.0f}", c["rps_median"]),
            ", ".join("{:,.0f}".format(x) for x in c["rps_runs"]), _f("{:.2f}", c["cpu_us_per_req_median"]),
            _f("{:.0f}", c["proxy_core_busy_pct_median"]), c["errors"], body, "-" if c["origin_requests"] is None else c["origin_requests"]))
    lines += ["", "| scenario | ratio | req/s, of medians | goal | met | CPU µs/req, baseline / proxy |",
              "|---|---|---:|---:|---|---:|"]
    for r in summary["ratios"]:
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append("| %s | %s / %s | %s | %s | %s | %s |" % (
            r["scenario"], r["proxy"], r["baseline"], _f("{:.3f}", r["ratio"]),
            "-" if r["goal"] is None else "≥ %g" % r["goal"], met, _f("{:.3f}", r["cpu_ratio"])))
    lines += ["", "proxy core busy %: req/s × CPU µs/req of each run, median. Well under 100 %, the proxy was not"
              " what limited req/s (wrk's core or the rest of the machine was), and the CPU µs/req ratio is the"
              " proxy-side comparison."]
    if any(r["proxy"] == FLOOR for r in summary["ratios"]):
        lines += ["", "floor / nginx: what a server that does nothing but read and write gets against nginx here, the"
                  " ceiling of any req/s ratio in this setup. ringress / floor: how near ringress comes to it"
                  " (req/s), and floor CPU / ringress CPU: the share of ringress's CPU per request that is the"
                  " kernel's TCP work any server pays."]
    if summary["size_checks"]:
        lines.append("")
        for s in summary["size_checks"]:
            lines.append("- %s: gzip body nginx %d B, ringress %d B (ringress/nginx %.3f): %s." % (
                s["scenario"], s["nginx_bytes"], s["ringress_bytes"], s["ratio"],
                "comparable (within ±%d %%)" % (SIZE_BAND * 100) if s["comparable"]
                else "**NOT comparable (more than ±%d %% apart)**" % (SIZE_BAND * 100)))
    if summary["hit_checks"]:
        lines.append("")
        bad = [h for h in summary["hit_checks"] if not h["ok"]]
        if bad:
            for h in bad:
                lines.append("- **%s %s was not all hits**: origin saw %s requests during the runs, probe hit mark %s." % (
                    h["scenario"], h["proxy"], h["origin_requests"], h["probe_hit"]))
        else:
            lines.append("- Hit check: every cache scenario was served from the cache (the origin's access log"
                         " grew by 0 lines during the measured runs, and each proxy's probe carried its hit mark).")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ticks").add_argument("pid", type=int)
    sub.add_parser("html").add_argument("bytes", type=int)
    pr = sub.add_parser("probe")
    rec = sub.add_parser("record")
    for sp in (pr, rec):
        sp.add_argument("rows")
        sp.add_argument("--bench", required=True)
        sp.add_argument("--scenario", required=True)
        sp.add_argument("--proxy", required=True, choices=PROXY_ORDER)
    pr.add_argument("--url", required=True)
    pr.add_argument("--gzip", action="store_true")
    pr.add_argument("--expect-hit", action="store_true")
    rec.add_argument("--round", type=int, required=True)
    rec.add_argument("--wrk", required=True)
    rec.add_argument("--ticks", type=int, required=True)
    rec.add_argument("--clk-tck", type=int, required=True)
    rec.add_argument("--origin-requests", type=int)
    rec.add_argument("--expect-hits", action="store_true")
    rep = sub.add_parser("report")
    rep.add_argument("rows")
    rep.add_argument("--bench", required=True)
    rep.add_argument("--json")
    rep.add_argument("--meta", action="append", default=[], help="KEY=VALUE, shown at the top, in order")
    args = p.parse_args(argv)

    try:
        if args.cmd == "ticks":
            print(tree_ticks(args.pid))
        elif args.cmd == "html":
            sys.stdout.write(html_page(args.bytes))
        elif args.cmd == "probe":
            status, headers, body = fetch(args.url, args.gzip)
            r = probe_record(args.bench, args.scenario, args.proxy, status, headers, body, args.gzip)
            append_record(args.rows, r)
            print("probe %s %s: %d, %d bytes, encoding %s, hit %s %s" % (
                args.scenario, args.proxy, status, r["wire_bytes"], r["content_encoding"], r["hit"],
                r["cache_headers"]))
            if status != 200:
                raise ParseError("%s answered %d" % (args.url, status))
            if args.gzip and r["content_encoding"] != "gzip":
                raise ParseError("%s sent no gzip body to Accept-Encoding: gzip" % args.proxy)
            if args.expect_hit and not r["hit"]:
                raise ParseError("%s did not answer from its cache (headers %s)" % (args.proxy, r["cache_headers"]))
        elif args.cmd == "record":
            with open(args.wrk, encoding="utf-8", errors="replace") as f:
                wrk = parse_wrk(f.read())
            r = run_record(args.bench, args.scenario, args.proxy, args.round, wrk, args.ticks, args.clk_tck,
                           args.origin_requests, args.expect_hits)
            append_record(args.rows, r)
            print("round %d %-10s %-8s %10.0f req/s  %s CPU µs/req  %d errors  origin requests %s" % (
                args.round, args.scenario, args.proxy, r["rps"], r["proxy_cpu_us_per_req"], r["errors"],
                "-" if r["origin_requests"] is None else r["origin_requests"]))
        else:
            meta = dict(m.split("=", 1) for m in args.meta)
            if args.rows.endswith(".json"):
                # A results file written before: the report made again from
                # its records (and its meta, unless given).
                with open(args.rows, encoding="utf-8") as f:
                    doc = json.load(f)
                records, meta = doc["records"], meta or doc["meta"]
            else:
                records = read_records(args.rows)
            summary = summarize(records, args.bench)
            print(render(summary, args.bench, meta))
            if args.json:
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump({"bench": args.bench, "meta": meta, "summary": summary,
                               "records": [r for r in records if r["bench"] == args.bench]},
                              f, indent=1, sort_keys=True)
                    f.write("\n")
    except (OSError, ParseError, http.client.HTTPException) as e:
        print("vs_report.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
