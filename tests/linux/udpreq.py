#!/usr/bin/env python3
"""udpreq.py HOST PORT TAG N TIMEOUT [RESEND]: sends N requests "TAG-i
..." one at a time to udpsvc (tests/linux/udpsvc.c), each waiting up to
TIMEOUT s for its answer "TAG-i ok C"; with RESEND, the request is sent
again every RESEND s until then (a client riding through a failover: a
request whose answer was held for a checkpoint that never came is
served again).  Prints each answer's counter C, the round trip from the
first send and the sends it took, one line each ("TAG-i C MS SENDS").
Answers to an earlier request (a resend's) are skipped.  Exit 1 at the
first request not answered in time, or answered with a foreign id."""
import socket
import sys
import time


def main():
    host, port, tag, n, timeout = sys.argv[1:6]
    resend = float(sys.argv[6]) if len(sys.argv) > 6 else None
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    earlier = set()
    for i in range(int(n)):
        rid = "%s-%d" % (tag, i)
        t = time.monotonic()
        deadline = t + float(timeout)
        sends = 0
        answer = None
        while answer is None:
            now = time.monotonic()
            if now >= deadline:
                print("%s no answer in %s s (%d sends)" % (rid, timeout,
                                                           sends))
                return 1
            s.sendto(("%s please" % rid).encode(), (host, int(port)))
            sends += 1
            wait_until = min(deadline, now + resend) if resend else deadline
            while answer is None and time.monotonic() < wait_until:
                s.settimeout(max(0.001, wait_until - time.monotonic()))
                try:
                    data, _ = s.recvfrom(600)
                except socket.timeout:
                    break
                words = data.decode(errors="replace").split()
                if len(words) == 3 and words[0] in earlier:
                    continue
                if len(words) != 3 or words[0] != rid or words[1] != "ok":
                    print("%s answered %r" % (rid, data))
                    return 1
                answer = words[2]
        earlier.add(rid)
        print("%s %s %.2f %d" % (rid, answer, (time.monotonic() - t) * 1e3,
                                 sends), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
