#!/usr/bin/env python3
"""/metrics of real ftvm processes, read with Prometheus' own parser.

    test_metrics.py CASE FTVM FTVMCTL GUEST_DIR METRICS_MD

Each case starts ftvm with --metrics on a free loopback port, scrapes
/metrics over HTTP and parses it with prometheus_client.parser (Debian's
python3-prometheus-client).  Every scrape is checked against Prometheus'
conventions: one HELP (not empty) and one TYPE per family, counters end in
_total, no milliseconds or precomputed percentiles, base units at the end
of the name, histograms cumulative with +Inf equal to _count and the same
bounds for the same unit; ftvm_build_info names the version and the role;
every family is listed in docs/metrics.md with its type.  Then what the
values say is checked against what the process did.

  secondary    no KVM: `ftvm secondary` waiting for a primary: state
               waiting, the replication families at zero, an empty
               histogram, no VM families.  The endpoint: :PORT listens on
               127.0.0.1 only; 404 for another path, 405 with Allow: GET
               for another method, a query string ignored, oversized
               headers refused without harm; a bad or busy --metrics
               address exits 120 naming it
  limits       no KVM: `--metrics PORT` listens on 127.0.0.1 only; one
               connection sending endless headers is cut with the
               process's RSS bounded; one dripping a header byte at a
               time is cut once its request is overdue; of 64 idle
               connections all but 16 are closed at once, the 16 are
               closed after the idle timeout, and /metrics answers again
  run          `ftvm run` of the counter guest: the VM's families; after
               `ftvmctl save` the disk checkpoint and pause counters moved
               and the file's size is reported
  replication  `ftvm primary` and `ftvm secondary`, both with --metrics:
               the primary's histograms count what its counters count
               (pauses, pages and package sizes one per checkpoint taken,
               bytes summing to the bytes counter), ACK round trips and
               output-commit delays recorded; the secondary's apply
               histogram one per checkpoint applied; stop-replication
               shows as the primary's state

Exit 0 pass, 1 fail, 77 skipped (no usable /dev/kvm for run and
replication; with FTVM_REQUIRE_KVM=1 that is a failure instead).
"""
import http.client
import os
import re
import signal
import socket
import sys
import time

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    text_string_to_metric_families = None

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import ftvmtest as ft  # noqa: E402
from ftvmtest import Proc, check, needs_kvm, wait_until  # noqa: E402

ftvm = ftvmctl = guests = metrics_md = None
EXIT_SETUP = 120
LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")


def ctl(sock, *args):
    r = ft.run([ftvmctl, "-s", sock, *args], capture_output=True,
               text=True, timeout=120)
    check(r.returncode == 0, "ftvmctl %s: exit %d: %s"
          % (" ".join(args), r.returncode, r.stderr))


def quit_vm(sock, proc):
    ctl(sock, "quit")
    check(proc.wait(30) == 0, "quit: exit %s\n%s" % (proc.p.returncode,
                                                     proc.dump()))


def request(port, method="GET", path="/metrics", headers=None):
    """(status, headers, body) of one request to 127.0.0.1:port."""
    c = http.client.HTTPConnection("127.0.0.1", port,
                                   timeout=ft.scaled(30))
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read().decode()
    finally:
        c.close()


def wait_metrics(port, proc):
    """The first scrape that answers, while proc runs."""
    def up():
        check(proc.alive(), "%s exited (%s) before serving /metrics\n%s"
              % (proc.name, proc.p.returncode, proc.dump()))
        try:
            st, _, body = request(port)
        except OSError:
            return None
        check(st == 200, "GET /metrics: %d %s" % (st, body))
        return body
    return wait_until(up, 60, "%s's /metrics" % proc.name)


# ---- reading a scrape ----

def documented():
    """{family name: type} from docs/metrics.md's tables."""
    with open(metrics_md) as f:
        rows = re.findall(r"^\| `(ftvm_[a-z0-9_]+)` \| (\w+) \|", f.read(),
                          re.M)
    return dict(rows)


