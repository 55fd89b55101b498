#!/usr/bin/env python3
"""`ftvm secondary` against fake_primary, a scripted primary: real processes.

    sec_test.py CASE FTVM FTVMCTL FAKE_PRIMARY GUEST_DIR

The helpers (processes, ftvmctl, the counter's continuation check) are
tests/vm/ckpt_test.py's.  Each case starts `ftvm secondary` on a port of
its own choosing, a fake_primary running the counter guest with a script
(fake_primary.c lists the steps), and checks what the secondary says and
does.  Exit 0 pass, 1 fail, 77 skipped (no usable /dev/kvm).

  usage            bad command lines exit 2, a bad --listen 120
  failover-kill    the primary dies after 10 checkpoints: the secondary fails
                   over from the last one ACKed and the counter carries on
                   exactly, to the end (exit 0); status before and after
  refuse           corrupt, bad-base, unsealed and nested packages are
                   NACKed with their reason and change nothing; the next
                   full package is ACKed; status counts them; the primary's
                   EOF stops the secondary (exit 0, no failover)
  bad-disk         (--disk, disklog) a sealed package whose last "block"
                   record lies past the disk's end is NACKed naming it,
                   and the copy is byte for byte unchanged though the
                   package's other chunks were good; the full package
                   after it is ACKed; a failover goes on, the copy a
                   valid log
  truncated        the primary dies half-way through sending a package: the
                   secondary fails over from the one before
  stall            the primary goes silent: declared dead after the failure
                   timeout, heartbeats kept coming meanwhile, failover
  garbage          bytes that are no record after the bring-up: SHUT 1, exit 4,
                   a message naming the primary's address
  nothing          the primary dies before checkpoint 1: exit 3
  not-a-primary    a connection that closes at once and one sending garbage
                   leave the secondary waiting for a real primary
  second           a second connection while one primary is served is closed
  failover-command `ftvmctl failover` while active: its reply, the VM runs
  stop             `ftvmctl stop-replication`: SHUT 0 to the primary, exit 0
  save             periodic checkpoints of the cache and `ftvmctl save` while
                   packages of a heavily dirtying counter are applied; each
                   file restores to a counter that carries on exactly
  announce         with --net dgram:..., five RARP self-announce frames for
                   the guest's MAC, 50/150/250/350 ms apart
  primary-kill     with the real `ftvm primary`: kill -9 it; the secondary
                   carries the counter on from where the primary's (held)
                   output stopped, never repeating a line
  primary-stop     `ftvmctl stop-replication` on the real primary: its
                   drop notice, then EOF: the secondary logs that it was
                   dropped and exits 6 without failing over
  drop             the fake's drop notice (ftvm-drop) and EOF: the secondary
                   says it was dropped and exits 6, no failover
  drop-cut         the drop notice, then the fake exits without EOF: still
                   exit 6, no failover (the notice said the primary is alive)
  drop-foreign     a drop notice of the next generation: a protocol error
                   (SHUT 1, exit 4), not a drop, no failover
  huge-package     (issue 8, finding 3) the header, OPEN_RETURN_PATH,
                   ENABLE_COLO and a PACKAGED claiming 4 GiB, then close,
                   three times, and once followed by megabytes of data:
                   refused at once, the peak RSS stays small, status
                   answers; the real primary then pairs; and a SIGTERM
                   after those bytes ends the process promptly
  idle             (finding 2) a peer sending the header, OPEN_RETURN_PATH
                   and PINGs as fast as they are answered is dropped at
                   the setup timeout, not before; status answers meanwhile
                   (PONGs are the receiver thread's, never the loop's);
                   the real primary then pairs
  foreign          a package of another pairing id ends the stream (SHUT
                   1, exit 4, no failover), however good it is otherwise
  colo-in          a COLO input frame (ftvm-colo-in) in a checkpoint-mode
                   stream: a protocol error (SHUT 1, exit 4, no failover)
                   naming the section
  vm-name          --vm-name: a primary of another VM is refused before its
                   VM is made and the secondary waits on; one of the right
                   VM pairs
"""
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "vm"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ckpt_test as ck  # noqa: E402
import ftvmtest as ft  # noqa: E402

from ckpt_test import Proc  # noqa: E402
from ftvmtest import check, fail, log  # noqa: E402
import disklog  # noqa: E402

fake = None
COUNTER = ["rate=50", "count=150", "area-kib=512", "pages-per-tick=8"]
LISTEN_RE = re.compile(r"listening on (\S+)")


