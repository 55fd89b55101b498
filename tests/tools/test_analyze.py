#!/usr/bin/env python3
"""Every stream ftvm writes reads with a reader that follows QEMU's rules.

    test_analyze.py CASE FTVM FTVMCTL GEN_CORPUS GEN_STREAMS GUEST_DIR

analyze_stream.py (beside this file) reads a stream as QEMU's reader does:
every START or FULL section other than RAM through its entry in the VM
description, field by field, to its footer.  Each case runs it as a user
would and checks what it read against independent figures: `ftvm inspect`
(a decoder written in C, from the same description), a CRC-32 computed
here over the bytes each ftvm-ckpt trailer covers, the counts recorded
for QEMU's own streams in tests/qemu/*.expect.

  streams          no KVM: the fuzz seeds (gen_corpus), a checkpoint file
                   and a replication stream with all of ftvm's own sections
                   (gen_streams), QEMU 7.2's streams; and that the reader
                   fails loudly, naming the section, where a section has no
                   description or the description disagrees with the bytes
  kvm-save         `ftvm run` with two vCPUs and a NIC: `ftvmctl save FILE`
                   while paused with two received frames of different
                   lengths queued, then `ftvmctl checkpoint` (--checkpoint-
                   dir) until one has an empty queue: every file reads
  kvm-replication  `ftvm primary` and `ftvm secondary` with a recording
                   proxy between them on 127.0.0.1: the captured stream
                   reads with the description of the secondary's `ftvmctl
                   save` and of the primary's after stop-replication

Exit 0 pass, 1 fail, 77 skipped (no usable /dev/kvm for a kvm-* case;
with FTVM_REQUIRE_KVM=1 that is a failure instead).
"""
import json
import os
import re
import socket
import sys
import threading
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ANALYZE = os.path.join(HERE, "analyze_stream.py")
QEMU_DIR = os.path.join(HERE, "..", "qemu")
sys.path.insert(0, HERE)
import analyze_stream  # noqa: E402  (for rewriting descriptions only)

sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ftvmtest as ft  # noqa: E402
from ftvmtest import Failure, log, needs_kvm, wait_until  # noqa: E402

ftvm = ftvmctl = gen_corpus = gen_streams = guests = None
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        raise Failure(what)


# ---- the reader, and what it read ----

def analyze(path, *opts):
    """(exit status, parsed --json output or None, stderr)."""
    r = ft.run([sys.executable, ANALYZE, "--json", *opts, path],
                       capture_output=True, text=True, timeout=300)
    return r.returncode, json.loads(r.stdout) if r.returncode == 0 else None, \
        r.stderr


def read_ok(path, *opts):
    rc, res, err = analyze(path, *opts)
    check(rc == 0, "analyze_stream %s %s: exit %d: %s"
          % (" ".join(opts), path, rc, err))
    return res


def read_fails(path, want, *opts):
    rc, _, err = analyze(path, *opts)
    check(rc == 1 and want in err, "analyze_stream %s %s: exit %d, "
          "expected 1 and %r, got: %s" % (" ".join(opts), path, rc, want,
                                         err))
    return err


def framing(res):
    """Where each record starts and ends: what two readings must share."""
    return [(r["offset"], r["type"], r.get("name"), r.get("end"))
            for r in res["records"]]


def qemu_only_agrees(path, res):
    """QEMU's rules alone (no length_from) find the same records."""
    check(framing(read_ok(path, "--qemu-only")) == framing(res),
          "%s: read differently by QEMU's rules alone" % path)


def sections(res, name=None):
    return [r for r in res["records"] if "name" in r and
            (name is None or r["name"] == name)]


def description(path):
    _, desc = analyze_stream.find_description(open(path, "rb").read())
    check(desc is not None, "%s ends with no VM description" % path)
    return desc


def described(res, path):
    """Every section but RAM was read through a description entry of its
    name and instance, which the file's description has."""
    names = {(d["name"], d["instance_id"])
             for d in description(path)["devices"]}
    for s in sections(res):
        if s["name"] == "ram":
            check("ram_pages" in s, "ram section %d not read as RAM"
                  % s["section_id"])
            continue
        check((s["name"], s["instance_id"]) in names and "fields" in s,
              "section %s instance %d read without a description"
              % (s["name"], s["instance_id"]))


