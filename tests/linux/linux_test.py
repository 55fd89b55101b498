#!/usr/bin/env python3
"""Linux guests on ftvm's PC machine: real processes, Debian's kernel.

    linux_test.py CASE FTVM FTVMCTL LINUX_GUEST_SH

The kernel and the busybox initramfs come from scripts/linux-guest.sh
(cached; made on the host before the nested runner starts).  Exit 0 pass,
1 fail, 77 skipped: no usable /dev/kvm, a KVM that cannot run Linux in
useful time (this machine's kvm_pvm emulates ring-0 code: run through
`scripts/kvm-vm.sh --force`), or no kernel prepared.

  boot      --vcpus 1: the initramfs's marker on the serial console; a
            counter loop typed into the guest's shell through ftvm's stdin
            (the UART's input) runs; `ftvmctl pause` stops the counter,
            `resume` lets it go on; `ftvmctl quit` ends ftvm with 0; the
            boot time (start -> marker) is logged
  save-restore
            --vcpus 1: a command typed into the shell answers, a counter
            runs in the background; `ftvmctl save`, kill -9, `ftvm
            restore` of the file (no --kernel: the file says it is a Linux
            VM): another command answers, the counter carries on from
            where it was, /proc/uptime went on (no reboot: no second
            marker), and the guest's clocksource watchdog found its TSC
            and kvm-clock agreeing; the save's size, pause and time and the restore's
            time to the first answer are logged
  ckpt-bad  (any KVM: the kernel need not get far) a Linux VM run with
            --checkpoint-dir: `ftvmctl checkpoint`'s file restores and
            saves again; `ftvmctl save`'s file truncated,
            its "pc" section's PIC length and its "cpu/pc" subsection's
            MP state damaged are refused (exit 120) naming what is wrong,
            and so is the file restored with --net (no "pci" section);
            `ftvm inspect` decodes the PC's sections and each cpu/pc
  net       a TAP in a network namespace the test makes, `--net tap:`:
            the guest's virtio-net (eth0, ftvm_ip=) answers N UDP requests
            (tests/linux/udpsvc.c) each exactly once, its counter going
            up by one per request; `ftvmctl pause`, a request (queued
            by the backend), `ftvmctl save`, kill -9, `ftvm restore
            --net` of the file: the queued request is answered, and new
            ones, the service's counter carrying on; the file without
            --net is refused, and a damaged "pci" section (a queue size
            not a power of two) refused naming virtio-net
  net-dgram the datagram backend (UNIX sockets in the case's directory,
            this script the peer, answering the guest's ARP): 10 UDP
            requests in Ethernet frames each answered exactly once
  smp       --vcpus 2: /init sees 2 CPUs, then reboots: ftvm exits 0
            and says the guest reset the machine
  failover  --vcpus 1 (then 2, ...): checkpoint mode: `ftvm primary --kernel` and a
            `ftvm secondary` on loopback; a counter typed into the
            primary's shell prints a line a second; kill -9 of the primary
            at a random moment (seeded, logged; FTVM_LINUX_RUNS runs,
            default 1, alternating 1 and 2 vCPUs): the secondary fails over, its counter lines join
            the primary's released ones with no duplicate and no gap (a
            gap only in the documented lost-ACK race), and a command typed
            into the secondary's stdin answers: the shell carries on; with
            FTVM_LINUX_REPROTECT=1 the survivor is protected again (`ftvmctl
            protect C`), then killed: C goes on with the counter and its
            shell answers; the
            boot, the bring-up, the checkpoint pause and package size are
            logged
  failover-net
            a bridge in a namespace the test makes, a TAP for each side:
            `ftvm secondary --net tap:B` and `ftvm primary --kernel
            --net tap:A`, the guest's UDP service (ftvm_mode=udp); a
            client (tests/linux/udpreq.py, resending every 0.5 s) sends 60
            requests one at a time; kill -9 of the primary after a random
            5-25 answers: the secondary fails over and announces the MAC,
            every request is answered, the service's counter in the
            answers never goes back (an answer the client saw was in a
            checkpoint the secondary had), and the secondary's shell
            answers; logs the resends and the longest request
  disk      --disk IMG (a 64 MiB sparse image under /var/tmp): the guest
            sees /dev/vda (virtio-blk) of 131072 sectors, makes an ext4
            file system on it, mounts it, writes a file with a random
            token and 4 MiB of random bytes (its sha256 noted), syncs,
            unmounts and reboots (ftvm exits 0); on the host, e2fsck -fn
            of the image passes and debugfs reads the token back; a
            second boot on the same image, readonly (--disk IMG,readonly:
            /sys/block/vda/ro is 1, a write to it fails): e2fsck -fn
            passes in the guest, the token and the 4 MiB file's sha256
            read back; logs dd's write (conv=fsync, through ext4) and raw
            read rates
  disk-restore
            --disk IMG: ext4 on /dev/vda, a loop in the guest appending
            its count to a file; `ftvmctl pause`, `save`, kill -9 (the
            image as the pause left it: every request the guest saw
            complete is in it, none in flight), `ftvm restore --disk
            IMG`: the shell answers, the loop goes on, then stopped: the
            file's lines are 0..N-1 with none missing, e2fsck -fn in the
            guest and on the host passes
  failover-disk
            checkpoint mode with a disk: `ftvm secondary --disk B` and
            `ftvm primary --kernel --disk A`; ext4 on /dev/vda, a loop
            appending its count to a file; kill -9 of the primary after
            a random 1000-3000 lines (seeded): the secondary fails over
            with its copy B, the loop goes on, then stopped: the file's
            lines are 0..N-1 with none missing or out of place, e2fsck
            -fn passes in the guest and on B from the host
  refuse    (no VM) `ftvm primary --kernel --mode colo`, `ftvm restore
            --kernel` and `ftvm secondary --kernel` exit 2 with the
            message;
            --initrd without --kernel, and a file that is no bzImage
            (exit 120, named) are refused too
"""
import json
import os
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ftvmtest as ft  # noqa: E402
from ftvmtest import check, log, needs_kvm, skip, wait_until  # noqa: E402

NO_COLO = "COLO mode for Linux guests is not supported yet"
CMDLINE = ("console=ttyS0 reboot=k i8042.noaux i8042.nomux i8042.dumbkbd "
           "ftvm_mode=%s")
MARKER_RE = re.compile(r"ftvm-linux: up: (\d+) cpus")
COUNT_RE = re.compile(r"ftvm-linux: count (\d+)")
# Debian's kernel reaches the marker in 16-52 s nested (load decides);
# short enough that a stuck boot is reported before the nested VM's own
# timeout ends it (scaled: 500 s at FTVM_TIME_SCALE=5).
BOOT_DEADLINE = 100

FTVM, FTVMCTL, LINUX_GUEST = sys.argv[2:5]