class FakePrimary(Proc):
    """fake_primary with a pipe on stdin, for its `wait` step."""

    def __init__(self, name, addr, steps, counter=COUNTER, net=None,
                 mem="64M", vm_name=None, guest="counter", disk=None):
        self.console = os.path.join(ft.tmp, name + ".console")
        argv = [fake, "--mem", mem] + (["--net", net] if net else []) + \
            (["--vm-name", vm_name] if vm_name else []) + \
            (["--disk", disk] if disk else []) + \
            [addr, os.path.join(ck.guests, guest + ".elf"),
             " ".join(counter), self.console] + list(steps)
        Proc.__init__(self, name, argv, stdin=subprocess.PIPE)

    def wait_line(self, prefix, timeout=20):
        def ok():
            for line in self.lines():
                if line.startswith("FAIL"):
                    fail("fake primary: %s\n%s" % (line, self.dump()))
                if line.startswith(prefix):
                    return line
            if not self.alive() and self.p.returncode == ft.EXIT_SKIPPED:
                ft.needs_kvm()      # skips, or fails if KVM is required
            if not self.alive():
                fail("fake primary exited (%s) before '%s'\n%s" %
                     (self.p.returncode, prefix, self.dump()))
            return None
        return ft.wait_until(ok, timeout, "the fake primary's '%s'" % prefix)

    def go_on(self):
        self.p.stdin.write(b"\n")
        self.p.stdin.flush()

    def acks(self):
        """[(id, console bytes)] of every ACK, in order."""
        r = []
        for line in self.lines():
            if line.startswith("ack "):
                _, i, n = line.split()
                r.append((int(i), int(n)))
        return r

    def nacks(self):
        return [line for line in self.lines() if line.startswith("nack ")]

    def lines_at(self, nbytes):
        """Console lines the guest had printed at a checkpoint."""
        with open(self.console, "rb") as f:
            return f.read()[:nbytes].count(b"\n")

    def finished(self, timeout=20):
        rc = self.wait(timeout)
        check(rc == 0, "fake primary exited %d\n%s" % (rc, self.dump()))


class Secondary(Proc):
    """The failure timeout is long where the case does not time it: the
    fake primary goes quiet for a whole RAM pass of its bring-up, which on
    a loaded machine can take longer than 300 ms."""

    def __init__(self, name="secondary", extra=(), failure="3s",
                 security=("--insecure",)):
        self.sock = os.path.join(ft.tmp, name + ".sock")
        Proc.__init__(self, name, [ck.ftvm, "secondary", "--listen",
                                   "127.0.0.1:0", "--control", self.sock,
                                   "--failure-timeout", failure] +
                      list(security) + list(extra))
        self.addr = self.wait_err(LISTEN_RE, 10, "listening").group(1)
        ck.wait_control(self.sock, self)

    def status(self):
        return ck.status(self.sock)

    def wait_state(self, state, timeout=10):
        def ok():
            if not self.alive():
                fail("the secondary exited (%s) before state %s\n%s" %
                     (self.p.returncode, state, self.dump()))
            s = self.status()
            return s if s["state"] == state else None
        return ft.wait_until(ok, timeout, "the secondary's state %s" % state)

    def expect_exit(self, rc, timeout=20):
        got = self.wait(timeout)
        check(got == rc, "the secondary exited %d, expected %d\n%s" %
              (got, rc, self.dump()))


def hung_up(c):
    """Whether the other end closed (or reset) the connection."""
    try:
        return c.recv(100) == b""
    except ConnectionResetError:
        return True


def reference(counter=COUNTER):
    return Proc("reference", [ck.ftvm, "run", "--mem", "64M",
                              os.path.join(ck.guests, "counter.elf")] +
                counter)


def check_failover(sec, prim, ref, want_from=None):
    """The secondary runs from the last checkpoint ACKed, and the counter
    carries on there exactly (the primary printed up to it)."""
    s = sec.wait_state("running")
    acks = prim.acks()
    last_id, nbytes = acks[-1]
    fo = s["failover"]
    check(fo["continued_from"] == (want_from or last_id),
          "continued from %d, the last ACK was %d" % (fo["continued_from"],
                                                      last_id))
    check(fo["ms"] > 0, "failover_ms %r" % fo["ms"])
    log("failover: %.1f ms (%s), from checkpoint %d" %
        (fo["ms"], fo["reason"], fo["continued_from"]))
    sec.wait_tick(prim.lines_at(nbytes) + 3)
    ck.check_continuation(sec, ref, exact=prim.lines_at(nbytes))
    return s


def log_apply(s):
    r = s["replication"]
    log("apply ms: last %.2f p50 %.2f p99 %.2f; %d applied, %d bytes" %
        (r["apply_ms"]["last"], r["apply_ms"]["p50"], r["apply_ms"]["p99"],
         r["applied"], r["package_bytes"]["total"]))


# ---- cases ----