def with_description(src, dst, edit):
    """Copies src to dst with its description changed by edit(desc)."""
    data = open(src, "rb").read()
    at, desc = analyze_stream.find_description(data)
    edit(desc)
    text = json.dumps(desc).encode()
    open(dst, "wb").write(data[:at] + bytes([6]) +
                          len(text).to_bytes(4, "big") + text)


# ---- cross-checks with ftvm inspect ----

def inspect_json(path, *opts):
    r = ft.run([ftvm, "inspect", "--json", *opts, path],
                       capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, "ftvm inspect %s: exit %d: %s"
          % (path, r.returncode, r.stderr))
    return json.loads(r.stdout)


HEX_CUT = re.compile(r"^([0-9a-f]*)\.\.\. \((\d+) bytes\)$")


def same(mine, theirs):
    """A value this reader read equals what ftvm inspect decoded.  The
    reader shows raw bytes (buffers, timers) as hex, inspect a timer as an
    integer and long buffers cut short; u64 above INT64_MAX as a string."""
    if isinstance(mine, bool) or isinstance(theirs, bool):
        return mine is theirs
    if isinstance(mine, int):
        if isinstance(theirs, str) and theirs.startswith("0x"):
            return mine == int(theirs, 16)
        return mine == theirs
    if isinstance(mine, str) and isinstance(theirs, int):
        v = int(mine, 16) if mine else 0
        bits = 4 * len(mine)
        return theirs in (v, v - (1 << bits))
    if isinstance(mine, str) and isinstance(theirs, str):
        m = HEX_CUT.match(theirs)
        if m:
            return mine.startswith(m.group(1)) and \
                len(mine) // 2 == int(m.group(2))
        return mine == theirs
    if isinstance(mine, list):
        return isinstance(theirs, list) and len(mine) == len(theirs) and \
            all(same(a, b) for a, b in zip(mine, theirs))
    if isinstance(mine, dict):
        return isinstance(theirs, dict) and set(mine) == set(theirs) and \
            all(same(mine[k], theirs[k]) for k in mine)
    return mine == theirs


def cross_check(res, path, *opts):
    """Device fields and RAM page counts agree with ftvm inspect's."""
    ins = inspect_json(path, *opts)
    mine = [s for s in sections(res) if "fields" in s and
            s["name"] != "ftvm-ckpt"]
    theirs = ins["devices"]
    check([(s["name"], s["instance_id"]) for s in mine] ==
          [(d["name"], d["instance_id"]) for d in theirs],
          "%s: sections %r, inspect decoded %r" % (
              path, [s["name"] for s in mine], [d["name"] for d in theirs]))
    for s, d in zip(mine, theirs):
        check(same(s["fields"], d["fields"]),
              "%s: '%s' instance %d: the reader read %s, inspect %s"
              % (path, s["name"], s["instance_id"],
                 json.dumps(s["fields"])[:600],
                 json.dumps(d["fields"])[:600]))
    blocks = {b["name"]: b["length"] for b in ins["ram_blocks"]}
    check(res["ram_blocks"] == blocks, "%s: RAM blocks %r, inspect's %r"
          % (path, res["ram_blocks"], blocks))
    for kind in ("zero", "normal", "compressed", "xbzrle"):
        want = sum(b[kind + "_pages"] for b in ins["ram_blocks"])
        got = res["ram_pages"].get(kind, 0)
        check(got == want, "%s: %d %s pages, inspect counted %d"
              % (path, got, kind, want))
    return ins


# ---- ftvm's own sections ----

def check_trailer(data, rec, start, want_id=None):
    """An ftvm-ckpt trailer: its sum covers the stream (or package) from
    start up to its body, and CRC-32 over those bytes, computed here,
    is the one it carries."""
    f = rec["fields"]
    check(f["covered"] == rec["body_offset"] - start,
          "trailer at %d covers %d bytes, its body starts %d bytes in"
          % (rec["offset"], f["covered"], rec["body_offset"] - start))
    crc = zlib.crc32(data[start:start + f["covered"]])
    check(f["crc"] == crc, "trailer at %d: stored CRC %08x, computed %08x"
          % (rec["offset"], f["crc"], crc))
    if want_id is not None:
        check(f["id"] == want_id, "trailer id %d, expected %d"
              % (f["id"], want_id))


