"""Mutual TLS on the replication connection: real processes, real
certificates (made at test time by scripts/make-certs.sh), loopback only.

usage: tls_test.py CASE FTVM FTVMCTL FAKE_PRIMARY GUEST_DIR

  refusals   a secondary with the pair's credentials refuses, each with a
             clear message in both logs: a primary whose certificate is of
             another CA, an expired certificate, a primary that pins a
             name the secondary's certificate does not carry, a plaintext
             primary (--insecure), a TLS client without a certificate, and
             a primary the secondary's --tls-peer does not name; the real
             primary still pairs afterwards.  Each refused primary (no
             --reconnect) stops its VM and exits 120 with the reason and
             what to check; one given --reconnect runs on degraded
  impostor   issue 8, finding 1: a peer without the pair's credentials
             (fake_primary in plaintext, and a TLS client of another CA
             sending the stream's first bytes) never becomes the primary:
             no VM is created, the state stays "waiting"; the real primary
             pairs, and when it is killed the secondary fails over into
             its VM
  dribble    issue 8, finding 2: peers that connect and dribble bytes
             without completing a handshake are dropped at the handshake
             deadline, no more than 4 handshake at once, and the real
             primary pairs afterwards
  insecure   --insecure refused on non-loopback addresses: a secondary
             listening on every address, a primary aimed at 192.0.2.1
             (TEST-NET-1: the check comes before connecting, nothing is
             sent), and attach-secondary to it

Every case but the secondary's half of insecure needs /dev/kvm (77
without).
"""
import os
import re
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import ftvmtest as ft  # noqa: E402
from ftvmtest import check, log  # noqa: E402

ftvm = ftvmctl = fake = guests = None
LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")
COUNTER = ["rate=50"]


def ctl(sock, *args, ok=True):
    return ft.ftvmctl_json(ftvmctl, sock, *args, ok=ok)


def secondary(name, *extra):
    """(Proc, "127.0.0.1:PORT", control socket)."""
    sock = os.path.join(ft.tmp, name + ".sock")
    p = ft.Proc(name, [ftvm, "secondary", "--listen", "127.0.0.1:0",
                       "--control", sock, "--failure-timeout",
                       "%dms" % ft.scaled(1000)] + list(extra))
    m = p.wait_err(LISTEN_RE, 10, "listening")
    ctl(sock, "status")
    return p, "%s:%s" % (m.group(1), m.group(2)), sock


def primary(name, addr, *extra):
    sock = os.path.join(ft.tmp, name + ".sock")
    p = ft.Proc(name, [ftvm, "primary", os.path.join(guests, "counter.elf")] +
                COUNTER + ["--mem", "64M", "--secondary", addr, "--control",
                           sock, "--failure-timeout",
                           "%dms" % ft.scaled(1000)] + list(extra))
    return p, sock


def wait_log(p, text, what, timeout=15):
    """Waits until p's stderr says text (a regex)."""
    return p.wait_err(re.compile(text), timeout, what)


def state(sock):
    return ctl(sock, "status")["state"]


def pairs(sec, ssock, addr, creds, name="real"):
    """The real primary pairs with sec: a checkpoint applied there."""
    p, psock = primary(name, addr, *ft.tls_args(creds["primary"]))
    ft.wait_until(lambda: state(ssock) == "active", 30,
                  "the real primary to pair\n%s\n%s" % (sec.dump(),
                                                        p.dump()))
    log("%s paired with %s: %s" % (name, addr, ctl(psock, "status")["state"]))
    return p, psock


def never_protected(p, name, why):
    """p (no --reconnect), whose first secondary refused it, exits 120
    (setup failed) by itself, its log naming why (on that line, or for a
    refusal the TLS layer reported after a TLS 1.3 handshake, before it)
    and what to check."""
    rc = p.wait(20)
    err = p.err()
    check(rc == 120, "%s: exit %s, expected 120 (setup failed)\n%s" %
          (name, rc, p.dump()))
    at = err.find("setup failed")
    start = err.rfind("\n", 0, at) + 1
    line = err[start:].split("\n")[0] if at >= 0 else ""
    check(at >= 0 and re.search(why, err[:start + len(line)]) and
          "the VM was never protected" in line and
          "--tls-creds and --tls-peer" in line and
          "--reconnect TIME" in line,
          "%s: the reason and the hint are not both said:\n%s" %
          (name, err))
    check("degraded" not in err, "%s: it ran degraded:\n%s" % (name, err))


def stop(p):
    p.signal(9)
    p.p.wait(ft.scaled(10))