def case_usage():
    def run(*args):
        r = ft.run([ck.ftvm, "secondary"] + list(args),
                           capture_output=True, text=True, timeout=10)
        return r.returncode, r.stderr
    rc, err = run()
    check(rc == 2 and "--listen" in err, "no --listen: %d %r" % (rc, err))
    rc, err = run("--listen", "127.0.0.1:0", "--failure-timeout", "soon")
    check(rc == 2 and "failure-timeout" in err, "bad time: %d %r" % (rc, err))
    rc, err = run("--listen", "127.0.0.1:0", "--bogus")
    check(rc == 2 and "--bogus" in err, "bad option: %d %r" % (rc, err))
    rc, err = run("--listen", "nonsense", "--insecure")
    check(rc == 120 and "nonsense" in err, "bad listen: %d %r" % (rc, err))
    rc, err = run("--listen", "127.0.0.1:0")
    check(rc == 2 and "--tls-creds" in err and "--insecure" in err,
          "neither --tls-creds nor --insecure: %d %r" % (rc, err))
    rc, err = run("--listen", "127.0.0.1:0", "--insecure", "--tls-creds",
                  ft.tmp)
    check(rc == 2 and "exclude" in err, "both: %d %r" % (rc, err))
    # Plaintext only on loopback: refused before anything listens.
    for listen in (":0", "0.0.0.0:0", "[::]:0"):
        rc, err = run("--listen", listen, "--insecure")
        check(rc == 120 and "not a loopback address" in err,
              "--insecure on %s: %d %r" % (listen, rc, err))
    rc, err = run("--listen", "127.0.0.1:0", "--tls-creds",
                  os.path.join(ft.tmp, "none"))
    check(rc == 120 and "ca.pem" in err, "no credentials: %d %r" % (rc, err))
    r = ft.run([ck.ftvm, "secondary", "--help"], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 0 and "--failure-timeout" in r.stdout,
          "--help: %d" % r.returncode)


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=5) as r:
        return r.read().decode()


def case_failover_kill():
    ft.needs_kvm()
    ref = reference()
    mport = ft.free_port()
    sec = Secondary(extra=["--metrics", "127.0.0.1:%d" % mport])
    s = sec.status()
    check(s["state"] == "waiting" and s["role"] == "secondary",
          "before a primary: %r" % s)
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:10", "wait"])
    prim.wait_line("waiting")
    s = ft.wait_until(lambda: (lambda s: s if s["replication"]["pings"] > 0
                               else None)(sec.status()), 5, "a PING")
    check(s["state"] == "active", "state %s" % s["state"])
    r = s["replication"]
    check(r["applied"] == 11 and r["last_id"] == 11 and r["refused"] == 0,
          "replication %r" % r)
    check(s["primary"].startswith("127.0.0.1:"), "primary %r" % s["primary"])
    check(s["vm_state"] == "created", "vm_state %r" % s["vm_state"])
    log_apply(s)
    m = scrape(mport)
    for want in ("ftvm_secondary_checkpoints_applied_total 11",
                 "ftvm_secondary_checkpoints_refused_total 0",
                 "ftvm_secondary_last_checkpoint_id 11",
                 'ftvm_secondary_state{state="active"} 1'):
        check(want in m, "metrics lack %r:\n%s" % (want, m))
    prim.go_on()
    prim.finished()
    check_failover(sec, prim, ref)
    m = scrape(mport)
    check('ftvm_secondary_state{state="running"} 1' in m and
          "ftvm_secondary_failover_seconds" in m,
          "metrics after failover:\n%s" % m)
    sec.expect_exit(0, 30)
    ck.check_continuation(sec, ref, want_done=True,
                          exact=prim.lines_at(prim.acks()[-1][1]))
    check("the primary is lost" in sec.err(), "no log line for the loss")


def case_refuse():
    ft.needs_kvm()
    sec = Secondary()
    prim = FakePrimary("primary", sec.addr, [
        "bringup", "ckpt:2", "corrupt", "ckpt:2", "badbase", "ckpt:1",
        "unsealed", "ckpt:1", "nested", "ckpt:1", "wait", "eof"])
    prim.wait_line("waiting")
    nacks = prim.nacks()
    check(len(nacks) == 4, "NACKs %r" % nacks)
    for nack, why in zip(nacks, ["checksum mismatch", "builds on",
                                 "no trailer", "nested"]):
        check(why in nack, "NACK %r should say %r" % (nack, why))
    s = sec.status()
    r = s["replication"]
    acked = [i for i, _ in prim.acks()]
    check(r["refused"] == 4 and r["applied"] == len(acked) and
          r["last_id"] == acked[-1], "status %r, ACKs %r" % (r, acked))
    check("nested" in r["last_refusal"], "last_refusal %r" %
          r["last_refusal"])
    check(sec.err().count("refused checkpoint") == 4,
          "log lines:\n%s" % sec.err())
    log("NACKs: %s" % "; ".join(nacks))
    prim.go_on()
    sec.expect_exit(0)
    prim.finished()
    check(any(line == "closed" or line.startswith("closed")
              for line in prim.lines()), "the fake saw no close")
    check("no failover" in sec.err(), "log:\n%s" % sec.err())
    check(not sec.ticks(), "the secondary ran the guest")


