#!/usr/bin/env python3
"""A replicated disk through real failures (docs/disk-format.md).

    disk_test.py CASE FTVM FTVMCTL GUEST_DIR [RUNS]

The guest is disklog (guest/disklog.c): record N in sector N of its disk,
"disklog: record N" on the console once record N is written and flushed.
The primary runs it on an image of its own (--disk), the secondary keeps
its copy (--disk); real processes as in e2e_test.py, whose helpers this
uses.  Exit 0 pass, 1 fail, 77 skipped (no /dev/kvm; enospc needs root).
FTVM_E2E_SEED fixes the random delays.

What a failover must leave, on every run: the primary's released console
is records 1..P with no gap; the secondary goes on at record b, b - 1 >=
P (nothing a client saw is taken back; b - 1 > P only in the lost-ACK
race e2e_test.py describes); and its image, read once the secondary is
killed, is a valid log 1..L (tests/lib/disklog.py: no valid record after
the first gap) with L at least the last record it printed.  A copy that
missed a write the guest's memory had made (the disk behind the memory)
leaves a hole below b and fails check(); one that took a write of an
unacknowledged package would print records the memory had not reached.

  kill-primary  RUNS (default 24) times: disklog rate=100, kill -9 of the
                primary after a random delay (bring-up 0-12 ms one run in
                ten, early 12-300 ms, steady 0.3-2 s), over mutual TLS;
                the rule above; at least 20 of them must fail over.
  corrupt       packages 5, 12 and 13 damaged on the wire (corrupt_package.so):
                each NACKed, the next full package sends the chunks of
                the refused ones again (vm_disk_resend); then kill -9 of
                the primary: the rule above.
  enospc        diskwrite at 2 MiB/s, the secondary's copy on a 2.5 MiB
                tmpfs (a mount namespace of its own): its disk write
                fails, it refuses the stream (exit 4, "No space left on
                device", never a failover), and the primary runs on
                unprotected (--reconnect), its guest still writing.
  secondary-save  eight `ftvmctl save` on the secondary while packages keep
                coming (256M guest, so the save's live passes overlap
                them): each file restores to a guest that goes on after
                its record, on a valid log holding every record before.
  reprotect     a second hop: A -> B, A killed, B (the survivor) protected
                by C with `ftvmctl protect`, B killed: C goes on after
                B's last released record, its image a valid log.
  refuse        a secondary without --disk refuses a primary with a disk
                (and the reverse), naming the option; one given the
                primary's own image refuses it (locked) and leaves it a
                valid log; --disk IMG,readonly
                on a primary and --mode colo --disk exit 2.
"""
import os
import random
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import disklog  # noqa: E402
import e2e_test as e2e  # noqa: E402
import ftvmtest as ft  # noqa: E402
from ftvmtest import check, log  # noqa: E402

ck = e2e.ck
DISK_SIZE = 8 << 20
rng = random.Random()
stats = {}


def bump(k, n=1):
    stats[k] = stats.get(k, 0) + n


def image(name, size=DISK_SIZE):
    path = os.path.join(ft.tmp, name)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def records_of(proc):
    return disklog.console_records(proc.lines())


def pair(i, extra_pri=(), env=None, sec_extra=(), rate=100):
    pimg, simg = image("p%d.img" % i), os.path.join(ft.tmp, "s%d.img" % i)
    sec, addr, sctl = e2e.spawn_secondary("sec%d" % i,
                                          ["--disk", simg] + list(sec_extra))
    pri, pctl = e2e.spawn_primary("pri%d" % i, addr, image="disklog",
                                  args=["rate=%d" % rate],
                                  extra=["--disk", pimg] + list(extra_pri),
                                  env=env)
    return pimg, simg, sec, addr, sctl, pri, pctl


