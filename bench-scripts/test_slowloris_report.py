"""Unit tests of slowloris_report.py and slowloris_attack.summarize:
python3 -m unittest bench-scripts/test_slowloris_report.py"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slowloris_attack  # noqa: E402
import slowloris_report as r  # noqa: E402

WRK = """\
Running 8s test @ http://127.0.0.1:19382/small.txt
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   610.00us  120.00us   4.00ms   80.00%
    Req/Sec    50.00k     1.00k   52.00k    70.00%
  Latency Distribution
     50%  590.00us
     75%  650.00us
     90%  720.00us
     99%    1.10ms
  400000 requests in 8.00s, 100.00MB read
Requests/sec:  50000.00
Transfer/sec:     12.50MB
"""


class Parsing(unittest.TestCase):
    def test_p99_in_any_unit(self):
        self.assertAlmostEqual(r.parse_p99_ms(WRK), 1.10)
        self.assertAlmostEqual(r.parse_p99_ms(WRK.replace("1.10ms", "900.00us")), 0.9)
        self.assertAlmostEqual(r.parse_p99_ms(WRK.replace("1.10ms", "1.50s")), 1500.0)
        with self.assertRaises(r.ParseError):
            r.parse_p99_ms("Requests/sec: 1\n")

    def test_core(self):
        stat = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 5 0 5 50 0 0 0 0 0 0\ncpu1 1 2 3 40 4 5 6 7 0 0\n"
        self.assertEqual(r.parse_core(stat, 1), (24, 68))
        with self.assertRaises(r.ParseError):
            r.parse_core(stat, 2)

    def test_rss(self):
        self.assertEqual(r.parse_rss_kib("Name:\tx\nVmRSS:\t   2048 kB\n"), 2048)
        self.assertEqual(r.parse_rss_kib("Name:\tkthread\n"), 0)


class Summary(unittest.TestCase):
    def rows(self, attacked_rps, attacked_p99):
        attack = slowloris_attack.summarize([5.0, 5.1, 10.2], 3, 100, [1.0, 12.0], 10.0)
        attack.update(mode="slowloris", target_count=97)
        return [
            {"kind": "wrk", "target": "ringress", "phase": "calm", "rps": 1000.0, "p99_ms": 2.0, "errors": 0},
            {"kind": "wrk", "target": "ringress", "phase": "attacked", "rps": attacked_rps,
             "p99_ms": attacked_p99, "errors": 0},
            {"kind": "rss", "target": "ringress", "phase": "during", "kib": 4096},
            {"kind": "rss", "target": "ringress", "phase": "during", "kib": 8192},
            {"kind": "attack", "target": "ringress", "result": attack},
        ]

    def test_ratios_and_goal(self):
        s = r.summarize(self.rows(950.0, 3.0))["ringress"]
        self.assertAlmostEqual(s["rps_ratio"], 0.95)
        self.assertAlmostEqual(s["p99_ratio"], 1.5)
        self.assertTrue(s["goal_met"])
        self.assertEqual(s["rss"]["during"], 8192)
        self.assertFalse(r.summarize(self.rows(800.0, 3.0))["ringress"]["goal_met"])
        self.assertFalse(r.summarize(self.rows(950.0, 5.0))["ringress"]["goal_met"])

    def test_rounds_take_the_median(self):
        rows = self.rows(950.0, 3.0)
        rows.append({"kind": "wrk", "target": "ringress", "phase": "calm", "rps": 3000.0, "p99_ms": 4.0,
                     "errors": 0})
        rows.append({"kind": "wrk", "target": "ringress", "phase": "calm", "rps": 2000.0, "p99_ms": 1.0,
                     "errors": 0})
        s = r.summarize(rows)["ringress"]
        self.assertEqual(s["calm"]["rps"], 2000.0)
        self.assertEqual(s["calm"]["p99_ms"], 2.0)
        self.assertEqual(s["calm"]["rounds"], 3)
        self.assertAlmostEqual(s["rps_ratio"], 0.475)

    def test_attack_lifetimes(self):
        a = slowloris_attack.summarize([5.0, 5.1, 10.2, 11.5], 3, 100, [1.0, 12.0], 10.0)
        self.assertEqual(a["closed_by_server"], 7)
        self.assertEqual(a["refused_at_once"], 3)
        self.assertEqual(a["lifetime_max_s"], 11.5)
        # Over deadline + 1 s: one closed (11.5), one still open (12.0).
        self.assertEqual(a["outlived_closed"], 1)
        self.assertEqual(a["outlived_open"], 1)
        self.assertEqual(r.summarize(self.rows(950.0, 3.0))["ringress"]["outlived"], 1)

    def test_render_names_every_target_and_attack(self):
        text = r.render(r.summarize(self.rows(950.0, 3.0)))
        self.assertIn("| ringress | 1000 | 950 | 0.95 |", text)
        self.assertIn("| -/-/-/- | met |", text)
        self.assertIn("| ringress | slowloris x 97 |", text)


if __name__ == "__main__":
    unittest.main()
