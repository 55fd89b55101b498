#!/usr/bin/env python3
"""The udpkv client of colo_net_test.py and bench/bench_colo_net.py; runs
inside the namespace they make (ip netns exec NS ...).

    colo_net_client.py IP mix  [options]   PUT then GET of the same key,
                                           TIME every --time-every requests
    colo_net_client.py IP kill [options]   PUT versions of --keys keys (a GET
                                           every --get-every, a TIME every
                                           --time-every), until
                                           --stop-file exists; then GET every
                                           key once
    colo_net_client.py IP rate [options]   open loop: PUT/GET (and TIME every
                                           --time-every) sent at --rate for
                                           --secs (or until --stop-file
                                           exists) whatever the replies, a
                                           summary at the end
    colo_net_client.py IP echo [options]   no client: answers `ID OK` to
                                           each datagram to IP:7777 for
                                           --secs (the bench's no-VM limit)

mix and kill send one request at a time (udpkv_client.Session: each try an
id of its own), paced at --rate a second; each send and each reply is a
JSON line on stdout, then {"e": "end"} after --linger seconds of listening
for late replies.  The caller checks them: this script judges nothing.
rate prints one JSON line: sent, answered, latency percentiles (ms) of the
requests sent after --warmup seconds, ids answered twice.  Only 10.8x.0.y
addresses, y 2..9 (the tests' namespaces), are accepted.
"""
import argparse
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "vm"))
import udpkv_client  # noqa: E402

PORT = 7777


class Pacer:
    """Slots at rate a second; after a long stall it goes on from now
    rather than burst to catch up (as the counter guest does)."""

    def __init__(self, rate):
        self.period = 1.0 / rate
        self.next = time.monotonic()

    def wait(self, s):
        now = time.monotonic()
        if self.next + self.period < now:
            self.next = now
        s.pump(self.next)
        self.next += self.period


def mix(s, a):
    pace = Pacer(a.rate)
    put = 0
    for i in range(a.count):
        pace.wait(s)
        if a.time_every and i % a.time_every == a.time_every - 1:
            s.call("t%d" % i, b"TIME", a.timeout, a.tries)
            continue
        # Keys named after the salt: clients running side by side (each a
        # flow of its own) do not read each other's values.
        k = put // 2 % a.keys
        if put % 2 == 0:
            body = b"PUT %sk%d %s.%d" % (a.salt.encode(), k, a.salt.encode(),
                                         put)
        else:
            body = b"GET %sk%d" % (a.salt.encode(), k)
        s.call("%s%d" % ("p" if put % 2 == 0 else "g", i), body, a.timeout,
               a.tries)
        put += 1


def kill(s, a):
    pace = Pacer(a.rate)
    version = [0] * a.keys
    end = time.monotonic() + a.max_secs
    i = puts = gets = 0
    while not os.path.exists(a.stop_file) and time.monotonic() < end:
        pace.wait(s)
        if a.time_every and i % a.time_every == a.time_every - 1:
            s.call("t%d" % i, b"TIME", a.timeout, a.tries)
        elif a.get_every and i % a.get_every == a.get_every - 1:
            s.call("g%d" % i, b"GET k%d" % (gets % a.keys), a.timeout,
                   a.tries)
            gets += 1
        else:
            k = puts % a.keys
            version[k] += 1
            s.call("p%d" % i, b"PUT k%d %s.%d" % (k, a.salt.encode(),
                                                  version[k]),
                   a.timeout, a.tries)
            puts += 1
        i += 1
    s.emit({"e": "final"})
    for k in range(a.keys):
        pace.wait(s)
        s.call("f%d" % k, b"GET k%d" % k, a.timeout, a.tries)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def rate(s, a):
    pace = Pacer(a.rate)
    start = time.monotonic() + a.warmup
    end = start + a.secs
    i = 0
    while time.monotonic() < end and not (a.stop_file and
                                          os.path.exists(a.stop_file)):
        pace.wait(s)
        # Keys (named after the salt) written and read back in turn; a GET
        # of a key whose PUT is still held reads the older value, which is
        # no matter here.
        key = b"%sk%d" % (a.salt.encode(), i // 2 % a.keys)
        if a.time_every and i % a.time_every == a.time_every - 1:
            s.send("t%d" % i, b"TIME")
        elif i % 2 == 0:
            s.send("p%d" % i, b"PUT %s %d" % (key, i))
        else:
            s.send("g%d" % i, b"GET %s" % key)
        i += 1
    s.pump(time.monotonic() + a.timeout)
    counted = [rid for rid, t in s.sent.items() if t >= start]
    lat = [(s.replies[rid][0][0] - s.sent[rid]) * 1e3 for rid in counted
           if rid in s.replies]
    twice = sum(len(r) > 1 for r in s.replies.values())
    s.out = sys.stdout
    s.emit({"e": "rate", "sent": len(counted), "answered": len(lat),
            "twice": twice,
            "secs": a.secs, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
            "max_ms": max(lat) if lat else None})


def echo(a):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((a.ip, PORT))
    print("echo ready", flush=True)
    end = time.monotonic() + a.secs
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        sock.settimeout(left)
        try:
            data, src = sock.recvfrom(2048)
        except socket.timeout:
            return
        sock.sendto(data.partition(b" ")[0] + b" OK\n", src)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ip")
    ap.add_argument("mode", choices=("mix", "kill", "rate", "echo"))
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--secs", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=0)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--time-every", type=int, default=0)
    ap.add_argument("--get-every", type=int, default=0)
    ap.add_argument("--stop-file")
    ap.add_argument("--max-secs", type=float, default=60)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--linger", type=float, default=0.5)
    ap.add_argument("--salt", default="s")
    a = ap.parse_args()
    if not re.match(r"^10\.8[0-9]\.0\.[2-9]$", a.ip) or a.rate <= 0 or \
            a.keys < 1 or (a.mode == "kill" and not a.stop_file):
        ap.print_usage(sys.stderr)
        return 2
    if a.mode == "echo":
        return echo(a)
    s = udpkv_client.Session((a.ip, PORT),
                             None if a.mode == "rate" else sys.stdout)
    {"mix": mix, "kill": kill, "rate": rate}[a.mode](s, a)
    if a.mode != "rate":
        s.pump(time.monotonic() + a.linger)
        s.emit({"e": "end"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
