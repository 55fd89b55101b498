#!/usr/bin/env python3
"""The block hypercalls of freestanding guests: real KVM, real images.

    disk_test.py CASE FTVM GUEST_DIR

Each CASE runs `ftvm run --disk IMG[,readonly]` with a guest image as a
child process (ftvmtest.Proc: own process group, killed at exit) on image
files in a fresh temporary directory, and checks what the guest printed
and what the image holds afterwards.  Exit 0 pass, 1 fail, 77 skipped (no
usable /dev/kvm).

  disklog        disklog count=50 on a zero image: the console printed
                 records 1..50 and the image holds exactly 1..50
                 (tests/lib/disklog.py); count=10 again resumes after 50
                 (1..60); a damaged record 30 ends the prefix at 29, the
                 reader sees the valid records after the gap, and a boot
                 resumes after 29; readonly: EROFS, image unchanged; no
                 disk: refused; a full disk: status 3; rate= paces
  bad-blk        bad_blk's attempts (buffers outside RAM, sectors past the
                 end, sector + count wrapping, huge counts, a struct
                 outside RAM) on a read-write disk, a readonly one and no
                 disk: each gets the status docs/hypercall-abi.md gives,
                 the struct outside RAM stops the VM naming it, and the
                 image changes in sector 1 only (the one good write), or
                 not at all when readonly
  udpkv-persist  udpkv persist=1 over the datagram backend: PUTs, an
                 overwrite and a DEL, kill -9, a second VM on the same
                 image GETs every key back; a record torn by a crash is
                 skipped and a key found twice keeps the newer record;
                 persist=1 without a disk, on a readonly disk or on a disk
                 holding something else refuses to start and leaves the
                 image alone

No traffic leaves the temporary directory (UNIX datagram sockets).
"""
import hashlib
import os
import re
import socket
import struct
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
import disklog  # noqa: E402
import ftvmtest as ft  # noqa: E402
from ftvmtest import check, fail, log, needs_kvm, wait_until  # noqa: E402
from net_udpkv import GUEST_MAC, PORT, udp_frame, udp_payload  # noqa: E402

EXIT_GUEST_FAULT = 121
SECTOR = 512

ftvm = guests = None


def image(name, size, content=None):
    path = os.path.join(ft.tmp, name)
    with open(path, "wb") as f:
        if content is None:
            f.truncate(size)
        else:
            f.write(content)
    return path


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_guest(name, args, disk=None, status=0, mem="64M"):
    """`ftvm run` to its end; checks the exit status; the Proc."""
    argv = [ftvm, "run", "--mem", mem]
    if disk:
        argv += ["--disk", disk]
    p = ft.Proc(name, argv + [os.path.join(guests, args[0])] + args[1:])
    rc = p.wait(60)
    check(rc == status, "%s exited %d, expected %d\n%s" %
          (name, rc, status, p.dump()))
    ft.check_sanitizers(p)
    return p


def has(p, text):
    check(text in p.out(), "%s: stdout lacks %r\n%s" % (p.name, text,
                                                         p.dump()))


# ---- disklog ----

