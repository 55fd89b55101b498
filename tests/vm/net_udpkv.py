#!/usr/bin/env python3
"""The guest's network path end to end: udpkv behind `ftvm run --net`.

    net_udpkv.py FTVM UDPKV.elf

The monitor's network backend is a UNIX datagram socket pair in a fresh
temporary directory; this script is the peer.  It sends Ethernet frames
carrying IPv4/UDP requests (docs/udpkv-protocol.md), which wake the guest
blocked in FTVM_HC_POLL, and checks the replies it writes back (PUT, GET,
DEL, and the nondeterministic TIME and RAND by their form).  Then it
stops the monitor with SIGTERM and expects exit status 128 + 15.
Exits 77 (skipped) without a usable /dev/kvm.  No traffic leaves the
temporary directory.
"""
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

GUEST_MAC = bytes.fromhex("020000000007")
PEER_MAC = bytes.fromhex("02000000000a")
GUEST_IP = bytes([10, 0, 0, 2])
PEER_IP = bytes([10, 0, 0, 1])
PORT = 7777


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(payload, sport=40000):
    udp = struct.pack("!HHHH", sport, PORT, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17,
                     0, PEER_IP, GUEST_IP)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return GUEST_MAC + PEER_MAC + b"\x08\x00" + ip + udp


def udp_payload(frame):
    """The UDP payload of an IPv4/UDP frame to us, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0xF) * 4
    udp = frame[14 + ihl:]
    length = struct.unpack("!H", udp[4:6])[0]
    return udp[8:length]


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import ftvmtest as ft  # noqa: E402


def fail(msg, proc=None):
    print("FAIL:", msg, file=sys.stderr)
    if proc:
        proc.kill()
        out, err = proc.communicate()
        print("--- stdout:\n" + out.decode(errors="replace"), file=sys.stderr)
        print("--- stderr:\n" + err.decode(errors="replace"), file=sys.stderr)
    sys.exit(1)


def request(sock, proc, text, want):
    """Sends text, checks the reply is want (None: any); returns it."""
    sock.send(udp_frame(text.encode()))
    deadline = time.monotonic() + ft.scaled(10)
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.5)
        if not r:
            continue
        reply = udp_payload(sock.recv(2048))
        if reply is None:
            continue
        if want is not None and reply != want.encode():
            fail("%r answered %r, expected %r" % (text, reply, want), proc)
        return reply
    fail("no reply to %r" % text, proc)


def main():
    ftvm, image = sys.argv[1], sys.argv[2]
    ft.case = "net-udpkv"
    try:
        ft.needs_kvm()
    except ft.Failure as e:
        fail(str(e))
    with tempfile.TemporaryDirectory(prefix="ftvm-net-udpkv-") as tmp:
        guest_sock = os.path.join(tmp, "guest.sock")
        peer_sock = os.path.join(tmp, "peer.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(peer_sock)
        proc = subprocess.Popen(
            [ftvm, "run", "--mem", "32M", "--net",
             "dgram:%s,%s" % (guest_sock, peer_sock),
             "--mac", GUEST_MAC.hex(":"), image,
             "ip=10.0.0.2", "port=%d" % PORT],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = proc.stdout.readline().decode()
        if not line.startswith("udpkv ready"):
            fail("first line %r" % line, proc)
        print(line.strip())
        if "mac=02:00:00:00:00:07" not in line:
            fail("the guest did not get its --mac: %r" % line, proc)
        sock.connect(guest_sock)
        for i in range(20):
            request(sock, proc, "%d PUT key%d value %d" % (i, i, i),
                    "%d OK\n" % i)
        t0 = time.monotonic()
        for i in range(20):
            request(sock, proc, "g%d GET key%d" % (i, i),
                    "g%d VALUE value %d\n" % (i, i))
        ms = (time.monotonic() - t0) * 1000
        print("20 GET round trips in %.1f ms" % ms)
        request(sock, proc, "x DEL key3", "x OK\n")
        request(sock, proc, "y GET key3", "y NOTFOUND\n")
        # The nondeterministic commands: TIME the TSC (decimal, growing),
        # RAND 16 hex digits (two in a row differ); no arguments.
        rand_src = re.search(r" rand=(rdrand|tsc)$", line.strip())
        if not rand_src:
            fail("no rand= in %r" % line, proc)
        tsc = []
        for i in range(2):
            r = request(sock, proc, "t%d TIME" % i, None)
            m = re.match(rb"^t%d VALUE ([1-9][0-9]*)\n$" % i, r)
            if not m:
                fail("TIME answered %r" % r, proc)
            tsc.append(int(m.group(1)))
        if not tsc[0] < tsc[1]:
            fail("TIME went from %d to %d" % tuple(tsc), proc)
        rand = []
        for i in range(2):
            r = request(sock, proc, "r%d RAND" % i, None)
            m = re.match(rb"^r%d VALUE ([0-9a-f]{16})\n$" % i, r)
            if not m:
                fail("RAND answered %r" % r, proc)
            rand.append(m.group(1))
        if rand[0] == rand[1]:
            fail("RAND twice %r (%s)" % (rand[0], rand_src.group(1)), proc)
        request(sock, proc, "e TIME now", "e ERR extra arguments\n")
        request(sock, proc, "f RAND 1", "f ERR extra arguments\n")
        request(sock, proc, "g time", "g ERR unknown command\n")
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=ft.scaled(10))
        except subprocess.TimeoutExpired:
            fail("the monitor ignored SIGTERM", proc)
        if proc.returncode != 128 + signal.SIGTERM:
            fail("exit status %d after SIGTERM: %s" %
                 (proc.returncode, err.decode(errors="replace")))
        if b"stopped by" not in err:
            fail("no message on SIGTERM: %r" % err)
    print("ok")


if __name__ == "__main__":
    main()
