#!/usr/bin/env python3
"""Re-protection of a survivor (issue 9, point 5, `ftvmctl protect`):
real `ftvm primary` and `ftvm secondary` processes (the counter guest,
KVM) over mutual TLS on loopback (certificates made at run time), and a
real three-member etcd cluster (tests/lib/etcdcluster.py).

    reprotect_test.py CASE FTVM FTVMCTL GUEST_DIR

Nodes: A the primary, B its secondary, C a second secondary.  Every one
has --witness; the VM's name is the image's, "counter".

    chain           A protected by B.  `protect` on B while it replicates
                    is refused ("this secondary is not running the VM"),
                    and on A while it is protected ("already
                    replicating").  kill -9 A: B claims generation 1,
                    wins and goes live, with no secondary yet (degraded,
                    output not held).  `ftvmctl protect C` on B: C is
                    brought up as generation 2 (B's and C's status say so,
                    /ftvm/counter/2/owner is absent).  kill -9 B: C
                    claims generation 2, wins and goes live.  What A, B
                    and C printed, timed as a client reads it, is one
                    unbroken run of the counter (faults_test's
                    check_timeline, hop by hop: no repeat, no gap but the
                    lost-ACK race's, no line of an earlier node after the
                    next one's first).
    survivor-won    A, B (with --metrics: ftvm_primary_* appear once it
                    is live, degraded); kill -9 A, B goes live; protect C;
                    kill -9 C:
                    B claims /ftvm/counter/2/owner as a primary does,
                    wins (etcd holds B's value) and runs on degraded, its
                    output continuing A's without a break
    survivor-fenced A, B; kill -9 A; protect C; /ftvm/counter/2/owner
                    then decided for another; kill -9 C: B claims,
                    loses and exits 123 as a fenced primary does; what it
                    released still continues A's
    survivor-commands
                    `set` refused on a replicating secondary; A, B; kill
                    -9 A; protect C; on B: `set checkpoint-interval`
                    applies, `set reconnect` is refused;
                    `stop-replication` ends with the drop notice and EOF
                    (C exits 6, dropped, without failing over; B runs
                    on); protect D: generation 3; `quit`: the same to D
                    (exit 6), B exits 0 as a primary does; no owner key
                    was written
    witness-tls     survivor-won against a cluster that serves https://
                    only and asks for client certificates: the survivor
                    claims with the secondary's --witness-tls
    udpkv           the udpkv guest over TAP (a bridge in a network
                    namespace made here, where etcd, the nodes and the
                    client all run; needs root): PUTs go on through kill
                    -9 of A, B alone, B protected by C, kill -9 of B;
                    every PUT answered reads back from C

Exit 0 pass, 1 fail, 77 skipped (no KVM or no etcd).
"""
import os
import re
import signal
import sys
import urllib.request

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
import roles_test as roles  # noqa: E402
from ftvmtest import check, log  # noqa: E402

KEY1 = "/ftvm/counter/1/owner"
KEY2 = "/ftvm/counter/2/owner"


def tls():
    """Certificates: A's names "primary", B's "secondary" (e2e's
    security() pins those), C's "c"; each also names 127.0.0.1, the host
    a survivor connects to (it pins no name: its --tls-peer names its
    own primary)."""
    certs = ft.make_certs("ca", "primary", "secondary", "c")
    e2e.creds = {"primary": certs["primary"], "secondary": certs["secondary"]}
    return certs


def released(p):
    return list(zip(list(p.times), p.lines()))


def protection(ctl, want, timeout=20):
    """B's status once its "protection" state is one of want."""
    def ok():
        s = ctl.status()
        return s if s and s.get("protection", {}).get("state") in \
            want.split("|") else None
    return ft.wait_until(ok, timeout, "protection " + want, step=0.01)


def a_and_b(c, sec_extra=()):
    """A protected by B, three checkpoints acknowledged."""
    sec, sctl, pri, pctl = roles.pair(c, extra=sec_extra,
                                      primary_witness=True)
    return pri, pctl, sec, sctl


