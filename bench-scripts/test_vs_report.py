"""Unit tests of vs_report.py: python3 -m unittest bench-scripts/test_vs_report.py"""

import gzip
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vs_report  # noqa: E402

WRK_HIT = """\
Running 10s test @ http://127.0.0.1:19782/small.txt
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.12ms  201.04us   5.91ms   85.34%
    Req/Sec    57.71k     1.53k   60.82k    70.00%
  574296 requests in 10.00s, 180.20MB read
Requests/sec:  57422.70
Transfer/sec:     18.02MB
"""

WRK_ERRORS = """\
Running 2s test @ http://127.0.0.1:19782/64k.bin
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.12ms    2.04ms  40.11ms   90.00%
    Req/Sec    12.10k   600.00    13.00k    65.00%
  24200 requests in 2.00s, 1.48GB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  12099.50
Transfer/sec:    756.00MB
"""


class ParseWrk(unittest.TestCase):
    def test_report(self):
        self.assertEqual(vs_report.parse_wrk(WRK_HIT),
                         {"rps": 57422.70, "requests": 574296, "seconds": 10.0, "errors": 0})

    def test_socket_errors_and_non_2xx_are_summed(self):
        self.assertEqual(vs_report.parse_wrk(WRK_ERRORS)["errors"], 11)

    def test_not_a_report(self):
        for text in ("", "unable to connect to 127.0.0.1:19782 Connection refused\n",
                     WRK_HIT.replace("Requests/sec:", "Requests:")):
            with self.assertRaises(vs_report.ParseError):
                vs_report.parse_wrk(text)


class Ticks(unittest.TestCase):
    def stat(self, pid, comm, utime, stime):
        return "%d (%s) S 1 4242 4242 0 -1 4194560 500 0 0 0 %d %d 0 0 20 0 2 0 100 0 0\n" % (
            pid, comm, utime, stime)

    def test_comm_with_spaces_and_parentheses(self):
        self.assertEqual(vs_report.parse_proc_stat(self.stat(1, "a) b (c", 7, 8)), 15)

    def test_truncated(self):
        with self.assertRaises(vs_report.ParseError):
            vs_report.parse_proc_stat("4242 (nginx) S 1 2 3")

    def test_tree_sums_descendants_of_every_thread(self):
        # varnishd's manager (10, two threads) with its child (11), whose
        # thread 12 started 13; 14 is listed as a child but already gone.
        with tempfile.TemporaryDirectory() as proc:
            tree = {10: (["10", "15"], {"10": "11", "15": ""}), 11: (["11", "12"], {"11": "", "12": "13 14"}),
                    13: (["13"], {"13": ""})}
            for pid, (tasks, children) in tree.items():
                os.makedirs(os.path.join(proc, str(pid)))
                with open(os.path.join(proc, str(pid), "stat"), "w") as f:
                    f.write(self.stat(pid, "varnishd", pid, 1))
                for t in tasks:
                    os.makedirs(os.path.join(proc, str(pid), "task", t))
                    with open(os.path.join(proc, str(pid), "task", t, "children"), "w") as f:
                        f.write(children[t])
            self.assertEqual(vs_report.tree_ticks(10, proc), 11 + 12 + 14)


class IsHit(unittest.TestCase):
    def test_nginx(self):
        self.assertTrue(vs_report.is_hit("nginx", {"x-cache-status": "HIT"}))
        self.assertFalse(vs_report.is_hit("nginx", {"x-cache-status": "MISS"}))
        self.assertFalse(vs_report.is_hit("nginx", {}))

    def test_varnish_hit_has_two_ids(self):
        self.assertTrue(vs_report.is_hit("varnish", {"x-varnish": "32770 3"}))
        self.assertFalse(vs_report.is_hit("varnish", {"x-varnish": "32770"}))

    def test_ringress_cache_status(self):
        self.assertTrue(vs_report.is_hit("ringress", {"cache-status": "ringress; hit; ttl=3599"}))
        self.assertTrue(vs_report.is_hit("ringress", {"cache-status": "origin; fwd=uri-miss, ringress;hit"}))
        self.assertFalse(vs_report.is_hit("ringress", {"cache-status": "ringress; fwd=uri-miss; stored"}))
        self.assertFalse(vs_report.is_hit("ringress", {"cache-status": "other; hit"}))
        self.assertFalse(vs_report.is_hit("ringress", {}))

    def test_floor_has_no_cache(self):
        self.assertIsNone(vs_report.is_hit("floor", {"cache-status": "ringress; hit"}))


