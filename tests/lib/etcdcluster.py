"""etcdcluster: a real three-member etcd cluster on loopback, for tests.

    import ftvmtest as ft, etcdcluster
    c = etcdcluster.start()          # inside ft.run_case: skips (77) without
                                     # etcd, fails if FTVM_REQUIRE_ETCD=1
    c.endpoints()                    # "http://127.0.0.1:C0,http://...:C1,..."
    c.kill(1); c.stop(2); c.cont(2); c.restart(1)
    c = etcdcluster.start(tls=creds)  # https:// clients, client certificates
                                      # (creds: ft.make_certs's directory)

Each member is `etcd` (Debian's etcd-server, installed by
scripts/bootstrap.sh) run as an ft.Proc, so run_case kills it when the case
ends however it ends; its data directory is under the case's temporary
directory, which run_case removes.  Client and peer ports are free ones
on 127.0.0.1, all different; a start that finds one taken meanwhile
starts again on new ones.

The members' raft timing is set for loopback: a 25 ms heartbeat and a
250 ms election timeout instead of etcd's 100 ms / 1000 ms, so the cluster
elects a leader, and re-elects one after a member is killed, in a fraction
of a second rather than seconds.  Round trips on loopback are microseconds,
so the 10x margin etcd's tuning guide asks for between round trip and
heartbeat still holds on a loaded machine.  The lease minimum TTL follows
the election timeout (1.5x, rounded up to a second): 1 s here.

Readiness is asked of the v3 JSON gateway itself (POST
/v3/maintenance/status on every member), never of etcdctl: ready is every
member running and all naming the same, non-zero leader.
"""
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import urllib.error
import urllib.request

import ftvmtest as ft

HEARTBEAT_MS = 25
ELECTION_MS = 250
MEMBERS = 3


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def unb64(s):
    return base64.b64decode(s or "")