def check_checkpoint_file(path, want_id, min_vcpus=1):
    """A checkpoint file ftvm wrote: read in full with ftvm's extension
    and by QEMU's rules alone, every section described, the trailer last
    and right, the description also covering a replication stream's
    sections; cross-checked with inspect."""
    res = read_ok(path)
    qemu_only_agrees(path, res)
    described(res, path)
    secs = sections(res)
    check(secs[0]["name"] == "ram" and secs[0]["type"] == "START",
          "%s opens with %s" % (path, secs[0]["name"]))
    check(secs[-1]["name"] == "ftvm-ckpt", "%s: the last section is %s"
          % (path, secs[-1]["name"]))
    check(len(sections(res, "ftvm-ckpt")) == 1, "%s: trailers" % path)
    check(res["records"][-1]["type"] == "EOF", "%s: no EOF last" % path)
    check(len(sections(res, "cpu")) >= min_vcpus, "%s: cpus" % path)
    check_trailer(open(path, "rb").read(), secs[-1], 0, want_id)
    names = {d["name"] for d in description(path)["devices"]}
    check({"ftvm-ckpt", "ftvm-vm", "ftvm-pkg"} <= names,
          "%s: ftvm's own sections are not all described: %r"
          % (path, sorted(names)))
    ins = cross_check(res, path)
    check(ins["checkpoints"] and
          ins["checkpoints"][0]["checkpoint_id"] ==
          secs[-1]["fields"]["id"], "%s: inspect's checkpoint %r" %
          (path, ins["checkpoints"]))
    return res


def check_replication(path, desc, mem_size, vcpus, has_net, min_packages):
    """A replication stream: the bring-up, then packages each opening
    with ftvm-pkg and sealed by ftvm-ckpt over the package alone."""
    res = read_ok(path, "--desc", desc)
    described(res, desc)
    data = open(path, "rb").read()
    recs = res["records"]
    top = [r for r in recs if r["depth"] == 0]
    kinds = [r.get("command") or r.get("name") for r in top[:5]]
    start = ["OPEN_RETURN_PATH", "ENABLE_COLO", "ftvm-vm"]
    check(kinds[:4] == start + ["ram"] or
          kinds == start + ["ftvm-colo", "ram"],
          "%s: the bring-up opens with %r" % (path, kinds))
    shape = top[2]["fields"]
    check(shape["mem_size"] == mem_size and shape["vcpus"] == vcpus and
          shape["has_net"] is has_net, "%s: ftvm-vm %r" % (path, shape))
    check(top[-1]["type"] == "EOF", "%s: the stream does not end with EOF"
          % path)
    packages = [r for r in top if r.get("command") == "PACKAGED"]
    check(len(packages) >= min_packages, "%s: %d packages"
          % (path, len(packages)))
    last = 0
    for p in packages:
        inner = [r for r in recs if r["depth"] == 1 and
                 p["payload_offset"] <= r["offset"] <
                 p["payload_offset"] + p["length"]]
        secs = [r for r in inner if "name" in r]
        check(secs[0]["name"] == "ftvm-pkg" and
              secs[-1]["name"] == "ftvm-ckpt" and inner[-1]["type"] == "EOF",
              "package at %d: %r" % (p["offset"],
                                     [r.get("name", r["type"]) for r in inner]))
        hdr = secs[0]["fields"]
        check(hdr["id"] > last and hdr["base"] in (0, last),
              "package %d builds on %d after %d" % (hdr["id"], hdr["base"],
                                                    last))
        check_trailer(data, secs[-1], p["payload_offset"], hdr["id"])
        last = hdr["id"]
    ins = cross_check(res, path, "--desc", desc)
    check([c["checkpoint_id"] for c in ins["checkpoints"]] ==
          [sections(res, "ftvm-pkg")[i]["fields"]["id"]
           for i in range(len(packages))],
          "%s: inspect's checkpoints %r" % (path, ins["checkpoints"]))
    return res