def can_boot_linux():
    """Skips where Linux cannot boot in useful time."""
    needs_kvm()
    if os.environ.get("FTVM_LINUX_FORCE") == "1":
        return
    if not any(os.path.isdir("/sys/module/" + m)
               for m in ("kvm_amd", "kvm_intel")):
        mods = sorted(m for m in os.listdir("/sys/module")
                      if m.startswith("kvm"))
        skip("this KVM (%s) is not hardware KVM: it emulates a guest "
             "kernel's ring-0 code and Linux does not boot in useful time; "
             "run through scripts/kvm-vm.sh --force (or set "
             "FTVM_LINUX_FORCE=1)" % ", ".join(mods))


def guest_files():
    r = ft.run([LINUX_GUEST], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        skip("scripts/linux-guest.sh could not prepare the kernel: %s"
             % r.stderr.strip())
    kernel, initrd = r.stdout.split()
    return kernel, initrd


def start(name, mode, vcpus, *extra, stdin=subprocess.DEVNULL):
    kernel, initrd = guest_files()
    t0 = time.monotonic()
    p = ft.Proc(name, [FTVM, "run", "--kernel", kernel, "--initrd", initrd,
                       "--cmdline", CMDLINE % mode, "--vcpus", str(vcpus),
                       "--mem", "256M"] + list(extra), stdin=stdin)
    return p, t0


def wait_marker(p, t0):
    line = p.wait_line(MARKER_RE.search, BOOT_DEADLINE, "the initramfs's "
                       "marker on the serial console")
    secs = time.monotonic() - t0
    log("boot time (ftvm start -> marker): %.1f s" % secs)
    return int(MARKER_RE.search(line).group(1))


def counts_of(p):
    return [int(m.group(1)) for m in map(COUNT_RE.search, p.lines()) if m]


def last_count(p):
    n = counts_of(p)
    return n[-1] if n else -1


def case_boot():
    can_boot_linux()
    sock = os.path.join(ft.tmp, "ctl.sock")
    p, t0 = start("linux", "shell", 1, "--control", sock,
                  stdin=subprocess.PIPE)
    check(wait_marker(p, t0) == 1, "one vCPU expected:\n" + p.out())
    p.wait_line(lambda l: "a shell on the console" in l, 30, "the shell")
    # Typed into the shell: the UART's input path, interrupt and all.
    p.p.stdin.write(b"i=0; while :; do echo ftvm-linux: count $i; "
                    b"i=$((i + 1)); sleep 1; done\n")
    p.p.stdin.flush()
    wait_until(lambda: last_count(p) >= 1, 60, "the counter loop typed "
               "into the guest's shell")
    # Pause (every vCPU out of KVM, its state read) and resume: the
    # machinery checkpoints will stand on; the guest stops and goes on.
    ft.ftvmctl_json(FTVMCTL, sock, "pause")
    st = ft.ftvmctl_json(FTVMCTL, sock, "status")
    check(st["state"] == "paused", "state after pause: %r" % st["state"])
    n = last_count(p)
    time.sleep(1.5)     # a window with the guest paused: nothing may come
    check(last_count(p) == n, "the counter went %d..%d while paused"
          % (n, last_count(p)))
    ft.ftvmctl_json(FTVMCTL, sock, "resume")
    wait_until(lambda: last_count(p) >= n + 2, 30,
               "the counter going on after resume")
    ft.ftvmctl_json(FTVMCTL, sock, "quit")
    rc = p.wait(30)
    check(rc == 0, "ftvm run exited %d after quit:\n%s" % (rc, p.err()))


def case_smp():
    can_boot_linux()
    p, t0 = start("linux", "reboot", 2)
    n = wait_marker(p, t0)
    check(n == 2, "/init saw %d CPUs with --vcpus 2:\n%s" % (n, p.out()))
    rc = p.wait(60)
    check(rc == 0, "ftvm run exited %d after the guest's reboot, "
          "expected 0:\n%s" % (rc, p.err()))
    check("the guest reset the machine" in p.err(),
          "stderr does not say the guest reset the machine:\n" + p.err())


def refused(argv, status, *needles):
    r = ft.run([FTVM] + argv, capture_output=True, text=True, timeout=30)
    check(r.returncode == status and all(s in r.stderr for s in needles),
          "ftvm %s: exit %d, expected %d with %r: %s" %
          (" ".join(argv), r.returncode, status, needles, r.stderr))


def case_refuse():
    k = os.path.join(ft.tmp, "notakernel")
    with open(k, "wb") as f:
        f.write(b"\0" * 4096)
    refused(["primary", "--kernel", k, "--mode", "colo", "--secondary",
             "127.0.0.1:1", "--insecure"], 2, NO_COLO)
    refused(["secondary", "--kernel", k], 2, "unknown option")
    refused(["restore", "--kernel", k, "x.ftvm"], 2,
            "takes the machine from its checkpoint")
    refused(["run", "--initrd", k, "guest.elf"], 2, "--initrd needs --kernel")
    refused(["run", "--kernel", k, "guest.elf"], 2, "no guest image as well")
    if ft.kvm_usable():
        refused(["run", "--kernel", k], 120, k, "not a bzImage")
        refused(["run", "--kernel", k, "--mem", "4G"], 120, "at most 3G")


def type_line(p, line):
    p.p.stdin.write(line.encode() + b"\n")
    p.p.stdin.flush()


def ask(p, tag, expr, timeout=60):
    """Types `echo ftvm-linux: TAG $((EXPR))` and waits for the answer
    (the echoed command line shows the expression, not its value)."""
    want = "ftvm-linux: %s %d" % (tag, eval(expr))
    type_line(p, "echo ftvm-linux: %s $((%s))" % (tag, expr))
    p.wait_line(lambda l: want in l, timeout, "the shell's answer " + want)


UPTIME_RE = r"ftvm-linux: uptime-%s (\d+\.\d+)"


def uptime(p, tag, timeout=60):
    type_line(p, "echo ftvm-linux: uptime-%s $(cut -d' ' -f1 /proc/uptime)"
              % tag)
    rx = re.compile(UPTIME_RE % tag)
    line = p.wait_line(rx.search, timeout, "the guest's /proc/uptime")
    return float(rx.search(line).group(1))


def case_save_restore():
    can_boot_linux()
    sock = os.path.join(ft.tmp, "ctl.sock")
    ckpt = os.path.join(ft.tmp, "linux.ftvm")
    p, t0 = start("linux", "shell", 1, "--control", sock,
                  stdin=subprocess.PIPE)
    check(wait_marker(p, t0) == 1, "one vCPU expected:\n" + p.out())
    p.wait_line(lambda l: "a shell on the console" in l, 30, "the shell")
    ask(p, "A", "6*7")
    type_line(p, "(i=0; while :; do echo ftvm-linux: count $i; "
              "i=$((i + 1)); sleep 1; done) &")
    wait_until(lambda: last_count(p) >= 2, 60, "the background counter")
    up1 = uptime(p, "1")
    n_saved = last_count(p)
    t = time.monotonic()
    log("request queued")
    st = ft.ftvmctl_json(FTVMCTL, sock, "save", ckpt)
    log("save: %d bytes, %.1f ms, guest paused %.2f ms (ftvmctl save took "
        "%.2f s)" % (st["bytes"], st["total_ms"], st["pause_ms"],
                     time.monotonic() - t))
    p.kill9()
    check(os.path.getsize(ckpt) == st["bytes"], "the file's size")

    sock2 = os.path.join(ft.tmp, "ctl2.sock")
    t = time.monotonic()
    r = ft.Proc("restore", [FTVM, "restore", ckpt, "--control", sock2],
                stdin=subprocess.PIPE)
    ask(r, "B", "7*8")
    log("restore: ftvm restore started -> the shell's first answer: %.1f s"
        % (time.monotonic() - t))
    up2 = uptime(r, "2")
    # What the save took is the guest's: its clocks stop while it is not
    # running, so the restored uptime carries on from the checkpoint's.
    check(up2 >= up1, "/proc/uptime went back: %.2f before the save, %.2f "
          "after the restore" % (up1, up2))
    check(not any(MARKER_RE.search(l) for l in r.lines()),
          "the restored guest booted again:\n" + r.out())
    wait_until(lambda: last_count(r) >= 0, 60, "the background counter "
               "after the restore")
    counts = [int(m.group(1)) for m in map(COUNT_RE.search, r.lines()) if m]
    check(n_saved <= counts[0] <= n_saved + 3,
          "the counter after the restore starts at %r; it was at %d at the "
          "save" % (counts[:3], n_saved))
    c0 = counts[0]
    wait_until(lambda: last_count(r) >= c0 + 2, 60,
               "the counter going on after the restore")
    log("uptime %.2f s at the save, %.2f s after the restore; counter %d "
        "at the save, %d first after" % (up1, up2, n_saved, c0))
    # kvm-clock is computed from the TSC: saved or restored at different
    # moments, the two drift apart and the guest's watchdog says so.
    check("Marking clocksource 'tsc' as unstable" not in r.out(),
          "the restored guest's TSC and kvm-clock disagree:\n" + r.out())
    ft.ftvmctl_json(FTVMCTL, sock2, "quit")
    rc = r.wait(30)
    check(rc == 0, "ftvm restore exited %d after quit:\n%s" % (rc, r.err()))


def gsh(p, tag, cmd, timeout=120):
    """Types cmd, then `echo ftvm-linux: TAG-rc $?`; its exit status (the
    echoed command line shows `$?`, not a number)."""
    type_line(p, "%s; echo ftvm-linux: %s-rc $?" % (cmd, tag))
    rx = re.compile(r"ftvm-linux: %s-rc (\d+)" % re.escape(tag))
    line = p.wait_line(rx.search, timeout, "the end of: " + cmd)
    return int(rx.search(line).group(1))


def sh_ok(p, tag, cmd, timeout=120):
    rc = gsh(p, tag, cmd, timeout)
    check(rc == 0, "`%s` exited %d in the guest:\n%s" % (cmd, rc, p.out()))


def dd_rate(p, tag, cmd, nbytes):
    """Runs a dd of nbytes in the guest, timed by its /proc/uptime (this
    busybox's dd prints no summary); logs and returns its MB/s."""
    up = "$(cut -d' ' -f1 /proc/uptime)"
    type_line(p, "a=%s; %s 2>/dev/null; r=$?; echo ftvm-linux: %s-time $r "
              "$a %s" % (up, cmd, tag, up))
    rx = re.compile(r"ftvm-linux: %s-time (\d+) ([\d.]+) ([\d.]+)" % tag)
    m = rx.search(p.wait_line(rx.search, 300, "the end of: " + cmd))
    check(m.group(1) == "0", "`%s` exited %s in the guest:\n%s"
          % (cmd, m.group(1), p.out()))
    secs = max(float(m.group(3)) - float(m.group(2)), 0.01)
    mb = nbytes / 1e6 / secs
    log("%s: %s: %d bytes in %.2f s, %.1f MB/s" % (tag, cmd, nbytes, secs,
                                                  mb))
    return mb


def disk_boot(img, name):
    p, t0 = start(name, "disk", 1, "--disk", img, stdin=subprocess.PIPE)
    wait_marker(p, t0)
    line = p.wait_line(lambda l: "ftvm-linux: disk vda" in l or
                       "ftvm-linux: no disk" in l, 60, "the disk's line")
    check("ftvm-linux: disk vda 131072 sectors" in line,
          "the guest's disk: %r (want 131072 sectors)\n%s" % (line, p.out()))
    p.wait_line(lambda l: "a shell on the console" in l, 30, "the shell")
    return p


def in_image_dir(fn):
    """fn(d) with d a fresh directory for disk images, removed after.
    Under /var/tmp: the nested runner's /tmp is a tmpfs of its own."""
    d = tempfile.mkdtemp(prefix="ftvm-linux-disk-", dir="/var/tmp")
    try:
        fn(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_disk():
    can_boot_linux()
    in_image_dir(disk_case)


def disk_case(d):
    img = os.path.join(d, "disk.img")
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    token = "ftvm-token-%016x" % random.getrandbits(64)
    log("image %s, token %s" % (img, token))

    p = disk_boot(img, "linux-rw")
    sh_ok(p, "mkfs", "/sbin/mkfs.ext4 -q -F /dev/vda", 300)
    sh_ok(p, "mount", "mount -t ext4 /dev/vda /mnt")
    sh_ok(p, "token", "echo %s >/mnt/hello.txt" % token)
    sh_ok(p, "big", "dd if=/dev/urandom of=/mnt/big bs=65536 count=64 "
          "2>/dev/null")
    type_line(p, "echo ftvm-linux: sum-a $(sha256sum /mnt/big)")
    rx = re.compile(r"ftvm-linux: sum-a ([0-9a-f]{64}) /mnt/big")
    sum_a = rx.search(p.wait_line(rx.search, 60, "the file's sha256")).group(1)
    dd_rate(p, "write", "dd if=/dev/zero of=/mnt/zero bs=1048576 count=16 "
            "conv=fsync", 16 << 20)
    sh_ok(p, "sync", "sync")
    sh_ok(p, "umount", "umount /mnt")
    type_line(p, "reboot -f")
    rc = p.wait(120)
    check(rc == 0, "ftvm run exited %d after the guest's reboot:\n%s"
          % (rc, p.err()))

    # The bytes are in the image, as the host's own tools read it.
    r = ft.run(["e2fsck", "-fn", img], capture_output=True, text=True,
               timeout=ft.scaled(120))
    check(r.returncode == 0, "the host's e2fsck -fn of the image: exit %d\n"
          "%s%s" % (r.returncode, r.stdout, r.stderr))
    r = ft.run(["debugfs", "-R", "cat /hello.txt", img], capture_output=True,
               text=True, timeout=ft.scaled(60))
    check(r.stdout.strip() == token, "debugfs read %r from /hello.txt, "
          "expected %r (%s)" % (r.stdout, token, r.stderr))

    p = disk_boot(img + ",readonly", "linux-ro")
    type_line(p, "echo ftvm-linux: ro $(cat /sys/block/vda/ro)")
    p.wait_line(lambda l: "ftvm-linux: ro 1" in l, 60, "/sys/block/vda/ro")
    sh_ok(p, "fsck", "/sbin/e2fsck -fn /dev/vda", 300)
    check(gsh(p, "write", "dd if=/dev/zero of=/dev/vda bs=4096 count=1 "
             "conv=fsync 2>/dev/null") != 0,
          "a write to the readonly disk succeeded:\n" + p.out())
    sh_ok(p, "mount", "mount -t ext4 -o ro /dev/vda /mnt")
    type_line(p, "echo ftvm-linux: hello $(cat /mnt/hello.txt)")
    p.wait_line(lambda l: "ftvm-linux: hello " + token in l, 60,
                "the token read back")
    type_line(p, "echo ftvm-linux: sum-b $(sha256sum /mnt/big)")
    rx = re.compile(r"ftvm-linux: sum-b ([0-9a-f]{64}) /mnt/big")
    sum_b = rx.search(p.wait_line(rx.search, 60, "the file's sha256")).group(1)
    check(sum_a == sum_b, "the 4 MiB file's sha256 was %s, reads back %s"
          % (sum_a, sum_b))
    sh_ok(p, "umount", "umount /mnt")
    dd_rate(p, "read", "dd if=/dev/vda of=/dev/null bs=1048576 count=64",
            64 << 20)
    type_line(p, "reboot -f")
    rc = p.wait(120)
    check(rc == 0, "ftvm run exited %d after the second reboot:\n%s"
          % (rc, p.err()))


WROTE_RE = re.compile(r"ftvm-linux: wrote (\d+)")


def wrote(p):
    n = [int(m.group(1)) for m in map(WROTE_RE.search, p.lines()) if m]
    return n[-1] if n else -1


def check_log_goes_on(p, before, timeout, after, why):
    """The guest's writer (appending its count to /mnt/log on ext4) goes
    on 1000 lines past before, is stopped, and its log is every number
    in its place; then /mnt is unmounted and e2fsck -fn passes in the
    guest.  after and why say when and what before was, for messages."""
    wait_until(lambda: wrote(p) >= before + 1000, timeout,
               "the writer going on after " + after)
    sh_ok(p, "stop", "kill %1; wait; sync")
    type_line(p, "echo ftvm-linux: log $(awk 'NR - 1 != $1 {bad++} "
              "END {print bad + 0, NR}' /mnt/log)")
    rx = re.compile(r"ftvm-linux: log (\d+) (\d+)")
    m = rx.search(p.wait_line(rx.search, 60, "the log's check"))
    bad, lines = int(m.group(1)), int(m.group(2))
    log("the log after %s: %d lines, %d out of place" % (after, lines, bad))
    check(bad == 0 and lines >= before + 1000, "/mnt/log after %s: %d "
          "lines, %d not their number (%s)" % (after, lines, bad, why))
    sh_ok(p, "umount", "umount /mnt")
    sh_ok(p, "fsck", "/sbin/e2fsck -fn /dev/vda", 300)


def case_disk_restore():
    can_boot_linux()
    in_image_dir(disk_restore_case)


def disk_restore_case(d):
    img = os.path.join(d, "disk.img")
    ckpt = os.path.join(d, "linux.ftvm")
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    sock = os.path.join(ft.tmp, "ctl.sock")
    p, t0 = start("linux", "disk", 1, "--disk", img, "--control", sock,
                  stdin=subprocess.PIPE)
    wait_marker(p, t0)
    p.wait_line(lambda l: "a shell on the console" in l, 60, "the shell")
    sh_ok(p, "mkfs", "/sbin/mkfs.ext4 -q -F /dev/vda", 300)
    sh_ok(p, "mount", "mount -t ext4 /dev/vda /mnt")
    # Each line of /mnt/log its number, a console line every 500.
    type_line(p, "(i=0; while :; do echo $i >>/mnt/log; i=$((i + 1)); "
              "[ $((i % 500)) = 0 ] && echo ftvm-linux: wrote $i; done) &")
    wait_until(lambda: wrote(p) >= 1000, 120, "the guest's writer")
    # Paused from the save to the kill: the image stays as the checkpoint
    # has it (a request completes before its vCPU runs on).
    ft.ftvmctl_json(FTVMCTL, sock, "pause")
    st = ft.ftvmctl_json(FTVMCTL, sock, "save", ckpt)
    before = wrote(p)
    p.kill9()
    log("saved %d bytes with the writer at %d+ lines" % (st["bytes"], before))

    sock2 = os.path.join(ft.tmp, "ctl2.sock")
    r = ft.Proc("restore", [FTVM, "restore", ckpt, "--disk", img,
                            "--control", sock2], stdin=subprocess.PIPE)
    ask(r, "B", "7*8", timeout=120)
    check_log_goes_on(r, before, 120, "the restore",
                      "the writer was at %d at the save" % before)
    type_line(r, "reboot -f")
    rc = r.wait(120)
    check(rc == 0, "ftvm restore exited %d after the guest's reboot:\n%s"
          % (rc, r.err()))
    res = ft.run(["e2fsck", "-fn", img], capture_output=True, text=True,
                 timeout=ft.scaled(120))
    check(res.returncode == 0, "the host's e2fsck -fn of the image: exit "
          "%d\n%s%s" % (res.returncode, res.stdout, res.stderr))


def restore_refused(path, *needles, net=None):
    r = ft.run([FTVM, "restore", path] + (["--net", net] if net else []),
               capture_output=True, text=True,
               timeout=ft.scaled(60))
    check(r.returncode == 120 and all(s in r.stderr for s in needles),
          "ftvm restore %s: exit %d, expected 120 with %r: %s"
          % (os.path.basename(path), r.returncode, needles, r.stderr))


def damaged(data, marker, at, value, name):
    """A copy of data with the byte `at` bytes after marker set to value."""
    i = data.find(marker)
    check(i >= 0 and data.find(marker, i + 1) < 0,
          "%r not found once in the checkpoint" % marker)
    b = bytearray(data)
    b[i + len(marker) + at] = value
    path = os.path.join(ft.tmp, name)
    with open(path, "wb") as f:
        f.write(b)
    return path


def case_ckpt_bad():
    ft.needs_kvm()
    sock = os.path.join(ft.tmp, "ctl.sock")
    ckpt = os.path.join(ft.tmp, "linux.ftvm")
    cdir = os.path.join(ft.tmp, "ckpts")
    os.mkdir(cdir)
    p, _ = start("linux", "shell", 1, "--control", sock, "--checkpoint-dir",
                 cdir, stdin=subprocess.PIPE)
    ft.ftvmctl_json(FTVMCTL, sock, "save", ckpt)
    periodic = ft.ftvmctl_json(FTVMCTL, sock, "checkpoint")["path"]
    check(os.path.dirname(periodic) == os.path.realpath(cdir),
          "ftvmctl checkpoint wrote %r, not into %s" % (periodic, cdir))
    p.kill9()
    # The --checkpoint-dir one: a Linux VM again (status), which saves.
    sock2 = os.path.join(ft.tmp, "ctl2.sock")
    r = ft.Proc("restore", [FTVM, "restore", periodic, "--control", sock2],
                stdin=subprocess.PIPE)
    st = ft.ftvmctl_json(FTVMCTL, sock2, "status")
    check(st["state"] == "running", "restored: state %r" % st["state"])
    again = os.path.join(ft.tmp, "again.ftvm")
    ft.ftvmctl_json(FTVMCTL, sock2, "save", again)
    r.kill9()
    restore_refused(again + ".missing", "No such file")
    # ftvm inspect decodes every section of a Linux VM's checkpoint
    # through its VM description: the PC's devices and each vCPU's cpu/pc.
    r = ft.run([FTVM, "inspect", ckpt], capture_output=True, text=True,
               timeout=ft.scaled(60))
    check(r.returncode == 0, "ftvm inspect exited %d: %s"
          % (r.returncode, r.stderr))
    for want in ("  pc (instance 0, version 2):", "    cpu/pc:",
                 "      lapic_len: 1024", "    pic_master_len: 16",
                 "    pit_len: ", "    uart:", "    kbc:", "    rtc:",
                 "      pc_msr_mask: "):
        check(want in r.stdout, "ftvm inspect does not show %r:\n%s"
              % (want, r.stdout[-3000:]))
    with open(ckpt, "rb") as f:
        data = f.read()
    trunc = os.path.join(ft.tmp, "trunc.ftvm")
    with open(trunc, "wb") as f:
        f.write(data[:len(data) * 2 // 3])
    restore_refused(trunc, "truncated")
    # "pc" 0, version 2, then pic_master_len (be32 16): 17 is over its
    # room.  Device sections are validated before the trailer's checksum
    # is reached, so the section itself is what refuses it.
    pc_hdr = b"\x02pc" + b"\0\0\0\0" + b"\0\0\0\x02"
    restore_refused(damaged(data, pc_hdr, 3, 17, "pic.ftvm"), "'pc'",
                    "pic_master")
    # "cpu/pc" version 1, lapic_len, the LAPIC page, then mp_state (be32):
    # 9 is no x86 vCPU's.
    sub = b"\x05\x06cpu/pc\0\0\0\x01\0\0\x04\0"
    restore_refused(damaged(data, sub, 1024 + 3, 9, "mp.ftvm"),
                    "cpu 0: MP state 9")
    # A VM saved without a network device, restored with one: its
    # virtio-net would have no state.
    restore_refused(ckpt, "no 'pci' section",
                    net="dgram:127.0.0.1:47303,127.0.0.1:47304")


NET_NS_ADDR = "10.78.0.1/24"
NET_GUEST = "10.78.0.2"
NET_TAP = "ftvm-ln0"
NET_BRIDGE = "ftvm-lbr0"
PAIR_TAPS = ("ftvm-lp0", "ftvm-ls0")     # the primary's, the secondary's
UDPREQ = os.path.join(HERE, "udpreq.py")


def sh(*argv):
    r = ft.run(list(argv), capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "%s exited %d: %s%s" % (" ".join(argv),
                                                     r.returncode, r.stdout,
                                                     r.stderr))


def make_netns(taps=(NET_TAP,)):
    """A namespace with the TAP devices (up); one holds NET_NS_ADDR, more
    are the ports of a bridge that holds it (a primary's and a
    secondary's, as two hosts' on one segment)."""
    if os.geteuid() != 0:
        skip("a TAP device in a network namespace needs root")
    if not shutil.which("ip") or not os.path.exists("/dev/net/tun"):
        skip("no `ip` (iproute2) or no /dev/net/tun")
    ns = "ftvm-lnet-%d-%04x" % (os.getpid(), random.getrandbits(16))

    def delete():
        for p in ft.procs:
            p.kill9()
        ft.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    r = ft.run(["ip", "netns", "add", ns], capture_output=True, text=True,
               timeout=30)
    if r.returncode != 0:
        skip("cannot create a network namespace: %s" % r.stderr.strip())
    ft.cleanups.append(delete)
    ipn = ["ip", "netns", "exec", ns]
    for tap in taps:
        sh(*ipn, "ip", "tuntap", "add", "dev", tap, "mode", "tap")
        sh(*ipn, "ip", "link", "set", tap, "up")
    holder = taps[0]
    if len(taps) > 1:
        holder = NET_BRIDGE
        sh(*ipn, "ip", "link", "add", holder, "type", "bridge", "stp_state",
           "0")
        for tap in taps:
            sh(*ipn, "ip", "link", "set", tap, "master", holder)
        sh(*ipn, "ip", "link", "set", holder, "up")
    sh(*ipn, "ip", "addr", "add", NET_NS_ADDR, "dev", holder)
    sh(*ipn, "ip", "link", "set", "lo", "up")
    return ns


def udp_requests(ns, tag, n):
    """n requests, one at a time; their counters, each checked answered."""
    r = ft.run(["ip", "netns", "exec", ns, sys.executable, UDPREQ, NET_GUEST,
                "7777", tag, str(n), str(ft.scaled(10))],
               capture_output=True, text=True, timeout=ft.scaled(10) * n + 30)
    check(r.returncode == 0, "udpreq %s: exit %d:\n%s%s" % (
        tag, r.returncode, r.stdout, r.stderr))
    rows = [l.split() for l in r.stdout.splitlines()]
    check(len(rows) == n, "udpreq %s: %d answers of %d" % (tag, len(rows), n))
    ms = sorted(float(x[2]) for x in rows)
    log("udp %s: %d requests answered; round trip median %.2f ms, max %.2f "
        "ms" % (tag, n, ms[len(ms) // 2], ms[-1]))
    return [int(x[1]) for x in rows]


def case_net():
    can_boot_linux()
    ns = make_netns()
    kernel, initrd = guest_files()
    sock = os.path.join(ft.tmp, "ctl.sock")
    ckpt = os.path.join(ft.tmp, "linux-net.ftvm")
    t0 = time.monotonic()
    p = ft.Proc("linux", [FTVM, "run", "--kernel", kernel, "--initrd", initrd,
                          "--cmdline", CMDLINE % ("udp ftvm_ip=%s/24" %
                                                  NET_GUEST),
                          "--mem", "256M", "--net", "tap:" + NET_TAP,
                          "--control", sock], netns=ns,
                stdin=subprocess.PIPE)
    wait_marker(p, t0)
    def eth0(line):
        check("can't find device 'eth0'" not in line and
              "virtio_net: probe" not in line,
              "the guest has no eth0:\n" + p.out())
        return "ftvm-linux: eth0 " + NET_GUEST in line
    p.wait_line(eth0, 60, "eth0 configured (virtio-net found)")
    p.wait_line(lambda l: "udpsvc: listening" in l, 60, "the UDP service")
    c = udp_requests(ns, "a", 20)
    check(c == list(range(1, 21)), "the counters %r: each request served "
          "once, in order, expected 1..20" % c)
    # A request arriving while the VM is paused waits in the backend's
    # queue, which the checkpoint carries ("ftvm-net"): the restored
    # guest answers it.
    ft.ftvmctl_json(FTVMCTL, sock, "pause")
    log("paused")
    rx0 = ft.ftvmctl_json(FTVMCTL, sock, "status")["net"]["rx_frames"]
    held = ft.Proc("udpreq-held", ["ip", "netns", "exec", ns, sys.executable,
                                   UDPREQ, NET_GUEST, "7777", "p", "1",
                                   str(ft.scaled(60))])
    wait_until(lambda: ft.ftvmctl_json(FTVMCTL, sock, "status")["net"]
               ["rx_frames"] > rx0, 30, "the paused VM's backend queueing "
               "the request")
    log("request queued")
    st = ft.ftvmctl_json(FTVMCTL, sock, "save", ckpt)
    log("save: %d bytes, guest paused %.2f ms" % (st["bytes"], st["pause_ms"]))
    p.kill9()

    t = time.monotonic()
    sock2 = os.path.join(ft.tmp, "ctl2.sock")
    r = ft.Proc("restore", [FTVM, "restore", ckpt, "--net", "tap:" + NET_TAP,
                            "--control", sock2],
                netns=ns, stdin=subprocess.PIPE)
    log("restore started")
    rc = held.wait(70)
    check(rc == 0 and held.out().split()[:2] == ["p-0", "21"],
          "the request queued at the save: exit %s, %r; expected p-0 "
          "answered with 21" % (rc, held.out()))
    log("restore: ftvm restore started -> the queued request answered: "
        "%.1f s" % (time.monotonic() - t))
    # Running (its TAP attached: a request sent before is lost, and
    # udpreq does not resend).
    ask(r, "B", "7*8")
    c = udp_requests(ns, "b", 5)
    check(c == list(range(22, 27)), "the counters after the restore %r; "
          "expected 22..26 (the service's count carried on)" % c)
    check(not any(MARKER_RE.search(l) for l in r.lines()),
          "the restored guest booted again:\n" + r.out())
    r.kill9()

    # "pci" 0, version 2: the address register (4), the bridge (7), the
    # virtio-net function (7), feature selects (8), driver features (8),
    # status, generation, queue select (2), ISR, level, then the receive
    # queue's size (be16 256): 259 is no power of two.
    pci_hdr = b"\x03pci" + b"\0\0\0\0" + b"\0\0\0\x02"
    with open(ckpt, "rb") as f:
        data = f.read()
    # The file without --net: it holds a network device.
    restore_refused(ckpt, "give --net")
    restore_refused(damaged(data, pci_hdr, 41, 3, "queue.ftvm"),
                    "virtio-net: queue 0: size 259",
                    net="dgram:127.0.0.1:47301,127.0.0.1:47302")


DG_GUEST_MAC = bytes.fromhex("02465456de01")
DG_PEER_MAC = bytes.fromhex("02465456de0a")
DG_GUEST_IP = bytes([10, 79, 0, 2])
DG_PEER_IP = bytes([10, 79, 0, 1])


def ip_checksum(data):
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(payload):
    """An Ethernet frame with IPv4/UDP from the peer's port 40000 to 7777
    (no UDP checksum, which IPv4 allows)."""
    udp = struct.pack("!HHHH", 40000, 7777, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17,
                     0, DG_PEER_IP, DG_GUEST_IP)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    return DG_GUEST_MAC + DG_PEER_MAC + b"\x08\x00" + ip + udp


def arp_reply(frame):
    """The answer to an ARP request for the peer's address, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06" or \
            frame[20:22] != b"\x00\x01" or frame[38:42] != DG_PEER_IP:
        return None
    sha, spa = frame[22:28], frame[28:32]
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + DG_PEER_MAC + \
        DG_PEER_IP + sha + spa
    return sha + DG_PEER_MAC + b"\x08\x06" + arp


def udp_payload(frame):
    """The UDP payload of an IPv4/UDP frame from the guest, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17 \
            or frame[26:30] != DG_GUEST_IP:
        return None
    ihl = (frame[14] & 0xF) * 4
    udp = frame[14 + ihl:]
    return udp[8:struct.unpack("!H", udp[4:6])[0]]


def dgram_request(sock, rid):
    """Sends "RID please"; answers ARP meanwhile; returns the reply's
    words, or fails at the deadline."""
    sock.send(udp_frame(("%s please" % rid).encode()))
    deadline = time.monotonic() + ft.scaled(10)
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.5)
        if not r:
            continue
        frame = sock.recv(2048)
        reply = arp_reply(frame)
        if reply:
            sock.send(reply)
            continue
        payload = udp_payload(frame)
        if payload is not None:
            return payload.decode(errors="replace").split()
    check(False, "no answer to %s in %.0f s" % (rid, ft.scaled(10)))


def case_net_dgram():
    can_boot_linux()
    kernel, initrd = guest_files()
    guest_sock = os.path.join(ft.tmp, "guest.sock")
    peer_sock = os.path.join(ft.tmp, "peer.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(peer_sock)
    t0 = time.monotonic()
    p = ft.Proc("linux", [FTVM, "run", "--kernel", kernel, "--initrd", initrd,
                          "--cmdline", CMDLINE % "udp ftvm_ip=10.79.0.2/24",
                          "--mem", "256M", "--mac", DG_GUEST_MAC.hex(":"),
                          "--net", "dgram:%s,%s" % (guest_sock, peer_sock)],
                stdin=subprocess.PIPE)
    wait_marker(p, t0)
    p.wait_line(lambda l: "udpsvc: listening" in l, 60, "the UDP service")
    sock.connect(guest_sock)
    for i in range(10):
        rid = "d-%d" % i
        words = dgram_request(sock, rid)
        check(words == [rid, "ok", str(i + 1)], "%s answered %r; expected "
              "%s ok %d" % (rid, words, rid, i + 1))
    log("dgram: 10 requests answered once each, in order")
    p.kill9()
    sock.close()


LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")


def spawn_secondary(name, failure, *extra, netns=None):
    """`ftvm secondary` on a free loopback port, its stdin a pipe (the
    console once it runs): (Proc, control socket, "host:port")."""
    sock = os.path.join(ft.tmp, name + ".sock")
    p = ft.Proc(name, [FTVM, "secondary", "--listen", "127.0.0.1:0",
                       "--control", sock, "--failure-timeout", failure,
                       "--insecure"] + list(extra),
                netns=netns, stdin=subprocess.PIPE)
    m = p.wait_err(LISTEN_RE, ft.scaled(30), "listening")
    return p, sock, "%s:%s" % m.groups()


def wait_running(sock, what):
    """The status of a secondary once it runs the VM (failed over)."""
    def live():
        st = ft.ftvmctl_json(FTVMCTL, sock, "status")
        return st if st["state"] == "running" else None
    return wait_until(live, 60, what)


def failover_run(i, rng, vcpus, reprotect):
    kernel, initrd = guest_files()
    psock = os.path.join(ft.tmp, "pri%d.sock" % i)
    failure = "%dms" % round(ft.scaled(1000))
    sec, ssock, addr = spawn_secondary("sec%d" % i, failure)
    t0 = time.monotonic()
    pri = ft.Proc("pri%d" % i, [FTVM, "primary", "--kernel", kernel,
                                "--initrd", initrd, "--cmdline",
                                CMDLINE % "shell", "--mem", "256M",
                                "--vcpus", str(vcpus),
                                "--secondary", addr,
                                "--control", psock, "--failure-timeout",
                                failure, "--insecure"],
                  stdin=subprocess.PIPE)
    check(wait_marker(pri, t0) == vcpus, "%d vCPU(s) expected:\n%s"
          % (vcpus, pri.out()))
    pri.wait_line(lambda l: "a shell on the console" in l, 30, "the shell")
    st = ft.ftvmctl_json(FTVMCTL, psock, "status")
    check(st["state"] == "active", "the primary is %r, not active"
          % st["state"])
    b = st["bringup"]
    log("bring-up: %d bytes, %d pages, %d passes, %.0f ms"
        % (b["bytes"], b["pages"], b["passes"], b["ms"]))
    type_line(pri, "i=0; while :; do echo ftvm-linux: count $i; "
              "i=$((i + 1)); sleep 1; done &")
    wait_until(lambda: len(counts_of(pri)) >= 2, 60, "the primary's "
               "counter, released through output commit")
    time.sleep(rng.uniform(0, 3))       # the random moment
    st = ft.ftvmctl_json(FTVMCTL, psock, "status")
    acked = st["checkpoint"]["last_acked"]
    log("checkpoints: %d acked at %.1f/s; pause p50 %.2f ms p99 %.2f ms "
        "max %.2f ms; package p50 %d bytes p99 %d max %d; %d dirty pages "
        "p50" % (st["checkpoint"]["acked"], st["checkpoint"]["rate_per_s"],
                 st["pause_ms"]["p50"], st["pause_ms"]["p99"],
                 st["pause_ms"]["max"], st["package_bytes"]["p50"],
                 st["package_bytes"]["p99"], st["package_bytes"]["max"],
                 st["dirty_pages"]["p50"]))
    pri.kill9()
    seen = counts_of(pri)
    check(seen == list(range(len(seen))), "the primary's released counter "
          "is not 0..n: %r" % seen)

    s = wait_running(ssock, "the secondary to fail over")
    fo = s["failover"]
    check(fo["reason"] == "primary lost", "failover reason %r"
          % fo["reason"])
    wait_until(lambda: len(counts_of(sec)) >= 2, 60, "the counter on the "
               "secondary")
    after = counts_of(sec)
    check(after == list(range(after[0], after[0] + len(after))),
          "the secondary's counter is not consecutive: %r" % after)
    last = seen[-1]
    check(after[0] > last,
          "the counter line %d came twice: the primary released it and the "
          "secondary printed it again (%r after %r)" % (after[0], after[:3],
                                                      seen[-3:]))
    gap = after[0] - last - 1
    if gap:
        # The lost-ACK race (docs/replication.md): the secondary applied
        # a checkpoint whose ACK the primary had not read, so the lines
        # of that epoch were held, never released, and are not rerun.
        check(gap <= 1 and fo["continued_from"] > acked,
              "%d counter line(s) lost across the failover (primary "
              "released up to %d, the secondary went on at %d) but the "
              "secondary continued from checkpoint %d, already acked (%d)"
              % (gap, last, after[0], fo["continued_from"], acked))
        log("gap of %d line: the lost-ACK race" % gap)
    ask(sec, "B%d" % i, "7*8")
    if reprotect:
        protect_again(sec, ssock, failure, after[0], rng)
    log("run %d (%d vCPUs): the primary released counts 0..%d, the "
        "secondary went on at %d from checkpoint %d (acked before the kill: "
        "%d), failover %.1f ms after it decided" % (i, vcpus, last, after[0],
                                      fo["continued_from"], acked, fo["ms"]))
    sec.kill9()


def protect_again(b, bsock, failure, first, rng):
    """B, now running the VM, protected by a new secondary C (`ftvmctl
    protect`): the survivor replicates the Linux VM it took over; kill -9
    of B, C goes on with the counter."""
    c, csock, caddr = spawn_secondary("c", failure)
    r = ft.run([FTVMCTL, "-s", bsock, "protect", caddr],
               capture_output=True, text=True, timeout=ft.scaled(30))
    check(r.returncode == 0, "ftvmctl protect: exit %d: %s%s"
          % (r.returncode, r.stdout, r.stderr))

    def protected():
        st = ft.ftvmctl_json(FTVMCTL, bsock, "status").get("protection", {})
        return st if st.get("state") == "active" and \
            st.get("checkpoint", {}).get("last_acked", 0) >= 1 else None
    wait_until(protected, 60, "B protected by C")
    n = len(counts_of(b)) + 1 + rng.randint(0, 2)
    wait_until(lambda: len(counts_of(b)) >= n, 60,
               "B's counter going on, protected")
    b.kill9()
    seen = counts_of(b)

    st = wait_running(csock, "C to fail over")
    wait_until(lambda: len(counts_of(c)) >= 1, 60, "the counter on C")
    after = counts_of(c)
    # As for B: the next line, or one more in the lost-ACK race.
    check(seen[-1] < after[0] <= seen[-1] + 2,
          "C went on at %d after B's last %d" % (after[0], seen[-1]))
    ask(c, "C", "6*7")
    log("protected again: B released counts %d..%d, C went on at %d from "
        "checkpoint %d" % (first, seen[-1], after[0],
                           st["failover"]["continued_from"]))
    c.kill9()


def case_failover():
    can_boot_linux()
    seed = int(os.environ.get("FTVM_SEED", random.randrange(1 << 30)))
    log("seed %d (FTVM_SEED to repeat)" % seed)
    rng = random.Random(seed)
    # Runs alternate one vCPU and two (SMP: both LAPICs, the IPIs); with
    # FTVM_LINUX_REPROTECT=1 the last protects the survivor again and
    # kills it in turn.  Both off by default: the guest stopped after a
    # failover in 2 of 7 two-vCPU runs and in 1 of 2 second hops
    # (docs/linux-guests.md, "What is left"), a defect not yet found.
    runs = int(os.environ.get("FTVM_LINUX_RUNS", "1"))
    reprotect = os.environ.get("FTVM_LINUX_REPROTECT") == "1"
    for i in range(runs):
        failover_run(i, rng, 1 + i % 2, reprotect and i == runs - 1)


def case_failover_net():
    """A Linux pair on a bridge: UDP requests answered through a failover."""
    can_boot_linux()
    seed = int(os.environ.get("FTVM_SEED", random.randrange(1 << 30)))
    log("seed %d (FTVM_SEED to repeat)" % seed)
    rng = random.Random(seed)
    ns = make_netns(PAIR_TAPS)
    kernel, initrd = guest_files()
    mac = "52:54:00:4c:6e:01"
    psock = os.path.join(ft.tmp, "pri.sock")
    failure = "%dms" % round(ft.scaled(1000))
    sec, ssock, addr = spawn_secondary("sec", failure, "--net",
                                       "tap:" + PAIR_TAPS[1], netns=ns)
    t0 = time.monotonic()
    pri = ft.Proc("pri", [FTVM, "primary", "--kernel", kernel, "--initrd",
                          initrd, "--cmdline",
                          CMDLINE % ("udp ftvm_ip=%s/24" % NET_GUEST),
                          "--mem", "256M", "--net", "tap:" + PAIR_TAPS[0],
                          "--mac", mac, "--secondary", addr,
                          "--control", psock, "--failure-timeout", failure,
                          "--insecure"], netns=ns, stdin=subprocess.PIPE)
    wait_marker(pri, t0)
    pri.wait_line(lambda l: "udpsvc: listening" in l, 60, "the UDP service")
    st = ft.ftvmctl_json(FTVMCTL, psock, "status")
    check(st["state"] == "active", "the primary is %r, not active"
          % st["state"])
    n = 60
    kill_after = rng.randint(5, 25)
    retry = ft.scaled(0.5)
    client = ft.Proc("client", ["ip", "netns", "exec", ns, sys.executable,
                                UDPREQ, NET_GUEST, "7777", "f", str(n),
                                str(ft.scaled(60)), str(retry)])

    def answers():
        return [l.split() for l in client.lines()]
    wait_until(lambda: len(answers()) >= kill_after or
               (not client.alive() and ft.fail(client.dump())), 120,
               "%d requests answered by the primary" % kill_after)
    pri.kill9()
    before = len(answers())
    log("killed the primary after %d requests were answered" % before)

    s = wait_running(ssock, "the secondary to fail over")
    rc = client.wait(130)       # scaled: past the client's own deadline
    rows = answers()
    check(rc == 0 and len(rows) == n, "the client: exit %d, %d answers of "
          "%d:\n%s" % (rc, len(rows), n, client.dump()))
    counters = [int(r[1]) for r in rows]
    # Each answer's counter above the one before: an answer the client
    # saw was released only once its checkpoint was on the secondary, so
    # the secondary's service counts on from at least there; a request
    # served by the primary but held (the answer never released) is
    # served again, a higher count.
    check(all(b > a for a, b in zip(counters, counters[1:])),
          "the service's counter went back across the failover: %r"
          % counters)
    resent = sum(int(r[3]) - 1 for r in rows)
    worst = max(float(r[2]) for r in rows)
    log("failover from checkpoint %d in %.1f ms; %d requests answered by "
        "the primary, %d after; %d resends; the longest request took "
        "%.0f ms; counters %d..%d" % (
            s["failover"]["continued_from"], s["failover"]["ms"], before,
            n - before, resent, worst, counters[0], counters[-1]))
    check(s["failover"]["announced"] >= 1, "no self-announce sent")
    ask(sec, "N", "6*7")


def case_failover_disk():
    can_boot_linux()
    seed = int(os.environ.get("FTVM_SEED", random.randrange(1 << 30)))
    log("seed %d (FTVM_SEED to repeat)" % seed)
    kill_after = random.Random(seed).randrange(1000, 3001)
    in_image_dir(lambda d: failover_disk_case(d, kill_after))


def failover_disk_case(d, kill_after):
    kernel, initrd = guest_files()
    a, b = os.path.join(d, "a.img"), os.path.join(d, "b.img")
    for img in (a, b):
        with open(img, "wb") as f:
            f.truncate(64 << 20)
    psock = os.path.join(ft.tmp, "pri.sock")
    failure = "%dms" % round(ft.scaled(1000))
    sec, ssock, addr = spawn_secondary("sec", failure, "--disk", b)
    t0 = time.monotonic()
    pri = ft.Proc("pri", [FTVM, "primary", "--kernel", kernel, "--initrd",
                          initrd, "--cmdline", CMDLINE % "disk", "--mem",
                          "256M", "--disk", a, "--secondary", addr,
                          "--control", psock, "--failure-timeout", failure,
                          "--insecure"], stdin=subprocess.PIPE)
    wait_marker(pri, t0)
    pri.wait_line(lambda l: "a shell on the console" in l, 60, "the shell")
    sh_ok(pri, "mkfs", "/sbin/mkfs.ext4 -q -F /dev/vda", 300)
    sh_ok(pri, "mount", "mount -t ext4 /dev/vda /mnt")
    type_line(pri, "(i=0; while :; do echo $i >>/mnt/log; i=$((i + 1)); "
              "[ $((i % 500)) = 0 ] && echo ftvm-linux: wrote $i; done) &")
    wait_until(lambda: wrote(pri) >= kill_after, 300, "%d lines written "
               "on the primary" % kill_after)
    st = ft.ftvmctl_json(FTVMCTL, psock, "status")
    pri.kill9()
    before = wrote(pri)
    log("killed the primary with %d+ lines released; its status: %s"
        % (before, json.dumps(st.get("disk", st.get("state")))))

    s = wait_running(ssock, "the secondary to fail over")
    log("failover in %.1f ms" % s["failover"]["ms"])
    ask(sec, "B", "7*8", timeout=120)
    check_log_goes_on(sec, before, 300, "the failover",
                      "%d+ released by the primary" % before)
    sec.kill9()
    res = ft.run(["e2fsck", "-fn", b], capture_output=True, text=True,
                 timeout=ft.scaled(120))
    check(res.returncode == 0, "the host's e2fsck -fn of the copy: exit "
          "%d\n%s%s" % (res.returncode, res.stdout, res.stderr))


CASES = {"boot": case_boot, "smp": case_smp, "refuse": case_refuse,
         "net": case_net, "net-dgram": case_net_dgram,
         "failover": case_failover, "failover-net": case_failover_net,
         "save-restore": case_save_restore, "ckpt-bad": case_ckpt_bad,
         "disk": case_disk, "disk-restore": case_disk_restore,
         "failover-disk": case_failover_disk}


def main():
    ft.run_case(sys.argv[1], CASES[sys.argv[1]], "linux")


if __name__ == "__main__":
    main()