def raw_families(text):
    """Checks the lines themselves: each family's HELP then TYPE, once,
    before its samples.  {name as in TYPE: type}."""
    types, helps, current = {}, set(), None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            check(name not in helps, "HELP of %s twice" % name)
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            check(name in helps, "TYPE of %s without its HELP first" % name)
            check(name not in types, "TYPE of %s twice" % name)
            types[name] = typ
            current = name
        elif line and not line.startswith("#"):
            sample = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            check(current and (sample == current or
                               sample.startswith(current + "_")),
                  "sample %s outside its family (%s)" % (sample, current))
    check(helps == set(types), "HELP without TYPE: %s"
          % (helps - set(types)))
    return types


def check_histogram(name, fam):
    buckets = [(s.labels["le"], s.value) for s in fam.samples
               if s.name == name + "_bucket"]
    count = [s.value for s in fam.samples if s.name == name + "_count"]
    total = [s.value for s in fam.samples if s.name == name + "_sum"]
    check(len(count) == 1 and len(total) == 1 and len(buckets) >= 2,
          "%s: not a whole histogram: %s" % (name, fam.samples))
    check(buckets[-1][0] == "+Inf", "%s: the last bucket is %s, not +Inf"
          % (name, buckets[-1][0]))
    bounds = [float(le) for le, _ in buckets]
    check(bounds == sorted(bounds) and len(set(bounds)) == len(bounds),
          "%s: bounds out of order: %s" % (name, bounds))
    values = [v for _, v in buckets]
    check(values == sorted(values), "%s: buckets not cumulative: %s"
          % (name, buckets))
    check(values[-1] == count[0], "%s: +Inf %s but _count %s"
          % (name, values[-1], count[0]))
    check(total[0] >= 0 and (count[0] > 0 or total[0] == 0),
          "%s: _sum %s with _count %s" % (name, total[0], count[0]))
    return [le for le, _ in buckets]


def scrape(port, role):
    """Scrapes, checks the conventions, returns {sample name: [(labels,
    value)]} and the families."""
    st, headers, text = request(port)
    check(st == 200, "GET /metrics: %d" % st)
    check(headers.get("Content-Type", "").startswith("text/plain; "
                                                     "version=0.0.4"),
          "Content-Type %r" % headers.get("Content-Type"))
    types = raw_families(text)
    docs = documented()
    families = list(text_string_to_metric_families(text))
    check(len(families) == len(types), "the parser read %d families, the "
          "text has %d" % (len(families), len(types)))
    by_unit = {}
    samples = {}
    for fam in families:
        # The parser names a counter's family without _total.
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        check(fam.documentation.strip(), "%s has no HELP" % name)
        check(types.get(name) == fam.type, "%s: TYPE %s, parsed as %s"
              % (name, types.get(name), fam.type))
        check(fam.type in ("counter", "gauge", "histogram"),
              "%s: type %s" % (name, fam.type))
        check(name.startswith("ftvm_"), "%s lacks the ftvm_ prefix" % name)
        check(not re.search(r"_(ms|msec|millis|us|ns|p50|p99|percent|kib|"
                            r"mib|per_s)(_|$)", name),
              "%s is not in a base unit, or is a precomputed figure" % name)
        for unit in ("seconds", "bytes"):
            if unit in name:
                check(name.endswith("_" + unit) or
                      name.endswith("_%s_total" % unit),
                      "%s: the unit is not at the end" % name)
        check(name in docs, "%s is not in docs/metrics.md" % name)
        check(docs[name] == fam.type, "%s: docs/metrics.md says %s, it is "
              "a %s" % (name, docs[name], fam.type))
        if fam.type == "histogram":
            les = check_histogram(name, fam)
            unit = name.rsplit("_", 1)[1]
            check(by_unit.setdefault(unit, les) == les,
                  "%s: bounds differ from the other _%s histograms"
                  % (name, unit))
        if name.endswith("_state"):
            ones = [s for s in fam.samples if s.value == 1]
            check(all(s.value in (0, 1) and list(s.labels) == ["state"]
                      for s in fam.samples) and len(ones) <= 1,
                  "%s is not one-hot: %s" % (name, fam.samples))
        for s in fam.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    info = samples.get("ftvm_build_info")
    version = ft.run([ftvm, "--version"], capture_output=True,
                     text=True).stdout.split()[-1]
    check(info == [({"version": version, "role": role}, 1.0)],
          "ftvm_build_info %s, expected version %s role %s"
          % (info, version, role))
    return samples, {f.name: f for f in families}


