#!/usr/bin/env python3
"""What mutual TLS costs replication: plaintext (--insecure) against TLS
(--tls-creds, certificates made for the run by scripts/make-certs.sh), in
one run, on 127.0.0.1, at packages of about 1 MiB and 10 MiB, beside the
machine's AES-128-GCM speed (`openssl speed -evp aes-128-gcm`).

Each configuration is bench_repl.py's (the same pair, warm-up, window and
status polling): memtouch dirtying PAGES per second so that a checkpoint
every --interval ms carries about the package size.  The modes alternate
(plaintext, TLS, plaintext, TLS, ... over --rounds) so that a drift of the
machine's load shows as a spread within a mode rather than as a difference
between them.  Reading the table:

  pkg MiB     package_bytes p50 (what was measured, not what was asked)
  ckpt/s      checkpoints taken per second in the window
  pause ms    the guest's pause per checkpoint, p50/p99: TLS must not
              change it (encryption runs on the pump thread, after the
              pause, never inside it)
  ack ms      package queued to ACK read, p50/p99
  MB/s        package bytes per second (mean package x ckpt/s)
  TLS/plain   MB/s of TLS over plaintext, rows of the same size

usage: python3 bench/bench_tls.py [--quick] [--sizes 1,10] [--rounds N] [--window S]
       [--interval MS] [--mem SIZE] [--build DIR] [--json FILE]
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import bench_repl as br
import benchproc  # noqa: E402
from benchproc import on_signal, parse_size, reap_all

def aes_speed():
    """`openssl speed -evp aes-128-gcm`'s table: (lines, MB/s at 16 KiB)."""
    r = subprocess.run(["openssl", "speed", "-seconds", "1", "-evp",
                        "aes-128-gcm"], capture_output=True, text=True,
                       timeout=120)
    lines = [x for x in r.stdout.splitlines() if x.strip()][-2:]
    mbs = None
    try:
        # "AES-128-GCM  ...  16384-byte" column is the last, in 1000s B/s.
        mbs = float(lines[-1].split()[-1].rstrip("k")) / 1000.0
    except (IndexError, ValueError):
        pass
    return lines, mbs


def pump_speed(build, certs):
    """bench_tlspump's lines: the pumps alone, and plain TCP."""
    r = subprocess.run([os.path.join(build, "bench", "bench_tlspump"), certs,
                        "512"], capture_output=True, text=True, timeout=300)
    return [x for x in r.stdout.splitlines() if x.strip()] or \
        ["bench_tlspump failed: " + r.stderr.strip()]


def make_certs(workdir):
    d = os.path.join(workdir, "certs")
    subprocess.run(["sh", os.path.join(br.REPO, "scripts", "make-certs.sh"),
                    d, "primary", "secondary"], check=True,
                   capture_output=True, timeout=60)
    return {"primary": ["--tls-creds", os.path.join(d, "primary")],
            "secondary": ["--tls-creds", os.path.join(d, "secondary"),
                          "--tls-peer", "primary"]}


