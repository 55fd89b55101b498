#!/usr/bin/env bash
# linux-guest.sh [--cache DIR]
#
# Prepares a Linux guest for `ftvm run --kernel`: Debian's kernel
# (linux-image-amd64, fetched with `apt-get download` by
# scripts/kvm-vm.sh --prepare, whose cache it shares) and a busybox
# initramfs (Debian's busybox-static), both cached; prints two lines, the
# kernel's path and the initramfs's:
#
#     K=$(scripts/linux-guest.sh | sed -n 1p) I=$(... | sed -n 2p)
#     ftvm run --kernel "$K" --initrd "$I" --cmdline "console=ttyS0 reboot=k"
#
# The initramfs's /init mounts /proc, /sys and /dev, prints
#     ftvm-linux: up: N cpus, uptime S
# on the console, then does what `ftvm_mode=` on the kernel command line
# says:
#     reboot   reboot at once (with reboot=k, ftvm run exits 0)
#     count    print "ftvm-linux: count I" every second, forever
#     shell    (default) a shell on the console
#
# Options:
#   --cache DIR   where the files are kept (default: as scripts/kvm-vm.sh:
#                 $FTVM_KVM_VM_CACHE, else /var/cache/ftvm-kvm-vm)
#   -h, --help    this text
# Needs root the first time (packages, the kernel's download); exit 1
# with the reason when something is missing.
set -euo pipefail

me=linux-guest
die() { echo "$me: $*" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd -P)

cache=${FTVM_KVM_VM_CACHE:-/var/cache/ftvm-kvm-vm}
while [ $# -gt 0 ]; do
    case $1 in
    --cache) [ $# -ge 2 ] || die "--cache needs a directory"; cache=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$me: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

kdir=$("$here/kvm-vm.sh" --cache "$cache" --prepare) ||
    die "scripts/kvm-vm.sh --prepare could not make the kernel"
[ -f "$kdir/vmlinuz" ] || die "no vmlinuz in $kdir"
busybox=$(command -v busybox) || die "no busybox (apt-get install busybox-static)"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
    ldd "$busybox" 2>&1 | grep -q 'not a dynamic' ||
    die "$busybox is not static (apt-get install busybox-static)"

init=$(cat <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
cpus=$(grep -c '^processor' /proc/cpuinfo)
echo "ftvm-linux: up: $cpus cpus, uptime $(cut -d' ' -f1 /proc/uptime)"
mode=$(sed -n 's/.*ftvm_mode=\([a-z]*\).*/\1/p' /proc/cmdline)
case $mode in
reboot)
    echo "ftvm-linux: rebooting"
    reboot -f ;;
count)
    i=0
    while :; do echo "ftvm-linux: count $i"; i=$((i + 1)); sleep 1; done ;;
*)
    echo "ftvm-linux: a shell on the console"
    exec setsid cttyhack sh ;;
esac
INIT
)
# One initramfs per /init and busybox: the name says which.
sum=$( { printf '%s' "$init"; cat "$busybox"; } | sha256sum | cut -c1-16)
out=$cache/linux-guest/initramfs-$sum.cpio.gz
if [ ! -f "$out" ]; then
    command -v cpio >/dev/null || die "no cpio (apt-get install cpio)"
    mkdir -p "$cache/linux-guest"
    work=$(mktemp -d "$cache/linux-guest/make.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work"/root/{bin,proc,sys,dev}
    cp "$busybox" "$work/root/bin/busybox"
    printf '%s\n' "$init" >"$work/root/init"
    chmod +x "$work/root/init"
    (cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -1) \
        >"$work/initramfs.cpio.gz"
    mv "$work/initramfs.cpio.gz" "$out"
fi
echo "$kdir/vmlinuz"
echo "$out"