def case_bad_disk():
    """A package whose chunks are good but for a last record past the
    disk's end (sealed: only the loader's check refuses it) is NACKed
    naming the record, and nothing of it reaches the copy, not even the
    good chunks before the bad one; the full package after it puts
    everything right, and a failover goes on from it on a valid log."""
    ft.needs_kvm()
    pimg = os.path.join(ft.tmp, "p.img")
    simg = os.path.join(ft.tmp, "s.img")
    with open(pimg, "wb") as f:
        f.truncate(4 << 20)
    sec = Secondary(extra=["--disk", simg])
    prim = FakePrimary("primary", sec.addr, [
        "bringup", "ckpt:3", "wait", "baddisk", "wait", "ckpt:3", "die"],
        counter=["rate=100"], guest="disklog", disk=pimg)
    prim.wait_line("waiting")
    before = open(simg, "rb").read()
    n0 = len(disklog.records(simg))
    prim.go_on()
    ft.wait_until(lambda: prim.nacks(), 20, "the NACK")
    nack = prim.nacks()[0]
    check("block" in nack and "disk0" in nack, "NACK %r" % nack)
    ft.wait_until(lambda: len([l for l in prim.lines()
                               if l == "waiting"]) >= 2, 20, "waiting")
    check(open(simg, "rb").read() == before, "the refused package changed "
          "the secondary's copy")
    check(len(disklog.records(pimg)) > n0, "the guest wrote nothing "
          "between the two waits: the bad package held no good chunk")
    prim.go_on()
    prim.finished()
    s = sec.wait_state("running")
    check(s["failover"]["continued_from"] == prim.acks()[-1][0],
          "continued from %r, last ACK %r" % (s["failover"], prim.acks()))
    ft.wait_until(lambda: "disklog: record" in "".join(sec.lines()[-1:]),
                  20, "a record from the secondary")
    ck.ctl(sec.sock, "quit")
    sec.expect_exit(0)
    got = disklog.check(simg)
    log("NACK: %s; the copy held records 1..%d, unchanged by it; after "
        "the failover 1..%d" % (nack, n0, len(got)))


def case_truncated():
    ft.needs_kvm()
    ref = reference()
    sec = Secondary()
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:5",
                                             "truncate"])
    prim.finished()
    check_failover(sec, prim, ref, want_from=6)
    ck.ctl(sec.sock, "quit")
    sec.expect_exit(0)


def case_stall():
    ft.needs_kvm()
    ref = reference()
    # 300 ms here, longer on a slow machine (a one-CPU VM can be silent
    # that long between two passes of even a small bring-up).
    failure = round(ft.scaled(300))
    sec = Secondary(failure="%dms" % failure)
    # A small VM: its bring-up passes are short, never that silent.
    prim = FakePrimary("primary", sec.addr, [
        "bringup", "ckpt:3", "stall:%d" % max(3000, 2 * failure + 1000),
        "die"], mem="16M")
    line = prim.wait_line("closed", timeout=10)
    ms = float(line.split()[1])
    check(failure <= ms < failure + ft.scaled(0.7) * 1e3,
          "the secondary hung up %.1f ms into the "
          "silence; the failure timeout is %d ms" % (ms, failure))
    prim.finished()
    hb = int(prim.wait_line("heartbeats").split()[1])
    check(hb >= 3, "%d heartbeats during the silence" % hb)
    s = check_failover(sec, prim, ref)
    check(s["failover"]["reason"] == "primary silent", "reason %r" %
          s["failover"]["reason"])
    log("declared dead %.1f ms into the silence; %d heartbeats" % (ms, hb))
    ck.ctl(sec.sock, "quit")
    sec.expect_exit(0)


def refused_by(step):
    """A fake primary's bring-up, two checkpoints, then step: the stream
    is refused (SHUT 1, exit 4, no failover).  The secondary's log."""
    ft.needs_kvm()
    sec = Secondary()
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:2", step])
    sec.expect_exit(4)
    prim.finished()
    check("shut 1" in prim.lines(), "no SHUT 1:\n%s" % prim.dump())
    check(not sec.ticks(), "the secondary ran the guest")
    ft.check_peer_once(sec, 3)
    return sec.err()


