#!/usr/bin/env bash
# The main job, end to end on this machine: set up and build, then run a
# guest replicated from a primary to a secondary (two processes on
# loopback), watch checkpoints flow, kill the primary with SIGKILL and see
# the secondary carry the guest on.  Then checkpoint the survivor to disk,
# kill it too, restore it, and see a damaged checkpoint refused.  Last, a
# stream QEMU wrote, read by the same loader.  A few seconds once built;
# everything it starts is killed and everything it writes is removed when
# it ends (or is interrupted).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh >/dev/null
ftvm=build/tools/ftvm
ftvmctl=build/tools/ftvmctl
counter=build/guest/counter.elf
. scripts/demo-lib.sh
demo_init demo
# status SOCK FIELD...: some fields of `ftvmctl --json status`, rounded;
# "a.b/c" prints a.b and a.c on one line.
status() {
    local sock=$1; shift
    $ftvmctl -s "$sock" --json status | python3 -c '
import json, sys
st = json.load(sys.stdin)
def get(path):
    v = st
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    if isinstance(v, float):
        return f"{v:.0f}" if v >= 100 or v == int(v) else f"{v:.2f}"
    return "-" if v is None else str(v)
for spec in sys.argv[1:]:
    head, _, rest = spec.partition("/")
    base = head.rpartition(".")[0]
    keys = [head] + [f"{base}.{k}" if base else k for k in rest.split("/") if k]
    print(f"   {spec:<34} " + " / ".join(get(k) for k in keys))
' "$@"
}
first_tick() { awk '/^tick /{print $2; exit}' "$1"; }
last_tick() { awk '/^tick /{n = $2} END {print n}' "$1"; }
# the line an uninterrupted run prints for tick N (its output depends on
# its arguments only)
reference() { $ftvm run --mem 64M $counter rate=1000 count=$(($1 + 1)) | grep "^tick $1 "; }

if [ ! -w /dev/kvm ]; then
    echo "demo: /dev/kvm is missing or not writable, so no VM can run here:" \
         "skipping replication, failover and restore; showing the stream" \
         "tools only" >&2
else
    echo "ftvm and ftvmctl below are build/tools/; files and sockets go to $work"

    step "Certificates: a CA, and one for each end (mutual TLS)"
    cmd "scripts/make-certs.sh certs primary secondary"
    scripts/make-certs.sh "$work/certs" primary secondary | sed 's/^/   /'

    step "Start a secondary (standby) and a primary that replicates to it"
    cmd "ftvm secondary --listen 127.0.0.1:0 --control b.sock" \
        "--tls-creds certs/secondary --tls-peer primary &      # 0: any free port"
    $ftvm secondary --listen 127.0.0.1:0 --control "$work/b.sock" \
        --tls-creds "$work/certs/secondary" --tls-peer primary \
        >"$work/b.out" 2>"$work/b.err" &
    pids+=($!); sec=$!
    wait_for "$work/b.err" "listening on"
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/b.err")
    sed 's/^/   /' "$work/b.err"
    cmd "ftvm primary $counter rate=10 --mem 64M --secondary 127.0.0.1:$port" \
        "--checkpoint-interval 50ms --control a.sock" \
        "--tls-creds certs/primary &"
    $ftvm primary $counter rate=10 --mem 64M --secondary "127.0.0.1:$port" \
        --checkpoint-interval 50ms --control "$work/a.sock" \
        --tls-creds "$work/certs/primary" \
        >"$work/a.out" 2>"$work/a.err" &
    pids+=($!); pri=$!
    wait_for "$work/b.err" "replication is active"
    sed 's/^/   /' "$work/a.err"; sed -n '2,$s/^/   /p' "$work/b.err"

    step "The primary's console: each tick shown once its checkpoint is on the secondary"
    cmd "tail -f a.out       # the primary's stdout, for a second"
    wait_for "$work/a.out" "^tick 8 "
    timeout 1 tail -n 2 -f "$work/a.out" | sed -u 's/^/   /' || true
    wait_for "$work/a.out" "^tick 20 "  # two seconds: rate_per_s is over 2 s

    step "Checkpoints flowing, seen from both sides"
    cmd "ftvmctl -s a.sock status      # the primary (some fields)"
    status "$work/a.sock" state checkpoint.taken/acked/in_flight \
        checkpoint.interval_ms/rate_per_s pause_ms.p50/p99 dirty_pages.p50/p99 \
        package_bytes.p50/p99 ack_ms.p50/p99 output.held_bytes \
        output.commit_delay_ms.p50/p99
    note "(pause: the guest stopped to copy its dirty pages; ack: package sent" \
         " to applied on the secondary; commit delay: how long a console line" \
         " was held back, up to one interval plus the ack)"
    cmd "ftvmctl -s b.sock status      # the secondary"
    status "$work/b.sock" state vm_state replication.applied/last_id \
        replication.apply_ms.p50/p99 replication.package_bytes.total

    step "Kill the primary (kill -9), as the loss of its host would"
    cmd "kill -9 $pri"
    t0=$(date +%s%N)
    kill -9 "$pri"; wait "$pri" 2>/dev/null || true
    before=$(last_tick "$work/a.out")
    wait_for "$work/b.out" "^tick "
    t1=$(date +%s%N)
    note "the last line the primary released: $(tail -1 "$work/a.out")"

    step "The secondary carries the guest on"
    sed -n '5,$s/^/   /p' "$work/b.err"
    first=$(first_tick "$work/b.out")
    cmd "tail -f b.out       # the secondary's stdout (silent until the failover), for a second"
    timeout 1 tail -n +1 -f "$work/b.out" | sed -u 's/^/   /' || true
    if [ "$first" -eq $((before + 1)) ]; then
        note "tick $first follows tick $before: nothing lost, nothing said twice" \
             "(it came $(( (t1 - t0) / 1000000 )) ms after the kill, as this script saw it;" \
             " a tick is due every 100 ms)"
    else
        note "first tick $first after the primary's last, $before" \
             "(a gap is output held for a checkpoint that never arrived)"
    fi
    note "an uninterrupted run prints for tick $first, registers and memory alike:" \
         "$(reference "$first")"
    cmd "ftvmctl -s b.sock status"
    status "$work/b.sock" state vm_state failover.ms failover.continued_from \
        failover.reason

    step "The survivor is a plain VM now: checkpoint it to disk, kill it, restore it"
    cmd "ftvmctl -s b.sock save demo.ftvm"
    $ftvmctl -s "$work/b.sock" --json save "$work/demo.ftvm" | python3 -c '