def f2(v):
    return "-" if v is None or v != v else f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,10",
                    help="package sizes in MiB (default 1,10)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="plaintext/TLS pairs per size (default 2)")
    ap.add_argument("--window", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--interval", type=int, default=50, metavar="MS")
    ap.add_argument("--mem", default="512M")
    ap.add_argument("--poll", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true",
                    help="1 round, 3 s windows")
    ap.add_argument("--build", default=os.path.join(br.REPO, "build"))
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.window, a.warmup = 1, 3.0, 1.0
    a.mem = parse_size(a.mem)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("bench_tls: needs /dev/kvm (read-write): not run",
              file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    workdir = tempfile.mkdtemp(prefix="bench-tls.")
    status = 0
    try:
        bins = benchproc.copy_programs(workdir, a.build, br.PROGRAMS)
        tls = make_certs(workdir)
        print("openssl speed -evp aes-128-gcm ...", file=sys.stderr,
              flush=True)
        aes_lines, aes_mbs = aes_speed()
        print("bench_tlspump ...", file=sys.stderr, flush=True)
        pump0 = pump_speed(a.build, os.path.join(workdir, "certs"))
        rows = []
        load0 = os.getloadavg()[0]
        for mib in [int(x) for x in a.sizes.split(",")]:
            pages = mib * 256 * 1000 // a.interval
            for rnd in range(a.rounds):
                for mode, sec in (("plain", None), ("tls", tls)):
                    print(f"{mib} MiB packages, {mode}, round {rnd + 1} ...",
                          file=sys.stderr, flush=True)
                    row = br.run_config(a, bins, workdir, "memtouch", pages,
                                        a.interval, sec,
                                        tag=f"{mode}-{mib}-{rnd}")
                    row.update({"mode": mode, "size_mib": mib,
                                "round": rnd + 1})
                    rows.append(row)
                    if row.get("error"):
                        status = 1
        pump1 = pump_speed(a.build, os.path.join(workdir, "certs"))
        load1 = os.getloadavg()[0]
        out = sys.stdout
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        print(f"bench_tls: {now}, {br.machine()}, load average {load0:.2f} "
              f"at start, {load1:.2f} at end; checkpoint every "
              f"{a.interval} ms, guest RAM {a.mem} MiB, {a.window:.0f} "
              f"s windows", file=out)
        print("openssl speed -evp aes-128-gcm (1 s per size):", file=out)
        for x in aes_lines:
            print("  " + x, file=out)
        print("bench_tlspump 512 MiB (the two pumps alone, one writer and "
              "one reader thread), before and after:", file=out)
        for x in pump0 + pump1:
            print("  " + x, file=out)
        print("", file=out)
        hdr = (f"{'size':>5} {'mode':>5} {'rnd':>3} {'pkg MiB':>7} "
               f"{'ckpt/s':>6} {'pause p50':>9} {'p99':>6} {'ack p50':>7} "
               f"{'p99':>6} {'MB/s':>7} {'TLS/plain':>9}")
        print(hdr, file=out)
        plain_mbs = {}
        for r in rows:
            if r.get("error"):
                print(f"{r['size_mib']:>4}M {r['mode']:>5} {r['round']:>3} "
                      f"error: {r['error']}", file=out)
                continue
            mbs = r["mean_package_bytes"] * r["ckpt_per_s"] / 1e6
            r["mb_per_s"] = mbs
            key = (r["size_mib"], r["round"])
            ratio = ""
            if r["mode"] == "plain":
                plain_mbs[key] = mbs
            elif plain_mbs.get(key):
                ratio = f"{mbs / plain_mbs[key]:.2f}"
            print(f"{r['size_mib']:>4}M {r['mode']:>5} {r['round']:>3} "
                  f"{br.pct(r['package_bytes'], 50) / 1048576:>7.2f} "
                  f"{r['ckpt_per_s']:>6.1f} "
                  f"{f2(br.pct(r['pause_ms'], 50)):>9} "
                  f"{f2(br.pct(r['pause_ms'], 99)):>6} "
                  f"{f2(br.pct(r['ack_ms'], 50)):>7} "
                  f"{f2(br.pct(r['ack_ms'], 99)):>6} {mbs:>7.1f} "
                  f"{ratio:>9}", file=out)
        if aes_mbs:
            print(f"\nAES-128-GCM at 16 KiB blocks: {aes_mbs:.0f} MB/s on "
                  f"one core (the bound for TLS's MB/s, one pump thread "
                  f"per end)", file=out)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"date": now, "machine": br.machine(),
                           "aes_128_gcm": aes_lines,
                           "pumps": pump0 + pump1, "rows": rows}, f,
                          indent=2)
    except KeyboardInterrupt:
        status = 130
    finally:
        reap_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