def case_garbage():
    err = refused_by("garbage")
    check("127.0.0.1:" in err and "unknown record type 0x55" in err,
          "the message names neither the primary nor the problem:\n%s" % err)


def case_nothing():
    ft.needs_kvm()
    sec = Secondary()
    prim = FakePrimary("primary", sec.addr, ["partial", "die"])
    prim.finished()
    sec.expect_exit(3)
    check("nothing to fail over to" in sec.err(), sec.err())


def case_not_a_primary():
    ft.needs_kvm()
    sec = Secondary()
    host, port = sec.addr.rsplit(":", 1)
    socket.create_connection((host, int(port)), 5).close()
    ft.wait_until(lambda: "not a primary" in sec.err(), 5,
                  "a 'not a primary' log line")
    with socket.create_connection((host, int(port)), 5) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        c.settimeout(5)
        check(hung_up(c), "the secondary answered an HTTP request")
    ft.wait_until(lambda: sec.err().count("not a primary") == 2, 5,
                  "two 'not a primary' log lines")
    check(sec.status()["state"] == "waiting", "not waiting")
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:2", "eof"])
    sec.expect_exit(0)
    prim.finished()
    # "ADDR: ADDR: byte 0: ..." once named the peer twice.
    ft.check_peer_once(sec, 4)


def case_second():
    ft.needs_kvm()
    sec = Secondary()
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:2", "wait",
                                             "eof"])
    prim.wait_line("waiting")
    host, port = sec.addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), 5) as c:
        c.settimeout(5)
        check(hung_up(c), "a second connection was not closed")
    check("refusing a connection from 127.0.0.1:" in sec.err(), sec.err())
    check(sec.status()["state"] == "active", "the first primary suffered")
    prim.go_on()
    sec.expect_exit(0)
    prim.finished()


def case_failover_command():
    ft.needs_kvm()
    ref = reference()
    sec = Secondary()
    rc, _, err = ck.ctl(sec.sock, "failover", ok=False)
    check(rc == 1 and "waiting" in err, "failover while waiting: %r" % err)
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:4", "wait"])
    prim.wait_line("waiting")
    r = ck.ctl(sec.sock, "failover", as_json=True)
    check(r["continued_from"] == 5 and r["failover_ms"] > 0, "reply %r" % r)
    log("failover command: %.2f ms" % r["failover_ms"])
    prim.finished()
    check("closed" in prim.lines(), "the primary saw no close")
    s = check_failover(sec, prim, ref)
    check(s["failover"]["reason"] == "requested", s["failover"])
    rc, _, err = ck.ctl(sec.sock, "failover", ok=False)
    check(rc == 1 and "running" in err, "second failover: %r" % err)
    ck.ctl(sec.sock, "quit")
    sec.expect_exit(0)


def case_stop():
    ft.needs_kvm()
    sec = Secondary()
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:2", "wait"])
    prim.wait_line("waiting")
    ck.ctl(sec.sock, "stop-replication")
    sec.expect_exit(0)
    prim.finished()
    check("shut 0" in prim.lines(), "no SHUT 0:\n%s" % prim.dump())


def case_save():
    ft.needs_kvm()
    # Every tick rewrites 256 pages and prints the CRC of all 8 MiB: a page
    # torn or stale in a file shows in the restored run's next line.
    heavy = ["rate=100", "count=600", "area-kib=8192", "pages-per-tick=256"]
    ref = reference(heavy)
    d = os.path.join(ft.tmp, "ckpts")
    os.mkdir(d)
    sec = Secondary(extra=["--checkpoint-dir", d, "--checkpoint-every",
                           "150ms", "--keep", "50"])
    rc, _, err = ck.ctl(sec.sock, "save", os.path.join(ft.tmp, "x"),
                        ok=False)
    check(rc == 1 and "no VM yet" in err, "save with no VM: %r" % err)
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:60", "wait",
                                             "eof"], counter=heavy)
    prim.wait_line("waiting")
    f = os.path.join(ft.tmp, "cache.ftvm")

    def saved():     # a periodic checkpoint may be under way
        rc, _, err = ck.ctl(sec.sock, "save", f, ok=False)
        check(rc == 0 or "already being written" in err, "save: %s" % err)
        return rc == 0
    ft.wait_until(saved, 10, "save to succeed")
    s = sec.status()
    check(s["checkpoints"]["written"] >= 3, "checkpoints %r" %
          s["checkpoints"])
    check(s["state"] == "active", "state %s" % s["state"])
    prim.go_on()
    prim.finished()
    sec.expect_exit(0)
    # The file holds the last checkpoint ACKed (nothing came after it).
    last_id, nbytes = prim.acks()[-1]
    restores = [("save", f, prim.lines_at(nbytes))]
    # Those taken once the guest had printed its header and a tick.
    files = [os.path.join(d, n) for n in sorted(os.listdir(d))]
    files = [f for f in files if ck.console_lines(f) >= 2]
    check(len(files) >= 3, "periodic files %r" % files)
    restores += [("periodic-%d" % i, f, None)
                 for i, f in enumerate(files[:2] + files[-1:])]
    for name, path, exact in restores:
        r = Proc("restore-" + name, [ck.ftvm, "restore", path])
        r.wait_tick((exact or 1) + 5)
        r.kill9()
        first, last = ck.check_continuation(r, ref, exact=exact or
                                            ck.console_lines(path))
        log("%s restores at tick %d" % (name, first))


