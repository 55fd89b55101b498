"""ftvmtest: what ftvm's Python test drivers share.

Deadlines, not sleeps: every wait is for a condition, with a deadline.
Deadlines are written for an ordinary machine and multiplied by
FTVM_TIME_SCALE (default 1) from the environment, so a slower machine
(scripts/test.sh sets 5 inside its QEMU VM) gets more time without any
test asserting speed.  Intervals the test gives ftvm itself (checkpoint
intervals, failure timeouts) are behaviour, not deadlines, and are not
scaled here.

Child processes run in process groups of their own, with stdout and stderr
in files of the case's temporary directory (or stdout read line by line
from a pipe: Stream); run_case() kills every one of them when the case
ends, however it ends.

A case that needs KVM calls needs_kvm(): without a usable /dev/kvm it is
skipped (exit 77), or fails where FTVM_REQUIRE_KVM=1 says KVM must be
there (scripts/test.sh sets it where the tests that need KVM run).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

EXIT_SKIPPED = 77
# A secondary the primary dropped ("ftvm-drop"): secondary/standby.h.
EXIT_DROPPED = 6


def _time_scale():
    text = os.environ.get("FTVM_TIME_SCALE", "")
    if not text:
        return 1.0
    try:
        v = float(text)
    except ValueError:
        v = 0
    if not v >= 1:
        sys.exit("FTVM_TIME_SCALE=%r: expected a number of at least 1"
                 % text)
    return v


TIME_SCALE = _time_scale()

case = None         # the running case's name, for messages
tmp = None          # the case's temporary directory (run_case makes it)
procs = []          # every child started, killed when the case ends
cleanups = []       # callables run when the case ends, last first


class Failure(Exception):
    pass


def log(*a):
    print(*a, flush=True)


def fail(msg):
    raise Failure(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def scaled(seconds):
    """A deadline of `seconds` on an ordinary machine, for this one."""
    return seconds * TIME_SCALE


def skip(msg):
    log("SKIP [%s]: %s" % (case, msg))
    sys.exit(EXIT_SKIPPED)


def kvm_usable():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def needs_kvm():
    if kvm_usable():
        return
    msg = "/dev/kvm is missing or not usable by uid %d" % os.geteuid()
    if os.environ.get("FTVM_REQUIRE_KVM") == "1":
        fail(msg + ", and FTVM_REQUIRE_KVM=1 says this run has KVM")
    skip(msg + "; this case runs a VM")


def needs_root(what):
    if os.geteuid() != 0:
        skip("%s needs root" % what)


def wait_until(pred, timeout, what, step=0.02):
    """Polls pred() until it returns a true value, which is returned;
    fails after `timeout` seconds (scaled)."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            fail("timed out after %.1f s waiting for %s" % (limit, what))
        time.sleep(step)


def run(argv, timeout=30, **kw):
    """subprocess.run with a scaled deadline; failing when it passes."""
    try:
        return subprocess.run(argv, timeout=scaled(timeout), **kw)
    except subprocess.TimeoutExpired:
        fail("%s did not finish within %.0f s" % (" ".join(map(str, argv)),
                                                  scaled(timeout)))


# ---- child processes ----

