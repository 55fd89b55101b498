"""disklog: reads what the disklog guest (guest/disklog.c) wrote.

Record N (from 1) is sector N of the image, 512 bytes, little-endian:
magic b"FTVMDLOG", u64 N, 492 bytes of filler, and the CRC-32 (zlib's)
of the first 508 bytes.  The guest prints "disklog: record N" only after
record N's write and flush both succeeded.

    records(path)          [1, 2, ..., K]: the valid prefix of the log
    check(path)            the same, after checking that no valid record
                           lies anywhere past the prefix's first gap
                           (raises DisklogError naming the sector)
    console_records(text)  the N of every "disklog: record N" line, in
                           order (text: a str or a list of lines)
    check_console(path, text, after=None)
                           the image's prefix after checking it against
                           the console: the console's numbers run
                           after+1..P without gaps (after: the "resuming
                           after" line's, else the first number less one),
                           and the image holds at least 1..P

For a failover test: after kill -9 of the primary the survivor's image
must satisfy check(), and hold every record the console printed
(check_console); whether it may hold more than the console printed is the
caller's to decide (a record written and flushed just before the kill,
whose line never reached the console).
"""
import re
import struct
import zlib

SECTOR = 512
MAGIC = b"FTVMDLOG"
_RECORD_RE = re.compile(r"^disklog: record (\d+)$")
_RESUME_RE = re.compile(r"^disklog: resuming after (\d+)$")


class DisklogError(Exception):
    pass


def valid(sector_bytes, n=None):
    """Whether 512 bytes are a disklog record (record n, if n is given)."""
    if len(sector_bytes) != SECTOR or sector_bytes[:8] != MAGIC:
        return False
    num, = struct.unpack_from("<Q", sector_bytes, 8)
    crc, = struct.unpack_from("<I", sector_bytes, SECTOR - 4)
    if zlib.crc32(sector_bytes[:SECTOR - 4]) != crc:
        return False
    return n is None or num == n


def _sectors(path):
    with open(path, "rb") as f:
        data = f.read()
    return [data[i:i + SECTOR] for i in range(0, len(data), SECTOR)]


def records(path):
    """[1..K]: record k is valid in sector k for every k up to K."""
    out = []
    for n, s in enumerate(_sectors(path)[1:], start=1):
        if not valid(s, n):
            break
        out.append(n)
    return out


def check(path):
    """records(path), after checking nothing valid follows the first gap:
    a sector past it holding any valid record means a write reached the
    image out of order (or a stale log was there), and raises."""
    secs = _sectors(path)
    prefix = records(path)
    for i in range(len(prefix) + 1, len(secs)):
        if valid(secs[i]):
            num, = struct.unpack_from("<Q", secs[i], 8)
            raise DisklogError(
                "%s: sector %d holds a valid record %d after the log ends "
                "at record %d" % (path, i, num, len(prefix)))
    return prefix


def console_records(text):
    """The N of every "disklog: record N" line, in order."""
    lines = text.split("\n") if isinstance(text, str) else text
    return [int(m.group(1)) for m in map(_RECORD_RE.match, lines) if m]


def check_console(path, text, after=None):
    """check(path) after checking the console against it: the printed
    numbers run without gaps from after + 1, and the image holds every
    one of them.  after defaults to the "resuming after K" line's K, or,
    for a console without one (a VM restored from a checkpoint, a
    failover's survivor), the first printed number less one."""
    lines = text.split("\n") if isinstance(text, str) else text
    printed = console_records(lines)
    if after is None:
        for line in lines:
            m = _RESUME_RE.match(line)
            if m:
                after = int(m.group(1))
                break
    if after is None:
        after = printed[0] - 1 if printed else 0
    if printed != list(range(after + 1, after + 1 + len(printed))):
        raise DisklogError("the console's records are not %d, %d, ... in "
                           "order: %s" % (after + 1, after + 2,
                                          printed[:20]))
    prefix = check(path)
    last = printed[-1] if printed else after
    if len(prefix) < last:
        raise DisklogError("%s holds records 1..%d, but the console printed "
                           "record %d" % (path, len(prefix), last))
    return prefix
