#!/usr/bin/env python3
"""A small udpkv client (docs/udpkv-protocol.md) for ckpt_test.py.

    udpkv_client.py 10.77.0.2 put|get N

put stores keys key0..key{N-1}; get reads them back and checks every value.
Each request is retried on a timeout, a bounded number of times.  Only the
test namespace's guest address is accepted: it runs inside the network
namespace the test made (ip netns exec NS ...).  Exit 0 when every request
got the expected reply, 1 otherwise.

As a module: request() (one request, retried with the same id; kvload.py)
and Session (every send with an id of its own and every reply kept, each
as a JSON line: what tests/colo/colo_net_client.py needs to tell a reply
sent twice from a request sent twice).
"""
import json
import select
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


class Session:
    """Requests to addr, each send with an id of its own (NAME.TRY), every
    reply kept.  With out (a file), each send and each reply is written as
    a JSON line: {"e": "S", "id", "t", "q": request} and {"e": "R", "id",
    "t", "a": reply after the id} (bytes as Latin-1 text, t monotonic
    seconds: the host's clock, the same in every namespace)."""

    def __init__(self, addr, out=None):
        self.addr, self.out = addr, out
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.setblocking(False)
        self.sent = {}          # id -> send time
        self.replies = {}       # id -> [(time, reply after the id)]
        self.foreign = 0        # datagrams that are no reply of ours

    def emit(self, ev):
        if self.out:
            self.out.write(json.dumps(ev) + "\n")
            self.out.flush()

    def send(self, rid, body):
        now = time.monotonic()
        self.sock.sendto(rid.encode() + b" " + body, self.addr)
        self.sent[rid] = now
        self.emit({"e": "S", "id": rid, "t": now,
                   "q": body.decode("latin-1")})

    def pump(self, until, want=()):
        """Takes replies until the monotonic time `until`, or until one
        for an id in want: returns (id, reply) for that one, else None."""
        while True:
            while True:
                try:
                    data, src = self.sock.recvfrom(2048)
                except BlockingIOError:
                    break
                now = time.monotonic()
                rid, _, rest = data.partition(b" ")
                rid = rid.decode("latin-1")
                if src != self.addr or rid not in self.sent:
                    self.foreign += 1
                    self.emit({"e": "X", "t": now,
                               "d": data.decode("latin-1")})
                    continue
                self.replies.setdefault(rid, []).append((now, rest))
                self.emit({"e": "R", "id": rid, "t": now,
                           "a": rest.decode("latin-1")})
                if rid in want:
                    return rid, rest
            left = until - time.monotonic()
            if left <= 0:
                return None
            select.select([self.sock], [], [], left)

    def call(self, name, body, timeout, tries):
        """Sends body as NAME.0, NAME.1, ... (timeout seconds each, tries
        at most) until one of them is answered: (reply, its id), or
        (None, None).  A late reply to an earlier try counts."""
        ids = []
        for k in range(tries):
            rid = "%s.%d" % (name, k)
            ids.append(rid)
            self.send(rid, body)
            got = self.pump(time.monotonic() + timeout, ids)
            if got:
                return got[1], got[0]
        return None, None


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