def case_disklog():
    needs_kvm()
    img = image("log.img", 1 << 20)
    p = run_guest("first", ["disklog.elf", "count=50", "rate=0"], img)
    has(p, "disklog: disk sectors=2048 readonly=0")
    has(p, "disklog: resuming after 0")
    has(p, "disklog: done last=50")
    check(disklog.console_records(p.out()) == list(range(1, 51)),
          "console records %s" % disklog.console_records(p.out()))
    check(disklog.check_console(img, p.out()) == list(range(1, 51)),
          "image records %s" % disklog.records(img))
    with open(img, "rb") as f:
        data = f.read()
    check(data[:SECTOR] == bytes(SECTOR), "sector 0 was written")
    check(data[51 * SECTOR:] == bytes(len(data) - 51 * SECTOR),
          "bytes past record 50 were written")

    p = run_guest("again", ["disklog.elf", "count=10", "rate=0"], img)
    has(p, "disklog: resuming after 50")
    check(disklog.console_records(p.out()) == list(range(51, 61)),
          "second run printed %s" % disklog.console_records(p.out()))
    check(disklog.check_console(img, p.out()) == list(range(1, 61)),
          "image records after the second run %s" % disklog.records(img))

    # A damaged record 30: the prefix ends at 29 and the reader reports
    # the valid records behind the gap; a boot resumes after 29.
    with open(img, "r+b") as f:
        f.seek(30 * SECTOR + 100)
        b = f.read(1)
        f.seek(30 * SECTOR + 100)
        f.write(bytes([b[0] ^ 0xFF]))
    check(disklog.records(img) == list(range(1, 30)),
          "after damage: %s" % disklog.records(img)[-3:])
    try:
        disklog.check(img)
        fail("disklog.check accepted valid records after a gap")
    except disklog.DisklogError as e:
        check("sector 31 holds a valid record 31" in str(e), str(e))
        log("reader: %s" % e)
    p = run_guest("mended", ["disklog.elf", "count=5", "rate=0"], img)
    has(p, "disklog: resuming after 29")
    check(disklog.console_records(p.out()) == list(range(30, 35)),
          "mended run printed %s" % disklog.console_records(p.out()))
    check(disklog.check(img) == list(range(1, 61)), "after mending")

    before = digest(img)
    p = run_guest("readonly", ["disklog.elf", "count=3"], img + ",readonly",
                  status=1)
    has(p, "disklog: disk sectors=2048 readonly=1")
    has(p, "disklog: resuming after 60")
    has(p, "disklog: write record 61: EROFS")
    check(disklog.console_records(p.out()) == [], "readonly printed records")
    check(digest(img) == before, "the readonly image changed")

    p = run_guest("nodisk", ["disklog.elf", "count=3"], status=1)
    has(p, "disklog: no disk")

    small = image("small.img", 64 * 1024)
    p = run_guest("full", ["disklog.elf", "rate=0"], small, status=3)
    has(p, "disklog: disk full after 127")
    check(disklog.check_console(small, p.out()) == list(range(1, 128)),
          "full image records %s" % disklog.records(small)[-3:])

    # rate=20: 9 waits of 50 ms between 10 records.
    paced = image("paced.img", 1 << 20)
    t = time.monotonic()
    p = run_guest("paced", ["disklog.elf", "count=10", "rate=20"], paced)
    ms = (time.monotonic() - t) * 1000
    log("10 records at rate=20 took %.0f ms" % ms)
    check(ms >= 400, "10 records at rate=20 in %.0f ms: not paced" % ms)
    check(disklog.check_console(paced, p.out()) == list(range(1, 11)),
          "paced records %s" % disklog.records(paced))


# ---- bad_blk ----

BAD_RW = {
    "info": "0 (OK)", "read": "0 (OK)",
    "read-outside": "-1 (EFAULT)", "read-straddle": "-1 (EFAULT)",
    "read-high": "-1 (EFAULT)",
    "read-past-end": "-7 (ERANGE)", "read-straddle-end": "-7 (ERANGE)",
    "read-wrap": "-7 (ERANGE)",
    "read-huge-count": "-2 (EINVAL)", "read-over-limit": "-2 (EINVAL)",
    "read-empty": "0 (OK)",
    "write-outside": "-1 (EFAULT)", "write-past-end": "-7 (ERANGE)",
    "write-wrap": "-7 (ERANGE)", "write-huge-count": "-2 (EINVAL)",
    "write": "0 (OK)", "flush": "0 (OK)",
}


def bad_rets(p):
    r = {}
    for line in p.lines():
        m = re.match(r"^bad_blk attempt=(\S+) ret=(.*)$", line)
        if m:
            r[m.group(1)] = m.group(2)
    return r


def check_struct_stop(p):
    check(re.search(r"vm: guest stopped: hypercall BLK_WRITE: its 32-byte "
                    r"argument struct at 0x[0-9a-f]+ is not inside guest "
                    r"RAM", p.err()), "no stop message\n" + p.dump())
    check("bad_blk attempt=struct-outside survived" not in p.out(),
          "struct-outside returned\n" + p.dump())


def case_bad_blk():
    needs_kvm()
    content = os.urandom(1 << 20)
    img = image("rw.img", 0, content)
    p = run_guest("rw", ["bad_blk.elf"], img, status=EXIT_GUEST_FAULT)
    check(bad_rets(p) == BAD_RW, "read-write disk: got %s" % bad_rets(p))
    has(p, "bad_blk sectors=2048 readonly=0 sector_size=512 "
           "max_sectors=2048")
    has(p, "bad_blk read crc=%08x" % zlib.crc32(content[:2 * SECTOR]))
    check_struct_stop(p)
    with open(img, "rb") as f:
        after = f.read()
    check(after[SECTOR:2 * SECTOR] == b"\xb1" * SECTOR,
          "the good write is not in sector 1")
    check(after[:SECTOR] == content[:SECTOR] and
          after[2 * SECTOR:] == content[2 * SECTOR:],
          "bytes outside sector 1 changed")

    img = image("ro.img", 0, content)
    p = run_guest("ro", ["bad_blk.elf"], img + ",readonly",
                  status=EXIT_GUEST_FAULT)
    want = dict(BAD_RW)
    for k in want:
        if k.startswith("write"):
            want[k] = "-6 (EROFS)"
    check(bad_rets(p) == want, "readonly disk: got %s" % bad_rets(p))
    has(p, "bad_blk sectors=2048 readonly=1")
    check_struct_stop(p)
    check(digest(img) == hashlib.sha256(content).hexdigest(),
          "the readonly image changed")

    p = run_guest("none", ["bad_blk.elf"], status=EXIT_GUEST_FAULT)
    want = {k: "-4 (ENODEV)" for k in BAD_RW}
    check(bad_rets(p) == want, "no disk: got %s" % bad_rets(p))
    has(p, "bad_blk sectors=0 readonly=0 sector_size=0 max_sectors=0")
    check_struct_stop(p)

    # One attempt alone: the driver's attempt= works for this guest too.
    p = run_guest("one", ["bad_blk.elf", "attempt=read-wrap"], img)
    check(bad_rets(p) == {"read-wrap": "-7 (ERANGE)"}, "%s" % bad_rets(p))
    has(p, "bad_blk done")


