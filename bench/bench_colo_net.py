#!/usr/bin/env python3
"""bench_colo_net: udpkv over TAP at a fixed request rate, unreplicated,
checkpoint mode and COLO mode side by side, one run (issue 10).

    sudo python3 bench/bench_colo_net.py [--rate 200] [--secs 8] [--mem 32M]
                                         [--build DIR] [--json FILE]

A network namespace made here holds a bridge and two TAP devices (the
primary's, the secondary's); the client (tests/colo/colo_net_client.py,
open loop) runs in it and sends --rate requests a second for --secs
seconds after a 1 s warm-up, PUT and GET in turn, whatever the replies.
Configurations, each a fresh VM (udpkv, --mem):

  limit            no VM: a UDP echo in a second namespace, joined to the
                   bridge by a veth pair: the round trip of the same
                   client, kernel and bridge, which no VM behind them can
                   beat
  unreplicated     `ftvm run --net tap:...`
  checkpoint 10ms  `ftvm primary` + `ftvm secondary`, --checkpoint-interval
  checkpoint 50ms
  colo             --mode colo (its default interval, 10 s; deterministic
                   PUT/GET: no mismatch expected)
  colo, TIME/100   the same with a TIME (the guest's TSC, which differs
                   between the VMs) every 100 requests: a mismatch each

Columns: the client's latency p50/p99 (send to reply), replies per second,
checkpoints per second (the primary's status before and after) and their
causes, the guest's pause per second (pause_ms.p50 x checkpoints / s, as
bench_colo.py), and for COLO the comparison's own added latency
(colo.net.latency_ms) and frames matched.  Then the issue's goals, met or
not: COLO p50 within 1 ms of unreplicated; COLO at least 10x fewer
checkpoints than checkpoint mode at 50 ms.

Needs root (namespaces, TAP), /dev/kvm and a build.  Standard library only.
Traffic stays in the namespaces made here (10.81.0.x).  Exit status: 0, 1
if a configuration failed, 2 for a bad command line or what is missing.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import benchproc
from benchproc import kill_group, on_signal, reap_all, spawn, status, wait
from bench_repl import machine, other_ftvm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = ("tools/ftvm", "tools/ftvmctl", "guest/udpkv.elf")
CLIENT = os.path.join(REPO, "tests", "colo", "colo_net_client.py")
GUEST_IP, GUEST_MAC, ECHO_IP = "10.81.0.2", "02:00:0a:51:00:02", "10.81.0.3"

CONFIGS = [
    ("limit", None),
    ("unreplicated", None),
    ("checkpoint 10ms", ["--checkpoint-interval", "10ms"]),
    ("checkpoint 50ms", ["--checkpoint-interval", "50ms"]),
    ("colo", ["--mode", "colo"]),
    ("colo, TIME/100", ["--mode", "colo"]),
]


def sh(*argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()))


def make_net(tag):
    """The namespace with the bridge (10.81.0.1), the two TAPs and a veth
    to a second namespace holding the echo's 10.81.0.3."""
    ns, echo = "ftvm-bench-%s-%d" % (tag, os.getpid()), \
        "ftvm-bench-%s-%d-echo" % (tag, os.getpid())
    sh("ip", "netns", "add", ns)
    sh("ip", "netns", "add", echo)
    ipn = ["ip", "-n", ns]
    sh(*ipn, "link", "set", "lo", "up")
    sh(*ipn, "link", "add", "ftvm-br0", "type", "bridge", "stp_state", "0")
    sh(*ipn, "addr", "add", "10.81.0.1/24", "dev", "ftvm-br0")
    for tap in ("ftvm-p0", "ftvm-s0"):
        sh(*ipn, "tuntap", "add", "dev", tap, "mode", "tap")
        sh(*ipn, "link", "set", tap, "master", "ftvm-br0", "up")
    sh(*ipn, "link", "add", "ftvm-e0", "type", "veth", "peer", "name",
       "ftvm-e1", "netns", echo)
    sh(*ipn, "link", "set", "ftvm-e0", "master", "ftvm-br0", "up")
    sh(*ipn, "link", "set", "ftvm-br0", "up")
    sh("ip", "-n", echo, "addr", "add", ECHO_IP + "/24", "dev", "ftvm-e1")
    sh("ip", "-n", echo, "link", "set", "ftvm-e1", "up")
    sh("ip", "-n", echo, "link", "set", "lo", "up")
    return ns, echo