def case_streams():
    d = os.path.join(ft.tmp, "corpus")
    os.mkdir(d)
    ft.run([gen_corpus, d], check=True, timeout=120)
    ft.run([gen_streams, d], check=True, timeout=120)

    for name in ("plain", "compressed", "xbzrle"):
        p = os.path.join(d, name)
        res = read_ok(p)
        qemu_only_agrees(p, res)
        described(res, p)
        cross_check(res, p)
        kind = {"plain": "normal", "compressed": "compressed",
                "xbzrle": "xbzrle"}[name]
        check(res["ram_pages"].get(kind, 0) > 0, "%s: no %s pages"
              % (name, kind))
    res = read_ok(os.path.join(d, "packaged"), "--desc",
                  os.path.join(d, "plain"))
    check({r["depth"] for r in res["records"]} == {0, 1},
          "packaged: depths")

    # ftvm's own sections, in a checkpoint file and a replication stream.
    f = os.path.join(d, "file.ftvm")
    check_checkpoint_file(f, 42, min_vcpus=2)
    rep = os.path.join(d, "replication")
    res = check_replication(rep, f, 64 << 20, 2, True, 2)
    pings = [r["value"] for r in res["records"] if r.get("command") == "PING"]
    check(pings == [7], "replication: PINGs %r" % pings)
    mac = sections(res, "ftvm-vm")[0]["fields"]["mac"]
    check(mac == "525400123456", "ftvm-vm: mac %s" % mac)
    # COLO mode, and the drop notice at the same section id (n + 3): both
    # FULL, so the reader takes each by its own description.
    top = [r for r in res["records"] if r["depth"] == 0]
    names = [r.get("name") for r in top]
    colo = sections(res, "ftvm-colo")
    check(len(colo) == 1 and colo[0]["fields"] == {"mode": 1} and
          names.index("ftvm-colo") == names.index("ftvm-vm") + 1,
          "ftvm-colo: %r" % colo)
    drop = sections(res, "ftvm-drop")
    check(len(drop) == 1 and drop[0]["fields"]["reason"] == 1 and
          drop[0]["section_id"] == colo[0]["section_id"] and
          top[-2] is drop[0], "ftvm-drop: %r" % drop)
    # COLO's input mirror, read by its description: 1524 bytes each.
    frames = [s["fields"] for s in sections(res, "ftvm-colo-in")]
    want = [{"checkpoint": 1, "len": n,
             "frame": (bytes((i + n) & 0xff for i in range(n)) +
                       bytes(1514 - n)).hex()} for n in (60, 1514)]
    check(frames == want, "ftvm-colo-in: %r" % [
        (f.get("checkpoint"), f.get("len")) for f in frames])

    # No description, or one without ftvm's sections: loud, named.
    read_fails(rep, "no VM description")
    read_fails(rep, "section 'ftvm-vm' instance 0 (id 4) has no entry in "
               "the VM description", "--desc", os.path.join(d, "plain"))
    check_undescribed(f)

    for name in ("plain", "compress", "xbzrle"):
        check_qemu_stream(name)


def check_undescribed(f):
    """A section, or a subsection, missing from the description stops the
    reader with a message naming it; so does a description that says a
    field is longer or shorter than it is."""
    def drop(name):
        def edit(desc):
            desc["devices"] = [x for x in desc["devices"]
                               if x["name"] != name]
        return edit

    bad = os.path.join(ft.tmp, "bad.ftvm")
    for name in ("ftvm-ckpt", "console", "cpu"):
        with_description(f, bad, drop(name))
        read_fails(bad, "section '%s' instance 0" % name)
        read_fails(bad, "has no entry in the VM description")

    def nosub(desc):
        for x in desc["devices"]:
            x.pop("subsections", None)
    with_description(f, bad, nosub)
    read_fails(bad, "'console': subsection 'console/pending' has no "
               "description")

    def longer(desc):
        for x in desc["devices"]:
            if x["name"] == "cpu":
                x["fields"][-1]["size"] += 1
    with_description(f, bad, longer)
    read_fails(bad, "section 'cpu': no footer where its body ends")

    def wider(desc):
        for x in desc["devices"]:
            if x["name"] == "ftvm-ckpt":
                x["fields"][2]["size"] = 8
    with_description(f, bad, wider)
    read_fails(bad, "field 'ftvm-ckpt.crc': type uint32 with size 8")