def tls_client(addr, ca, cert=None, send=b"", verify=True):
    """A TLS client in Python (no ftvm): the handshake, then send; the
    error it met, or None.  verify=False: it takes any server (an attacker
    does not care whom it talks to)."""
    host, port = addr.rsplit(":", 1)
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.minimum_version = ssl.TLSVersion.TLSv1_3
    c.load_verify_locations(os.path.join(ca, "ca.pem"))
    c.check_hostname = False
    if not verify:
        c.verify_mode = ssl.CERT_NONE
    if cert:
        c.load_cert_chain(os.path.join(cert, "cert.pem"),
                          os.path.join(cert, "key.pem"))
    s = socket.create_connection((host, int(port)), timeout=ft.scaled(10))
    try:
        t = c.wrap_socket(s)
        t.sendall(send)
        # TLS 1.3: the server's verdict on our certificate comes after.
        t.recv(1)
        return None
    except (ssl.SSLError, OSError) as e:
        return str(e)
    finally:
        s.close()


# ---- cases ----

def case_refusals():
    ft.needs_kvm()
    creds = ft.make_certs("pair", "primary", "secondary", "other")
    other = ft.make_certs("rogue", "primary")
    expired = ft.make_certs("pair", "old", expired=True)
    sec, addr, ssock = secondary("sec", *ft.tls_args(creds["secondary"]))
    refusals = 0

    def refused(sec_says, pri_says, *pri_args, reconnect=False):
        nonlocal refusals
        refusals += 1
        name = "bad%d" % refusals
        # A reconnect longer than the case: one attempt only.
        extra = ("--reconnect", "600s") if reconnect else ()
        p, psock = primary(name, addr, *(pri_args + extra))
        n = refusals
        ft.wait_until(lambda: len(re.findall("refusing the connection",
                                             sec.err())) >= n, 15,
                      "refusal %d on the secondary\n%s\n%s" %
                      (n, sec.dump(), p.dump()))
        line = sec.err().split("refusing the connection")[n].split("\n")[0]
        check(re.search(sec_says, line), "%s: the secondary says %r, "
              "expected %r" % (name, line, sec_says))
        wait_log(p, pri_says, "%s: the primary's message" % name)
        check(state(ssock) == "waiting", "%s: secondary not waiting" % name)
        if reconnect:
            wait_log(p, "running unprotected \\(degraded\\)",
                     "%s: degraded" % name)
            check(state(psock) == "degraded", "%s: not degraded" % name)
            stop(p)
        else:
            never_protected(p, name, pri_says)
        log("%s refused: %s" % (name, line.strip()))

    refused("the peer refused the handshake: unknown CA",
            "not signed by our CA", *ft.tls_args(other["primary"]))
    refused("the peer refused the handshake: unknown CA",
            "not signed by our CA", *ft.tls_args(other["primary"]),
            reconnect=True)
    refused("certificate has expired", "refused the handshake: "
            "certificate expired", *ft.tls_args(expired["old"]))
    refused("the peer refused the handshake: bad certificate",
            "hostname mismatch.*expected peer elsewhere",
            *ft.tls_args(creds["primary"], "elsewhere"))
    refused("does not speak TLS", "secondary with --tls-creds closes such "
            "connections", "--insecure")
    # A TLS client that presents no certificate.
    refusals += 1
    err = tls_client(addr, creds["primary"])
    ft.wait_until(lambda: "presented no certificate" in sec.err(), 15,
                  "the secondary to refuse a client without a certificate")
    check(err and "CERTIFICATE_REQUIRED" in err.upper().replace(" ", "_"),
          "the client without a certificate was told: %r" % err)
    log("no certificate: the client was told %r" % err)
    real, _ = pairs(sec, ssock, addr, creds)
    stop(real)

    # The secondary pins the primary's name: another node of the same CA
    # is refused.
    sec2, addr2, ssock2 = secondary("sec2", *ft.tls_args(
        creds["secondary"], "primary"))
    p, _ = primary("node", addr2, *ft.tls_args(creds["other"]))
    wait_log(sec2, r"refusing the connection: .*hostname mismatch.*expected "
             "peer primary", "the secondary's pin")
    never_protected(p, "node", "refused the handshake: bad certificate")
    pairs(sec2, ssock2, addr2, creds, "real2")
    for s in (sec, sec2):
        ft.check_peer_once(s, 2)


def case_impostor():
    ft.needs_kvm()
    creds = ft.make_certs("pair", "primary", "secondary")
    rogue = ft.make_certs("rogue", "primary")
    sec, addr, ssock = secondary("sec", *ft.tls_args(creds["secondary"]))
    # fake_primary speaks the real stream, in plaintext: a VM of its own
    # shape would be created if it got through.
    console = os.path.join(ft.tmp, "fake.console")
    f = ft.Proc("fake", [fake, "--mem", "64M", addr,
                         os.path.join(guests, "counter.elf"), "rate=50",
                         console, "bringup", "ckpt:3", "die"])
    wait_log(sec, "refusing the connection: .*does not speak TLS",
             "the plaintext impostor refused")
    f.wait(20)
    # A TLS client with a certificate of another CA, sending the stream's
    # magic after its handshake.
    err = tls_client(addr, rogue["primary"], rogue["primary"], b"QEVM",
                     verify=False)
    check(err is not None, "the rogue TLS client was not refused")
    wait_log(sec, "refusing the connection: .*not signed by our CA",
             "the rogue TLS client refused")
    check(state(ssock) == "waiting", "secondary not waiting after the "
          "impostors")
    check("VM of" not in sec.err() and
          not re.search(r"^ftvm secondary: connection from", sec.err(),
                        re.M),
          "an impostor got through:\n" + sec.dump())
    real, psock = pairs(sec, ssock, addr, creds)
    ft.wait_until(lambda: ctl(psock, "status")["checkpoint"]["acked"] >= 3,
                  30, "three checkpoints acknowledged")
    # Failover is into the real primary's VM, its guest's console going on.
    stop(real)
    ft.wait_until(lambda: state(ssock) == "running", 30,
                  "failover\n" + sec.dump())
    ft.wait_until(lambda: "tick" in sec.out(), 15, "the guest's ticks on "
                  "the secondary")


