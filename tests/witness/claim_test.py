#!/usr/bin/env python3
"""witness/claim.c (through test_claim) against a real three-member etcd
cluster on loopback (tests/lib/etcdcluster.py).

    claim_test.py CASE TEST_CLAIM

    race         a primary's and a secondary's claim of one generation at
                 once: one WON, the other LOST naming the winner's value
                 (which etcd holds); asked again, the same; the next
                 generation is undecided; a cancelled claim is silent
    quorum-lost  two of three members SIGSTOPped: the claim is UNKNOWN,
                 never WON or LOST; it keeps asking, and once the members
                 resume it is WON, and etcd holds its value
    generations  the highest generation decided for a name
                 (witness/generations.c): none at first; then 700 owner
                 keys put in shuffled order (three pages of keys), the
                 highest 700, beside keys that are not a generation's
                 owner (another key under the name, a leading zero,
                 another VM whose name the first's is a prefix of);
                 with two members stopped it reports failures and keeps
                 asking, and answers once they are back

Exit 0 pass, 1 fail, 77 skipped (no etcd).
"""
import os
import random
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import etcdcluster  # noqa: E402
import ftvmtest as ft  # noqa: E402

name, test_claim = sys.argv[1], sys.argv[2]


def case_race():
    c = etcdcluster.start()
    r = ft.run([test_claim, "race", c.endpoints(), "race-vm", "7"],
               capture_output=True, text=True, timeout=60)
    ft.log("test_claim race: exit %d\n%s%s" % (r.returncode, r.stdout,
                                                r.stderr))
    ft.check(r.returncode == 0, "test_claim race failed")
    winner = r.stdout.split("winner ")[1].split("\n")[0]
    ft.check(re.match(r"^(primary|secondary) [0-9a-f]{16}$", winner),
             "the winner's value %r" % winner)
    ft.check(c.get("/ftvm/race-vm/7/owner", member=2) == winner,
             "etcd holds %r, the winner was %r" %
             (c.get("/ftvm/race-vm/7/owner", member=2), winner))


def case_quorum_lost():
    c = etcdcluster.start()
    for i in (1, 2):
        c.stop(i)
    p = ft.Proc("claim", [test_claim, "wait", c.endpoints(), "q-vm", "3",
                          "secondary"])
    p.wait_line(lambda ln: ln == "state unknown", 30, "UNKNOWN")
    ft.check(not any(ln in ("state won", "state lost") for ln in p.lines()),
             "an outcome without a quorum:\n" + p.dump())
    # It keeps asking (each attempt cut off after 500 ms), and every
    # answer is still UNKNOWN.
    p.wait_line(lambda ln: ln == "attempts 4", 30, "the fourth attempt")
    ft.check(p.alive() and not any(ln.startswith("state ") and
                                   ln != "state unknown" for ln in p.lines()),
             "an outcome without a quorum:\n" + p.dump())
    for i in (1, 2):
        c.cont(i)
    ft.check(p.wait(60) == 0, "no WON after the quorum came back:\n" +
             p.dump())
    ft.check("state won" in p.lines(), p.dump())
    v = c.get("/ftvm/q-vm/3/owner")
    ft.check(v and v.startswith("secondary "), "etcd holds %r" % v)


def case_generations():
    c = etcdcluster.start()

    def scan(want):
        r = ft.run([test_claim, "generations", c.endpoints(), "gen-vm",
                    str(want)], capture_output=True, text=True, timeout=90)
        ft.log("test_claim generations: exit %d\n%s%s" %
               (r.returncode, r.stdout[-500:], r.stderr))
        ft.check(r.returncode == 0, "the scan did not answer %d" % want)
    scan(0)
    order = list(range(1, 701))
    random.shuffle(order)
    for g in order:
        c.put("/ftvm/gen-vm/%d/owner" % g, "primary %016x" % g)
    c.put("/ftvm/gen-vm/9999/other", "not an owner key")
    c.put("/ftvm/gen-vm/07000/owner", "a leading zero")
    c.put("/ftvm/gen-vm-b/99999/owner", "another VM")
    c.put("/ftvm/gen-vm0", "beside the prefix")
    scan(700)
    for i in (1, 2):
        c.stop(i)
    p = ft.Proc("scan", [test_claim, "generations", c.endpoints(), "gen-vm",
                         "700"])
    p.wait_line(lambda ln: ln.startswith("failed "), 30, "a failure")
    ft.check(p.alive() and "highest" not in p.out(),
             "an answer without a quorum:\n" + p.dump())
    for i in (1, 2):
        c.cont(i)
    ft.check(p.wait(60) == 0, "no answer after the quorum came back:\n" +
             p.dump())


CASES = {
    "race": case_race,
    "generations": case_generations,
    "quorum-lost": case_quorum_lost,
}

if name not in CASES:
    sys.exit("unknown case %s" % name)
ft.run_case(name, CASES[name], "claim")