def case_announce():
    ft.needs_kvm()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    ports = []
    for _ in range(3):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    sink = rx.getsockname()[1]
    sec = Secondary(extra=["--net", "dgram:127.0.0.1:%d,127.0.0.1:%d" %
                           (ports[0], sink)])
    frames = []

    def receive():
        rx.settimeout(10)
        try:
            while len(frames) < 5:
                data = rx.recv(2000)
                frames.append((time.monotonic(), data))
        except socket.timeout:
            pass
    t = threading.Thread(target=receive)
    t.start()
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:3", "die"],
                       net="dgram:127.0.0.1:%d,127.0.0.1:%d" %
                       (ports[1], ports[2]))
    prim.finished()
    t.join()
    check(len(frames) == 5, "%d self-announce frames arrived, expected 5"
          "\n%s" % (len(frames), sec.dump()))
    mac = bytes.fromhex("024654564d01")
    for _, f in frames:
        check(len(f) == 60, "frame of %d bytes" % len(f))
        dst, src, etype = f[:6], f[6:12], struct.unpack(">H", f[12:14])[0]
        htype, ptype, hl, pl, op = struct.unpack(">HHBBH", f[14:22])
        check(dst == b"\xff" * 6 and src == mac and etype == 0x8035,
              "header %s" % f[:14].hex())
        check((htype, ptype, hl, pl, op) == (1, 0x0800, 6, 4, 3),
              "RARP fields %s" % f[14:22].hex())
        check(f[22:28] == mac and f[28:32] == b"\0" * 4 and
              f[32:38] == mac and f[38:42] == b"\0" * 4,
              "addresses %s" % f[22:42].hex())
    gaps = [round((b[0] - a[0]) * 1000) for a, b in zip(frames, frames[1:])]
    log("announce gaps (ms): %s" % gaps)
    # Sent 50, 150, 250 and 350 ms apart (each timer armed at the last
    # send).  Arrival times carry the machine's delays, which can shorten
    # one gap by lengthening the one before, and slowness is no failure:
    # the check is that the rounds are spread out as scheduled, not sent
    # at once (the whole span at least half the schedule's 800 ms).
    span = round((frames[-1][0] - frames[0][0]) * 1000)
    check(all(g > 0 for g in gaps) and span >= 400,
          "gaps %r (span %d ms), scheduled 50, 150, 250, 350" % (gaps, span))
    s = sec.wait_state("running")
    check(s["failover"]["announced"] == 5, "announced %r" % s["failover"])
    ck.ctl(sec.sock, "quit")
    sec.expect_exit(0)


def real_primary(sec, extra=(), counter=COUNTER):
    """These cases judge the secondary: the primary's failure timeout is
    its default scaled, so a slow machine does not make it give up."""
    sock = os.path.join(ft.tmp, "primary.sock")
    if "--failure-timeout" not in extra:
        extra = tuple(extra) + ("--failure-timeout", "%dms" % ft.scaled(300))
    p = Proc("primary", [ck.ftvm, "primary", "--mem", "64M", "--secondary",
                         sec.addr, "--control", sock, "--insecure"] +
             list(extra) +
             [os.path.join(ck.guests, "counter.elf")] + list(counter))
    ck.wait_control(sock, p)
    return p, sock


def case_primary_kill():
    ft.needs_kvm()
    ref = reference()
    sec = Secondary()
    prim, _ = real_primary(sec)
    prim.wait_tick(20)
    s = sec.wait_state("active")
    log_apply(s)
    prim.kill9()
    s = sec.wait_state("running")
    last = prim.last_tick()
    sec.wait_tick(last + 5)
    first, _ = ck.check_continuation(sec, ref)
    check(first > last, "the secondary repeated tick %d (the primary had "
          "printed up to %d)" % (first, last))
    log("primary printed up to tick %d, the secondary goes on at %d; "
        "failover %.1f ms from checkpoint %d" %
        (last, first, s["failover"]["ms"], s["failover"]["continued_from"]))
    check(first <= last + 2, "ticks %d..%d were lost" % (last + 1, first - 1))
    sec.expect_exit(0, 30)


