#!/usr/bin/env python3
"""witness/pool.c (through test_pool) against a real three-member etcd
cluster on loopback (tests/lib/etcdcluster.py).

    pool_test.py CASE TEST_POOL

    args     bad pool names, addresses, TTLs and endpoints are refused with
             a message; entries parsed, refused when malformed or too big
             (no etcd)
    lease    a standby registers under a lease it keeps alive (the key
             outlives three TTLs); its lease revoked behind its back, it
             registers again under a new one; withdrawn, its key goes at
             once; a standby whose keepalives stop loses its key with the
             lease (etcd's own gateway read here agrees)
    race     two pickers reserve one free standby at once: exactly one gets
             it, the other finds the pool empty; etcd holds the winner's
             taker; a taken standby is never picked again; a standby
             serving only another VM is not picked
    unknown  a standby listed, then two of three members SIGSTOPped: the
             reservation is asked again and again and never reported
             picked; the members resumed, it is picked (its own earlier
             attempt, or a fresh one), and etcd holds its taker

Exit 0 pass, 1 fail, 77 skipped (no etcd).
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import etcdcluster  # noqa: E402
import ftvmtest as ft  # noqa: E402

name, test_pool = sys.argv[1], sys.argv[2]


def run(*args):
    r = ft.run([test_pool] + list(args), capture_output=True, text=True,
               timeout=120)
    ft.log("test_pool %s: exit %d\n%s%s" % (args[0], r.returncode, r.stdout,
                                            r.stderr))
    ft.check(r.returncode == 0, "test_pool %s failed" % args[0])
    return r.stdout


def case_args():
    run("args")


def case_lease():
    c = etcdcluster.start()
    # A TTL the loaded machine's keepalives (every TTL/3) can keep.
    ttl = max(2, round(ft.scaled(2)))
    run("lease", c.endpoints(), "lease-pool", str(ttl))
    r = etcdcluster.post(c.url(2), "/v3/kv/range", {
        "key": etcdcluster.b64("/ftvm-pool/lease-pool/"),
        "range_end": etcdcluster.b64("/ftvm-pool/lease-pool0")})
    ft.check(r is not None and not r.get("kvs"),
             "keys left in the pool: %r" % r)


def case_race():
    c = etcdcluster.start()
    out = run("race", c.endpoints(), "race-pool")
    winner = out.split("winner ")[1].split("\n")[0]
    r = etcdcluster.post(c.url(2), "/v3/kv/range", {
        "key": etcdcluster.b64("/ftvm-pool/race-pool/"),
        "range_end": etcdcluster.b64("/ftvm-pool/race-pool0")})
    values = [json.loads(etcdcluster.unb64(kv["value"]))
              for kv in (r or {}).get("kvs", [])]
    ft.check(any(v.get("taken_by") == winner and
                 v["addr"] == "127.0.0.1:7003" for v in values),
             "m2 reads %r, the winner was %r" % (values, winner))


def case_unknown():
    c = etcdcluster.start()
    go = os.path.join(ft.tmp, "go")
    p = ft.Proc("pool", [test_pool, "unknown", c.endpoints(), "q-pool", go])
    p.wait_line(lambda ln: ln.startswith("listed "), 30, "the listing")
    for i in (1, 2):
        c.stop(i)
    open(go, "w").close()
    p.wait_line(lambda ln: ln.startswith("unknown attempts"), 60,
                "unanswered reservations")
    ft.check(not any(ln.startswith("picked") for ln in p.lines()),
             "picked without a quorum:\n" + p.dump())
    for i in (1, 2):
        c.cont(i)
    ft.check(p.wait(90) == 0, "no reservation after the quorum came "
             "back:\n" + p.dump())
    ft.log(p.out())
    key = [ln for ln in p.lines() if ln.startswith("picked ")][0].split()[1]
    v = json.loads(c.get(key))
    ft.check(v.get("taken_by") == "primary eeee for counter g2",
             "etcd holds %r" % v)


CASES = {
    "args": case_args,
    "lease": case_lease,
    "race": case_race,
    "unknown": case_unknown,
}

if name not in CASES:
    sys.exit("unknown case %s" % name)
ft.run_case(name, CASES[name], "pool")
