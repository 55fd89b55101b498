#!/usr/bin/env python3
"""The roles with a witness: real `ftvm primary` and `ftvm secondary`
(the counter guest, KVM) and a real three-member etcd cluster on loopback
(tests/lib/etcdcluster.py).  The counter's output is checked as
e2e_test.py checks it: what the primary released is a prefix of an
uninterrupted run, and the secondary continues it without a repeat.

    roles_test.py CASE FTVM FTVMCTL GUEST_DIR

    sec-kill        kill -9 of the primary: the secondary claims
                    /ftvm/counter/1/owner, wins (etcd holds its value) and
                    goes live; the counter continues; status says won
    sec-quorum      two of three etcd members SIGSTOPped, then the primary
                    killed: the secondary does not go live (no output),
                    its status says claiming / unknown and why, for
                    several attempts; the members resumed, it wins and
                    goes live, the counter continuing
    sec-fenced      the key already holds another value (a primary that
                    won): the primary killed, the secondary exits 5
                    without printing a line, saying who owns the VM
    sec-command     `ftvmctl failover` with the key held by another: refused
                    naming the owner, replication goes on; the primary
                    killed with two members stopped: `ftvmctl failover` is
                    refused (claiming), `ftvmctl failover --force` goes
                    live at once, with the warning in the log
    pri-command     both with --witness, the primary alive and connected:
                    `ftvmctl failover` on the secondary claims and wins; the
                    primary, finding its link gone, claims, loses and exits
                    123; what it released is a prefix of the counter, and
                    the secondary continues it without a repeat
    pri-won         kill -9 of the secondary: the primary claims, wins
                    (etcd holds its value), runs on degraded, its output
                    continuing
    pri-quorum      two of three members SIGSTOPped, then the secondary
                    killed: the primary says claiming, its VM paused and
                    not a line released; the members resumed, it wins,
                    resumes and its output continues
    no-witness      without --witness both roles say, at start-up and in
                    status, that a stall or a partition can run both copies
    tls             as sec-kill, both roles with the witness, against a
                    cluster that serves https:// only and asks for client
                    certificates (--witness-tls)
    drop            `ftvmctl stop-replication` on the primary: the
                    secondary logs that it was dropped, exits 6, never
                    claims (no key in etcd) nor prints; the primary runs on
    stale           /ftvm/counter/5/owner decided: a primary without the
                    witness (generation 1) is refused by the secondary,
                    both logging why (the primary exits 120, the secondary
                    waits on, nothing made); a primary with the witness
                    starts at generation 6, is served, and after its kill
                    -9 the secondary claims generation 6 and goes live
    start-quorum    two of three members stopped: a primary with the
                    witness says it cannot learn the decided generations
                    and waits (no connection, the guest not started);
                    SIGTERM ends it (143); a secondary with the witness
                    refuses a primary it cannot check once the setup
                    timeout passes (the primary exits 120, both say why);
                    the members back, a primary pairs at generation 1

Exit 0 pass, 1 fail, 77 skipped (no KVM or no etcd).
"""
import os
import re
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "replication"))
sys.path.insert(0, os.path.join(HERE, "..", "vm"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ckpt_test as ck  # noqa: E402
import e2e_test as e2e  # noqa: E402
import etcdcluster  # noqa: E402
import ftvmtest as ft  # noqa: E402
from ftvmtest import check, log  # noqa: E402

KEY = "/ftvm/counter/1/owner"
NO_WITNESS = ("no witness: a stall or a partition can leave both copies "
              "running (docs/witness.md)")


# --witness-tls DIR for every process, when the case's cluster has TLS.
witness_tls = []


def witness(c):
    # Behaviour the processes are given: longer on a slow machine.
    return ["--witness", c.endpoints(), "--witness-timeout",
            "%dms" % round(ft.scaled(500))] + witness_tls


def pair(c, extra=(), primary_witness=False):
    """A secondary with --witness (c's endpoints) and a primary (with it
    too if primary_witness), active."""
    sec, addr, sctl = e2e.spawn_secondary("sec", witness(c) + list(extra))
    pri, pctl = e2e.spawn_primary(
        "pri", addr, extra=witness(c) if primary_witness else ())
    e2e.wait_state(pctl, pri, "active", 20)
    ft.wait_until(lambda: pctl.status()["checkpoint"]["last_acked"] >= 3, 20,
                  "three checkpoints acknowledged")
    return sec, sctl, pri, pctl


def kill_primary(ref, pri, pctl):
    acked = pctl.status()["checkpoint"]["last_acked"]
    pri.signal(signal.SIGKILL)
    pri.p.wait(10)
    seen = pri.eof()
    e2e.check_prefix(ref, seen, "the primary's released output")
    return seen, acked


def goes_on(ref, sec, sctl, seen, acked, desc):
    s = e2e.wait_state(sctl, sec, "running", 20)
    ft.wait_until(lambda: len(sec.lines()) >= 5 or
                  (not sec.alive() and ft.fail(sec.dump())), 10,
                  "5 lines from the secondary")
    b, gap = e2e.check_continues(ref, seen, sec.lines(), "the secondary")
    e2e.check_gap(gap, s["failover"]["continued_from"], acked, desc)
    log("%s: the primary released %d lines, the secondary goes on at %d "
        "from checkpoint %d, %.1f ms after detection" %
        (desc, len(seen), b, s["failover"]["continued_from"],
         s["failover"]["ms"]))
    return s


def won(c, s, sec):
    w = s["witness"]
    check(w["state"] == "won" and w["key"] == KEY and w["generation"] == 1
          and w["owner"] is None and len(w["endpoints"]) == 3,
          "witness status %r" % w)
    v = c.get(KEY)
    check(v and re.match(r"^secondary [0-9a-f]{16}$", v) and
          "claims as '%s'" % v in sec.err(),
          "etcd holds %r\n%s" % (v, sec.err()))
    check("the witness gave the VM to this secondary (%s)" % KEY in
          sec.err(), sec.err())


def case_sec_kill():
    c = etcdcluster.start()
    ref = e2e.Reference()
    sec, sctl, pri, pctl = pair(c)
    st = sctl.status()
    check(st["witness"]["state"] == "idle" and
          st["witness"]["generation"] == 1 and st["witness"]["key"] == KEY,
          "before: %r" % st["witness"])
    check(st["replication"]["pairing"].endswith("/g1"), st["replication"])
    seen, acked = kill_primary(ref, pri, pctl)
    s = goes_on(ref, sec, sctl, seen, acked, "kill -9")
    won(c, s, sec)


def case_sec_quorum():
    c = etcdcluster.start()
    ref = e2e.Reference()
    sec, sctl, pri, pctl = pair(c)
    for i in (1, 2):
        c.stop(i)
    seen, acked = kill_primary(ref, pri, pctl)
    # Claiming, not live: several attempts, each UNKNOWN.
    def unanswered():
        s = e2e.wait_state(sctl, sec, "claiming", 20)
        w = s["witness"]
        return s if w["state"] == "unknown" and w["attempts"] >= 3 else None
    st = ft.wait_until(unanswered, 30, "three unanswered claims")
    check(st["state"] == "claiming" and st["witness"]["error"],
          "status %r" % st)
    check("cannot reach the witness" in sec.err() and
          "not running the VM" in sec.err(), sec.err())
    check(not sec.lines() and "failover (" not in sec.err(),
          "the secondary went live without the witness:\n" + sec.dump())
    r = ft.run([ck.ftvmctl, "-s", sctl.path, "status"], capture_output=True,
               text=True, timeout=30)
    check(re.search(r"\nwitness +unknown /ftvm/counter/1/owner \(cannot "
                    r"reach the witness: .+\)\n", r.stdout), r.stdout)
    for i in (1, 2):
        c.cont(i)
    s = goes_on(ref, sec, sctl, seen, acked, "kill -9 without a quorum, "
                "then the quorum back")
    won(c, s, sec)


def case_sec_fenced():
    c = etcdcluster.start()
    ref = e2e.Reference()
    # Decided once paired: decided before, the pairing would be refused.
    sec, sctl, pri, pctl = pair(c)
    c.put(KEY, "primary 00000000feedface")
    kill_primary(ref, pri, pctl)
    rc = sec.wait(30)
    check(rc == 5, "the secondary exited %s, expected 5\n%s" %
          (rc, sec.dump()))
    check("the primary kept the VM (owner: primary 00000000feedface)" in
          sec.err(), sec.err())
    check(not sec.eof(), "the fenced secondary printed %r" %
          sec.lines()[:3])
    check(c.get(KEY) == "primary 00000000feedface", "the key changed")


def ftvmctl(sock, *args):
    return ft.run([ck.ftvmctl, "-s", sock] + list(args), capture_output=True,
                  text=True, timeout=60)


def case_sec_command():
    c = etcdcluster.start()
    ref = e2e.Reference()
    sec, sctl, pri, pctl = pair(c)
    c.put(KEY, "primary 00000000c0ffee00")
    r = ftvmctl(sctl.path, "failover")
    check(r.returncode == 1 and "the witness gave the VM to the primary "
          "(owner: primary 00000000c0ffee00)" in r.stderr,
          "failover: exit %d: %s%s" % (r.returncode, r.stdout, r.stderr))
    n = pctl.status()["checkpoint"]["last_acked"]
    ft.wait_until(lambda: pctl.status()["checkpoint"]["last_acked"] >= n + 3,
                  20, "replication to go on after the refusal")
    check(sctl.status()["state"] == "active" and not sec.lines(),
          "after the refusal: %r" % sctl.status())
    # Now the witness cannot answer, and the primary is gone.
    for i in (1, 2):
        c.stop(i)
    seen, acked = kill_primary(ref, pri, pctl)
    e2e.wait_state(sctl, sec, "claiming", 20)
    r = ftvmctl(sctl.path, "failover")
    check(r.returncode == 1 and "the secondary is claiming" in r.stderr,
          "failover while claiming: %d %s" % (r.returncode, r.stderr))
    r = ftvmctl(sctl.path, "failover", "--force")
    check(r.returncode == 0, "failover --force: exit %d: %s%s" %
          (r.returncode, r.stdout, r.stderr))
    check("WARNING: failover --force: going live WITHOUT the witness's "
          "agreement (%s)" % KEY in sec.err(), sec.err())
    s = goes_on(ref, sec, sctl, seen, acked, "failover --force")
    check(s["failover"]["reason"] == "forced", s["failover"])
    for i in (1, 2):
        c.cont(i)


def case_pri_command():
    c = etcdcluster.start()
    ref = e2e.Reference()
    sec, sctl, pri, pctl = pair(c, primary_witness=True)
    check(pctl.status()["witness"]["state"] == "idle", pctl.status())
    r = ftvmctl(sctl.path, "failover")
    check(r.returncode == 0, "failover: exit %d: %s%s" %
          (r.returncode, r.stdout, r.stderr))
    rc = pri.wait(30)
    seen = pri.eof()
    check(rc == 123, "the primary exited %s, expected 123\n%s" %
          (rc, pri.dump()))
    v = c.get(KEY)
    check(v and v.startswith("secondary ") and
          "the secondary took the VM over (owner: %s)" % v in pri.err(),
          "etcd holds %r\n%s" % (v, pri.err()))
    e2e.check_prefix(ref, seen, "the fenced primary's released output")
    s = e2e.wait_state(sctl, sec, "running", 20)
    ft.wait_until(lambda: len(sec.lines()) >= 5, 10,
                  "5 lines from the secondary")
    b, gap = e2e.check_continues(ref, seen, sec.lines(), "the secondary")
    log("the primary released %d lines and exited 123; the secondary goes "
        "on at %d from checkpoint %d (gap %d)" %
        (len(seen), b, s["failover"]["continued_from"], gap))


def case_tls():
    creds = ft.make_certs("etcd", "members", "node")
    c = etcdcluster.start(tls=creds["members"])
    witness_tls[:] = ["--witness-tls", creds["node"]]
    ref = e2e.Reference()
    sec, sctl, pri, pctl = pair(c, primary_witness=True)
    check(all(e.startswith("https://") for e in
              sctl.status()["witness"]["endpoints"]), sctl.status())
    seen, acked = kill_primary(ref, pri, pctl)
    s = goes_on(ref, sec, sctl, seen, acked, "kill -9, TLS to etcd")
    won(c, s, sec)


def case_pri_won():
    c = etcdcluster.start()
    ref = e2e.Reference()
    sec, sctl, pri, pctl = pair(c, primary_witness=True)
    sec.signal(signal.SIGKILL)
    sec.p.wait(10)
    st = e2e.wait_state(pctl, pri, "degraded", 20)
    w = st["witness"]
    v = c.get(KEY)
    check(w["state"] == "won" and w["key"] == KEY and v and
          v.startswith("primary ") and "claims as '%s'" % v in pri.err(),
          "witness %r, etcd %r" % (w, v))
    check("the witness kept the VM here (generation 1)" in pri.err(),
          pri.err())
    n = pri.last_tick()
    pri.wait_tick(n + 10)
    e2e.check_prefix(ref, pri.lines(), "the primary's output")


def case_pri_quorum():
    c = etcdcluster.start()
    ref = e2e.Reference()
    sec, sctl, pri, pctl = pair(c, primary_witness=True)
    for i in (1, 2):
        c.stop(i)
    sec.signal(signal.SIGKILL)
    sec.p.wait(10)

    def unanswered():
        s = e2e.wait_state(pctl, pri, "claiming", 20)
        w = s["witness"]
        return s if w["state"] == "unknown" and w["attempts"] >= 3 and \
            s["vm_state"] == "paused" else None
    st = ft.wait_until(unanswered, 30, "three unanswered claims, paused")
    check("fenced: cannot reach the witness" in st["last_error"], st)
    held = len(pri.lines())
    # Nothing leaves while the witness is silent (checked again below:
    # what was released then is a prefix, and nothing was added since).
    st = ft.wait_until(lambda: (lambda s: s if s["witness"]["attempts"] >= 5
                                else None)(pctl.status()), 30,
                       "two more attempts")
    check(len(pri.lines()) == held and st["vm_state"] == "paused",
          "output while fenced: %d -> %d lines, %r" %
          (held, len(pri.lines()), st["vm_state"]))
    for i in (1, 2):
        c.cont(i)
    e2e.wait_state(pctl, pri, "degraded", 30)
    pri.wait_tick(pri.last_tick() + 10)
    e2e.check_prefix(ref, pri.lines(), "the primary's output")
    check(c.get(KEY).startswith("primary "), c.get(KEY))


def case_drop():
    """stop-replication on the primary: the secondary is told it is
    dropped, exits 6, never claims nor goes live; the primary runs on."""
    c = etcdcluster.start()
    ref = e2e.Reference()
    sec, sctl, pri, pctl = pair(c, primary_witness=True)
    r = ftvmctl(pctl.path, "stop-replication")
    check(r.returncode == 0, "stop-replication: %s%s" % (r.stdout, r.stderr))
    rc = sec.wait(30)
    check(rc == ft.EXIT_DROPPED, "the secondary exited %s, expected %d\n%s"
          % (rc, ft.EXIT_DROPPED, sec.dump()))
    check("dropped by the primary: stop-replication: replication stopped "
          "on request" in sec.err() and "claiming" not in sec.err() and
          "failover (" not in sec.err(), sec.err())
    check(not sec.eof(), "the dropped secondary printed %r" %
          sec.lines()[:3])
    check(c.get(KEY) is None, "someone claimed %s: %r" % (KEY, c.get(KEY)))
    st = e2e.wait_state(pctl, pri, "stopped", 10)
    check(st["witness"]["state"] == "idle", st["witness"])
    pri.wait_tick(pri.last_tick() + 5)
    e2e.check_prefix(ref, pri.lines(), "the primary's output")


def case_stale():
    """Generation 5 of the VM decided: a secondary with the witness
    refuses a primary of generation 1 (one without the witness, which
    cannot know), both saying why; a primary with the witness starts at
    generation 6, is served, and a failover claims generation 6."""
    c = etcdcluster.start()
    ref = e2e.Reference()
    c.put("/ftvm/counter/5/owner", "secondary 00000000deadbeef")
    c.put("/ftvm/counter/10/other", "not a generation's owner key")
    c.put("/ftvm/counter-b/9/owner", "another VM")
    sec, addr, sctl = e2e.spawn_secondary("sec", witness(c))
    why = "primary of generation 1 is older than generation 5 decided by " \
          "the witness"
    old, octl = e2e.spawn_primary("old", addr)
    rc = old.wait(60)
    check(rc == 120 and why in old.err() and "refused this primary" in
          old.err(), "the stale primary: exit %s\n%s" % (rc, old.dump()))
    ft.wait_until(lambda: why in sec.err(), 10, "the secondary's refusal")
    st = sctl.status()
    check(st["state"] == "waiting" and "pairing" not in
          st.get("replication", {}) and sec.alive(),
          "after the refusal: %r" % st)
    check(not sec.lines(), "the secondary printed %r" % sec.lines()[:3])
    # With the witness the primary starts above what it decided.
    pri, pctl = e2e.spawn_primary("pri", addr, extra=witness(c))
    e2e.wait_state(pctl, pri, "active", 30)
    check("the witness decided generations up to 5 for 'counter': the "
          "first pairing is generation 6" in pri.err(), pri.err())
    check(pctl.status()["pairing"].endswith("/g6") and
          sctl.status()["replication"]["pairing"].endswith("/g6"),
          "pairings %r %r" % (pctl.status()["pairing"],
                              sctl.status()["replication"]))
    ft.wait_until(lambda: pctl.status()["checkpoint"]["last_acked"] >= 3,
                  20, "three checkpoints acknowledged")
    seen, acked = kill_primary(ref, pri, pctl)
    goes_on(ref, sec, sctl, seen, acked, "kill -9 at generation 6")
    v = c.get("/ftvm/counter/6/owner")
    check(v and v.startswith("secondary "), "generation 6: %r" % v)


def case_start_quorum():
    """A primary with the witness cannot learn the decided generations:
    it says so and waits, never guessing (no connection, no guest); a
    SIGTERM meanwhile ends it at once.  A secondary with the witness
    cannot check a primary's generation: past the setup timeout it refuses
    it, both saying why.  The members back, the next primary pairs at
    generation 1."""
    c = etcdcluster.start()
    for i in (1, 2):
        c.stop(i)
    setup = "%dms" % round(ft.scaled(2000))
    sec, addr, sctl = e2e.spawn_secondary(
        "sec", witness(c) + ["--setup-timeout", setup])
    waiting, wctl = e2e.spawn_primary("waiting", addr, extra=witness(c))
    ft.wait_until(lambda: "not pairing until the witness answers" in
                  waiting.err(), 30, "the primary to say it waits")
    st = wctl.status()
    check("not pairing until the witness answers" in st["last_error"] and
          st["vm_state"] == "created" and not waiting.lines() and
          st["secondaries"] == 0, "the waiting primary: %r" % st)
    check("connection from" not in sec.err(), sec.err())
    waiting.signal(signal.SIGTERM)
    rc = waiting.wait(ft.scaled(10))
    check(rc == 128 + signal.SIGTERM, "SIGTERM while waiting: exit %s\n%s"
          % (rc, waiting.dump()))
    # The secondary cannot check a primary (one without the witness).
    # Its stall timeout (10 s) must not end it first: scaled, as the
    # secondary's setup timeout is (equal in the one-CPU VM at x5).
    blind, bctl = e2e.spawn_primary(
        "blind", addr,
        extra=["--stall-timeout", "%dms" % round(ft.scaled(10000) * 2)])
    rc = blind.wait(60)
    why = "cannot check the primary's generation with the witness within " \
          "the setup timeout"
    check(rc == 120 and why in blind.err(), "the unchecked primary: exit "
          "%s\n%s" % (rc, blind.dump()))
    # The primary may read the refusal before the secondary's log line
    # about it is written: wait for it rather than read it at once.
    ft.wait_until(lambda: why in sec.err(), ft.scaled(5),
                  "the secondary to say why it refused")
    check(sctl.status()["state"] == "waiting", sec.dump())
    for i in (1, 2):
        c.cont(i)
    pri, pctl = e2e.spawn_primary("pri", addr, extra=witness(c))
    st = e2e.wait_state(pctl, pri, "active", 30)
    check(st["pairing"].endswith("/g1") and "the first pairing is "
          "generation 1" in pri.err(), "%r\n%s" % (st, pri.err()))


def case_no_witness():
    sec, addr, sctl = e2e.spawn_secondary("sec")
    pri, pctl = e2e.spawn_primary("pri", addr)
    e2e.wait_state(pctl, pri, "active", 20)
    for p, ctl in ((sec, sctl), (pri, pctl)):
        check(p.err().count(NO_WITNESS) == 1,
              "%s's start-up:\n%s" % (p.name, p.err()))
        w = ctl.status()["witness"]
        check(w["state"] == "none" and w["warning"] == NO_WITNESS and
              w["endpoints"] == [], "%s's status: %r" % (p.name, w))
    r = ftvmctl(sctl.path, "status")
    check(re.search(r"\nwitness +none: %s\n" % re.escape(NO_WITNESS),
                    r.stdout), r.stdout)


CASES = {
    "sec-kill": case_sec_kill,
    "sec-quorum": case_sec_quorum,
    "sec-fenced": case_sec_fenced,
    "sec-command": case_sec_command,
    "pri-command": case_pri_command,
    "pri-won": case_pri_won,
    "pri-quorum": case_pri_quorum,
    "no-witness": case_no_witness,
    "tls": case_tls,
    "drop": case_drop,
    "stale": case_stale,
    "start-quorum": case_start_quorum,
}


def run_kvm_cases(cases, doc, kind, checked):
    """main() of the witness's KVM drivers: CASE FTVM FTVMCTL GUEST_DIR;
    the case runs, then the processes named in checked are checked for
    sanitizer reports."""
    if len(sys.argv) != 5 or sys.argv[1] not in cases:
        print(doc, file=sys.stderr)
        sys.exit(2)
    case = sys.argv[1]
    ck.ftvm, ck.ftvmctl, ck.guests = \
        (os.path.abspath(a) for a in sys.argv[2:5])

    def run():
        ft.needs_kvm()
        cases[case]()
        for p in ft.procs:
            if p.name in checked:
                ft.check_sanitizers(p)
    ft.run_case(case, run, kind)


def main():
    run_kvm_cases(CASES, __doc__, "roles", ("pri", "sec"))


if __name__ == "__main__":
    main()
