#!/usr/bin/env python3
"""Checkpoint-to-disk and restore as a user drives them: real processes.

    ckpt_test.py CASE FTVM FTVMCTL GUEST_DIR

Each CASE starts `ftvm run` / `ftvm restore` as child processes (each in a
process group of its own, always killed at exit), talks to them with
`ftvmctl` over a control socket in a fresh temporary directory, and checks
what the guests print.  Exit 0 pass, 1 fail, 77 skipped (no usable
/dev/kvm; the TAP and full-disk cases also need root).

  save-restore  counter: save FILE, kill -9, restore (twice, chained); the
                restored ticks continue the run exactly as an uninterrupted
                reference run prints them; save's figures; inspect
  periodic      --checkpoint-every/--keep: files, numbering, status
                counters, checkpoint on demand, pause/resume/quit, restore
                of the newest
  bad-files     damaged, truncated and foreign files are refused with
                status 120, a message naming the file, before the VM runs
  clock         the guest's monotonic clock continues across a restore
  udpkv-tap     udpkv behind a TAP device in a network namespace made here:
                ping, PUT/GET, save, kill -9, restore, every key is back
  disk-full     periodic checkpoints onto a tiny tmpfs (private mount
                namespace): failures are counted, the guest runs on, no
                temporaries, the earlier checkpoint restores
  quit-status   `ftvmctl quit` ends the process with status 0
  vcpus         a VM with --vcpus 2 (vCPU 1 in its reset state) is saved,
                killed and restored, and goes on
  files         symlinks planted in a writable directory (at the final
                names and at the temporary names earlier versions used)
                are never written through; a relative `save FILE` is made
                absolute by ftvmctl, and refused when a raw client sends
                it; a control socket's missing directory is made 0700
  trailer-place a real checkpoint with a section after its trailer, or
                with its trailer mid-file and a second one at the end, is
                refused by restore (before the guest runs) and by inspect,
                naming the byte
  disk          disklog on --disk: save while it writes, kill -9, restore
                --disk into a new image (created), an existing one of
                another size (resized) and one the restored guest left:
                each time the guest goes on after the saved record, its
                image a valid log holding every record it printed; inspect
                counts the disk's chunks and decodes ftvm-disk; restore
                without --disk, with ,readonly, or --disk for a VM without
                one is refused (120); a damaged file is refused before the
                image is touched (its bytes unchanged, a missing one not
                created); the newest of --checkpoint-dir's files restores
  disk-chain    disklog on a 16 MiB disk already holding 5000 records,
                --checkpoint-dir --keep 3, ftvmctl checkpoint: the first
                file holds the whole image, the next two only the chunks
                written since (delta on the one before, ids matching),
                the fourth whole again (the chain has 3 files); save FILE
                is whole and makes the next file whole; a middle delta
                and the newest restore onto junk-filled images, the guest
                going on, its log valid; a missing base, or another
                chain's file under its name, or bases that go round, is
                refused naming it before the image is touched (a missing
                one not created); pruning
                never leaves a file whose base is gone; after the newest
                file is removed by hand, the next is whole; a whole file
                made version 1 (as before chains) restores; a file whose
                rename fails (after its chunks were taken) makes the next
                whole, which restores
  disk-chain-full
                the same on a 24 MiB tmpfs (private mount namespace):
                a checkpoint that runs out of room fails, and the next
                file is whole, the one after a delta on it, which
                restores

Traffic goes only to 10.77.0.2 inside the namespace udpkv-tap creates.
"""
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ftvmtest as ft  # noqa: E402
from ftvmtest import (check, fail, kill_all, log,  # noqa: E402
                      needs_kvm, needs_root, skip, wait_until)

TICK_RE = re.compile(r"^tick (\d+) crc ([0-9a-f]{8})$")
CKPT_RE = re.compile(r"^ckpt-(\d{8})\.ftvm$")
EXIT_SETUP = 120

ftvm = ftvmctl = guests = None


# ---- child processes ----

class Proc(ft.Proc):
    """A child (ftvmtest.Proc) that may run the counter guest."""

    def ticks(self):
        """[(n, line)] of every complete tick line, in order."""
        r = []
        for line in self.lines():
            m = TICK_RE.match(line)
            if m:
                r.append((int(m.group(1)), line))
        return r

    def last_tick(self):
        t = self.ticks()
        return t[-1][0] if t else 0

    def wait_tick(self, n, timeout=20):
        def ok():
            if self.last_tick() >= n:
                return True
            if self.p.poll() is not None:
                fail("%s exited (%s) before tick %d\n%s" %
                     (self.name, self.p.returncode, n, self.dump()))
            return False
        wait_until(ok, timeout, "%s to print tick %d" % (self.name, n))


def ctl(sock, *args, as_json=False, ok=True):
    """Runs ftvmctl; (rc, stdout, stderr), or the parsed JSON with as_json."""
    argv = [ftvmctl, "-s", sock] + (["--json"] if as_json else []) + \
        list(args)
    r = ft.run(argv, capture_output=True, text=True, timeout=30)
    if ok and r.returncode != 0:
        fail("%s exited %d: %s%s" % (" ".join(argv), r.returncode,
                                     r.stdout, r.stderr))
    if as_json and r.returncode == 0:
        return json.loads(r.stdout)
    return r.returncode, r.stdout, r.stderr


def status(sock):
    return ctl(sock, "status", as_json=True)


def wait_control(sock, proc, timeout=20):
    """Waits until the process answers status on its control socket."""
    def ok():
        if not proc.alive():
            fail("%s exited (%s) before its control socket answered\n%s" %
                 (proc.name, proc.p.returncode, proc.dump()))
        if not os.path.exists(sock):
            return None
        r = ft.run([ftvmctl, "-s", sock, "--json", "status"],
                           capture_output=True, text=True, timeout=30)
        return json.loads(r.stdout) if r.returncode == 0 else None
    return wait_until(ok, timeout, "%s's control socket" % proc.name)


def save(sock, path):
    """ftvmctl save PATH as a person would: the table, parsed."""
    rc, out, err = ctl(sock, "save", path)
    fields = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        fields[k] = v.strip()
    return fields


def counter_argv(args, mem="64M", extra=()):
    return [ftvm, "run", "--mem", mem] + list(extra) + \
        [os.path.join(guests, "counter.elf")] + list(args)


def inspect_json(path):
    r = ft.run([ftvm, "inspect", "--json", path],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "ftvm inspect --json %s exited %d: %s" %
          (path, r.returncode, r.stderr))
    return json.loads(r.stdout)


def check_inspect(path):
    """ftvm inspect exits 0 and reports the checksum ok."""
    r = ft.run([ftvm, "inspect", path], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 0, "ftvm inspect %s exited %d: %s" %
          (path, r.returncode, r.stderr))
    check(re.search(r"^checkpoint \d+: checksum ok over \d+ bytes$",
                    r.stdout, re.M),
          "ftvm inspect %s does not report 'checksum ok':\n%s" %
          (path, r.stdout[:2000]))
    d = inspect_json(path)
    check(d["complete"] and d["error"] is None,
          "inspect --json %s: complete=%s error=%s" %
          (path, d["complete"], d["error"]))
    check(len(d["checkpoints"]) == 1 and
          d["checkpoints"][0]["checksum"] == "ok",
          "inspect --json %s: checkpoints %r" % (path, d["checkpoints"]))
    return d


def console_lines(path):
    """How many lines the guest had printed when the checkpoint was taken:
    the console hypercalls counted in its ftvm-dev state (one per line)."""
    dev = [x for x in inspect_json(path)["devices"]
           if x["name"] == "ftvm-dev"]
    check(len(dev) == 1, "no ftvm-dev device in %s" % path)
    return dev[0]["fields"]["console_calls"]