import json, sys
s = json.load(sys.stdin)
b, p, t = s["bytes"], s["pause_ms"], s["total_ms"]
print(f"   {b} bytes, the guest paused {p:.2f} ms, on disk after {t:.0f} ms")'
    cmd "kill -9 $sec"
    kill -9 "$sec"; wait "$sec" 2>/dev/null || true
    note "its last line: $(tail -1 "$work/b.out")"
    cmd "ftvm restore demo.ftvm"
    $ftvm restore "$work/demo.ftvm" >"$work/r.out" 2>&1 &
    pids+=($!); res=$!
    wait_for "$work/r.out" "^tick .* crc"
    first=$(first_tick "$work/r.out")
    wait_for "$work/r.out" "^tick $((first + 1)) "
    kill "$res" 2>/dev/null || true; wait "$res" 2>/dev/null || true
    head -2 "$work/r.out" | sed 's/^/   /'
    note "(it goes on from the moment of the checkpoint, so lines printed after" \
         " the save can come again; an uninterrupted run: $(reference "$first"))"

    step "A damaged checkpoint is refused before the guest runs"
    cp "$work/demo.ftvm" "$work/bad.ftvm"
    printf '\xff' | dd of="$work/bad.ftvm" bs=1 seek=600000 conv=notrunc 2>/dev/null
    cmd "ftvm restore bad.ftvm       # one byte changed"
    rc=0; out=$($ftvm restore "$work/bad.ftvm" 2>&1) || rc=$?
    echo "$out" | sed "s|$work/||; s/^/   /"
    note "(exit status $rc: nothing ran)"
fi

step "A stream QEMU 7.2 wrote, read by the same loader"
cmd "ftvm inspect tests/qemu/plain.qemu"
$ftvm inspect tests/qemu/plain.qemu | sed -n '/RAM blocks/,/pc\.ram/p;/^  total/p' |
    sed 's/^/   /'
note "... and its 30 device sections decoded through the VM description, e.g.:"
$ftvm inspect tests/qemu/plain.qemu | sed -n '/^  mc146818rtc/,/^  [a-z]/p' |
    sed -n '1,3s/^/   /p'