def post(url, path, body, timeout=2, context=None):
    """POST JSON to one member's gateway; the decoded answer, or None
    when the member does not answer well (down, stopped, no leader).
    context: the ssl.SSLContext for an https:// url."""
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=ft.scaled(timeout),
                                    context=context) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def distinct_ports(n):
    """n free loopback ports, all different: held open together while
    chosen (ft.free_port() one at a time can return one port twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def etcd_binary():
    return shutil.which("etcd")


class Cluster:
    def __init__(self, binary, n=MEMBERS, hosts=(), tls=None):
        self.binary = binary
        # With tls (a credentials directory: ca.pem, cert.pem, key.pem),
        # clients speak https and must present a certificate of that CA;
        # the members among themselves stay on plain http.
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.context = None
        if tls:
            self.context = ssl.create_default_context(
                cafile=os.path.join(tls, "ca.pem"))
            self.context.load_cert_chain(os.path.join(tls, "cert.pem"),
                                         os.path.join(tls, "key.pem"))
        self.n = n
        self.hosts = tuple(hosts)       # addresses served beside 127.0.0.1
        ports = distinct_ports(2 * n)
        self.client, self.peer = ports[:n], ports[n:]
        self.token = "ftvm-test-%d-%d" % (os.getpid(), self.client[0])
        self.procs = [None] * n
        self.starts = [0] * n
        self.initial = ",".join("m%d=http://127.0.0.1:%d" % (i, self.peer[i])
                                for i in range(n))

    def url(self, i, host="127.0.0.1"):
        return "%s://%s:%d" % (self.scheme, host, self.client[i])

    def endpoints(self, members=None, host="127.0.0.1"):
        """URL[,URL...] of the given members (all by default), in order,
        on 127.0.0.1 or on one of the hosts the cluster was started with."""
        return ",".join(self.url(i, host) for i in
                        (range(self.n) if members is None else members))

    def start(self, i):
        """Starts (or restarts, on its existing data) member i."""
        d = os.path.join(ft.tmp, "etcd-%d-m%d" % (self.client[0], i))
        argv = [self.binary, "--name", "m%d" % i, "--data-dir", d,
                "--listen-client-urls",
                ",".join(self.url(i, h) for h in ("127.0.0.1",) + self.hosts),
                "--advertise-client-urls", self.url(i),
                "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer[i],
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:%d" % self.peer[i],
                "--initial-cluster", self.initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", self.token,
                "--heartbeat-interval", str(HEARTBEAT_MS),
                "--election-timeout", str(ELECTION_MS),
                "--logger", "zap", "--log-level", "warn"]
        if self.tls:
            argv += ["--cert-file", os.path.join(self.tls, "cert.pem"),
                     "--key-file", os.path.join(self.tls, "key.pem"),
                     "--trusted-ca-file", os.path.join(self.tls, "ca.pem"),
                     "--client-cert-auth"]
        self.starts[i] += 1
        self.procs[i] = ft.Proc("etcd-%d-m%d-%d" % (self.client[0], i,
                                                    self.starts[i]), argv)

    def status(self, i):
        return post(self.url(i), "/v3/maintenance/status", {},
                    context=self.context)

    def leader(self, members=None):
        """The leader's id when every given member (all by default) is up
        and names the same one; else None."""
        ids = set()
        for i in (range(self.n) if members is None else members):
            if not self.procs[i].alive():
                ft.fail("etcd member m%d exited (%s)\n%s" % (
                    i, self.procs[i].p.returncode, self.procs[i].dump()))
            s = self.status(i)
            if not s or s.get("leader", "0") in ("0", 0):
                return None
            ids.add(s["leader"])
        return ids.pop() if len(ids) == 1 else None

    def wait_ready(self, members=None, timeout=20):
        return ft.wait_until(lambda: self.leader(members), timeout,
                             "an etcd leader known to members %s" %
                             (list(members) if members else "all"),
                             step=0.05)

    def kill(self, i):
        self.procs[i].kill9()

    def stop(self, i):
        self.procs[i].signal(signal.SIGSTOP)

    def cont(self, i):
        self.procs[i].signal(signal.SIGCONT)

    def restart(self, i):
        self.kill(i)
        self.start(i)

    def put(self, key, value, member=0):
        """A put through the gateway (setting up a case, not checking)."""
        r = post(self.url(member), "/v3/kv/put",
                 {"key": b64(key), "value": b64(value)},
                 context=self.context)
        ft.check(r is not None, "put %s on m%d failed" % (key, member))

    def get(self, key, member=0):
        """The value of key read through member's gateway, or None."""
        r = post(self.url(member), "/v3/kv/range", {"key": b64(key)},
                 context=self.context)
        ft.check(r is not None, "range %s on m%d failed" % (key, member))
        kvs = r.get("kvs") or []
        return unb64(kvs[0].get("value")).decode() if kvs else None


def start(n=MEMBERS, timeout=20, hosts=(), tls=None):
    """Starts an n-member cluster and waits for its leader; skips the case
    (exit 77) when etcd is not installed.  Members also serve clients on
    each of `hosts` (addresses in a namespace the test made, where the
    test runs), on the same ports."""
    binary = etcd_binary()
    if not binary:
        msg = ("etcd is not installed (Debian's etcd-server; "
               "scripts/bootstrap.sh installs it)")
        if os.environ.get("FTVM_REQUIRE_ETCD") == "1":
            ft.fail(msg + ", and FTVM_REQUIRE_ETCD=1 says this run has it")
        ft.skip(msg)
    for attempt in range(3):
        c = Cluster(binary, n, hosts, tls)
        for i in range(n):
            c.start(i)
        try:
            c.wait_ready(timeout=timeout)
            return c
        except ft.Failure:
            # Another process may have taken a port after it was chosen:
            # then start again on new ones; any other failure is one.
            if attempt == 2 or not any(
                    p and "address already in use" in p.err()
                    for p in c.procs):
                raise
            ft.log("an etcd port was taken meanwhile: starting again")
            for p in c.procs:
                p.kill9()
