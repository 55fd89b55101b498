#!/usr/bin/env python3
"""Reads a checkpoint stream the way a reader of QEMU's format does.

usage: analyze_stream.py [--desc FILE] [--qemu-only] [--json] FILE
       analyze_stream.py --dump-desc FILE

A stream reader written for ftvm's tests from the rules QEMU's own reader
(scripts/analyze-migration.py) follows, not from its code, to show that
every stream ftvm writes can be read by one:

- The VM description is the JSON record (0x06, be32 length) that follows
  the stream's EOF byte and ends the file.  With --desc it is taken from
  the end of another file instead (a replication stream has none: read it
  with a checkpoint file of the same VM, docs/stream-format.md).
- A START or FULL section names its owner (id string, instance id).  "ram"
  instance 0 is RAM and "block" instance 0 disk chunks, each read by its
  own record format (QEMU describes neither); every other section
  is read through the description's device entry of the same name and
  instance, field by field ("type", "size", "array_len", "index",
  "struct", "subsections"), so a section the description does not list
  cannot be read past and is an error here.
- A PART or END continues a section an earlier START opened; every
  section ends with its footer (0x7e, be32 section id).
- Commands are QEMU's (savevm.c's table); a PACKAGED command's payload is
  a nested record sequence ending in EOF, read by the same rules.

Stricter than QEMU's reader where ftvm's loader is: footers are required,
a section's version must equal its description's, subsection names must
match, bools are 0 or 1, no byte may follow the description.  ftvm's one
extension to the description, "length_from" (a variable field's count is
an earlier field's value, docs/devstate.md), is followed unless
--qemu-only is given: the count comes from that field, elements described
one by one ("index") are all read with the first one's layout, and a
variable buffer's size is its length field's value, so one description
reads every save of a VM.  With --qemu-only, "size", "array_len" and
"index" are taken as written, as QEMU's reader does (which reads one
element, of nothing, for an "array_len" of 0).

Exit status: 0 read to the end, 1 not readable (the reason, with its byte
offset, on stderr), 2 usage.
"""
import argparse
import json
import sys
import zlib

EOF, START, PART, END, FULL = 0x00, 0x01, 0x02, 0x03, 0x04
SUBSECTION, VMDESCRIPTION, CONFIGURATION, COMMAND = 0x05, 0x06, 0x07, 0x08
FOOTER = 0x7E
MAGIC, VERSION = 0x5145564D, 3
TYPE_NAMES = {START: "START", PART: "PART", END: "END", FULL: "FULL"}

# QEMU's command table (savevm.c, 2019 and later): id -> (name, length);
# only what a precopy or COLO stream can carry is read here.
COMMANDS = {
    1: ("OPEN_RETURN_PATH", 0),
    2: ("PING", 4),
    7: ("PACKAGED", 4),
    8: ("ENABLE_COLO", 0),
    11: ("SWITCHOVER_START", 0),
}

RAM_ZERO, RAM_MEM_SIZE, RAM_PAGE, RAM_EOS = 0x02, 0x04, 0x08, 0x10
RAM_CONTINUE, RAM_XBZRLE, RAM_COMPRESS = 0x20, 0x40, 0x100
RAM_VERSION = 4

BLK_DEVICE_BLOCK, BLK_EOS, BLK_PROGRESS, BLK_ZERO = 0x01, 0x02, 0x04, 0x08
BLK_VERSION, BLK_SECTOR_BITS, BLK_CHUNK = 1, 9, 1 << 20


class Unreadable(Exception):
    def __init__(self, offset, message):
        super().__init__(message)
        self.offset = offset
        self.message = message


