#!/usr/bin/env python3
"""Independent reference parser for QEMU migration streams (QEVM v3).

Stdlib only.  Written from QEMU 7.2's migration/savevm.c and migration/ram.c
behaviour and checked against real streams (see README.md).  It exists so
ftvm's C parser can be compared against something that was not written
from the same notes.

Usage:
  ram_blocks.py FILE             print "block NAME LENGTH" lines (from the
                                 first "ram" section's MEM_SIZE record)
  ram_blocks.py --count FILE     walk every ram section and print page
                                 record counts ("stream_* N" lines)
  ram_blocks.py --sections FILE  print a table of every section with its
                                 file offset and size
  ram_blocks.py --sha256 FILE    rebuild the RAM image from the page
                                 records and print "block_sha256 NAME HEX"
  ram_blocks.py --flags FILE     histogram of the be64 record flag values
                                 (low 12 bits) in all ram sections

Walking: header, optional CONFIGURATION (0x07), then sections.  RAM
sections (START/PART/END whose idstr is "ram") are decoded record by record.
Device sections (FULL, 0x04) have no length prefix; they are skipped with the
help of the VM description JSON that follows the EOF byte: for device i the
parser looks for the footer 0x7e+be32(section id) that is immediately
followed by the header of device i+1 (or, for the last device, by the EOF
byte 0x00 at the known position of the JSON trailer).
"""
import hashlib
import json
import signal
import struct
import sys
import zlib

QEMU_VM_FILE_MAGIC = 0x5145564D
QEMU_VM_FILE_VERSION = 3

QEMU_VM_EOF = 0x00
QEMU_VM_SECTION_START = 0x01
QEMU_VM_SECTION_PART = 0x02
QEMU_VM_SECTION_END = 0x03
QEMU_VM_SECTION_FULL = 0x04
QEMU_VM_SUBSECTION = 0x05
QEMU_VM_VMDESCRIPTION = 0x06
QEMU_VM_CONFIGURATION = 0x07
QEMU_VM_COMMAND = 0x08
QEMU_VM_SECTION_FOOTER = 0x7E

F_ZERO = 0x02
F_MEM_SIZE = 0x04
F_PAGE = 0x08
F_EOS = 0x10
F_CONTINUE = 0x20
F_XBZRLE = 0x40
F_HOOK = 0x80
F_COMPRESS_PAGE = 0x100
F_MULTIFD_FLUSH = 0x200  # QEMU >= 8.1 only; not produced by 7.2

PAGE_SIZE = 4096
PAGE_MASK = ~(PAGE_SIZE - 1)
SECTION_NAMES = {1: "START", 2: "PART", 3: "END", 4: "FULL"}


