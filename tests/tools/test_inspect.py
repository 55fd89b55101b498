#!/usr/bin/env python3
"""ftvm inspect, end to end, on streams QEMU 7.2 wrote and on ftvm's own.

usage: test_inspect.py FTVM GEN_CORPUS GEN_STREAMS

Checks the block list and page counts against what QEMU reported and what
an independent walker (tests/qemu/ram_blocks.py) counted, that every device
section decodes through the VM description, and that damaged input shows
what it could read, then the error with its offset, and exits 1: a cut
stream, a bad magic, a footer or section name damaged in a QEMU stream, and
any bit flipped in a checkpoint ftvm sealed with its trailer.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ftvmtest as ft  # noqa: E402

QEMU_DIR = os.path.join(HERE, "..", "qemu")
failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def inspect(ftvm, *args, stdin=None):
    p = subprocess.run([ftvm, "inspect", *args], input=stdin,
                       capture_output=True, timeout=ft.scaled(120))
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode()


def read_expect(path):
    vals, blocks, sha = {}, [], {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split()
        if parts[0] == "block":
            blocks.append((" ".join(parts[1:-1]), int(parts[-1])))
        elif parts[0] == "block_sha256":
            sha[" ".join(parts[1:-1])] = parts[-1]
        elif len(parts) == 2:
            vals[parts[0]] = int(parts[1])
    return vals, blocks, sha


def check_extracted_ram(ftvm, name, sha, tmp):
    """The loader applies QEMU's pages: the RAM it rebuilds, block by
    block, hashes as the independent walker's does."""
    out_dir = os.path.join(tmp, "ram-" + name)
    os.mkdir(out_dir)
    # Symlinks planted at the names it writes are replaced, not followed.
    victim = os.path.join(tmp, "victim-" + name)
    with open(victim, "w") as f:
        f.write("precious")
    for block in sha:
        os.symlink(victim, os.path.join(out_dir,
                                        block.replace("/", "_") + ".bin"))
    rc, out, err = inspect(ftvm, "--json", "--extract-ram", out_dir,
                           os.path.join(QEMU_DIR, name + ".qemu"))
    check(rc == 0, f"{name}: extract exit {rc} {err}")
    check(open(victim).read() == "precious",
          f"{name}: extraction wrote through a planted symlink")
    files = {e["block"]: e["file"] for e in json.loads(out)["extracted"]}
    check(set(files) == set(sha), f"{name}: extracted {sorted(files)}")
    for f in files.values():
        check(not os.path.islink(f), f"{name}: {f} is still a symlink")
    for block, want in sha.items():
        got = hashlib.sha256(open(files[block], "rb").read()).hexdigest() \
            if block in files else None
        check(got == want, f"{name}: block {block} sha256 {got} != {want}")


def check_qemu_stream(ftvm, name, tmp):
    path = os.path.join(QEMU_DIR, name + ".qemu")
    vals, blocks, sha = read_expect(os.path.join(QEMU_DIR, name + ".expect"))
    check_extracted_ram(ftvm, name, sha, tmp)
    rc, out, err = inspect(ftvm, "--json", path)
    check(rc == 0, f"{name}: exit {rc}: {err}")
    res = json.loads(out)
    check(res["error"] is None, f"{name}: error {res['error']}")
    check(res["complete"], f"{name}: stream not complete")
    check(res["machine"].startswith("pc-i440fx"), f"{name}: machine")
    got = [(b["name"], b["length"]) for b in res["ram_blocks"]]
    check(got == blocks, f"{name}: blocks {got} != {blocks}")
    total = sum(length for _, length in got)
    check(total == vals["total_ram_bytes"], f"{name}: total ram {total}")
    sums = {k: sum(b[k] for b in res["ram_blocks"])
            for k in ("zero_pages", "normal_pages", "compressed_pages",
                      "xbzrle_pages")}
    for k in sums:
        check(sums[k] == vals["stream_" + k],
              f"{name}: {k} {sums[k]} != walker's {vals['stream_' + k]}")
    # QEMU's own counters equal the records for plain and XBZRLE streams;
    # with compression, QEMU 7.2 counts zero pages found by its compression
    # threads twice (tests/qemu/README.md), so only the walker is compared.
    if name != "compress":
        check(sums["zero_pages"] == vals["duplicate_pages"],
              f"{name}: zero pages {sums['zero_pages']} != QEMU's "
              f"duplicate {vals['duplicate_pages']}")
    check(sums["normal_pages"] == vals["normal_pages"],
          f"{name}: normal pages {sums['normal_pages']} != QEMU's "
          f"{vals['normal_pages']}")
    # QEMU's xbzrle counter also counts dirty pages equal to their cached
    # copy, which send nothing: at most the 16 pages the guest dirties.
    if name == "xbzrle":
        extra = vals["xbzrle_pages"] - sums["xbzrle_pages"]
        check(0 <= extra <= 16,
              f"{name}: {sums['xbzrle_pages']} XBZRLE records, QEMU "
              f"counted {vals['xbzrle_pages']}")
    devices = res["devices"]
    check(len(devices) == vals["stream_device_sections"],
          f"{name}: {len(devices)} devices decoded, expected "
          f"{vals['stream_device_sections']}")
    names = {d["name"] for d in devices}
    for want in ("timer", "cpu", "apic", "mc146818rtc", "globalstate"):
        check(want in names, f"{name}: device {want} not decoded")
    cpu = next(d for d in devices if d["name"] == "cpu")
    check(isinstance(cpu["fields"], dict) and len(cpu["fields"]) > 10,
          f"{name}: cpu fields not decoded")
    eof = [r for r in res["records"] if r["type"] == "EOF"]
    check(len(eof) == 1 and eof[0]["offset"] == vals["stream_eof_offset"],
          f"{name}: EOF at {eof and eof[0]['offset']}")
    rc, text, _ = inspect(ftvm, path)
    check(rc == 0 and "pc.ram" in text and "globalstate" in text,
          f"{name}: text output")