def check_qemu_stream(name):
    path = os.path.join(QEMU_DIR, name + ".qemu")
    want = {}
    for line in open(os.path.join(QEMU_DIR, name + ".expect")):
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            want[parts[0]] = int(parts[1])
    res = read_ok(path, "--qemu-only")
    described(res, path)
    devices = [s for s in sections(res) if s["name"] != "ram"]
    check(len(devices) == want["stream_device_sections"],
          "%s: %d device sections, the walker counted %d"
          % (name, len(devices), want["stream_device_sections"]))
    for kind in ("zero", "normal", "compressed", "xbzrle"):
        got = res["ram_pages"].get(kind, 0)
        check(got == want["stream_%s_pages" % kind],
              "%s: %d %s pages, the walker counted %d"
              % (name, got, kind, want["stream_%s_pages" % kind]))
    check(res["eof_offset"] == want["stream_eof_offset"],
          "%s: EOF at %d" % (name, res["eof_offset"]))
    check(res["machine"] == "pc-i440fx-7.2", "%s: machine %r"
          % (name, res["machine"]))
    cross_check(res, path)


# ---- with KVM ----

def ctl(sock, *args):
    r = ft.run([ftvmctl, "-s", sock, "--json", *args],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, "ftvmctl %s: exit %d: %s"
          % (" ".join(args), r.returncode, r.stderr))
    return json.loads(r.stdout) if r.stdout.strip() else {}


def wait_control(sock, proc):
    def up():
        if proc.p.poll() is not None:
            raise Failure("%s exited (%s)\n%s" % (proc.name, proc.p.returncode,
                                                  proc.dump()))
        if not os.path.exists(sock):
            return None
        r = ft.run([ftvmctl, "-s", sock, "--json", "status"],
                           capture_output=True, text=True, timeout=30)
        return json.loads(r.stdout) if r.returncode == 0 else None
    return wait_until(up, 60, "%s's control socket" % proc.name)


def udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def case_kvm_save():
    needs_kvm()
    sock = os.path.join(ft.tmp, "run.sock")
    ckdir = os.path.join(ft.tmp, "ckpt")
    os.mkdir(ckdir)
    peer = udp_port()
    local = udp_port()
    laddr = "127.0.0.1:%d" % local.getsockname()[1]
    local.close()
    net = "dgram:%s,127.0.0.1:%d" % (laddr, peer.getsockname()[1])
    vm = ft.Proc("run", [ftvm, "run", "--mem", "64M", "--vcpus", "2",
                      "--net", net, "--control", sock, "--checkpoint-dir",
                      ckdir, os.path.join(guests, "counter.elf"),
                      "rate=50"])
    wait_control(sock, vm)
    # Paused, the guest reads nothing: two frames of different lengths
    # wait in its receive queue (a variable array of variable buffers),
    # and a checkpoint saves a paused VM as it is.
    ctl(sock, "pause")
    frames = [bytes(i % 251 for i in range(n)) for n in (60, 301)]
    for frame in frames:
        peer.sendto(frame, ("127.0.0.1", int(laddr.split(":")[1])))
    wait_until(lambda: ctl(sock, "status")["net"]["rx_frames"] >= 2, 30,
               "the NIC to receive two frames")
    saved = os.path.join(ft.tmp, "saved.ftvm")
    ctl(sock, "save", saved)
    res = check_checkpoint_file(saved, 0, min_vcpus=2)
    check(res["ram_blocks"] == {"ram0": 64 << 20},
          "blocks %r" % res["ram_blocks"])
    check(rx_queue(res) == [(len(x), x.hex()) for x in frames],
          "the receive queue holds %r" % rx_queue(res))

    # Running, the guest drops what it receives: a checkpoint with an
    # empty queue (an empty variable array of structs) reads too.
    ctl(sock, "resume")

    def empty_queue():
        ctl(sock, "checkpoint")
        newest = sorted(os.listdir(ckdir))[-1]
        seq = int(re.match(r"ckpt-(\d+)\.ftvm$", newest).group(1))
        res = check_checkpoint_file(os.path.join(ckdir, newest), seq,
                                    min_vcpus=2)
        return rx_queue(res) == []
    wait_until(empty_queue, 120, "a checkpoint with an empty receive queue")
    ctl(sock, "quit")
    vm.wait(30)


def rx_queue(res):
    net_dev = sections(res, "ftvm-net")
    check(len(net_dev) == 1, "no ftvm-net section")
    return [(x["len"], x["data"]) for x in net_dev[0]["fields"]["rxq"]]


