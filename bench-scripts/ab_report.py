#!/usr/bin/env python3
"""ab_report.py: parsing, per-run records and the report of ab.sh.

ab.sh measures; this file reads what it measured and reports. Only the
standard library.

    ab_report.py ticks PID
        utime + stime of PID (all its threads), in clock ticks, from
        /proc/PID/stat.
    ab_report.py record CSV --scenario S --round R --build A|B
                 --wrk FILE --ticks N --clk-tck HZ
        parses wrk's output FILE, appends one row to CSV (header first if
        the file is new or empty) and prints a one-line summary. Exits 1
        when FILE is not a wrk report.
    ab_report.py report CSV --a-label TEXT --b-label TEXT [--band-pct 2]
        prints the markdown table: per scenario and build the medians over
        the rounds of req/s and of the proxy's CPU time per request, the
        B/A ratio of those medians, the median (and range) of the per-pair
        B/A ratios, and whether B is within the band of A.

A pair is one round of one scenario: A and B measured back to back, so
that whatever else the machine was doing then weighs on both. The verdict
uses the median of the per-pair ratios for that reason; the ratio of the
medians is shown beside it, and when the two disagree about the band the
verdict says the result is noisy.
"""

import argparse
import csv
import os
import re
import statistics
import sys

FIELDS = ["scenario", "round", "build", "rps", "requests", "errors", "cpu_ticks", "clk_tck", "cpu_us_per_req"]

# Scenarios in the order ab.sh runs them, with the titles the report uses.
SCENARIO_TITLES = {
    "ka-c64": "keep-alive, nginx backend, wrk -t1 -c64",
    "fast-ka-c64": "proxy-bound keep-alive, fast backend, wrk -t1 -c64",
    "close": "a new connection per request (Connection: close), nginx backend, wrk -t1",
}


class ParseError(ValueError):
    pass