def check_damaged(ftvm, tmp):
    data = open(os.path.join(QEMU_DIR, "plain.qemu"), "rb").read()
    for cut in (0, 3, 8, 26, 200, 5000, 529760, 542000):
        p = os.path.join(tmp, f"cut{cut}")
        open(p, "wb").write(data[:cut])
        rc, out, _ = inspect(ftvm, "--json", p)
        check(rc == 1, f"cut at {cut}: exit {rc}")
        res = json.loads(out)
        err = res["error"]
        check(err is not None and err["offset"] <= cut,
              f"cut at {cut}: error {err}")
        rc, text, _ = inspect(ftvm, p)
        check(rc == 1 and "error at byte" in text, f"cut at {cut}: text")
    # What precedes the damage is still shown.
    res = json.loads(inspect(ftvm, "--json", os.path.join(tmp, "cut5000"))[1])
    check(res["records"][0]["idstr"] == "ram" and
          res["ram_blocks"][0]["name"] == "pc.ram",
          "cut at 5000: the records before the damage are listed")

    bad = bytearray(data)
    bad[0] ^= 0xff
    p = os.path.join(tmp, "badmagic")
    open(p, "wb").write(bad)
    rc, out, _ = inspect(ftvm, "--json", p)
    check(rc == 1 and "not a checkpoint stream" in
          json.loads(out)["error"]["message"], "bad magic")

    # QEMU's format has no checksum: a flipped byte inside a field's value
    # reads as another value.  What the framing does catch: a section's
    # footer that is not where its description ends the body, and an id
    # string the description does not know.
    recs = json.loads(inspect(ftvm, "--json",
                              os.path.join(QEMU_DIR, "plain.qemu"))[1])
    recs = {r.get("idstr"): r for r in recs["records"]}
    timer = recs["timer"]
    footer = timer["offset"] + timer["size"] - 5
    check(data[footer] == 0x7e, f"no footer at {footer}")
    flipped = flip(data, footer, 0x40, tmp, "flipped-footer")
    rc, out, _ = inspect(ftvm, "--json", flipped)
    err = json.loads(out)["error"]
    check(rc == 1 and err is not None and
          "section 'timer' (id 0): footer missing, found byte 0x3e" in
          err["message"] and footer <= err["offset"] <= footer + 5,
          f"flipped footer: exit {rc}, error {err}")
    check(json.loads(out)["ram_blocks"][0]["name"] == "pc.ram",
          "flipped footer: what precedes it is not shown")
    cpu = recs["cpu"]
    flipped = flip(data, cpu["offset"] + 6, 0x40, tmp, "flipped-name")
    rc, out, _ = inspect(ftvm, "--json", flipped)
    err = json.loads(out)["error"]
    check(rc == 1 and err is not None and
          "section '#pu' instance 0: not in the VM description" in
          err["message"], f"flipped name: exit {rc}, error {err}")


def flip(data, at, mask, tmp, name):
    bad = bytearray(data)
    bad[at] ^= mask
    p = os.path.join(tmp, name)
    open(p, "wb").write(bad)
    return p