def in_ns(ns, argv):
    return ["ip", "netns", "exec", ns] + argv


def load(ns, ip, a, extra=()):
    """The client's summary at --rate for --secs against ip."""
    r = subprocess.run(in_ns(ns, [sys.executable, CLIENT, ip, "rate",
                                  "--rate", str(a.rate), "--secs",
                                  str(a.secs), "--warmup", "1",
                                  "--timeout", "2"] + list(extra)),
                       capture_output=True, text=True, timeout=a.secs + 60)
    if r.returncode != 0:
        raise RuntimeError("client: exit %d: %s" % (r.returncode, r.stderr))
    return json.loads(r.stdout.strip().splitlines()[-1])


def alive(procs, err):
    for p in procs:
        if p.poll() is not None:
            with open(err, errors="replace") as f:
                tail = f.read()[-600:]
            raise RuntimeError("ftvm %s exited %d:\n%s" %
                               (p.args[5], p.returncode, tail))
    return True


def ready(path):
    def ok():
        with open(path, "rb") as f:
            return b"udpkv ready ip=" + GUEST_IP.encode() in f.read()
    return ok


def one(build, tmp, ns, echo, name, extra, a, n):
    ftvm = os.path.join(build, "tools/ftvm")
    ftvmctl = os.path.join(build, "tools/ftvmctl")
    image = os.path.join(build, "guest/udpkv.elf")
    psock = os.path.join(tmp, "p%d.sock" % n)
    ssock = os.path.join(tmp, "s%d.sock" % n)
    out = os.path.join(tmp, "p%d.out" % n)
    procs = []
    try:
        if name == "limit":
            procs.append(spawn(in_ns(echo, [sys.executable, CLIENT, ECHO_IP,
                                            "echo", "--secs",
                                            str(a.secs + 30)]),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL))
            procs[0].stdout.readline()      # "echo ready"
            return {"config": name, "load": load(ns, ECHO_IP, a)}
        vm = ["--mem", a.mem, "--net", "tap:ftvm-p0", "--mac", GUEST_MAC,
              "--control", psock]
        err = os.path.join(tmp, "%d.err" % n)
        with open(out, "wb") as o, open(err, "wb") as e:
            if extra is None:
                procs.append(spawn(in_ns(ns, [ftvm, "run"] + vm +
                                         [image, "ip=" + GUEST_IP]),
                                   stdout=o, stderr=e))
            else:
                port = 17400 + n
                procs.append(spawn(in_ns(ns, [
                    ftvm, "secondary", "--listen", "127.0.0.1:%d" % port,
                    "--insecure", "--control", ssock, "--net",
                    "tap:ftvm-s0"]), stdout=subprocess.DEVNULL,
                    stderr=e))
                wait(lambda: os.path.exists(ssock), 10,
                     "the secondary's socket")
                procs.append(spawn(in_ns(ns, [
                    ftvm, "primary", image, "ip=" + GUEST_IP,
                    "--secondary", "127.0.0.1:%d" % port, "--insecure"] +
                    vm + extra), stdout=o, stderr=e))
                wait(lambda: alive(procs, err) and
                     (status(ftvmctl, psock) or {}).get("state") == "active",
                     20, "active")
        wait(lambda: alive(procs, err) and ready(out)(), 20, "udpkv ready")
        s0, t0 = status(ftvmctl, psock), time.monotonic()
        row = {"config": name,
               "load": load(ns, GUEST_IP, a, ["--time-every", "100"]
                            if "TIME" in name else [])}
        s1, t1 = status(ftvmctl, psock), time.monotonic()
    finally:
        # The secondary first: killing the primary first would fail over,
        # and the secondary's announces teach the bridge that the guest's
        # MAC is behind ftvm-s0, where the next configuration's primary
        # never gets a frame.
        for p in procs:
            kill_group(p, signal.SIGKILL)
            p.wait(5)
    if extra is None:
        return row
    c0, c1 = s0["checkpoint"], s1["checkpoint"]
    taken = c1["taken"] - c0["taken"]
    secs = t1 - t0      # the warm-up and the client's last wait too
    row["ckpt_per_s"] = taken / secs
    row["causes"] = {k: v - c0["causes"].get(k, 0)
                     for k, v in c1["causes"].items()
                     if v - c0["causes"].get(k, 0)}
    row["pause_ms_per_s"] = s1["pause_ms"]["p50"] * taken / secs
    net = s1.get("colo", {}).get("net")
    if net:
        row["compare_ms"] = net["latency_ms"]
        row["matched"] = net["matched"] - s0["colo"]["net"]["matched"]
        row["mismatched"] = net["mismatched"] - \
            s0["colo"]["net"]["mismatched"]
    return row


