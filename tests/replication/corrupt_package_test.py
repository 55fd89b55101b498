#!/usr/bin/env python3
"""The package-damaging shim (corrupt_package.so) on its own, without KVM.

    corrupt_package_test.py SHIM

A child Python process with the shim preloaded writes a stream the way
`ftvm primary`'s link thread does (the header, records each begun by a
fresh sendmsg, a package as a 9-byte COMMAND PACKAGED head and its body,
a large one finished over several sendmsg calls after partial writes on a
non-blocking socket).  This process reads what came out and checks:
exactly the packages named in FTVM_TEST_CORRUPT_PACKAGE differ, each in
the one byte at the middle of its body (xor 0x40), the caller's buffers
are untouched, stderr names them with their checkpoint ids; and a bad
value ends the process with status 2.  Exit 0 pass, 1 fail.
"""
import os
import select
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import ftvmtest as ft  # noqa: E402

CHILD = r'''
import os, select, socket, struct, sys
fd = int(sys.argv[1])
s = socket.socket(fileno=fd)
s.setblocking(False)

def send_record(parts):
    """As channel_send_iov: one sendmsg, then the rest after partial writes."""
    parts = [memoryview(p) for p in parts]
    while parts:
        select.select([], [s], [])
        try:
            n = s.sendmsg(parts)
        except BlockingIOError:
            continue
        while parts and n >= len(parts[0]):
            n -= len(parts[0])
            parts.pop(0)
        if parts:
            parts[0] = parts[0][n:]

def package(ckpt, size):
    body = bytearray(b"\x04" + struct.pack(">I", 9) + b"\x08ftvm-pkg" +
                     struct.pack(">IIQQI", 0, 1, ckpt, ckpt - 1, 0))
    body += bytes((i * 7 + ckpt) & 0xff for i in range(size - len(body)))
    return bytes(body)

send_record([b"QEVM" + struct.pack(">I", 3)])
bodies = [package(k, size) for k, size in
          [(1, 600), (2, 4000), (3, 3 << 20), (4, 700), (5, 800)]]
copies = [bytes(b) for b in bodies]
for i, body in enumerate(bodies):
    send_record([struct.pack(">BHHI", 8, 7, 4, len(body)), body])
    if i == 1:
        send_record([struct.pack(">BHHI", 8, 2, 4, 77)])    # a PING
assert bodies == copies, "the shim changed the caller's buffer"
send_record([b"\x1f"])                                       # EOF
s.close()
'''


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def run(shim, value, timeout=60):
    timeout = ft.scaled(timeout)
    a, b = socket.socketpair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
    env = dict(os.environ, LD_PRELOAD=shim, FTVM_TEST_CORRUPT_PACKAGE=value)
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(b.fileno())],
                         pass_fds=[b.fileno()], env=env,
                         stderr=subprocess.PIPE)
    b.close()
    data = bytearray()
    while True:
        r, _, _ = select.select([a], [], [], timeout)
        if not r:
            p.kill()
            fail("no data from the child for %d s" % timeout)
        chunk = a.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    err = p.stderr.read().decode()
    return p.wait(timeout), bytes(data), err


def records(data):
    """The packages (checkpoint id, body) of the stream written by CHILD."""
    if data[:8] != b"QEVM" + struct.pack(">I", 3):
        fail("no stream header: %r" % data[:8])
    off, out = 8, []
    while True:
        kind = data[off]
        if kind == 0x1f:
            return out
        cmd, length = struct.unpack(">HH", data[off + 1:off + 5])
        if kind != 8 or length != 4:
            fail("unexpected record at %d: %r" % (off, data[off:off + 9]))
        value = struct.unpack(">I", data[off + 5:off + 9])[0]
        off += 9
        if cmd == 7:
            out.append(data[off:off + value])
            off += value


def expected(ckpt, size):
    body = bytearray(b"\x04" + struct.pack(">I", 9) + b"\x08ftvm-pkg" +
                     struct.pack(">IIQQI", 0, 1, ckpt, ckpt - 1, 0))
    body += bytes((i * 7 + ckpt) & 0xff for i in range(size - len(body)))
    return bytes(body)


def main():
    if len(sys.argv) != 2 or not os.path.exists(sys.argv[1]):
        sys.stderr.write(__doc__)
        return 2
    shim = os.path.abspath(sys.argv[1])
    sizes = [600, 4000, 3 << 20, 700, 800]

    rc, data, err = run(shim, "2,3,9")
    if rc != 0:
        fail("child exit %d:\n%s" % (rc, err))
    got = records(data)
    if len(got) != len(sizes):
        fail("%d packages came out, %d went in" % (len(got), len(sizes)))
    for k, (body, size) in enumerate(zip(got, sizes), 1):
        want = bytearray(expected(k, size))
        if k in (2, 3):
            want[size // 2] ^= 0x40
        if body != bytes(want):
            diff = [i for i in range(min(len(body), len(want)))
                    if body[i] != want[i]]
            fail("package %d: differs at %s" % (k, diff[:10]))
        line = "TEST: damaged package %d (checkpoint %d)" % (k, k)
        if (k in (2, 3)) != (line in err):
            fail("stderr about package %d:\n%s" % (k, err))
    if "TEST: package(s) 2,3,9 will be damaged" not in err:
        fail("no start message:\n" + err)

    rc, data, err = run(shim, "")
    if rc != 0 or [len(b) for b in records(data)] != sizes or \
            any(b != expected(k, n) for k, (b, n) in
                enumerate(zip(records(data), sizes), 1)) or "TEST" in err:
        fail("without the variable the stream changed (exit %d):\n%s" %
             (rc, err))

    for bad in ("x", "0", "3,", "1,2,3,4,5,6,7,8,9", "-1", " 3"):
        r = subprocess.run([sys.executable, "-c", "pass"], env=dict(
            os.environ, LD_PRELOAD=shim, FTVM_TEST_CORRUPT_PACKAGE=bad),
            capture_output=True, text=True, timeout=ft.scaled(30))
        if r.returncode != 2 or "FTVM_TEST_CORRUPT_PACKAGE" not in r.stderr:
            fail("%r: exit %d, stderr %r" % (bad, r.returncode, r.stderr))
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