def check_sealed(ftvm, gen_streams, tmp):
    """In a checkpoint ftvm wrote, the trailer's checksum catches any
    damage: here one bit of a register's value, which the framing cannot
    see."""
    d = os.path.join(tmp, "sealed")
    os.mkdir(d)
    subprocess.run([gen_streams, d], check=True)
    path = os.path.join(d, "file.ftvm")
    rc, out, err = inspect(ftvm, "--json", path)
    res = json.loads(out)
    check(rc == 0 and res["checkpoints"] ==
          [{"checkpoint_id": 42, "bytes_covered": res["checkpoints"][0][
              "bytes_covered"], "checksum": "ok"}],
          f"sealed: exit {rc} {err} {res['checkpoints']}")
    # A replication stream, read with that file's description: each
    # package's trailer sums the package alone.
    rep = os.path.join(d, "replication")
    rc, out, err = inspect(ftvm, "--json", "--desc", path, rep)
    rres = json.loads(out)
    check(rc == 0 and rres["complete"] and
          [c["checkpoint_id"] for c in rres["checkpoints"]] == [1, 2] and
          {x["name"] for x in rres["devices"]} >=
          {"ftvm-vm", "ftvm-pkg", "cpu", "console"},
          f"replication: exit {rc} {err} {rres['checkpoints']} "
          f"{rres['error']}")
    pkg = [r for r in rres["records"] if r.get("command") == "PACKAGED"][1]
    raw = open(rep, "rb").read()
    rc, out, _ = inspect(ftvm, "--json", "--desc", path,
                         flip(raw, pkg["offset"] + pkg["size"] // 2, 0x10,
                              tmp, "replication-flipped"))
    err = json.loads(out)["error"]
    check(rc == 1 and err is not None and
          "checkpoint 2: checksum mismatch" in err["message"],
          f"replication, one bit flipped in package 2: exit {rc}, {err}")

    cpu = next(r for r in res["records"] if r.get("idstr") == "cpu")
    body = cpu["offset"] + 1 + 4 + 1 + 3 + 4 + 4     # after its header
    data = open(path, "rb").read()
    rc, out, _ = inspect(ftvm, "--json", flip(data, body + 3, 0x01, tmp,
                                              "sealed-flipped"))
    err = json.loads(out)["error"]
    check(rc == 1 and err is not None and
          "checkpoint 42: checksum mismatch" in err["message"],
          f"sealed, one bit flipped: exit {rc}, error {err}")


def check_own_streams(ftvm, gen, tmp):
    d = os.path.join(tmp, "own")
    os.mkdir(d)
    subprocess.run([gen, d], check=True)
    for name in ("plain", "compressed", "xbzrle"):
        p = os.path.join(d, name)
        rc, out, err = inspect(ftvm, "--json", p)
        check(rc == 0, f"own {name}: exit {rc} {err}")
        res = json.loads(out)
        names = sorted((x["name"], x["instance_id"]) for x in res["devices"])
        check(names == [("console", 0), ("cpu", 0), ("cpu", 1)],
              f"own {name}: devices {names}")
        cpu1 = next(x for x in res["devices"] if x["name"] == "cpu" and
                    x["instance_id"] == 1)
        check(cpu1["fields"]["rip"] == 0x100001 and
              cpu1["fields"]["halted"] is True, f"own {name}: cpu 1 fields")
        blocks = {b["name"]: b for b in res["ram_blocks"]}
        check(set(blocks) == {"ram0", "rom"}, f"own {name}: blocks")
        kind = {"plain": "normal_pages", "compressed": "compressed_pages",
                "xbzrle": "xbzrle_pages"}[name]
        check(sum(b[kind] for b in blocks.values()) > 0,
              f"own {name}: no {kind}")
    # A package-only replication stream decodes with --desc.
    rc, out, _ = inspect(ftvm, "--json", "--desc", os.path.join(d, "plain"),
                         os.path.join(d, "packaged"))
    res = json.loads(out)
    check(rc == 0 and res["colo"], f"packaged: exit {rc} {res['error']}")
    depths = {r["depth"] for r in res["records"]}
    check(depths == {0, 1}, f"packaged: record depths {depths}")
    pk = [r for r in res["records"] if r.get("command") == "PACKAGED"]
    check(len(pk) == 1 and pk[0]["package_bytes"] > 0, "packaged: command")
    # From a pipe.
    raw = open(os.path.join(d, "plain"), "rb").read()
    rc, out, _ = inspect(ftvm, "--json", "-", stdin=raw)
    check(rc == 0 and json.loads(out)["file"] == "stdin", "stdin")


def check_usage(ftvm):
    rc, _, err = inspect(ftvm, "/nonexistent/file")
    check(rc == 2 and "No such file" in err, "missing file")
    rc, _, err = inspect(ftvm)
    check(rc == 2 and "expected one FILE" in err, "no file")
    rc, out, _ = inspect(ftvm, "--help")
    check(rc == 0 and "usage" in out, "help")


def main():
    ftvm, gen, gen_streams = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("plain", "compress", "xbzrle"):
            check_qemu_stream(ftvm, name, tmp)
        check_damaged(ftvm, tmp)
        check_own_streams(ftvm, gen, tmp)
        check_sealed(ftvm, gen_streams, tmp)
        check_usage(ftvm)
    print(f"inspect: {checks - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
