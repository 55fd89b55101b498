#!/usr/bin/env bash
# kvm-vm.sh [OPTIONS] [--] COMMAND [ARG...]
#
# Runs COMMAND where /dev/kvm works: here if this machine has a usable
# /dev/kvm, otherwise as root inside a throwaway QEMU VM that has one.
# QEMU emulates the VM's CPU (TCG, `-cpu max`), whose model includes AMD
# SVM, so Debian's kernel in the VM loads kvm_amd and offers /dev/kvm:
# nested KVM with no help from the hardware.  The VM's root is this
# machine's / over 9p: the same files, programs and paths; COMMAND runs in
# the current directory with the current environment.  Inside, /proc,
# /sys, /dev, /dev/pts and /dev/shm are mounted, /tmp and /run are fresh
# tmpfs (UNIX sockets cannot live on 9p), `lo` is up, and the tun, bridge,
# veth and af_packet modules are loaded.  The VM has one CPU: with two, two
# KVM guests running at once were seen to lock its kernel up.  It is about
# ten times slower than real KVM: use it for correctness, never timing.
# QEMU's TCG now and then loses an interrupt of the VM's CPU; a watchdog
# presses a key every 2 s to get it delivered ("the lost wakeup" below).
#
# Options:
#   --mem SIZE       the VM's memory (default 4G)
#   --timeout SECS   stop the VM after this long (default 3600); exit 124
#   --cache DIR      kernel and initramfs cache (default $FTVM_KVM_VM_CACHE,
#                    else /var/cache/ftvm-kvm-vm as root, else
#                    ~/.cache/ftvm-kvm-vm)
#   --force          use a VM even where /dev/kvm works here
#   --check          only say whether /dev/kvm works here (exit 0 if so)
#   --prepare        only make the kernel and initramfs (if the cache has
#                    none) and print the directory that holds them
#                    (vmlinuz, initrd.gz); scripts/linux-guest.sh uses it
#   -h, --help       this text
#
# Exit status: COMMAND's; 124 when the VM timed out; 125 when the VM could
# not be made or ended without COMMAND's status.
# Needs root (the 9p root is served with the caller's rights; packages are
# installed from Debian's archive when missing: qemu-system-x86,
# busybox-static, kmod, cpio), and a Debian linux-image-amd64, which is
# fetched with `apt-get download` into the cache once.
set -euo pipefail

me=kvm-vm
die() { echo "$me: $*" >&2; exit 125; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

mem=4G timeout_s=3600 force=0 check=0 prepare=0
cache=${FTVM_KVM_VM_CACHE:-}
while [ $# -gt 0 ]; do
    case $1 in
    --mem) [ $# -ge 2 ] || die "--mem needs a size"; mem=$2; shift 2 ;;
    --timeout)
        [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] ||
            die "--timeout needs a number of seconds"
        timeout_s=$2; shift 2 ;;
    --cache) [ $# -ge 2 ] || die "--cache needs a directory"; cache=$2; shift 2 ;;
    --force) force=1; shift ;;
    --check) check=1; shift ;;
    --prepare) prepare=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "$me: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
    esac
done