# ---- udpkv persist ----

KV_SLOTS = 3073
KV_REC = 3 * SECTOR


def kv_record(key, value, seq):
    r = bytearray(KV_REC)
    r[0:4] = b"UKV1"
    struct.pack_into("<HHQ", r, 4, len(key), len(value), seq)
    r[16:16 + len(key)] = key
    r[80:80 + len(value)] = value
    struct.pack_into("<I", r, KV_REC - 4, zlib.crc32(bytes(r[:KV_REC - 4])))
    return bytes(r)


def kv_slots(path):
    """{slot: (key, value, seq)} of the valid records in an image."""
    with open(path, "rb") as f:
        data = f.read()
    hdr = data[:SECTOR]
    check(hdr[:8] == b"UDPKVDB1" and
          struct.unpack_from("<III", hdr, 8) == (1, KV_SLOTS, 3) and
          struct.unpack_from("<I", hdr, SECTOR - 4)[0] ==
          zlib.crc32(hdr[:SECTOR - 4]), "bad header %r" % hdr[:24])
    out = {}
    for s in range(KV_SLOTS):
        r = data[SECTOR + s * KV_REC:SECTOR + (s + 1) * KV_REC]
        if r[:4] != b"UKV1":
            continue
        klen, vlen, seq = struct.unpack_from("<HHQ", r, 4)
        if struct.unpack_from("<I", r, KV_REC - 4)[0] != \
                zlib.crc32(r[:KV_REC - 4]):
            continue
        out[s] = (r[16:16 + klen], r[80:80 + vlen], seq)
    return out


