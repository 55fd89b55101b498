#!/usr/bin/env python3
"""`ftvmctl pause` of a VM whose vCPU is held up in the monitor.

    pause_test.py CASE FTVM FTVMCTL UDPKV.elf STUCK_SENDTO.so

  stuck-vcpu  `ftvm run` of udpkv behind a UNIX datagram socket, with
              stuck_sendto.so preloaded: the guest's reply that carries
              "STUCK" holds its vCPU in sendto for several seconds.
              Meanwhile `pause` fails within its deadline, naming vCPU 0,
              and the VM runs on (status answers: running); once the send
              is done the reply arrives and `pause` works again.

Exit 0 pass, 1 fail, 77 skipped (no usable /dev/kvm).
"""
import json
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import ftvmtest as ft  # noqa: E402
from ftvmtest import check, fail, log, wait_until  # noqa: E402

GUEST_MAC = bytes.fromhex("020000000007")
PEER_MAC = bytes.fromhex("02000000000a")
PORT = 7777

ftvm = ftvmctl = image = shim = None


def checksum(data):
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(payload):
    udp = struct.pack("!HHHH", 40000, PORT, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17,
                     0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return GUEST_MAC + PEER_MAC + b"\x08\x00" + ip + udp


def reply(sock, timeout):
    """The UDP payload of the next IPv4/UDP frame from the guest."""
    deadline = time.monotonic() + ft.scaled(timeout)
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.2)
        if not r:
            continue
        f = sock.recv(2048)
        if len(f) < 42 or f[12:14] != b"\x08\x00" or f[23] != 17:
            continue
        udp = f[14 + (f[14] & 0xF) * 4:]
        return udp[8:struct.unpack("!H", udp[4:6])[0]].decode()
    fail("no reply from the guest within %.0f s" % ft.scaled(timeout))


def ctl(sock, *args):
    """(exit status, parsed result or stderr) of ftvmctl --json."""
    r = ft.run([ftvmctl, "-s", sock, "--json"] + list(args),
               capture_output=True, text=True, timeout=20)
    if r.returncode:
        return r.returncode, r.stderr
    return 0, json.loads(r.stdout) if r.stdout.strip() else {}


def case_stuck_vcpu():
    gsock = os.path.join(ft.tmp, "g.sock")
    psock = os.path.join(ft.tmp, "p.sock")
    csock = os.path.join(ft.tmp, "c.sock")
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.bind(psock)
    held_ms = int(ft.scaled(8) * 1000)
    p = ft.Proc("run", [ftvm, "run", "--mem", "32M", "--control", csock,
                        "--net", "dgram:%s,%s" % (gsock, psock), "--mac",
                        GUEST_MAC.hex(":"), image, "ip=10.0.0.2",
                        "port=%d" % PORT],
                env={"LD_PRELOAD": shim,
                     "FTVM_TEST_STUCK_SENDTO_MS": str(held_ms),
                     # a sanitizer build's ftvm takes a shim first too
                     "ASAN_OPTIONS": "verify_asan_link_order=0"})
    p.wait_line(lambda l: l.startswith("udpkv ready"), 20, "udpkv ready")
    peer.connect(gsock)
    peer.send(udp_frame(b"1 PUT k STUCK"))
    check(reply(peer, 10) == "1 OK\n", "PUT k")
    # The reply to this GET carries STUCK: the vCPU stays in sendto.
    t0 = time.monotonic()
    peer.send(udp_frame(b"2 GET k"))
    wait_until(lambda: "holding a send" in p.err(), 10,
               "the vCPU to be held in sendto")
    rc, err = ctl(csock, "pause")
    check(rc != 0, "pause answered %.1f s after the GET, with the vCPU held "
          "in sendto for %.1f s: it waited for the vCPU" %
          (time.monotonic() - t0, held_ms / 1000))
    check(rc == 1 and "vCPU 0 did not stop" in err and "runs on" in err,
          "pause of a vCPU held in the monitor: exit %d: %s" % (rc, err))
    log("pause refused: %s" % err.strip())
    rc, st = ctl(csock, "status")
    check(rc == 0 and st["state"] == "running", "status after the refused "
          "pause: %s" % st)
    check(reply(peer, held_ms / 1000 + 10) == "2 VALUE STUCK\n", "GET k")
    rc, st = ctl(csock, "pause")
    check(rc == 0, "pause once the send is done: %s" % st)
    rc, st = ctl(csock, "status")
    check(rc == 0 and st["state"] == "paused", "status: %s" % st)
    rc, st = ctl(csock, "resume")
    check(rc == 0, "resume: %s" % st)
    ctl(csock, "quit")
    check(p.wait(30) == 0, "exit status\n" + p.dump())


CASES = {"stuck-vcpu": case_stuck_vcpu}


def main():
    global ftvm, ftvmctl, image, shim
    if len(sys.argv) != 6 or sys.argv[1] not in CASES:
        sys.stderr.write(__doc__)
        return 2
    case, ftvm, ftvmctl, image, shim = sys.argv[1:]

    def run():
        ft.needs_kvm()
        CASES[case]()
        for p in ft.procs:
            ft.check_sanitizers(p)
    ft.run_case(case, run, "pause")


if __name__ == "__main__":
    sys.exit(main())
