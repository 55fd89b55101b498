#!/usr/bin/env python3
"""Network COLO end to end (docs/colo.md, docs/net-compare.md): udpkv in a
real `ftvm primary --mode colo --net tap:...` and `ftvm secondary --net
tap:...`, both TAP devices on one bridge in a network namespace made here,
a client (colo_net_client.py) in that namespace.

    colo_net_test.py CASE FTVM FTVMCTL GUEST_DIR [RUNS]

Exit 0 pass, 1 fail, 77 skipped (no usable /dev/kvm, not root, no
/dev/net/tun).  The client sends one request at a time, each try with an
id of its own, and records every send and every reply: a reply seen twice
for one id is output released twice.

  steady    PUT then GET of the same key, 100 requests a second, 400 in
            all, --checkpoint-interval 2s, with two more clients at 25 a
            second and a ping beside it (flows of their own, compared
            apart): every GET reads its PUT's value, every ping answered,
            each request answered exactly once (no retry), only periodic
            checkpoints (no mismatch, no timeout), frames released by
            comparison (colo.net.matched > 0), every request mirrored to
            the SVM (the secondary's colo.input_frames), none dropped on
            the way.
  resets    --checkpoint-interval 100ms and three open-loop clients at 300
            requests a second each, for 5 s: frames in flight across 50
            SVM resets; still no mismatch and no timeout, every request
            answered exactly once, a reset per checkpoint.
  secondary two open-loop clients at 200 requests a second; the secondary
            stopped (SIGSTOP) for three compare timeouts: a timeout
            checkpoint, the primary stays active; then killed (-9): the
            primary goes degraded, nothing stays held; every request
            answered exactly once throughout (the primary's own output is
            never lost), no mismatch.
  mismatch  the steady case's client with a TIME (the guest's TSC: it
            differs between the VMs) every 20th request and --compare-log
            FILE.pcap: at least
            one mismatch checkpoint and at most one per TIME sent; each
            request answered exactly once; every pair in the pcap file is a
            TIME reply, and the client got the primary's frame of each
            pair (never the secondary's); the file has every pair the
            status counts.
  kill      RUNS times (default 20; FTVM_COLO_NET_RUNS or the argument): a
            client PUTs versions 1, 2, ... of 4 keys (a GET every 4th
            request; in every other run a TIME every 7th, 14 mismatch
            checkpoints a second, so that a kill may find one under way
            with replies held for its ACK); beside it an open-loop client
            sends 300 PUT/GET a second, never again (many requests in
            flight).  The primary is killed (-9) 0.1-2 s after the first
            reply; the secondary takes over; once 10 replies came after the
            kill, the client GETs every key.  No id of either client
            answered twice; every GET of the first (during the run and at
            the end) reads a version at least the last one acknowledged
            before it was sent and at most the last one sent before its
            reply came: no acknowledged PUT lost, no value back in time.
  pcap      the pcap reader used by mismatch (pcapfile.py) on files
            written here, and on one libpcap writes (no VM).

Traffic: 10.81.0.x, only inside the namespaces made here.
"""
import json
import os
import random
import re
import shutil
import signal
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "replication"))
sys.path.insert(0, os.path.join(HERE, "..", "vm"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ckpt_test as ck  # noqa: E402
import e2e_test as e2e  # noqa: E402
import ftvmtest as ft  # noqa: E402
from ftvmtest import check, fail, log  # noqa: E402
from pcapfile import read_pcap, udp_of, write_with_libpcap  # noqa: E402

GUEST_IP, GUEST_MAC = "10.81.0.2", "02:00:0a:51:00:02"
HOST_ADDR = "10.81.0.1/24"
PORT = 7777
CLIENT = os.path.join(HERE, "colo_net_client.py")
rng = random.Random()


# ---- the pcap reader (pcapfile.py), tested without a VM ----

def case_pcap():
    """The reader on files written here, every case it accepts or refuses:
    it is what says the client got the primary's reply, so it is tested
    without a VM first."""
    def frame(payload, sport=PORT, dport=40000):
        udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + \
            payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, 0, 64,
                         17, 0, bytes([10, 81, 0, 2]), bytes([10, 81, 0, 1]))
        return b"\x02\0\0\0\0\x01" + bytes.fromhex(GUEST_MAC.replace(
            ":", "")) + b"\x08\x00" + ip + udp

    def write(name, recs, order="<", magic=0xa1b23c4d, snap=65535,
              link=1, tail=b"", version=(2, 4)):
        path = os.path.join(ft.tmp, name)
        with open(path, "wb") as f:
            f.write(struct.pack(order + "IHHiIII", magic, *version, 0, 0,
                                snap, link))
            for sec, frac, b, orig in recs:
                f.write(struct.pack(order + "IIII", sec, frac, len(b),
                                    orig if orig is not None else len(b)))
                f.write(b)
            f.write(tail)
        return path

    a, b = frame(b"t19.0 VALUE 1234\n"), frame(b"t19.0 VALUE 1299\n")
    for order in "<>":
        link, pk = read_pcap(write("ns" + order, [(5, 999999999, a, None),
                                                  (6, 1, b, None)], order))
        check(link == 1 and pk == [(5999999999, a, len(a)),
                                   (6000000001, b, len(b))],
              "nanosecond file, order %s: %r" % (order, (link, pk)))
    link, pk = read_pcap(write("us", [(5, 7, a, None)], magic=0xa1b2c3d4))
    check(pk == [(5000007000, a, len(a))], "microseconds: %r" % pk)
    link, pk = read_pcap(write("cut-short", [(1, 0, a[:40], len(a))],
                               link=113))
    check(link == 113 and pk == [(1000000000, a[:40], len(a))],
          "a packet stored shorter than it was: %r" % pk)
    check(read_pcap(write("empty", []))[1] == [], "no packets")
    check(udp_of(a) == (PORT, 40000, b"t19.0 VALUE 1234\n"),
          "udp_of: %r" % (udp_of(a),))
    check(udp_of(a[:40]) is None and udp_of(b"\0" * 60) is None,
          "udp_of of a cut or non-IP frame")
    def short():
        path = os.path.join(ft.tmp, "short")
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiI", 0xa1b23c4d, 2, 4, 0, 0))
        return path

    bad = {
        "short": short,
        "version": lambda: write("version", [], version=(1, 0)),
        "magic": lambda: write("magic", [], magic=0x0a0d0d0a),
        "cut header": lambda: write("cuthdr", [(1, 0, a, None)],
                                    tail=b"\0" * 9),
        "cut data": lambda: write("cutdata", [(1, 0, a, None)],
                                  tail=struct.pack("<IIII", 1, 0, 100, 100) +
                                  a[:50]),
        "over snaplen": lambda: write("snap", [(1, 0, a, None)], snap=40),
        "over original": lambda: write("orig", [(1, 0, a, 10)]),
        "fraction": lambda: write("frac", [(1, 1000000000, a, None)]),
        "fraction us": lambda: write("fracus", [(1, 1000000, a, None)],
                                     magic=0xa1b2c3d4),
    }
    for what, mk in bad.items():
        path = mk()
        try:
            got = read_pcap(path)
        except ValueError as e:
            log("%s: refused: %s" % (what, e))
            continue
        fail("%s: read as %r" % (what, got))
    libpcap_roundtrip([(1764720000, 123456789, a), (1764720001, 5, b)])


def libpcap_roundtrip(recs):
    """A file written by libpcap itself, read back."""
    path = os.path.join(ft.tmp, "libpcap.pcap")
    if not write_with_libpcap(path, recs):
        log("NOTE: no libpcap: the reader was not tried on its files")
        return
    link, pk = read_pcap(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    want = [(sec * 1000000000 + ns, b, len(b)) for sec, ns, b in recs]
    check(link == 1 and pk == want, "libpcap's file read as %r" %
          ((link, pk),))
    log("libpcap's own file (magic %s) read back: %d packets" %
        (magic.hex(), len(pk)))



# ---- the namespace, the pair, the client ----

def make_net(tag):
    """A fresh namespace with a bridge (10.81.0.1) and the two TAP devices
    on it; returns (namespace, delete)."""
    if not shutil.which("ip"):
        ft.skip("`ip` (iproute2) is not installed")
    ns = "ftvm-colo-%s-%d-%04x" % (tag, os.getpid(), rng.getrandbits(16))
    r = ft.run(["ip", "netns", "add", ns], capture_output=True, text=True,
               timeout=30)
    if r.returncode != 0:
        ft.skip("cannot create a network namespace: %s" % r.stderr.strip())
    done = []

    def delete():
        if not done:
            done.append(1)
            ft.run(["ip", "netns", "del", ns], capture_output=True,
                   timeout=30)
    ft.cleanups.append(delete)
    ipn = ["ip", "-n", ns]
    ck.sh(*ipn, "link", "set", "lo", "up")
    ck.sh(*ipn, "link", "add", "ftvm-br0", "type", "bridge", "stp_state", "0")
    ck.sh(*ipn, "addr", "add", HOST_ADDR, "dev", "ftvm-br0")
    for tap in ("ftvm-p0", "ftvm-s0"):
        ck.sh(*ipn, "tuntap", "add", "dev", tap, "mode", "tap")
        ck.sh(*ipn, "link", "set", tap, "master", "ftvm-br0", "up")
    ck.sh(*ipn, "link", "set", "ftvm-br0", "up")
    return ns, delete


def colo_args(interval="2s", timeout_ms=100):
    return ["--mode", "colo", "--checkpoint-interval", interval,
            "--compare-timeout", "%dms" % round(ft.scaled(timeout_ms))]


def pair(ns, name, extra=(), colo=None):
    sec, addr, sctl = e2e.spawn_secondary(name + "-s", netns=ns,
                                          extra=["--net", "tap:ftvm-s0"])
    pri, pctl = e2e.spawn_primary(name + "-p", addr, image="udpkv",
                                  mem="32M", args=["ip=" + GUEST_IP],
                                  netns=ns, extra=["--net", "tap:ftvm-p0",
                                                   "--mac", GUEST_MAC] +
                                  (colo or colo_args()) + list(extra))
    e2e.wait_state(pctl, pri, "active", timeout=ft.scaled(10))
    ft.wait_until(lambda: any(ln.startswith("udpkv ready ip=" + GUEST_IP)
                              for ln in pri.lines()) or
                  (not pri.alive() and fail(pri.dump())), 20, "udpkv ready")
    return sec, sctl, pri, pctl


def client(ns, name, mode, *args):
    return ft.Stream(name, [sys.executable, CLIENT, GUEST_IP, mode] +
                     [str(a) for a in args], netns=ns)



class Events:
    """A client's JSON lines: its sends, the replies, grouped by request
    (an id is NAME.TRY)."""

    def __init__(self, lines):
        self.sends, self.replies, self.foreign = [], {}, []
        self.final_at = None
        for ln in lines:
            ev = json.loads(ln)
            if ev["e"] == "S":
                self.sends.append(ev)
            elif ev["e"] == "R":
                self.replies.setdefault(ev["id"], []).append(ev)
            elif ev["e"] == "X":
                self.foreign.append(ev)
            elif ev["e"] == "final":
                self.final_at = len(self.sends)
        self.requests = {}      # NAME -> [send events], in order
        for s in self.sends:
            self.requests.setdefault(s["id"].rsplit(".", 1)[0], []).append(s)

    def answer(self, name):
        """The first reply to any try of request NAME: (time, text) or
        None."""
        got = [r for s in self.requests[name]
               for r in self.replies.get(s["id"], [])]
        return min(((r["t"], r["a"]) for r in got), default=None)

    def check_once(self, who):
        twice = {i: [r["a"] for r in rs] for i, rs in self.replies.items()
                 if len(rs) > 1}
        check(not twice, "%s: ids answered more than once: %r" %
              (who, dict(list(twice.items())[:5])))
        check(not self.foreign, "%s: replies to no request of ours: %r" %
              (who, self.foreign[:5]))

    def check_answered(self, who, retries_ok):
        lost = [n for n in self.requests if self.answer(n) is None]
        check(not lost, "%s: %d requests never answered: %r" %
              (who, len(lost), lost[:10]))
        if not retries_ok:
            again = {n: len(s) for n, s in self.requests.items()
                     if len(s) > 1}
            check(not again, "%s: requests sent again after no reply in "
                  "the client's timeout: %r" % (who, again))

    def latencies_ms(self):
        out = []
        for ss in self.requests.values():
            a = self.answer(ss[0]["id"].rsplit(".", 1)[0])
            if a:
                out.append((a[0] - ss[0]["t"]) * 1e3)
        return sorted(out)


def pct(xs, q):
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def get(st, path):
    """st's field at the dotted path; a missing one fails, named (the
    fields of network COLO are the lead's, fixed by name)."""
    v = st
    for k in path.split("."):
        if not isinstance(v, dict) or k not in v:
            fail("the status has no %s (at %r): %s" %
                 (path, k, json.dumps(st)[:1500]))
        v = v[k]
    return v


def check_mix(ev, who):
    """mix's PUT/GET pairs: each PUT answered OK, each GET its PUT's
    value; TIME a number.  Returns the number of TIME requests."""
    puts, times = {}, 0
    for name, ss in ev.requests.items():
        q, a = ss[0]["q"], ev.answer(name)[1]
        if q.startswith("PUT "):
            _, key, val = q.split(" ", 2)
            puts[key] = val
            check(a == "OK\n", "%s: %s %r answered %r" % (who, name, q, a))
        elif q.startswith("GET "):
            want = "VALUE %s\n" % puts.get(q[4:])
            check(a == want, "%s: %s %r answered %r, expected %r" %
                  (who, name, q, a, want))
        else:
            check(q == "TIME" and re.match(r"^VALUE [0-9]+\n$", a),
                  "%s: %s %r answered %r" % (who, name, q, a))
            times += 1
    return times


def start_mix(ns, name, count, time_every, rate=100):
    return client(ns, name, "mix", "--rate", rate, "--count", count,
                  "--time-every", time_every, "--timeout", ft.scaled(1.0),
                  "--tries", 3, "--linger", ft.scaled(0.5), "--salt", name)


def end_mix(c, count, rate=100):
    check(c.wait(count / rate * 3 + 30) == 0, "%s failed\n%s" %
          (c.name, c.dump()))
    return Events(c.eof())


def run_mix(ns, name, count, time_every):
    return end_mix(start_mix(ns, name, count, time_every), count)


def summary(rs):
    """Open-loop clients' summaries in a line."""
    return "; ".join("%d of %d answered, p50 %.2f ms p99 %.2f ms max %.0f ms"
                     % (r["answered"], r["sent"], r["p50_ms"], r["p99_ms"],
                        r["max_ms"]) for r in rs)


def stop(p):
    p.signal(signal.SIGTERM)
    p.wait(10)


# ---- the cases ----

def case_steady():
    ns, _ = make_net("st")
    sec, sctl, pri, pctl = pair(ns, "steady")
    # Beside the main client, two slower ones (flows of their own, compared
    # apart) and a ping (ICMP, its own flow too).
    others = [start_mix(ns, "side%d" % k, 100, 0, rate=25) for k in (1, 2)]
    ping = ft.Proc("ping", ["ping", "-c", "10", "-i", "0.3", "-W",
                            "%d" % ft.scaled(2), GUEST_IP], netns=ns)
    ev = run_mix(ns, "mix", 400, 0)
    requests, sends = len(ev.requests) + 10, len(ev.sends) + 10
    for c in others:
        e = end_mix(c, 100, rate=25)
        e.check_once(c.name)
        e.check_answered(c.name, retries_ok=False)
        check_mix(e, c.name)
        requests += len(e.requests)
        sends += len(e.sends)
    check(ping.wait(30) == 0, "ping failed\n" + ping.dump())
    log(ping.lines()[-1] if ping.lines() else "ping: no output")
    st, ss = pctl.status(), sctl.status()
    net = get(st, "colo.net")
    lat = ev.latencies_ms()
    log("%d requests, latency p50 %.2f ms p99 %.2f ms max %.2f ms; "
        "checkpoints %s; colo.net %s; secondary colo %s" %
        (len(ev.requests), pct(lat, 0.5), pct(lat, 0.99), lat[-1],
         get(st, "checkpoint.causes"), json.dumps(net),
         json.dumps(get(ss, "colo"))))
    ev.check_once("steady")
    ev.check_answered("steady", retries_ok=False)
    check(check_mix(ev, "steady") == 0, "TIME in steady")
    causes = get(st, "checkpoint.causes")
    check(get(causes, "mismatch") == 0 and get(causes, "timeout") == 0,
          "deterministic requests took checkpoints for %s" % causes)
    check(get(causes, "periodic") >= 1, "no periodic checkpoint: %s" %
          causes)
    check(get(net, "matched") > 0, "colo.net.matched %d" %
          get(net, "matched"))
    # Every reply the client got left the primary one way or another.
    left = get(net, "matched") + get(net, "released_at_checkpoint") + \
        get(net, "released_uncompared")
    check(left >= requests, "%d frames released, %d replies received" %
          (left, requests))
    check(get(net, "mismatched") == 0 and get(net, "timeouts") == 0,
          "colo.net %s" % net)
    check(get(ss, "colo.input_frames") >= sends,
          "the secondary's SVM got %d frames, the clients sent %d requests" %
          (get(ss, "colo.input_frames"), sends))
    # Nothing lost on the way to the SVM: a frame it missed would be a
    # divergence (counted as a mismatch or a timeout above).
    check(get(net, "mirror_dropped") == 0 and
          get(ss, "colo.input_dropped") == 0,
          "mirrored frames dropped: primary %d, secondary %d" %
          (get(net, "mirror_dropped"), get(ss, "colo.input_dropped")))
    check(pct(lat, 0.5) < 200, "latency p50 %.1f ms: replies waited for "
          "checkpoints" % pct(lat, 0.5))
    stop(pri)
    e2e.retire(sec, pri, sctl, pctl)


def case_resets():
    ns, _ = make_net("rs")
    sec, sctl, pri, pctl = pair(ns, "resets", colo=colo_args("100ms"))
    secs = 5
    cs = [client(ns, "open%d" % k, "rate", "--rate", 300, "--secs", secs,
                 "--timeout", ft.scaled(1), "--salt", "o%d" % k)
          for k in range(3)]
    rs = []
    for c in cs:
        check(c.wait(secs + 30) == 0, "%s failed\n%s" % (c.name, c.dump()))
        rs.append(json.loads(c.eof()[-1]))
    st, ss = pctl.status(), sctl.status()
    causes, net = get(st, "checkpoint.causes"), get(st, "colo.net")
    log("clients: %s; checkpoints %s; SVM resets %d (p50 %.2f ms); "
        "colo.net matched %d, released at a checkpoint %d, ignored %d" %
        (summary(rs), causes, get(ss, "colo.resets"),
         get(ss, "colo.reset_ms.p50"), get(net, "matched"),
         get(net, "released_at_checkpoint"), get(net, "ignored_frames")))
    for r in rs:
        check(r["answered"] == r["sent"] and r["twice"] == 0,
              "a client's requests lost or answered twice: %s" % r)
    check(get(causes, "mismatch") == 0 and get(causes, "timeout") == 0,
          "deterministic requests across resets took checkpoints for %s" %
          causes)
    # 100 ms: 10 a second, fewer when the machine is slow.
    check(get(causes, "periodic") >= secs * 3, "%d periodic checkpoints "
          "in %d s at 100 ms" % (get(causes, "periodic"), secs))
    check(get(ss, "colo.resets") >= get(st, "checkpoint.acked") - 1,
          "%d resets for %d checkpoints" % (get(ss, "colo.resets"),
                                             get(st, "checkpoint.acked")))
    e2e.retire(sec, pri, sctl, pctl)


def case_secondary():
    ns, _ = make_net("sc")
    sec, sctl, pri, pctl = pair(ns, "secondary")
    secs = 4
    cs = [client(ns, "open%d" % k, "rate", "--rate", 200, "--secs", secs,
                 "--timeout", ft.scaled(3), "--salt", "o%d" % k)
          for k in range(2)]
    ft.wait_until(lambda: get(pctl.status(), "colo.net.matched") >= 50, 10,
                  "50 frames matched")
    # Three compare timeouts (the failure timeout is 1 s): the SVM's
    # replies stop coming, a timeout asks for a checkpoint, which waits for
    # the secondary too; the primary's held replies leave on its ACK.
    stopped = ft.scaled(0.3)
    sec.signal(signal.SIGSTOP)
    time.sleep(stopped)
    sec.signal(signal.SIGCONT)
    e2e.wait_state(pctl, pri, "active")
    ft.wait_until(lambda: get(pctl.status(), "checkpoint.causes.timeout")
                  >= 1, 5, "a timeout checkpoint")
    # Then the secondary dies: what the primary held for it leaves, it
    # goes on alone.
    time.sleep(0.5)
    sec.signal(signal.SIGKILL)
    e2e.wait_state(pctl, pri, "degraded")
    rs = []
    for c in cs:
        check(c.wait(secs + 30) == 0, "%s failed\n%s" % (c.name, c.dump()))
        rs.append(json.loads(c.eof()[-1]))
    st = pctl.status()
    log("clients: %s; checkpoints %s; colo.net timeouts %d, released at a "
        "checkpoint %d, held %s" %
        (summary(rs), get(st, "checkpoint.causes"),
         get(st, "colo.net.timeouts"),
         get(st, "colo.net.released_at_checkpoint"),
         get(st, "colo.net.held_frames")))
    for r in rs:
        check(r["answered"] == r["sent"] and r["twice"] == 0,
              "a client's requests lost or answered twice: %s" % r)
    check(get(st, "checkpoint.causes.mismatch") == 0,
          "mismatches: %s" % get(st, "checkpoint.causes"))
    check(sum(get(st, "colo.net.held_frames").values()) == 0,
          "frames still held without a secondary: %s" %
          get(st, "colo.net.held_frames"))
    e2e.retire(sec, pri, sctl, pctl)


def case_mismatch():
    ns, _ = make_net("mm")
    pcap = os.path.join(ft.tmp, "mismatch.pcap")
    sec, sctl, pri, pctl = pair(ns, "mismatch", ["--compare-log", pcap])
    ev = run_mix(ns, "mix", 400, 20)
    st = pctl.status()
    net, causes = get(st, "colo.net"), get(st, "checkpoint.causes")
    lat = ev.latencies_ms()
    log("%d requests, latency p50 %.2f ms p99 %.2f ms; checkpoints %s; "
        "colo.net %s" % (len(ev.requests), pct(lat, 0.5), pct(lat, 0.99),
                         causes, json.dumps(net)))
    ev.check_once("mismatch")
    ev.check_answered("mismatch", retries_ok=False)
    times = check_mix(ev, "mismatch")
    time_sends = [s for s in ev.sends if s["q"] == "TIME"]
    # A TIME that is sent again is one more chance to differ: the bound
    # counts sends (none are, by check_answered).
    check(1 <= get(causes, "mismatch") <= len(time_sends),
          "%d TIME requests (%d sends), causes %s" %
          (times, len(time_sends), causes))
    log_st = get(net, "compare_log")
    check(log_st is not None and log_st.get("path") and
          os.path.samefile(log_st["path"], pcap),
          "colo.net.compare_log %r, expected %s" % (log_st, pcap))
    stop(pri)
    link, packets = read_pcap(pcap)
    check(link == 1, "pcap link type %d, expected Ethernet" % link)
    check(len(packets) % 2 == 0, "%d packets: not pairs" % len(packets))
    pairs = [(packets[i], packets[i + 1]) for i in range(0, len(packets), 2)]
    check(len(pairs) == get(log_st, "pairs") and get(log_st, "dropped") == 0,
          "%d pairs in %s, the status says %s" % (len(pairs), pcap, log_st))
    check(len(pairs) == get(net, "mismatched"),
          "%d pairs written, %d mismatches counted" %
          (len(pairs), get(net, "mismatched")))
    check(pairs, "no mismatching pair in %s" % pcap)
    time_ids = {s["id"] for s in time_sends}
    for k, ((_, pf, _), (_, sf, _)) in enumerate(pairs):
        pu, su = udp_of(pf), udp_of(sf)
        check(pu and su, "pair %d is not UDP: %s / %s" % (k, pf.hex(),
                                                          sf.hex()))
        prid, _, pa = pu[2].partition(b" ")
        srid, _, sa = su[2].partition(b" ")
        rid = prid.decode("latin-1")
        check(pu[0] == su[0] == PORT and prid == srid and rid in time_ids,
              "pair %d is no pair of TIME replies: %r / %r" % (k, pu, su))
        check(pa != sa, "pair %d: the same reply %r" % (k, pa))
        got = [r["a"].encode("latin-1") for r in ev.replies.get(rid, [])]
        check(got == [pa], "pair %d (%s): the client got %r; the primary "
              "sent %r, the secondary %r" % (k, rid, got, pa, sa))
    log("%d mismatching pairs in the pcap file, each a TIME reply; the "
        "client got the primary's every time" % len(pairs))
    e2e.retire(sec, pri, sctl, pctl)


def check_versions(ev, salt, who):
    """kill's rules for every GET: a version at least the last one
    acknowledged before it was sent, at most the last one sent before its
    reply came.  Returns {key: final version}."""
    acked, sent = [], []        # (time, key, version)
    for name, ss in ev.requests.items():
        q = ss[0]["q"]
        if q.startswith("PUT "):
            _, key, val = q.split(" ", 2)
            v = int(val.split(".")[1])
            sent.append((ss[0]["t"], key, v))
            a = ev.answer(name)
            if a:
                check(a[1] == "OK\n", "%s: %r answered %r" % (who, q, a[1]))
                acked.append((a[0], key, v))
        elif q == "TIME":
            a = ev.answer(name)
            check(a and re.match(r"^VALUE [0-9]+\n$", a[1]),
                  "%s: %s TIME answered %r" % (who, name, a))
    final = {}
    for name, ss in ev.requests.items():
        q = ss[0]["q"]
        if not q.startswith("GET "):
            continue
        key, a = q[4:], ev.answer(name)
        check(a, "%s: %s %r never answered" % (who, name, q))
        t0, t1 = ss[0]["t"], a[0]
        lo = max([v for t, k, v in acked if k == key and t < t0], default=0)
        hi = max([v for t, k, v in sent if k == key and t < t1], default=0)
        m = re.match(r"^VALUE %s\.([0-9]+)\n$" % re.escape(salt), a[1])
        if a[1] == "NOTFOUND\n":
            v = 0
        else:
            check(m, "%s: %s %r answered %r" % (who, name, q, a[1]))
            v = int(m.group(1))
        check(lo <= v <= hi, "%s: %s %r read version %d; version %d was "
              "acknowledged before it was sent, %d the last sent before "
              "its reply" % (who, name, q, v, lo, hi))
        if name.startswith("f"):
            final[key] = v
    return final


def kill_run(i, stats):
    ns, delete = make_net("k%d" % i)
    sec, sctl, pri, pctl = pair(ns, "kill%d" % i)
    stop_file = os.path.join(ft.tmp, "stop%d" % i)
    salt = "%08x" % rng.getrandbits(32)
    time_every = 7 if i % 2 else 0
    # 0.25 s a try, 60 tries: 15 s (scaled) across the failover.
    c = client(ns, "client%d" % i, "kill", "--rate", 100, "--keys", 4,
               "--get-every", 4, "--time-every", time_every,
               "--stop-file", stop_file, "--timeout",
               ft.scaled(0.25), "--tries", 60, "--salt", salt,
               "--max-secs", ft.scaled(60), "--linger", ft.scaled(0.5))
    # Beside it, an open-loop client (many requests in flight, none sent
    # again): a reply released by the primary and sent again by the
    # survivor would show as an id answered twice.
    burst = client(ns, "burst%d" % i, "rate", "--rate", 300, "--secs",
                   ft.scaled(60), "--stop-file", stop_file, "--timeout",
                   ft.scaled(1), "--salt", "b" + salt)

    def replies():
        return [json.loads(ln) for ln in c.lines() if '"e": "R"' in ln]
    ft.wait_until(lambda: replies() or (not c.alive() and fail(c.dump())),
                  10, "the client's first reply")
    delay = rng.uniform(0.1, 2.0)
    time.sleep(delay)
    st = pctl.status()
    pri.signal(signal.SIGKILL)
    t_kill = time.monotonic()
    pri.p.wait(10)
    before = len(replies())

    def running():
        s = sctl.status()
        return s if s and s["state"] == "running" else None
    s = ft.wait_until(running, 10, "the secondary to fail over")
    ft.wait_until(lambda: len([r for r in replies() if r["t"] > t_kill]) >=
                  10 or (not c.alive() and fail(c.dump())), 15,
                  "10 replies from the survivor")
    open(stop_file, "w").close()
    check(c.wait(30) == 0, "the client failed\n" + c.dump())
    ev = Events(c.eof())
    who = "run %d" % i
    check(burst.wait(30) == 0, "the open-loop client failed\n" +
          burst.dump())
    b = json.loads(burst.eof()[-1])
    check(b["twice"] == 0, "%s: the open-loop client got %d replies twice: "
          "%s" % (who, b["twice"], b))
    ev.check_once(who)
    ev.check_answered(who, retries_ok=True)
    final = check_versions(ev, salt, who)
    check(len(final) == 4, "%s: final GETs of %r" % (who, final))
    after = [r for rs in ev.replies.values() for r in rs if r["t"] > t_kill]
    gap = min(r["t"] for r in after) - t_kill
    again = sum(len(ss) - 1 for ss in ev.requests.values())
    stats["retries"] += again
    stats["burst"] += b["sent"]
    stats["burst_lost"] += b["sent"] - b["answered"]
    stats["gap_ms"].append(gap * 1e3)
    log("run %d%s: kill %.0f ms after the first reply (checkpoint %d, %d "
        "frames matched, %d mismatches), %d replies before, %d after; "
        "failover %.1f ms "
        "after detection; first reply after the kill in %.0f ms; %d "
        "retries; open loop: %d of %d answered; final versions %s" %
        (i, " (TIME)" if time_every else "", delay * 1e3,
         st["checkpoint"]["last_acked"], get(st, "colo.net.matched"),
         get(st, "colo.net.mismatched"), before, len(after),
         s["failover"]["ms"], gap * 1e3, again, b["answered"], b["sent"],
         " ".join("%s=%d" % kv for kv in sorted(final.items()))))
    e2e.retire(sec, pri, sctl, pctl)
    ft.procs.remove(c)
    ft.procs.remove(burst)
    delete()


def case_kill(runs):
    stats = {"retries": 0, "gap_ms": [], "burst": 0, "burst_lost": 0}
    t0 = time.monotonic()
    for i in range(1, runs + 1):
        kill_run(i, stats)
    g = sorted(stats["gap_ms"])
    log("summary: %d runs in %.0f s, %d retries; the client's wait from "
        "the kill to the next reply p50 %.0f ms max %.0f ms; open loop: %d "
        "of %d requests never answered (lost at a failover, as a packet "
        "is), none twice" %
        (runs, time.monotonic() - t0, stats["retries"], pct(g, 0.5), g[-1],
         stats["burst_lost"], stats["burst"]))


CASES = {"steady": case_steady, "resets": case_resets,
         "secondary": case_secondary,
         "mismatch": case_mismatch,
         "kill": case_kill, "pcap": case_pcap}


def needs(case):
    """The pcap case needs nothing; the others a VM and TAP devices."""
    if case == "pcap":
        return
    ft.needs_kvm()
    ft.needs_root("TAP devices on a bridge in a network namespace")
    if not os.path.exists("/dev/net/tun"):
        ft.skip("/dev/net/tun is missing")


def main():
    e2e.seeded_main(__doc__, CASES, "colo-net", {"kill": 20}, rng, needs,
                    "FTVM_COLO_NET_RUNS")


if __name__ == "__main__":
    main()