class Kv:
    """udpkv behind `ftvm run --net dgram:...`: this end is the peer."""

    def __init__(self, name, img, extra=()):
        g = os.path.join(ft.tmp, name + "-guest.sock")
        peer = os.path.join(ft.tmp, name + "-peer.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(peer)
        ft.cleanups.append(self.sock.close)
        argv = [ftvm, "run", "--mem", "32M", "--net",
                "dgram:%s,%s" % (g, peer), "--mac", GUEST_MAC.hex(":")]
        if img:
            argv += ["--disk", img]
        self.p = ft.Proc(name, argv + [os.path.join(guests, "udpkv.elf"),
                                       "ip=10.0.0.2", "port=%d" % PORT] +
                         list(extra))
        self.guest = g
        self.n = 0

    def ready(self):
        self.p.wait_line(lambda l: l.startswith("udpkv ready"), 20,
                         "udpkv ready")
        self.sock.connect(self.guest)

    def req(self, text, want):
        self.n += 1
        rid = "r%d" % self.n
        self.sock.send(udp_frame(("%s %s" % (rid, text)).encode()))
        deadline = time.monotonic() + ft.scaled(10)
        while time.monotonic() < deadline:
            self.sock.settimeout(0.5)
            try:
                frame = self.sock.recv(2048)
            except socket.timeout:
                continue
            reply = udp_payload(frame)
            if reply is None or not reply.startswith(rid.encode() + b" "):
                continue
            got = reply[len(rid) + 1:]
            check(got == want.encode(), "%r answered %r, expected %r\n%s" %
                  (text, got, want, self.p.dump()))
            return
        fail("no reply to %r\n%s" % (text, self.p.dump()))


def stopped(kv, status):
    """kv's process exited with status (or was killed: None); checked for
    sanitizer reports."""
    if status is None:
        kv.p.kill9()
    else:
        rc = kv.p.wait(30)
        check(rc == status, "%s exited %s, expected %d\n%s" %
              (kv.p.name, rc, status, kv.p.dump()))
    ft.check_sanitizers(kv.p)


def case_udpkv_persist():
    needs_kvm()
    img = image("kv.img", 8 << 20)
    kv = Kv("first", img, ["persist=1"])
    kv.ready()
    has(kv.p, "udpkv persist: formatted the disk (3073 slots)")
    for i in range(30):
        kv.req("PUT key%d value %d with spaces" % (i, i), "OK\n")
    kv.req("PUT key0 replaced", "OK\n")
    kv.req("DEL key3", "OK\n")
    kv.req("DEL key3", "NOTFOUND\n")
    kv.req("PUT empty ", "OK\n")
    kv.req("GET key0", "VALUE replaced\n")
    t = time.monotonic()
    for i in range(20):
        kv.req("PUT timed%d %d" % (i, i), "OK\n")
    log("20 persisted PUT round trips in %.1f ms" %
        ((time.monotonic() - t) * 1000))
    stopped(kv, None)

    want = {b"key%d" % i: b"value %d with spaces" % i for i in range(30)}
    want[b"key0"] = b"replaced"
    del want[b"key3"]
    want[b"empty"] = b""
    want.update({b"timed%d" % i: b"%d" % i for i in range(20)})
    slots = kv_slots(img)
    check(sorted(k for k, v, s in slots.values()) == sorted(want) and
          all(want[k] == v for k, v, s in slots.values()),
          "the image holds %s" % sorted(slots.values())[:5])

    kv = Kv("second", img, ["persist=1"])
    kv.ready()
    has(kv.p, "udpkv persist: loaded %d keys from the disk (0 torn records "
              "skipped, 0 stale removed)" % len(want))
    for k, v in sorted(want.items()):
        kv.req("GET " + k.decode(), "VALUE %s\n" % v.decode())
    kv.req("GET key3", "NOTFOUND\n")
    stopped(kv, None)

    # What a crash can leave: a PUT's new record written but the old one
    # not yet emptied (both present: the higher sequence number wins),
    # and a record torn half-way (skipped).
    slots = kv_slots(img)
    top = max(s for _, _, s in slots.values())
    free = [s for s in range(KV_SLOTS) if s not in slots]
    with open(img, "r+b") as f:
        f.seek(SECTOR + free[0] * KV_REC)
        f.write(kv_record(b"key1", b"newer", top + 1))
        f.seek(SECTOR + free[1] * KV_REC)
        f.write(kv_record(b"key2", b"older", 0))
        torn = bytearray(kv_record(b"key4", b"torn", top + 2))
        torn[700] ^= 0xFF
        f.seek(SECTOR + free[2] * KV_REC)
        f.write(torn)
    kv = Kv("third", img, ["persist=1"])
    kv.ready()
    has(kv.p, "udpkv persist: loaded %d keys from the disk (1 torn records "
              "skipped, 2 stale removed)" % len(want))
    kv.req("GET key1", "VALUE newer\n")
    kv.req("GET key2", "VALUE value 2 with spaces\n")
    kv.req("GET key4", "VALUE value 4 with spaces\n")
    stopped(kv, None)
    keys = sorted(k for k, _, _ in kv_slots(img).values())
    check(keys == sorted(want), "after the load the image holds each key "
          "once: %s" % keys)

    # Refusals, each before the VM serves anything, the image untouched.
    kv = Kv("nodisk", None, ["persist=1"])
    stopped(kv, 1)
    has(kv.p, "udpkv: persist=1 needs a disk (ftvm run --disk FILE)")
    before = digest(img)
    kv = Kv("readonly", img + ",readonly", ["persist=1"])
    stopped(kv, 1)
    has(kv.p, "udpkv: persist=1 needs a writable disk")
    check(digest(img) == before, "the readonly image changed")
    other = image("other.img", 0, b"\x01" + bytes((8 << 20) - 1))
    kv = Kv("other", other, ["persist=1"])
    stopped(kv, 1)
    has(kv.p, "udpkv: the disk holds something else")
    check(digest(other) == hashlib.sha256(
        b"\x01" + bytes((8 << 20) - 1)).hexdigest(), "the foreign disk "
          "changed")
    small = image("small.img", 1 << 20)
    kv = Kv("small", small, ["persist=1"])
    stopped(kv, 1)
    has(kv.p, "udpkv: persist=1 needs a disk of at least 9220 sectors")


CASES = {
    "disklog": case_disklog,
    "bad-blk": case_bad_blk,
    "udpkv-persist": case_udpkv_persist,
}


def main():
    global ftvm, guests
    if len(sys.argv) != 4 or sys.argv[1] not in CASES:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    ftvm, guests = (os.path.abspath(a) for a in sys.argv[2:])
    ft.run_case(sys.argv[1], CASES[sys.argv[1]], "disk")


if __name__ == "__main__":
    main()