def check_failover(desc, pri, sec, sctl, simg, acked):
    """The rule of the module's doc, once the secondary runs."""
    seen = disklog.console_records(pri.eof())
    check(seen == list(range(1, len(seen) + 1)), "%s: the primary's "
          "released records are not 1..%d: %r" % (desc, len(seen), seen))
    s = sctl.status()
    fo = s["failover"]
    ft.wait_until(lambda: len(records_of(sec)) >= 3 or
                  (not sec.alive() and e2e.fail(sec.dump())), 10,
                  "3 records from the secondary")
    after = records_of(sec)
    b = after[0]
    check(after == list(range(b, b + len(after))), "%s: the secondary's "
          "records are not consecutive: %r" % (desc, after[:20]))
    check(b >= len(seen) + 1, "%s: the secondary wrote record %d again, "
          "but the primary had released it (it released 1..%d): a "
          "failover took back output a client saw" % (desc, b, len(seen)))
    e2e.check_gap(b - 1 - len(seen), fo["continued_from"], acked, desc)
    sec.signal(signal.SIGKILL)
    sec.p.wait(10)
    last = records_of(sec)[-1]
    try:
        on_disk = disklog.check(simg)
    except disklog.DisklogError as e:
        e2e.fail("%s: the secondary's image: %s (it went on at record %d "
                 "after the primary released %d)" % (desc, e, b, len(seen)))
    check(len(on_disk) >= last, "%s: the secondary printed record %d but "
          "its image holds 1..%d" % (desc, last, len(on_disk)))
    check(len(on_disk) <= last + 1, "%s: the secondary's image holds "
          "1..%d, past its last record %d and the one in flight at the "
          "kill" % (desc, len(on_disk), last))
    return len(seen), b, len(on_disk), fo


def kill_primary_run(i):
    pimg, simg, sec, addr, sctl, pri, pctl = pair(i)
    phase, delay = e2e.draw_kill(rng, bringup=0.1)
    t_kill, acked = e2e.kill_at(pri, pctl, phase, delay)
    protected = "protected by" in pri.err()
    desc = "run %d: %s kill at %.0f ms" % (i, phase, delay * 1e3)
    what = e2e.secondary_outcome(sec, sctl, t_kill)
    if what == "exit":
        rc = sec.p.returncode
        check(rc == 3 and not protected, "%s: the secondary exited %d "
              "(protected: %s)\n%s" % (desc, rc, protected, sec.dump()))
        bump("exit3")
        log("%s: before checkpoint 1 was applied: exit 3" % desc)
    elif what == "waiting":
        check(not protected, "%s: the secondary waits but the primary "
              "was protected" % desc)
        bump("before_vm")
        log("%s: before the primary sent its VM: the secondary waits" % desc)
    else:
        p, b, on_disk, fo = check_failover(desc, pri, sec, sctl, simg, acked)
        bump("failovers")
        log("%s: the primary released records 1..%d, the secondary went "
            "on at %d from checkpoint %d in %.1f ms; its image holds "
            "1..%d" % (desc, p, b, fo["continued_from"], fo["ms"], on_disk))
    e2e.retire(sec, pri, sctl, pctl)


def case_kill_primary(runs):
    for i in range(runs):
        kill_primary_run(i)
    check(stats.get("failovers", 0) >= runs * 2 // 3, "only %d failovers in "
          "%d runs: %r" % (stats.get("failovers", 0), runs, stats))
    log("kill-primary: %d runs: %r" % (runs, stats))


