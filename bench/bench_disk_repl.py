#!/usr/bin/env python3
"""bench_disk_repl: a replicated disk, beside the disk and memcpy.

    python3 bench/bench_disk_repl.py [--rates 0,1,4,16,64] [--disk 256M]
                                     [--interval 50] [--window 5]
                                     [--dir DIR] [--quick] [--json FILE]

Runs the real `ftvm secondary` and `ftvm primary` on 127.0.0.1 with the
diskwrite guest (guest/diskwrite.c: 64 KiB writes, round and round over
its disk, flushed every MiB) writing each --rates MiB/s to a --disk image
in DIR (the primary's image and the secondary's copy both there), and
samples over a --window second window (after 2 s of warm-up):

  ckpt/s     checkpoints per second sustained
  chunks     1 MiB disk chunks per package (the primary's data_chunks_sent
             over the window / checkpoints)
  pkg        package size, p50 and p99 (every dirty RAM page and chunk)
  pause      the guest's pause per checkpoint, p50 and p99: it reads the
             dirty chunks from the image and copies them into the package
  ack        the acknowledgement's latency, p50: the secondary checks the
             package, copies the RAM and writes the chunks into its copy
             (with fdatasync) before it answers

beside limits measured in the same run, in the same directory:

  memcpy     bench_ram's memcpy row (256 MiB, best of 3): copying a
             package's bytes at this speed is a lower bound for the pause
  write      pwrite of 256 MiB in 1 MiB blocks then fdatasync, in DIR:
             the secondary's write of a package's chunks costs at least
             their bytes at this speed, which bounds the ack
  copy ms / write ms   the p50 package at memcpy speed, its chunks at the
             disk's write speed

Standard library only.  Exit status: 0, 1 if a configuration failed, 2 for
a bad command line or when /dev/kvm or the built programs are missing.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import benchproc
from benchproc import (measure_memcpy, on_signal, reap_all, spawn)
from bench_repl import Ctl, get, pct

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = ("tools/ftvm", "tools/ftvmctl", "guest/diskwrite.elf",
            "bench/bench_ram")
MIB = 1 << 20


def measure_disk_write(d, mib=256):
    """GB/s of pwrite in 1 MiB blocks then fdatasync, a file in d."""
    buf = os.urandom(MIB)
    fd, path = tempfile.mkstemp(dir=d, prefix="bench-write-")
    try:
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(mib):
                os.pwrite(fd, buf, i * MIB)
            os.fdatasync(fd)
            best = max(best, mib * MIB / (time.perf_counter() - t0) / 1e9)
            os.ftruncate(fd, 0)
        return best
    finally:
        os.close(fd)
        os.unlink(path)


def run_rate(bins, work, rate, a):
    tag = f"r{rate}"
    pimg = os.path.join(work, f"{tag}-p.img")
    simg = os.path.join(work, f"{tag}-s.img")
    with open(pimg, "wb") as f:
        f.truncate(a.disk * MIB)
    files = {k: open(os.path.join(work, f"{tag}-{k}"), "w")
             for k in ("b.err", "a.err", "a.out", "b.out")}
    bsock = os.path.join(work, f"{tag}-b.sock")
    asock = os.path.join(work, f"{tag}-a.sock")
    b = spawn([bins["tools/ftvm"], "secondary", "--listen", "127.0.0.1:0",
               "--control", bsock, "--insecure", "--disk", simg],
              stdin=subprocess.DEVNULL, stdout=files["b.out"],
              stderr=files["b.err"])
    port = benchproc.wait_file(files["b.err"].name, r"listening on 127\.0\.0\.1:(\d+)",
                     b, 10).group(1)
    # Idle: 4 KiB/s, a write now and then (the guest must not halt).
    guest = [f"kib-per-second={rate * 1024 if rate else 4}", "block-kib=4"
             if not rate else "block-kib=64"]
    p = spawn([bins["tools/ftvm"], "primary", bins["guest/diskwrite.elf"]] +
              guest + ["--mem", "64M", "--disk", pimg, "--secondary",
                       f"127.0.0.1:{port}", "--checkpoint-interval",
                       f"{a.interval}ms", "--control", asock, "--insecure"],
              stdin=subprocess.DEVNULL, stdout=files["a.out"],
              stderr=files["a.err"])
    try:
        m = benchproc.wait_file(files["a.err"].name, r"protected by \S+ \(bring-up "
                      r"([\d.]+ \w+) in ([\d.]+ m?s)\)", p, 120)
        bringup = f"{m.group(1)} in {m.group(2)}"
        actl = benchproc.wait(lambda: os.path.exists(asock) and Ctl(asock),
                              10, "the primary's control socket")
        time.sleep(2.0)
        st0 = actl.call("status")
        seen = {}
        t0 = time.monotonic()
        while time.monotonic() - t0 < a.window:
            st = actl.call("status")
            seen.setdefault(get(st, "checkpoint.last_id"),
                            (get(st, "pause_ms.last"),
                             get(st, "package_bytes.last"),
                             get(st, "ack_ms.last")))
            time.sleep(0.005)
        t1 = time.monotonic()
        st1 = actl.call("status")
        if get(st1, "state") != "active":
            raise RuntimeError(f"replication {get(st1, 'state')}: "
                               f"{get(st1, 'last_error')}")
        seen.pop(get(st0, "checkpoint.last_id"), None)
        vals = [v for v in seen.values() if None not in v]
        taken = get(st1, "checkpoint.taken") - get(st0, "checkpoint.taken")
        chunks = get(st1, "disk.data_chunks_sent") - \
            get(st0, "disk.data_chunks_sent")
        files["a.out"].flush()
        with open(files["a.out"].name) as f:
            reports = re.findall(r"diskwrite kib=\d+ elapsed_ms=\d+ "
                                 r"rate=(\d+)", f.read())
        achieved = int(reports[-1]) / 1024 if reports and rate else 0.0
        actl.close()
        return {
            "rate_mib_s": rate, "achieved_mib_s": achieved,
            "bringup": bringup, "seconds": t1 - t0, "taken": taken,
            "ckpt_per_s": taken / (t1 - t0),
            "chunks_per_ckpt": chunks / max(1, taken),
            "pause_ms": [v[0] for v in vals],
            "package_bytes": [v[1] for v in vals],
            "ack_ms": [v[2] for v in vals],
            "nacks": get(st1, "nacks", 0) - get(st0, "nacks", 0),
        }
    finally:
        for proc in (p, b):
            benchproc.kill_group(proc, signal.SIGKILL)
            proc.wait(10)
            benchproc.forget(proc)
        for f in files.values():
            f.close()
        for img in (pimg, simg):
            if os.path.exists(img):
                os.unlink(img)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="0,1,4,16,64",
                    help="MiB/s the guest writes (0: idle)")
    ap.add_argument("--disk", type=benchproc.parse_size, default=256,
                    help="the image's size (default 256M)")
    ap.add_argument("--interval", type=int, default=50,
                    help="checkpoint interval, ms (default 50)")
    ap.add_argument("--window", type=float, default=5.0)
    ap.add_argument("--dir", default="/var/tmp",
                    help="where the images go (default /var/tmp)")
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--quick", action="store_true",
                    help="rates 0,16 and a 3 s window")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.quick:
        a.rates, a.window = "0,16", 3.0
    try:
        rates = [int(x) for x in a.rates.split(",") if x != ""]
    except ValueError:
        ap.error(f"--rates {a.rates}: MiB/s, comma-separated")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("bench_disk_repl: /dev/kvm is not usable", file=sys.stderr)
        return 2
    if benchproc.missing_programs("bench_disk_repl", a.build, PROGRAMS):
        return 2
    signal.signal(signal.SIGTERM, on_signal)
    work = tempfile.mkdtemp(prefix="ftvm-bench-disk-", dir=a.dir)
    rows, failed = [], 0
    try:
        bins = benchproc.copy_programs(work, a.build, PROGRAMS)
        memcpy = measure_memcpy(bins["bench/bench_ram"])
        write = measure_disk_write(work)
        print(f"limits, measured now: memcpy {memcpy:.2f} GB/s; "
              f"pwrite+fdatasync in {a.dir} {write:.2f} GB/s")
        print(f"disk {a.disk} MiB, checkpoint every {a.interval} ms, "
              f"{a.window:.0f} s window")
        print(f"{'MiB/s':>6} {'got':>6} {'ckpt/s':>7} {'chunks':>7} "
              f"{'pkg p50':>8} {'p99':>8} {'pause p50':>10} {'p99':>7} "
              f"{'copy ms':>8} {'write ms':>9} {'ack p50':>8}  bring-up")
        for rate in rates:
            try:
                r = run_rate(bins, work, rate, a)
            except RuntimeError as e:
                failed += 1
                print(f"{rate:>6}  failed: {e}")
                continue
            rows.append(r)
            pb = pct(r["package_bytes"], 50)
            copy_ms = pb / (memcpy * 1e9) * 1e3
            write_ms = r["chunks_per_ckpt"] * MIB / (write * 1e9) * 1e3
            print(f"{rate:>6} {r['achieved_mib_s']:>6.1f} "
                  f"{r['ckpt_per_s']:>7.1f} {r['chunks_per_ckpt']:>7.1f} "
                  f"{pb / 1024:>6.0f}Ki "
                  f"{pct(r['package_bytes'], 99) / 1024:>6.0f}Ki "
                  f"{pct(r['pause_ms'], 50):>10.2f} "
                  f"{pct(r['pause_ms'], 99):>7.2f} {copy_ms:>8.2f} "
                  f"{write_ms:>9.2f} {pct(r['ack_ms'], 50):>8.2f}  "
                  f"{r['bringup']}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"memcpy_gb_s": memcpy, "write_gb_s": write,
                           "rows": rows}, f, indent=2)
    finally:
        reap_all()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