def check_continuation(restored, reference, lo=None, hi=None,
                       want_done=False, exact=None):
    """restored's ticks start at N (lo <= N <= hi, N == exact), go N, N+1,
    ... without a gap, and each equals the reference's line for its number.
    Returns (first, last)."""
    ticks = restored.ticks()
    check(ticks, "%s printed no ticks\n%s" % (restored.name,
                                              restored.dump()))
    first = ticks[0][0]
    if exact is not None:
        check(first == exact, "%s's first tick is %d, but the checkpoint "
              "holds a guest that had printed ticks 1..%d (console_calls)"
              % (restored.name, first, exact - 1))
    if lo is not None:
        check(first >= lo, "%s's first tick is %d, but tick %d was printed "
              "before the checkpoint was requested\n%s" %
              (restored.name, first, lo - 1, restored.dump()))
    if hi is not None:
        check(first <= hi, "%s's first tick is %d, but the checkpoint was "
              "taken before tick %d\n%s" % (restored.name, first, hi,
                                            restored.dump()))
    for i, (n, line) in enumerate(ticks):
        check(n == first + i, "%s: tick %d follows tick %d\n%s" %
              (restored.name, n, first + i - 1, restored.dump()))
    # Nothing but ticks (and the final line) after a restore: no header.
    lines = restored.lines()
    extra = [l for l in lines if not TICK_RE.match(l)]
    check(extra == (["counter done ticks=%d" % ticks[-1][0]]
                    if want_done else []),
          "%s printed unexpected lines %r" % (restored.name, extra[:5]))
    last = ticks[-1][0]
    if reference.last_tick() < last:
        reference.wait_tick(last, timeout=30)
    ref = dict(reference.ticks())
    for n, line in ticks:
        check(ref.get(n) == line, "%s printed %r, the uninterrupted run "
              "%r" % (restored.name, line, ref.get(n)))
    return first, last


def only_ckpt_files(d):
    names = sorted(os.listdir(d))
    bad = [n for n in names if not CKPT_RE.match(n)]
    check(not bad, "%s holds files other than checkpoints: %r" % (d, bad))
    return names


# ---- cases ----

def case_save_restore():
    needs_kvm()
    # Long enough that the first restored run is still ticking when it is
    # saved again however slow the machine (scaled), short enough that
    # the second runs to the end soon.
    count = 70 + int(130 * ft.TIME_SCALE)
    args = ["rate=50", "count=%d" % count]
    sock = os.path.join(ft.tmp, "run.sock")
    ref = Proc("reference", counter_argv(args))
    run = Proc("run", counter_argv(args, extra=["--control", sock]))
    wait_control(sock, run)
    run.wait_tick(8)

    # 1. Save while it runs, kill -9, restore in a new process.
    f1 = os.path.join(ft.tmp, "one.ftvm")
    before = run.last_tick()
    fields = save(sock, f1)
    after = run.last_tick()
    log("save: ticks %d..%d around it: %r" % (before, after, fields))
    run.kill9()
    for k in ("path", "bytes", "total_ms", "pause_ms", "live_passes",
              "live_pages", "final_pages"):
        check(k in fields, "ftvmctl save printed no '%s': %r" % (k, fields))
    check(fields["path"] == f1, "save's path %r, expected %r" %
          (fields["path"], f1))
    st = os.stat(f1)
    check(int(fields["bytes"]) == st.st_size, "save's bytes %s, file has %d"
          % (fields["bytes"], st.st_size))
    check(st.st_mode & 0o777 == 0o600, "checkpoint mode %o, expected 600" %
          (st.st_mode & 0o777))
    pause_ms, total_ms = float(fields["pause_ms"]), float(fields["total_ms"])
    check(0 < pause_ms <= total_ms, "pause_ms %s, total_ms %s" %
          (pause_ms, total_ms))
    left = [n for n in os.listdir(os.path.dirname(f1)) if n.endswith(".tmp")]
    check(not left, "save left temporaries: %r" % left)
    check_inspect(f1)

    sock2 = os.path.join(ft.tmp, "restore1.sock")
    r1 = Proc("restore1", [ftvm, "restore", "--control", sock2, f1])
    wait_control(sock2, r1)
    r1.wait_tick(after + 8)
    # The counter prints a header, then one line per tick.
    first, _ = check_continuation(r1, ref, before + 1, after + 1,
                                  exact=console_lines(f1))
    log("restore 1 continues at tick %d" % first)

    # 2. A restored VM is checkpointed again: save, kill -9, restore.
    f2 = os.path.join(ft.tmp, "two.ftvm")
    before2 = r1.last_tick()
    save(sock2, f2)
    after2 = r1.last_tick()
    r1.kill9()
    check_continuation(r1, ref, before + 1, after + 1)
    check(after2 < count, "restore 1 reached the end before it was killed")
    r2 = Proc("restore2", [ftvm, "restore", f2])
    rc = r2.wait(30)
    check(rc == 0, "restore 2 exited %d, expected the guest's 0\n%s" %
          (rc, r2.dump()))
    first2, last2 = check_continuation(r2, ref, before2 + 1, after2 + 1,
                                       want_done=True,
                                       exact=console_lines(f2))
    check(last2 == count, "restore 2 ended at tick %d, not %d" %
          (last2, count))
    log("restore 2 continues at tick %d and ends at %d" % (first2, count))
    check(ref.wait(30) == 0, "the reference run failed\n" + ref.dump())


def case_periodic():
    needs_kvm()
    args = ["rate=50"]
    sock = os.path.join(ft.tmp, "run.sock")
    ckdir = os.path.join(ft.tmp, "ck")
    ref = Proc("reference", counter_argv(args))
    run = Proc("run", counter_argv(args, extra=[
        "--control", sock, "--checkpoint-dir", ckdir,
        "--checkpoint-every", "300ms", "--keep", "2"]))
    wait_control(sock, run)
    t0 = run.started

    s = wait_until(lambda: (lambda s: s if s["checkpoints"]["written"] >= 3
                            and time.monotonic() - t0 >= 2 else None)(
                                status(sock)),
                   20, "3 periodic checkpoints and 2 s")
    ck = s["checkpoints"]
    log("after %.1f s: %r" % (time.monotonic() - t0, ck))
    check(s["state"] == "running", "state %r" % s["state"])
    check(ck["failed"] == 0, "failed checkpoints: %r" % ck)
    check(ck["dir"] == ckdir and ck["keep"] == 2 and
          abs(ck["every_s"] - 0.3) < 1e-6, "periodic configuration %r" % ck)
    check(ck["last"]["path"].startswith(ckdir + "/ckpt-"),
          "last checkpoint %r" % ck["last"])
    check(s["pause"]["count"] >= ck["written"],
          "pause.count %d below %d checkpoints" % (s["pause"]["count"],
                                                  ck["written"]))
    st = os.stat(ckdir)
    check(st.st_mode & 0o777 == 0o700, "checkpoint dir mode %o" %
          (st.st_mode & 0o777))

    # On demand; a periodic one in progress makes it busy: try again.
    def on_demand():
        rc, out, err = ctl(sock, "checkpoint", ok=False)
        if rc == 0:
            return out
        check("already being written" in err, "checkpoint failed: " + err)
        return None
    out = wait_until(on_demand, 10, "an on-demand checkpoint")
    path = re.search(r"^path\s+(\S+)$", out, re.M).group(1)
    check(CKPT_RE.match(os.path.basename(path)) and
          os.path.dirname(path) == ckdir, "on-demand checkpoint at %s" % path)
    check(os.path.exists(path), "%s is not there" % path)

    # Pause: the ticks stop, periodic checkpoints go on and leave it paused.
    w0 = status(sock)
    ctl(sock, "pause")
    s = status(sock)
    check(s["state"] == "paused", "state after pause: %r" % s["state"])
    check(s["pause"]["count"] > w0["pause"]["count"],
          "pause.count did not grow: %d -> %d" % (w0["pause"]["count"],
                                                  s["pause"]["count"]))
    rc, _, err = ctl(sock, "pause", ok=False)
    check(rc == 1 and "paused" in err, "a second pause: %d %s" % (rc, err))
    n = run.last_tick()
    t = time.monotonic()
    time.sleep(0.7)
    check(run.last_tick() == n, "ticks %d..%d while paused" %
          (n, run.last_tick()))
    s = status(sock)
    check(s["state"] == "paused", "state %r after periodic checkpoints "
          "during a pause" % s["state"])
    check(s["checkpoints"]["written"] > w0["checkpoints"]["written"] + 1,
          "no periodic checkpoint during the pause: %r" % s["checkpoints"])
    ctl(sock, "resume")
    s = status(sock)
    check(s["state"] == "running", "state after resume: %r" % s["state"])
    run.wait_tick(n + 5, timeout=5)
    log("paused %.1f s at tick %d; ticks again after resume" %
        (time.monotonic() - t, n))
    rc, _, err = ctl(sock, "resume", ok=False)
    check(rc == 1, "resume of a running VM succeeded")

    last = status(sock)["checkpoints"]
    check(last["failed"] == 0, "failures: %r" % last)
    ctl(sock, "quit")
    rc = run.wait(15)
    log("quit: exit status %d" % rc)
    check(not os.path.exists(sock), "the control socket outlived quit")

    names = only_ckpt_files(ckdir)
    check(len(names) == 2, "%d checkpoints kept, expected 2: %r" %
          (len(names), names))
    seq = [int(CKPT_RE.match(n).group(1)) for n in names]
    check(seq[0] < seq[1], "numbering %r" % seq)
    newest = os.path.join(ckdir, names[-1])
    for name in names:
        st = os.stat(os.path.join(ckdir, name))
        check(st.st_mode & 0o777 == 0o600, "%s mode %o" % (name,
                                                           st.st_mode))
    d = check_inspect(newest)
    check(d["checkpoints"][0]["checkpoint_id"] == seq[1],
          "checkpoint id %r in %s" % (d["checkpoints"][0], names[-1]))

    end = run.last_tick()
    r = Proc("restore", [ftvm, "restore", newest])
    r.wait_tick(end + 10)
    r.term()
    first, _ = check_continuation(r, ref, None, end + 1,
                                  exact=console_lines(newest))
    log("the newest, %s, continues at tick %d (run stopped at %d)" %
        (names[-1], first, end))
    ref.term()