def value(samples, name, **labels):
    got = [v for lab, v in samples.get(name, []) if lab == labels]
    check(len(got) == 1, "no single %s%s: %s" % (name, labels,
                                                 samples.get(name)))
    return got[0]


def state(samples, name):
    on = [lab["state"] for lab, v in samples.get(name, []) if v == 1]
    return on[0] if on else None


def listening_addresses(port):
    """Local addresses of the sockets listening on port (from /proc)."""
    found = []
    for path, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            addr, p = f[1].split(":")
            if f[3] == "0A" and int(p, 16) == port:
                found.append(addr if width == 8 else "v6:" + addr)
    return found


# ---- cases ----

def secondary(name, *extra):
    p = Proc(name, [ftvm, "secondary", "--listen", "127.0.0.1:0",
                    "--insecure"] + list(extra))
    m = p.wait_err(LISTEN_RE, 30, "listening")
    return p, "%s:%s" % (m.group(1), m.group(2))


def case_secondary():
    port = ft.free_port()
    sec, _ = secondary("sec", "--metrics", ":%d" % port)
    wait_metrics(port, sec)
    s, fams = scrape(port, "secondary")
    check(state(s, "ftvm_secondary_state") == "waiting",
          "state %s" % s.get("ftvm_secondary_state"))
    for name in ("ftvm_secondary_checkpoints_applied_total",
                 "ftvm_secondary_checkpoints_refused_total",
                 "ftvm_secondary_package_bytes_total",
                 "ftvm_secondary_apply_seconds_count",
                 "ftvm_disk_checkpoints_written_total"):
        check(value(s, name) == 0, "%s is %s before a primary"
              % (name, value(s, name)))
    check("ftvm_secondary_apply_seconds" in fams, "no apply histogram")
    check(not any(n.startswith("ftvm_vm_") for n in s),
          "VM families without a VM: %s" % sorted(s))
    check(value(s, "ftvm_uptime_seconds") > 0, "uptime")

    # :PORT is loopback only.
    addrs = listening_addresses(port)
    check(addrs == ["0100007F"], ":%d listens on %s, not only 127.0.0.1"
          % (port, addrs))
    st, h, body = request(port, path="/")
    check(st == 404, "GET /: %d" % st)
    st, h, body = request(port, path="/metrics/x")
    check(st == 404, "GET /metrics/x: %d" % st)
    st, h, body = request(port, path="/metrics?name[]=x")
    check(st == 200 and "ftvm_build_info" in body,
          "GET /metrics?query: %d" % st)
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        st, h, body = request(port, method=method)
        check(st == 405 and h.get("Allow") == "GET",
              "%s /metrics: %d, Allow %r" % (method, st, h.get("Allow")))
    st, h, body = request(port, headers={"X-Big": "a" * 16384})
    check(400 <= st < 500, "16 KiB of headers: %d" % st)
    # A client that connects and says nothing holds up nobody.
    idle = socket.create_connection(("127.0.0.1", port),
                                    timeout=ft.scaled(10))
    st, _, _ = request(port)
    check(st == 200, "a scrape beside an idle connection: %d" % st)
    idle.close()
    check(sec.alive(), "the secondary died\n" + sec.dump())

    # A bad address, and one already taken, are refused at start.
    r = ft.run([ftvm, "secondary", "--listen", "127.0.0.1:0",
                "--metrics", "nonsense", "--insecure"], capture_output=True,
               text=True)
    check(r.returncode == EXIT_SETUP and "--metrics 'nonsense'" in r.stderr,
          "--metrics nonsense: exit %d: %s" % (r.returncode, r.stderr))
    r = ft.run([ftvm, "secondary", "--listen", "127.0.0.1:0",
                "--metrics", "127.0.0.1:%d" % port, "--insecure"],
               capture_output=True, text=True)
    check(r.returncode == EXIT_SETUP and str(port) in r.stderr and
          "cannot listen" in r.stderr,
          "--metrics on a busy port: exit %d: %s" % (r.returncode, r.stderr))

    # 128+N: stopped by signal N (ftvm secondary --help).
    check(sec.term(30) == 128 + signal.SIGTERM,
          "the secondary's exit on SIGTERM\n" + sec.dump())