def case_dribble():
    ft.needs_kvm()
    creds = ft.make_certs("pair", "primary", "secondary")
    # Short, to keep the case quick, but the real primary's handshake must
    # fit in it too, on a slow machine as well.
    deadline = ft.scaled(1.0)
    sec, addr, ssock = secondary("sec", *ft.tls_args(creds["secondary"]),
                                 "--tls-timeout", "%dms" % round(deadline * 1000))
    host, port = addr.rsplit(":", 1)
    stop_ev = threading.Event()
    closed = []

    def dribbler(i):
        s = socket.create_connection((host, int(port)))
        # A TLS record header's first bytes, one at a time, never finished.
        t0 = time.monotonic()
        try:
            for b in b"\x16\x03\x01\x02\x00\x01" * 100:
                if stop_ev.is_set():
                    break
                s.sendall(bytes([b]))
                time.sleep(0.2)
                s.settimeout(0)
                try:
                    if s.recv(1) == b"":
                        break
                except BlockingIOError:
                    pass
        except OSError:
            pass
        closed.append((i, time.monotonic() - t0))
        s.close()

    threads = [threading.Thread(target=dribbler, args=(i,), daemon=True)
               for i in range(6)]
    for t in threads:
        t.start()
    ft.cleanups.append(stop_ev.set)
    wait_log(sec, "refusing the connection .*TLS handshakes are already in "
             "progress", "a handshake beyond the bound refused")
    check(state(ssock) == "waiting", "not waiting while peers dribble")
    ft.wait_until(lambda: len(re.findall("no TLS handshake within the "
                                         "deadline", sec.err())) >= 4,
                  ft.scaled(10) + deadline, "4 dribblers dropped at the "
                  "deadline\n" + sec.dump())
    ft.wait_until(lambda: len(closed) == 6, ft.scaled(10),
                  "the dribblers to see their connections closed")
    held = max(d for _, d in closed)
    log("dribblers closed after at most %.1f s (deadline %.1f s)" %
        (held, deadline))
    check("VM of" not in sec.err(), "a dribbler got through")
    stop_ev.set()
    real, _ = pairs(sec, ssock, addr, creds)
    ft.check_peer_once(sec, 6)


def case_insecure():
    def run(*args):
        r = ft.run([ftvm, "secondary", "--listen"] + list(args),
                   capture_output=True, text=True, timeout=10)
        return r.returncode, r.stderr
    for listen in (":0", "0.0.0.0:0"):
        rc, err = run(listen, "--insecure")
        check(rc == 120 and "not a loopback address" in err,
              "secondary --insecure on %s: %d %r" % (listen, rc, err))
    ft.needs_kvm()
    p, _ = primary("pri", "192.0.2.1:9", "--insecure")
    rc = p.wait(20)
    check(rc == 120 and "not a loopback address" in p.err(),
          "primary --insecure to 192.0.2.1: exit %s\n%s" % (rc, p.dump()))
    port = ft.free_port()
    p, sock = primary("pri2", "127.0.0.1:%d" % port, "--insecure",
                      "--reconnect", "200ms")
    ft.wait_until(lambda: state(sock) == "degraded", 20, "degraded")
    rc, err = ctl(sock, "attach-secondary", "192.0.2.1:9", ok=False)
    check(rc != 0 and "not a loopback address" in err,
          "attach-secondary 192.0.2.1:9 with --insecure: %d %r" % (rc, err))


CASES = {
    "refusals": case_refusals,
    "impostor": case_impostor,
    "dribble": case_dribble,
    "insecure": case_insecure,
}


def main():
    global ftvm, ftvmctl, fake, guests
    if len(sys.argv) != 6 or sys.argv[1] not in CASES:
        sys.stderr.write(__doc__)
        return 2
    case, ftvm, ftvmctl, fake, guests = sys.argv[1:]

    def run():
        CASES[case]()
        ft.stop_all_checked()
    ft.run_case(case, run, "tls")


if __name__ == "__main__":
    sys.exit(main())