class Bytes:
    """A cursor over the stream; every read is bounded by its end."""

    def __init__(self, data, pos=0, end=None):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def fail(self, message, at=None):
        raise Unreadable(self.pos if at is None else at, message)

    def take(self, n, what):
        if n < 0 or self.pos + n > self.end:
            self.fail("the stream ends inside %s (%d bytes wanted, %d left)"
                      % (what, n, self.end - self.pos))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def uint(self, n, what):
        return int.from_bytes(self.take(n, what), "big")

    def counted(self, what):
        return self.take(self.uint(1, what), what).decode("utf-8", "replace")

    def peek(self):
        return self.data[self.pos] if self.pos < self.end else None


# ---- the VM description ----

def find_description(data):
    """The description record at the end of a complete stream: EOF, 0x06,
    be32 length, then exactly that much JSON up to the last byte.
    Returns (offset of the 0x06 byte, parsed JSON), or (None, None)."""
    lo = max(1, len(data) - (64 << 20))
    p = len(data) - 6
    while p >= lo:
        if data[p] == VMDESCRIPTION and data[p - 1] == EOF and \
                data[p + 5:p + 6] == b"{":
            n = int.from_bytes(data[p + 1:p + 5], "big")
            if p + 5 + n == len(data):
                try:
                    return p, json.loads(data[p + 5:].decode("utf-8"))
                except ValueError:
                    pass
        p -= 1
    return None, None


def device_table(desc):
    """(name, instance_id) -> device entry, as QEMU's reader builds it."""
    table = {}
    for dev in desc.get("devices", []):
        if not isinstance(dev.get("fields"), list):
            raise Unreadable(0, "the description of '%s' has no fields"
                             % dev.get("name"))
        table[(dev["name"], dev["instance_id"])] = dev
    return table


def has_variable(sdesc):
    for f in sdesc.get("fields", []):
        if "length_from" in f or (
                isinstance(f.get("struct"), dict) and
                has_variable(f["struct"])):
            return True
    return False


# ---- device sections, field by field ----