def ram_page_offsets(path, d):
    """File offsets of the data of every raw page record in the file."""
    data = open(path, "rb").read()
    offs = []
    for rec in d["records"]:
        if rec.get("idstr") != "ram":
            continue
        o = rec["offset"]
        if rec["type"] == "SECTION_START":
            o += 1 + 4 + 1 + len("ram") + 4 + 4
        else:
            o += 1 + 4
        while True:
            (w,) = struct.unpack_from(">Q", data, o)
            o += 8
            flags = w & 0xfff
            if flags & 0x10:                    # EOS
                break
            if flags & 0x04:                    # MEM_SIZE: the block list
                total = w & ~0xfff
                while total > 0:
                    o += 1 + data[o]
                    (blen,) = struct.unpack_from(">Q", data, o)
                    o += 8
                    total -= blen
                continue
            if not flags & 0x20:                # no CONTINUE: block name
                o += 1 + data[o]
            if flags & 0x02:                    # ZERO
                o += 1
            elif flags & 0x08:                  # PAGE
                offs.append(o)
                o += 4096
            else:
                fail("unexpected RAM flags %#x at %d" % (flags, o - 8))
    return offs


def saved_checkpoint():
    """The counter saved, then killed: (its Proc, the file, inspect's JSON
    of it, its bytes, its records by idstr or type)."""
    needs_kvm()
    sock = os.path.join(ft.tmp, "run.sock")
    run = Proc("run", counter_argv(["rate=50"], extra=["--control", sock]))
    wait_control(sock, run)
    run.wait_tick(3)
    good = os.path.join(ft.tmp, "good.ftvm")
    save(sock, good)
    run.kill9()
    d = inspect_json(good)
    data = open(good, "rb").read()
    rec = {}
    for r in d["records"]:
        rec.setdefault(r.get("idstr") or r["type"], []).append(r)
    return run, good, d, data, rec


def restores(path, run):
    """path restores and runs on past where run stopped."""
    r = Proc("restore", [ftvm, "restore", "--mem", "64M", path])
    r.wait_tick(run.last_tick() + 3)
    r.term()