class Proc:
    """A child in its own process group; stdout and stderr go to files in
    tmp.  stdin is /dev/null, or a pipe with stdin=subprocess.PIPE."""

    def __init__(self, name, argv, netns=None, env=None,
                 stdin=subprocess.DEVNULL):
        self.name, self.argv = name, argv
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        self.out_path = os.path.join(tmp, name + ".out")
        self.err_path = os.path.join(tmp, name + ".err")
        e = dict(os.environ)
        e.update(env or {})
        self._spawn(argv, e, stdin)
        self.started = time.monotonic()
        procs.append(self)

    def _spawn(self, argv, env, stdin):
        with open(self.out_path, "wb") as out, \
                open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdout=out, stderr=err,
                                      stdin=stdin, env=env,
                                      start_new_session=True)

    @staticmethod
    def _text(path):
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")

    def out(self):
        return self._text(self.out_path)

    def err(self):
        return self._text(self.err_path)

    def lines(self):
        """Complete lines of stdout."""
        return self.out().split("\n")[:-1]

    def wait_line(self, pred, timeout, what):
        """The first complete stdout line for which pred(line) is true;
        fails if the process exits first or the deadline passes."""
        def ok():
            for line in self.lines():
                if pred(line):
                    return line
            if not self.alive():
                # What it wrote before exiting is all there is.
                for line in self.lines():
                    if pred(line):
                        return line
                fail("%s exited (%s) before %s\n%s" %
                     (self.name, self.p.returncode, what, self.dump()))
            return None
        return wait_until(ok, timeout, "%s: %s" % (self.name, what))

    def wait_err(self, regex, timeout, what):
        """The first match of the compiled regex in stderr (where ftvm
        says what it is doing, "listening on ..."); fails if the process
        exits first or the deadline passes."""
        def ok():
            exited = not self.alive()     # before reading: all it wrote
            m = regex.search(self.err())
            if m or not exited:
                return m
            fail("%s exited (%s) before %s\n%s" %
                 (self.name, self.p.returncode, what, self.dump()))
        return wait_until(ok, timeout, "%s: %s" % (self.name, what))

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout=15):
        """The exit status; fails if it has not exited in time (scaled)."""
        try:
            return self.p.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            fail("%s did not exit within %.0f s\n%s" %
                 (self.name, scaled(timeout), self.dump()))

    def kill9(self):
        self.signal(signal.SIGKILL)
        return self.p.wait(scaled(10))

    def term(self, timeout=15):
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def dump(self, limit=3000):
        out = self.out()
        if len(out) > limit:
            out = "...\n" + out[-limit:]
        err = self.err()
        if len(err) > limit:
            err = "...\n" + err[-limit:]
        return "--- %s: %s\n--- stdout:\n%s--- stderr:\n%s" % (
            self.name, " ".join(self.argv), out, err)


class Stream(Proc):
    """A child whose stdout is a pipe read line by line by a thread, each
    line timed as it arrives (a client of released output); stdout is also
    copied to the usual file, stderr goes to one."""

    def __init__(self, name, argv, netns=None, env=None):
        self._lines, self.partial = [], b""
        self._lock = threading.Lock()
        self.times = []
        Proc.__init__(self, name, argv, netns, env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _spawn(self, argv, env, stdin):
        open(self.out_path, "wb").close()
        with open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                      stderr=err, stdin=stdin, env=env,
                                      start_new_session=True)

    def _read(self):
        fd = self.p.stdout.fileno()
        with open(self.out_path, "wb") as f:
            while True:
                try:
                    b = os.read(fd, 65536)
                except OSError:
                    b = b""
                if not b:
                    break
                f.write(b)
                f.flush()
                now = time.monotonic()
                with self._lock:
                    parts = (self.partial + b).split(b"\n")
                    self.partial = parts.pop()
                    for line in parts:
                        self._lines.append(line.decode(errors="replace"))
                        self.times.append(now)

    def lines(self):
        with self._lock:
            return list(self._lines)

    def eof(self, timeout=10):
        """Waits until stdout ends (every writer gone): all it released."""
        self.reader.join(scaled(timeout))
        check(not self.reader.is_alive(), "%s's stdout did not end" %
              self.name)
        return self.lines()


MAKE_CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "..", "..", "scripts", "make-certs.sh")


def make_certs(ca, *names, expired=False):
    """Credentials directories for --tls-creds, made at test time by
    scripts/make-certs.sh under the case's temporary directory: a CA named
    ca (made on first use) and one directory per name; returns
    {name: dir}."""
    cadir = os.path.join(tmp, "certs-" + ca)
    argv = ["sh", MAKE_CERTS] + (["--expired"] if expired else []) + \
        [cadir] + list(names)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        fail("make-certs.sh: exit %d: %s" % (r.returncode, r.stderr))
    return {n: os.path.join(cadir, n) for n in names}