class HtmlPage(unittest.TestCase):
    def test_deterministic_size_and_compressible_like_html(self):
        page = vs_report.html_page(20000)
        self.assertEqual(page, vs_report.html_page(20000))
        self.assertTrue(20000 <= len(page) < 21000, len(page))
        self.assertTrue(page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>"))
        ratio = len(page) / len(gzip.compress(page.encode(), compresslevel=1))
        self.assertTrue(2.5 < ratio < 6, ratio)


def run(scenario, proxy, rnd, rps, us=10.0, origin=0, expect=True, bench="cache"):
    return {"kind": "run", "bench": bench, "scenario": scenario, "proxy": proxy, "round": rnd, "rps": rps,
            "requests": int(rps * 10), "seconds": 10.0, "errors": 0, "proxy_cpu_ticks": 0, "clk_tck": 100,
            "proxy_cpu_us_per_req": us, "origin_requests": origin, "expect_hits": expect}


def probe(scenario, proxy, nbytes, enc=None, hit=True, bench="cache"):
    return {"kind": "probe", "bench": bench, "scenario": scenario, "proxy": proxy, "status": 200,
            "wire_bytes": nbytes, "content_encoding": enc, "gzip_asked": enc is not None, "hit": hit,
            "cache_headers": {}}


class Summarize(unittest.TestCase):
    def records(self):
        recs = []
        for rnd, (n, v, r) in enumerate([(100, 200, 300), (110, 190, 330), (90, 210, 280)], 1):
            recs += [run("hit-small", "nginx", rnd, n), run("hit-small", "varnish", rnd, v),
                     run("hit-small", "ringress", rnd, r)]
        recs += [probe("hit-small", p, 100) for p in ("nginx", "varnish", "ringress")]
        return recs

    def test_medians_ratios_and_goals(self):
        s = vs_report.summarize(self.records(), "cache")
        cells = {(c["scenario"], c["proxy"]): c for c in s["cells"]}
        self.assertEqual(cells[("hit-small", "nginx")]["rps_median"], 100)
        self.assertEqual(cells[("hit-small", "ringress")]["rps_median"], 300)
        ratios = {(r["proxy"], r["baseline"]): r for r in s["ratios"]}
        self.assertAlmostEqual(ratios[("ringress", "nginx")]["ratio"], 3.0)
        self.assertTrue(ratios[("ringress", "nginx")]["met"])
        self.assertAlmostEqual(ratios[("ringress", "varnish")]["ratio"], 1.5)
        self.assertEqual(ratios[("ringress", "varnish")]["goal"], 1.0)
        self.assertAlmostEqual(ratios[("ringress", "varnish")]["cpu_ratio"], 1.0)
        self.assertTrue(all(h["ok"] for h in s["hit_checks"]))

    def test_goal_missed_and_missing_ringress(self):
        recs = [run("hit-64k", "nginx", 1, 100, us=30), run("hit-64k", "ringress", 1, 140, us=20),
                run("hit-64k", "varnish", 1, 100)]
        ratios = {(r["scenario"], r["baseline"]): r for r in vs_report.summarize(recs, "cache")["ratios"]}
        self.assertFalse(ratios[("hit-64k", "nginx")]["met"])
        # Fewer req/s than the goal, but 1.5 x less CPU per request.
        self.assertAlmostEqual(ratios[("hit-64k", "nginx")]["cpu_ratio"], 1.5)
        self.assertTrue(ratios[("hit-64k", "varnish")]["met"])
        # Only the nginx and varnish halves: the goals are listed, unmet is unknown.
        recs = [run("hit-small", "nginx", 1, 100), run("hit-small", "varnish", 1, 120)]
        s = vs_report.summarize(recs, "cache")
        self.assertEqual({r["ratio"] for r in s["ratios"]}, {None})
        self.assertIn("| hit-small | ringress / nginx | n/a | ≥ 1.5 | n/a | n/a |", vs_report.render(s, "cache", {}))

    def test_floor_rows_carry_no_goal(self):
        recs = [run("hit-small", "nginx", 1, 100, us=10), run("hit-small", "ringress", 1, 140, us=7),
                run("hit-small", "floor", 1, 145, us=6), probe("hit-small", "floor", 100, hit=None)]
        s = vs_report.summarize(recs, "cache")
        ratios = {(r["proxy"], r["baseline"]): r for r in s["ratios"]}
        self.assertAlmostEqual(ratios[("floor", "nginx")]["ratio"], 1.45)
        self.assertIsNone(ratios[("floor", "nginx")]["met"])
        self.assertAlmostEqual(ratios[("ringress", "floor")]["cpu_ratio"], 6 / 7)
        self.assertIsNone(ratios[("ringress", "floor")]["goal"])
        # The goals are still ringress's alone.
        self.assertFalse(ratios[("ringress", "nginx")]["met"])
        self.assertTrue(all(h["ok"] for h in s["hit_checks"]))
        text = vs_report.render(s, "cache", {})
        self.assertIn("| hit-small | floor / nginx | 1.450 | - | n/a | 1.667 |", text)
        self.assertIn("ceiling of any req/s ratio", text)

    def test_origin_requests_in_a_hit_run_fail_the_hit_check(self):
        recs = [run("hit-small", "nginx", 1, 100, origin=3), run("hit-small", "nginx", 2, 100)]
        s = vs_report.summarize(recs, "cache")
        self.assertEqual(s["hit_checks"][0]["origin_requests"], 3)
        self.assertFalse(s["hit_checks"][0]["ok"])
        self.assertIn("**hit-small nginx was not all hits**", vs_report.render(s, "cache", {}))

    def test_pass_through_runs_are_not_hit_checked(self):
        recs = [run("gzip", "nginx", 1, 100, origin=None, expect=False, bench="gzip")]
        self.assertEqual(vs_report.summarize(recs, "gzip")["hit_checks"], [])

    def test_gzip_sizes(self):
        recs = [run("gzip", "nginx", 1, 100, origin=None, expect=False, bench="gzip"),
                run("gzip", "ringress", 1, 160, origin=None, expect=False, bench="gzip"),
                probe("gzip", "nginx", 6000, "gzip", bench="gzip"),
                probe("gzip", "ringress", 6700, "gzip", bench="gzip")]
        s = vs_report.summarize(recs, "gzip")
        self.assertEqual(len(s["size_checks"]), 1)
        self.assertFalse(s["size_checks"][0]["comparable"])
        self.assertIn("NOT comparable", vs_report.render(s, "gzip", {}))
        recs[-1]["wire_bytes"] = 6300
        self.assertTrue(vs_report.summarize(recs, "gzip")["size_checks"][0]["comparable"])

    def test_other_bench_is_ignored(self):
        recs = self.records() + [run("gzip", "nginx", 1, 1, bench="gzip")]
        self.assertEqual({c["scenario"] for c in vs_report.summarize(recs, "cache")["cells"]}, {"hit-small"})


class ProbeAndMain(unittest.TestCase):
    def test_probe_record_of_a_gzip_hit(self):
        page = vs_report.html_page(20000).encode()
        body = gzip.compress(page, compresslevel=1)
        r = vs_report.probe_record("gzip", "gzip-hit", "ringress", 200,
                                   {"content-encoding": "gzip", "cache-status": "ringress; hit"}, body, True)
        self.assertEqual((r["wire_bytes"], r["identity_bytes"], r["hit"]), (len(body), len(page), True))

    def test_record_and_report_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            rows, wrk, out = (os.path.join(d, n) for n in ("rows.jsonl", "wrk.txt", "out.json"))
            with open(wrk, "w") as f:
                f.write(WRK_HIT)
            for proxy in ("nginx", "ringress"):
                self.assertEqual(vs_report.main([
                    "record", rows, "--bench", "cache", "--scenario", "hit-small", "--proxy", proxy,
                    "--round", "1", "--wrk", wrk, "--ticks", "500", "--clk-tck", "100",
                    "--origin-requests", "0", "--expect-hits"]), 0)
            self.assertEqual(vs_report.main(["report", rows, "--bench", "cache", "--json", out,
                                             "--meta", "title=t", "--meta", "cpus=proxy 0"]), 0)
            with open(out) as f:
                doc = json.load(f)
            self.assertEqual(doc["meta"], {"title": "t", "cpus": "proxy 0"})
            self.assertEqual(len(doc["records"]), 2)
            # 5 s of CPU over 574296 requests.
            self.assertEqual(doc["records"][0]["proxy_cpu_us_per_req"], round(5e6 / 574296, 3))
            self.assertAlmostEqual(doc["summary"]["ratios"][0]["ratio"], 1.0)
            # 57,422.7 req/s × 8.706 µs: the core was about half busy.
            self.assertAlmostEqual(doc["summary"]["cells"][0]["proxy_core_busy_pct_median"], 50.0, delta=0.1)
            # The report again from the results file alone.
            again = os.path.join(d, "again.json")
            self.assertEqual(vs_report.main(["report", out, "--bench", "cache", "--json", again]), 0)
            with open(again) as f:
                self.assertEqual(json.load(f), doc)

    def test_record_rejects_a_failed_wrk(self):
        with tempfile.TemporaryDirectory() as d:
            wrk = os.path.join(d, "wrk.txt")
            with open(wrk, "w") as f:
                f.write("unable to connect\n")
            self.assertEqual(vs_report.main([
                "record", os.path.join(d, "rows.jsonl"), "--bench", "cache", "--scenario", "hit-small",
                "--proxy", "nginx", "--round", "1", "--wrk", wrk, "--ticks", "1", "--clk-tck", "100"]), 1)


if __name__ == "__main__":
    unittest.main()
