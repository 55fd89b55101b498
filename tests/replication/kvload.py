#!/usr/bin/env python3
"""A udpkv client (docs/udpkv-protocol.md) for e2e_test.py's udpkv-tap.

    kvload.py 10.78.0.2 SALT put N     PUT key0..key{N-1}, one at a time
    kvload.py 10.78.0.2 SALT get       GET the keys whose indices are on
                                       stdin (one per line), check values
    kvload.py 10.78.0.2 - rarp IF S    for S seconds, print `rarp MAC` for
                                       each RARP frame (0x8035) seen on IF

put prints `ok I` when PUT I was answered OK and `lost I` when no reply
came in TRIES attempts (TIMEOUT each): a PUT that was never answered may
or may not be stored.  get prints `bad I ...` for a wrong or missing value
and a summary; exit 1 if any was bad.  Values depend on SALT (a fresh one
per run).  Only the test namespace's guest address is accepted: it runs
inside the network namespace e2e_test.py made (ip netns exec NS ...).
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "vm"))
import udpkv_client  # noqa: E402  (the request/retry loop, shared)

ALLOWED = "10.78.0.2"
PORT = 7777
TIMEOUT = 0.2
TRIES = 50          # 10 s: a failover takes well under a second


def value(salt, i):
    return ("v%s %d x" % (salt, i * 7919)).encode() + \
        bytes((i * 31 + k) % 256 for k in range(i % 50))


def request(sock, addr, rid, body):
    return udpkv_client.request(sock, addr, rid, body, TIMEOUT, TRIES)


def rarp(ifname, seconds):
    """Self-announce frames: opcode 3, sender and target MAC the same."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x8035))
    s.bind((ifname, 0))
    print("listening", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            f = s.recv(2048)
        except socket.timeout:
            break
        if len(f) >= 42 and f[12:14] == b"\x80\x35" and \
                f[20:22] == b"\x00\x03" and f[22:28] == f[32:38] == f[6:12]:
            print("rarp %s" % ":".join("%02x" % b for b in f[6:12]),
                  flush=True)
        else:
            print("other %s" % f[:42].hex(), flush=True)
    return 0


def main():
    if len(sys.argv) < 4 or sys.argv[1] != ALLOWED or \
            sys.argv[3] not in ("put", "get", "rarp"):
        print(__doc__, file=sys.stderr)
        return 2
    addr, salt, op = (ALLOWED, PORT), sys.argv[2], sys.argv[3]
    if op == "rarp":
        return rarp(sys.argv[4], float(sys.argv[5]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    if op == "put":
        n = int(sys.argv[4])
        for i in range(n):
            r = request(sock, addr, "p%d" % i,
                        b"PUT key%d " % i + value(salt, i))
            if r == b"OK\n":
                print("ok %d" % i, flush=True)
            elif r is None:
                print("lost %d" % i, flush=True)
            else:
                print("error %d %r" % (i, r), flush=True)
        return 0
    bad = 0
    keys = [int(l) for l in sys.stdin.read().split()]
    for i in keys:
        r = request(sock, addr, "g%d" % i, b"GET key%d" % i)
        want = b"VALUE " + value(salt, i) + b"\n"
        if r != want:
            bad += 1
            print("bad %d: %r, expected %r" % (i, r, want))
    print("get: %d of %d keys read back" % (len(keys) - bad, len(keys)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
