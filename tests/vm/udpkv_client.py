#!/usr/bin/env python3
"""A small udpkv client (docs/udpkv-protocol.md) for ckpt_test.py.

    udpkv_client.py 10.77.0.2 put|get N

put stores keys key0..key{N-1}; get reads them back and checks every value.
Each request is retried on a timeout, a bounded number of times.  Only the
test namespace's guest address is accepted: it runs inside the network
namespace the test made (ip netns exec NS ...).  Exit 0 when every request
got the expected reply, 1 otherwise.
"""
import socket
import sys
import time

ALLOWED = "10.77.0.2"
PORT = 7777
TIMEOUT = 0.3
TRIES = 20


def value(i):
    # Spaces and a run of arbitrary bytes: the value is the rest of the
    # request, spaces included.
    return ("value %d of key%d " % (i * 7919, i)).encode() + \
        bytes((i * 37 + k) % 256 for k in range(i % 40))


def request(sock, addr, rid, body, timeout=TIMEOUT, tries=TRIES):
    """Sends `rid body` until a reply with that id comes (tries times at
    most, timeout seconds each); returns the reply after the id, or None.
    Also used by tests/replication/kvload.py."""
    msg = rid.encode() + b" " + body
    prefix = rid.encode() + b" "
    for _ in range(tries):
        sock.sendto(msg, addr)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                data, src = sock.recvfrom(2048)
            except socket.timeout:
                break
            if src == addr and data.startswith(prefix):
                return data[len(prefix):]
    return None


def main():
    ip, op, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if ip != ALLOWED or op not in ("put", "get") or not 0 < n <= 1000:
        print("usage: udpkv_client.py %s put|get N" % ALLOWED,
              file=sys.stderr)
        return 2
    addr = (ip, PORT)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    bad = []
    t = time.monotonic()
    for i in range(n):
        rid = "%s%d-%d" % (op, i, int(t * 1000) % 100000)
        if op == "put":
            reply = request(sock, addr, rid, b"PUT key%d " % i + value(i))
            want = b"OK\n"
        else:
            reply = request(sock, addr, rid, b"GET key%d" % i)
            want = b"VALUE " + value(i) + b"\n"
        if reply != want:
            bad.append("key%d: %r, expected %r" % (i, reply, want))
    print("udpkv_client %s %d: %d ok in %.2f s" %
          (op, n, n - len(bad), time.monotonic() - t))
    for b in bad[:10]:
        print("  " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