def case_corrupt():
    lib = os.environ.get("FTVM_CORRUPT_PRELOAD")
    if not lib or not os.path.exists(lib):
        e2e.fail("FTVM_CORRUPT_PRELOAD does not name corrupt_package.so "
                 "(the meson test sets it)")
    pimg, simg, sec, addr, sctl, pri, pctl = pair(0, env={
        "LD_PRELOAD": lib, "FTVM_TEST_CORRUPT_PACKAGE": "5,12,13"})
    e2e.wait_state(pctl, pri, "active")

    def past():
        st = pctl.status()
        return st if st["nacks"] >= 3 and \
            st["checkpoint"]["last_acked"] > 20 else None
    st = ft.wait_until(past, 15, "three NACKs and acknowledgements after")
    check(st["state"] == "active", "state %r" % st["state"])
    check(pri.err().count("TEST: damaged package") == 3, pri.err())
    rep = sctl.status()["replication"]
    check(rep["refused"] >= 3, "the secondary refused %r" % rep)
    dk = st.get("disk") or {}
    check(dk.get("path") == pimg and dk.get("bytes") == DISK_SIZE and
          dk.get("data_chunks_sent", 0) >= 1 and
          dk.get("zero_chunks_sent", 0) >= DISK_SIZE >> 20,
          "the primary's status says of its disk %r" % dk)
    time.sleep(rng.uniform(0, 0.5))
    st = pctl.status()
    acked = st["checkpoint"]["last_acked"] if st else None
    pri.signal(signal.SIGKILL)
    pri.p.wait(10)
    e2e.wait_state(sctl, sec, "running")
    p, b, on_disk, fo = check_failover("corrupt", pri, sec, sctl, simg,
                                       acked)
    log("corrupt: %d NACKs, %d full packages; the primary released 1..%d, "
        "the secondary went on at %d; its image holds 1..%d" %
        (st["nacks"], st["checkpoint"]["full"], p, b, on_disk))
    e2e.retire(sec, pri, sctl, pctl)


def case_enospc():
    ft.needs_root("a tmpfs in a mount namespace")
    mnt = os.path.join(ft.tmp, "small")
    os.mkdir(mnt)
    simg = os.path.join(mnt, "s.img")
    pimg = image("p.img")
    # diskwrite fills a new 1 MiB chunk every half second: the copy's
    # third chunk does not fit in 2.5 MiB.  --reconnect: the primary runs
    # on unprotected even should that come before checkpoint 1's ACK.
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o size=2560k ftvm-small "$0" && exec "$@"', mnt]
    sock = os.path.join(ft.tmp, "sec.sock")
    sec = e2e.Stream("sec", wrap + [
        ck.ftvm, "secondary", "--listen", "127.0.0.1:0", "--control", sock,
        "--insecure", "--disk", simg, "--failure-timeout",
        e2e.failure_arg("1s")])
    m = sec.wait_err(e2e.LISTEN_RE, 10, "listening")
    addr = "%s:%s" % (m.group(1), m.group(2))
    pri, pctl = e2e.spawn_primary(
        "pri", addr, image="diskwrite", args=["kib-per-second=2048"],
        extra=["--disk", pimg, "--reconnect", "%ds" % ft.scaled(60)])
    ft.wait_until(lambda: not sec.alive(), 30, "the secondary to refuse")
    check(sec.p.returncode == 4, "the secondary exited %s, expected 4 "
          "(the stream refused)\n%s" % (sec.p.returncode, sec.dump()))
    check("No space left on device" in sec.err(), sec.err())
    check("failover" not in sec.err() and not sec.lines(),
          "the secondary took over:\n%s" % sec.dump())

    def written():
        kib = [int(x) for x in re.findall(r"^diskwrite kib=(\d+)",
                                          "\n".join(pri.lines()), re.M)]
        return kib[-1] if kib else 0
    n = written()
    ft.wait_until(lambda: written() >= n + 4096 or
                  (not pri.alive() and e2e.fail(pri.dump())), 20,
                  "4 MiB more from the primary's guest")
    st = pctl.status()
    check(st["state"] != "active", "the primary says %r" % st["state"])
    log("enospc: the secondary refused (%s); the primary runs on %s, its "
        "guest at %d KiB" % ([l for l in sec.err().splitlines()
                              if "No space" in l][0], st["state"],
                             written()))


