#!/usr/bin/env python3
"""bench_ckpt: checkpoint-to-disk of a running VM, beside the physical limits.

    python3 bench/bench_ckpt.py [--sizes 256M,1G,4G] [--rates idle,10000,100000,max]
                                [--saves 5] [--dir DIR] [--quick] [--json FILE]

For each guest RAM size and dirty rate it boots `build/tools/ftvm run` with
the `memtouch` guest, lets it warm up, takes --saves checkpoints with
`ftvmctl --json save FILE` one after the other (deleting each file), and
prints one table: file size, save time, guest pause, final pages and live
passes, beside two limits measured in the same run on the same machine:

  disk ms   the file's bytes at the disk's sequential write rate (write +
            fsync of --disk-mib MiB to the same directory): a lower bound
            for the save, which ends with an fsync
  copy ms   final_pages * 4 KiB at memcpy speed (bench_ram's memcpy row):
            a lower bound for the pause

Rates: `idle` is memtouch at 1 page/s over 1 MiB; a number is memtouch's
pages-per-second; `max` is pages-per-second=0 (unthrottled).  The working
set is half the RAM, at most --ws-cap MiB.  Standard library only.

Exit status: 0, 1 if a configuration failed, 2 for a bad command line or
when /dev/kvm or the built programs are missing.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchproc import (CHILDREN, forget, kill_group, measure_memcpy,
                        on_signal, parse_size, reap_all, run_child,
                        size_name, spawn)

PAGE = 4096
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---- parsing the command line ----

def parse_rate(s):
    """'idle', 'max', '10000', '10k' -> 'idle' | 'max' | int pages/s."""
    s = s.strip().lower()
    if s in ("idle", "max"):
        return s
    m = re.fullmatch(r"(\d+)(k?)", s)
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"bad rate '{s}': idle, max, or pages per second (10000, 10k)")
    return int(m.group(1)) * (1000 if m.group(2) else 1)


def rate_name(r):
    return r if isinstance(r, str) else str(r)


# ---- the physical limits ----

def measure_disk(directory, mib):
    """(durable MB/s, page-cache MB/s): mib MiB of 8 MiB writes + fsync."""
    chunk = os.urandom(8 << 20)
    path = os.path.join(directory, "disk-probe.tmp")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        total = 0
        t0 = time.monotonic()
        while total < mib << 20:
            total += os.write(fd, chunk)
        t1 = time.monotonic()
        os.fsync(fd)
        t2 = time.monotonic()
    finally:
        os.close(fd)
        os.unlink(path)
    return total / (t2 - t0) / 1e6, total / (t1 - t0) / 1e6


# ---- one VM ----

REPORT = re.compile(r"memtouch pages=(\d+) elapsed_ms=(\d+) rate=(\d+)")


class Guest:
    """An `ftvm run` of memtouch, its console read on a thread."""

    def __init__(self, build, workdir, sockdir, mib, rate, ws_mib, tag):
        self.sock = os.path.join(sockdir, f"ctl-{tag}.sock")
        self.errpath = os.path.join(workdir, f"ftvm-{tag}.err")
        self.ctl = os.path.join(build, "tools", "ftvmctl")
        if rate == "idle":
            gargs = ["pages-per-second=1", "working-set-mib=1"]
            self.ws_pages = 0       # nothing to warm up
        else:
            pps = 0 if rate == "max" else rate
            gargs = [f"pages-per-second={pps}", f"working-set-mib={ws_mib}"]
            self.ws_pages = ws_mib * 256
        argv = [os.path.join(build, "tools", "ftvm"), "run",
                "-m", f"{mib}M", "--control", self.sock,
                os.path.join(build, "guest", "memtouch.elf")] + gargs + \
               ["report-every=1"]
        self.lock = threading.Lock()
        self.samples = []           # (host monotonic s, pages, elapsed_ms)
        self.started = threading.Event()
        self.tail = []
        self.errf = open(self.errpath, "w")
        self.p = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=self.errf, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            now = time.monotonic()
            line = line.rstrip("\n")
            with self.lock:
                self.tail = (self.tail + [line])[-20:]
                m = REPORT.match(line)
                if m:
                    self.samples.append((now, int(m.group(1)),
                                         int(m.group(2))))
            if line.startswith("memtouch pages-per-second="):
                # memtouch counts from here: 0 pages at elapsed 0.
                with self.lock:
                    self.samples.append((now, 0, 0))
                self.started.set()

    def alive(self):
        return self.p.poll() is None

    def why_dead(self):
        self.errf.flush()
        try:
            with open(self.errpath) as f:
                err = f.read().strip().splitlines()[-5:]
        except OSError:
            err = []
        with self.lock:
            out = self.tail[-5:]
        return (f"ftvm exited with status {self.p.poll()}; stderr: "
                + " | ".join(err) + "; console: " + " | ".join(out))

    def wait_ready(self, timeout):
        """Socket up and memtouch past its allocation (which zeroes it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(self.why_dead())
            if os.path.exists(self.sock) and self.started.is_set():
                return
            time.sleep(0.05)
        raise RuntimeError(f"guest not ready after {timeout:.0f} s")

    def pages(self):
        with self.lock:
            return self.samples[-1][1] if self.samples else 0

    def last_report_time(self):
        with self.lock:
            return self.samples[-1][0] if self.samples else 0.0

    def warm_up(self, cap_s):
        """Until one round over the working set, or cap_s seconds."""
        deadline = time.monotonic() + cap_s
        while self.pages() < self.ws_pages and time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(self.why_dead())
            time.sleep(0.1)
        return min(1.0, self.pages() / self.ws_pages) if self.ws_pages else 1

    def rate_between(self, t0, t1):
        """Pages/s the guest reported between host times t0 and t1."""
        with self.lock:
            s = [x for x in self.samples if t0 <= x[0] <= t1]
            if len(s) < 2:      # a short window: the reports around it
                before = [x for x in self.samples if x[0] < t0][-1:]
                after = [x for x in self.samples if x[0] > t1][:1]
                s = before + s + after
        if len(s) < 2 or s[-1][2] == s[0][2]:
            return None
        return (s[-1][1] - s[0][1]) * 1000.0 / (s[-1][2] - s[0][2])

    def save(self, path):
        rc, out, err = run_child([self.ctl, "-s", self.sock, "--json",
                                  "save", path], timeout=900)
        if rc != 0:
            raise RuntimeError(f"ftvmctl save: rc {rc}: {err.strip()}"
                               + ("" if self.alive() else
                                  "; " + self.why_dead()))
        return json.loads(out)

    def quit(self):
        if self.alive():
            run_child([self.ctl, "-s", self.sock, "quit"], timeout=30)
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            kill_group(self.p, signal.SIGKILL)
            self.p.wait(5)
        self.reader.join(5)
        self.errf.close()
        if self.p in CHILDREN:
            CHILDREN.remove(self.p)
        for path in (self.sock, self.errpath):
            try:
                os.unlink(path)
            except OSError:
                pass


def run_config(a, build, workdir, sockdir, mib, rate, tag):
    ws = max(1, min(mib // 2, a.ws_cap))
    row = {"mem_mib": mib, "rate": rate_name(rate),
           "working_set_mib": ws if rate != "idle" else 1, "saves": []}
    g = Guest(build, workdir, sockdir, mib, rate, ws, tag)
    try:
        t = time.monotonic()
        g.wait_ready(120)
        row["boot_s"] = time.monotonic() - t
        row["warm_fraction"] = g.warm_up(a.warmup)
        t0 = time.monotonic()
        for i in range(a.saves):
            path = os.path.join(workdir, f"ckpt-{tag}-{i}.ftvm")
            try:
                st = g.save(path)
                st["file_bytes"] = os.path.getsize(path)
            finally:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            row["saves"].append(st)
            print(f"  save {i + 1}/{a.saves}: {st['bytes'] / 2**20:.1f} MiB, "
                  f"{st['total_ms']:.0f} ms, pause {st['pause_ms']:.2f} ms, "
                  f"final {st['final_pages']}, passes {st['live_passes']}",
                  file=sys.stderr, flush=True)
            if a.gap and i + 1 < a.saves:
                time.sleep(a.gap)
        t1 = time.monotonic()
        # A report lands at most a second after the window: wait for it.
        end = time.monotonic() + 1.2
        while time.monotonic() < end and g.last_report_time() <= t1:
            time.sleep(0.05)
        row["guest_rate"] = g.rate_between(t0, t1)
    except (RuntimeError, ValueError, OSError) as e:
        row["error"] = str(e)
        print(f"  error: {e}", file=sys.stderr, flush=True)
    finally:
        g.quit()
    return row


# ---- the table ----

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def summarize(row, disk_mbs, memcpy_gbs):
    s = row["saves"]
    if not s:
        return None
    b = [x["bytes"] for x in s]
    fin = [x["final_pages"] for x in s]
    r = {
        "file_mib": med(b) / 2**20,
        "save_med": med([x["total_ms"] for x in s]),
        "save_max": max(x["total_ms"] for x in s),
        "pause_med": med([x["pause_ms"] for x in s]),
        "pause_max": max(x["pause_ms"] for x in s),
        "final_med": med(fin),
        "final_max": max(fin),
        "passes_med": med([x["live_passes"] for x in s]),
        "live_mib": med([x["live_pages"] for x in s]) * PAGE / 2**20,
    }
    r["disk_ms"] = med(b) / (disk_mbs * 1e6) * 1e3
    r["copy_ms"] = r["final_med"] * PAGE / (memcpy_gbs * 1e9) * 1e3
    r["save_x"] = r["save_med"] / r["disk_ms"] if r["disk_ms"] else 0
    return r


def fmt_rate(v):
    if v is None:
        return "?"
    if v >= 10000:
        return f"{v / 1000:.0f}k"
    return f"{v:.0f}"


def print_table(rows, disk_mbs, memcpy_gbs, out):
    hdr1 = (f"{'RAM':>4} {'dirty':>6} {'guest':>6} {'file':>7} "
            f"{'save ms':>13} {'disk':>6} {'save/':>5} {'pause ms':>13} "
            f"{'final pages':>13} {'copy':>6} {'live':>6}")
    hdr2 = (f"{'':>4} {'rate':>6} {'pg/s':>6} {'MiB':>7} "
            f"{'med':>6} {'max':>6} {'ms':>6} {'disk':>5} "
            f"{'med':>6} {'max':>6} {'med':>6} {'max':>6} {'ms':>6} "
            f"{'passes':>6}")
    print(hdr1, file=out)
    print(hdr2, file=out)
    for row in rows:
        lead = (f"{size_name(row['mem_mib']):>4} {row['rate']:>6} "
                f"{fmt_rate(row.get('guest_rate')):>6}")
        r = summarize(row, disk_mbs, memcpy_gbs)
        if r is None:
            print(f"{lead}  error: {row.get('error', 'no saves')}", file=out)
            continue
        print(f"{lead} {r['file_mib']:>7.1f} "
              f"{r['save_med']:>6.0f} {r['save_max']:>6.0f} "
              f"{r['disk_ms']:>6.0f} {r['save_x']:>5.1f} "
              f"{r['pause_med']:>6.2f} {r['pause_max']:>6.2f} "
              f"{r['final_med']:>6.0f} {r['final_max']:>6.0f} "
              f"{r['copy_ms']:>6.2f} {r['passes_med']:>6.0f}"
              + (f"  ({len(row['saves'])} saves: {row['error']})"
                 if row.get("error") else ""), file=out)


def machine():
    cores = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
        ram = f"{kb / 2**20:.1f} GiB RAM"
    except (OSError, AttributeError):
        ram = "RAM ?"
    return f"{cores} cores, {ram}, kernel {os.uname().release}"


def mem_available_mib():
    try:
        with open("/proc/meminfo") as f:
            return int(re.search(r"MemAvailable:\s+(\d+)",
                                 f.read()).group(1)) // 1024
    except (OSError, AttributeError):
        return None


def main():
    ap = argparse.ArgumentParser(
        description="Checkpoint-to-disk of a running memtouch guest, "
                    "beside memcpy and disk limits measured in the same run.")
    ap.add_argument("--sizes", help="guest RAM sizes (default 256M,1G,4G)")
    ap.add_argument("--rates", help="dirty rates: idle, max, pages/s "
                    "(default idle,10000,100000,max)")
    ap.add_argument("--saves", type=int, help="checkpoints per "
                    "configuration (default 5)")
    ap.add_argument("--dir", help="where checkpoint files go (default: a "
                    "temporary directory in the build directory)")
    ap.add_argument("--quick", action="store_true",
                    help="256M, idle and max, 2 saves: under a minute")
    ap.add_argument("--build", default=os.path.join(REPO, "build"),
                    help="the meson build directory (default: build/)")
    ap.add_argument("--ws-cap", type=int, default=2048, metavar="MIB",
                    help="largest working set (default 2048 MiB)")
    ap.add_argument("--warmup", type=float, metavar="S",
                    help="at most S seconds for memtouch to touch its "
                    "working set once before the first save (default 10)")
    ap.add_argument("--gap", type=float, default=0.0, metavar="S",
                    help="seconds between saves (default 0)")
    ap.add_argument("--disk-mib", type=int, metavar="MIB",
                    help="MiB written to measure the disk (default 1024)")
    ap.add_argument("--json", metavar="FILE",
                    help="also write every measurement to FILE as JSON")
    a = ap.parse_args()

    q = a.quick
    try:
        a.sizes = [parse_size(x) for x in
                   (a.sizes or ("256M" if q else "256M,1G,4G")).split(",")]
        a.rates = [parse_rate(x) for x in
                   (a.rates or ("idle,max" if q else
                                "idle,10000,100000,max")).split(",")]
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    if a.saves is None:
        a.saves = 2 if q else 5
    if a.warmup is None:
        a.warmup = 5.0 if q else 10.0
    if a.disk_mib is None:
        a.disk_mib = 512 if q else 1024
    if a.saves < 1 or a.disk_mib < 1 or a.ws_cap < 1:
        ap.error("--saves, --disk-mib and --ws-cap must be at least 1")

    if not os.path.exists("/dev/kvm") or \
            not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("bench_ckpt: needs /dev/kvm (read-write) to run guests; "
              + ("it is missing" if not os.path.exists("/dev/kvm")
                 else "no permission") + ": not run", file=sys.stderr)
        return 2
    build = os.path.abspath(a.build)
    need = [os.path.join(build, p) for p in
            ("tools/ftvm", "tools/ftvmctl", "guest/memtouch.elf",
             "bench/bench_ram")]
    missing = [p for p in need if not os.path.exists(p)]
    if missing:
        print("bench_ckpt: not built: " + ", ".join(missing)
              + f"; run: ninja -C {a.build}", file=sys.stderr)
        return 2

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    base = os.path.abspath(a.dir) if a.dir else build
    os.makedirs(base, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="bench-ckpt.", dir=base)
    sockdir = workdir if len(workdir) < 80 else \
        tempfile.mkdtemp(prefix="bench-ckpt-sock.")
    rows = []
    status = 0
    try:
        print(f"bench_ckpt: files in {workdir}", file=sys.stderr)
        print("measuring memcpy (bench_ram) ...", file=sys.stderr, flush=True)
        memcpy_gbs = measure_memcpy(os.path.join(build, "bench", "bench_ram"))
        memcpy_how = "bench_ram -m 256 -n 3, best of 3"
        print("measuring the disk ...", file=sys.stderr, flush=True)
        disk0 = measure_disk(workdir, a.disk_mib)

        load0 = os.getloadavg()[0]
        avail = mem_available_mib()
        n = 0
        for mib in a.sizes:
            for rate in a.rates:
                n += 1
                tag = f"{size_name(mib)}-{rate_name(rate)}"
                print(f"{tag}: booting ...", file=sys.stderr, flush=True)
                if avail is not None and mib + 1024 > avail:
                    rows.append({"mem_mib": mib, "rate": rate_name(rate),
                                 "saves": [], "error":
                                 f"only {avail} MiB of host memory free"})
                    status = 1
                    continue
                row = run_config(a, build, workdir, sockdir, mib, rate, tag)
                rows.append(row)
                if row.get("error"):
                    status = 1

        disk1 = measure_disk(workdir, a.disk_mib)
        disk_mbs = max(disk0[0], disk1[0])
        load1 = os.getloadavg()[0]

        out = sys.stdout
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        print(f"bench_ckpt: {now}, {machine()}, load average "
              f"{load0:.2f} at start, {load1:.2f} at end", file=out)
        print(f"memcpy {memcpy_gbs:.2f} GB/s ({memcpy_how})", file=out)
        print(f"disk {a.disk_mib} MiB write + fsync in {base}: "
              f"{disk0[0]:.0f} MB/s before, {disk1[0]:.0f} MB/s after "
              f"(page cache alone {max(disk0[1], disk1[1]):.0f} MB/s); "
              f"limits use {disk_mbs:.0f}", file=out)
        print(f"{a.saves} saves per row, back to back; working set "
              f"min(RAM/2, {a.ws_cap} MiB), idle = 1 page/s over 1 MiB; "
              f"warm-up up to {a.warmup:.0f} s", file=out)
        print("", file=out)
        print_table(rows, disk_mbs, memcpy_gbs, out)
        print("", file=out)
        print("guest pg/s: memtouch's own rate during the saves.  disk ms: "
              "median file size / disk rate (lower bound for save).\n"
              "copy ms: median final pages * 4 KiB / memcpy (lower bound "
              "for pause).  save/disk: median save / disk ms.", file=out)
        cold = [r for r in rows if r.get("warm_fraction", 1) < 1]
        for r in cold:
            print(f"note: {size_name(r['mem_mib'])} {r['rate']}: memtouch had "
                  f"touched {r['warm_fraction'] * 100:.0f}% of its working "
                  f"set at the first save (file sizes grow)", file=out)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"date": now, "machine": machine(),
                           "loadavg": [load0, load1],
                           "memcpy_gbs": memcpy_gbs,
                           "disk_mbs": [disk0[0], disk1[0]],
                           "page_cache_mbs": [disk0[1], disk1[1]],
                           "rows": rows}, f, indent=2)
    except KeyboardInterrupt:
        print("bench_ckpt: interrupted", file=sys.stderr)
        status = 130
    finally:
        reap_all()
        shutil.rmtree(workdir, ignore_errors=True)
        if sockdir != workdir:
            shutil.rmtree(sockdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
