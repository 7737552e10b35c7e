"""Unit tests of sharing_report.py: python3 -m unittest bench-scripts/test_sharing_report.py"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sharing_report as sr  # noqa: E402

WRK = """Running 2m test @ http://127.0.0.1:19651
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms    2.00ms  40.00ms   90.00%
    Req/Sec    10.00k     1.00k   12.00k    70.00%
  100032 requests in 5.10s, 1.00GB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  19614.12
Transfer/sec:    200.00MB
zipf: requests=100032 hits=91000 other=4
"""

METRICS = """# HELP ringress_cache_bytes Bytes stored in the zone (heads, bodies, keys).
# TYPE ringress_cache_bytes gauge
ringress_cache_bytes{zone="objs"} 1000
ringress_cache_bytes{zone="other"} 24
ringress_cache_objects{zone="objs"} 10
ringress_cache_requests_total{route="0",result="hit"} 90
ringress_cache_requests_total{route="0",result="miss"} 10
ringress_cache_requests_total{route="1",result="hit"} 5
ringress_requests_total{route="0"} 105
"""


class ParseWrk(unittest.TestCase):
    def test_fields(self):
        w = sr.parse_wrk(WRK)
        self.assertEqual(w["requests"], 100032)
        self.assertAlmostEqual(w["seconds"], 5.10)
        self.assertEqual(w["errors"], 2 + 1 + 4)
        self.assertEqual(w["zipf"], {"requests": "100032", "hits": "91000", "other": "4"})

    def test_units_and_no_errors(self):
        w = sr.parse_wrk("  12 requests in 900.00ms, 1KB read\n")
        self.assertAlmostEqual(w["seconds"], 0.9)
        self.assertEqual(w["errors"], 0)
        self.assertEqual(w["zipf"], {})

    def test_no_requests_line(self):
        with self.assertRaises(ValueError):
            sr.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


class ParseMetrics(unittest.TestCase):
    def test_cache_totals_sum_zones_and_routes(self):
        t = sr.cache_totals(sr.parse_metrics(METRICS))
        self.assertEqual(t["bytes"], 1024)
        self.assertEqual(t["objects"], 10)
        self.assertEqual(t["results"], {"hit": 95, "miss": 10})

    def test_labels_with_escapes(self):
        s = sr.parse_metrics('m{a="x\\"y",b="z"} 3\n')
        self.assertEqual(s, [("m", {"a": 'x\\"y', "b": "z"}, 3.0)])


class ExpectedFetches(unittest.TestCase):
    def test_one_request_is_one_fetch(self):
        self.assertAlmostEqual(sr.expected_fetches(50, 1.0, 1, 1), 1.0)

    def test_many_requests_fetch_every_key_once_per_cache(self):
        self.assertAlmostEqual(sr.expected_fetches(10, 1.0, 1e6, 1), 10.0, places=6)
        self.assertAlmostEqual(sr.expected_fetches(10, 1.0, 1e6, 2), 20.0, places=6)

    def test_uniform_two_keys_two_requests(self):
        # Two uniform keys, two requests: 1 + P(second differs) = 1.5.
        self.assertAlmostEqual(sr.expected_fetches(2, 0.0, 2, 1), 1.5)


class RecordAndTable(unittest.TestCase):
    def write_run(self, d, setup, procs, fetches, bytes_each):
        run = os.path.join(d, setup)
        os.makedirs(run)
        files = {"objects": "100 409600 1.0\n", "origin-fetches": f"{fetches}\n", "wrk-1.out": WRK}
        for i in range(procs):
            files[f"metrics-{i}.txt"] = (
                f'ringress_cache_bytes{{zone="objs"}} {bytes_each}\n'
                f'ringress_cache_objects{{zone="objs"}} 50\n'
            )
            files[f"rss-{i}.txt"] = "6000 10000\n"
        for name, text in files.items():
            with open(os.path.join(run, name), "w", encoding="utf-8") as f:
                f.write(text)
        return sr.record(run, "big", setup)

    def test_record_sums_processes(self):
        with tempfile.TemporaryDirectory() as d:
            r = self.write_run(d, "B", 2, 200, 2048)
        self.assertEqual(r["processes"], 2)
        self.assertEqual(r["cache_bytes"], 4096)
        self.assertEqual(r["cache_objects"], 100)
        self.assertEqual(r["rss_idle_kib"], 12000)
        self.assertEqual(r["rss_end_kib"], 20000)
        self.assertEqual(r["client_hits"], 91000)
        self.assertAlmostEqual(r["hit_ratio"], 1 - 200 / 100032)
        json.dumps(r)

    def test_table_ratios_against_c(self):
        with tempfile.TemporaryDirectory() as d:
            rows = [
                self.write_run(d, "A", 1, 100, 2048),
                self.write_run(d, "B", 2, 200, 2048),
                self.write_run(d, "C", 1, 100, 2048),
            ]
        out = sr.table(rows)
        self.assertIn("### zone budget big", out)
        self.assertIn("B/C: fetches 2.00x, stored bytes 2.00x, objects 2.00x, RSS growth 2.00x", out)
        self.assertIn("A/C: fetches 1.00x", out)
        self.assertEqual(out.count("| B: before"), 1)
        # Objects (50 per process) differ from fetches: evictions, no model line.
        self.assertNotIn("Zipf model", out)

    def test_model_line_without_eviction(self):
        with tempfile.TemporaryDirectory() as d:
            rows = [self.write_run(d, "C", 1, 50, 2048)]
        self.assertIn("Zipf model, no eviction", sr.table(rows))


if __name__ == "__main__":
    unittest.main()