def case_secondary_save():
    """Checkpoint files of the secondary's VM while packages keep coming:
    its copy's chunks written by a package during the file's live passes
    are sent again, so each file's disk matches its memory."""
    pimg, simg, sec, addr, sctl, pri, pctl = pair(0, extra_pri=["--mem",
                                                                "256M"])
    e2e.wait_state(pctl, pri, "active")
    ft.wait_until(lambda: len(records_of(pri)) >= 20, 20, "20 records")
    for k in range(8):
        f = os.path.join(ft.tmp, "s%d.ftvm" % k)
        e2e.ctl_cli(sctl.path, "save", f)
        img = os.path.join(ft.tmp, "r%d.img" % k)
        r = e2e.Stream("restore%d" % k, [ck.ftvm, "restore", "--disk", img,
                                         f])
        ft.wait_until(lambda: len(records_of(r)) >= 3 or
                      (not r.alive() and e2e.fail(r.dump())), 20,
                      "3 records from the restored VM")
        r.signal(signal.SIGKILL)
        r.p.wait(10)
        got = records_of(r)
        try:
            on_disk = disklog.check(img)
        except disklog.DisklogError as e:
            e2e.fail("the secondary's file %d: %s (its guest went on at "
                     "%d)" % (k, e, got[0]))
        check(got[0] - 1 <= len(on_disk) and len(on_disk) >= got[-1],
              "file %d: the guest went on at %d, printed up to %d; the "
              "image holds 1..%d" % (k, got[0], got[-1], len(on_disk)))
        log("the secondary's file %d: its guest goes on at record %d, "
            "the image holds 1..%d" % (k, got[0], len(on_disk)))
        ft.procs.remove(r)
    e2e.retire(sec, pri, sctl, pctl)


def case_reprotect():
    """A survivor's disk replicated again: A -> B, A killed, B protected
    by C (`ftvmctl protect`), B killed, C goes on."""
    pimg, bimg, b, addr, bctl, a, actl = pair(0)
    e2e.wait_state(actl, a, "active")
    ft.wait_until(lambda: len(records_of(a)) >= 20, 20, "20 records")
    a.signal(signal.SIGKILL)
    a.p.wait(10)
    seen_a = disklog.console_records(a.eof())
    e2e.wait_state(bctl, b, "running")
    ft.wait_until(lambda: len(records_of(b)) >= 10 or
                  (not b.alive() and e2e.fail(b.dump())), 20,
                  "10 records from B")
    cimg = os.path.join(ft.tmp, "c.img")
    c, c_addr, cctl = e2e.spawn_secondary("C", ["--disk", cimg])
    e2e.ctl_cli(bctl.path, "protect", c_addr)
    ft.wait_until(lambda: (bctl.status() or {}).get("protection", {})
                  .get("state") == "active", 30, "B protected by C")
    ft.wait_until(lambda: bctl.status()["protection"]["checkpoint"]
                  ["last_acked"] >= 5, 20, "five checkpoints acknowledged "
                  "by C")
    b.signal(signal.SIGKILL)
    b.p.wait(10)
    seen_b = records_of(b)
    e2e.wait_state(cctl, c, "running")
    ft.wait_until(lambda: len(records_of(c)) >= 3 or
                  (not c.alive() and e2e.fail(c.dump())), 20,
                  "3 records from C")
    c.signal(signal.SIGKILL)
    c.p.wait(10)
    seen_c = records_of(c)
    for who, seen in (("B", seen_b), ("C", seen_c)):
        check(seen == list(range(seen[0], seen[-1] + 1)), "%s's records "
              "are not consecutive: %r" % (who, seen[:20]))
    # Nothing released is taken back; a gap only in the lost-ACK race
    # (e2e_test.py), one epoch at most.
    gap = round(15 * ft.scaled(1.0))
    check(seen_a[-1] < seen_b[0] <= seen_a[-1] + 1 + gap and
          seen_b[-1] < seen_c[0] <= seen_b[-1] + 1 + gap,
          "A released up to %d, B went on at %d and released up to %d, "
          "C went on at %d" % (seen_a[-1], seen_b[0], seen_b[-1],
                               seen_c[0]))
    on_disk = disklog.check(cimg)
    check(seen_c[-1] <= len(on_disk) <= seen_c[-1] + 1, "C printed up to "
          "%d, its image holds 1..%d" % (seen_c[-1], len(on_disk)))
    log("A released 1..%d, B %d..%d, C went on at %d; C's image holds "
        "1..%d" % (seen_a[-1], seen_b[0], seen_b[-1], seen_c[0],
                   len(on_disk)))
    for p in (a, b, c):
        ft.check_sanitizers(p)


