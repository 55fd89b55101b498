#!/usr/bin/env python3
"""End to end: a client of the VM's output through real failures.

    e2e_test.py CASE FTVM FTVMCTL GUEST_DIR [RUNS]

Real `ftvm primary` and `ftvm secondary` processes (each in a process
group of its own, always killed at exit), a consumer that reads what the
primary RELEASES (its stdout, a pipe read line by line) and, after a
failover, the secondary's stdout.  Exit 0 pass, 1 fail, 77 skipped (no
usable /dev/kvm; udpkv-tap and partition also need root).  FTVM_E2E_SEED
fixes the random delays; FTVM_E2E_KEEP_GOING=1 counts failed runs of
kill-primary instead of stopping at the first (soak.sh).  kill-primary,
secondary-kill and partition run their pairs over mutual TLS (certificates
made at test time, each end pinning the other's name); the others use
--insecure on loopback.

The counter's lines are compared with an uninterrupted reference run
(`ftvm run`, same area arguments; its tick lines do not depend on rate):
the primary's released lines must be the reference's first lines, the
secondary's must be the reference's lines from some index b on.  b below
the number of lines the consumer saw is a duplicate: output that a
failover took back.  b above it is a gap, which docs/replication.md allows
in one race only: the secondary applied checkpoint K but the primary died
before it read ACK K, so epoch K-1 (held) is lost, "as a packet is".  A
gap is accepted only if the primary's last_acked, read just before the
kill, was below the checkpoint the secondary continued from.

  kill-primary  RUNS (default 20) times: counter rate=50 in 64M, kill -9 of
                the primary after a random delay spread over bring-up
                (0-12 ms: checkpoint 1 is acknowledged ~7 ms after start),
                early (12-300 ms) and steady state (0.3-2 s).  Outcomes:
                failover (the sequence rule above, every CRC as the
                reference's); the secondary exits 3 (killed before
                checkpoint 1 was applied: nothing to fail over to); or the
                kill came before the primary connected or sent its VM (the
                secondary keeps waiting).  Rule for a kill before ACK 1:
                output produced before checkpoint 1's pause was released at
                once (no failover can go back before checkpoint 1), output
                after it is held; so the consumer saw a prefix of the
                reference (empty in practice: the counter prints its first
                line ~50 ms after start) and the secondary prints nothing.
  udpkv-tap     udpkv with the primary's TAP (ftvm-p0) and the secondary's
                (ftvm-s0) on one bridge in a namespace made here; a client
                PUTs keys, the primary is killed mid-stream; after the
                failover (the bridge learns the MAC's new port from the
                RARP announces) every PUT that was answered OK reads back.
  secondary-kill  counter: kill -9 of the secondary at random moments,
                three times: degraded within the failure timeout, output
                released, the guest runs on; attach-secondary to a fresh
                one each time brings it back to active; at the end kill -9
                of the primary: the last secondary carries on.  The
                primary's released output has no gap at all.
  secondary-kill-big  memtouch over 240 MiB of 256M (packages of several
                MiB, applies of tens of ms): four kills of the secondary at
                random moments (counted: with a package in flight, being
                received or applied), the third during a re-attach's
                bring-up (~300 MiB; output is not held then); degraded in
                time, memtouch keeps reporting; re-attach each time; kill -9
                of the primary at the end: the last secondary's reports
                continue after the primary's last one, never repeat it.
  corrupt       FTVM_TEST_CORRUPT_PACKAGE=5,30 (LD_PRELOAD of
                corrupt_package.so, FTVM_CORRUPT_PRELOAD): both refused
                (NACK), full
                checkpoints follow, replication stays active, the output
                has no gap; a later kill -9 of the primary fails over and
                the counter carries on by the sequence rule.
  partition     the replication connection crosses a veth pair between two
                namespaces made here; `ip link set DEV down` silences it:
                both sides detect it within the failure timeout (500 ms);
                the secondary fails over (primary silent), the primary goes
                degraded and releases its held output (no gap): split
                brain, inherent without a third party; both VMs run; the
                secondary never goes back behind what the primary released
                before the partition; the link back up merges nothing.
  stop-busy     stop-replication on the primary while packages and PINGs
                wait unread (the secondary SIGSTOPped for 300 ms, then
                SIGCONT): the secondary must exit 6 (dropped) without failing
                over.
  slow-link     every sendmsg of the primary delayed 40 ms (LD_PRELOAD of
                slow_sendmsg.so, FTVM_E2E_PRELOAD): replication must become
                and stay active (far below the 10 s stall timeout).
  failover-slow  the secondary validates each package 400 ms late
                (LD_PRELOAD of slow_apply.so, FTVM_SLOW_APPLY_PRELOAD), so
                packages queue behind it; counter rate=50 in 64M,
                --checkpoint-interval 50ms.  RUNS (default 6) failovers
                taken in turn three ways: kill -9 of the primary; SIGSTOP
                of it (the secondary drains what was sent, then finds it
                silent; the primary is killed after); `ftvmctl failover` on
                the secondary while the primary runs on.  Each time the
                secondary's first line must be exactly the one after the
                checkpoint it continued from: its console bytes before that
                line (by the reference) are the console bytes the guest had
                written at that checkpoint (failover.console_bytes), so it
                is never the banner or `tick 1` again, and never a line
                the consumer had already seen.

Traffic: 10.78.0.2 and 10.79.0.x, only inside the namespaces made here.
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "vm"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ckpt_test as ck  # noqa: E402
import ftvmtest as ft  # noqa: E402
from ftvmtest import check, fail, log  # noqa: E402

TICK_RE = re.compile(r"^tick (\d+) crc ([0-9a-f]{8})$")
HEAD_RE = re.compile(r"^counter rate=\d+ count=\d+ (area-kib=\d+ "
                     r"pages-per-tick=\d+ crc [0-9a-f]{8})$")
LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")
COUNTER = ["rate=50"]
REF_TICKS = 700
rng = random.Random()
stats = {}


def bump(k, n=1):
    stats[k] = stats.get(k, 0) + n


# ---- processes ----

class Stream(ft.Stream):
    """ftvmtest.Stream, with the counter's ticks (ckpt_test.Proc)."""
    ticks = ck.Proc.ticks
    last_tick = ck.Proc.last_tick
    wait_tick = ck.Proc.wait_tick


