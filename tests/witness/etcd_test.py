#!/usr/bin/env python3
"""witness/etcd.c and etcdwatch.c (through test_etcd) against a real
three-member etcd cluster on loopback (tests/lib/etcdcluster.py), hurt
between steps.

    etcd_test.py CASE TEST_ETCD

    args          bad endpoints, keys, values and lease ids are refused with
                  a message; cancel and free call no callback (no etcd)
    race          20 create-if-absent attempts from each of two clients that
                  prefer different members, all at once: exactly one WON,
                  every other LOST naming the winner; asking again with the
                  winner's value is WON (earlier); get reads the winner, as
                  does the gateway of a third member
    lease         a key under a 1 s lease lives on while kept alive, goes
                  once keepalives stop (waited for with a deadline); an
                  expired lease's keepalive is NOT_FOUND; revoke deletes
    member-down   the leader killed: requests that try it first are
                  answered by the others; restarted, it serves the key
    quorum-lost   two of three members SIGSTOPped: create-if-absent is
                  UNKNOWN within its deadline, never WON or LOST, and get
                  fails; after SIGCONT asking again with the same value is
                  WON (fresh, or earlier if the stalled put went through)
    watch         a watch on /ftvm/w/ sees puts and a lease's delete under
                  it, in order, and not a key beside it; its member killed
                  (the first endpoint, which it uses), it carries on from
                  another member without losing or repeating an event;
                  cancelled from its own callback, it says no more; a
                  watch from a revision compacted away ends, saying so
    not-etcd      a refused port, a listener that never answers and a web
                  server that is not etcd come before the real endpoint:
                  the request gets past them; with only those, UNKNOWN
    tls           a cluster serving https:// and asking for client
                  certificates: with the right CA and a client certificate,
                  WON then LOST and get; a member's certificate of another
                  CA, or no client certificate: UNKNOWN saying why (the
                  certificate's verification, the member's alert);
                  https:// without credentials and http:// with them are
                  refused when the client is made

Every case but args skips (77) when etcd is not installed.
Exit 0 pass, 1 fail, 77 skipped.
"""
import http.server
import os
import shutil
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import etcdcluster  # noqa: E402
import ftvmtest as ft  # noqa: E402

name, test_etcd = sys.argv[1], sys.argv[2]


def run(*args, ok=True, tls=None):
    env = dict(os.environ)
    env.pop("FTVM_TEST_ETCD_TLS", None)
    if tls:
        env["FTVM_TEST_ETCD_TLS"] = tls
    r = ft.run([test_etcd] + list(args), capture_output=True, text=True,
               timeout=60, env=env)
    ft.log("test_etcd %s: exit %d\n%s%s" % (args[0], r.returncode, r.stdout,
                                            r.stderr))
    if ok:
        ft.check(r.returncode == 0, "test_etcd %s failed" % args[0])
    return r.stdout


def member_of_leader(c):
    lead = c.wait_ready()
    for i in range(c.n):
        s = c.status(i)
        if s and s["header"]["member_id"] == lead:
            return i
    ft.fail("no member is the leader %s" % lead)


def case_args():
    run("args")


def case_race():
    c = etcdcluster.start()
    key = "/ftvm/race/1/owner"
    out = run("race", c.endpoints([0, 1, 2]), c.endpoints([1, 2, 0]), key)
    winner = out.split("winner ")[1].split()[0]
    ft.check(c.get(key, member=2) == winner,
             "m2's gateway reads %r, the winner was %r" %
             (c.get(key, member=2), winner))


def case_lease():
    c = etcdcluster.start()
    run("lease", c.endpoints(), "/ftvm/lease/1/owner")


def case_member_down():
    c = etcdcluster.start()
    lead = member_of_leader(c)
    c.kill(lead)
    others = [i for i in range(c.n) if i != lead]
    key = "/ftvm/down/1/owner"
    run("survive", c.endpoints([lead] + others), c.url(lead), key)
    c.start(lead)
    c.wait_ready()
    run("get", c.url(lead), key, "survivor")