def run_cmd(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def case_refuse():
    # A primary with a disk, a secondary without.
    pimg = image("p.img")
    sec, addr, sctl = e2e.spawn_secondary("sec")
    pri, pctl = e2e.spawn_primary("pri", addr, image="disklog",
                                  extra=["--disk", pimg])
    ft.wait_until(lambda: "start the secondary with --disk FILE" in
                  pri.err() + sec.err(), 20, "the refusal")
    log("no --disk on the secondary: %s" %
        [l for l in (pri.err() + sec.err()).splitlines()
         if "--disk FILE" in l][0])
    e2e.retire(sec, pri, sctl, pctl)
    # The primary's own image given to its secondary on the same host:
    # refused (it is locked) before the secondary touches it.
    sec, addr, sctl = e2e.spawn_secondary("sec1", ["--disk", pimg])
    pri, pctl = e2e.spawn_primary("pri1", addr, image="disklog",
                                  args=["rate=100"], extra=["--disk", pimg])
    ft.wait_until(lambda: "in use by another user of the image" in
                  sec.err(), 20, "the refusal")
    check(not sec.lines(), "the secondary ran a VM:\n%s" % sec.dump())
    e2e.retire(sec, pri, sctl, pctl)
    # A valid log (check raises otherwise) holding what it printed.
    check(len(disklog.check(pimg)) >= len(records_of(pri)),
          "the primary's image after its secondary was refused it")
    # A secondary with a disk, a primary without.
    sec, addr, sctl = e2e.spawn_secondary(
        "sec2", ["--disk", os.path.join(ft.tmp, "s.img")])
    pri, pctl = e2e.spawn_primary("pri2", addr)
    ft.wait_until(lambda: "has no disk" in pri.err() + sec.err(), 20,
                  "the refusal")
    e2e.retire(sec, pri, sctl, pctl)
    guest = os.path.join(ck.guests, "disklog.elf")
    r = run_cmd([ck.ftvm, "primary", "--disk", pimg + ",readonly",
                 "--secondary", "127.0.0.1:1", "--insecure", guest])
    check(r.returncode == 120 or r.returncode == 2, "readonly: %d %s" %
          (r.returncode, r.stderr))
    check("without readonly" in r.stderr, r.stderr)
    r = run_cmd([ck.ftvm, "primary", "--disk", pimg, "--mode", "colo",
                 "--secondary", "127.0.0.1:1", "--insecure", guest])
    check(r.returncode == 2 and "COLO mode does not replicate a disk" in
          r.stderr, "colo: %d %s" % (r.returncode, r.stderr))


CASES = {
    "kill-primary": (case_kill_primary, False),
    "corrupt": (case_corrupt, False),
    "enospc": (case_enospc, "a tmpfs in a mount namespace"),
    "refuse": (case_refuse, False),
    "secondary-save": (case_secondary_save, False),
    "reprotect": (case_reprotect, False),
}


def prepare(case):
    ft.needs_kvm()
    if CASES[case][1]:
        ft.needs_root(CASES[case][1])
    if case == "kill-primary":
        e2e.creds = ft.make_certs("pair", "primary", "secondary")


def main():
    e2e.seeded_main(__doc__, {k: fn for k, (fn, _) in CASES.items()},
                    "disk", {"kill-primary": 24}, rng, prepare)


if __name__ == "__main__":
    main()
