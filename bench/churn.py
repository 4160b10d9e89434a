#!/usr/bin/env python3
"""Connection churn for bench/recorder.sh: opens and closes loopback TCP connections at a
steady rate (client and server end both closed at once), for a given time.

    churn.py --rate 1000 --secs 20 [--port 7000] [--hold-ms 0]

With --hold-ms H each connection stays open H ms before both ends close (so listings see it and
its owner is looked up); by default it closes at once.

Prints one line at the end: `connections=<n> secs=<t> rate=<n/t>`.
"""
import argparse
import collections
import socket
import struct
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--secs", type=float, default=20.0)
    ap.add_argument("--port", type=int, default=7000)
    ap.add_argument("--hold-ms", type=float, default=0.0)
    a = ap.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", a.port))
    listener.listen(1024)
    # Reset on close: no TIME_WAIT piles up over a long run.
    linger = struct.pack("ii", 1, 0)
    start = time.monotonic()
    n = 0
    total = int(a.rate * a.secs)
    held = collections.deque()
    hold = a.hold_ms / 1000.0
    while n < total:
        due = start + n / a.rate
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, c, s = held.popleft()
            c.close()
            s.close()
        if due > now:
            time.sleep(due - now)
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        c.connect(("127.0.0.1", a.port))
        s, _ = listener.accept()
        if hold > 0:
            held.append((time.monotonic() + hold, c, s))
        else:
            c.close()
            s.close()
        n += 1
    for _, c, s in held:
        c.close()
        s.close()
    took = time.monotonic() - start
    print(f"connections={n} secs={took:.2f} rate={n / took:.0f}", flush=True)


if __name__ == "__main__":
    main()
