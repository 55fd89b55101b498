#!/usr/bin/env python3
"""bench_repl: replication on loopback, beside the physical limits.

    python3 bench/bench_repl.py [--rates idle,10k,50k,100k] [--intervals 50,10]
                                [--mem 256M] [--window 8] [--reps 5]
                                [--quick] [--json FILE]

Runs the real `ftvm secondary` and `ftvm primary` on 127.0.0.1 and measures:

  per checkpoint   for memtouch at each dirty rate and checkpoint interval, and
                   for counter (100 ticks/s): checkpoints per second sustained,
                   dirty pages, package size and guest pause per checkpoint,
                   acknowledgement latency, the secondary's apply time, and
                   (counter) the output-commit delay of console lines
  failover         --reps times: kill -9 of the primary to the first new tick
                   line read from the secondary's stdout, beside the
                   secondary's own failover.ms

beside limits measured in the same run on the same machine:

  copy ms   the package's bytes at memcpy speed (bench_ram's memcpy row): a
            lower bound for the pause, which copies the dirty pages
  wire ms   one loopback round trip plus the package's bytes at the loopback
            TCP rate (1 GiB through a Python socket pair): what the
            acknowledgement costs in transport alone
  c+c ms    the package's bytes at zlib crc32 speed plus at memcpy speed: a
            lower bound for the secondary's apply (check the CRC, copy the
            pages into the RAM cache); ack >= wire + apply

Per-checkpoint figures are sampled from the primary's and the secondary's
`status` (the `last` values, polled every --poll ms over a --window second
window after warm-up), so each percentile is over the window only; n says
how many checkpoints were seen.  The output-commit delay is the primary's
own p50/p99 at the end of the window (its last 512 console lines).
Standard library only.

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
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import benchproc  # noqa: E402
from benchproc import (CHILDREN, forget, kill_group, measure_memcpy,
                        on_signal, parse_size, reap_all, run_child,
                        size_name, spawn)

PAGE = 4096
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = ("tools/ftvm", "tools/ftvmctl", "guest/memtouch.elf",
            "guest/counter.elf", "bench/bench_ram")
COUNTER_RATE = 100          # ticks per second of the counter guest

# ---- parsing the command line ----

def parse_rate(s):
    """'idle', '10000', '10k' -> 'idle' | int pages/s."""
    s = s.strip().lower()
    if s == "idle":
        return s
    m = re.fullmatch(r"(\d+)(k?)", s)
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"bad rate '{s}': idle or pages per second (10000, 10k)")
    return int(m.group(1)) * (1000 if m.group(2) else 1)


def parse_ms(s):
    m = re.fullmatch(r"(\d+)(ms)?", s.strip())
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"bad interval '{s}' (ms, e.g. 10)")
    return int(m.group(1))


def rate_name(r):
    if r is None:
        return "-"
    if r == "idle":
        return r
    return f"{r // 1000}k" if r % 1000 == 0 else str(r)


# ---- the physical limits ----

def measure_crc(mib=64):
    """GB/s of zlib's crc32 (the library ftvm sums packages with), best of
    3 over mib MiB."""
    buf = os.urandom(mib << 20)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        zlib.crc32(buf)
        best = max(best, len(buf) / (time.perf_counter() - t) / 1e9)
    return best


def measure_tcp(mib, rounds=2000):
    """(GB/s of mib MiB through a loopback TCP pair, median round trip in
    us of 16 bytes each way with TCP_NODELAY), both from this Python."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    total = mib << 20
    got = [0, 0.0]

    def sink():
        c, _ = ls.accept()
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        n = 0
        while n < total:
            k = c.recv_into(view)
            if k == 0:
                break
            n += k
        got[0], got[1] = n, time.monotonic()
        c.sendall(b"k")
        # then echo 16-byte messages for the round trips
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            m = c.recv(16)
            if not m:
                break
            c.sendall(m)
        c.close()

    t = threading.Thread(target=sink, daemon=True)
    t.start()
    s = socket.create_connection(ls.getsockname())
    chunk = memoryview(os.urandom(4 << 20))
    t0 = time.monotonic()
    sent = 0
    while sent < total:
        s.sendall(chunk)
        sent += len(chunk)
    s.recv(1)
    gbs = got[0] / (got[1] - t0) / 1e9
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * 16
    rtts = []
    for _ in range(rounds):
        a = time.perf_counter()
        s.sendall(msg)
        n = 0
        while n < 16:
            n += len(s.recv(16 - n))
        rtts.append(time.perf_counter() - a)
    s.close()
    t.join(5)
    ls.close()
    return gbs, statistics.median(rtts) * 1e6