INT_TYPES = {}
for _bits in (8, 16, 32, 64):
    for _suffix in ("", " equal", " le"):
        INT_TYPES["uint%d%s" % (_bits, _suffix)] = (_bits // 8, False)
        INT_TYPES["int%d%s" % (_bits, _suffix)] = (_bits // 8, True)


class Fields:
    """Reads section bodies guided by description entries."""

    def __init__(self, ftvm_ext, own_desc):
        self.ftvm_ext = ftvm_ext
        # Struct sizes describe the save the description came with.
        self.check_sizes = own_desc

    def value(self, b, fdesc, size, path):
        ftype = fdesc.get("type", "unknown")
        if ftype in INT_TYPES:
            width, signed = INT_TYPES[ftype]
            if not self.ftvm_ext and size == 0:
                width = 0   # QEMU's phantom element of an empty array
            if size != width:
                b.fail("field '%s': type %s with size %s" % (path, ftype,
                                                              size))
            return int.from_bytes(b.take(width, path), "big", signed=signed)
        if ftype == "bool":
            v = b.uint(1, path)
            if v > 1:
                b.fail("field '%s': bool byte 0x%02x" % (path, v), b.pos - 1)
            return v == 1
        if ftype == "struct" or "struct" in fdesc or "fields" in fdesc:
            # QEMU's "tmp" fields carry their struct's description inline.
            sdesc = fdesc.get("struct", fdesc)
            if not isinstance(sdesc, dict):
                b.fail("field '%s': a struct with no \"struct\" description"
                       % path)
            start = b.pos
            out = self.struct(b, sdesc, path, top=False)
            if self.check_sizes and not has_variable(sdesc) and \
                    b.pos - start != size:
                b.fail("field '%s': the struct took %d bytes, the "
                       "description says %d" % (path, b.pos - start, size))
            return out
        if ftype == "capability":
            return b.counted(path)
        if ftype == "nullptr":
            if b.take(1, path) != b"0":
                b.fail("field '%s': not a null pointer marker" % path)
            return None
        # Anything else (buffer, timer, tmp, unknown) is `size` raw bytes.
        if not isinstance(size, int):
            b.fail("field '%s': type '%s' has no size" % (path, ftype))
        return b.take(size, path).hex()

    def field(self, b, fdesc, out, path):
        name = fdesc.get("name")
        if not isinstance(name, str):
            b.fail("a field with no name in '%s'" % path)
        fpath = path + "." + name
        size = fdesc.get("size")
        count = fdesc.get("array_len")
        index = fdesc.get("index")
        src = fdesc.get("length_from")
        if src is not None and self.ftvm_ext:
            n = out.get(src)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                b.fail("field '%s': its length field '%s' is not an earlier "
                       "count" % (fpath, src))
            if index is not None and index > 0:
                return      # read with element 0's layout, below
            if count == 0 and n > 0:
                if fdesc.get("type") == "struct":
                    b.fail("field '%s': the description comes from a save "
                           "with no element here, so it shows no element's "
                           "layout" % fpath)
                size = INT_TYPES.get(fdesc.get("type"), (1,))[0]
            if index is not None or count is not None:
                count, index = n, None
            else:
                size = n
        elif count == 0:
            count = 1       # QEMU's reader reads one element for 0
        if count is not None:
            val = [self.value(b, fdesc, size, "%s[%d]" % (fpath, i))
                   for i in range(count)]
        else:
            val = self.value(b, fdesc, size, fpath)
        if index is not None:
            # Elements described one by one: one list under the name.
            arr = out.setdefault(name, [])
            if not isinstance(arr, list) or len(arr) != fdesc["index"]:
                b.fail("field '%s': element %s out of order"
                       % (fpath, fdesc["index"]))
            arr.append(val)
        else:
            out[name] = val

    def struct(self, b, sdesc, path, top):
        out = {}
        for fdesc in sdesc.get("fields", []):
            self.field(b, fdesc, out, path)
        for sub in sdesc.get("subsections", []):
            want = sub.get("vmsd_name")
            at = b.pos
            if b.peek() != SUBSECTION:
                b.fail("'%s': subsection '%s' is described but not in the "
                       "stream" % (path, want))
            b.take(1, "a subsection marker")
            name = b.counted("a subsection name")
            version = b.uint(4, "a subsection version")
            if name != want:
                b.fail("'%s': subsection '%s' where the description has "
                       "'%s'" % (path, name, want), at)
            if version != sub.get("version"):
                b.fail("subsection '%s': version %d, the description's is "
                       "%s" % (name, version, sub.get("version")), at)
            out[name] = self.struct(b, sub, name, top=False)
        if top and b.peek() == SUBSECTION:
            at = b.pos
            b.take(1, "a subsection marker")
            b.fail("'%s': subsection '%s' has no description"
                   % (path, b.counted("a subsection name")), at)
        return out


# ---- RAM ----

class Ram:
    """The "ram" section's records (docs/ram-format.md): block list, pages
    by encoding, EOS.  One per section id, so a block named in one PART
    is continued in the next, as QEMU's reader keeps it."""

    key = "ram_pages"

    def __init__(self, page_size, blocks, totals):
        self.page_size = page_size
        self.blocks = blocks        # name -> length, shared by the stream
        self.totals = totals        # encoding -> pages, shared
        self.block = None

    def page(self, b, flags, addr, kind, counts):
        if flags & RAM_CONTINUE:
            if self.block is None:
                b.fail("ram: CONTINUE before any block was named")
        else:
            self.block = b.counted("a RAM block name")
        length = self.blocks.get(self.block)
        if length is None:
            b.fail("ram: page of block '%s', which MEM_SIZE did not list"
                   % self.block)
        if addr + self.page_size > length:
            b.fail("ram: page 0x%x outside block '%s' (0x%x bytes)"
                   % (addr, self.block, length))
        counts[kind] = counts.get(kind, 0) + 1
        self.totals[kind] = self.totals.get(kind, 0) + 1

    def read(self, b, version):
        if version != RAM_VERSION:
            b.fail("ram: version %d (QEMU's reader knows %d)"
                   % (version, RAM_VERSION))
        counts = {}
        mask = self.page_size - 1
        while True:
            at = b.pos
            hdr = b.uint(8, "a RAM record header")
            flags, addr = hdr & mask, hdr & ~mask
            if flags & RAM_MEM_SIZE:
                total = addr
                while total > 0:
                    name = b.counted("a RAM block name")
                    length = b.uint(8, "a RAM block length")
                    if length == 0 or length > total:
                        b.fail("ram: block '%s' of %d bytes in a list of %d"
                               % (name, length, total), at)
                    self.blocks[name] = length
                    total -= length
                flags &= ~RAM_MEM_SIZE
            kind = flags & ~RAM_CONTINUE & ~RAM_EOS
            if kind == RAM_ZERO:
                self.page(b, flags, addr, "zero", counts)
                if b.uint(1, "a zero page's fill byte") != 0:
                    b.fail("ram: a zero page filled with a nonzero byte")
            elif kind == RAM_PAGE:
                self.page(b, flags, addr, "normal", counts)
                b.take(self.page_size, "a page")
            elif kind == RAM_COMPRESS:
                self.page(b, flags, addr, "compressed", counts)
                data = b.take(b.uint(4, "a compressed length"),
                              "a compressed page")
                try:
                    page = zlib.decompress(data)
                except zlib.error as e:
                    b.fail("ram: compressed page 0x%x: %s" % (addr, e))
                if len(page) != self.page_size:
                    b.fail("ram: compressed page 0x%x inflates to %d bytes"
                           % (addr, len(page)))
            elif kind == RAM_XBZRLE:
                self.page(b, flags, addr, "xbzrle", counts)
                if b.uint(1, "an XBZRLE encoding byte") != 1:
                    b.fail("ram: XBZRLE encoding byte is not 0x01")
                b.take(b.uint(2, "an XBZRLE length"), "an XBZRLE page")
            elif kind != 0:
                b.fail("ram: unknown flags 0x%x" % flags, at)
            if flags & RAM_EOS:
                if flags != RAM_EOS or addr:
                    b.fail("ram: EOS header 0x%x" % hdr, at)
                return counts


# ---- disk chunks ----

class Block:
    """The "block" section's records (docs/disk-format.md): chunks of a
    disk, with 1 MiB of data or none (zero), progress, EOS.  The stream
    carries no disk sizes, so a chunk's sector is checked only for where
    a chunk starts."""

    key = "block_chunks"

    def __init__(self, totals):
        self.totals = totals        # disk -> {"data": n, "zero": n}, shared

    def read(self, b, version):
        if version != BLK_VERSION:
            b.fail("block: version %d (QEMU's reader knows %d)"
                   % (version, BLK_VERSION))
        counts = {}
        mask = (1 << BLK_SECTOR_BITS) - 1
        while True:
            at = b.pos
            hdr = b.uint(8, "a block record header")
            flags, sector = hdr & mask, hdr >> BLK_SECTOR_BITS
            unknown = flags & ~(BLK_DEVICE_BLOCK | BLK_EOS | BLK_PROGRESS |
                                BLK_ZERO)
            if unknown:
                b.fail("block: unknown flags 0x%x" % unknown, at)
            if flags in (BLK_DEVICE_BLOCK, BLK_DEVICE_BLOCK | BLK_ZERO):
                name = b.counted("a disk name")
                if not name:
                    b.fail("block: a chunk of a disk without a name", at)
                if sector % (BLK_CHUNK >> BLK_SECTOR_BITS):
                    b.fail("block: sector %d does not start a chunk"
                           % sector, at)
                kind = "zero" if flags & BLK_ZERO else "data"
                if kind == "data":
                    b.take(BLK_CHUNK, "a disk chunk")
                for d in (counts, self.totals):
                    d.setdefault(name, {"data": 0, "zero": 0})[kind] += 1
            elif flags == BLK_PROGRESS and sector <= 100:
                continue
            elif hdr == BLK_EOS:
                return counts
            else:
                b.fail("block: record header 0x%x is no record" % hdr, at)


# ---- the record loop ----

class Reader:
    def __init__(self, data, desc, own_desc, ftvm_ext):
        self.data = data
        self.desc = desc
        self.devices = device_table(desc)
        self.fields = Fields(ftvm_ext, own_desc)
        self.page_size = desc.get("page_size", 4096)
        self.ram_blocks = {}
        self.ram_pages = {}
        self.block_chunks = {}
        self.started = {}           # section id -> (name, instance, reader)
        self.records = []
        self.machine = None

    def header(self, b):
        magic = b.uint(4, "the magic")
        if magic != MAGIC:
            b.fail("magic 0x%08x is not QEVM" % magic, 0)
        version = b.uint(4, "the version")
        if version != VERSION:
            b.fail("stream version %d (this reader knows 3)" % version, 4)
        if b.peek() == CONFIGURATION:
            b.take(1, "the configuration")
            self.configuration(b)

    def configuration(self, b):
        cdesc = self.desc.get("configuration")
        if cdesc:
            self.machine = self.fields.struct(b, cdesc, "configuration",
                                              top=True)
            return
        # Without a description: the machine name, then the subsections
        # QEMU defines, whose layouts are fixed.
        self.machine = b.take(b.uint(4, "the machine name"),
                              "the machine name").decode()
        while b.peek() == SUBSECTION:
            at = b.pos
            b.take(1, "a subsection marker")
            name = b.counted("a subsection name")
            b.uint(4, "a subsection version")
            if name == "configuration/target-page-bits":
                b.uint(4, name)
            elif name == "configuration/capabilities":
                for _ in range(b.uint(4, name)):
                    b.counted(name)
            elif name == "configuration/uuid":
                b.take(16, name)
            else:
                b.fail("configuration: subsection '%s' has no known layout"
                       % name, at)

    def section(self, b, stype, depth, at):
        sid = b.uint(4, "a section id")
        rec = {"offset": at, "depth": depth, "type": TYPE_NAMES[stype],
               "section_id": sid}
        if stype in (START, FULL):
            name = b.counted("a section name")
            instance = b.uint(4, "an instance id")
            version = b.uint(4, "a version")
            rec.update(name=name, instance_id=instance, version=version,
                       body_offset=b.pos)
            if (name, instance) == ("ram", 0):
                reader = Ram(self.page_size, self.ram_blocks,
                             self.ram_pages)
                rec["ram_pages"] = reader.read(b, version)
            elif (name, instance) == ("block", 0):
                reader = Block(self.block_chunks)
                rec[reader.key] = reader.read(b, version)
            else:
                dev = self.devices.get((name, instance))
                if dev is None:
                    b.fail("section '%s' instance %d (id %d) has no entry in "
                           "the VM description: it cannot be read"
                           % (name, instance, sid), at)
                if dev.get("version") != version:
                    b.fail("section '%s': version %d, its description's is "
                           "%s" % (name, version, dev.get("version")), at)
                if stype == START:
                    b.fail("section '%s': a described device sent as START"
                           % name, at)
                reader = None
                rec["fields"] = self.fields.struct(b, dev, name, top=True)
            if stype == START:
                self.started[sid] = (name, instance, reader, version)
        else:
            if sid not in self.started:
                b.fail("%s of section id %d, which no START opened"
                       % (TYPE_NAMES[stype], sid), at)
            name, instance, reader, version = self.started[sid]
            rec.update(name=name, instance_id=instance, body_offset=b.pos)
            rec[reader.key] = reader.read(b, version)
        fat = b.pos
        if b.uint(1, "a section footer") != FOOTER:
            b.fail("section '%s': no footer where its body ends: the body is "
                   "longer than its description says" % rec["name"], fat)
        fid = b.uint(4, "a section footer")
        if fid != sid:
            b.fail("section '%s': footer of section id %d, expected %d"
                   % (rec["name"], fid, sid), fat)
        rec["end"] = b.pos
        self.records.append(rec)

    def command(self, b, depth, at):
        cmd = b.uint(2, "a command")
        length = b.uint(2, "a command length")
        if cmd not in COMMANDS:
            b.fail("command 0x%04x (length %d) is not one a precopy or COLO "
                   "stream carries" % (cmd, length), at)
        name, want = COMMANDS[cmd]
        if length != want:
            b.fail("command %s with length %d, expected %d"
                   % (name, length, want), at)
        rec = {"offset": at, "depth": depth, "type": "COMMAND",
               "command": name}
        self.records.append(rec)
        if name == "PING":
            rec["value"] = b.uint(4, "a PING")
        elif name == "PACKAGED":
            n = b.uint(4, "a package length")
            start = b.pos
            b.take(n, "a package")
            rec.update(length=n, payload_offset=start)
            inner = Bytes(self.data, start, start + n)
            self.records_until_eof(inner, depth + 1)
            if inner.pos != inner.end:
                inner.fail("%d bytes after the package's EOF"
                           % (inner.end - inner.pos))

    def records_until_eof(self, b, depth):
        while True:
            at = b.pos
            t = b.uint(1, "a record type")
            if t == EOF:
                self.records.append({"offset": at, "depth": depth,
                                     "type": "EOF"})
                return at
            if t in TYPE_NAMES:
                self.section(b, t, depth, at)
            elif t == COMMAND:
                self.command(b, depth, at)
            else:
                b.fail("record type 0x%02x" % t, at)


def analyze(path, desc_path=None, ftvm_ext=True):
    data = open(path, "rb").read()
    desc_at, desc = find_description(data)
    own = desc is not None and desc_path is None
    if desc_path:
        _, desc = find_description(open(desc_path, "rb").read())
        if desc is None:
            raise Unreadable(0, "--desc %s: no VM description at its end"
                             % desc_path)
    if desc is None:
        raise Unreadable(len(data), "no VM description at the end of the "
                         "stream (give one with --desc)")
    stream_end = desc_at if desc_at is not None else len(data)
    r = Reader(data, desc, own, ftvm_ext)
    b = Bytes(data, 0, stream_end)
    r.header(b)
    eof = r.records_until_eof(b, 0)
    if b.pos != stream_end:
        b.fail("%d bytes between EOF and %s" % (
            stream_end - b.pos,
            "the VM description" if desc_at is not None else "the end"))
    return {
        "file": path,
        "bytes": len(data),
        "description": desc_path or "stream",
        "machine": r.machine,
        "eof_offset": eof,
        "records": r.records,
        "ram_blocks": r.ram_blocks,
        "ram_pages": r.ram_pages,
        "block_chunks": r.block_chunks,
    }


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--desc", help="take the VM description from FILE")
    ap.add_argument("--qemu-only", action="store_true",
                    help="ignore ftvm's length_from extension")
    ap.add_argument("--json", action="store_true", help="print what was read")
    ap.add_argument("--dump-desc", action="store_true",
                    help="print the file's VM description and stop")
    args = ap.parse_args(argv)
    try:
        if args.dump_desc:
            _, desc = find_description(open(args.file, "rb").read())
            if desc is None:
                raise Unreadable(0, "no VM description at its end")
            json.dump(desc, sys.stdout, indent=1)
            print()
            return 0
        res = analyze(args.file, args.desc, not args.qemu_only)
    except OSError as e:
        print("analyze_stream: %s" % e, file=sys.stderr)
        return 2
    except Unreadable as e:
        print("analyze_stream: %s: byte %d: %s" % (args.file, e.offset,
                                                   e.message),
              file=sys.stderr)
        return 1
    if args.json:
        json.dump(res, sys.stdout, indent=1)
        print()
    else:
        sections = [x for x in res["records"] if "name" in x]
        print("%s: %d records, %d sections, EOF at byte %d, read to the end"
              % (args.file, len(res["records"]), len(sections),
                 res["eof_offset"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
