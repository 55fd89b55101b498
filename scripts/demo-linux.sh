#!/usr/bin/env bash
# demo-linux.sh: a Linux VM replicated from a primary to a secondary on
# this machine, the primary killed, the secondary's shell carrying on.
#
# Debian's kernel and a busybox initramfs (scripts/linux-guest.sh) boot on
# ftvm's PC under `ftvm primary --kernel`; a counter typed into the
# guest's shell prints a line a second through output commit; the primary
# is killed with SIGKILL; the secondary takes over, its counter lines
# follow the primary's last, and a command typed into its stdin answers.
#
# Linux boots in useful time only on hardware KVM.  Where this machine's
# KVM cannot run it (a nested PVM, or no /dev/kvm), the script runs itself
# inside the QEMU VM of scripts/kvm-vm.sh --force, about ten times slower
# (a minute or two).  Everything it starts is killed and everything it
# writes is removed when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${FTVM_DEMO_INSIDE:-}" != 1 ]; then
    scripts/bootstrap.sh >/dev/null
    scripts/linux-guest.sh >/dev/null     # prepared here, where apt works
    # As tests/linux does: hardware KVM (kvm_amd or kvm_intel) runs Linux.
    if ! { [ -d /sys/module/kvm_amd ] || [ -d /sys/module/kvm_intel ]; } ||
            [ ! -w /dev/kvm ]; then
        echo "demo-linux: this machine's KVM does not run Linux in useful" \
             "time: running in the QEMU VM of scripts/kvm-vm.sh --force" >&2
        exec scripts/kvm-vm.sh --force -- env FTVM_DEMO_INSIDE=1 "$0"
    fi
fi

ftvm=build/tools/ftvm
ftvmctl=build/tools/ftvmctl
set -- $(scripts/linux-guest.sh)
kernel=$1 initrd=$2
. scripts/demo-lib.sh
demo_init demo-linux
count() { sed -n 's/^ftvm-linux: count \([0-9]*\).*/\1/p' "$1" | sed -n "$2"; }

step "Start a secondary, and a primary that boots Debian's kernel and replicates it"
mkfifo "$work/a.in" "$work/b.in"
cmd "ftvm secondary --listen 127.0.0.1:0 --control b.sock --insecure &"
$ftvm secondary --listen 127.0.0.1:0 --control "$work/b.sock" --insecure \
    <"$work/b.in" >"$work/b.out" 2>"$work/b.err" &
pids+=($!); sec=$!
exec 4>"$work/b.in"         # the secondary's stdin: its console once it runs
wait_for "$work/b.err" "listening on" 30
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/b.err")
cmd "ftvm primary --kernel vmlinuz --initrd initramfs --mem 256M" \
    "--secondary 127.0.0.1:$port --control a.sock --insecure &"
$ftvm primary --kernel "$kernel" --initrd "$initrd" --mem 256M \
    --secondary "127.0.0.1:$port" --control "$work/a.sock" --insecure \
    <"$work/a.in" >"$work/a.out" 2>"$work/a.err" &
pids+=($!); pri=$!
exec 3>"$work/a.in"         # the primary's stdin: the guest's console
wait_for "$work/a.out" "a shell on the console" 600
grep -m1 "ftvm-linux: up" "$work/a.out" | sed 's/^/   /'
sed 's/^/   /' "$work/a.err"

step "A counter typed into the guest's shell, shown once its checkpoint is on the secondary"
cmd "echo 'i=0; while :; do echo ftvm-linux: count \$i; i=\$((i+1)); sleep 1; done &' >primary's stdin"
echo 'i=0; while :; do echo ftvm-linux: count $i; i=$((i+1)); sleep 1; done &' >&3
wait_for "$work/a.out" "^ftvm-linux: count 4" 120
grep "^ftvm-linux: count" "$work/a.out" | tail -2 | sed 's/^/   /'
cmd "ftvmctl -s a.sock status"
$ftvmctl -s "$work/a.sock" --json status | python3 -c '
import json, sys
s = json.load(sys.stdin); c = s["checkpoint"]
print("   state %s; %d checkpoints acked, %.1f/s; pause p50 %.2f ms; "
      "package p50 %d bytes" % (s["state"], c["acked"], c["rate_per_s"],
                                s["pause_ms"]["p50"], s["package_bytes"]["p50"]))'

step "Kill the primary (kill -9), as the loss of its host would"
cmd "kill -9 $pri"
kill -9 "$pri"; wait "$pri" 2>/dev/null || true
last=$(count "$work/a.out" '$p')
note "the last line the primary released: ftvm-linux: count $last"
wait_for "$work/b.out" "^ftvm-linux: count" 120

step "The secondary runs the guest on"
grep -E "failover \(|running unprotected" "$work/b.err" | sed "s/^/   /"
first=$(count "$work/b.out" 1p)
grep "^ftvm-linux: count" "$work/b.out" | head -2 | sed 's/^/   /'
if [ "$first" -eq $((last + 1)) ]; then
    note "count $first follows count $last: nothing lost, nothing said twice"
else
    note "first count $first after the primary's last, $last (a gap is" \
         "output held for a checkpoint that never arrived)"
fi
cmd "echo 'echo ftvm-linux: answer \$((6*7)) after \$(cut -d\" \" -f1 /proc/uptime) s up' >secondary's stdin"
echo 'echo ftvm-linux: answer $((6*7)) after $(cut -d" " -f1 /proc/uptime) s up' >&4
wait_for "$work/b.out" "^ftvm-linux: answer 42" 120
grep "^ftvm-linux: answer" "$work/b.out" | sed 's/^/   /'
note "the same shell, its uptime carried on from the primary's boot"
