"""pcap files (libpcap's format) read with the standard library, for
colo_net_test.py's check of net-compare's --compare-log; and written
with libpcap itself (ctypes) to test the reader against the real writer.
"""
import ctypes
import ctypes.util
import struct

PCAP_MAGIC = {0xa1b2c3d4: 1000, 0xa1b23c4d: 1}     # -> ns per fraction unit


def read_pcap(path):
    """(link type, [(timestamp ns, frame bytes, original length)]) of a
    pcap file, either byte order, microsecond or nanosecond stamps.
    Raises ValueError on anything that is not a whole, sound file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError("%s: %d bytes, shorter than the 24-byte header" %
                         (path, len(data)))
    for order in "<>":
        magic = struct.unpack(order + "I", data[:4])[0]
        if magic in PCAP_MAGIC:
            break
    else:
        raise ValueError("%s: magic %s is not pcap's" % (path, data[:4].hex()))
    unit = PCAP_MAGIC[magic]
    major, minor, _, _, snaplen, link = struct.unpack(order + "HHiIII",
                                                      data[4:24])
    if (major, minor) != (2, 4):
        raise ValueError("%s: version %d.%d, expected 2.4" % (path, major,
                                                              minor))
    packets, off = [], 24
    while off < len(data):
        if len(data) - off < 16:
            raise ValueError("%s: a record header cut at byte %d" %
                             (path, off))
        sec, frac, incl, orig = struct.unpack(order + "IIII",
                                              data[off:off + 16])
        off += 16
        if incl > snaplen or incl > orig:
            raise ValueError("%s: a record of %d bytes (original %d, "
                             "snaplen %d)" % (path, incl, orig, snaplen))
        if frac * unit >= 1000000000:
            raise ValueError("%s: a timestamp fraction of %d" % (path, frac))
        if len(data) - off < incl:
            raise ValueError("%s: a record of %d bytes cut at byte %d" %
                             (path, incl, off))
        packets.append((sec * 1000000000 + frac * unit,
                        data[off:off + incl], orig))
        off += incl
    return link, packets


def udp_of(frame):
    """(source port, destination port, payload) of an Ethernet IPv4/UDP
    frame, or None."""
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00" or \
            frame[14] >> 4 != 4 or frame[23] != 17:
        return None
    ihl = (frame[14] & 0xf) * 4
    udp = frame[14 + ihl:]
    if ihl < 20 or len(udp) < 8:
        return None
    sport, dport, length = struct.unpack("!HHH", udp[:6])
    if length < 8 or length > len(udp):
        return None
    return sport, dport, udp[8:length]


def write_with_libpcap(path, recs):
    """Writes recs [(seconds, nanoseconds, frame)] to path with libpcap
    itself, as net-compare's --compare-log does (a dead handle with
    nanosecond stamps, pcap_dump); False when libpcap is not installed."""
    name = ctypes.util.find_library("pcap")
    if not name:
        return False
    lib = ctypes.CDLL(name)

    class Hdr(ctypes.Structure):
        _fields_ = [("sec", ctypes.c_long), ("frac", ctypes.c_long),
                    ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]
    lib.pcap_open_dead_with_tstamp_precision.restype = ctypes.c_void_p
    lib.pcap_open_dead_with_tstamp_precision.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_uint]
    lib.pcap_dump_open.restype = ctypes.c_void_p
    lib.pcap_dump_open.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.pcap_dump.argtypes = [ctypes.c_void_p, ctypes.POINTER(Hdr),
                              ctypes.c_char_p]
    lib.pcap_dump_close.argtypes = [ctypes.c_void_p]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    dead = lib.pcap_open_dead_with_tstamp_precision(1, 65535, 1)  # nano
    if not dead:
        raise OSError("pcap_open_dead_with_tstamp_precision failed")
    d = lib.pcap_dump_open(dead, path.encode())
    if not d:
        lib.pcap_close(dead)
        raise OSError("pcap_dump_open %s failed" % path)
    for sec, ns, b in recs:
        h = Hdr(sec, ns, len(b), len(b))
        lib.pcap_dump(d, ctypes.byref(h), b)
    lib.pcap_dump_close(d)
    lib.pcap_close(dead)
    return True
