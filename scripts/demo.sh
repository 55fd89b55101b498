#!/usr/bin/env bash
# The main job, end to end on this machine: set up and build, then show a
# checkpoint stream from both sides of the format: one QEMU 7.2 wrote, and
# ones ftvm's own saver writes, read back through the same loader.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh >/dev/null
ftvm=build/tools/ftvm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "A stream QEMU 7.2 wrote (migrate \"exec:cat > FILE\", 32 MiB pc guest)"
$ftvm inspect tests/qemu/plain.qemu | sed -n '1,12p;/RAM blocks/,/total/p'
echo "  ... and its 30 device sections decoded through the VM description, e.g.:"
$ftvm inspect tests/qemu/plain.qemu | sed -n '/^  mc146818rtc/,/^  [a-z]/p' | head -12

step "Streams ftvm writes: raw, zlib-compressed and XBZRLE pages"
build/tests/fuzz/gen_corpus "$work"
for s in plain compressed xbzrle; do
    $ftvm inspect "$work/$s" | sed -n '/RAM blocks/,/total/p'
done

step "A damaged stream: cut in the middle of a device section"
head -c 530000 tests/qemu/plain.qemu > "$work/cut"
$ftvm inspect --desc tests/qemu/plain.qemu "$work/cut" | tail -2 || true

step "The RAM codec's speed beside memcpy (64 MiB)"
build/bench/bench_ram -m 64 -n 3
