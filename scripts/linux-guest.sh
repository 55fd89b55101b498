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
#     udp      the UDP service tests/linux/udpsvc.c on port 7777 (built
#              static with the host's cc), then a shell on the console
#     disk     the modules loaded, "ftvm-linux: disk vda N sectors" (or
#              "ftvm-linux: no disk"), then a shell on the console
#     shell    (default) a shell on the console
# With a network device (virtio-net: the modules virtio_net needs are
# taken from the kernel's package, fetched once, and loaded by /init),
# `ftvm_ip=A.B.C.D/N` gives eth0 that address and brings it up.  The
# same modules hold virtio_blk's and ext4's (loaded in disk mode, with
# the network's), and the initramfs has e2fsprogs' mke2fs (mkfs.ext4) and
# e2fsck from the host, with the shared libraries ldd names, so a guest
# with --disk can make, mount and check an ext4 file system on /dev/vda.
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

# The modules virtio_net, virtio_blk and ext4 need, in load order, from
# the kernel's package (kvm-vm.sh keeps only the kernel), once per kernel
# version and list.  crc32c_generic first: ext4 asks the crypto API for
# crc32c (a soft dependency modprobe does not list).
kv=$(basename "$(readlink -f "$kdir")")
want="virtio_pci virtio_net virtio_blk crc32c_generic ext4"
mods=$cache/linux-guest/modules-$kv-$(printf '%s' "$want" | sha256sum | cut -c1-8)
if [ ! -f "$mods/order" ]; then
    echo "$me: fetching linux-image-$kv for the guest's modules (once)" >&2
    mkdir -p "$cache/linux-guest"
    mwork=$(mktemp -d "$cache/linux-guest/mods.XXXXXX")
    trap 'rm -rf "$mwork"' EXIT
    (cd "$mwork" && apt-get download -q "linux-image-$kv") \
        >"$mwork/apt.log" 2>&1 || die "apt-get download linux-image-$kv failed"
    dpkg-deb -x "$mwork"/*.deb "$mwork/x"
    depmod -b "$mwork/x" "$kv"
    mkdir -p "$mwork/mods"
    : >"$mwork/mods/order"
    for m in $want; do
        modprobe -d "$mwork/x" -S "$kv" --show-depends "$m" |
            awk '$1 == "insmod" {print $2}' | while read -r ko; do
            grep -qxF "$(basename "$ko")" "$mwork/mods/order" && continue
            cp "$ko" "$mwork/mods/"
            basename "$ko" >>"$mwork/mods/order"
        done
    done
    for m in virtio_net virtio_blk ext4; do
        grep -qx "$m.ko" "$mwork/mods/order" ||
            die "no $m.ko in linux-image-$kv"
    done
    rm -rf "$mods"
    mv "$mwork/mods" "$mods"
    rm -rf "$mwork"
    trap - EXIT
fi
udpsvc_c=$here/../tests/linux/udpsvc.c
cc=$(command -v cc || command -v gcc) || die "no C compiler for udpsvc"
# e2fsprogs from the host, and every shared library they load.
e2progs=()
for prog in mke2fs e2fsck; do
    path=$(PATH=/usr/sbin:/sbin:$PATH command -v "$prog") ||
        die "no $prog (apt-get install e2fsprogs)"
    e2progs+=("$path")
done
e2libs=$(ldd "${e2progs[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $3}
                                    NF == 2 && $1 ~ /^\// {print $1}' | sort -u)
[ -n "$e2libs" ] || die "ldd named no libraries for ${e2progs[*]}"

init=$(cat <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
cpus=$(grep -c '^processor' /proc/cpuinfo)
echo "ftvm-linux: up: $cpus cpus, uptime $(cut -d' ' -f1 /proc/uptime)"
mode=$(sed -n 's/.*ftvm_mode=\([a-z]*\).*/\1/p' /proc/cmdline)
ip=$(sed -n 's/.*ftvm_ip=\([0-9./]*\).*/\1/p' /proc/cmdline)
# The modules in order: up to virtio_net's for the network, all of them
# (virtio_blk's and ext4's too) for the disk.
last=
[ -n "$ip" ] && last=virtio_net.ko
[ "$mode" = disk ] && last=all
if [ -n "$last" ]; then
    while read -r ko; do
        insmod "/modules/$ko" || echo "ftvm-linux: insmod $ko failed"
        [ "$ko" = "$last" ] && break
    done </modules/order
fi
if [ -n "$ip" ]; then
    ip link set lo up
    ip addr add "$ip" dev eth0 && ip link set eth0 up &&
        echo "ftvm-linux: eth0 $ip"
fi
case $mode in
udp)
    /bin/udpsvc 7777 &
    exec setsid cttyhack sh ;;
reboot)
    echo "ftvm-linux: rebooting"
    reboot -f ;;
disk)
    if [ -r /sys/block/vda/size ]; then
        echo "ftvm-linux: disk vda $(cat /sys/block/vda/size) sectors"
    else
        echo "ftvm-linux: no disk"
    fi
    echo "ftvm-linux: a shell on the console"
    exec setsid cttyhack sh ;;
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
sum=$( { printf '%s' "$init"; cat "$busybox" "$udpsvc_c" "$mods"/* \
          "${e2progs[@]}" $e2libs; } |
      sha256sum | cut -c1-16)
out=$cache/linux-guest/initramfs-$sum.cpio.gz
if [ ! -f "$out" ]; then
    command -v cpio >/dev/null || die "no cpio (apt-get install cpio)"
    mkdir -p "$cache/linux-guest"
    work=$(mktemp -d "$cache/linux-guest/make.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work"/root/{bin,proc,sys,dev,modules}
    cp "$busybox" "$work/root/bin/busybox"
    cp "$mods"/* "$work/root/modules/"
    "$cc" -static -Os -o "$work/root/bin/udpsvc" "$udpsvc_c" ||
        die "cannot build udpsvc static (libc6-dev's static libc?)"
    mkdir -p "$work/root/sbin" "$work/root/etc" "$work/root/mnt"
    for prog in "${e2progs[@]}"; do
        cp "$prog" "$work/root/sbin/"
    done
    ln -s mke2fs "$work/root/sbin/mkfs.ext4"
    for lib in $e2libs; do
        mkdir -p "$work/root$(dirname "$lib")"
        cp -L "$lib" "$work/root$lib"
    done
    [ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$work/root/etc/"
    printf '%s\n' "$init" >"$work/root/init"
    chmod +x "$work/root/init"
    (cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -1) \
        >"$work/initramfs.cpio.gz"
    mv "$work/initramfs.cpio.gz" "$out"
fi
echo "$kdir/vmlinuz"
echo "$out"