class Ctl:
    """The control protocol (docs/control-protocol.md) over one
    connection: cheaper than an ftvmctl process when timing matters."""

    def __init__(self, path, timeout=5):
        self.path, self.timeout, self.s, self.buf = path, timeout, None, b""

    def close(self):
        if self.s:
            self.s.close()
        self.s, self.buf = None, b""

    def _line(self):
        while b"\n" not in self.buf:
            b = self.s.recv(65536)
            if not b:
                raise OSError("connection closed")
            self.buf += b
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        """The result, or None if the process does not answer."""
        try:
            if not self.s:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.settimeout(self.timeout)
                self.s.connect(self.path)
                self._line()                # the greeting
            req = {"cmd": name, "id": 1}
            if args:
                req["args"] = args
            self.s.sendall(json.dumps(req).encode() + b"\n")
            r = self._line()
        except (OSError, ValueError):
            self.close()
            return None
        if not r.get("ok"):
            fail("%s on %s: %s" % (name, self.path, r.get("error")))
        return r["result"]

    def status(self):
        return self.cmd("status")


# The cases whose pairs run over mutual TLS (the pairing and the failovers
# a user relies on most, and the one across a real link); the others use
# --insecure on loopback.  Both ends pin the other's name.
TLS_CASES = ("kill-primary", "secondary-kill", "partition")
creds = None        # {"primary": DIR, "secondary": DIR} in those cases


def security(me, peer):
    if not creds:
        return ["--insecure"]
    # The secondary's handshake deadline (5 s) is behaviour the tests give
    # it like any other: longer on a slow machine (the one-CPU VM of
    # test.sh --vm under load took longer to finish a handshake).
    extra = (["--tls-timeout", "%dms" % round(ft.scaled(5000))]
             if me == "secondary" else [])
    return ft.tls_args(creds[me], peer) + extra


def failure_arg(failure):
    """A --failure-timeout of FAILURE ("500ms", "1s") on an ordinary
    machine, FTVM_TIME_SCALE times longer on a slow one: a secondary that
    takes longer to create its VM than the timeout is not what these cases
    test."""
    m = re.match(r"^(\d+)(ms|s)$", failure)
    ms = int(m.group(1)) * (1 if m.group(2) == "ms" else 1000)
    return "%dms" % round(ft.scaled(ms))


def spawn_secondary(name, extra=(), netns=None, listen="127.0.0.1:0",
                    failure="1s", env=None):
    """(Stream, "host:port", Ctl)."""
    sock = os.path.join(ft.tmp, name + ".sock")
    p = Stream(name, [ck.ftvm, "secondary", "--listen", listen, "--control",
                      sock, "--failure-timeout", failure_arg(failure)] +
               security("secondary", "primary") + list(extra),
               netns=netns, env=env)
    m = p.wait_err(LISTEN_RE, 10, "listening")
    ft.wait_until(lambda: os.path.exists(sock), 10, name + "'s socket")
    return p, "%s:%s" % (m.group(1), m.group(2)), Ctl(sock)


def spawn_primary(name, addr, image="counter", args=COUNTER, mem="64M",
                  extra=(), env=None, netns=None, failure="1s"):
    sock = os.path.join(ft.tmp, name + ".sock")
    p = Stream(name, [ck.ftvm, "primary", os.path.join(ck.guests,
                                                        image + ".elf")] +
               list(args) + ["--mem", mem, "--secondary", addr, "--control",
                             sock, "--failure-timeout", failure_arg(failure)] +
               security("primary", "secondary") + list(extra), env=env,
               netns=netns)
    return p, Ctl(sock)


def wait_state(ctl, proc, want, timeout=10):
    def ok():
        if not proc.alive():
            fail("%s exited (%s) before state %s\n%s" %
                 (proc.name, proc.p.returncode, want, proc.dump()))
        s = ctl.status()
        return s if s and s["state"] in want.split("|") else None
    return ft.wait_until(ok, timeout, "%s's state %s" % (proc.name, want),
                         step=0.005)


def retire(sec, pri, sctl, pctl):
    """Ends one run's pair of a case that runs many: both killed and
    checked for sanitizer reports, their control connections closed, out
    of ft.procs."""
    for p in (sec, pri):
        p.signal(signal.SIGKILL)
    for p in (sec, pri):
        try:
            p.p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        ft.check_sanitizers(p)
        ft.procs.remove(p)
    sctl.close()
    pctl.close()


