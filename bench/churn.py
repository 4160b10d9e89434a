#!/usr/bin/env python3
"""Connection churn for bench/recorder.sh: opens and closes loopback TCP connections at a
steady rate (client and server end both closed at once), for a given time.

    churn.py --rate 1000 --secs 20 [--port 7000]

Prints one line at the end: `connections=<n> secs=<t> rate=<n/t>`.
"""
import argparse
import socket
import struct
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--secs", type=float, default=20.0)
    ap.add_argument("--port", type=int, default=7000)
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
    while n < total:
        due = start + n / a.rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        c.connect(("127.0.0.1", a.port))
        s, _ = listener.accept()
        c.close()
        s.close()
        n += 1
    took = time.monotonic() - start
    print(f"connections={n} secs={took:.2f} rate={n / took:.0f}", flush=True)


if __name__ == "__main__":
    main()