def metrics(port):
    """{"family{labels}": value} of B's /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=ft.scaled(5)) as r:
        text = r.read().decode()
    return dict(l.rsplit(" ", 1) for l in text.splitlines()
                if l and not l.startswith("#"))


def b_takes_over(ref, c, pri, pctl, sec, sctl):
    """kill -9 A: B wins generation 1 and runs the VM, unprotected, its
    output continuing A's.  Returns A's last ACK."""
    acked = pctl.status()["checkpoint"]["last_acked"]
    pri.signal(signal.SIGKILL)
    pri.p.wait(10)
    pri.eof()
    s = roles.goes_on(ref, sec, sctl, pri.lines(), acked, "A killed")
    roles.won(c, s, sec)
    p = protection(sctl, "degraded")["protection"]
    check(p["secondary"] == "" and p["secondaries"] == 0 and
          p["witness"]["generation"] == 1 and
          p["pairing"].startswith("counter/") and
          not p["output"]["holding"] and p["output"]["held_bytes"] == 0,
          "the survivor before protect: %r" % p)
    check("no secondary yet" in sec.err(), sec.err())
    return acked, s["failover"]["continued_from"]


def protect_c(c, sec, sctl, certs, key2=None):
    """`ftvmctl protect C` on B: C is brought up as generation 2 (nobody
    claimed its key: it holds key2, what the case put there)."""
    c_proc, c_addr, cctl = e2e.spawn_secondary(
        "C", roles.witness(c) + ["--tls-creds", certs["c"],
                                  "--tls-peer", "secondary"])
    r = roles.ftvmctl(sctl.path, "protect", c_addr)
    check(r.returncode == 0, "protect: exit %d: %s%s" %
          (r.returncode, r.stdout, r.stderr))
    protection(sctl, "active")
    ft.wait_until(lambda: sctl.status()["protection"]["checkpoint"]
                  ["last_acked"] >= 3, 20, "three checkpoints acknowledged "
                  "by C")
    st = sctl.status()
    p = st["protection"]
    check(st["state"] == "running" and p["secondary"] == c_addr and
          p["secondaries"] == 1 and p["witness"]["generation"] == 2 and
          p["witness"]["key"] == KEY2 and p["witness"]["state"] == "idle" and
          p["pairing"].endswith("/g2") and p["output"]["holding"],
          "B protected by C: %r" % st)
    cs = cctl.status()
    check(cs["state"] == "active" and
          cs["replication"]["pairing"].endswith("/g2") and
          cs["witness"]["generation"] == 2 and cs["witness"]["key"] == KEY2,
          "C: %r" % cs)
    r = roles.ftvmctl(sctl.path, "status")
    check(re.search(r"\nwitness +won %s\n" % KEY1, r.stdout) and
          re.search(r"\nprotection\.witness +idle %s\n" % KEY2, r.stdout),
          "ftvmctl status on B:\n" + r.stdout)
    check(c.get(KEY2) == key2, "%s holds %r before any loss" %
          (KEY2, c.get(KEY2)))
    log("B protected by C at %s, generation 2" % c_addr)
    return c_proc, cctl


def refused(ctl, addr, want):
    r = roles.ftvmctl(ctl.path, "protect", addr)
    check(r.returncode != 0 and want in r.stderr,
          "protect should be refused with %r: exit %d: %s%s" %
          (want, r.returncode, r.stdout, r.stderr))


def case_chain():
    certs = tls()
    c = etcdcluster.start()
    ref = e2e.Reference()
    pri, pctl, sec, sctl = a_and_b(c)
    refused(sctl, "127.0.0.1:9", "this secondary is not running the VM")
    refused(pctl, "127.0.0.1:9", "already replicating")
    acked_a, from_b = b_takes_over(ref, c, pri, pctl, sec, sctl)
    c_proc, cctl = protect_c(c, sec, sctl, certs)
    refused(sctl, "127.0.0.1:9", "already replicating")
    st = sctl.status()["protection"]
    n = st["checkpoint"]["last_acked"]
    ft.wait_until(lambda: sctl.status()["protection"]["checkpoint"]
                  ["last_acked"] >= n + 5, 20, "five more ACKs from C")
    acked_b = sctl.status()["protection"]["checkpoint"]["last_acked"]
    sec.signal(signal.SIGKILL)
    sec.p.wait(10)
    sec.eof()
    s = e2e.wait_state(cctl, c_proc, "running", 20)
    ft.wait_until(lambda: len(c_proc.lines()) >= 5 or
                  (not c_proc.alive() and ft.fail(c_proc.dump())), 10,
                  "5 lines from C")
    w = s["witness"]
    v = c.get(KEY2)
    check(w["state"] == "won" and w["key"] == KEY2 and v and
          v.startswith("secondary ") and "claims as '%s'" % v in c_proc.err(),
          "C's witness %r, etcd %r" % (w, v))
    from_c = s["failover"]["continued_from"]
    # The merged output, hop by hop.
    a_tl, b_tl, c_tl = released(pri), released(sec), released(c_proc)
    b1, gap1 = faults.check_timeline(ref.line, a_tl, b_tl, acked_a, from_b)
    # A's and B's lines as one prefix: the lines of the lost-ACK race
    # (checked above) stand in as the reference has them.
    ab_tl = a_tl + [(a_tl[-1][0] if a_tl else 0, ref.text(i))
                    for i in range(len(a_tl), b1)] + b_tl
    b2, gap2 = faults.check_timeline(ref.line, ab_tl, c_tl, acked_b, from_c)
    log("A printed lines 0-%d; B went on at %d (gap %d) from checkpoint %d "
        "and printed to %d; C went on at %d (gap %d) from checkpoint %d and "
        "printed to %d" % (len(a_tl) - 1, b1, gap1, from_b,
                           b1 + len(b_tl) - 1, b2, gap2, from_c,
                           b2 + len(c_tl) - 1))


def case_survivor_won(witness_tls=False):
    certs = tls()
    if witness_tls:
        etcd = ft.make_certs("etcd", "members", "node")
        c = etcdcluster.start(tls=etcd["members"])
        roles.witness_tls[:] = ["--witness-tls", etcd["node"]]
    else:
        c = etcdcluster.start()
    ref = e2e.Reference()
    port = ft.free_port()
    pri, pctl, sec, sctl = a_and_b(c, ["--metrics", "127.0.0.1:%d" % port])
    m = metrics(port)
    check(m.get('ftvm_secondary_state{state="active"}') == "1" and
          not [k for k in m if k.startswith("ftvm_primary_")],
          "B's metrics while it replicates: %r" % m)
    acked_a, from_b = b_takes_over(ref, c, pri, pctl, sec, sctl)
    m = metrics(port)
    check(m.get('ftvm_secondary_state{state="running"}') == "1" and
          m.get('ftvm_primary_state{state="degraded"}') == "1" and
          m.get("ftvm_primary_secondaries_total") == "0",
          "B's metrics once live: %r" % m)
    value = sctl.status()["protection"]["witness"]
    c_proc, cctl = protect_c(c, sec, sctl, certs)
    c_proc.signal(signal.SIGKILL)
    c_proc.p.wait(10)
    st = protection(sctl, "degraded")
    p = st["protection"]
    v = c.get(KEY2)
    check(p["witness"]["state"] == "won" and p["witness"]["key"] == KEY2 and
          v and re.match(r"^primary [0-9a-f]{16}$", v) and
          "claims as '%s'" % v in sec.err() and
          "the witness kept the VM here (generation 2)" in sec.err(),
          "B's witness %r (before: %r), etcd %r\n%s" %
          (p["witness"], value, v, sec.err()))
    check(not p["output"]["holding"] and p["output"]["held_bytes"] == 0 and
          st["vm_state"] == "running", "B after C's loss: %r" % st)
    check(all(e.startswith("https://" if witness_tls else "http://")
              for e in p["witness"]["endpoints"]), p["witness"])
    sec.wait_tick(sec.last_tick() + 10)
    b1, gap = faults.check_timeline(ref.line, released(pri), released(sec),
                                    acked_a, from_b)
    log("B went on at %d (gap %d), lost C, won generation 2 and printed to "
        "%d" % (b1, gap, sec.last_tick()))


def case_survivor_fenced():
    certs = tls()
    c = etcdcluster.start()
    ref = e2e.Reference()
    pri, pctl, sec, sctl = a_and_b(c)
    acked_a, from_b = b_takes_over(ref, c, pri, pctl, sec, sctl)
    c_proc, cctl = protect_c(c, sec, sctl, certs)
    # Generation 2 decided for another once paired (decided before, B
    # would have paired above it: the generations of docs/witness.md).
    c.put(KEY2, "secondary 00000000feedface")
    c_proc.signal(signal.SIGKILL)
    c_proc.p.wait(10)
    rc = sec.wait(30)
    check(rc == 123, "B exited %s, expected 123\n%s" % (rc, sec.dump()))
    check("the secondary took the VM over (owner: secondary "
          "00000000feedface)" in sec.err(), sec.err())
    check(c.get(KEY2) == "secondary 00000000feedface", "the key changed")
    sec.eof()
    b1, gap = faults.check_timeline(ref.line, released(pri), released(sec),
                                    acked_a, from_b)
    log("B went on at %d (gap %d), lost C, lost generation 2 and exited "
        "123 after line %d" % (b1, gap, b1 + len(sec.lines()) - 1))


def case_survivor_commands():
    certs = tls()
    c = etcdcluster.start()
    ref = e2e.Reference()
    pri, pctl, sec, sctl = a_and_b(c)
    r = roles.ftvmctl(sctl.path, "set", "heartbeat", "20ms")
    check(r.returncode == 1 and "this secondary is not running the VM" in
          r.stderr, "set on a replicating secondary: %d %s" %
          (r.returncode, r.stderr))
    acked_a, from_b = b_takes_over(ref, c, pri, pctl, sec, sctl)
    c_proc, cctl = protect_c(c, sec, sctl, certs)
    # set, as on a primary; reconnect refused (no --secondary here).
    e2e.ctl_cli(sctl.path, "set", "checkpoint-interval", "20ms")
    check(sctl.status()["protection"]["checkpoint"]["interval_ms"] == 20,
          sctl.status()["protection"]["checkpoint"])
    r = roles.ftvmctl(sctl.path, "set", "reconnect", "1s")
    check(r.returncode == 1 and "no --secondary to go back to" in r.stderr,
          "set reconnect: %d %s" % (r.returncode, r.stderr))
    # stop-replication: the drop notice and EOF, C stops without failing
    # over (exit 6, dropped), B runs on.
    e2e.ctl_cli(sctl.path, "stop-replication")
    rc = c_proc.wait(30)
    check(rc == ft.EXIT_DROPPED and "no failover" in c_proc.err() and
          not c_proc.eof(),
          "C after B's stop-replication: exit %s\n%s" % (rc, c_proc.dump()))
    # Held output leaves once the EOF has drained to C (until then C
    # could still fail over), which may come just after the state.
    protection(sctl, "stopped")
    st = ft.wait_until(lambda: (lambda s: s if s and not s["protection"]
                                ["output"]["holding"] else None)(
                                    sctl.status()), 10,
                       "B's held output released after stop-replication")
    check(st["vm_state"] == "running", st)
    # Another secondary: the next generation, 3.
    d_proc, d_addr, dctl = e2e.spawn_secondary(
        "D", roles.witness(c) + ["--tls-creds", certs["c"],
                                  "--tls-peer", "secondary"])
    e2e.ctl_cli(sctl.path, "protect", d_addr)
    p = protection(sctl, "active")["protection"]
    check(p["pairing"].endswith("/g3") and p["secondaries"] == 2 and
          p["witness"]["key"] == "/ftvm/counter/3/owner", p)
    ft.wait_until(lambda: sctl.status()["protection"]["checkpoint"]
                  ["last_acked"] >= 3, 20, "three checkpoints acknowledged "
                  "by D")
    # quit: EOF to D, B exits 0 as a primary does; D does not fail over.
    roles.ftvmctl(sctl.path, "quit")
    rc = sec.wait(30)
    check(rc == 0, "B exited %s after quit, expected 0\n%s" %
          (rc, sec.dump()))
    rc = d_proc.wait(30)
    check(rc == ft.EXIT_DROPPED and "no failover" in d_proc.err() and
          not d_proc.eof(),
          "D after B's quit: exit %s\n%s" % (rc, d_proc.dump()))
    for k in (KEY2, "/ftvm/counter/3/owner"):
        check(c.get(k) is None, "%s holds %r" % (k, c.get(k)))
    sec.eof()
    b1, gap = faults.check_timeline(ref.line, released(pri), released(sec),
                                    acked_a, from_b)
    log("B went on at %d (gap %d); set, stop-replication (C stopped), "
        "protect D (generation 3), quit (D stopped); B's output to line %d"
        % (b1, gap, b1 + len(sec.lines()) - 1))


def case_udpkv():
    """udpkv over TAP through the chain: every PUT answered reads back."""
    if not os.path.exists("/dev/net/tun"):
        ft.skip("/dev/net/tun is missing")
    ns = e2e.netns("rp")
    ipn = ["ip", "-n", ns]
    e2e.sh(*ipn, "link", "add", "ftvm-br0", "type", "bridge", "stp_state",
           "0")
    e2e.sh(*ipn, "addr", "add", "10.78.0.1/24", "dev", "ftvm-br0")
    for tap in ("ftvm-a0", "ftvm-b0", "ftvm-c0"):
        e2e.sh(*ipn, "tuntap", "add", "dev", tap, "mode", "tap")
        e2e.sh(*ipn, "link", "set", tap, "master", "ftvm-br0", "up")
    e2e.sh(*ipn, "link", "set", "ftvm-br0", "up")
    # Everything from here on (etcd, the nodes, the client) runs in ns,
    # on its loopback and its bridge.
    faults.setns("/var/run/netns/" + ns)
    certs = tls()
    c = etcdcluster.start()
    w = roles.witness(c)
    sec, addr, sctl = e2e.spawn_secondary("sec", w + ["--net", "tap:ftvm-b0"])
    pri, pctl = e2e.spawn_primary(
        "pri", addr, image="udpkv", mem="32M", args=["ip=" + e2e.GUEST_IP],
        extra=w + ["--net", "tap:ftvm-a0", "--mac", e2e.GUEST_MAC,
                   "--checkpoint-interval", "20ms"])
    e2e.wait_state(pctl, pri, "active", 20)
    ft.wait_until(lambda: any(l.startswith("udpkv ready ip=" + e2e.GUEST_IP)
                              for l in pri.lines()) or
                  (not pri.alive() and ft.fail(pri.dump())), 20,
                  "udpkv ready")
    salt = "%08x" % e2e.rng.getrandbits(32)
    n = 200
    kvload = os.path.join(HERE, "..", "replication", "kvload.py")
    client = e2e.Stream("put", [sys.executable, kvload, e2e.GUEST_IP, salt,
                                "put", str(n)])

    def answered(k, what):
        ft.wait_until(lambda: len(oks()) >= k or
                      (not client.alive() and ft.fail(client.dump())), 30,
                      "%d PUTs answered (%s)" % (k, what))
        return len(oks())

    def oks():
        return [int(l.split()[1]) for l in client.lines()
                if l.startswith("ok ")]
    k1 = answered(e2e.rng.randint(15, 50), "A")
    pri.signal(signal.SIGKILL)
    pri.p.wait(10)
    e2e.wait_state(sctl, sec, "running", 20)
    protection(sctl, "degraded")
    c_proc, c_addr, cctl = e2e.spawn_secondary(
        "C", w + ["--tls-creds", certs["c"], "--tls-peer", "secondary",
                  "--net", "tap:ftvm-c0"])
    r = roles.ftvmctl(sctl.path, "protect", c_addr)
    check(r.returncode == 0, "protect: exit %d: %s%s" %
          (r.returncode, r.stdout, r.stderr))
    protection(sctl, "active")
    k2 = answered(len(oks()) + e2e.rng.randint(15, 50), "B protected by C")
    sec.signal(signal.SIGKILL)
    sec.p.wait(10)
    st = e2e.wait_state(cctl, c_proc, "running", 20)
    check(st["witness"]["state"] == "won" and
          st["witness"]["key"] == "/ftvm/udpkv/2/owner", st["witness"])
    check(client.wait(120) == 0, "the client failed\n" + client.dump())
    lines = client.eof()
    acked = oks()
    lost = [l for l in lines if not l.startswith("ok ")]
    check(not lost and len(acked) == n, "PUTs not answered within the "
          "client's retries, or refused: %r (%d of %d answered)" %
          (lost[:5], len(acked), n))
    r = ft.run([sys.executable, kvload, e2e.GUEST_IP, salt, "get"],
               input="\n".join(map(str, acked)), capture_output=True,
               text=True, timeout=120)
    check(r.returncode == 0, "GET after the second failover:\n%s%s" %
          (r.stdout[-3000:], r.stderr))
    log("%d PUTs answered by A, %d by B (alone, then protected by C), %d "
        "by C; every one reads back from C (%s)" %
        (k1, k2 - k1, n - k2, r.stdout.strip().splitlines()[-1]
         if r.stdout.strip() else ""))


CASES = {
    "chain": case_chain,
    "survivor-won": case_survivor_won,
    "survivor-fenced": case_survivor_fenced,
    "survivor-commands": case_survivor_commands,
    "udpkv": case_udpkv,
    "witness-tls": lambda: case_survivor_won(witness_tls=True),
}


def main():
    roles.run_kvm_cases(CASES, __doc__, "reprotect",
                        ("pri", "sec", "C"))


if __name__ == "__main__":
    main()