def case_run():
    needs_kvm()
    port = ft.free_port()
    sock = os.path.join(ft.tmp, "run.sock")
    vm = Proc("run", [ftvm, "run", "--mem", "64M", "--control", sock,
                      "--metrics", ":%d" % port,
                      os.path.join(guests, "counter.elf"), "rate=50"])
    wait_metrics(port, vm)
    vm.wait_line(lambda line: line.startswith("tick 3 "), 60,
                 "the guest's tick 3")
    s, _ = scrape(port, "run")
    check(state(s, "ftvm_vm_state") == "running",
          "vm state %s" % s.get("ftvm_vm_state"))
    check(value(s, "ftvm_vm_memory_bytes") == 64 << 20, "memory %s"
          % value(s, "ftvm_vm_memory_bytes"))
    check(value(s, "ftvm_disk_checkpoints_written_total") == 0, "written")
    check(not any(n.startswith(("ftvm_primary_", "ftvm_secondary_"))
                  for n in s), "another role's families: %s" % sorted(s))
    pauses = value(s, "ftvm_vm_pauses_total")

    path = os.path.join(ft.tmp, "a.ftvm")
    ctl(sock, "save", path)
    s, _ = scrape(port, "run")
    check(value(s, "ftvm_disk_checkpoints_written_total") == 1,
          "written %s after a save" %
          value(s, "ftvm_disk_checkpoints_written_total"))
    check(value(s, "ftvm_disk_checkpoint_last_bytes") ==
          os.path.getsize(path), "last_bytes %s, the file has %d"
          % (value(s, "ftvm_disk_checkpoint_last_bytes"),
             os.path.getsize(path)))
    check(value(s, "ftvm_disk_checkpoint_last_duration_seconds") >=
          value(s, "ftvm_disk_checkpoint_last_pause_seconds") > 0,
          "duration and pause of the save")
    check(value(s, "ftvm_vm_pauses_total") > pauses, "the save's pause "
          "was not counted")
    check(value(s, "ftvm_vm_longest_pause_seconds") > 0, "longest pause")

    ctl(sock, "pause")
    s, _ = scrape(port, "run")
    check(state(s, "ftvm_vm_state") == "paused", "state after pause: %s"
          % s.get("ftvm_vm_state"))
    quit_vm(sock, vm)