def case_bad_files():
    run, good, d, data, rec = saved_checkpoint()
    ram = rec["ram"]
    ram_mid = ram[len(ram) // 2]
    trailer = rec["ftvm-ckpt"][0]["offset"]
    eof = rec["EOF"][0]["offset"]
    pages = ram_page_offsets(good, d)
    check(len(pages) > 10, "only %d raw pages in the checkpoint" % len(pages))

    cases = []      # (name, contents or None, extra args, what to find)

    def add(name, content, want, args=()):
        cases.append((name, content, list(args), want))

    add("cut-header-only", data[:8], ["stream ends early"])
    for name, cut in [("mid-ram", ram_mid["offset"] + ram_mid["size"] // 2),
                      ("before-cpu", rec["cpu"][0]["offset"]),
                      ("before-trailer", trailer),
                      ("before-eof", eof),
                      ("last-byte", len(data) - 1)]:
        add("cut-" + name, data[:cut], ["not a complete checkpoint",
                                        "truncated"])
    # Cut out of the middle, the end kept: the loader itself must notice.
    add("splice-mid-ram", data[:ram_mid["offset"] + ram_mid["size"] // 2] +
        data[rec["cpu"][0]["offset"]:], ["byte "])
    add("splice-no-trailer", data[:trailer] + data[eof:],
        ["not the checkpoint's 'ftvm-ckpt' trailer"])
    flip = bytearray(data)
    at = pages[len(pages) // 2] + 2048
    flip[at] ^= 0x10
    add("flip-page", bytes(flip), ["checksum mismatch", "corrupt"])
    add("magic", b"XEVM" + data[4:], ["magic"])
    add("empty", b"", ["too short"])
    add("version", data[:4] + b"\0\0\0\x09" + data[8:], ["version"])
    add("qemu", None, ["not an ftvm checkpoint"])
    add("mem", good, ["64M", "--mem 32M differs"], ["--mem", "32M"])
    add("missing", os.path.join(ft.tmp, "no-such.ftvm"),
        ["No such file or directory"])
    add("directory", ft.tmp, ["not a regular file"])

    qemu = os.path.join(HERE, "..", "qemu", "plain.qemu")
    failures = []
    for name, content, extra, want in cases:
        if name == "qemu":
            path = os.path.normpath(qemu)
        elif isinstance(content, str):
            path = content
        else:
            path = os.path.join(ft.tmp, name + ".ftvm")
            with open(path, "wb") as f:
                f.write(content)
        csock = os.path.join(ft.tmp, "bad.sock")
        t = time.monotonic()
        try:
            r = ft.run([ftvm, "restore", "--control", csock] +
                               extra + [path], capture_output=True,
                               text=True, timeout=30)
        except subprocess.TimeoutExpired:
            failures.append("%s: ftvm restore still running after 30 s "
                            "(the VM ran?)" % name)
            continue
        ms = (time.monotonic() - t) * 1000
        msg = r.stderr.strip()
        log("%-18s %3d  %5.0f ms  %s" % (name, r.returncode, ms, msg))
        why = []
        if r.returncode != EXIT_SETUP:
            why.append("exit status %d, expected %d" % (r.returncode,
                                                        EXIT_SETUP))
        if r.stdout:
            why.append("the guest printed %r" % r.stdout[:200])
        if os.path.exists(csock):
            why.append("the control socket was created: it got to running")
            os.unlink(csock)
        if not msg.startswith("ftvm restore: " + path):
            why.append("the message does not start with 'ftvm restore: "
                       "%s'" % path)
        for w in want:
            if w not in msg:
                why.append("the message lacks %r" % w)
        if len(msg.splitlines()) != 1:
            why.append("%d lines on stderr" % len(msg.splitlines()))
        if why:
            failures.append("%s: %s\n    stderr: %s" % (name, "; ".join(why),
                                                        msg))
    check(not failures, "bad checkpoints:\n  " + "\n  ".join(failures))

    # And the good one is still good.
    restores(good, run)


def case_clock():
    needs_kvm()
    sock = os.path.join(ft.tmp, "run.sock")
    run = Proc("run", counter_argv(["rate=50"], extra=["--control", sock]))
    wait_control(sock, run)
    run.wait_tick(25)
    f = os.path.join(ft.tmp, "clock.ftvm")
    c0 = status(sock)["guest_clock_s"]
    save(sock, f)
    c1 = status(sock)["guest_clock_s"]
    run.kill9()
    dev = [x for x in inspect_json(f)["devices"] if x["name"] == "ftvm-dev"]
    check(len(dev) == 1, "no ftvm-dev device in %s" % f)
    saved = dev[0]["fields"]["clock_ns"] / 1e9
    log("guest clock %.3f s at save, %.3f s in the file, %.3f s after" %
        (c0, saved, c1))
    check(c0 <= saved <= c1, "the saved clock %.3f is not between %.3f and "
          "%.3f, the guest's clock around the save" % (saved, c0, c1))

    time.sleep(1.0)     # a wall-clock gap the guest must not see
    sock2 = os.path.join(ft.tmp, "restore.sock")
    r = Proc("restore", [ftvm, "restore", "--control", sock2, f])
    s = wait_control(sock2, r)
    since = time.monotonic() - r.started
    g = s["guest_clock_s"]
    log("restored: guest clock %.3f s, %.3f s after the restore started" %
        (g, since))
    check(g >= saved, "the guest clock went back: %.6f after restore, "
          "%.6f saved" % (g, saved))
    check(g - saved <= since + 0.05, "the guest clock jumped by %.3f s, "
          "but the restored VM has existed for %.3f s" % (g - saved, since))
    # It runs on at the wall clock's pace: read between two status calls
    # bracketed by this clock, however long each call takes.
    t = time.monotonic()
    g = status(sock2)["guest_clock_s"]
    time.sleep(0.5)
    g2 = status(sock2)["guest_clock_s"]
    dt = time.monotonic() - t
    check(0.4 <= g2 - g <= dt + 0.2, "guest clock advanced %.3f s in %.3f s"
          % (g2 - g, dt))
    # And the guest's own deadlines: no burst of ticks to catch up.
    wait_until(r.ticks, 10, "restored ticks")
    first = r.ticks()[0][0]
    base = r.last_tick()
    time.sleep(0.5)
    n = r.last_tick() - base
    check(n <= 40, "%d ticks in 0.5 s at rate=50" % n)
    r.term()
    check(first <= run.last_tick() + 1, "first tick %d after %d" %
          (first, run.last_tick()))


# ---- udpkv over TAP ----

NETNS_ADDR = "10.77.0.1/24"
GUEST_IP = "10.77.0.2"


def sh(*argv, ok=True, timeout=30):
    r = ft.run(list(argv), capture_output=True, text=True,
                       timeout=timeout)
    if ok and r.returncode != 0:
        fail("%s exited %d: %s%s" % (" ".join(argv), r.returncode, r.stdout,
                                     r.stderr))
    return r


def make_netns():
    if not shutil.which("ip"):
        skip("`ip` (iproute2) is not installed")
    if not os.path.exists("/dev/net/tun"):
        skip("/dev/net/tun is missing")
    ns = "ftvm-ckpt-%d-%04x" % (os.getpid(), random.getrandbits(16))

    def delete():
        kill_all()      # nothing may hold the namespace or the tap
        ft.run(["ip", "netns", "del", ns], capture_output=True,
                       timeout=30)
    r = ft.run(["ip", "netns", "add", ns], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        skip("cannot create a network namespace: %s" % r.stderr.strip())
    ft.cleanups.append(delete)
    ipn = ["ip", "netns", "exec", ns]
    sh(*ipn, "ip", "tuntap", "add", "dev", "ftvm-kv0", "mode", "tap")
    sh(*ipn, "ip", "addr", "add", NETNS_ADDR, "dev", "ftvm-kv0")
    sh(*ipn, "ip", "link", "set", "ftvm-kv0", "up")
    sh(*ipn, "ip", "link", "set", "lo", "up")
    return ns


def kv_client(ns, *args):
    argv = ["ip", "netns", "exec", ns, sys.executable,
            os.path.join(HERE, "udpkv_client.py"), GUEST_IP] + list(args)
    r = ft.run(argv, capture_output=True, text=True, timeout=60)
    log(r.stdout.strip())
    check(r.returncode == 0, "udpkv_client %s exited %d:\n%s%s" %
          (" ".join(args), r.returncode, r.stdout, r.stderr))


def case_udpkv_tap():
    needs_kvm()
    needs_root("a TAP device in a network namespace")
    ns = make_netns()
    ping = shutil.which("ping")
    sock = os.path.join(ft.tmp, "run.sock")
    image = os.path.join(guests, "udpkv.elf")
    run = Proc("run", [ftvm, "run", "--mem", "32M", "--net", "tap:ftvm-kv0",
                       "--control", sock, image, "ip=" + GUEST_IP], netns=ns)
    wait_control(sock, run)
    wait_until(lambda: any(l.startswith("udpkv ready ip=" + GUEST_IP)
                           for l in run.lines()) or
               (not run.alive() and fail("udpkv exited\n" + run.dump())),
               20, "udpkv ready")
    if ping:
        r = sh("ip", "netns", "exec", ns, ping, "-c", "3", "-i", "0.2",
               "-W", "2", GUEST_IP, ok=False)
        check(r.returncode == 0, "ping %s failed:\n%s%s" % (GUEST_IP,
                                                            r.stdout,
                                                            r.stderr))
        log(r.stdout.strip().splitlines()[-1])
    else:
        log("NOTE: ping (iputils-ping) is not installed; not pinged")
    kv_client(ns, "put", "50")
    kv_client(ns, "get", "50")
    s = status(sock)
    log("net: %r" % s.get("net"))
    check(s.get("net", {}).get("rx_frames", 0) >= 100,
          "net counters %r" % s.get("net"))

    f = os.path.join(ft.tmp, "kv.ftvm")
    save(sock, f)
    run.kill9()
    sock2 = os.path.join(ft.tmp, "restore.sock")
    r = Proc("restore", [ftvm, "restore", "--net", "tap:ftvm-kv0",
                         "--control", sock2, f], netns=ns)
    wait_control(sock2, r)
    kv_client(ns, "get", "50")
    check(not [l for l in r.lines() if l.startswith("udpkv ready")],
          "the restored guest booted again:\n" + r.dump())
    rc = r.term()
    check(rc == 128 + signal.SIGTERM, "restore exited %d after SIGTERM\n%s"
          % (rc, r.dump()))

    # Without --net the restore is refused: the VM had a network device.
    r = sh(ftvm, "restore", f, ok=False)
    check(r.returncode == EXIT_SETUP and "--net" in r.stderr,
          "restore without --net: %d %s" % (r.returncode, r.stderr))


# ---- a full disk ----

def in_private_mount_ns():
    """Goes on in a private mount namespace (KVM and root needed), where
    a tmpfs the case mounts dies with it: the first call runs this test
    again under unshare, the second returns."""
    needs_kvm()
    needs_root("mounting a tmpfs")
    if os.environ.get("FTVM_CKPT_MNTNS") == "1":
        return
    if not shutil.which("unshare"):
        skip("unshare (util-linux) is not installed")
    env = dict(os.environ, FTVM_CKPT_MNTNS="1")
    argv = ["unshare", "-m", "--propagation", "private",
            sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    shutil.rmtree(ft.tmp, ignore_errors=True)
    os.execvpe(argv[0], argv, env)


def case_disk_full():
    in_private_mount_ns()

    ckdir = os.path.join(ft.tmp, "ck")
    os.mkdir(ckdir, 0o700)
    # A 64M counter's checkpoint is ~1.3 MiB: the first fits, a second
    # beside it does not.
    sh("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "ftvm-ckpt-test",
       ckdir)
    ft.cleanups.append(lambda: ft.run(["umount", "-l", ckdir],
                                           capture_output=True, timeout=30))
    args = ["rate=50"]
    sock = os.path.join(ft.tmp, "run.sock")
    ref = Proc("reference", counter_argv(args))
    run = Proc("run", counter_argv(args, extra=[
        "--control", sock, "--checkpoint-dir", ckdir,
        "--checkpoint-every", "300ms", "--keep", "3"]))
    wait_control(sock, run)

    def failed():
        s = status(sock)
        return s if s["checkpoints"]["failed"] >= 2 else None
    s = wait_until(failed, 20, "2 failed checkpoints")
    ck = s["checkpoints"]
    log("checkpoints: %r" % ck)
    check(ck["written"] >= 1, "no checkpoint fitted: %r" % ck)
    check("No space left" in ck.get("last_error", ""),
          "last_error %r" % ck.get("last_error"))
    check(s["state"] == "running", "state %r" % s["state"])
    n = run.last_tick()
    run.wait_tick(n + 10, timeout=5)
    check("checkpoint failed" in run.err() and "No space left" in run.err(),
          "stderr does not report the failure:\n" + run.err())

    # On demand too: the error reaches ftvmctl.
    def on_demand():
        rc, out, err = ctl(sock, "checkpoint", ok=False)
        check(rc != 0, "a checkpoint fitted on the full disk: " + out)
        return err if "already being written" not in err else None
    err = wait_until(on_demand, 10, "an on-demand checkpoint to fail")
    check("No space left" in err, "ftvmctl checkpoint: " + err)

    ctl(sock, "quit")
    run.wait(15)
    names = only_ckpt_files(ckdir)
    check(names, "no checkpoint left in %s" % ckdir)
    log("left: %r" % names)
    newest = os.path.join(ckdir, names[-1])
    check_inspect(newest)
    end = run.last_tick()
    r = Proc("restore", [ftvm, "restore", newest])
    wait_until(r.ticks, 10, "restored ticks")
    r.wait_tick(r.ticks()[0][0] + 10)
    r.term()
    first, _ = check_continuation(r, ref, None, end + 1,
                                  exact=console_lines(newest))
    log("%s continues at tick %d" % (names[-1], first))
    ref.term()


def case_quit_status():
    needs_kvm()
    sock = os.path.join(ft.tmp, "run.sock")
    run = Proc("run", counter_argv(["rate=50"], extra=["--control", sock]))
    wait_control(sock, run)
    run.wait_tick(2)
    ctl(sock, "quit")
    rc = run.wait(15)
    check(rc == 0, "ftvm run exited %d after `ftvmctl quit`, expected 0 "
          "(122 means 'the monitor failed')" % rc)


def case_vcpus():
    """A VM with two vCPUs (the second never started by the guest, in its
    reset state) is saved, killed and restored, and goes on."""
    needs_kvm()
    args = ["rate=50"]
    sock = os.path.join(ft.tmp, "run.sock")
    ref = Proc("reference", counter_argv(args, extra=["--vcpus", "2"]))
    run = Proc("run", counter_argv(args, extra=["--vcpus", "2",
                                                "--control", sock]))
    wait_control(sock, run)
    run.wait_tick(5)
    f = os.path.join(ft.tmp, "two-cpus.ftvm")
    before = run.last_tick()
    save(sock, f)
    after = run.last_tick()
    run.kill9()
    check_inspect(f)
    r = Proc("restore", [ftvm, "restore", f])
    r.wait_tick(after + 5)
    first, _ = check_continuation(r, ref, before + 1, after + 1,
                                  exact=console_lines(f))
    log("a 2-vCPU VM restored, continuing at tick %d" % first)


def raw_request(sock, req):
    """One request on the control socket as a raw client sends it."""
    import socket as so
    c = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    c.settimeout(30)
    c.connect(sock)
    c.sendall((json.dumps(req) + "\n").encode())
    buf = b""
    while buf.count(b"\n") < 2:
        chunk = c.recv(65536)
        if not chunk:
            break
        buf += chunk
    c.close()
    lines = buf.split(b"\n")
    check(len(lines) >= 2, "no reply from %s: %r" % (sock, buf))
    return json.loads(lines[1])


def case_files():
    needs_kvm()
    victim = os.path.join(ft.tmp, "victim")
    with open(victim, "w") as f:
        f.write("precious")
    w = os.path.join(ft.tmp, "w")           # a directory anyone may write
    os.mkdir(w)
    os.chmod(w, 0o1777)
    cdir = os.path.join(w, "ckpts")
    os.mkdir(cdir)
    os.chmod(cdir, 0o1777)
    for name in ["vm.ftvm", "vm.ftvm.tmp", "other.ftvm.tmp"]:
        os.symlink(victim, os.path.join(w, name))
    for name in [".ckpt-00000001.ftvm.tmp", ".ckpt-00000002.ftvm.tmp"]:
        os.symlink(victim, os.path.join(cdir, name))
    sockdir = os.path.join(ft.tmp, "made")
    sock = os.path.join(sockdir, "run.sock")
    run = Proc("run", counter_argv(["rate=50"], extra=[
        "--control", sock, "--checkpoint-dir", cdir]))
    wait_control(sock, run)
    mode = os.stat(sockdir).st_mode & 0o777
    check(mode == 0o700, "the control socket's directory is %o, expected "
          "700" % mode)
    run.wait_tick(3)

    # A relative path, resolved where ftvmctl runs (not where ftvm runs).
    r = ft.run([ftvmctl, "-s", sock, "--json", "save", "vm.ftvm"], cwd=w,
               capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "ftvmctl save vm.ftvm in %s exited %d: %s" %
          (w, r.returncode, r.stderr))
    got = json.loads(r.stdout)["path"]
    target = os.path.join(os.path.realpath(w), "vm.ftvm")
    check(got == target, "save wrote %r, expected %r" % (got, target))
    check(not os.path.islink(target) and os.path.isfile(target),
          "%s is not a regular file after save" % target)
    ctl(sock, "save", os.path.join(w, "other.ftvm"))
    ctl(sock, "checkpoint")
    with open(victim) as f:
        v = f.read(64)
    check(v == "precious", "the symlinks' target was written: %r" % v[:20])
    check_inspect(target)
    check_inspect(os.path.join(w, "other.ftvm"))
    ckpts = sorted(n for n in os.listdir(cdir) if n.startswith("ckpt-"))
    check(ckpts == ["ckpt-00000001.ftvm"], "checkpoint dir: %r" % ckpts)
    check(not os.path.islink(os.path.join(cdir, ckpts[0])),
          "the checkpoint is a symlink")

    # A raw client's relative path is refused; nothing appears anywhere.
    before = set(os.listdir("."))
    rep = raw_request(sock, {"cmd": "save", "args": {"file": "rel.ftvm"},
                             "id": 1})
    log("relative save: %r" % rep)
    check(rep.get("ok") is False and
          "not an absolute path" in rep.get("error", ""),
          "a relative save was not refused: %r" % rep)
    check(set(os.listdir(".")) == before, "files appeared in the server's "
          "working directory: %r" % (set(os.listdir(".")) - before))
    rep = raw_request(sock, {"cmd": "save", "args": {"file": "../x.ftvm"},
                             "id": 2})
    check(rep.get("ok") is False, "save ../x.ftvm: %r" % rep)
    st = status(sock)
    check(st["checkpoints"]["written"] == 3, "status: %r" %
          st["checkpoints"])
    run.term()


def trailer_section(sid, cid, covered, crc):
    """The bytes of an ftvm-ckpt section (docs/checkpoints.md)."""
    name = b"ftvm-ckpt"
    return (struct.pack(">BIB", 0x04, sid, len(name)) + name +
            struct.pack(">IIQQI", 0, 1, cid, covered, crc) +
            struct.pack(">BI", 0x7E, sid))


def case_trailer_place():
    import zlib
    run, good, d, data, rec = saved_checkpoint()
    tr = rec["ftvm-ckpt"][0]
    eof = rec["EOF"][0]["offset"]
    check(tr["offset"] + tr["size"] == eof,
          "the trailer (%r) does not end at EOF (%d)" %
          (tr, eof))
    cpu = rec["cpu"][0]
    cpu_bytes = data[cpu["offset"]:cpu["offset"] + cpu["size"]]
    sid = struct.unpack(">I", data[tr["offset"] + 1:tr["offset"] + 5])[0]

    # 1. A valid-looking section after the trailer: state no sum covers.
    appended = data[:eof] + cpu_bytes + data[eof:]
    # 2. That, sealed again by a second trailer at the end: the first one
    #    still sits mid-file.
    head = data[:eof] + cpu_bytes
    hdr = 23
    covered = len(head) + hdr
    sec = trailer_section(sid + 1, 0, 0, 0)
    crc = zlib.crc32(head + sec[:hdr]) & 0xFFFFFFFF
    resealed = head + trailer_section(sid + 1, 0, covered, crc) + data[eof:]
    cases = [("appended", appended, eof - 48 + len(cpu_bytes)),
             ("resealed", resealed, tr["offset"])]
    failures = []
    for name, content, at in cases:
        path = os.path.join(ft.tmp, name + ".ftvm")
        with open(path, "wb") as f:
            f.write(content)
        csock = os.path.join(ft.tmp, "bad.sock")
        r = ft.run([ftvm, "restore", "--control", csock, path],
                   capture_output=True, text=True, timeout=60)
        msg = r.stderr.strip()
        log("restore %-9s %3d  %s" % (name, r.returncode, msg))
        if r.returncode != EXIT_SETUP:
            failures.append("restore %s: exit %d, expected %d" %
                            (name, r.returncode, EXIT_SETUP))
        if r.stdout or os.path.exists(csock):
            failures.append("restore %s: the guest ran" % name)
        if "byte %d" % at not in msg and \
                "byte %d" % (at + hdr) not in msg:
            failures.append("restore %s: the message names no byte %d: %s"
                            % (name, at, msg))
        if "trailer" not in msg:
            failures.append("restore %s: the message does not say what is "
                            "wrong: %s" % (name, msg))
        r = ft.run([ftvm, "inspect", "--json", path], capture_output=True,
                   text=True, timeout=60)
        err = json.loads(r.stdout)["error"] if r.stdout else None
        log("inspect %-9s %3d  %r" % (name, r.returncode, err))
        if r.returncode != 1 or not err or \
                "not the checkpoint's last record" not in err["message"]:
            failures.append("inspect %s: exit %d, error %r" %
                            (name, r.returncode, err))
    check(not failures, "misplaced trailers:\n  " + "\n  ".join(failures))
    # The good file is still good, to both.
    check_inspect(good)
    restores(good, run)


def disklog_records(proc):
    return [int(m.group(1)) for m in
            (re.match(r"^disklog: record (\d+)$", l) for l in proc.lines())
            if m]


def wait_records(proc, n, timeout=20):
    def ok():
        if proc.p.poll() is not None:
            fail("%s exited (%s) before record %d\n%s" %
                 (proc.name, proc.p.returncode, n, proc.dump()))
        r = disklog_records(proc)
        return r if r and r[-1] >= n else None
    return wait_until(ok, timeout, "%s to print record %d" % (proc.name, n))


def restore_disk(f, img, name, saved):
    """Restores f onto img; the guest goes on after saved records, and its
    image, once it is killed, is a valid log past them."""
    sys.path.insert(0, os.path.join(HERE, "..", "lib"))
    import disklog
    r = Proc(name, [ftvm, "restore", "--disk", img, f])
    got = wait_records(r, saved + 3)
    r.kill9()
    got = disklog_records(r)
    check(got[0] == saved + 1 and got == list(range(got[0], got[-1] + 1)),
          "%s: records %r after a save at %d" % (name, got[:10], saved))
    on = disklog.check(img)
    check(got[-1] <= len(on) <= got[-1] + 1, "%s: printed up to %d, the "
          "image holds 1..%d" % (name, got[-1], len(on)))
    return len(on)


def case_disk():
    needs_kvm()
    size = 4 << 20
    img = os.path.join(ft.tmp, "run.img")
    with open(img, "wb") as fh:
        fh.truncate(size)
    sock = os.path.join(ft.tmp, "run.sock")
    ckdir = os.path.join(ft.tmp, "ck")
    run = Proc("run", [ftvm, "run", "--mem", "64M", "--disk", img,
                       "--control", sock, "--checkpoint-dir", ckdir,
                       os.path.join(guests, "disklog.elf"), "rate=100"])
    wait_control(sock, run)
    wait_records(run, 20)
    f = os.path.join(ft.tmp, "d.ftvm")
    save(sock, f)
    ctl(sock, "checkpoint")
    run.kill9()
    # The guest's own count at the save: what the file's disk holds.
    d = inspect_json(f)
    disks = {x["name"]: x for x in d["disks"]}
    # Every chunk, and the one the guest writes perhaps twice (in a live
    # pass, and again at the end): records are counted, repeats too.
    check("disk0" in disks and disks["disk0"]["data_chunks"] >= 1 and
          size >> 20 <= disks["disk0"]["data_chunks"] +
          disks["disk0"]["zero_chunks"] <= (size >> 20) + 4,
          "inspect's disks: %r" % d["disks"])
    dev = [x for x in d["devices"] if x["name"] == "ftvm-disk"]
    check(dev and dev[0]["fields"]["size"] == size, "ftvm-disk: %r" % dev)
    txt = ft.run([ftvm, "inspect", f], capture_output=True, text=True,
                 timeout=60).stdout
    check(re.search(r"^  disk0 +\d+ +\d+$", txt, re.M), txt)

    def saved_at(path):
        r = Proc("probe", [ftvm, "restore", "--disk",
                           os.path.join(ft.tmp, "probe.img"), path])
        n = wait_records(r, 1)[0] - 1
        r.kill9()
        return n
    saved = saved_at(f)
    log("saved at record %d; inspect: %r" % (saved, disks["disk0"]))

    # A new image, an existing one of another size, one already used.
    new = os.path.join(ft.tmp, "new.img")
    n1 = restore_disk(f, new, "restore-new", saved)
    check(os.path.getsize(new) == size, "new image of %d bytes" %
          os.path.getsize(new))
    other = os.path.join(ft.tmp, "other.img")
    with open(other, "wb") as fh:
        fh.write(os.urandom(3 << 20))
    restore_disk(f, other, "restore-resized", saved)
    check(os.path.getsize(other) == size, "resized image of %d bytes" %
          os.path.getsize(other))
    restore_disk(f, new, "restore-again", saved)
    log("restored three times from record %d (the first image reached "
        "1..%d)" % (saved, n1))

    # Refusals.
    for argv, want in (
            ([f], "give --disk FILE"),
            (["--disk", new + ",readonly", f], "the restore writes"),
            (["--disk", new, os.path.join(ft.tmp, "plain.ftvm")],
             "without a disk")):
        if "plain.ftvm" in argv[-1] and not os.path.exists(argv[-1]):
            psock = os.path.join(ft.tmp, "plain.sock")
            plain = Proc("plain", counter_argv(["rate=50"],
                                               extra=["--control", psock]))
            wait_control(psock, plain)
            save(psock, argv[-1])
            plain.kill9()
        r = ft.run([ftvm, "restore"] + argv, capture_output=True, text=True,
                   timeout=60)
        check(r.returncode == EXIT_SETUP and want in r.stderr,
              "restore %r: %d %s" % (argv, r.returncode, r.stderr))
    data = bytearray(open(f, "rb").read())
    chunk_at = data.find(b"FTVMDLOG")
    check(chunk_at > 0, "no disklog record in the file")
    data[chunk_at + 100] ^= 0x01
    bad = os.path.join(ft.tmp, "bad.ftvm")
    open(bad, "wb").write(bytes(data))
    before = open(new, "rb").read()
    missing = os.path.join(ft.tmp, "missing.img")
    for target in (new, missing):
        r = ft.run([ftvm, "restore", "--disk", target, bad],
                   capture_output=True, text=True, timeout=60)
        check(r.returncode == EXIT_SETUP and "checksum" in r.stderr,
              "damaged: %d %s" % (r.returncode, r.stderr))
    check(open(new, "rb").read() == before, "a refused restore changed the "
          "image")
    check(not os.path.exists(missing), "a refused restore made the image")

    # The newest file of --checkpoint-dir (the on-demand checkpoint).
    files = sorted(n for n in os.listdir(ckdir) if CKPT_RE.match(n))
    check(files, "no checkpoint files in %s" % ckdir)
    newest = os.path.join(ckdir, files[-1])
    restore_disk(newest, os.path.join(ft.tmp, "dir.img"), "restore-dir",
                 saved_at(newest))


def disklog_fill(path, size, n):
    """An image of size bytes holding a valid log of records 1..n (the
    filler zero: disklog checks magic, number and CRC only)."""
    import zlib
    with open(path, "wb") as fh:
        fh.truncate(size)
        for k in range(1, n + 1):
            r = b"FTVMDLOG" + struct.pack("<Q", k) + bytes(492)
            fh.seek(k * 512)
            fh.write(r + struct.pack("<I", zlib.crc32(r)))


def disk_of(path):
    """(chunk counts, ftvm-disk fields decoded) of a checkpoint file."""
    d = inspect_json(path)
    disks = {x["name"]: x for x in d["disks"]}
    check("disk0" in disks, "%s: inspect's disks %r" % (path, d["disks"]))
    dev = [x for x in d["devices"] if x["name"] == "ftvm-disk"]
    check(len(dev) == 1 and dev[0]["version"] == 2,
          "%s: ftvm-disk %r" % (path, dev))
    f = dev[0]["fields"]
    info = {"size": f["size"], "id": f["id"], "base_id": f["base_id"],
            "base": bytes.fromhex(f["base"]).rstrip(b"\0").decode()}
    check(re.match(r"^[0-9a-f]{32}$", info["id"]) and
          info["id"] != "0" * 32, "%s: ftvm-disk id %r" % (path, info))
    return disks["disk0"], info


def reseal(d):
    """d (a checkpoint's bytes, changed before its trailer) with its
    trailer's checksum made to match again."""
    import zlib
    t = d.rfind(b"\x09ftvm-ckpt" + struct.pack(">II", 0, 1))
    tb = t + 18
    return d[:tb + 8] + struct.pack(">QI", tb, zlib.crc32(d[:tb])) + \
        d[tb + 20:]


def disk_info_rebase(src, dst, base, base_id):
    """dst: src whose ftvm-disk (version 2) names another base, resealed."""
    d = open(src, "rb").read()
    hdr = b"\x09ftvm-disk" + struct.pack(">II", 0, 2)
    body = d.find(hdr) + len(hdr)
    check(body > len(hdr), "%s: no ftvm-disk section" % src)
    d = d[:body + 56] + bytes.fromhex(base_id) + \
        base.encode().ljust(64, b"\0") + d[body + 136:]
    open(dst, "wb").write(reseal(d))


def disk_info_v1(src, dst):
    """dst: src as a file written before chains, its ftvm-disk section at
    version 1 (name and size only), its description and trailer to
    match (the checksum recomputed), no chain hint."""
    d = open(src, "rb").read()
    hdr = b"\x09ftvm-disk" + struct.pack(">II", 0, 2)
    i = d.find(hdr)
    check(i > 5 and d[i - 5] == 0x04 and d.find(hdr, i + 1) < 0,
          "%s: no one ftvm-disk section" % src)
    body = i + len(hdr)
    d = reseal(d[:i] + b"\x09ftvm-disk" + struct.pack(">II", 0, 1) +
               d[body:body + 40] + d[body + 136:])
    tb = d.rfind(b"\x09ftvm-ckpt" + struct.pack(">II", 0, 1)) + 18
    at = tb + 20 + 5        # the trailer's footer, then EOF and 0x06
    check(d[at:at + 2] == b"\x00\x06", "%s: no description after the "
          "trailer" % src)
    desc = json.loads(d[at + 6:])
    desc.pop("ftvm-disk-chain")
    for dev in desc["devices"]:
        if dev["name"] == "ftvm-disk":
            dev["version"] = 1
            dev["fields"] = dev["fields"][:2]
    js = json.dumps(desc).encode()
    open(dst, "wb").write(d[:at + 2] + struct.pack(">I", len(js)) + js)


def restore_chain_disk(f, img, name):
    """Restores f onto img; the guest goes on from its saved record, and
    its image, once it is killed, is a valid log holding every record it
    printed.  Returns the saved record (the first printed, less one)."""
    import disklog
    r = Proc(name, [ftvm, "restore", "--disk", img, f])
    wait_until(lambda: len(disklog_records(r)) >= 3 or
               (r.p.poll() is not None and
                fail("%s exited %s\n%s" % (name, r.p.returncode,
                                             r.dump()))),
               20, "%s to print 3 records" % name)
    r.kill9()
    got = disklog_records(r)
    check(got == list(range(got[0], got[-1] + 1)),
          "%s: records %r" % (name, got[:10]))
    try:
        on = disklog.check(img)
    except disklog.DisklogError as e:
        fail("%s: the image is no valid log: %s" % (name, e))
    check(got[-1] <= len(on) <= got[-1] + 1, "%s: printed up to %d, the "
          "image holds 1..%d" % (name, got[-1], len(on)))
    return got[0] - 1


def case_disk_chain():
    needs_kvm()
    size, prefill = 16 << 20, 5000
    chunks = size >> 20
    img = os.path.join(ft.tmp, "run.img")
    # Records 1..5000 fill chunks 0 and 1 and start 2: only the first
    # file holds chunks 0 and 1, so a restore of a later one needs it.
    disklog_fill(img, size, prefill)
    sock = os.path.join(ft.tmp, "run.sock")
    ckdir = os.path.join(ft.tmp, "ck")
    run = Proc("run", [ftvm, "run", "--mem", "64M", "--disk", img,
                       "--control", sock, "--checkpoint-dir", ckdir,
                       "--keep", "3",
                       os.path.join(guests, "disklog.elf"), "rate=100"])
    wait_control(sock, run)
    wait_records(run, prefill + 3)
    files = {}      # name -> (counts, info, bytes)

    def bases_present():
        names = only_ckpt_files(ckdir)
        for n in names:
            if n not in files:
                files[n] = disk_of(os.path.join(ckdir, n)) + (None,)
            b = files[n][1]["base"]
            check(not b or b in names, "%s's base %s was pruned (left %r)"
                  % (n, b, names))
        check(len(names) <= 2 * 3, "%d files kept with --keep 3: %r" %
              (len(names), names))
        return names

    def checkpoint(want_base):
        n0 = disklog_records(run)[-1]
        wait_records(run, n0 + 2)
        r = ctl(sock, "checkpoint", as_json=True)
        name = os.path.basename(r["path"])
        counts, info = disk_of(r["path"])
        files[name] = (counts, info, r["bytes"])
        total = counts["data_chunks"] + counts["zero_chunks"]
        check(r.get("disk_base", "") == info["base"], "reply %r, "
              "ftvm-disk %r" % (r, info))
        if want_base is None:
            check(info["base"] == "" and info["base_id"] == "0" * 32 and
                  total >= chunks and counts["data_chunks"] >= 3,
                  "%s is not a whole image: %r %r" % (name, counts, info))
        else:
            check(info["base"] == want_base and
                  info["base_id"] == files[want_base][1]["id"],
                  "%s is not a delta on %s: %r" % (name, want_base, info))
            # Only chunk 2 (3 once the log crosses 6144) was written;
            # records repeat a chunk written again during the save.
            check(1 <= counts["data_chunks"] and total <= 4,
                  "%s, a delta, has %r" % (name, counts))
        txt = ft.run([ftvm, "inspect", r["path"]], capture_output=True,
                     text=True, timeout=60).stdout
        want = ("the changes since %s (id %s)" % (info["base"],
                                                  info["base_id"])
                if info["base"] else "the whole image")
        check("  this file %s: %s\n" % (info["id"], want) in txt,
              "inspect %s says no %r:\n%s" % (name, want, txt[-3000:]))
        log("%s: %d bytes, disk %d data + %d zero chunks, base %r" %
            (name, r["bytes"], counts["data_chunks"], counts["zero_chunks"],
             info["base"]))
        bases_present()
        return name

    c1 = checkpoint(None)
    c2 = checkpoint(c1)
    c3 = checkpoint(c2)
    # The chain has 3 files (--keep 3): the next starts a new one.
    c4 = checkpoint(None)
    check(bases_present() == [c1, c2, c3, c4], "after a new chain: %r" %
          only_ckpt_files(ckdir))
    # save FILE: a whole image, and the chain breaks.
    single = os.path.join(ft.tmp, "single.ftvm")
    save(sock, single)
    counts, info = disk_of(single)
    check(info["base"] == "" and counts["data_chunks"] +
          counts["zero_chunks"] >= chunks, "save FILE: %r %r" %
          (counts, info))
    c5 = checkpoint(None)
    check(bases_present() == [c1, c2, c3, c4, c5], "kept %r" %
          only_ckpt_files(ckdir))

    # A middle delta and the chain's last, each restored into an image
    # full of junk: every chunk comes from the chain.
    def junk(path):
        with open(path, "wb") as fh:
            fh.write(os.urandom(size))
    mid, last = (os.path.join(ckdir, c) for c in (c2, c3))
    a = os.path.join(ft.tmp, "mid.img")
    junk(a)
    s2 = restore_chain_disk(mid, a, "restore-mid")
    b = os.path.join(ft.tmp, "last.img")
    s3 = restore_chain_disk(last, b, "restore-last")
    check(prefill < s2 < s3, "saved at %d (%s) and %d (%s)" %
          (s2, c2, s3, c3))
    log("restored %s (record %d) and %s (record %d)" % (c2, s2, c3, s3))

    # A base that is missing, or another chain's file under its name.
    miss = os.path.join(ft.tmp, "miss")
    swap = os.path.join(ft.tmp, "swap")
    for d in (miss, swap):
        os.mkdir(d)
        for c in (c2, c3):
            shutil.copy(os.path.join(ckdir, c), d)
    shutil.copy(os.path.join(ckdir, c4), os.path.join(swap, c1))
    before = open(a, "rb").read()
    missing = os.path.join(ft.tmp, "missing.img")
    for d, want in ((miss, "No such file"), (swap, "not the file it was "
                                              "saved on")):
        for target in (a, missing):
            r = ft.run([ftvm, "restore", "--disk", target,
                        os.path.join(d, c3)], capture_output=True,
                       text=True, timeout=60)
            check(r.returncode == EXIT_SETUP and want in r.stderr and
                  os.path.join(d, c1) in r.stderr,
                  "restore with a bad base: %d %s" % (r.returncode,
                                                      r.stderr))
    log("refused: %s" % r.stderr.strip())
    # Bases that go round: c2 made a delta on c3 (its id and name).
    loop = os.path.join(ft.tmp, "loop")
    os.mkdir(loop)
    shutil.copy(os.path.join(ckdir, c3), loop)
    disk_info_rebase(os.path.join(ckdir, c2), os.path.join(loop, c2), c3,
                     files[c3][1]["id"])
    for target in (a, missing):
        r = ft.run([ftvm, "restore", "--disk", target,
                    os.path.join(loop, c3)], capture_output=True, text=True,
                   timeout=60)
        check(r.returncode == EXIT_SETUP and "goes round" in r.stderr,
              "restore of a loop: %d %s" % (r.returncode, r.stderr))
    log("refused: %s" % r.stderr.strip())
    check(open(a, "rb").read() == before, "a refused restore changed the "
          "image")
    check(not os.path.exists(missing), "a refused restore made the image")

    c6 = checkpoint(c5)
    # Only c4 (whole), c5 (whole) and c6 (on c5) are still needed.
    check(bases_present() == [c4, c5, c6], "kept %r" %
          only_ckpt_files(ckdir))
    s6 = restore_chain_disk(os.path.join(ckdir, c6),
                            os.path.join(ft.tmp, "c6.img"), "restore-c6")
    check(s6 > s3, "saved at %d" % s6)
    whole, delta = files[c5][2], files[c6][2]
    log("file sizes: whole %d bytes, delta %d bytes" % (whole, delta))
    check(delta < whole, "the delta is not smaller than the whole file")
    # A whole file as written before chains (ftvm-disk version 1) still
    # restores, as the whole image.
    v1 = os.path.join(ft.tmp, "v1.ftvm")
    disk_info_v1(os.path.join(ckdir, c5), v1)
    dev = [x for x in inspect_json(v1)["devices"]
           if x["name"] == "ftvm-disk"]
    check(dev and dev[0]["version"] == 1 and "id" not in dev[0]["fields"],
          "the version 1 copy: %r" % dev)
    c = os.path.join(ft.tmp, "v1.img")
    junk(c)
    restore_chain_disk(v1, c, "restore-v1")
    # A save that fails after the guest's pause (its chunks taken from
    # the dirty bitmap): a directory under the name the file gets makes
    # its rename fail.  The next file is whole, and restores.
    wait_records(run, disklog_records(run)[-1] + 2)
    seq = max(int(CKPT_RE.match(n).group(1))
              for n in only_ckpt_files(ckdir)) + 1
    block = os.path.join(ckdir, "ckpt-%08d.ftvm" % seq)
    os.mkdir(block)
    open(os.path.join(block, "x"), "w").close()
    rc, out, err = ctl(sock, "checkpoint", ok=False)
    check(rc != 0 and "rename into place" in err, "checkpoint over a "
          "directory: %d %s%s" % (rc, out, err))
    shutil.rmtree(block)
    c7 = checkpoint(None)
    s7 = restore_chain_disk(os.path.join(ckdir, c7),
                            os.path.join(ft.tmp, "c7.img"), "restore-c7")
    check(s7 > s6, "saved at %d" % s7)
    # The chain's last file removed by hand: the next one is whole.
    os.unlink(os.path.join(ckdir, c7))
    del files[c7]
    checkpoint(None)


def case_disk_chain_full():
    in_private_mount_ns()

    size = 16 << 20
    img = os.path.join(ft.tmp, "run.img")
    disklog_fill(img, size, 5000)
    ckdir = os.path.join(ft.tmp, "ck")
    os.mkdir(ckdir, 0o700)
    sh("mount", "-t", "tmpfs", "-o", "size=24m,mode=0700",
       "ftvm-ckpt-test", ckdir)
    ft.cleanups.append(lambda: ft.run(["umount", "-l", ckdir],
                                      capture_output=True, timeout=30))
    sock = os.path.join(ft.tmp, "run.sock")
    run = Proc("run", [ftvm, "run", "--mem", "64M", "--disk", img,
                       "--control", sock, "--checkpoint-dir", ckdir,
                       "--keep", "3",
                       os.path.join(guests, "disklog.elf"), "rate=100"])
    wait_control(sock, run)
    wait_records(run, 5003)
    c1 = ctl(sock, "checkpoint", as_json=True)
    wait_records(run, disklog_records(run)[-1] + 2)
    c2 = ctl(sock, "checkpoint", as_json=True)
    check(c2.get("disk_base") == os.path.basename(c1["path"]),
          "the second file is no delta on the first: %r" % c2)
    # Leave less room than a delta needs: the next checkpoint fails.
    pad = os.path.join(ckdir, "pad")
    st = os.statvfs(ckdir)
    with open(pad, "wb") as fh:
        fh.write(b"\1" * max(0, st.f_bavail * st.f_frsize - (512 << 10)))
    rc, out, err = ctl(sock, "checkpoint", ok=False)
    check(rc != 0 and "No space left" in err, "a checkpoint fitted: %d "
          "%s%s" % (rc, out, err))
    os.unlink(pad)
    # The next file is whole, though its chain (2 files) is shorter than
    # --keep, and the one after it a delta on it.
    c3 = ctl(sock, "checkpoint", as_json=True)
    check("disk_base" not in c3, "after a failed checkpoint: %r" % c3)
    counts, info = disk_of(c3["path"])
    check(info["base"] == "" and counts["data_chunks"] +
          counts["zero_chunks"] >= size >> 20, "%r %r" % (counts, info))
    wait_records(run, disklog_records(run)[-1] + 2)
    c4 = ctl(sock, "checkpoint", as_json=True)
    check(c4.get("disk_base") == os.path.basename(c3["path"]),
          "the chain does not go on after the whole file: %r" % c4)
    log("%s; then %s whole, %s on it" % (err.strip(),
                                         os.path.basename(c3["path"]),
                                         os.path.basename(c4["path"])))
    run.kill9()
    log("after the failure: %s whole, %s on it" %
        (os.path.basename(c3["path"]), c4["disk_base"]))
    target = os.path.join(ft.tmp, "r.img")
    with open(target, "wb") as fh:
        fh.write(os.urandom(size))
    saved = restore_chain_disk(c4["path"], target, "restore")
    check(saved > 5000, "saved at %d" % saved)


CASES = {
    "save-restore": case_save_restore,
    "periodic": case_periodic,
    "bad-files": case_bad_files,
    "clock": case_clock,
    "udpkv-tap": case_udpkv_tap,
    "disk-full": case_disk_full,
    "quit-status": case_quit_status,
    "vcpus": case_vcpus,
    "files": case_files,
    "trailer-place": case_trailer_place,
    "disk": case_disk,
    "disk-chain": case_disk_chain,
    "disk-chain-full": case_disk_chain_full,
}


def main():
    global ftvm, ftvmctl, guests
    if len(sys.argv) != 5 or sys.argv[1] not in CASES:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    ftvm, ftvmctl, guests = (os.path.abspath(a) for a in sys.argv[2:])
    ft.run_case(sys.argv[1], CASES[sys.argv[1]], "ckpt")


if __name__ == "__main__":
    main()
