#!/usr/bin/env python3
"""A chatty guest whose stdout nobody reads: nothing waits for the reader.

    stdout_test.py CASE FTVM FTVMCTL GUEST_DIR

The counter guest prints a line per tick as fast as it can, to a pipe this
test holds and does not read, until the console's buffer is full and bytes
are dropped (console.dropped_bytes in status).  Exit 0 pass, 1 fail, 77
skipped (no usable /dev/kvm).

  run    `ftvm run`: `ftvmctl pause` and `status` answer (the vCPU is not
         stuck in a write), the drop is counted in status and in
         ftvm_console_dropped_bytes_total; once the pipe is read, output
         goes on, whole lines in order
  pair   `ftvm primary` with a real secondary on loopback: while the
         primary's stdout is full, for several failure timeouts, its
         control socket answers, checkpoints go on being acknowledged,
         and the secondary does not fail over (the ACK handler does not
         wait for stdout); the drop is counted; once the pipe is read,
         released output goes on, whole lines in order
"""
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import ftvmtest as ft  # noqa: E402
from ftvmtest import check, fail, log, wait_until  # noqa: E402

LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")
TICK_RE = re.compile(r"^tick (\d+) crc [0-9a-f]{8}$")
CHATTY = ["rate=100000", "area-kib=4", "pages-per-tick=1"]

ftvm = ftvmctl = guests = None


# ---- every command line of this test, in one place ----

def argv_run(sock, mport):
    return [ftvm, "run", "--mem", "32M", "--control", sock, "--metrics",
            "127.0.0.1:%d" % mport, guest("counter")] + CHATTY


def argv_secondary(sock):
    return [ftvm, "secondary", "--listen", "127.0.0.1:0", "--control", sock,
            "--failure-timeout", "%dms" % ft.scaled(300), "--insecure"]


def argv_primary(sock, addr, mport):
    return [ftvm, "primary", guest("counter")] + CHATTY + \
        ["--mem", "32M", "--secondary", addr, "--control", sock,
         "--metrics", "127.0.0.1:%d" % mport,
         "--failure-timeout", "%dms" % ft.scaled(300), "--insecure"]


# ---- a child whose stdout is a pipe read only when the test says ----

class Held(ft.Proc):
    def _spawn(self, argv, env, stdin):
        self.rfd, w = os.pipe()
        with open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdout=w, stderr=err,
                                      stdin=stdin, env=env,
                                      start_new_session=True)
        os.close(w)
        self.data = bytearray()
        self.lock = threading.Lock()
        self.reader = None

    def drain(self):
        """From now on, a thread reads the pipe."""
        def read():
            while True:
                try:
                    b = os.read(self.rfd, 65536)
                except OSError:
                    b = b""
                if not b:
                    return
                with self.lock:
                    self.data += b
        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()

    def out(self):
        with self.lock:
            return bytes(self.data).decode(errors="replace")

    def ticks(self):
        """Every complete line must be a tick (after the header), each
        higher than the last: dropped bytes leave gaps between whole
        lines, never torn or repeated ones."""
        lines = self.lines()
        if not lines:
            return []
        check(lines[0].startswith("counter rate="),
              "%s: first line %r" % (self.name, lines[:1]))
        ticks = []
        for line in lines[1:]:
            m = TICK_RE.match(line)
            check(m, "%s: a torn or foreign line %r" % (self.name, line))
            n = int(m.group(1))
            check(not ticks or n > ticks[-1], "%s: tick %d after %d" %
                  (self.name, n, ticks[-1] if ticks else 0))
            ticks.append(n)
        return ticks


def guest(name):
    return os.path.join(guests, name + ".elf")


def ctl(sock, *args):
    """ftvmctl --json within a deadline: a stuck process fails here."""
    wait_until(lambda: os.path.exists(sock), 10, "control socket " + sock)
    r = ft.run([ftvmctl, "-s", sock, "--json"] + list(args),
               capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        fail("ftvmctl %s: exit %d: %s" % (" ".join(args), r.returncode,
                                          r.stderr))
    return json.loads(r.stdout) if r.stdout.strip() else {}


def metric(mport, name):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport,
                                  timeout=ft.scaled(20)).read().decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    check(m, "metrics: no %s" % name)
    return float(m.group(1))


def wait_dropping(p, sock):
    """Until the console has dropped bytes: stdout and its buffer are full."""
    def ok():
        check(p.alive(), "%s exited\n%s" % (p.name, p.dump()))
        con = ctl(sock, "status").get("console", {})
        return con.get("dropped_bytes", 0) > 0
    wait_until(ok, 60, "%s to drop console bytes" % p.name, step=0.2)