def case_replication():
    needs_kvm()
    sport, pport = ft.free_port(), ft.free_port()
    sec, addr = secondary("sec", "--metrics", ":%d" % sport)
    sock = os.path.join(ft.tmp, "pri.sock")
    pri = Proc("pri", [ftvm, "primary", "--mem", "64M", "--secondary", addr,
                       "--control", sock, "--metrics", ":%d" % pport,
                       "--insecure", os.path.join(guests, "counter.elf"),
                       "rate=50"])
    wait_metrics(pport, pri)

    def acked(n):
        s, _ = scrape(pport, "primary")
        return s if value(s, "ftvm_primary_checkpoints_acked_total") >= n \
            else None
    s = wait_until(lambda: acked(10), 120, "10 checkpoints acknowledged")
    pri.wait_line(lambda line: line.startswith("tick 5 "), 60,
                  "ticks released")
    s, f = scrape(pport, "primary")
    check(state(s, "ftvm_primary_state") == "active", "primary state %s"
          % s.get("ftvm_primary_state"))
    taken = value(s, "ftvm_primary_checkpoints_taken_total")
    acked_n = value(s, "ftvm_primary_checkpoints_acked_total")
    for h in ("ftvm_primary_checkpoint_pause_seconds",
              "ftvm_primary_checkpoint_dirty_pages",
              "ftvm_primary_package_size_bytes"):
        check(value(s, h + "_count") == taken, "%s_count %s, %s taken"
              % (h, value(s, h + "_count"), taken))
    check(value(s, "ftvm_primary_package_size_bytes_sum") ==
          value(s, "ftvm_primary_package_bytes_total"),
          "package sizes sum to %s, the counter says %s"
          % (value(s, "ftvm_primary_package_size_bytes_sum"),
             value(s, "ftvm_primary_package_bytes_total")))
    check(value(s, "ftvm_primary_checkpoint_pause_seconds_sum") > 0,
          "no pause time")
    ack = value(s, "ftvm_primary_checkpoint_ack_seconds_count")
    check(1 <= ack <= acked_n, "%s ACK round trips for %s ACKs"
          % (ack, acked_n))
    check(value(s, "ftvm_primary_output_commit_delay_seconds_count") >= 1 and
          value(s, "ftvm_primary_output_console_written_bytes_total") > 0,
          "no console output released through output commit")
    check(value(s, "ftvm_primary_checkpoint_interval_seconds") > 0,
          "interval")
    check(state(s, "ftvm_vm_state") == "running", "primary's VM %s"
          % s.get("ftvm_vm_state"))

    t, _ = scrape(sport, "secondary")
    check(state(t, "ftvm_secondary_state") == "active", "secondary state %s"
          % t.get("ftvm_secondary_state"))
    applied = value(t, "ftvm_secondary_checkpoints_applied_total")
    check(applied >= 10, "%s applied" % applied)
    check(value(t, "ftvm_secondary_apply_seconds_count") == applied,
          "apply_seconds_count %s, %s applied"
          % (value(t, "ftvm_secondary_apply_seconds_count"), applied))
    check(value(t, "ftvm_secondary_package_bytes_total") > 0, "bytes")
    check(value(t, "ftvm_secondary_last_checkpoint_id") >= 10, "last id")
    check(state(t, "ftvm_vm_state") == "created",
          "the secondary's RAM cache is %s" % t.get("ftvm_vm_state"))

    ctl(sock, "stop-replication")
    check(sec.wait(30) == ft.EXIT_DROPPED, "the secondary's exit\n" +
          sec.dump())
    s, _ = scrape(pport, "primary")
    check(state(s, "ftvm_primary_state") == "stopped", "after stop: %s"
          % s.get("ftvm_primary_state"))
    quit_vm(sock, pri)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tcp_conns(port):
    """Established connections to 127.0.0.1:port, from /proc."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fl = line.split()
            if fl[3] == "01" and int(fl[1].split(":")[1], 16) == port:
                n += 1
    return n


def closed_by_peer(s):
    """True once the server has closed s (EOF or reset), without waiting."""
    s.setblocking(False)
    try:
        return s.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def scrape_ok(port):
    try:
        return request(port)[0] == 200
    except OSError:
        return False


def case_limits():
    port = ft.free_port()
    sec, _ = secondary("sec", "--metrics", "%d" % port)
    wait_metrics(port, sec)
    addrs = listening_addresses(port)
    check(addrs == ["0100007F"], "--metrics %d listens on %s, not only "
          "127.0.0.1" % (port, addrs))
    pid = sec.p.pid

    # 0. What is not an HTTP/1.x request gets 400; a bare-LF one is read.
    for raw, want in ((b"GARBAGE\r\n\r\n", b"HTTP/1.1 400 "),
                      (b"GET /metrics HTTP/1.0\n\n", b"HTTP/1.1 200 ")):
        c = socket.create_connection(("127.0.0.1", port),
                                     timeout=ft.scaled(10))
        c.sendall(raw)
        c.shutdown(socket.SHUT_WR)      # and the answer still comes
        got = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
        c.close()
        check(got.startswith(want) and b"Connection: close" in got,
              "%r answered %r" % (raw, got[:200]))

    # 1. Endless headers: the connection is cut, the process stays small.
    rss0 = rss_kib(pid)
    c = socket.create_connection(("127.0.0.1", port), timeout=ft.scaled(10))
    chunk = (b"X-Filler: " + b"a" * 1000 + b"\r\n") * 64
    sent, cut = 0, None
    try:
        c.sendall(b"GET /metrics HTTP/1.1\r\n")
        while sent < (256 << 20):
            c.sendall(chunk)
            sent += len(chunk)
    except socket.timeout:
        cut = "timeout"
    except OSError as e:
        cut = "closed (%s)" % e.__class__.__name__
    c.close()
    grew = rss_kib(pid) - rss0
    ft.log("endless headers: %s after %d KiB sent; RSS grew %d KiB"
           % (cut, sent >> 10, grew))
    check(cut and cut.startswith("closed"), "a connection sending endless "
          "headers was not closed: %s after %d KiB" % (cut, sent >> 10))
    check(sent < (32 << 20), "%d MiB of headers went in before the cut"
          % (sent >> 20))
    check(grew < 8192, "RSS grew by %d KiB under endless headers" % grew)

    # 2. A request dripped a byte at a time is cut once it is overdue.
    c = socket.create_connection(("127.0.0.1", port), timeout=ft.scaled(10))
    c.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")

    def dripped_out():
        try:
            c.sendall(b"a")
        except OSError:
            return True
        return closed_by_peer(c) or None
    t0 = time.monotonic()
    wait_until(dripped_out, 60, "a dripping connection to be cut", step=0.5)
    ft.log("a dripping request was cut after %.1f s" % (time.monotonic() - t0))
    c.close()

    # 3. Many idle connections: 16 are kept, the others closed at once.
    base = tcp_conns(port)
    idle = [socket.create_connection(("127.0.0.1", port),
                                     timeout=ft.scaled(10))
            for _ in range(64)]
    wait_until(lambda: sum(closed_by_peer(s) for s in idle) >= 48 or None,
               30, "the connections over the limit to be closed")
    kept = [s for s in idle if not closed_by_peer(s)]
    check(len(kept) == 16, "%d idle connections kept, expected 16"
          % len(kept))
    check(tcp_conns(port) - base <= 2 * 16, "%d connections established"
          % (tcp_conns(port) - base))
    t0 = time.monotonic()
    wait_until(lambda: all(closed_by_peer(s) for s in kept) or None, 60,
               "the idle connections to be closed")
    ft.log("16 idle connections closed after %.1f s"
           % (time.monotonic() - t0))
    wait_until(lambda: scrape_ok(port) or None, 30, "/metrics to answer")
    for s in idle:
        s.close()
    check(sec.alive(), "the secondary died\n" + sec.dump())
    check(sec.term(30) == 128 + signal.SIGTERM,
          "the secondary's exit on SIGTERM\n" + sec.dump())


CASES = {
    "secondary": case_secondary,
    "limits": case_limits,
    "run": case_run,
    "replication": case_replication,
}


def main():
    global ftvm, ftvmctl, guests, metrics_md
    if len(sys.argv) != 6 or sys.argv[1] not in CASES:
        sys.stderr.write(__doc__)
        return 2
    case = sys.argv[1]
    ftvm, ftvmctl, guests, metrics_md = (os.path.abspath(a)
                                         for a in sys.argv[2:])

    def run():
        check(text_string_to_metric_families is not None,
              "prometheus_client is missing from %s (Debian: python3-"
              "prometheus-client; scripts/bootstrap.sh installs it)"
              % sys.executable)
        CASES[case]()
        for p in ft.procs:
            ft.check_sanitizers(p)
    ft.run_case(case, run, "metrics")


if __name__ == "__main__":
    sys.exit(main())