# ---- the control protocol, spoken directly (one JSON object per line) ----

class Ctl:
    def __init__(self, path, timeout=10.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        self.f.readline()           # the greeting
        self.n = 0

    def call(self, cmd, **args):
        self.n += 1
        req = {"cmd": cmd, "id": self.n}
        if args:
            req["args"] = args
        self.s.sendall(json.dumps(req).encode() + b"\n")
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError(f"control socket closed during '{cmd}'")
            r = json.loads(line)
            if r.get("id") == self.n:
                break
        if not r.get("ok"):
            raise RuntimeError(f"{cmd}: {r.get('error')}")
        return r.get("result", {})

    def close(self):
        try:
            self.f.close()
            self.s.close()
        except OSError:
            pass


def get(st, path, default=None):
    for k in path.split("."):
        if not isinstance(st, dict) or k not in st:
            return default
        st = st[k]
    return st


# ---- a replicated pair ----

class Console:
    """A child's stdout read on a thread, each line with its arrival time."""

    def __init__(self, pipe):
        self.lock = threading.Lock()
        self.lines = []             # (host monotonic s, line)
        self.t = threading.Thread(target=self._read, args=(pipe,),
                                  daemon=True)
        self.t.start()

    def _read(self, pipe):
        for line in pipe:
            now = time.monotonic()
            with self.lock:
                self.lines.append((now, line.rstrip("\n")))
                if len(self.lines) > 20000:
                    del self.lines[:10000]

    def snapshot(self):
        with self.lock:
            return list(self.lines)


REPORT = re.compile(r"memtouch pages=(\d+) elapsed_ms=(\d+)")
TICK = re.compile(r"tick (\d+) crc")


class Pair:
    """`ftvm secondary` on 127.0.0.1:0 and an `ftvm primary` replicating to
    it; consoles read on threads, control sockets open.  security: each
    end's options, {"primary": [...], "secondary": [...]}; default
    --insecure (plaintext on loopback)."""

    def __init__(self, bins, workdir, tag, guest, gargs, mib, interval_ms,
                 security=None):
        sec = security or {"primary": ["--insecure"],
                           "secondary": ["--insecure"]}
        self.bins = bins
        self.tag = tag
        self.asock = os.path.join(workdir, f"{tag}-a.sock")
        self.bsock = os.path.join(workdir, f"{tag}-b.sock")
        self.aerr = os.path.join(workdir, f"{tag}-a.err")
        self.berr = os.path.join(workdir, f"{tag}-b.err")
        self.a = self.b = self.actl = self.bctl = None
        self.files = [open(self.berr, "w"), open(self.aerr, "w")]
        self.b = spawn([bins["tools/ftvm"], "secondary", "--listen",
                        "127.0.0.1:0", "--control", self.bsock] +
                       sec["secondary"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=self.files[0], text=True, bufsize=1)
        self.bout = Console(self.b.stdout)
        port = self._wait_file(self.berr, r"listening on 127\.0\.0\.1:(\d+)",
                               self.b, 10)
        self.addr = f"127.0.0.1:{port}"
        self.a = spawn([bins["tools/ftvm"], "primary",
                        bins[f"guest/{guest}.elf"]] + gargs +
                       ["--mem", f"{mib}M", "--secondary", self.addr,
                        "--checkpoint-interval", f"{interval_ms}ms",
                        "--control", self.asock] + sec["primary"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=self.files[1], text=True, bufsize=1)
        self.aout = Console(self.a.stdout)
        self._wait_file(self.aerr, r"protected by", self.a, 60)
        self.actl = self._connect(self.asock, self.a)
        self.bctl = self._connect(self.bsock, self.b)
        deadline = time.monotonic() + 30
        while get(self.actl.call("status"), "state") != "active":
            if time.monotonic() > deadline:
                raise RuntimeError("the primary did not become active")
            time.sleep(0.05)

    def why(self, p, errpath, out):
        for f in self.files:
            f.flush()
        try:
            with open(errpath) as f:
                err = f.read().strip().splitlines()[-4:]
        except OSError:
            err = []
        lines = [x[1] for x in out.snapshot()[-3:]] if out else []
        return (f"exit status {p.poll()}; stderr: " + " | ".join(err)
                + ("; console: " + " | ".join(lines) if lines else ""))

    def _wait_file(self, path, pattern, p, timeout):
        m = benchproc.wait_file(
            path, pattern, p, timeout,
            ended=lambda: "ftvm " + ("primary" if p is self.a else
                                     "secondary") + " ended: "
            + self.why(p, path, None))
        return m.group(1) if m.groups() else True

    def _connect(self, path, p):
        deadline = time.monotonic() + 10
        while True:
            try:
                return Ctl(path)
            except OSError:
                if time.monotonic() > deadline or p.poll() is not None:
                    raise
                time.sleep(0.02)

    def close(self):
        for c in (self.actl, self.bctl):
            if c:
                c.close()
        # quit the primary: replication ends with EOF, the secondary exits 0
        for p, sock in ((self.a, self.asock), (self.b, self.bsock)):
            if p and p.poll() is None:
                try:
                    c = Ctl(sock, timeout=5)
                    c.call("quit")
                    c.close()
                except (OSError, RuntimeError, ValueError):
                    pass
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        for p in (self.a, self.b):
            if p:
                kill_group(p, signal.SIGKILL)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                forget(p)
        for f in self.files:
            f.close()
        for path in (self.asock, self.bsock, self.aerr, self.berr):
            try:
                os.unlink(path)
            except OSError:
                pass


# ---- percentiles ----

def pct(xs, q):
    """Nearest-rank percentile; nan for no data."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


# ---- one configuration: sample a window ----

def guest_args(guest, rate, mib):
    if guest == "counter":
        return [f"rate={COUNTER_RATE}"]
    if rate == "idle":
        return ["pages-per-second=1", "working-set-mib=1", "report-every=1"]
    return [f"pages-per-second={rate}", f"working-set-mib={max(1, mib // 2)}",
            "report-every=1"]


def memtouch_rate(lines, t0, t1):
    """Pages/s memtouch reported between host times t0 and t1."""
    s = []
    for t, line in lines:
        m = REPORT.match(line)
        if m:
            s.append((t, int(m.group(1)), int(m.group(2))))
    w = [x for x in s if t0 <= x[0] <= t1]
    if len(w) < 2:
        w = [x for x in s if x[0] < t0][-1:] + w + \
            [x for x in s if x[0] > t1][:1]
    if len(w) < 2 or w[-1][2] == w[0][2]:
        return None
    return (w[-1][1] - w[0][1]) * 1000.0 / (w[-1][2] - w[0][2])


def run_config(a, bins, workdir, guest, rate, interval, security=None,
               tag=None):
    tag = tag or f"{guest}-{rate_name(rate)}-{interval}"
    row = {"guest": guest, "rate": rate_name(rate) if guest == "memtouch"
           else f"{COUNTER_RATE}/s", "interval_ms": interval,
           "mem_mib": a.mem}
    pair = None
    try:
        pair = Pair(bins, workdir, tag, guest, guest_args(guest, rate, a.mem),
                    a.mem, interval, security)
        # warm-up: memtouch has allocated (zeroed) its working set, then
        # a.warmup seconds more
        deadline = time.monotonic() + 30
        while guest == "memtouch" and not any(
                l.startswith("memtouch pages-per-second=")
                for _, l in pair.aout.snapshot()):
            if time.monotonic() > deadline or pair.a.poll() is not None:
                raise RuntimeError("memtouch did not start: "
                                   + pair.why(pair.a, pair.aerr, pair.aout))
            time.sleep(0.05)
        time.sleep(a.warmup)

        ck, acks, applies = {}, {}, {}
        st0 = pair.actl.call("status")
        t0 = time.monotonic()
        end = t0 + a.window
        while True:
            st = pair.actl.call("status")
            sb = pair.bctl.call("status")
            i = get(st, "checkpoint.last_id")
            ck.setdefault(i, (get(st, "pause_ms.last"),
                              get(st, "dirty_pages.last"),
                              get(st, "package_bytes.last")))
            acks.setdefault(get(st, "checkpoint.last_acked"),
                            get(st, "ack_ms.last"))
            applies.setdefault(get(sb, "replication.last_id"),
                               get(sb, "replication.apply_ms.last"))
            if time.monotonic() >= end:
                break
            time.sleep(a.poll / 1000.0)
        t1 = time.monotonic()
        st1 = st
        if get(st1, "state") != "active":
            raise RuntimeError(f"replication {get(st1, 'state')}: "
                               f"{get(st1, 'last_error')}")
        # the values seen before the window belong to it only if new in it
        for d, key in ((ck, "checkpoint.last_id"),
                       (acks, "checkpoint.last_acked"),
                       (applies, None)):
            if key:
                d.pop(get(st0, key), None)
        vals = list(ck.values())
        taken = get(st1, "checkpoint.taken") - get(st0, "checkpoint.taken")
        row.update({
            "seconds": t1 - t0,
            "taken": taken,
            "ckpt_per_s": taken / (t1 - t0),
            "mean_package_bytes": (get(st1, "package_bytes.total")
                                   - get(st0, "package_bytes.total"))
            / max(1, taken),
            "pause_ms": [v[0] for v in vals],
            "dirty_pages": [v[1] for v in vals],
            "package_bytes": [v[2] for v in vals],
            "ack_ms": [v for v in acks.values() if v is not None],
            "apply_ms": [v for v in applies.values() if v is not None],
            # Console lines are released in batches (at each ACK), so the
            # `last` of a batch is its shortest wait: take the primary's
            # own percentiles, over its last 512 lines (5 s at 100/s).
            "commit_ms": {k: get(st1, f"output.commit_delay_ms.{k}")
                          for k in ("p50", "p99")}
            if guest == "counter" else {},
            "nacks": get(st1, "nacks", 0) - get(st0, "nacks", 0),
            "full": get(st1, "checkpoint.full", 0)
            - get(st0, "checkpoint.full", 0),
            "status_end": {k: get(st1, k) for k in
                           ("pause_ms", "ack_ms", "dirty_pages",
                            "package_bytes", "output.commit_delay_ms",
                            "checkpoint.rate_per_s")},
        })
        if guest == "memtouch":
            time.sleep(1.1)     # the report after the window
            row["guest_rate"] = memtouch_rate(pair.aout.snapshot(), t0, t1)
        print(f"  {row['ckpt_per_s']:.1f} ckpt/s, {len(vals)} sampled, "
              f"pause p50 {pct(row['pause_ms'], 50):.2f} ms, package p50 "
              f"{pct(row['package_bytes'], 50) / 1024:.0f} KiB, ack p50 "
              f"{pct(row['ack_ms'], 50):.2f} ms",
              file=sys.stderr, flush=True)
    except (RuntimeError, ValueError, OSError) as e:
        row["error"] = str(e)
        print(f"  error: {e}", file=sys.stderr, flush=True)
    finally:
        if pair:
            pair.close()
    return row


# ---- failover ----

def run_failover(a, bins, workdir, rep):
    row = {"rep": rep}
    pair = None
    try:
        pair = Pair(bins, workdir, f"fo{rep}", "counter",
                    [f"rate={COUNTER_RATE}"], a.mem, 50)
        time.sleep(a.fo_warmup)
        t_kill = time.monotonic()
        os.kill(pair.a.pid, signal.SIGKILL)
        deadline = t_kill + 10
        first = None
        while first is None and time.monotonic() < deadline:
            for t, line in pair.bout.snapshot():
                m = TICK.match(line)
                if m:
                    first = (t, int(m.group(1)))
                    break
            else:
                time.sleep(0.001)
        if first is None:
            raise RuntimeError("no tick from the secondary within 10 s: "
                               + pair.why(pair.b, pair.berr, pair.bout))
        pair.a.wait(5)
        pair.aout.t.join(5)     # all the primary released, to its EOF
        released = [int(m.group(1)) for _, l in pair.aout.snapshot()
                    for m in [TICK.match(l)] if m]
        sb = pair.bctl.call("status")
        row.update({
            "kill_to_tick_ms": (first[0] - t_kill) * 1e3,
            "failover_ms": get(sb, "failover.ms"),
            "continued_from": get(sb, "failover.continued_from"),
            "reason": get(sb, "failover.reason"),
            "last_released": released[-1] if released else None,
            "first_tick": first[1],
        })
        print(f"  kill -> first tick {row['kill_to_tick_ms']:.1f} ms, "
              f"failover.ms {row['failover_ms']:.2f}, released up to tick "
              f"{row['last_released']}, secondary from tick {first[1]}",
              file=sys.stderr, flush=True)
    except (RuntimeError, ValueError, OSError,
            subprocess.TimeoutExpired) as e:
        row["error"] = str(e)
        print(f"  error: {e}", file=sys.stderr, flush=True)
    finally:
        if pair:
            pair.close()
    return row


# ---- the tables ----

nan = float("nan")


def f2(v):
    return "-" if v != v else (f"{v:.0f}" if v >= 100 else f"{v:.2f}")


def kib(v):
    return "-" if v != v else f"{v / 1024:.0f}"


def fmt_rate(v):
    if v is None:
        return "-"
    return f"{v / 1000:.0f}k" if v >= 10000 else f"{v:.0f}"


def print_tables(rows, fos, memcpy_gbs, crc_gbs, tcp_gbs, rtt_us, out):
    print("Per checkpoint (p50/p99 over the checkpoints sampled in the "
          "window):", file=out)
    print(f"{'guest':>8} {'dirty':>6} {'ivl':>4} {'ckpt/s':>11} "
          f"{'guest':>5} {'n':>4} {'dirty pages':>11} {'package KiB':>13} "
          f"{'pause ms':>11} {'copy':>5} {'ack ms':>11} {'wire':>5} "
          f"{'apply':>5} {'c+c':>5} {'commit ms':>11}", file=out)
    print(f"{'':>8} {'rate':>6} {'ms':>4} {'got/goal':>11} "
          f"{'pg/s':>5} {'':>4} {'p50':>5} {'p99':>5} {'p50':>6} {'p99':>6} "
          f"{'p50':>5} {'p99':>5} {'ms':>5} {'p50':>5} {'p99':>5} {'ms':>5} "
          f"{'p50':>5} {'ms':>5} {'p50':>5} {'p99':>5}", file=out)
    for r in rows:
        lead = f"{r['guest']:>8} {r['rate']:>6} {r['interval_ms']:>4}"
        if "ckpt_per_s" not in r:
            print(f"{lead}  error: {r.get('error')}", file=out)
            continue
        pb50 = pct(r["package_bytes"], 50)
        copy = pb50 / (memcpy_gbs * 1e9) * 1e3
        wire = rtt_us / 1e3 + pb50 / (tcp_gbs * 1e9) * 1e3
        cc = copy + pb50 / (crc_gbs * 1e9) * 1e3
        goal = 1000.0 / r["interval_ms"]
        print(f"{lead} {r['ckpt_per_s']:>5.1f}/{goal:<5.0f} "
              f"{fmt_rate(r.get('guest_rate')) if r['guest'] == 'memtouch' else '-':>5} "
              f"{len(r['pause_ms']):>4} "
              f"{pct(r['dirty_pages'], 50):>5.0f} {pct(r['dirty_pages'], 99):>5.0f} "
              f"{kib(pb50):>6} {kib(pct(r['package_bytes'], 99)):>6} "
              f"{f2(pct(r['pause_ms'], 50)):>5} {f2(pct(r['pause_ms'], 99)):>5} "
              f"{f2(copy):>5} "
              f"{f2(pct(r['ack_ms'], 50)):>5} {f2(pct(r['ack_ms'], 99)):>5} "
              f"{f2(wire):>5} {f2(pct(r['apply_ms'], 50)):>5} {f2(cc):>5} "
              f"{f2(r['commit_ms'].get('p50', nan)):>5} "
              f"{f2(r['commit_ms'].get('p99', nan)):>5}"
              + (f"  ({r['nacks']} NACKs)" if r.get("nacks") else "")
              + (f"  (ended: {r['error']})" if r.get("error") else ""),
              file=out)
    print("", file=out)
    print("Failover: kill -9 of the primary, counter at "
          f"{COUNTER_RATE} ticks/s (a tick every {1000 // COUNTER_RATE} ms):",
          file=out)
    print(f"{'rep':>4} {'kill->tick ms':>13} {'failover.ms':>11} "
          f"{'continued':>9} {'released':>8} {'first':>6}  reason", file=out)
    good = []
    for r in fos:
        if "kill_to_tick_ms" not in r:
            print(f"{r['rep']:>4}  error: {r.get('error')}", file=out)
            continue
        good.append(r)
        print(f"{r['rep']:>4} {r['kill_to_tick_ms']:>13.1f} "
              f"{r['failover_ms']:>11.2f} {r['continued_from']:>9} "
              f"{r['last_released']!s:>8} {r['first_tick']:>6}  "
              f"{r['reason']}", file=out)
    if good:
        k = [r["kill_to_tick_ms"] for r in good]
        f = [r["failover_ms"] for r in good]
        print(f"{'med':>4} {statistics.median(k):>13.1f} "
              f"{statistics.median(f):>11.2f}", file=out)
        print(f"{'max':>4} {max(k):>13.1f} {max(f):>11.2f}", file=out)
        bad = [r for r in good if r["last_released"] is not None and
               r["first_tick"] != r["last_released"] + 1]
        print("released/first: the last tick the primary's stdout showed, the "
              "secondary's first; " +
              ("each first = released + 1 (nothing lost, nothing repeated)"
               if not bad else f"{len(bad)} repetitions with a gap or "
               "a repeat"), file=out)


def machine():
    cores = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
        ram = f"{kb / 2**20:.1f} GiB RAM"
    except (OSError, AttributeError):
        ram = "RAM ?"
    return f"{cores} cores, {ram}, kernel {os.uname().release}"


def other_ftvm():
    """Other ftvm processes running now (not ours): a note on the load."""
    ours = {p.pid for p in CHILDREN} | {os.getpid()}
    n = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in ours:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"ftvm" and \
                len(argv) > 1 and argv[1] in (b"run", b"restore", b"primary",
                                              b"secondary"):
            n += 1
    return n


def main():
    ap = argparse.ArgumentParser(
        description="Replication on loopback with the real ftvm primary and "
                    "secondary, beside memcpy and loopback TCP measured in "
                    "the same run.")
    ap.add_argument("--rates", help="memtouch dirty rates: idle or pages/s "
                    "(default idle,10k,50k,100k)")
    ap.add_argument("--intervals", help="checkpoint intervals in ms for "
                    "memtouch (default 50,10)")
    ap.add_argument("--counter-intervals", help="checkpoint intervals in ms "
                    "for the counter guest (default 50,10; '' for none)")
    ap.add_argument("--mem", default="256M", help="guest RAM (default 256M); "
                    "memtouch's working set is half of it")
    ap.add_argument("--window", type=float, help="seconds sampled per "
                    "configuration (default 8)")
    ap.add_argument("--warmup", type=float, help="seconds after memtouch "
                    "started before the window (default 2)")
    ap.add_argument("--poll", type=float, default=20.0, metavar="MS",
                    help="status polling period (default 20 ms)")
    ap.add_argument("--reps", type=int, help="failovers (default 5)")
    ap.add_argument("--tcp-mib", type=int, default=1024, metavar="MIB",
                    help="MiB sent to measure loopback TCP (default 1024)")
    ap.add_argument("--quick", action="store_true",
                    help="counter at 10 ms, memtouch 100k at 50 ms, 3 s "
                    "windows, 2 failovers: under a minute")
    ap.add_argument("--build", default=os.path.join(REPO, "build"),
                    help="the meson build directory (default: build/)")
    ap.add_argument("--json", metavar="FILE",
                    help="also write every measurement to FILE as JSON")
    a = ap.parse_args()

    q = a.quick
    try:
        a.rates = [parse_rate(x) for x in
                   (a.rates or ("100k" if q else "idle,10k,50k,100k"))
                   .split(",")]
        a.intervals = [parse_ms(x) for x in
                       (a.intervals or ("50" if q else "50,10")).split(",")]
        ci = a.counter_intervals
        if ci is None:
            ci = "10" if q else "50,10"
        a.counter_intervals = [parse_ms(x) for x in ci.split(",") if x]
        a.mem = parse_size(a.mem)
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    if a.window is None:
        a.window = 3.0 if q else 8.0
    if a.warmup is None:
        a.warmup = 1.0 if q else 2.0
    if a.reps is None:
        a.reps = 2 if q else 5
    a.fo_warmup = 1.0
    if a.window <= 0 or a.reps < 0 or a.tcp_mib < 1 or a.poll <= 0:
        ap.error("--window, --poll and --tcp-mib must be positive")

    if not os.path.exists("/dev/kvm") or \
            not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("bench_repl: needs /dev/kvm (read-write) to run guests; "
              + ("it is missing" if not os.path.exists("/dev/kvm")
                 else "no permission") + ": not run", file=sys.stderr)
        return 2
    build = os.path.abspath(a.build)
    if benchproc.missing_programs("bench_repl", build, PROGRAMS):
        return 2

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    workdir = tempfile.mkdtemp(prefix="bench-repl.")
    status = 0
    t_start = time.monotonic()
    try:
        # A copy of the programs, so a rebuild during the run changes nothing.
        bins = benchproc.copy_programs(workdir, build, PROGRAMS)
        print(f"bench_repl: files in {workdir}", file=sys.stderr)
        print("measuring memcpy (bench_ram) ...", file=sys.stderr, flush=True)
        mem0 = (measure_memcpy(bins["bench/bench_ram"]), measure_crc())
        print("measuring loopback TCP ...", file=sys.stderr, flush=True)
        tcp0 = measure_tcp(a.tcp_mib)
        load0 = os.getloadavg()[0]
        others0 = other_ftvm()

        configs = [("counter", None, i) for i in a.counter_intervals] + \
            [("memtouch", r, i) for i in a.intervals for r in a.rates]
        rows = []
        for guest, rate, interval in configs:
            print(f"{guest} {rate_name(rate) if rate else ''} every "
                  f"{interval} ms ...", file=sys.stderr, flush=True)
            row = run_config(a, bins, workdir, guest, rate, interval)
            rows.append(row)
            if row.get("error"):
                status = 1
        fos = []
        for rep in range(1, a.reps + 1):
            print(f"failover {rep}/{a.reps} ...", file=sys.stderr, flush=True)
            r = run_failover(a, bins, workdir, rep)
            fos.append(r)
            if r.get("error"):
                status = 1

        tcp1 = measure_tcp(a.tcp_mib)
        print("measuring memcpy and crc32 again ...", file=sys.stderr,
              flush=True)
        mem1 = (measure_memcpy(bins["bench/bench_ram"]), measure_crc())
        memcpy_gbs = max(mem0[0], mem1[0])
        crc_gbs = max(mem0[1], mem1[1])
        tcp_gbs = max(tcp0[0], tcp1[0])
        rtt_us = min(tcp0[1], tcp1[1])
        load1 = os.getloadavg()[0]
        others1 = other_ftvm()
        took = time.monotonic() - t_start

        out = sys.stdout
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        print(f"bench_repl: {now}, {machine()}, load average {load0:.2f} at "
              f"start, {load1:.2f} at end; other ftvm processes: {others0} "
              f"at start, {others1} at end; {took:.0f} s", file=out)
        print(f"memcpy {mem0[0]:.2f} GB/s before, {mem1[0]:.2f} after "
              f"(bench_ram -m 256 -n 3, best of 3); zlib crc32 "
              f"{mem0[1]:.2f}/{mem1[1]:.2f} GB/s (64 MiB, best of 3); limits "
              f"use {memcpy_gbs:.2f} and {crc_gbs:.2f}", file=out)
        print(f"loopback TCP {tcp0[0]:.2f} GB/s before, {tcp1[0]:.2f} after "
              f"({a.tcp_mib} MiB, Python socket pair); round trip "
              f"{tcp0[1]:.0f}/{tcp1[1]:.0f} us (16 B, TCP_NODELAY, median of "
              f"2000, from Python); limits use {tcp_gbs:.2f} GB/s, "
              f"{rtt_us:.0f} us", file=out)
        print(f"guest RAM {size_name(a.mem)}; memtouch working set "
              f"{size_name(max(1, a.mem // 2))}, idle = 1 page/s over 1 MiB; "
              f"counter {COUNTER_RATE} ticks/s; window {a.window:.0f} s after "
              f"{a.warmup:.0f} s warm-up, status polled every {a.poll:.0f} ms",
              file=out)
        print("", file=out)
        print_tables(rows, fos, memcpy_gbs, crc_gbs, tcp_gbs, rtt_us, out)
        print("", file=out)
        print("ckpt/s: taken in the window / 1000/interval.  guest pg/s: "
              "memtouch's own rate.  n: checkpoints sampled.\n"
              "copy ms: package p50 at memcpy speed (bound for the pause).  "
              "wire ms: round trip + package p50 at the\n"
              "loopback TCP rate (transport only).  apply: the "
              "secondary's apply_ms (package received to ACK).\n"
              "c+c ms: package p50 at crc32 + memcpy speed (bound for "
              "apply); the ack is at least wire + apply.\n"
              "commit ms: a console line's hold, guest write to stdout: the "
              "primary's p50/p99 over its last 512 lines\n"
              "(counter only; expect about interval/2 + ack).", file=out)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"date": now, "machine": machine(),
                           "loadavg": [load0, load1],
                           "other_ftvm": [others0, others1],
                           "memcpy_gbs": [mem0[0], mem1[0]],
                           "crc_gbs": [mem0[1], mem1[1]],
                           "tcp_gbs": [tcp0[0], tcp1[0]],
                           "rtt_us": [tcp0[1], tcp1[1]],
                           "rows": rows, "failovers": fos}, f, indent=2)
    except KeyboardInterrupt:
        print("bench_repl: interrupted", file=sys.stderr)
        status = 130
    finally:
        reap_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