def parse_wrk(text):
    """wrk's report -> {"rps", "requests", "errors"}.

    errors = socket errors (connect, read, write, timeout) + non-2xx/3xx
    responses. Raises ParseError when req/s or the request count is missing.
    """
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)\s*$", text, re.M)
    nreq = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if not rps or not nreq:
        raise ParseError("not a wrk report (no 'Requests/sec:' or 'N requests in')")
    errors = 0
    sock = re.search(r"^\s*Socket errors:(.*)$", text, re.M)
    if sock:
        errors += sum(int(n) for n in re.findall(r"\b(\d+)\b", sock.group(1)))
    non2xx = re.search(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", text, re.M)
    if non2xx:
        errors += int(non2xx.group(1))
    return {"rps": float(rps.group(1)), "requests": int(nreq.group(1)), "errors": errors}


def parse_proc_stat(text):
    """/proc/PID/stat -> utime + stime (fields 14 and 15), clock ticks.

    comm (field 2) may hold spaces and parentheses, so the fields are
    counted after the last ')'.
    """
    _, sep, rest = text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 13:
        raise ParseError("not a /proc/PID/stat line")
    # fields[0] is field 3 (state): field n is fields[n - 3].
    return int(fields[11]) + int(fields[12])


def cpu_us_per_req(ticks, clk_tck, requests):
    if requests <= 0 or clk_tck <= 0:
        return None
    return ticks * 1e6 / clk_tck / requests


def make_row(scenario, round_, build, wrk, ticks, clk_tck):
    us = cpu_us_per_req(ticks, clk_tck, wrk["requests"])
    return {
        "scenario": scenario,
        "round": round_,
        "build": build,
        "rps": "%.2f" % wrk["rps"],
        "requests": wrk["requests"],
        "errors": wrk["errors"],
        "cpu_ticks": ticks,
        "clk_tck": clk_tck,
        "cpu_us_per_req": "" if us is None else "%.3f" % us,
    }


def append_row(path, row):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# Measures: (column, label, higher_is_better, format).
MEASURES = [
    ("rps", "req/s", True, "{:,.0f}"),
    ("cpu_us_per_req", "proxy CPU µs/req", False, "{:.2f}"),
]


def classify(ratio, band_pct, higher_is_better):
    """B/A ratio -> 'within', 'better' or 'worse' (band_pct: the band, %)."""
    if ratio is None:
        return None
    change = ratio - 1.0
    if abs(change) <= band_pct / 100.0 + 1e-12:
        return "within"
    return "better" if (change > 0) == higher_is_better else "worse"


def verdict_text(pair_ratio, medians_ratio, band_pct, higher_is_better):
    v = classify(pair_ratio, band_pct, higher_is_better)
    if v is None:
        return "n/a"
    if v == "within":
        text = "within %g %%" % band_pct
    else:
        text = "**B %s by %.1f %%**" % (v, abs(pair_ratio - 1.0) * 100)
    if classify(medians_ratio, band_pct, higher_is_better) != v:
        text += " (ratio of medians disagrees: noisy)"
    return text


def _value(row, column):
    v = row.get(column, "")
    return float(v) if v not in ("", None) else None


def summarize(rows, band_pct):
    """Rows -> one dict per (scenario, measure), in run order."""
    scenarios = []
    for r in rows:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    out = []
    for s in scenarios:
        by_round = {}
        errors = {"A": 0, "B": 0}
        for r in rows:
            if r["scenario"] == s:
                by_round.setdefault(int(r["round"]), {})[r["build"]] = r
                errors[r["build"]] += int(r["errors"])
        for column, label, higher, fmt in MEASURES:
            vals = {"A": [], "B": []}
            pairs = []
            for rnd in sorted(by_round):
                got = {b: _value(row, column) for b, row in by_round[rnd].items()}
                for b in ("A", "B"):
                    if got.get(b) is not None:
                        vals[b].append(got[b])
                if got.get("A") and got.get("B") is not None:
                    pairs.append(got["B"] / got["A"])
            med = {b: statistics.median(v) if v else None for b, v in vals.items()}
            med_ratio = med["B"] / med["A"] if med["A"] and med["B"] is not None else None
            pair_med = statistics.median(pairs) if pairs else None
            b_ahead = sum(1 for p in pairs if classify(p, 0, higher) == "better")
            out.append({
                "scenario": s, "measure": label, "fmt": fmt, "a": med["A"], "b": med["B"],
                "medians_ratio": med_ratio, "pair_median": pair_med, "pairs": pairs,
                "b_ahead": b_ahead, "errors": errors,
                "class": classify(pair_med, band_pct, higher),
                "verdict": verdict_text(pair_med, med_ratio, band_pct, higher),
            })
    return out


def _num(fmt, v):
    return "n/a" if v is None else fmt.format(v)


def _ratio(v):
    return "n/a" if v is None else "%.3f" % v


def render(summary, a_label, b_label, band_pct):
    lines = [
        "A = %s" % a_label,
        "B = %s" % b_label,
        "",
        "| scenario | measure | A median | B median | B/A of medians | B/A per pair: median [min–max] | B ahead in | verdict (per-pair median, ±%g %%) |" % band_pct,
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in summary:
        rng = "[%.3f–%.3f]" % (min(m["pairs"]), max(m["pairs"])) if m["pairs"] else ""
        lines.append("| %s | %s | %s | %s | %s | %s %s | %d/%d pairs | %s |" % (
            m["scenario"], m["measure"], _num(m["fmt"], m["a"]), _num(m["fmt"], m["b"]),
            _ratio(m["medians_ratio"]), _ratio(m["pair_median"]), rng,
            m["b_ahead"], len(m["pairs"]), m["verdict"]))
    lines.append("")
    for s in dict.fromkeys(m["scenario"] for m in summary):
        title = SCENARIO_TITLES.get(s, s)
        errs = next(m["errors"] for m in summary if m["scenario"] == s)
        note = "- %s: %s." % (s, title)
        if errs["A"] or errs["B"]:
            note += " wrk errors (socket errors + non-2xx/3xx), all rounds: A %d, B %d." % (errs["A"], errs["B"])
        lines.append(note)
    outside = ["%s %s" % (m["scenario"], m["measure"]) for m in summary if m["class"] not in ("within", None)]
    lines.append("")
    if not summary:
        lines.append("No runs recorded.")
    elif outside:
        lines.append("**B is outside ±%g %% of A on: %s.**" % (band_pct, ", ".join(outside)))
    else:
        lines.append("B is within ±%g %% of A on every measure." % band_pct)
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("ticks")
    t.add_argument("pid", type=int)
    rec = sub.add_parser("record")
    rec.add_argument("csv")
    rec.add_argument("--scenario", required=True)
    rec.add_argument("--round", type=int, required=True)
    rec.add_argument("--build", choices=["A", "B"], required=True)
    rec.add_argument("--wrk", required=True)
    rec.add_argument("--ticks", type=int, required=True)
    rec.add_argument("--clk-tck", type=int, required=True)
    rep = sub.add_parser("report")
    rep.add_argument("csv")
    rep.add_argument("--a-label", required=True)
    rep.add_argument("--b-label", required=True)
    rep.add_argument("--band-pct", type=float, default=2.0)
    args = p.parse_args(argv)

    try:
        if args.cmd == "ticks":
            with open("/proc/%d/stat" % args.pid, encoding="utf-8", errors="replace") as f:
                print(parse_proc_stat(f.read()))
        elif args.cmd == "record":
            with open(args.wrk, encoding="utf-8", errors="replace") as f:
                wrk = parse_wrk(f.read())
            row = make_row(args.scenario, args.round, args.build, wrk, args.ticks, args.clk_tck)
            append_row(args.csv, row)
            print("round %d %-11s %s: %10.0f req/s  %s proxy CPU µs/req  %d requests  %d errors" % (
                args.round, args.scenario, args.build, wrk["rps"], row["cpu_us_per_req"] or "n/a",
                wrk["requests"], wrk["errors"]))
        else:
            print(render(summarize(read_rows(args.csv), args.band_pct), args.a_label, args.b_label, args.band_pct))
    except (OSError, ParseError) as e:
        print("ab_report.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