def case_quorum_lost():
    c = etcdcluster.start()
    key = "/ftvm/quorum/1/owner"
    for i in (1, 2):
        c.stop(i)
    run("unknown", c.endpoints(), key, "q-mine", "1500")
    for i in (1, 2):
        c.cont(i)
    c.wait_ready()
    out = run("create", c.endpoints(), key, "q-mine", "won")
    ft.log("after the quorum came back: %s" % out.strip())
    run("create", c.endpoints(), key, "q-other", "lost")


def case_watch():
    c = etcdcluster.start()
    run("watch", c.endpoints(), str(c.procs[0].p.pid), "/ftvm/w/")
    c.procs[0].p.wait()
    r = etcdcluster.post(c.url(1), "/v3/kv/range", {"key": etcdcluster.b64(
        "/ftvm/w/f")})
    rev = int(r["header"]["revision"])
    ft.check(etcdcluster.post(c.url(1), "/v3/kv/compaction",
                              {"revision": str(rev)}) is not None,
             "compaction to %d failed" % rev)
    run("watch-old", c.endpoints([1, 2]), "/ftvm/w/", "2")


class NotEtcd(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        body = b"<html>hello, this is not etcd</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def case_tls():
    creds = ft.make_certs("etcd", "members", "node")
    rogue = ft.make_certs("rogue", "node")
    ca_only = os.path.join(ft.tmp, "ca-only")
    os.makedirs(ca_only)
    shutil.copy(os.path.join(creds["node"], "ca.pem"), ca_only)
    c = etcdcluster.start(tls=creds["members"])
    eps = c.endpoints()
    ft.check(eps.startswith("https://"), "endpoints %s" % eps)
    run("create", eps, "/ftvm/t/1/owner", "mine", "won", tls=creds["node"])
    run("create", eps, "/ftvm/t/1/owner", "theirs", "lost", tls=creds["node"])
    run("get", eps, "/ftvm/t/1/owner", "mine", tls=creds["node"])
    ft.check(c.get("/ftvm/t/1/owner") == "mine", "the cluster's own read")
    # The members' certificates are not of the CA we trust.
    out = run("unknown", eps, "/ftvm/t/2/owner", "x", "1500",
              tls=rogue["node"])
    ft.check("certificate" in out, "no reason given: %s" % out.strip())
    # We trust the members but have no certificate to show them.
    out = run("unknown", eps, "/ftvm/t/2/owner", "x", "1500", tls=ca_only)
    ft.check("TLS" in out or "certificate" in out,
             "no reason given: %s" % out.strip())
    ft.check(c.get("/ftvm/t/2/owner") is None, "a refused client wrote")
    for args, tls, why in (((eps,), None, "needs TLS credentials"),
                           ((eps.replace("https", "http"),), creds["node"],
                            "http:// with TLS credentials")):
        r = ft.run([test_etcd, "create", args[0], "/k", "v", "won"],
                   capture_output=True, text=True, timeout=60,
                   env=dict(os.environ, **({"FTVM_TEST_ETCD_TLS": tls}
                                           if tls else {})))
        ft.log("refused: %s" % r.stderr.strip())
        ft.check(r.returncode != 0 and why in r.stderr,
                 "expected a refusal saying \"%s\": exit %d, %s" % (
                     why, r.returncode, r.stderr.strip()))


def case_not_etcd():
    c = etcdcluster.start()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotEtcd)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ft.cleanups.append(srv.shutdown)
    web = "http://127.0.0.1:%d" % srv.server_address[1]
    run("bogus", c.url(0), web, "/ftvm/bogus/1/owner")


CASES = {
    "args": case_args,
    "race": case_race,
    "lease": case_lease,
    "member-down": case_member_down,
    "quorum-lost": case_quorum_lost,
    "watch": case_watch,
    "not-etcd": case_not_etcd,
    "tls": case_tls,
}

if name not in CASES:
    sys.exit("unknown case %s" % name)
ft.run_case(name, CASES[name], "etcd")