def ctl_cli(sock, *args):
    """ftvmctl as an operator runs it."""
    r = ft.run([ck.ftvmctl, "-s", sock] + list(args),
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "ftvmctl %s: exit %d: %s%s" %
          (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r.stdout


# ---- the counter's reference and the sequence rule ----

class Reference:
    """An uninterrupted run, as fast as it goes: canonical lines by index
    (0 the header's area and CRC, n tick n)."""

    def __init__(self, args=COUNTER, count=REF_TICKS):
        self.keep = [a for a in args
                     if not a.startswith(("rate=", "count="))]
        self.runs = 0
        self._start(count)

    def _start(self, count):
        """A run of `count` ticks.  The ticks depend on the arguments
        alone, so a longer run only adds lines; it starts when a case ran
        longer than expected (a slow machine), not before: it competes for
        the CPU with what it checks."""
        self.runs += 1
        self.p = ck.Proc("reference" if self.runs == 1 else
                         "reference%d" % self.runs,
                         [ck.ftvm, "run", "--mem", "64M",
                          os.path.join(ck.guests, "counter.elf"),
                          "rate=100000", "count=%d" % count] + self.keep)
        self.count = count
        self.lines = []

    def text(self, i, args=COUNTER):
        """Line i as a run with args prints it (the header names them)."""
        idx, key = self.line(i)
        if idx:
            return "tick %d crc %s" % (idx, key)
        ra = dict(a.split("=", 1) for a in args)
        return "counter rate=%s count=%s %s" % (ra.get("rate", "10"),
                                                ra.get("count", "0"), key)

    def line(self, i):
        if i > self.count:
            self.p.kill9()
            self._start(max(2 * self.count, i + 100))
        if i >= len(self.lines):
            # Read once per wait, not once per line: the checks walk
            # every line a run printed.  Line 0 (the header) has no tick
            # to wait for: wait for the line itself.
            if self.p.last_tick() < i:
                self.p.wait_tick(i, timeout=30)
            self.lines = ft.wait_until(
                lambda: (lambda ls: ls if len(ls) > i else None)(
                    self.p.lines()), 30,
                "line %d of the reference run" % i)
        return canon(self.lines[i])


def canon(line):
    """(index, key) of a counter line: 0 for the header, n for tick n."""
    m = TICK_RE.match(line)
    if m:
        return int(m.group(1)), m.group(2)
    m = HEAD_RE.match(line)
    if m:
        return 0, m.group(1)
    fail("unexpected console line %r" % line)


def check_prefix(ref, lines, who):
    for i, l in enumerate(lines):
        idx, key = canon(l)
        check(idx == i, "%s: line %d is %r; expected index %d (a gap or a "
              "repeat in released output)" % (who, i, l, i))
        check(ref.line(i) == (idx, key), "%s: %r, the uninterrupted run "
              "says %r" % (who, l, ref.line(i)))


def check_continues(ref, seen, after, who):
    """after's lines are the reference's from some index b on; returns
    (b, gap) where gap = b - len(seen).  Fails on a duplicate."""
    check(after, "%s printed nothing" % who)
    b = canon(after[0])[0]
    for j, l in enumerate(after):
        idx, key = canon(l)
        check(idx == b + j, "%s: line %d is %r; expected index %d" %
              (who, j, l, b + j))
        check(ref.line(idx) == (idx, key), "%s: %r, the uninterrupted run "
              "says %r" % (who, l, ref.line(idx)))
    check(b >= len(seen), "%s starts at index %d but the consumer had "
          "already seen lines up to %d: output released before its "
          "checkpoint was safe (%r)" % (who, b, len(seen) - 1,
                                        seen[b] if b < len(seen) else ""))
    return b, b - len(seen)


def check_gap(gap, continued_from, acked_before, what):
    """The one permitted gap (see the module's doc)."""
    if gap == 0:
        return
    bump("gaps")
    # One epoch's output at most: 15 lines on an ordinary machine, where
    # a checkpoint comes every few ticks; a slow one (the one-CPU VM of
    # test.sh --vm) takes longer per checkpoint, so an epoch holds more.
    check(acked_before is not None and continued_from > acked_before and
          gap <= round(15 * ft.scaled(1.0)),
          "%s: %d line(s) lost across the failover, but the primary had "
          "acknowledged checkpoint %s before the kill and the secondary "
          "continued from %d: released output is missing" %
          (what, gap, acked_before, continued_from))
    log("  gap of %d line(s): the secondary applied checkpoint %d, the "
        "primary had read ACK %d (lost ACK race, documented)" %
        (gap, continued_from, acked_before))


# ---- kill-primary ----

def draw_kill(rand, bringup=0.25):
    """(phase, delay in s) of a kill: in the bring-up (0-12 ms: checkpoint
    1 is acknowledged ~7 ms after start) with probability bringup, else
    early (12-300 ms, a third of the rest) or in the steady state (0.3-2
    s, two thirds)."""
    r = rand.random()
    if r < bringup:
        return "bring-up", rand.uniform(0, 0.012)
    if r < bringup + (1 - bringup) / 3:
        return "early", rand.uniform(0.012, 0.3)
    return "steady", rand.uniform(0.3, 2.0)


def kill_at(pri, pctl, phase, delay):
    """kill -9 of pri delay s after it started; (the time of the kill,
    the last checkpoint it had read the ACK of just before: None in the
    bring-up, where reading it would come too late)."""
    t_kill = pri.started + delay
    acked = None
    if phase != "bring-up":
        time.sleep(max(0, t_kill - time.monotonic() - 0.003))
        st = pctl.status()
        acked = st["checkpoint"]["last_acked"] if st else None
    else:
        time.sleep(max(0, t_kill - time.monotonic()))
    pri.signal(signal.SIGKILL)
    pri.p.wait(10)
    return t_kill, acked


def secondary_outcome(sec, sctl, t_kill):
    """What the secondary made of its primary's kill: "exit", "failover",
    or "waiting" (the kill came before the primary sent its VM)."""
    def outcome():
        if not sec.alive():
            return "exit"
        s = sctl.status()
        if s and s["state"] == "running":
            return "failover"
        if s and s["state"] == "waiting" and \
                time.monotonic() - t_kill > 0.5:
            return "waiting"
        return None
    return ft.wait_until(outcome, 10, "the secondary to fail over or exit",
                         step=0.01)


def kill_primary_run(i, ref):
    sec, addr, sctl = spawn_secondary("sec%d" % i)
    phase, delay = draw_kill(rng)
    pri, pctl = spawn_primary("pri%d" % i, addr)
    t_kill, acked = kill_at(pri, pctl, phase, delay)
    seen = pri.eof()
    check(not pri.partial, "the primary's released output ends in a "
          "partial line %r" % pri.partial)
    protected = "protected by" in pri.err()
    what = secondary_outcome(sec, sctl, t_kill)
    check_prefix(ref, seen, "the primary's released output")
    desc = "run %d: %s kill at %.0f ms" % (i, phase, delay * 1e3)
    if what == "exit":
        rc = sec.p.returncode
        check(rc == 3, "%s: the secondary exited %d, expected 3 (nothing "
              "to fail over to) or a failover\n%s" % (desc, rc, sec.dump()))
        check(not protected, "%s: the primary had read ACK 1 but the "
              "secondary exited 3\n%s" % (desc, sec.dump()))
        check("before its first checkpoint" in sec.err(), sec.err())
        check(not sec.eof(), "%s: the secondary printed %r without a "
              "failover" % (desc, sec.lines()[:3]))
        bump("exit3")
        bump("exit3_lines_seen", len(seen))
        log("%s: before checkpoint 1 was applied: exit 3; the consumer "
            "saw %d line(s)" % (desc, len(seen)))
    elif what == "waiting":
        # Output before checkpoint 1 goes out unheld (nothing can take
        # it back: the secondary has no state to fail over to), so the
        # consumer may have seen some; protected it must not have been.
        check(not protected, "%s: the secondary waits but the primary "
              "was protected" % desc)
        bump("before_vm")
        log("%s: before the primary connected or sent its VM: the "
            "secondary still waits" % desc)
    else:
        s = sctl.status()
        fo = s["failover"]
        check(fo["reason"] == "primary lost", "failover reason %r" %
              fo["reason"])
        ft.wait_until(lambda: len(sec.lines()) >= 5 or
                      (not sec.alive() and fail(sec.dump())), 10,
                      "5 lines from the secondary")
        b, gap = check_continues(ref, seen, sec.lines(), "the secondary")
        check_gap(gap, fo["continued_from"], acked, desc)
        bump("failovers")
        if fo["continued_from"] == 1:
            bump("from_ckpt1")
        log("%s: consumer saw %d line(s) from the primary, the secondary "
            "goes on at index %d from checkpoint %d (acked before the "
            "kill: %s) in %.1f ms" % (desc, len(seen), b,
                                      fo["continued_from"], acked,
                                      fo["ms"]))
    retire(sec, pri, sctl, pctl)


def case_kill_primary(runs):
    ref = Reference()
    keep_going = os.environ.get("FTVM_E2E_KEEP_GOING") == "1"
    failures = 0
    t0 = time.monotonic()
    for i in range(1, runs + 1):
        bump("runs")
        try:
            kill_primary_run(i, ref)
        except ft.Failure as e:
            failures += 1
            bump("failures")
            if not keep_going:
                raise
            log("FAIL run %d: %s" % (i, e))
            for p in list(ft.procs):
                if not p.name.startswith("reference"):
                    log(p.dump())
                    p.signal(signal.SIGKILL)
                    ft.procs.remove(p)
    log("summary: runs=%d failovers=%d exit3=%d before_vm=%d "
        "from_ckpt1=%d gaps=%d failures=%d in %.1f s" %
        (stats.get("runs", 0), stats.get("failovers", 0),
         stats.get("exit3", 0), stats.get("before_vm", 0),
         stats.get("from_ckpt1", 0), stats.get("gaps", 0), failures,
         time.monotonic() - t0))
    check(failures == 0, "%d of %d runs failed" % (failures, runs))


# ---- the secondary dies ----

def kill_secondary(pri, pctl, sec, timeout_s, desc):
    """kill -9 of sec: the primary is degraded within timeout_s, holds
    nothing, its VM runs.  Returns (ms to degraded, status before)."""
    before = pctl.status()
    t0 = time.monotonic()
    sec.signal(signal.SIGKILL)
    st = wait_state(pctl, pri, "degraded", timeout_s + 2)
    ms = (time.monotonic() - t0) * 1e3
    # 100 ms to notice and report it on an ordinary machine, scaled.
    check(ms <= (timeout_s + ft.scaled(0.1)) * 1e3, "%s: degraded %.0f ms "
          "after the kill, the failure timeout is %.0f ms" %
          (desc, ms, timeout_s * 1e3))
    out = st["output"]
    check(not out["holding"] and out["held_bytes"] == 0 and
          out["console_held_bytes"] == 0, "%s: output still held when "
          "degraded: %r" % (desc, out))
    check(st["vm_state"] == "running", "%s: vm_state %r" % (desc,
                                                          st["vm_state"]))
    check("running unprotected (degraded)" in pri.err(), pri.err())
    sec.p.wait(10)
    return ms, before


def attach(pri, pctl, name, **kw):
    sec, addr, sctl = spawn_secondary(name, **kw)
    ctl_cli(pctl.path, "attach-secondary", addr)
    return sec, addr, sctl


def final_failover(ref, pri, pctl, sec, sctl, desc):
    """kill -9 of the primary: the secondary carries the counter on."""
    time.sleep(rng.uniform(0.2, 0.8))
    st = pctl.status()
    acked = st["checkpoint"]["last_acked"]
    pri.signal(signal.SIGKILL)
    pri.p.wait(10)
    seen = pri.eof()
    check_prefix(ref, seen, "the primary's released output")
    s = wait_state(sctl, sec, "running", 10)
    ft.wait_until(lambda: len(sec.lines()) >= 5 or
                  (not sec.alive() and fail(sec.dump())), 10,
                  "5 lines from the secondary")
    b, gap = check_continues(ref, seen, sec.lines(), "the new secondary")
    check_gap(gap, s["failover"]["continued_from"], acked, desc)
    log("%s: the primary released %d lines, the secondary goes on at %d "
        "from its checkpoint %d" % (desc, len(seen), b,
                                    s["failover"]["continued_from"]))


def case_secondary_kill():
    ref = Reference()
    sec, addr, sctl = spawn_secondary("sec1", failure="500ms")
    pri, pctl = spawn_primary("pri", addr, failure="500ms")
    wait_state(pctl, pri, "active")
    for r in range(1, 4):
        time.sleep(rng.uniform(0.1, 1.0))
        n = len(pri.lines())
        ms, before = kill_secondary(pri, pctl, sec, ft.scaled(0.5),
                                        "kill %d" % r)
        held = before["output"]["console_held_bytes"]
        ft.wait_until(lambda: len(pri.lines()) >= n + 5, 5,
                      "the primary's ticks to go on, degraded")
        log("kill %d of the secondary: degraded in %.1f ms; %d bytes were "
            "held, %d in flight" % (r, ms, held,
                                    before["checkpoint"]["in_flight"]))
        check_prefix(ref, pri.lines(), "the primary's released output")
        sec, addr, sctl = attach(pri, pctl, "sec%d" % (r + 1),
                                 failure="500ms")
        st = wait_state(pctl, pri, "active")
        check(st["secondary"] == addr and st["secondaries"] == r + 1,
              "after attach: %r" % st)
        check(st["output"]["holding"], "active but output not held")
    final_failover(ref, pri, pctl, sec, sctl, "final kill of the primary")


MT_RE = re.compile(r"^memtouch pages=(\d+) elapsed_ms=(\d+) rate=(\d+)$")


def memtouch_reports(lines, who):
    """[(pages, elapsed_ms)] of the report lines, checked in order."""
    r = []
    for l in lines:
        m = MT_RE.match(l)
        if m:
            r.append((int(m.group(1)), int(m.group(2))))
        else:
            check(l.startswith("memtouch pages-per-second="),
                  "%s: unexpected line %r" % (who, l))
    for a, b in zip(r, r[1:]):
        check(b[0] >= a[0] and b[1] > a[1], "%s: report %r follows %r" %
              (who, b, a))
    return r


def case_secondary_kill_big():
    args = ["working-set-mib=240"]
    sec, addr, sctl = spawn_secondary("sec1")
    pri, pctl = spawn_primary("pri", addr, image="memtouch", args=args,
                              mem="256M")
    wait_state(pctl, pri, "active")
    # It clears its 240 MiB before its first line: seconds, under load.
    ft.wait_until(lambda: memtouch_reports(pri.lines(), "the primary"), 20,
                  "memtouch's first report")
    in_flight = 0
    for r in range(1, 5):
        if r == 3:
            # During a re-attach's bring-up (setup): output is not held.
            st = wait_state(pctl, pri, "setup|active", 10)
            check(st["state"] == "setup", "the bring-up of %d MiB was "
                  "over before it could be seen" % 240)
            check(not st["output"]["holding"], "output held during the "
                  "bring-up: %r" % st["output"])
        else:
            if r > 1:
                wait_state(pctl, pri, "active", 20)
            time.sleep(rng.uniform(0.1, 0.8))
        n = len(memtouch_reports(pri.lines(), "the primary"))
        ms, before = kill_secondary(pri, pctl, sec, 1.0, "kill %d" % r)
        fl = before["checkpoint"]["in_flight"]
        if before["state"] == "active" and fl:
            in_flight += 1
        log("kill %d of the secondary (%s, %d package(s) in flight, the "
            "last of %d bytes): degraded in %.1f ms" %
            (r, before["state"], fl, before["package_bytes"]["last"], ms))
        ft.wait_until(lambda: len(memtouch_reports(pri.lines(),
                                                   "the primary")) > n,
                      10, "memtouch to report again, degraded")
        st = pctl.status()
        check(st["vm_state"] == "running", "vm_state %r" % st["vm_state"])
        sec, addr, sctl = attach(pri, pctl, "sec%d" % (r + 1))
    st = wait_state(pctl, pri, "active", 20)
    log("bring-up of the last secondary: %.1f MiB in %d pass(es), %.0f ms" %
        (st["bringup"]["bytes"] / 1048576.0, st["bringup"]["passes"],
         st["bringup"]["ms"]))
    log("%d of the 3 kills while active had a package in flight" %
        in_flight)
    time.sleep(rng.uniform(0.2, 1.0))
    pri.signal(signal.SIGKILL)
    pri.p.wait(10)
    seen = memtouch_reports(pri.eof(), "the primary")
    s = wait_state(sctl, sec, "running", 10)
    ft.wait_until(lambda: memtouch_reports(sec.lines(), "the secondary"),
                  5, "a report from the secondary")
    mine = memtouch_reports(sec.lines(), "the secondary")
    check(not [l for l in sec.lines() if not MT_RE.match(l)],
          "the secondary started memtouch again: %r" % sec.lines()[:3])
    check(mine[0][1] > seen[-1][1] and mine[0][0] >= seen[-1][0],
          "the secondary's first report %r repeats the primary's %r" %
          (mine[0], seen[-1]))
    log("failover from checkpoint %d: the primary's last report %r, the "
        "secondary's first %r" % (s["failover"]["continued_from"],
                                  seen[-1], mine[0]))


# ---- a package damaged in flight ----

def case_corrupt():
    lib = os.environ.get("FTVM_CORRUPT_PRELOAD")
    if not lib or not os.path.exists(lib):
        fail("FTVM_CORRUPT_PRELOAD does not name corrupt_package.so (the "
             "meson test sets it)")
    ref = Reference()
    sec, addr, sctl = spawn_secondary("sec")
    pri, pctl = spawn_primary("pri", addr, env={
        "LD_PRELOAD": lib, "FTVM_TEST_CORRUPT_PACKAGE": "5,30"})
    wait_state(pctl, pri, "active")

    def past():
        st = pctl.status()
        return st if st["nacks"] >= 2 and \
            st["checkpoint"]["last_acked"] > 36 else None
    st = ft.wait_until(past, 15, "two NACKs and acknowledgements after")
    check(st["state"] == "active", "state %r" % st["state"])
    check(st["checkpoint"]["full"] >= 2, "full packages: %r" %
          st["checkpoint"])
    check(pri.err().count("TEST: damaged package") == 2, pri.err())
    ss = sctl.status()
    rep = ss["replication"]
    check(ss["state"] == "active" and rep["refused"] >= 2,
          "the secondary: %r" % ss)
    log("primary: %d NACKs, %d full packages; secondary: %d refused, the "
        "last: %s" % (st["nacks"], st["checkpoint"]["full"],
                      rep["refused"], rep["last_refusal"]))
    check(sec.err().count("refused checkpoint") >= 2, sec.err())
    check_prefix(ref, pri.lines(), "the primary's released output")
    final_failover(ref, pri, pctl, sec, sctl, "kill of the primary")


# ---- udpkv over TAP on a bridge ----

GUEST_IP, GUEST_MAC = "10.78.0.2", "02:00:0a:4e:00:02"


def sh(*argv, ok=True):
    return ck.sh(*argv, ok=ok)


def netns(tag):
    """A fresh namespace, deleted at exit (with everything in it)."""
    if not shutil.which("ip"):
        ft.skip("`ip` (iproute2) is not installed")
    ns = "ftvm-e2e-%s-%d-%04x" % (tag, os.getpid(), rng.getrandbits(16))
    r = ft.run(["ip", "netns", "add", ns], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        ft.skip("cannot create a network namespace: %s" % r.stderr.strip())

    def delete():
        ft.kill_all()       # nothing may hold the namespace or a tap
        ft.run(["ip", "netns", "del", ns], capture_output=True,
                       timeout=30)
    ft.cleanups.append(delete)
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    return ns


def case_udpkv_tap():
    if not os.path.exists("/dev/net/tun"):
        ft.skip("/dev/net/tun is missing")
    ns = netns("kv")
    ipn = ["ip", "-n", ns]
    sh(*ipn, "link", "add", "ftvm-br0", "type", "bridge", "stp_state", "0")
    sh(*ipn, "addr", "add", "10.78.0.1/24", "dev", "ftvm-br0")
    for tap in ("ftvm-p0", "ftvm-s0"):
        sh(*ipn, "tuntap", "add", "dev", tap, "mode", "tap")
        sh(*ipn, "link", "set", tap, "master", "ftvm-br0", "up")
    sh(*ipn, "link", "set", "ftvm-br0", "up")

    sec, addr, sctl = spawn_secondary("sec", netns=ns,
                                      extra=["--net", "tap:ftvm-s0"])
    pri, pctl = spawn_primary("pri", addr, image="udpkv", mem="32M",
                              args=["ip=" + GUEST_IP], netns=ns,
                              extra=["--net", "tap:ftvm-p0", "--mac",
                                     GUEST_MAC, "--checkpoint-interval",
                                     "20ms"])
    wait_state(pctl, pri, "active")
    ft.wait_until(lambda: any(l.startswith("udpkv ready ip=" + GUEST_IP)
                              for l in pri.lines()) or
                  (not pri.alive() and fail(pri.dump())), 20, "udpkv ready")
    salt = "%08x" % rng.getrandbits(32)
    n, kill_after = 150, rng.randint(15, 60)
    cap = Stream("rarp", [sys.executable, os.path.join(HERE, "kvload.py"),
                          GUEST_IP, "-", "rarp", "ftvm-br0", "30"],
                 netns=ns)
    ft.wait_until(lambda: cap.lines() or (not cap.alive() and
                                          fail(cap.dump())), 10,
                  "the RARP capture")
    client = Stream("put", [sys.executable, os.path.join(HERE, "kvload.py"),
                            GUEST_IP, salt, "put", str(n)], netns=ns)

    def oks():
        return [int(l.split()[1]) for l in client.lines()
                if l.startswith("ok ")]
    ft.wait_until(lambda: len(oks()) >= kill_after or
                  (not client.alive() and fail(client.dump())), 30,
                  "%d PUTs answered" % kill_after)
    pri.signal(signal.SIGKILL)
    pri.p.wait(10)
    before = len(oks())
    log("killed the primary after %d PUTs were answered" % before)
    wait_state(sctl, sec, "running", 10)
    check(client.wait(60) == 0, "the client failed\n" + client.dump())
    lines = client.eof()
    acked = oks()
    lost = [l for l in lines if not l.startswith("ok ")]
    check(not lost, "PUTs not answered within the client's retries "
          "(10 s) or refused: %r" % lost[:5])
    check(len(acked) == n, "%d of %d PUTs answered" % (len(acked), n))

    # The bridge learnt the MAC's new port from the announces.
    def learnt():
        r = sh("bridge", "-n", ns, "fdb", "show", "br", "ftvm-br0", ok=False)
        return [l for l in r.stdout.splitlines()
                if l.startswith(GUEST_MAC + " ") and "dev ftvm-s0" in l]
    ft.wait_until(learnt, 3, "the bridge to learn %s on ftvm-s0" % GUEST_MAC)
    st = ft.wait_until(lambda: (lambda st: st if st["failover"].get(
        "announced") == 5 else None)(sctl.status()), 3, "5 announces")
    ft.wait_until(lambda: len([l for l in cap.lines()
                               if l == "rarp " + GUEST_MAC]) >= 5, 3,
                  "5 RARP announces of %s on the bridge" % GUEST_MAC)
    check(not [l for l in cap.lines()[1:] if l != "rarp " + GUEST_MAC],
          "other RARP frames: %r" % cap.lines())
    gaps = [b - a for a, b in zip(client.times, client.times[1:])]
    log("failover from checkpoint %d in %.1f ms, 5 announces seen on the "
        "bridge; %d PUTs answered by the primary, %d after; the longest "
        "wait between two answers %.0f ms" %
        (st["failover"]["continued_from"], st["failover"]["ms"], before,
         n - before, max(gaps) * 1e3))
    r = ft.run(["ip", "netns", "exec", ns, sys.executable,
                        os.path.join(HERE, "kvload.py"), GUEST_IP, salt,
                        "get"], input="\n".join(map(str, acked)),
                       capture_output=True, text=True, timeout=120)
    log(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "")
    check(r.returncode == 0, "GET after the failover:\n%s%s" %
          (r.stdout[-3000:], r.stderr))
    check(not [l for l in sec.lines() if l.startswith("udpkv ready")],
          "the secondary's guest booted again: %r" % sec.lines()[:3])


# ---- the network between the two fails ----

def case_partition():
    ref = Reference()
    nsp, nss = netns("p"), netns("s")
    sh("ip", "-n", nsp, "link", "add", "ftvm-vp", "type", "veth", "peer",
       "name", "ftvm-vs", "netns", nss)
    sh("ip", "-n", nsp, "addr", "add", "10.79.0.1/24", "dev", "ftvm-vp")
    sh("ip", "-n", nss, "addr", "add", "10.79.0.2/24", "dev", "ftvm-vs")
    sh("ip", "-n", nsp, "link", "set", "ftvm-vp", "up")
    sh("ip", "-n", nss, "link", "set", "ftvm-vs", "up")
    timeout = ft.scaled(0.5)
    sec, addr, sctl = spawn_secondary("sec", netns=nss,
                                      listen="10.79.0.2:0", failure="500ms")
    pri, pctl = spawn_primary("pri", addr, netns=nsp, failure="500ms")
    wait_state(pctl, pri, "active")
    time.sleep(rng.uniform(0.3, 1.0))
    before = pctl.status()["checkpoint"]["last_acked"]
    n0 = len(pri.lines())
    t0 = time.monotonic()
    sh("ip", "-n", nss, "link", "set", "ftvm-vs", "down")
    t_link = time.monotonic() - t0
    got = {}

    def both():
        if "p" not in got and pctl.status()["state"] == "degraded":
            got["p"] = time.monotonic() - t0
        if "s" not in got:
            st = sctl.status()
            if st and st["state"] == "running":
                got["s"] = time.monotonic() - t0
        if not pri.alive() or not sec.alive():
            fail("a side exited after the link went down")
        return len(got) == 2
    ft.wait_until(both, 5, "both sides to notice the partition (%r)" % got,
                  step=0.005)
    log("link down (took %.0f ms); the primary degraded after %.0f ms, the "
        "secondary failed over after %.0f ms (failure timeout %.0f ms)" %
        (t_link * 1e3, got["p"] * 1e3, got["s"] * 1e3, timeout * 1e3))
    for side in "ps":
        check(got[side] <= timeout + ft.scaled(0.3) + t_link,
              "detected after %.0f ms" % (got[side] * 1e3))
    pst, sst = pctl.status(), sctl.status()
    check("nothing heard" in pst["last_error"], "primary: last_error %r" %
          pst["last_error"])
    check(not pst["output"]["holding"] and pst["vm_state"] == "running",
          "primary: %r" % pst["output"])
    fo = sst["failover"]
    check(fo["reason"] == "primary silent", "secondary: reason %r" %
          fo["reason"])
    check(fo["continued_from"] >= before, "continued from %d, %d was "
          "acknowledged" % (fo["continued_from"], before))
    n = len(pri.lines())
    ft.wait_until(lambda: len(pri.lines()) >= n + 10 and
                  len(sec.lines()) >= 10, 10, "both VMs to print 10 lines")
    check_prefix(ref, pri.lines(), "the primary's output")
    shown = len(pri.lines())
    # Both go on from the same state: the secondary repeats what the
    # primary released after its checkpoint (a client of both sees it).
    b = canon(sec.lines()[0])[0]
    for j, l in enumerate(sec.lines()):
        check(canon(l) == ref.line(b + j), "the secondary: %r" % l)
    check(b >= n0, "the secondary went on at line %d, but the primary "
          "had released line %d before the partition" % (b, n0 - 1))
    log("split brain: both VMs run; the secondary went on at line %d "
        "(checkpoint %d); the primary had released up to line %d before "
        "the partition, %d once degraded, %d now: a client of both sees "
        "lines %d..%d twice" % (b, fo["continued_from"], n0 - 1, n - 1,
                               shown - 1, b, shown - 1))
    # The link back: nothing merges; both keep running as they are.
    sh("ip", "-n", nss, "link", "set", "ftvm-vs", "up")
    time.sleep(0.5)
    check(pri.alive() and sec.alive(), "a side exited after the link "
          "came back")
    check(pctl.status()["state"] == "degraded" and
          sctl.status()["state"] == "running", "states changed after the "
          "link came back")


# ---- stop-replication on a busy link ----

def case_stop_busy():
    """docs/replication.md: stop-replication on the primary sends its drop
    notice and EOF, and both sides end protection cleanly; the secondary
    exits 6 (dropped) without failing over.  Here the link is busy when the operator stops it: the
    secondary was briefly stopped (SIGSTOP, 300 ms, well inside the 2 s
    failure timeout), so packages and PINGs are queued unread, as for a
    slow secondary, and it goes on (SIGCONT) just after the stop."""
    failed = []
    for r in range(1, 4):
        sec, addr, sctl = spawn_secondary("sec%d" % r, failure="2s")
        pri, pctl = spawn_primary("pri%d" % r, addr, failure="2s")
        wait_state(pctl, pri, "active")
        time.sleep(0.5)
        sec.signal(signal.SIGSTOP)
        time.sleep(0.3)
        st = pctl.status()
        pctl.cmd("stop-replication")
        sec.signal(signal.SIGCONT)
        ft.wait_until(lambda: not sec.alive() or "failover (" in sec.err(),
                      20, "the secondary to exit")
        rc = sec.p.poll()
        fo = "failover (" in sec.err()
        log("stop %d: %d package(s) in flight, the last of %d bytes; the "
            "secondary %s" % (r, st["checkpoint"]["in_flight"],
                              st["package_bytes"]["last"],
                              "FAILED OVER" if fo else "exited %s" % rc))
        if fo or rc != ft.EXIT_DROPPED:
            failed.append("stop %d: %s" % (r, sec.err().splitlines()[-2:]))
        retire(sec, pri, sctl, pctl)
    check(not failed, "after stop-replication on the primary the secondary "
          "did not end cleanly (split brain):\n  " + "\n  ".join(failed))


# ---- a slow link at bring-up ----

def case_slow_link():
    """Every sendmsg of the primary waits 40 ms first (LD_PRELOAD of
    slow_sendmsg.so, path in FTVM_E2E_PRELOAD), as a link thread
    descheduled on a loaded machine: far below the 10 s stall timeout,
    so replication must still become active and stay so."""
    lib = os.environ.get("FTVM_E2E_PRELOAD")
    if not lib or not os.path.exists(lib):
        ft.skip("FTVM_E2E_PRELOAD does not name slow_sendmsg.so")
    sec, addr, sctl = spawn_secondary("sec")
    pri, pctl = spawn_primary("pri", addr, env={
        "LD_PRELOAD": lib, "FTVM_TEST_SLOW_SENDMSG_MS": "40"})
    ft.wait_until(lambda: (pctl.status() or {}).get("state") in
                  ("active", "degraded"), 10, "active or degraded")
    time.sleep(1)
    st = pctl.status()
    check(st["state"] == "active", "a link whose writes each wait 40 ms "
          "was given up: %r\n%s" % (st["last_error"], pri.err()))
    log("active; %d checkpoints acknowledged" % st["checkpoint"]["acked"])


# ---- failover while the secondary applies slowly ----

def slow_failover_run(i, ref, how, lib):
    sec, addr, sctl = spawn_secondary("sec%d" % i, env={
        "LD_PRELOAD": lib, "FTVM_TEST_SLOW_APPLY_MS": "400"})
    pri, pctl = spawn_primary("pri%d" % i, addr,
                              extra=["--checkpoint-interval", "50ms"])
    desc = "run %d (%s)" % (i, how)

    def applied(n):
        def ok():
            if not sec.alive() or not pri.alive():
                fail("%s: a process exited\n%s\n%s" % (desc, sec.dump(),
                                                         pri.dump()))
            s = sctl.status()
            return s and s.get("replication", {}).get("applied", 0) >= n
        return ok
    # Past checkpoint 2, then a little further: packages are queued.
    ft.wait_until(applied(2), 60, "%s: two checkpoints applied" % desc)
    ft.wait_until(applied(2 + rng.randrange(3)), 60,
                  "%s: more checkpoints applied" % desc)
    acked = (pctl.status() or {}).get("checkpoint", {}).get("last_acked")
    if how == "kill":
        pri.signal(signal.SIGKILL)
        pri.p.wait(10)
        seen = pri.eof()
    elif how == "stop":
        pri.signal(signal.SIGSTOP)
        seen = None
    else:
        seen = pri.lines()
        r = sctl.cmd("failover")
        check(r is not None, "%s: failover command unanswered" % desc)
    wait_state(sctl, sec, "running", timeout=60)
    if how == "stop":
        # Killed before it ever ran again: what it released, it released
        # before the stop.
        pri.signal(signal.SIGKILL)
        pri.p.wait(10)
        seen = pri.eof()
    fo = sctl.status()["failover"]
    want = {"kill": "primary lost", "stop": "primary silent",
            "command": "requested"}[how]
    check(fo["reason"] == want, "%s: failover reason %r, expected %r" %
          (desc, fo["reason"], want))
    ft.wait_until(lambda: len(sec.lines()) >= 3 or
                  (not sec.alive() and fail(sec.dump())), 30,
                  "%s: 3 lines from the secondary" % desc)
    after = sec.lines()
    check_prefix(ref, seen, "%s: the primary's released output" % desc)
    b = canon(after[0])[0]
    # Exactly the line after checkpoint K: the guest had written the
    # bytes of lines 0..b-1 by then, and not one byte more.
    before = sum(len(ref.text(j)) + 1 for j in range(b))
    check(before == fo["console_bytes"], "%s: the secondary's first line "
          "is %r (index %d, %d console bytes before it), but checkpoint "
          "%d holds a guest that had written %d bytes: it did not resume "
          "that checkpoint\n%s" % (desc, after[0], b, before,
                                    fo["continued_from"],
                                    fo["console_bytes"], sec.dump()))
    # The banner or tick 1 again, after the consumer saw it: the guest
    # started over (the failure this case was written for).
    check(b > 1 or len(seen) <= b, "%s: the secondary started the guest "
          "over (%r) although the consumer had seen %d line(s) and it "
          "continued from checkpoint %d\n%s" %
          (desc, after[0], len(seen), fo["continued_from"], sec.dump()))
    b2, gap = check_continues(ref, seen, after, "%s: the secondary" % desc)
    log("%s: the consumer saw %d line(s) (ACK %s read before), the "
        "secondary goes on at index %d from checkpoint %d, exactly; %d "
        "held line(s) lost with the primary's unread ACKs" %
        (desc, len(seen), acked, b, fo["continued_from"], gap))
    retire(sec, pri, sctl, pctl)


def case_failover_slow(runs):
    lib = os.environ.get("FTVM_SLOW_APPLY_PRELOAD")
    if not lib or not os.path.exists(lib):
        ft.skip("FTVM_SLOW_APPLY_PRELOAD does not name slow_apply.so")
    ref = Reference()
    ways = ["kill", "stop", "command"]
    for i in range(1, runs + 1):
        slow_failover_run(i, ref, ways[(i - 1) % len(ways)], lib)


# ---- main ----

CASES = {
    "kill-primary": (case_kill_primary, False),
    "secondary-kill": (case_secondary_kill, False),
    "secondary-kill-big": (case_secondary_kill_big, False),
    "corrupt": (case_corrupt, False),
    "stop-busy": (case_stop_busy, False),
    "slow-link": (case_slow_link, False),
    "failover-slow": (case_failover_slow, False),
    "partition": (case_partition, "network namespaces and a veth pair"),
    "udpkv-tap": (case_udpkv_tap, "TAP devices on a bridge in a network "
                  "namespace"),
}


def seeded_main(doc, cases, kind, runs, rand, prepare=None,
                runs_env=None):
    """main() of the drivers whose cases draw from rand: CASE FTVM FTVMCTL
    GUEST_DIR [RUNS], the seed FTVM_E2E_SEED or drawn (and logged).  A case
    named in runs (case: default) is given RUNS, else $runs_env, else its
    default; prepare(case), if given, runs first inside the case (what it
    needs: KVM, root)."""
    if len(sys.argv) not in (5, 6) or sys.argv[1] not in cases:
        print(doc, file=sys.stderr)
        sys.exit(2)
    case = sys.argv[1]
    ck.ftvm, ck.ftvmctl, ck.guests = \
        (os.path.abspath(a) for a in sys.argv[2:5])
    n = None
    if case in runs:
        n = int(sys.argv[5] if len(sys.argv) == 6 else
                os.environ.get(runs_env or "", "") or runs[case])
    seed = int(os.environ.get("FTVM_E2E_SEED") or
               random.SystemRandom().randrange(1 << 32))
    rand.seed(seed)

    def run():
        if prepare:
            prepare(case)
        log("%s: FTVM_E2E_SEED=%d" % (case, seed))
        if n is None:
            cases[case]()
        else:
            cases[case](n)
    ft.run_case(case, run, kind, " (FTVM_E2E_SEED=%d)" % seed)


def prepare(case):
    """What a case needs: KVM, root for some, the pair's certificates."""
    global creds
    ft.needs_kvm()
    if CASES[case][1]:
        ft.needs_root(CASES[case][1])
    if case in TLS_CASES:
        creds = ft.make_certs("pair", "primary", "secondary")


def main():
    seeded_main(__doc__, {k: fn for k, (fn, _) in CASES.items()}, "e2e",
                {"kill-primary": 20, "failover-slow": 6}, rng, prepare)


if __name__ == "__main__":
    main()
