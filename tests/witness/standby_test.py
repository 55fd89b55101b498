#!/usr/bin/env python3
"""The standby pool end to end: real `ftvm primary` and `ftvm secondary`
processes (the counter guest, KVM) and a real three-member etcd cluster on
loopback (tests/lib/etcdcluster.py).  The counter's output is checked as
e2e_test.py checks it (its checkers, through roles_test.py's steps).

    standby_test.py CASE FTVM FTVMCTL GUEST_DIR

    reprotect   S1 and S2 `--register` in one pool; the primary
                (`--witness --standby-pool`) pairs with S1, which leaves
                the pool; kill -9 of S1: the primary claims generation 1,
                wins, picks S2 from the pool and brings it up (generation
                2) with no operator; then kill -9 of the primary: S2
                claims generation 2, wins and goes live.  What the primary
                released across both pairings is an unbroken prefix of the
                counter, and S2 continues it without a repeat.
    waiting     the primary with --standby-pool and an empty pool, its
                secondary killed: it wins its claim, runs degraded and says
                "waiting for a standby", asking again; a standby that
                registers then is picked and protects it (generation 2)
    start       the primary's --secondary unreachable at start, with
                --reconnect: it starts degraded and picks a registered
                standby at once, protected by it (generation 1)
    two         two primaries (VMs vm-a and vm-b) lose their secondaries
                at once with one standby in the pool: exactly one is
                protected by it, the other waits; a second standby that
                registers then protects the other
    tls         waiting, with TLS to etcd (https:// members, a client
                certificate: --witness-tls on every process)
    survivor    a secondary's --standby-pool: A protected by B (B with
                --standby-pool), C registered; kill -9 A: B claims
                generation 1, goes live and, with no operator, picks C
                and brings it up (generation 2); kill -9 B: C claims
                generation 2 and goes live.  What A, B and C printed,
                timed as a client reads it, is one unbroken run of the
                counter (reprotect_test's chain check)

Exit 0 pass, 1 fail, 77 skipped (no KVM or no etcd).
"""
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "replication"))
sys.path.insert(0, os.path.join(HERE, "..", "vm"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ckpt_test as ck  # noqa: E402
import e2e_test as e2e  # noqa: E402
import etcdcluster  # noqa: E402
import faults_test as faults  # noqa: E402
import ftvmtest as ft  # noqa: E402
import reprotect_test as rp  # noqa: E402
import roles_test as roles  # noqa: E402
from ftvmtest import check, log  # noqa: E402

POOL = "e2e"


def register(c):
    # A lease the loaded machine keeps alive (keepalives every third).
    return roles.witness(c) + ["--register", "--pool", POOL, "--pool-ttl",
                               "%ds" % max(2, round(ft.scaled(2)))]


def standby(c, name):
    p, addr, ctl = e2e.spawn_secondary(name, register(c))
    ft.wait_until(lambda: ctl.status()["pool"]["registered"], 20,
                  name + " registered")
    return p, addr, ctl


def pool_entries(c):
    prefix = "/ftvm-pool/%s/" % POOL
    r = etcdcluster.post(c.url(0), "/v3/kv/range", {
        "key": etcdcluster.b64(prefix),
        "range_end": etcdcluster.b64(prefix[:-1] + "0")}, context=c.context)
    check(r is not None, "listing the pool failed")
    return {etcdcluster.unb64(kv["key"]).decode():
            json.loads(etcdcluster.unb64(kv["value"]))
            for kv in r.get("kvs", [])}


def primary(c, addr, name="pri", extra=()):
    pri, pctl = e2e.spawn_primary(
        name, addr, extra=roles.witness(c) + ["--standby-pool", "--pool",
                                              POOL] + list(extra))
    e2e.wait_state(pctl, pri, "active", 20)
    ft.wait_until(lambda: pctl.status()["checkpoint"]["last_acked"] >= 3, 20,
                  "three checkpoints acknowledged")
    return pri, pctl


def reprotected(c, pri, pctl, addr, n):
    """The primary protected by the standby at addr, generation n."""
    def ok():
        if not pri.alive():
            ft.fail("the primary exited (%s)\n%s" % (pri.p.returncode,
                                                     pri.dump()))
        s = pctl.status()
        return s if (s and s["state"] == "active" and
                     s["secondary"] == addr and
                     s["pairing"].endswith("/g%d" % n) and
                     s["checkpoint"]["last_acked"] >= 3) else None
    st = ft.wait_until(ok, 30, "the primary protected by %s again" % addr)
    sp = st["standby_pool"]
    check(sp["pool"] == POOL and sp["picked"] == addr and
          sp["recruited"] >= 1 and sp["state"] == "idle",
          "standby_pool status %r" % sp)
    check("standby pool %s: picked /ftvm-pool/%s/" % (POOL, POOL) in
          pri.err() and " at %s" % addr in pri.err(), pri.err())
    return st


def kill(p):
    p.signal(signal.SIGKILL)
    p.p.wait(10)


def case_reprotect():
    c = etcdcluster.start()
    ref = e2e.Reference()
    s1, a1, c1 = standby(c, "s1")
    s2, a2, c2 = standby(c, "s2")
    check(sorted(v["addr"] for v in pool_entries(c).values()) ==
          sorted([a1, a2]), "the pool holds %r" % pool_entries(c))
    pri, pctl = primary(c, a1)
    # S1 serves a primary now: out of the pool; S2 alone is offered.
    ft.wait_until(lambda: [v["addr"] for v in pool_entries(c).values()] ==
                  [a2], 20, "S1 out of the pool")
    p1 = c1.status()["pool"]
    check(not p1["registered"] and p1["state"] == "off", p1)
    pri.wait_tick(10)
    t0 = time.monotonic()
    kill(s1)
    before = pri.last_tick()
    st = reprotected(c, pri, pctl, a2, 2)
    # The killed secondary's connection closes at once: then the claim,
    # the pick, the bring-up and three ACKs.
    log("S1 killed: protected by S2 again %.0f ms later" %
        ((time.monotonic() - t0) * 1e3))
    check("the witness kept the VM here (generation 1)" in pri.err(),
          pri.err())
    v = c.get(roles.KEY)
    check(v and v.startswith("primary "), "etcd holds %r for %s" %
          (v, roles.KEY))
    e2e.check_prefix(ref, pri.lines(), "the primary's released output")
    s = c2.status()
    check(s["state"] == "active" and s["replication"]["pairing"].endswith(
        "/g2") and not s["pool"]["registered"], "S2: %r" % s)
    # S2 is out of the pool (withdrawn once its primary came).
    ft.wait_until(lambda: not pool_entries(c), 20, "an empty pool")
    # Output released on S2's ACKs, on top of S1's and the degraded run's.
    pri.wait_tick(pri.last_tick() + 20)
    check(pctl.status()["state"] == "active" and
          pctl.status()["secondary"] == a2, pctl.status())
    log("ticks released: %d by S1's loss, %d now" % (before,
                                                     pri.last_tick()))
    log("reprotected by S2 (%s) in generation 2; the pool is empty" % a2)
    seen, acked = roles.kill_primary(ref, pri, pctl)
    s = roles.goes_on(ref, s2, c2, seen, acked, "S2 after the primary's "
                      "kill -9")
    w = s["witness"]
    check(w["state"] == "won" and w["generation"] == 2 and
          w["key"] == "/ftvm/counter/2/owner", "S2's witness %r" % w)
    v = c.get("/ftvm/counter/2/owner")
    check(v and v.startswith("secondary ") and
          "claims as '%s'" % v in s2.err(), "etcd holds %r" % v)


def case_waiting(c=None):
    c = c or etcdcluster.start()
    ref = e2e.Reference()
    sec, addr, sctl = e2e.spawn_secondary("sec", roles.witness(c))
    pri, pctl = primary(c, addr)
    kill(sec)

    def waiting():
        s = pctl.status()
        sp = s["standby_pool"]
        return s if (s["state"] == "degraded" and
                     sp["state"] == "waiting for a standby") else None
    st = ft.wait_until(waiting, 30, "the primary waiting for a standby")
    check("no free standby" in st["standby_pool"]["error"], st)
    r = ft.run([ck.ftvmctl, "-s", pctl.path, "status"], capture_output=True,
               text=True, timeout=30)
    check("waiting for a standby" in r.stdout, r.stdout)
    n = pri.last_tick()
    pri.wait_tick(n + 5)
    check(pctl.status()["state"] == "degraded", "no standby, yet %r" %
          pctl.status()["state"])
    s2, a2, c2 = standby(c, "s2")
    reprotected(c, pri, pctl, a2, 2)
    e2e.check_prefix(ref, pri.lines(), "the primary's released output")
    return pctl


def case_start():
    c = etcdcluster.start()
    ref = e2e.Reference()
    s2, a2, c2 = standby(c, "s2")
    gone = "127.0.0.1:%d" % ft.free_port()      # nobody listens there
    pri, pctl = e2e.spawn_primary(
        "pri", gone, extra=roles.witness(c) + [
            "--standby-pool", "--pool", POOL, "--reconnect", "60s"])
    reprotected(c, pri, pctl, a2, 1)
    check("starting unprotected (degraded)" in pri.err(), pri.err())
    pri.wait_tick(pri.last_tick() + 10)
    e2e.check_prefix(ref, pri.lines(), "the primary's released output")


def case_two():
    c = etcdcluster.start()
    ref = e2e.Reference()
    pris = []
    for n in ("a", "b"):
        sec, addr, sctl = e2e.spawn_secondary("sec-" + n, roles.witness(c))
        pri, pctl = primary(c, addr, "pri-" + n, ["--vm-name", "vm-" + n])
        pris.append((pri, pctl, sec))
    s1, a1, c1 = standby(c, "s1")
    for _, _, sec in pris:
        sec.signal(signal.SIGKILL)
    # Both degraded at once, one standby: exactly one gets it.
    def settled():
        st = [p[1].status() for p in pris]
        won = [s for s in st if s["state"] == "active"]
        waiting = [s for s in st if s["state"] == "degraded" and
                   s["standby_pool"]["state"] == "waiting for a standby"]
        return st if len(won) == 1 and len(waiting) == 1 else None
    st = ft.wait_until(settled, 30, "one primary protected by S1, the "
                       "other waiting")
    w = 0 if st[0]["state"] == "active" else 1
    check(st[w]["secondary"] == a1 and st[w]["pairing"].endswith("/g2"),
          st[w])
    loser = pris[1 - w][0]
    check("standby pool %s: no free standby" % POOL in loser.err() and
          "picked" not in loser.err(), loser.err())
    # The loser stays waiting while nothing is free, then gets S2.
    pris[1 - w][0].wait_tick(pris[1 - w][0].last_tick() + 5)
    check(pris[1 - w][1].status()["state"] == "degraded",
          pris[1 - w][1].status())
    s2, a2, c2 = standby(c, "s2")
    reprotected(c, pris[1 - w][0], pris[1 - w][1], a2, 2)
    check(pris[w][1].status()["secondary"] == a1, pris[w][1].status())
    for pri, _, _ in pris:
        pri.wait_tick(pri.last_tick() + 5)
        e2e.check_prefix(ref, pri.lines(), pri.name + "'s output")


def case_tls():
    creds = ft.make_certs("etcd", "members", "node")
    c = etcdcluster.start(tls=creds["members"])
    roles.witness_tls[:] = ["--witness-tls", creds["node"]]
    pctl = case_waiting(c)
    eps = pctl.status()["witness"]["endpoints"]
    check(eps and all(e.startswith("https://") for e in eps), eps)


def case_survivor():
    c = etcdcluster.start()
    ref = e2e.Reference()
    s_c, a_c, cctl = standby(c, "C")
    sec, sctl, pri, pctl = roles.pair(
        c, extra=["--standby-pool", "--pool", POOL], primary_witness=True)
    acked_a = pctl.status()["checkpoint"]["last_acked"]
    kill(pri)
    pri.eof()
    s = roles.goes_on(ref, sec, sctl, pri.lines(), acked_a, "A killed")
    from_b = s["failover"]["continued_from"]

    def protected():
        if not sec.alive():
            ft.fail("B exited (%s)\n%s" % (sec.p.returncode, sec.dump()))
        p = sctl.status().get("protection") or {}
        return p if (p.get("state") == "active" and
                     p.get("secondary") == a_c and
                     p["pairing"].endswith("/g2") and
                     p["checkpoint"]["last_acked"] >= 3) else None
    p = ft.wait_until(protected, 30, "B protected by the standby C")
    check("standby pool %s: picked /ftvm-pool/%s/" % (POOL, POOL) in
          sec.err() and " at %s" % a_c in sec.err(), sec.err())
    cs = cctl.status()
    check(cs["state"] == "active" and
          cs["replication"]["pairing"].endswith("/g2") and
          not cs["pool"]["registered"], "C: %r" % cs)
    n = p["checkpoint"]["last_acked"]
    ft.wait_until(lambda: sctl.status()["protection"]["checkpoint"]
                  ["last_acked"] >= n + 5, 20, "five more ACKs from C")
    acked_b = sctl.status()["protection"]["checkpoint"]["last_acked"]
    kill(sec)
    sec.eof()
    s = e2e.wait_state(cctl, s_c, "running", 20)
    ft.wait_until(lambda: len(s_c.lines()) >= 5 or
                  (not s_c.alive() and ft.fail(s_c.dump())), 10,
                  "5 lines from C")
    w = s["witness"]
    check(w["state"] == "won" and w["key"] == rp.KEY2, "C's witness %r" % w)
    from_c = s["failover"]["continued_from"]
    a_tl, b_tl, c_tl = rp.released(pri), rp.released(sec), rp.released(s_c)
    b1, gap1 = faults.check_timeline(ref.line, a_tl, b_tl, acked_a, from_b)
    ab_tl = a_tl + [(a_tl[-1][0] if a_tl else 0, ref.text(i))
                    for i in range(len(a_tl), b1)] + b_tl
    b2, gap2 = faults.check_timeline(ref.line, ab_tl, c_tl, acked_b, from_c)
    log("A printed lines 0-%d; B went on at %d (gap %d), picked C from the "
        "pool, printed to %d; C went on at %d (gap %d)" % (
            len(a_tl) - 1, b1, gap1, b1 + len(b_tl) - 1, b2, gap2))


CASES = {
    "reprotect": case_reprotect,
    "waiting": case_waiting,
    "tls": case_tls,
    "start": case_start,
    "two": case_two,
    "survivor": case_survivor,
}


def main():
    roles.run_kvm_cases(CASES, __doc__, "standby",
                        ("pri", "sec", "s1", "s2", "pri-a", "pri-b",
                          "sec-a", "sec-b"))


if __name__ == "__main__":
    main()
