"""Unit tests of ab_report.py: python3 -m unittest bench-scripts/test_ab_report.py"""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_report  # noqa: E402

WRK_KA = """\
Running 8s test @ http://127.0.0.1:19583/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.85ms  301.04us   6.91ms   85.34%
    Req/Sec    34.71k     1.53k   36.82k    70.00%
  Latency Distribution
     50%    1.81ms
     75%    1.94ms
     90%    2.13ms
     99%    2.90ms
  276296 requests in 8.00s, 116.20MB read
Requests/sec:  34522.70
Transfer/sec:     14.52MB
"""

WRK_ERRORS = """\
Running 2s test @ http://127.0.0.1:19583/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.12ms    2.04ms  40.11ms   90.00%
    Req/Sec    12.10k   600.00    13.00k    65.00%
  24200 requests in 2.00s, 4.10MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  12099.50
Transfer/sec:      2.05MB
"""


class ParseWrk(unittest.TestCase):
    def test_keep_alive_report(self):
        self.assertEqual(ab_report.parse_wrk(WRK_KA), {"rps": 34522.70, "requests": 276296, "errors": 0})

    def test_socket_errors_and_non_2xx_are_summed(self):
        self.assertEqual(ab_report.parse_wrk(WRK_ERRORS)["errors"], 11)

    def test_not_a_report(self):
        for text in ("", "unable to connect to 127.0.0.1:19583 Connection refused\n",
                     WRK_KA.replace("Requests/sec:", "Requests:")):
            with self.assertRaises(ab_report.ParseError):
                ab_report.parse_wrk(text)


class ParseProcStat(unittest.TestCase):
    def stat(self, comm, utime, stime):
        return "4242 (%s) S 1 4242 4242 0 -1 4194560 500 0 0 0 %d %d 0 0 20 0 2 0 100 0 0\n" % (comm, utime, stime)

    def test_utime_plus_stime(self):
        self.assertEqual(ab_report.parse_proc_stat(self.stat("ringress", 120, 345)), 465)

    def test_comm_with_spaces_and_parentheses(self):
        self.assertEqual(ab_report.parse_proc_stat(self.stat("a) b (c", 7, 8)), 15)

    def test_truncated(self):
        with self.assertRaises(ab_report.ParseError):
            ab_report.parse_proc_stat("4242 (ringress) S 1 2 3")


def rows(scenario, pairs):
    """pairs: [(a_rps, a_us, b_rps, b_us), ...], one per round."""
    out = []
    for i, (a_rps, a_us, b_rps, b_us) in enumerate(pairs, 1):
        for build, rps, us in (("A", a_rps, a_us), ("B", b_rps, b_us)):
            out.append({"scenario": scenario, "round": str(i), "build": build, "rps": str(rps),
                        "requests": "1000", "errors": "0", "cpu_ticks": "", "clk_tck": "100",
                        "cpu_us_per_req": str(us)})
    return out


class Summarize(unittest.TestCase):
    def by_measure(self, summary):
        return {(m["scenario"], m["measure"]): m for m in summary}

    def test_medians_and_pair_ratios(self):
        s = self.by_measure(ab_report.summarize(rows("ka-c64", [
            (100, 10, 101, 10.0), (200, 10, 198, 10.1), (150, 10, 153, 9.9)]), 2))
        rps = s[("ka-c64", "req/s")]
        self.assertEqual((rps["a"], rps["b"]), (150, 153))
        self.assertAlmostEqual(rps["medians_ratio"], 1.02)
        self.assertAlmostEqual(rps["pair_median"], 1.01)
        self.assertEqual(rps["b_ahead"], 2)
        self.assertEqual(rps["class"], "within")
        cpu = s[("ka-c64", "proxy CPU µs/req")]
        self.assertAlmostEqual(cpu["pair_median"], 1.0)
        self.assertEqual(cpu["b_ahead"], 1)

    def test_pairs_cancel_a_drifting_machine(self):
        # The machine slows down round by round; B is 5 % slower in every
        # pair, which the pairs show though the two medians' ranges overlap.
        s = self.by_measure(ab_report.summarize(rows("close", [
            (1000, 20, 950, 21), (800, 25, 760, 26.25), (600, 30, 570, 31.5)]), 2))
        rps = s[("close", "req/s")]
        self.assertAlmostEqual(rps["pair_median"], 0.95)
        self.assertEqual(rps["class"], "worse")
        self.assertIn("B worse by 5.0 %", rps["verdict"])
        self.assertEqual(s[("close", "proxy CPU µs/req")]["class"], "worse")

    def test_lower_cpu_is_better(self):
        self.assertEqual(ab_report.classify(0.9, 2, higher_is_better=False), "better")
        self.assertEqual(ab_report.classify(0.9, 2, higher_is_better=True), "worse")
        self.assertEqual(ab_report.classify(1.02, 2, higher_is_better=True), "within")
        self.assertIsNone(ab_report.classify(None, 2, True))

    def test_disagreeing_ratios_are_called_noisy(self):
        text = ab_report.verdict_text(1.03, 1.01, 2, True)
        self.assertIn("B better by 3.0 %", text)
        self.assertIn("noisy", text)

    def test_missing_cpu_figure(self):
        r = rows("ka-c64", [(100, 10, 100, 10)])
        r[1]["cpu_us_per_req"] = ""
        cpu = self.by_measure(ab_report.summarize(r, 2))[("ka-c64", "proxy CPU µs/req")]
        self.assertIsNone(cpu["b"])
        self.assertEqual(cpu["pairs"], [])
        self.assertEqual(cpu["verdict"], "n/a")


class RecordAndReport(unittest.TestCase):
    def test_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            csv_path = os.path.join(d, "runs.csv")
            wrk_path = os.path.join(d, "run.txt")
            with open(wrk_path, "w") as f:
                f.write(WRK_KA)
            for build, ticks in (("A", 500), ("B", 500)):
                self.assertEqual(ab_report.main([
                    "record", csv_path, "--scenario", "ka-c64", "--round", "1", "--build", build,
                    "--wrk", wrk_path, "--ticks", str(ticks), "--clk-tck", "100"]), 0)
            got = ab_report.read_rows(csv_path)
            self.assertEqual(len(got), 2)
            # 5 s of CPU over 276296 requests.
            self.assertEqual(got[0]["cpu_us_per_req"], "%.3f" % (5e6 / 276296))
            text = ab_report.render(ab_report.summarize(got, 2), "x", "y", 2)
            self.assertIn("| ka-c64 | req/s | 34,523 | 34,523 | 1.000 | 1.000 [1.000–1.000] | 0/1 pairs | within 2 % |", text)
            self.assertIn("B is within ±2 % of A on every measure.", text)

    def test_record_rejects_a_failed_wrk(self):
        with tempfile.TemporaryDirectory() as d:
            wrk_path = os.path.join(d, "run.txt")
            with open(wrk_path, "w") as f:
                f.write("unable to connect\n")
            self.assertEqual(ab_report.main([
                "record", os.path.join(d, "runs.csv"), "--scenario", "close", "--round", "1",
                "--build", "A", "--wrk", wrk_path, "--ticks", "1", "--clk-tck", "100"]), 1)


if __name__ == "__main__":
    unittest.main()
