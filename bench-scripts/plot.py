#!/usr/bin/env python3
"""plot.py — draw compare.png from the CSV that compare.sh writes.

    plot.py compare.csv compare.png

Two panels side by side: requests/s (left) and p99 latency (right), one
group of bars per request-rate scenario (keep-alive c64, c256 and through
the fast backend, oha c64, Connection: close) and one bar per proxy, at the median over the rounds,
with a line from the lowest to the highest round. The fixed-rate latency
scenario is drawn in the p99 panel only (its req/s is the rate offered),
and the CPU-capped scenarios (cap-ka-c64, cap-close) in the requests/s
panel only (their p99 is the cap's throttling, not latency). Body-size,
memory and scaling rows of the CSV are not drawn (they are in compare.md).
"""

import csv
import math
import statistics
import sys
from collections import defaultdict

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCENARIOS = [  # (csv scenario, x label)
    ("ka-c64", "keep-alive\nwrk c64"),
    ("ka-c256", "keep-alive\nwrk c256"),
    ("fast-ka-c64", "keep-alive c64\nfast backend"),
    ("oha-c64", "keep-alive\noha c64"),
    ("latency", "fixed rate\noha c64"),
    ("close", "Connection: close\nwrk c{conns}"),
    ("cap-ka-c64", "CPU-capped\nkeep-alive c64"),
    ("cap-close", "CPU-capped\nclose c{conns}"),
]
RPS_ONLY = ("cap-ka-c64", "cap-close")
P99_ONLY = ("latency",)
TARGETS = [  # (csv target, legend label, colour, hatch)
    ("backend", "backend direct (reference)", "#bbbbbb", "//"),
    ("nginx", "nginx, 1 worker", "#2ca02c", ""),
    ("haproxy", "HAProxy, 1 thread", "#1f77b4", ""),
    ("ringress", "ringress, 1 worker", "#d62728", ""),
]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    rps = defaultdict(list)
    p99 = defaultdict(list)
    conns = {}
    with open(src, newline="") as f:
        for row in csv.DictReader(f):
            if not row["rps"] or not row["p99_ms"]:
                continue
            key = (row["scenario"], row["target"])
            rps[key].append(float(row["rps"]))
            p99[key].append(float(row["p99_ms"]))
            conns[row["scenario"]] = row["conns"]

    scen = [(s, lab.format(conns=conns.get(s, "?"))) for s, lab in SCENARIOS
            if any((s, t) in rps for t, *_ in TARGETS)]
    targets = [t for t in TARGETS if any((s, t[0]) in rps for s, _ in scen)]
    if not scen or not targets:
        sys.exit("plot.py: no request-rate scenarios in " + src)

    fig, axes = plt.subplots(1, 2, figsize=(17, 5.4))
    width = 0.8 / len(targets)
    all_scen = scen
    for ax, data, title, unit in (
        (axes[0], rps, "Requests/s (median over rounds; higher is better)", "requests/s"),
        (axes[1], p99, "p99 latency (median over rounds; lower is better; log scale)", "p99 ms"),
    ):
        skip = P99_ONLY if data is rps else RPS_ONLY
        scen = [x for x in all_scen if x[0] not in skip]
        for i, (t, label, colour, hatch) in enumerate(targets):
            xs, ys, lo, hi = [], [], [], []
            for x, (s, _) in enumerate(scen):
                vals = data.get((s, t))
                if not vals:
                    continue
                m = statistics.median(vals)
                xs.append(x - 0.4 + width * (i + 0.5))
                ys.append(m)
                lo.append(m - min(vals))
                hi.append(max(vals) - m)
            bars = ax.bar(xs, ys, width, label=label, color=colour, hatch=hatch,
                          edgecolor="#555555", linewidth=0.5,
                          yerr=[lo, hi], capsize=2, error_kw={"elinewidth": 0.8})
            fmt = "{:,.0f}" if data is rps else "{:.1f}"
            for b, y, h in zip(bars, ys, hi):
                ax.annotate(fmt.format(y), (b.get_x() + b.get_width() / 2, y + h),
                            xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7, rotation=90)
        if data is p99:
            ax.set_yscale("log")
            shown = [v for (s, _), v in p99.items() if s in dict(scen)] or [[1.0]]
            low = min(min(v) for v in shown)
            top = max(max(v) for v in shown)
            # Room above the tallest bar for its label, in log space.
            ax.set_ylim(bottom=10 ** math.floor(math.log10(max(low, 1e-3) * 0.8)), top=top * 4)
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: "{:g}".format(v)))
        else:
            ax.margins(y=0.22)
        ax.set_xticks(range(len(scen)))
        ax.set_xticklabels([lab for _, lab in scen], fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle("ringress vs nginx vs HAProxy — one worker each, 100-byte responses "
                 "(bars: median; lines: min–max over rounds)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(dst, dpi=110)
    print("plot.py: wrote " + dst)


if __name__ == "__main__":
    main()
