#!/usr/bin/env python3
"""bench_colo: checkpoint mode against COLO mode, console output, one run.

    python3 bench/bench_colo.py [--secs 10] [--mem 64M] [--rate 100]
                                [--build DIR] [--json FILE]

Runs the real `ftvm secondary` and `ftvm primary` on 127.0.0.1 with the
counter guest (--rate ticks a second, each a console line) in four
configurations, --secs seconds each after the pair is active: checkpoint
mode at 10 ms and at 50 ms, COLO mode (default interval, 10 s), and COLO
with the counter writing a line that differs between the VMs every 100
ticks (noise-every=100: mismatches on purpose).  For each, from the
primary's status at the end: the console's commit delay p50/p99 (how long
a line waited before it left: the added latency a client sees; 0 for an
unreplicated VM, whose output is never held), checkpoints per second and
their causes, the guest's pause per checkpoint (p50) and per second, and
for COLO the secondary's SVM reset time and pages (p50).

Network COLO (a udpkv request rate over TAP) is not built yet: this table
is the console's (docs/colo.md).  Standard library only.  Exit status: 0,
1 if a configuration failed, 2 for a bad command line or missing programs.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = ("tools/ftvm", "tools/ftvmctl", "guest/counter.elf")

CONFIGS = [
    ("checkpoint 10ms", ["--checkpoint-interval", "10ms"], []),
    ("checkpoint 50ms", ["--checkpoint-interval", "50ms"], []),
    ("colo", ["--mode", "colo"], []),
    ("colo, noise/100", ["--mode", "colo"], ["noise-every=100"]),
]


def one(build, tmp, name, extra, guest_args, a, port):
    ftvm = os.path.join(build, "tools/ftvm")
    ftvmctl = os.path.join(build, "tools/ftvmctl")
    ssock = os.path.join(tmp, "s%d.sock" % port)
    psock = os.path.join(tmp, "p%d.sock" % port)
    sec = spawn([ftvm, "secondary", "--listen", "127.0.0.1:%d" % port,
                 "--insecure", "--control", ssock],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(lambda: os.path.exists(ssock), 10, "the secondary's socket")
    pri = spawn([ftvm, "primary", os.path.join(build, "guest/counter.elf"),
                 "rate=%d" % a.rate] + guest_args +
                ["--mem", a.mem, "--secondary", "127.0.0.1:%d" % port,
                 "--insecure", "--control", psock] + extra,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: (status(ftvmctl, psock) or {}).get("state") ==
             "active", 20, "active")
        s0 = status(ftvmctl, psock)
        time.sleep(a.secs)
        s1 = status(ftvmctl, psock)
        ss = status(ftvmctl, ssock)
    finally:
        for p in (pri, sec):
            kill_group(p, signal.SIGKILL)
            p.wait(5)
    c0, c1 = s0["checkpoint"], s1["checkpoint"]
    taken = c1["taken"] - c0["taken"]
    causes = {k: v - c0["causes"].get(k, 0)
              for k, v in c1["causes"].items() if v - c0["causes"].get(k, 0)}
    row = {
        "config": name,
        "delay_p50_ms": s1["output"]["commit_delay_ms"]["p50"],
        "delay_p99_ms": s1["output"]["commit_delay_ms"]["p99"],
        "ckpt_per_s": taken / a.secs,
        "causes": causes,
        "pause_p50_ms": s1["pause_ms"]["p50"],
        "pause_ms_per_s": s1["pause_ms"]["p50"] * taken / a.secs,
    }
    if ss and "colo" in ss:
        row["reset_p50_ms"] = ss["colo"]["reset_ms"]["p50"]
        row["reset_pages_p50"] = ss["colo"]["reset_pages"]["p50"]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--secs", type=float, default=10)
    ap.add_argument("--mem", default="64M")
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--json")
    a = ap.parse_args()
    missing = benchproc.missing_programs("bench_colo", a.build, PROGRAMS)
    if missing:
        return 2
    signal.signal(signal.SIGTERM, on_signal)
    rows, failed = [], 0
    with tempfile.TemporaryDirectory(prefix="bench_colo.") as tmp:
        try:
            for i, (name, extra, gargs) in enumerate(CONFIGS):
                try:
                    rows.append(one(a.build, tmp, name, extra, gargs, a,
                                    17300 + i))
                except (RuntimeError, KeyError, TypeError) as e:
                    print("%s: failed: %s" % (name, e), file=sys.stderr)
                    failed += 1
        finally:
            reap_all()
    print("counter rate=%d (a console line each tick), %s, %.0f s each; "
          "unreplicated: delay 0 (never held), no checkpoints" %
          (a.rate, a.mem, a.secs))
    print("%-16s %9s %9s %8s %9s %10s %9s %6s  %s" %
          ("config", "delay p50", "p99 ms", "ckpt/s", "pause ms",
           "pause ms/s", "reset ms", "pages", "causes"))
    for r in rows:
        print("%-16s %9.2f %9.2f %8.2f %9.3f %10.2f %9s %6s  %s" %
              (r["config"], r["delay_p50_ms"], r["delay_p99_ms"],
               r["ckpt_per_s"], r["pause_p50_ms"], r["pause_ms_per_s"],
               "%.2f" % r["reset_p50_ms"] if "reset_p50_ms" in r else "-",
               r.get("reset_pages_p50", "-"),
               ", ".join("%s %d" % kv for kv in sorted(r["causes"].items()))))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
