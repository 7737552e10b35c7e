#!/usr/bin/env python3
"""idle_conns.py — open many idle HTTP/1.1 keep-alive connections to a proxy.

Used by compare.sh's memory scenario. Only the standard library.

    idle_conns.py HOST PORT COUNT READY_FILE [--batch 200] [--path /]
                  [--open-timeout 90] [--hold-max 120]

1. Opens COUNT TCP connections to HOST:PORT, BATCH at a time. On each it
   sends one `GET PATH HTTP/1.1` (keep-alive) and reads the whole response
   (head plus Content-Length body); anything but a 200 with a
   Content-Length is an error. Batching keeps the proxy's upstream
   concurrency (and so its upstream connection count) at most BATCH.
2. Writes "open N" to READY_FILE and holds every connection idle, sending
   nothing, until it gets SIGUSR1 or SIGTERM, or HOLD_MAX seconds pass.
3. Then checks, without blocking, how many connections the server has
   closed meanwhile, prints "held N closed_by_server M", and closes them all
   with SO_LINGER 0 (an RST, so no TIME_WAIT is left behind to use up
   local ports for later runs).

Exit status: 0 on success, 1 if the open phase failed or timed out.
Every wait is bounded: OPEN_TIMEOUT for the open phase, HOLD_MAX for the hold.
"""

import argparse
import errno
import os
import selectors
import signal
import socket
import struct
import sys
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("count", type=int)
    p.add_argument("ready_file")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--path", default="/")
    p.add_argument("--open-timeout", type=float, default=90.0)
    p.add_argument("--hold-max", type=float, default=120.0)
    return p.parse_args()


class Conn:
    __slots__ = ("sock", "state", "buf", "need")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connect"  # connect -> read -> done
        self.buf = b""
        self.need = -1  # total bytes of head + body once the head is known


def response_complete(c):
    """Parse c.buf; return True when the whole response is in. Raises on a
    response that is not 200 or has no Content-Length."""
    if c.need < 0:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(c.buf) > 65536:
                raise ValueError("response head too large")
            return False
        head = c.buf[:end].decode("latin-1").split("\r\n")
        status = head[0].split(" ", 2)
        if len(status) < 2 or status[1] != "200":
            raise ValueError("unexpected status line: %r" % head[0])
        length = None
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise ValueError("response without Content-Length")
        c.need = end + 4 + length
    return len(c.buf) >= c.need


def open_batch(host, port, n, request, deadline):
    """Open n connections, send the request on each, read each response.
    Returns the list of open sockets."""
    sel = selectors.DefaultSelector()
    conns = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex((host, port))
            if rc not in (0, errno.EINPROGRESS):
                s.close()
                raise OSError(rc, "connect: " + os.strerror(rc))
            c = Conn(s)
            conns.append(c)
            sel.register(s, selectors.EVENT_WRITE, c)
        pending = n
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("open phase timed out")
            for key, _ in sel.select(timeout=min(left, 1.0)):
                c = key.data
                s = c.sock
                if c.state == "connect":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, "connect: " + os.strerror(err))
                    s.send(request)  # tiny, fits the empty send buffer
                    c.state = "read"
                    sel.modify(s, selectors.EVENT_READ, c)
                else:
                    data = s.recv(65536)
                    if not data:
                        raise ConnectionError("server closed a connection before its response ended")
                    c.buf += data
                    if response_complete(c):
                        c.state = "done"
                        c.buf = b""
                        sel.unregister(s)
                        pending -= 1
        return [c.sock for c in conns]
    except BaseException:
        for c in conns:
            c.sock.close()
        raise
    finally:
        sel.close()


def main():
    a = parse_args()
    stop = {"flag": False}

    def on_signal(_signo, _frame):
        stop["flag"] = True

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: idle_conns\r\n\r\n"
               % (a.path, a.host, a.port)).encode()
    socks = []
    t0 = time.monotonic()
    deadline = t0 + a.open_timeout
    try:
        while len(socks) < a.count:
            if stop["flag"]:
                raise InterruptedError("stopped during the open phase")
            socks += open_batch(a.host, a.port, min(a.batch, a.count - len(socks)), request, deadline)
    except (OSError, ValueError, TimeoutError, ConnectionError, InterruptedError) as e:
        print("error after %d connections: %s" % (len(socks), e), flush=True)
        for s in socks:
            s.close()
        return 1
    print("open %d in %.1f s" % (len(socks), time.monotonic() - t0), flush=True)
    with open(a.ready_file + ".tmp", "w") as f:
        f.write("open %d\n" % len(socks))
    os.rename(a.ready_file + ".tmp", a.ready_file)

    hold_end = time.monotonic() + a.hold_max
    while not stop["flag"] and time.monotonic() < hold_end:
        time.sleep(0.05)

    closed = 0
    linger = struct.pack("ii", 1, 0)
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass  # still open and idle, as expected
        except OSError:
            closed += 1
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        s.close()
    print("held %d closed_by_server %d" % (len(socks), closed), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
