"""Shared by the benchmark drivers: child processes each in a process group
of their own (all killed at exit, even on Ctrl-C), bounded runs, sizes on
the command line, memcpy bandwidth from bench_ram as a physical limit, a
process's `ftvmctl status` and waiting for a condition.  Standard library
only."""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

CHILDREN = []


def spawn(argv, **kw):
    """Popen in a new session (so a new process group), remembered."""
    p = None
    try:
        p = subprocess.Popen(argv, start_new_session=True, **kw)
    finally:
        if p is not None:
            CHILDREN.append(p)
    return p


def kill_group(p, sig):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def forget(p):
    if p in CHILDREN:
        CHILDREN.remove(p)


def reap_all(grace=5.0):
    """SIGTERM to every live child's group, SIGKILL after grace seconds."""
    for p in CHILDREN:
        if p.poll() is None:
            kill_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in CHILDREN:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        # The group may hold more than the leader: make sure it is gone.
        kill_group(p, signal.SIGKILL)
        try:
            p.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
    CHILDREN.clear()


def run_child(argv, timeout):
    """Runs argv to the end (bounded); returns (rc, stdout, stderr)."""
    p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
              text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p, signal.SIGKILL)
        out, err = p.communicate()
        return -1, out, (err or "") + f"\n(killed after {timeout:.0f} s)"
    finally:
        if p.poll() is not None:
            forget(p)
    return p.returncode, out, err


def on_signal(sig, frame):
    raise SystemExit(128 + sig)


def parse_size(s):
    """'256M', '1G', '4g', '512' (MiB) -> MiB."""
    m = re.fullmatch(r"(\d+)([MmGg]?)(i?[Bb])?", s.strip())
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"bad size '{s}' (e.g. 256M, 1G)")
    n = int(m.group(1))
    return n * 1024 if m.group(2) in ("G", "g") else n


def size_name(mib):
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


def measure_memcpy(bench_ram):
    """GB/s (10^9 bytes) from bench_ram's memcpy row (256 MiB, best of 3)."""
    rc, out, err = run_child([bench_ram, "-m", "256", "-n", "3"], timeout=300)
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] == "memcpy":
            return float(f[3])
    raise RuntimeError(f"bench_ram gave no memcpy row (rc {rc}): {err}")


def missing_programs(name, build, programs):
    """Says which of programs (paths under build) are not built, with the
    command that builds them; True when some are."""
    missing = [os.path.join(build, p) for p in programs
               if not os.path.exists(os.path.join(build, p))]
    if missing:
        print(f"{name}: not built: " + ", ".join(missing)
              + f"; run: ninja -C {build}", file=sys.stderr)
    return bool(missing)


def copy_programs(workdir, build, programs):
    """A copy of the programs under workdir/bin, so that a rebuild during
    the run changes nothing: {program: its copy}."""
    bins = {}
    for p in programs:
        dst = os.path.join(workdir, "bin", p)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(build, p), dst)
        bins[p] = dst
    return bins


def status(ftvmctl, sock):
    """`ftvmctl -s SOCK status` as a dict, or None when it fails."""
    r = subprocess.run([ftvmctl, "-s", sock, "--json", "status"],
                       capture_output=True, text=True, timeout=10)
    return json.loads(r.stdout) if r.returncode == 0 else None


def wait_file(path, pattern, proc, timeout, ended=None):
    """The first match of pattern in the file at path (a child's stderr,
    say) within timeout s.  RuntimeError if proc ends first (its message
    ended(), or the file's tail) or time runs out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(path) as f:
                m = re.search(pattern, f.read())
        except OSError:
            m = None
        if m:
            return m
        if proc.poll() is not None:
            if ended:
                raise RuntimeError(ended())
            with open(path) as f:
                raise RuntimeError(f"{path}: ended: {f.read()[-600:]}")
        time.sleep(0.02)
    raise RuntimeError(f"no '{pattern}' in {path} within {timeout} s")


def wait(pred, timeout, what):
    """pred()'s first true value within timeout s, else RuntimeError."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)