class StreamError(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def need(self, n):
        if self.p + n > len(self.d):
            raise StreamError("truncated at offset %d (need %d bytes)" % (self.p, n))

    def u8(self):
        self.need(1)
        v = self.d[self.p]
        self.p += 1
        return v

    def be16(self):
        self.need(2)
        v = struct.unpack_from(">H", self.d, self.p)[0]
        self.p += 2
        return v

    def be32(self):
        self.need(4)
        v = struct.unpack_from(">I", self.d, self.p)[0]
        self.p += 4
        return v

    def be64(self):
        self.need(8)
        v = struct.unpack_from(">Q", self.d, self.p)[0]
        self.p += 8
        return v

    def raw(self, n):
        self.need(n)
        v = self.d[self.p:self.p + n]
        self.p += n
        return v

    def str8(self):
        return self.raw(self.u8()).decode("latin-1")


def find_vmdesc(data):
    """Return (eof_offset, json_obj) or (None, None).

    Trailer layout: 0x00 (EOF) 0x06 (VMDESCRIPTION) be32 len, len bytes JSON,
    and the JSON runs to the end of the file."""
    i = len(data) - 6
    while i >= 0:
        if data[i] == QEMU_VM_EOF and data[i + 1] == QEMU_VM_VMDESCRIPTION:
            n = struct.unpack_from(">I", data, i + 2)[0]
            if i + 6 + n == len(data):
                return i, json.loads(data[i + 6:].decode("utf-8"))
        i -= 1
    return None, None


def xbzrle_decode(enc, old):
    """QEMU xbzrle_decode_buffer().

    enc is a sequence of (zrun, nzrun, nzrun bytes): zrun = number of bytes
    unchanged since the previous copy of the page, nzrun = number of changed
    bytes, followed by those bytes (the NEW values, copied, not XORed).  Both
    lengths are uleb128 (QEMU uses at most 2 bytes, values < 0x4000).  Only
    the first zrun may be 0; every nzrun is > 0; there is no trailing zrun."""
    out = bytearray(old)
    i = 0
    d = 0

    def uleb():
        nonlocal i
        if i < len(enc) and not enc[i] & 0x80:
            v = enc[i]
            i += 1
            return v
        if i + 1 < len(enc) and not enc[i + 1] & 0x80:
            v = (enc[i] & 0x7F) | (enc[i + 1] << 7)
            i += 2
            return v
        raise StreamError("xbzrle: bad uleb128")

    first = True
    while i < len(enc):
        if len(enc) - i < 2:
            raise StreamError("xbzrle: truncated zrun")
        zrun = uleb()
        if zrun == 0 and not first:
            raise StreamError("xbzrle: zero-length zrun")
        first = False
        d += zrun
        if d > PAGE_SIZE or len(enc) - i < 2:
            raise StreamError("xbzrle: zrun overflows page / truncated nzrun")
        nz = uleb()
        if nz == 0 or d + nz > PAGE_SIZE or i + nz > len(enc):
            raise StreamError("xbzrle: bad nzrun")
        out[d:d + nz] = enc[i:i + nz]
        i += nz
        d += nz
    return bytes(out)


class Stream:
    def __init__(self, data, keep_ram=False):
        self.r = Reader(data)
        self.data = data
        self.keep_ram = keep_ram
        self.blocks = []          # [(name, length)] from MEM_SIZE
        self.ram = {}             # name -> bytearray (only if keep_ram)
        self.sections = []        # (offset, size, type, id, idstr, instance, version)
        self.ids = {}             # section id -> (idstr, instance, version)
        self.counts = dict(zero=0, normal=0, compressed=0, xbzrle=0,
                           mem_size=0, eos=0, multifd_flush=0,
                           zero_nonzero_fill=0, compressed_bytes=0,
                           xbzrle_bytes=0, continue_records=0,
                           named_records=0)
        self.ram_sections = {"START": 0, "PART": 0, "END": 0}
        self.flag_hist = {}       # low-12-bit flags value -> record count
        self.config_name = None
        self.last_block = None
        self.eof_offset, self.vmdesc = find_vmdesc(data)

    # ---- ram section body -------------------------------------------------
    def ram_body(self):
        r = self.r
        c = self.counts
        while True:
            v = r.be64()
            flags = v & ~PAGE_MASK
            addr = v & PAGE_MASK
            self.flag_hist[flags] = self.flag_hist.get(flags, 0) + 1
            if flags & F_MEM_SIZE:
                c["mem_size"] += 1
                total = addr
                seen = 0
                blocks = []
                while seen < total:
                    name = r.str8()
                    length = r.be64()
                    blocks.append((name, length))
                    seen += length
                if seen != total:
                    raise StreamError("MEM_SIZE: block sum %d != total %d" % (seen, total))
                if not self.blocks:
                    self.blocks = blocks
                    self.total = total
                    if self.keep_ram:
                        for n, l in blocks:
                            self.ram[n] = bytearray(l)
                continue
            if flags & F_EOS:
                c["eos"] += 1
                return
            if flags & F_MULTIFD_FLUSH:
                c["multifd_flush"] += 1
                continue
            if flags & F_HOOK:
                raise StreamError("RAM_SAVE_FLAG_HOOK (RDMA) at %d not supported" % (r.p - 8))
            kind = flags & ~F_CONTINUE
            if kind not in (F_ZERO, F_PAGE, F_COMPRESS_PAGE, F_XBZRLE):
                raise StreamError("unknown ram flags 0x%x at offset %d" % (flags, r.p - 8))
            if flags & F_CONTINUE:
                c["continue_records"] += 1
                if self.last_block is None:
                    raise StreamError("CONTINUE with no previous block at %d" % (r.p - 8))
                block = self.last_block
            else:
                c["named_records"] += 1
                block = r.str8()
                self.last_block = block
            if block not in dict(self.blocks):
                raise StreamError("unknown block %r" % block)
            if addr + PAGE_SIZE > dict(self.blocks)[block]:
                raise StreamError("page offset 0x%x beyond block %s" % (addr, block))
            page = None
            if kind == F_ZERO:
                fill = r.u8()
                c["zero"] += 1
                if fill:
                    c["zero_nonzero_fill"] += 1
                page = bytes([fill]) * PAGE_SIZE
            elif kind == F_PAGE:
                page = r.raw(PAGE_SIZE)
                c["normal"] += 1
            elif kind == F_COMPRESS_PAGE:
                n = r.be32()
                blob = r.raw(n)
                c["compressed"] += 1
                c["compressed_bytes"] += n
                page = zlib.decompress(blob)
                if len(page) != PAGE_SIZE:
                    raise StreamError("compressed page inflates to %d bytes" % len(page))
            elif kind == F_XBZRLE:
                enc_flag = r.u8()
                if enc_flag != 0x01:
                    raise StreamError("xbzrle encoding flag 0x%x" % enc_flag)
                n = r.be16()
                blob = r.raw(n)
                c["xbzrle"] += 1
                c["xbzrle_bytes"] += n
                if self.keep_ram:
                    old = bytes(self.ram[block][addr:addr + PAGE_SIZE])
                    page = xbzrle_decode(blob, old)
                else:
                    page = None
            if self.keep_ram and page is not None:
                self.ram[block][addr:addr + PAGE_SIZE] = page

    # ---- whole stream -------------------------------------------------------
    def footer(self, sid):
        r = self.r
        t = r.u8()
        if t != QEMU_VM_SECTION_FOOTER:
            raise StreamError("expected footer 0x7e at %d, got 0x%02x" % (r.p - 1, t))
        fid = r.be32()
        if fid != sid:
            raise StreamError("footer id %d != section id %d" % (fid, sid))

    def skip_device(self, sid, dev_index):
        """Skip the body of a FULL device section using the JSON device list."""
        devs = self.vmdesc["devices"]
        r = self.r
        foot = bytes([QEMU_VM_SECTION_FOOTER]) + struct.pack(">I", sid)
        if dev_index + 1 < len(devs):
            nd = devs[dev_index + 1]
            nm = nd["name"].encode()
            tail = bytes([len(nm)]) + nm + struct.pack(">II", nd["instance_id"], nd["version"])
        else:
            tail = None
        start = r.p
        pos = start
        while True:
            k = self.data.find(foot, pos)
            if k < 0:
                raise StreamError("no footer for device section %d" % sid)
            after = k + 5
            if tail is None:
                if after == self.eof_offset:
                    break
            elif (self.data[after] == QEMU_VM_SECTION_FULL and
                  self.data[after + 5:after + 5 + len(tail)] == tail):
                break
            pos = k + 1
        r.p = k
        return k - start

    def walk(self, stop_at_device=False):
        r = self.r
        if r.be32() != QEMU_VM_FILE_MAGIC:
            raise StreamError("bad magic")
        ver = r.be32()
        if ver != QEMU_VM_FILE_VERSION:
            raise StreamError("bad version %d" % ver)
        self.sections.append((0, 8, "HEADER", None, "QEVM", None, ver))
        dev_index = 0
        while True:
            off = r.p
            t = r.u8()
            if t == QEMU_VM_CONFIGURATION:
                self.config_name = r.raw(r.be32()).decode("latin-1")
                if r.d[r.p] == QEMU_VM_SUBSECTION:
                    raise StreamError("configuration subsections present (not handled)")
                self.sections.append((off, r.p - off, "CONFIGURATION", None,
                                      self.config_name, None, None))
                continue
            if t == QEMU_VM_EOF:
                self.sections.append((off, 1, "EOF", None, None, None, None))
                if r.p < len(r.d):
                    t2 = r.u8()
                    if t2 != QEMU_VM_VMDESCRIPTION:
                        raise StreamError("unexpected 0x%02x after EOF" % t2)
                    n = r.be32()
                    r.raw(n)
                    self.sections.append((off + 1, 5 + n, "VMDESCRIPTION", None,
                                          "json", None, None))
                if r.p != len(r.d):
                    raise StreamError("trailing bytes after vmdesc")
                return
            if t in (QEMU_VM_SECTION_START, QEMU_VM_SECTION_FULL):
                sid = r.be32()
                idstr = r.str8()
                inst = r.be32()
                ver = r.be32()
                self.ids[sid] = (idstr, inst, ver)
            elif t in (QEMU_VM_SECTION_PART, QEMU_VM_SECTION_END):
                sid = r.be32()
                if sid not in self.ids:
                    raise StreamError("PART/END for unknown section id %d" % sid)
                idstr, inst, ver = self.ids[sid]
            else:
                raise StreamError("unknown section type 0x%02x at %d" % (t, off))
            tname = SECTION_NAMES[t]
            if idstr == "ram":
                if t == QEMU_VM_SECTION_FULL:
                    raise StreamError("ram as FULL section not handled")
                self.ram_sections[tname] += 1
                self.ram_body()
            elif t == QEMU_VM_SECTION_FULL:
                if stop_at_device:
                    return
                if self.vmdesc is None:
                    raise StreamError("device section but no vmdesc JSON to skip it")
                d = self.vmdesc["devices"][dev_index]
                if (d["name"], d["instance_id"], d["version"]) != (idstr, inst, ver):
                    raise StreamError("section %r/%d/v%d does not match JSON device %r"
                                      % (idstr, inst, ver, d))
                self.skip_device(sid, dev_index)
                dev_index += 1
            else:
                raise StreamError("iterative section %r (%s) not handled" % (idstr, tname))
            self.footer(sid)
            self.sections.append((off, r.p - off, tname, sid, idstr, inst, ver))


def main(argv):
    mode = "blocks"
    args = argv[1:]
    if args and args[0].startswith("--"):
        mode = args.pop(0)[2:]
    if len(args) != 1 or mode not in ("blocks", "count", "sections", "sha256", "flags"):
        sys.stderr.write(__doc__)
        return 2
    data = open(args[0], "rb").read()
    s = Stream(data, keep_ram=(mode == "sha256"))
    if mode == "blocks":
        s.walk(stop_at_device=True)
        for n, l in s.blocks:
            print("block %s %d" % (n, l))
    elif mode == "count":
        s.walk()
        c = s.counts
        print("stream_zero_pages %d" % c["zero"])
        print("stream_normal_pages %d" % c["normal"])
        print("stream_compressed_pages %d" % c["compressed"])
        print("stream_xbzrle_pages %d" % c["xbzrle"])
        print("stream_ram_start_sections %d" % s.ram_sections["START"])
        print("stream_ram_part_sections %d" % s.ram_sections["PART"])
        print("stream_ram_end_sections %d" % s.ram_sections["END"])
        print("stream_device_sections %d" % sum(1 for x in s.sections if x[2] == "FULL"))
        print("stream_total_ram_bytes %d" % s.total)
        print("stream_eof_offset %d" % s.eof_offset)
        print("stream_file_bytes %d" % len(data))
    elif mode == "sections":
        s.walk()
        print("%-8s %-8s %-13s %-4s %-24s %-4s %s" % ("offset", "size", "type", "id",
                                                   "idstr", "inst", "ver"))
        for off, size, t, sid, idstr, inst, ver in s.sections:
            f = lambda x: "-" if x is None else str(x)
            print("%-8d %-8d %-13s %-4s %-24s %-4s %s" % (off, size, t, f(sid), f(idstr),
                                                       f(inst), f(ver)))
    elif mode == "flags":
        s.walk()
        for fl in sorted(s.flag_hist):
            print("flags 0x%03x %d" % (fl, s.flag_hist[fl]))
    elif mode == "sha256":
        s.walk()
        for n, l in s.blocks:
            print("block_sha256 %s %s" % (n, hashlib.sha256(s.ram[n]).hexdigest()))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        sys.exit(main(sys.argv))
    except StreamError as e:
        sys.stderr.write("ram_blocks.py: %s\n" % e)
        sys.exit(1)