def cell(r, k, fmt):
    return fmt % r[k] if r.get(k) is not None else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--secs", type=float, default=8)
    ap.add_argument("--mem", default="32M")
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--json")
    a = ap.parse_args()
    if benchproc.missing_programs("bench_colo_net", a.build, PROGRAMS):
        return 2
    for what, ok in (("root", os.geteuid() == 0),
                     ("/dev/kvm", os.access("/dev/kvm", os.R_OK | os.W_OK)),
                     ("/dev/net/tun", os.path.exists("/dev/net/tun"))):
        if not ok:
            print("bench_colo_net: needs %s" % what, file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, on_signal)
    rows, failed = [], 0
    nets = []
    with tempfile.TemporaryDirectory(prefix="bench_colo_net.") as tmp:
        try:
            ns, echo = make_net("cn")
            nets += [ns, echo]
            for n, (name, extra) in enumerate(CONFIGS):
                try:
                    rows.append(one(a.build, tmp, ns, echo, name, extra, a,
                                    n))
                except (RuntimeError, KeyError, TypeError, ValueError,
                        subprocess.TimeoutExpired) as e:
                    print("%s: failed: %s" % (name, e), file=sys.stderr)
                    failed += 1
        finally:
            reap_all()
            for x in nets:
                subprocess.run(["ip", "netns", "del", x],
                               capture_output=True, timeout=30)
    print("udpkv over TAP on a bridge in a namespace, %g requests/s open "
          "loop (PUT and GET in turn) for %g s after 1 s of warm-up, %s; "
          "%s; %d other ftvm processes running" %
          (a.rate, a.secs, a.mem, machine(), other_ftvm()))
    print("%-16s %8s %8s %8s %8s %7s %10s %14s  %s" %
          ("config", "p50 ms", "p99 ms", "max ms", "replies/s", "ckpt/s",
           "pause ms/s", "compare p50/p99", "causes"))
    by = {}
    for r in rows:
        ld = r["load"]
        by[r["config"]] = r
        cmp_ms = r.get("compare_ms")
        print("%-16s %8.3f %8.3f %8.3f %9.1f %7s %10s %14s  %s%s" % (
            r["config"], ld["p50_ms"] or 0, ld["p99_ms"] or 0,
            ld["max_ms"] or 0, ld["answered"] / a.secs,
            cell(r, "ckpt_per_s", "%.2f"), cell(r, "pause_ms_per_s", "%.2f"),
            "%.3f/%.3f" % (cmp_ms["p50"], cmp_ms["p99"]) if cmp_ms else "-",
            ", ".join("%s %d" % kv for kv in sorted(r.get("causes",
                                                          {}).items())),
            "; %d of %d unanswered" % (ld["sent"] - ld["answered"],
                                       ld["sent"])
            if ld["sent"] != ld["answered"] else ""))
        if ld["twice"]:
            print("  %s: %d requests answered twice" % (r["config"],
                                                       ld["twice"]))
    print("limit: the echo's round trip through the same bridge without a "
          "VM (the floor under every row)")
    u, c, k = by.get("unreplicated"), by.get("colo"), \
        by.get("checkpoint 50ms")
    if u and c:
        d = c["load"]["p50_ms"] - u["load"]["p50_ms"]
        print("goal: COLO p50 within 1 ms of unreplicated: %+.3f ms, %s" %
              (d, "met" if d <= 1 else "NOT met"))
    if k and c:
        kc, cc = k["ckpt_per_s"], c["ckpt_per_s"]
        print("goal: COLO >= 10x fewer checkpoints than checkpoint 50ms: "
              "%.2f/s against %.2f/s, %s" %
              (cc, kc, "met" if cc * 10 <= kc else "NOT met"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
