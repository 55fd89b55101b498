#!/usr/bin/env python3
"""A reader of QEMU's stream rules reads a "block" section ftvm wrote.

usage: test_analyze_block.py GEN_BLOCKSTREAM

gen_blockstream writes a stream with a block START, a PART with a whole
3.5 MiB disk (the bring-up) and an END with the chunks written since,
then says how many data and zero chunks each body has;
analyze_stream.py must read it to the end and count the same.  Damaged
copies (an unknown flag, a sector where no chunk starts, a chunk marked
zero that carries data, another version, bytes missing from a chunk)
must be refused with the reason.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ANALYZE = os.path.join(HERE, "analyze_stream.py")
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ftvmtest as ft  # noqa: E402

checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


def analyze(path):
    p = subprocess.run([sys.executable, ANALYZE, "--json", path],
                       capture_output=True, text=True,
                       timeout=ft.scaled(120))
    return p.returncode, json.loads(p.stdout) if p.returncode == 0 else None, \
        p.stderr


def damaged(src, dst, edit):
    data = bytearray(open(src, "rb").read())
    edit(data)
    open(dst, "wb").write(bytes(data))
    return dst


def refused(path, want):
    rc, _, err = analyze(path)
    check(rc == 1 and want in err,
          "%s: exit %d, expected 1 and %r: %s" % (path, rc, want, err))


def main():
    gen = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([gen, d], capture_output=True, text=True,
                           check=True, timeout=ft.scaled(120))
        sent = json.loads(p.stdout)
        check(sent == {"part": {"data": 3, "zero": 1},
                       "end": {"data": 2, "zero": 0}},
              "gen_blockstream sent %s" % sent)
        stream = os.path.join(d, "block.stream")
        rc, res, err = analyze(stream)
        check(rc == 0, "analyze_stream: exit %d: %s" % (rc, err))
        secs = [r for r in res["records"] if r.get("name") == "block"]
        check([s["type"] for s in secs] == ["START", "PART", "END"],
              "block sections: %s" % [s["type"] for s in secs])
        check(secs[0]["block_chunks"] == {}, "START: %s" % secs[0])
        check(secs[1]["block_chunks"] == {"virtio0": sent["part"]},
              "PART: %s" % secs[1]["block_chunks"])
        check(secs[2]["block_chunks"] == {"virtio0": sent["end"]},
              "END: %s" % secs[2]["block_chunks"])
        check(res["block_chunks"] == {"virtio0": {"data": 5, "zero": 1}},
              "totals: %s" % res["block_chunks"])

        start_version = secs[0]["body_offset"] - 4
        part = secs[1]["body_offset"]       # the first chunk's header
        bad = os.path.join(d, "bad.stream")

        def set_byte(at, v):
            def edit(data):
                data[at] = v
            return edit

        refused(damaged(stream, bad, set_byte(part + 7, 0x11)),
                "block: unknown flags 0x10")
        refused(damaged(stream, bad, set_byte(part + 6, 0x02)),
                "block: sector 1 does not start a chunk")
        refused(damaged(stream, bad, set_byte(part + 7, 0x09)),
                "block: ")
        refused(damaged(stream, bad, set_byte(start_version + 3, 2)),
                "block: version 2")

        def cut(data):
            del data[part + 100:part + 200]
        rc, _, err = analyze(damaged(stream, bad, cut))
        check(rc == 1, "a chunk 100 bytes short: exit %d: %s" % (rc, err))
    print("test_analyze_block: %d checks passed" % checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
