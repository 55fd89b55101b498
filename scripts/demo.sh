#!/usr/bin/env bash
# The main job, end to end on this machine: set up and build, run a guest
# in a VM that checkpoints itself to disk, take a checkpoint on demand,
# kill the VM's process, and carry the guest on from the checkpoint in a
# new process.  Then look inside the checkpoint, and at a stream QEMU wrote.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh >/dev/null
ftvm=build/tools/ftvm
ftvmctl=build/tools/ftvmctl
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() {    # wait_for FILE PATTERN: until a line matches (10 s at most)
    for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "timed out waiting for '$2' in $1" >&2; return 1
}

if [ ! -w /dev/kvm ]; then
    echo "demo: /dev/kvm is missing or not writable: no VM can run here;" \
         "showing the stream tools only" >&2
else
    step "Run the counter guest (64 MiB) with a checkpoint every second"
    echo "\$ ftvm run --mem 64M --control a.sock --checkpoint-dir ckpts --checkpoint-every 1s --keep 2 counter.elf rate=10"
    $ftvm run --mem 64M --control "$work/a.sock" --checkpoint-dir "$work/ckpts" \
        --checkpoint-every 1s --keep 2 build/guest/counter.elf rate=10 \
        >"$work/run.out" 2>"$work/run.err" &
    pids+=($!)
    wait_for "$work/run.out" "tick 25 "
    sed -n '1,3p;$p' "$work/run.out"
    echo "(its stderr:)"; cat "$work/run.err"

    step "Ask it how it is doing, and take a checkpoint on demand"
    $ftvmctl -s "$work/a.sock" status | grep -E '^(state|mem_bytes|pause|checkpoints\.(written|last\.(bytes|pause_ms|total_ms)))'
    echo "\$ ftvmctl -s a.sock save demo.ftvm"
    $ftvmctl -s "$work/a.sock" save "$work/demo.ftvm" | grep -E '^(bytes|total_ms|pause_ms)'
    saved_at=$(tail -1 "$work/run.out")
    echo "last line before the save returned: $saved_at"

    step "Kill the VM's process (kill -9), as a host failure would"
    kill -9 "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
    echo "last line it printed: $(tail -1 "$work/run.out")"
    ls "$work/ckpts"

    step "Carry on from the checkpoint in a new process"
    echo "\$ ftvm restore demo.ftvm"
    $ftvm restore "$work/demo.ftvm" >"$work/restore.out" 2>&1 &
    pids+=($!)
    wait_for "$work/restore.out" "tick"
    sleep 1
    kill "${pids[1]}" 2>/dev/null || true; wait "${pids[1]}" 2>/dev/null || true
    head -4 "$work/restore.out"
    first=$(head -1 "$work/restore.out" | awk '{print $2}')
    echo "(it carries on from the moment of the checkpoint; an uninterrupted"
    echo " run prints for that tick, registers and memory alike:"
    echo "   $($ftvm run --mem 64M build/guest/counter.elf rate=1000 \
        count=$((first + 1)) | grep "^tick $first ")"

    step "A damaged checkpoint is refused before the guest runs"
    cp "$work/demo.ftvm" "$work/bad.ftvm"
    printf '\xff' | dd of="$work/bad.ftvm" bs=1 seek=600000 conv=notrunc 2>/dev/null
    $ftvm restore "$work/bad.ftvm" || echo "(exit status $?)"

    step "Inside the checkpoint"
    $ftvm inspect "$work/demo.ftvm" | sed -n '1,/^$/p;/records/,/^$/p'
fi

step "A stream QEMU 7.2 wrote, read by the same loader"
$ftvm inspect tests/qemu/plain.qemu | sed -n '/RAM blocks/,/total/p'
echo "  ... and its 30 device sections decoded through the VM description, e.g.:"
$ftvm inspect tests/qemu/plain.qemu | sed -n '/^  mc146818rtc/,/^  [a-z]/p' | head -6