def tls_args(creds, peer=None):
    """The options of one end: --tls-creds DIR [--tls-peer NAME]."""
    return ["--tls-creds", creds] + (["--tls-peer", peer] if peer else [])


def kill_all():
    for p in procs:
        p.signal(signal.SIGKILL)
    for p in procs:
        try:
            p.p.wait(scaled(10))
        except subprocess.TimeoutExpired:
            pass


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago: for a child
    that must be told its port (--metrics) rather than choose one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_sanitizers(p):
    """Fails if the process's stderr has a sanitizer's report."""
    for bad in ("Sanitizer", "runtime error:"):
        check(bad not in p.err(), "%s reported:\n%s" % (bad, p.dump()))


def check_peer_once(p, least=1):
    """Every line of p's stderr names a peer's HOST:PORT at most once
    (no "ADDR: ADDR: ..."), and at least `least` lines name one."""
    named = 0
    for line in p.err().split("\n"):
        addrs = re.findall(r"\b\d+\.\d+\.\d+\.\d+:\d+\b", line)
        for a in set(addrs):
            check(addrs.count(a) == 1, "%s names %s %d times: %r" %
                  (p.name, a, addrs.count(a), line))
        named += bool(addrs)
    check(named >= least, "%s: %d line(s) name a peer, expected %d:\n%s" %
          (p.name, named, least, p.err()))


def ftvmctl_json(ftvmctl, sock, *args, ok=True):
    """`ftvmctl -s SOCK --json ARGS` once the socket exists: the result,
    or (with ok=False) (exit status, stderr)."""
    wait_until(lambda: os.path.exists(sock), 10, "control socket " + sock)
    r = run([ftvmctl, "-s", sock, "--json"] + list(args),
            capture_output=True, text=True, timeout=30)
    if not ok:
        return r.returncode, r.stderr
    if r.returncode != 0:
        fail("ftvmctl %s: exit %d: %s" % (" ".join(args), r.returncode,
                                          r.stderr))
    return json.loads(r.stdout)


def stop_all_checked():
    """SIGTERM to every child still running, each given a (scaled) 10 s
    to exit, then every child's stderr checked for sanitizer reports."""
    for p in procs:
        p.signal(signal.SIGTERM)
        try:
            p.p.wait(scaled(10))
        except subprocess.TimeoutExpired:
            pass
        check_sanitizers(p)


# ---- one case, start to end ----

class Stopped(Exception):
    """A signal (meson's timeout sends SIGTERM) ended the case."""


def _on_signal(sig, frame):
    raise Stopped("stopped by signal %d" % sig)


def run_case(name, fn, prefix, describe=""):
    """Runs fn() as case `name` in a fresh temporary directory and exits:
    0 if it returned, 1 on a Failure (every child's output is printed),
    77 if it skipped.  Children are killed and cleanups run either way."""
    global case, tmp
    case = name
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _on_signal)
    tmp = tempfile.mkdtemp(prefix="ftvm-%s-%s-" % (prefix, name))
    status = 1
    t = time.monotonic()
    if TIME_SCALE != 1:
        log("FTVM_TIME_SCALE=%g: deadlines are %g times longer" %
            (TIME_SCALE, TIME_SCALE))
    try:
        fn()
        status = 0
        log("ok: %s (%.1f s)" % (name, time.monotonic() - t))
    except (Failure, Stopped) as e:
        print("FAIL [%s]%s: %s" % (name, describe, e), file=sys.stderr)
        if isinstance(e, Stopped):      # where it was, for a timeout
            traceback.print_exc()
        for p in procs:
            if not p.name.startswith("reference"):
                print(p.dump(), file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        kill_all()
        for c in reversed(cleanups):
            try:
                c()
            except Exception as e:      # keep cleaning
                print("cleanup: %s" % e, file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(status)