def case_primary_stop():
    ft.needs_kvm()
    sec = Secondary()
    # A counter that never ends: had it reached its count during a slow
    # bring-up, replication would end with the guest, not the command.
    prim, sock = real_primary(sec, counter=[a for a in COUNTER
                                            if not a.startswith("count=")])
    prim.wait_tick(5)
    sec.wait_state("active")
    ck.ctl(sock, "stop-replication")
    sec.expect_exit(ft.EXIT_DROPPED)
    check("dropped by the primary: stop-replication" in sec.err() and
          "no failover" in sec.err() and "failover (" not in sec.err(),
          sec.err())
    prim.wait_tick(prim.last_tick() + 2)
    ck.ctl(sock, "quit")
    check(prim.wait(15) == 0, "the primary did not quit\n" + prim.dump())


# ---- raw peers: bytes a network peer can send ----

QEVM = struct.pack(">II", 0x5145564d, 3)


def command(cmd, payload=b""):
    return struct.pack(">BHH", 0x08, cmd, len(payload)) + payload


OPEN_RETURN_PATH, PING, PACKAGED, ENABLE_COLO = 1, 2, 7, 8


def peak_rss_kib(proc):
    with open("/proc/%d/status" % proc.p.pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    fail("no VmHWM for %d" % proc.p.pid)


def connect(sec):
    host, port = sec.addr.rsplit(":", 1)
    c = socket.create_connection((host, int(port)), 5)
    c.settimeout(ft.scaled(10))
    return c


def pair_with_real_primary(sec):
    """The real primary pairs (active), then stops replication: the
    secondary is dropped (exit 6)."""
    prim, sock = real_primary(sec, counter=[a for a in COUNTER
                                            if not a.startswith("count=")])
    sec.wait_state("active", 30)
    ck.ctl(sock, "stop-replication")
    sec.expect_exit(ft.EXIT_DROPPED)
    ck.ctl(sock, "quit")
    check(prim.wait(15) == 0, "the primary did not quit\n" + prim.dump())


def case_huge_package():
    ft.needs_kvm()
    sec = Secondary()
    before = peak_rss_kib(sec)
    # 27 bytes that claim a 4 GiB package.
    claim = QEVM + command(OPEN_RETURN_PATH) + command(ENABLE_COLO) + \
        command(PACKAGED, struct.pack(">I", 0xFFFFFFFF))
    for i in range(3):
        with connect(sec) as c:
            c.sendall(claim)
        ft.wait_until(lambda: sec.err().count("not a primary") == i + 1,
                      ft.scaled(10), "the claim %d refused" % (i + 1))
    # The same, with data behind it: the secondary hangs up, unread.
    with connect(sec) as c:
        c.sendall(claim)
        sent = 0
        try:
            while sent < 64 << 20:
                c.sendall(b"\0" * (1 << 20))
                sent += 1 << 20
        except OSError:
            pass
        check(sent < 64 << 20, "the secondary read 64 MiB of a package "
              "it cannot accept")
        log("the secondary hung up after %d MiB were sent" % (sent >> 20))
    ft.wait_until(lambda: sec.err().count("not a primary") == 4,
                  ft.scaled(10), "the fourth claim refused")
    check("package of 4294967295 bytes exceeds the 1048576-byte limit" in
          sec.err(), "the log does not say why:\n" + sec.err())
    after = peak_rss_kib(sec)
    log("peak RSS %d KiB before, %d KiB after" % (before, after))
    check(after < before + 64 * 1024, "peak RSS grew from %d to %d KiB" %
          (before, after))
    check(sec.status()["state"] == "waiting", "not waiting")
    pair_with_real_primary(sec)
    ft.check_peer_once(sec, 4)

    # SIGTERM right behind such a claim is honoured at once.
    sec = Secondary(name="secondary-2")
    with connect(sec) as c:
        c.sendall(claim)
        sec.signal(signal.SIGTERM)
        rc = sec.wait(ft.scaled(5))
        check(rc == 128 + signal.SIGTERM, "exit %r after SIGTERM\n%s" %
              (rc, sec.dump()))


def case_idle():
    ft.needs_kvm()
    timeout = ft.scaled(2)
    sec = Secondary(extra=["--setup-timeout", "%dms" % (timeout * 1000)])
    c = connect(sec)
    c.sendall(QEVM + command(OPEN_RETURN_PATH))
    t0 = time.monotonic()
    pongs = b""
    c.settimeout(0.2)
    n = 0
    asked = False
    while time.monotonic() - t0 < timeout * 3:
        if not asked and time.monotonic() - t0 > timeout / 2:
            asked = True
            s = sec.status()
            check(s["primary"].startswith("127.0.0.1:"), "status %r" % s)
        try:
            c.sendall(command(PING, struct.pack(">I", n)))
        except OSError:
            break
        n += 1
        try:
            got = c.recv(4096)
            if not got:
                break
            pongs += got
        except socket.timeout:
            pass
        except OSError:
            break
    took = time.monotonic() - t0
    c.close()
    log("dropped %.2f s after the last useful record, %d PINGs sent" %
        (took, n))
    check(took >= timeout, "dropped after %.2f s, before the %d s setup "
          "timeout" % (took, timeout))
    check(took < timeout * 3, "still connected after %.2f s" % took)
    check(struct.pack(">HHI", 2, 4, 0) in pongs, "no PONG 0 came back")
    check(struct.pack(">HHI", 1, 4, 1) in pongs, "no SHUT 1 came back")
    ft.wait_until(lambda: "sent nothing but PINGs" in sec.err(),
                  ft.scaled(5), "the log line")
    check(sec.status()["state"] == "waiting", "not waiting")
    pair_with_real_primary(sec)
    ft.check_peer_once(sec, 2)


def case_foreign():
    err = refused_by("foreign")
    check("checkpoint 4 is of pairing fake/" in err and
          "a package of another pairing" in err, "log:\n" + err)
    check("refused checkpoint" not in err, "it was NACKed:\n" + err)


def case_colo_in():
    err = refused_by("colo-in")
    check("'ftvm-colo-in' in a checkpoint-mode stream" in err,
          "log:\n" + err)


def dropped_by(step):
    """A fake primary's bring-up, three checkpoints, then its drop notice
    (step): the secondary exits 6 without failing over, saying so."""
    ft.needs_kvm()
    sec = Secondary()
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:3", step])
    sec.expect_exit(ft.EXIT_DROPPED)
    prim.finished()
    err = sec.err()
    check("dropped by the primary: stop-replication: the fake primary "
          "drops you" in err and "no failover" in err and
          "failover (" not in err and not sec.ticks(), "log:\n" + err)
    check("shut 1" not in prim.lines(), "refused:\n%s" % prim.dump())


def case_drop():
    dropped_by("drop")


def case_drop_cut():
    # No EOF after the notice: the connection just ends, as a dead
    # primary's does.  Without the notice that is a failover.
    dropped_by("drop-cut")


def case_drop_foreign():
    err = refused_by("drop-foreign")
    check("a drop notice of pairing fake/" in err and "dropped" not in err,
          "log:\n" + err)


def case_vm_name():
    ft.needs_kvm()
    sec = Secondary(extra=["--vm-name", "db-7"])
    prim = FakePrimary("primary", sec.addr, ["bringup", "ckpt:2", "eof"])
    ft.wait_until(lambda: "not a primary" in sec.err(), ft.scaled(10),
                  "the other VM refused")
    check("the primary's VM is 'fake', this secondary serves 'db-7' "
          "(--vm-name)" in sec.err(), "log:\n" + sec.err())
    prim.wait(ft.scaled(20))
    check(sec.status()["state"] == "waiting", "not waiting")
    prim = FakePrimary("primary-2", sec.addr, ["bringup", "ckpt:2", "wait",
                                               "eof"], vm_name="db-7")
    prim.wait_line("waiting")
    s = sec.status()
    check(s["vm_name"] == "db-7" and
          s["replication"]["pairing"].startswith("db-7/"), "status %r" % s)
    prim.go_on()
    sec.expect_exit(0)
    prim.finished()
    check(len(prim.acks()) == 3, "ACKs %r" % prim.acks())


CASES = {
    "usage": case_usage,
    "failover-kill": case_failover_kill,
    "refuse": case_refuse,
    "bad-disk": case_bad_disk,
    "truncated": case_truncated,
    "stall": case_stall,
    "garbage": case_garbage,
    "nothing": case_nothing,
    "not-a-primary": case_not_a_primary,
    "second": case_second,
    "failover-command": case_failover_command,
    "stop": case_stop,
    "save": case_save,
    "announce": case_announce,
    "primary-kill": case_primary_kill,
    "primary-stop": case_primary_stop,
    "huge-package": case_huge_package,
    "idle": case_idle,
    "foreign": case_foreign,
    "vm-name": case_vm_name,
    "drop": case_drop,
    "drop-cut": case_drop_cut,
    "drop-foreign": case_drop_foreign,
    "colo-in": case_colo_in,
}


def main():
    global fake
    if len(sys.argv) != 6 or sys.argv[1] not in CASES:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    ck.ftvm, ck.ftvmctl, fake, ck.guests = \
        (os.path.abspath(a) for a in sys.argv[2:])
    ft.run_case(sys.argv[1], CASES[sys.argv[1]], "sec")


if __name__ == "__main__":
    main()