def wait_more_ticks(p, after):
    """Output going on once read: ticks beyond `after`, in order."""
    wait_until(lambda: p.ticks() and p.ticks()[-1] > after + 100, 30,
               "%s's output to go on past tick %d" % (p.name, after))


# ---- cases ----

def case_run():
    sock = os.path.join(ft.tmp, "run.sock")
    mport = ft.free_port()
    p = Held("run", argv_run(sock, mport))
    wait_dropping(p, sock)
    ctl(sock, "pause")
    st = ctl(sock, "status")
    check(st["state"] == "paused", "state after pause: %s" % st["state"])
    ctl(sock, "resume")
    st = ctl(sock, "status")
    check(st["state"] == "running", "state after resume: %s" % st["state"])
    dropped = st["console"]["dropped_bytes"]
    check(metric(mport, "ftvm_console_dropped_bytes_total") >= dropped,
          "the metric does not count the drop")
    wait_until(lambda: "buffer is full" in p.err(), 10,
               "a warning about the drop")
    log("dropped %d bytes while nobody read; buffered %d" %
        (dropped, st["console"]["buffered_bytes"]))
    p.drain()
    first = wait_until(lambda: p.ticks(), 30, "the first ticks")[-1]
    wait_more_ticks(p, first)
    ctl(sock, "quit")
    check(p.wait(30) == 0, "exit status\n" + p.dump())
    log("read %d bytes, ticks up to %d" % (len(p.out()), p.ticks()[-1]))


def case_pair():
    ssock = os.path.join(ft.tmp, "sec.sock")
    s = ft.Proc("sec", argv_secondary(ssock))
    m = wait_until(lambda: LISTEN_RE.search(s.err()) or
                   (not s.alive() and fail(s.dump())), 10,
                   "the secondary to listen")
    addr = "%s:%s" % (m.group(1), m.group(2))
    sock = os.path.join(ft.tmp, "pri.sock")
    mport = ft.free_port()
    p = Held("pri", argv_primary(sock, addr, mport))
    wait_until(lambda: ctl(sock, "status")["state"] == "active", 20,
               "the primary to be active")
    wait_dropping(p, sock)
    # Several failure timeouts with stdout full: answers, ACKs, no failover.
    acked = ctl(sock, "status")["checkpoint"]["acked"]
    until = time.monotonic() + 10 * ft.scaled(0.3)
    polls = 0
    while time.monotonic() < until or polls < 10:
        st = ctl(sock, "status")
        check(st["state"] == "active", "the primary is %s:\n%s" %
              (st["state"], p.dump()))
        sst = ctl(ssock, "status")
        check(sst["state"] == "active", "the secondary is %s:\n%s" %
              (sst["state"], s.dump()))
        polls += 1
        time.sleep(0.05)
    wait_until(lambda: ctl(sock, "status")["checkpoint"]["acked"] > acked + 5,
               20, "checkpoints acknowledged while stdout is full")
    st = ctl(sock, "status")
    check(st["state"] == "active" and s.alive(),
          "replication ended:\n%s\n%s" % (p.dump(), s.dump()))
    dropped = st["console"]["dropped_bytes"]
    check(metric(mport, "ftvm_console_dropped_bytes_total") >= dropped,
          "the metric does not count the drop")
    log("primary: dropped %d console bytes, %d checkpoints acknowledged "
        "meanwhile" % (dropped, st["checkpoint"]["acked"] - acked))
    p.drain()
    first = wait_until(lambda: p.ticks(), 30, "the first ticks")[-1]
    wait_more_ticks(p, first)
    check(ctl(ssock, "status")["state"] == "active", "the secondary failed "
          "over:\n" + s.dump())
    ctl(sock, "stop-replication")
    check(s.wait(15) == ft.EXIT_DROPPED, "secondary exit status\n" +
          s.dump())
    ctl(sock, "quit")
    check(p.wait(30) == 0, "primary exit status\n" + p.dump())


CASES = {"run": case_run, "pair": case_pair}


def main():
    global ftvm, ftvmctl, guests
    if len(sys.argv) != 5 or sys.argv[1] not in CASES:
        sys.stderr.write(__doc__)
        return 2
    case, ftvm, ftvmctl, guests = sys.argv[1:]

    def run():
        ft.needs_kvm()
        CASES[case]()
        for p in ft.procs:
            ft.check_sanitizers(p)
    ft.run_case(case, run, "stdout")


if __name__ == "__main__":
    sys.exit(main())
