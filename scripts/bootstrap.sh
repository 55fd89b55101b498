#!/usr/bin/env bash
# Installs what ftvm needs to build and test on Debian 12 (only the packages
# that are missing), then configures and builds it in ./build.  Idempotent:
# run it as often as you like.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    gcc binutils pkg-config meson ninja-build   # the build
    zlib1g-dev libjansson-dev libevent-dev libcmocka-dev libssl-dev openssl
    libpcap-dev                          # net-compare's capture of mismatches
    clang libclang-rt-14-dev             # libFuzzer target and its runtime
    python3                              # test helpers
    python3-prometheus-client            # parses /metrics in the tests
    iproute2 iputils-ping                # network namespaces, TAP, bridges in tests
    etcd-server                          # the witness's tests run a real etcd (docs/witness.md)
)
# Without a usable /dev/kvm, the tests that need KVM run in a QEMU VM that
# has it (scripts/kvm-vm.sh), which needs these.
if ! scripts/kvm-vm.sh --check >/dev/null; then
    packages+=(qemu-system-x86 qemu-system-data busybox-static kmod cpio)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: need root to install packages (try: sudo $0)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -f build/build.ninja ]; then
    meson setup build
fi
ninja -C build