# Usable means KVM_GET_API_VERSION answers, not just that the node exists.
kvm_works() {
    [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    perl -e 'open(my $f, "+<", "/dev/kvm") or exit 1;
             exit(ioctl($f, 0xae00, 0) ? 0 : 1)' 2>/dev/null
}
if [ $check = 1 ]; then
    if kvm_works; then echo "$me: /dev/kvm works here"; exit 0; fi
    echo "$me: no usable /dev/kvm here"; exit 1
fi
[ $# -gt 0 ] || [ $prepare = 1 ] ||
    { echo "$me: no command given (see --help)" >&2; exit 2; }
if [ $prepare = 0 ] && [ $force = 0 ] && kvm_works; then
    exec "$@"
fi

[ "$(id -u)" -eq 0 ] ||
    die "needs root: QEMU serves / to the VM over 9p with the caller's rights"
if [ -z "$cache" ]; then
    cache=/var/cache/ftvm-kvm-vm
fi
mkdir -p "$cache" || die "cannot make the cache directory $cache"
cache=$(cd "$cache" && pwd -P)
case $cache in /tmp/*|/run/*) die "the cache must not be under /tmp or /run (tmpfs in the VM): $cache" ;; esac

# ---- what the host needs ----
need=()
for pc in qemu-system-x86:qemu-system-x86_64 busybox-static:busybox \
          kmod:modprobe cpio:cpio; do
    command -v "${pc#*:}" >/dev/null || need+=("${pc%%:*}")
done
[ -f /usr/share/qemu/qboot.rom ] || need+=(qemu-system-data)
if [ ${#need[@]} -gt 0 ]; then
    echo "$me: installing ${need[*]} (log: $cache/apt.log)" >&2
    { apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
          --no-install-recommends "${need[@]}"; } >"$cache/apt.log" 2>&1 ||
        die "apt-get install ${need[*]} failed; see $cache/apt.log"
fi

# ---- kernel and initramfs, made once per kernel version ----
# The modules the VM loads (with what they depend on, found by modprobe).
modules=(virtio_pci 9pnet_virtio 9p kvm_amd tun bridge veth af_packet)

make_kernel() {
    local pkg work kv tree initrd m
    if [ -z "$(apt-cache policy linux-image-amd64 2>/dev/null | sed -n 3p)" ]; then
        apt-get update -q >"$cache/apt.log" 2>&1 ||
            die "apt-get update failed; see $cache/apt.log"
    fi
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
          awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || die "apt-cache knows no linux-image-amd64 (is Debian's archive in the sources?)"
    echo "$me: making the VM's kernel and initramfs from $pkg in $cache (once)" >&2
    work=$(mktemp -d "$cache/make.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    (cd "$work" && apt-get download -q "$pkg") >"$cache/apt.log" 2>&1 ||
        die "apt-get download $pkg failed; see $cache/apt.log"
    dpkg-deb -x "$work"/*.deb "$work/x"
    kv=$(ls "$work/x/lib/modules")
    tree=$work/x/lib/modules/$kv
    initrd=$work/initrd
    mkdir -p "$initrd"/{bin,proc,sys,dev,newroot,modules}
    cp "$(command -v busybox)" "$initrd/bin/busybox"
    depmod -b "$work/x" "$kv"
    : >"$initrd/modules/order"
    for m in "${modules[@]}"; do
        modprobe -d "$work/x" -S "$kv" --show-depends "$m" >"$work/deps" 2>&1 ||
            die "module $m not found in $pkg: $(cat "$work/deps")"
        awk '$1 == "insmod" {print $2}' "$work/deps" | while read -r ko; do
            grep -qxF "$(basename "$ko")" "$initrd/modules/order" && continue
            cp "$ko" "$initrd/modules/"
            basename "$ko" >>"$initrd/modules/order"
        done
    done
    cat >"$initrd/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r ko; do
    insmod "/modules/$ko" || echo "kvm-vm: insmod $ko failed"
done </modules/order
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 hostroot /newroot ||
    { echo "kvm-vm: mounting the host's / over 9p failed"; poweroff -f; }
[ -c /dev/kvm ] || echo "kvm-vm: no /dev/kvm in the VM (kvm_amd did not load)"
mount -o bind /dev /newroot/dev
job=$(sed -n 's/.*ftvm_job=\([^ ]*\).*/\1/p' /proc/cmdline)
chroot /newroot /bin/bash "$job/inner.sh"
sync
poweroff -f
EOF
    chmod +x "$initrd/init"
    mkdir -p "$cache/$kv.new"
    (cd "$initrd" && find . | cpio -o -H newc --quiet | gzip -1) \
        >"$cache/$kv.new/initrd.gz"
    cp "$work/x/boot/vmlinuz-$kv" "$cache/$kv.new/vmlinuz"
    rm -rf "${cache:?}/$kv"
    mv "$cache/$kv.new" "$cache/$kv"
    ln -sfn "$kv" "$cache/kernel"
    rm -rf "$work"
    trap - EXIT
}
[ -f "$cache/kernel/vmlinuz" ] && [ -f "$cache/kernel/initrd.gz" ] || make_kernel
if [ $prepare = 1 ]; then
    cd "$cache/kernel" && pwd -P
    exit 0
fi

# ---- the job: a folder on the host's disk (the VM's /tmp is its own) ----
mkdir -p "$cache/jobs"
job=$(mktemp -d "$cache/jobs/job.XXXXXX")
trap 'rm -rf "$job"' EXIT
cwd=$(pwd -P)
case $cwd in
/tmp|/tmp/*|/run|/run/*)
    die "run from a directory outside /tmp and /run (they are tmpfs in the VM): $cwd" ;;
esac
printf '%q ' "$@" >"$job/cmd"
export -p | grep -v -E '^declare -[a-zA-Z-]* (BASH[A-Z_]*|SHLVL|PWD|OLDPWD|_|TMPDIR)=' \
    >"$job/env" || true
cat >"$job/inner.sh" <<EOF
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t tmpfs run /run
mkdir -p /run/netns
mount -t tmpfs tmp /tmp
chmod 1777 /tmp
ip link set lo up
. "$job/env"
cd "$cwd" || exit 1
# Not a tty (plain logs), and the VM's console is for the command alone.
bash -c "\$(cat "$job/cmd")" </dev/null 2>&1 | cat
echo "\${PIPESTATUS[0]}" >"$job/rc"
sync
EOF

# ---- the lost wakeup ----
# QEMU's TCG (7.2, running a kernel that runs KVM guests through its
# emulated SVM) can leave an interrupt pending in the VM's local APIC
# (IRR set, IF=1) without delivering it: the VM's CPU then either halts
# for good (QEMU at 0% CPU; `info registers`: HLT=1) or spins in its
# kernel waiting for that timer interrupt (QEMU at 100%; the kernel's
# soft-lockup watchdog names an ftvm vCPU thread).  `info lapic` shows
# IRR 236, the timer, in both.  Any new interrupt gets it delivered, so
# a watchdog presses a key through the monitor every 2 s (a keyboard
# IRQ; harmless to a VM that did not need it).  Without it, about one
# run of the linux suite in four stopped; a two-vCPU guest hit it
# several times a run.
kick() {
    python3 - "$job/monitor.sock" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b"sendkey shift\n")
s.recv(4096)
PY
}
watchdog() {
    while sleep 2; do
        [ -S "$job/monitor.sock" ] && { kick || true; }
    done
}

if [ $force = 1 ]; then why="--force"; else why="no usable /dev/kvm here"; fi
echo "$me: $why: running in a QEMU VM with nested KVM" \
     "(1 CPU, $mem, timeout ${timeout_s}s): $*" >&2
set +e
watchdog &
wpid=$!
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max -smp 1 -m "$mem" \
    -nographic -no-reboot -nodefaults -serial stdio \
    -monitor "unix:$job/monitor.sock,server=on,wait=off" \
    -bios /usr/share/qemu/qboot.rom \
    -kernel "$cache/kernel/vmlinuz" -initrd "$cache/kernel/initrd.gz" \
    -append "console=ttyS0 quiet loglevel=1 panic=-1 ftvm_job=$job" \
    -fsdev "local,id=root,path=/,security_model=passthrough,multidevs=remap" \
    -device virtio-9p-pci,fsdev=root,mount_tag=hostroot 2>&1 |
    sed -u -e 's/\r$//' -e '/sysrq: Power Off/d' -e '/reboot: Power down/d'
q=${PIPESTATUS[0]}
kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
set -e
[ "$q" != 124 ] || { echo "$me: the VM timed out after ${timeout_s}s" >&2; exit 124; }
[ -f "$job/rc" ] ||
    die "the VM ended without the command's exit status (QEMU exited $q)"
exit "$(cat "$job/rc")"