class Recorder:
    """A TCP proxy on 127.0.0.1 between a primary and its secondary that
    writes what the primary sends to a file."""

    def __init__(self, secondary, path):
        self.secondary = secondary
        self.out = open(path, "wb")
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.done = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def pump(self, src, dst, record):
        try:
            while True:
                b = src.recv(1 << 16)
                if not b:
                    break
                if record:
                    self.out.write(b)
                dst.sendall(b)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def run(self):
        pri, _ = self.ls.accept()
        host, port = self.secondary.rsplit(":", 1)
        sec = socket.create_connection((host, int(port)))
        back = threading.Thread(target=self.pump, args=(sec, pri, False),
                                daemon=True)
        back.start()
        self.pump(pri, sec, True)
        self.out.close()
        self.done.set()


def case_kvm_replication():
    needs_kvm()
    ssock = os.path.join(ft.tmp, "sec.sock")
    psock = os.path.join(ft.tmp, "pri.sock")
    timeouts = ["--failure-timeout", "5s", "--heartbeat", "100ms"]
    # Plaintext: the stream is recorded on its way through a proxy.
    sec = ft.Proc("sec", [ftvm, "secondary", "--listen", "127.0.0.1:0",
                       "--control", ssock, "--insecure"] + timeouts)
    m = wait_until(lambda: re.search(r"listening on (\S+:\d+)", sec.err()) or
                   (sec.p.poll() is not None and
                    Failure("secondary exited\n" + sec.dump())),
                   60, "the secondary to listen")
    if isinstance(m, Failure):
        raise m
    stream = os.path.join(ft.tmp, "stream")
    proxy = Recorder(m.group(1), stream)
    pri = ft.Proc("pri", [ftvm, "primary", os.path.join(guests, "counter.elf"),
                       "rate=50", "--mem", "64M",
                       "--secondary", proxy.addr, "--control", psock,
                       "--checkpoint-interval", "100ms", "--insecure"] +
                  timeouts)
    wait_control(psock, pri)
    wait_until(lambda: ctl(psock, "status")["checkpoint"]["acked"] >= 3, 120,
               "three checkpoints acknowledged")
    sfile = os.path.join(ft.tmp, "secondary.ftvm")
    ctl(ssock, "save", sfile)
    ctl(psock, "stop-replication")
    check(sec.wait(60) == ft.EXIT_DROPPED, "the secondary's exit status\n" +
          sec.dump())
    check(proxy.done.wait(60), "the primary did not close the connection")
    pfile = os.path.join(ft.tmp, "primary.ftvm")
    ctl(psock, "save", pfile)
    ctl(psock, "quit")
    pri.wait(30)

    check_checkpoint_file(sfile, 0)
    check_checkpoint_file(pfile, 0)
    res = check_replication(stream, sfile, 64 << 20, 1, False, 3)
    check_replication(stream, pfile, 64 << 20, 1, False, 3)
    # stop-replication: the drop notice, read by its description, then EOF.
    top = [r for r in res["records"] if r["depth"] == 0]
    drop = top[-2]
    check(drop.get("name") == "ftvm-drop" and
          drop["fields"]["reason"] == 1 and
          drop["fields"]["generation"] == top[2]["fields"]["generation"] and
          drop["fields"]["pairing"] == top[2]["fields"]["pairing"],
          "the stream does not end with the drop notice: %r" % drop)
    log("captured %d bytes: %d packages" % (
        os.path.getsize(stream),
        len([r for r in res["records"] if r.get("command") == "PACKAGED"])))


CASES = {
    "streams": case_streams,
    "kvm-save": case_kvm_save,
    "kvm-replication": case_kvm_replication,
}


def main():
    global ftvm, ftvmctl, gen_corpus, gen_streams, guests
    if len(sys.argv) != 7 or sys.argv[1] not in CASES:
        print(__doc__, file=sys.stderr)
        return 2
    case, ftvm, ftvmctl, gen_corpus, gen_streams, guests = sys.argv[1:]

    def run():
        CASES[case]()
        log("%d checks" % checks)
    ft.run_case(case, run, "analyze")


if __name__ == "__main__":
    sys.exit(main())
