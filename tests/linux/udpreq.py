#!/usr/bin/env python3
"""udpreq.py HOST PORT TAG N TIMEOUT: sends N requests "TAG-i ..." one at
a time to udpsvc (tests/linux/udpsvc.c), each waiting up to TIMEOUT s for
its answer "TAG-i ok C"; prints each answer's counter C and the round
trip, one line each ("TAG-i C MS").  Exit 1 at the first request not
answered, or answered with another id."""
import socket
import sys
import time


def main():
    host, port, tag, n, timeout = sys.argv[1:6]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(float(timeout))
    for i in range(int(n)):
        rid = "%s-%d" % (tag, i)
        t = time.monotonic()
        s.sendto(("%s please" % rid).encode(), (host, int(port)))
        try:
            data, _ = s.recvfrom(600)
        except socket.timeout:
            print("%s no answer in %s s" % (rid, timeout))
            return 1
        words = data.decode(errors="replace").split()
        if len(words) != 3 or words[0] != rid or words[1] != "ok":
            print("%s answered %r" % (rid, data))
            return 1
        print("%s %s %.2f" % (rid, words[2], (time.monotonic() - t) * 1e3),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
