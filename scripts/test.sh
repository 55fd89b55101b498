#!/usr/bin/env bash
# The whole test suite: bootstrap, every test, the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then each fuzz target
# (tests/fuzz) for a bounded time (FUZZ_SECONDS each, default 30).
#
# The tests that need KVM (meson suite `kvm`) run with FTVM_REQUIRE_KVM=1,
# so one that would skip for want of /dev/kvm fails instead.  Where this
# machine has no usable /dev/kvm they run inside a QEMU VM that has one
# (scripts/kvm-vm.sh: one emulated CPU, nested KVM), one at a time, with
# their deadlines multiplied by FTVM_TIME_SCALE (default 5 there) and
# meson's timeouts by as much, and the randomized fault cases
# (tests/witness/faults_test.py) run 3 times each there instead of 4 to 9
# (FTVM_FAULTS_RUNS) and the COLO network kills 5 times instead of 20
# (FTVM_COLO_NET_RUNS), to stay within CI's time; every other test runs
# here.  --vm (or FTVM_TEST_VM=1) takes the VM path even where /dev/kvm
# works.  The Linux
# guests' tests (suite `linux`, docs/linux-guests.md) need hardware KVM
# (kvm_amd or kvm_intel): without it they run in that VM too, after the
# kernel and initramfs are prepared here (scripts/linux-guest.sh).
#
# The last line counts what ran, from meson's test logs:
#     summary: N passed, M failed, S skipped
# The exit status is non-zero if anything failed or a test that needs KVM
# was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

use_vm=${FTVM_TEST_VM:-0}
case ${1:-} in
--vm) use_vm=1 ;;
"") ;;
-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
*) echo "test.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

scripts/bootstrap.sh
# bootstrap installed etcd: the witness's tests (suite etcd) must not skip.
export FTVM_REQUIRE_ETCD=1

python=/usr/bin/python3     # Debian's, as meson's is; not PATH's
logs=build/meson-logs
passed=0 failed=0 skipped=0 kvm_skipped=0 status=0

# count LOGBASE: adds up one meson run's results from its JSON test log.
count() {
    local json=$logs/$1.json
    if [ ! -s "$json" ]; then
        echo "test.sh: no test log $json: the run did not finish" >&2
        failed=$((failed + 1))
        return
    fi
    local n
    n=$("$python" - "$json" <<'PY'
import json, sys
p = f = s = ks = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    suites = t["name"].split(" / ")[0]
    r = t["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
        if {"kvm", "linux"} & set(suites.split(":", 1)[-1].split("+")):
            ks += 1
            print("test.sh: %s needs KVM and was skipped" % t["name"],
                  file=sys.stderr)
    else:
        f += 1
print(p, f, s, ks)
PY
)
    read -r p f s ks <<<"$n"
    passed=$((passed + p)) failed=$((failed + f))
    skipped=$((skipped + s)) kvm_skipped=$((kvm_skipped + ks))
}

# meson_test LOGBASE ARGS...: one meson run, its log counted.
meson_test() {
    local base=$1
    shift
    rm -f "$logs/$base.json"
    meson test -C build --print-errorlogs --logbase "$base" "$@" || status=1
    count "$base"
}

# in_vm LOGBASE WHY SUITE...: those suites in the QEMU VM, one at a time.
in_vm() {
    local base=$1 why=$2 scale=${FTVM_TIME_SCALE:-5} suites=() s
    shift 2
    for s in "$@"; do suites+=(--suite "$s"); done
    echo "== suite(s) $* ($why): in a QEMU VM with nested KVM" \
         "(scripts/kvm-vm.sh), one at a time, deadlines x$scale"
    rm -f "$logs/$base.json"
    local start=$SECONDS
    local limit=${vm_timeout:-${FTVM_VM_TIMEOUT:-2400}}
    local tries=$((1 + ${vm_retries:-0})) rc
    while :; do
        rc=0
        scripts/kvm-vm.sh --force --timeout "$limit" -- \
            env FTVM_REQUIRE_KVM=1 FTVM_TIME_SCALE="$scale" \
                FTVM_FAULTS_RUNS="${FTVM_FAULTS_RUNS:-3}" \
                FTVM_COLO_NET_RUNS="${FTVM_COLO_NET_RUNS:-5}" \
            meson test -C build --no-rebuild --print-errorlogs \
                "${suites[@]}" --num-processes 1 \
                --timeout-multiplier "$scale" --logbase "$base" || rc=$?
        tries=$((tries - 1))
        # 124: the whole VM stopped answering (its tests' own timeouts
        # never fired), not a test that failed: run it again if allowed.
        [ "$rc" = 124 ] && [ "$tries" -gt 0 ] || break
        echo "== the VM did not finish in ${limit}s (frozen?): again"
        rm -f "$logs/$base.json"
    done
    [ "$rc" = 0 ] || status=1
    echo "== the VM's run took $((SECONDS - start)) s"
    count "$base"
}
hw_kvm() { [ -d /sys/module/kvm_amd ] || [ -d /sys/module/kvm_intel ]; }
# The Linux guest's kernel and initramfs, made here (the VM has no network).
scripts/linux-guest.sh >/dev/null ||
    echo "test.sh: scripts/linux-guest.sh failed: the linux suite will skip"

if [ "$use_vm" = 0 ] && scripts/kvm-vm.sh --check >/dev/null; then
    echo "== tests (/dev/kvm works here: the tests that need KVM run here)"
    if hw_kvm; then
        FTVM_REQUIRE_KVM=1 meson_test testlog-all
    else
        FTVM_REQUIRE_KVM=1 meson_test testlog-all --no-suite linux
        # About ten to fifteen minutes of tests (a failing one can take a
        # few more): should the VM stop making progress (kvm-vm.sh keeps
        # QEMU's lost interrupt from stopping it: docs/linux-guests.md),
        # it is cut off after 1500 s, not run again (the key presses made
        # such freezes rare, and a second run would not fit in CI's 45
        # minutes beside the rest).
        vm_timeout=${FTVM_VM_TIMEOUT:-1500} vm_retries=0 \
            in_vm testlog-linux "no hardware KVM here for Linux guests" linux
    fi
else
    why="no usable /dev/kvm here"
    if [ "$use_vm" = 1 ]; then why="--vm"; fi
    echo "== tests that need no KVM, here"
    meson_test testlog-host --no-suite kvm --no-suite linux
    in_vm testlog-kvm "$why" kvm linux
fi

echo "== unit tests under ASan + UBSan"
if [ ! -f build-san/build.ninja ]; then
    meson setup build-san -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C build-san
rm -f build-san/meson-logs/testlog-san.json
meson test -C build-san --suite unit --print-errorlogs --logbase testlog-san ||
    status=1
logs=build-san/meson-logs count testlog-san

# Each fuzz target for FUZZ_SECONDS (default 30: two minutes in all), by
# scripts/fuzz.sh: its log, corpus and any crashing input are in
# build-fuzz/fuzz/TARGET/, and its last line says which.
fuzz_seconds=${FUZZ_SECONDS:-30}
for target in $(scripts/fuzz.sh --list); do
    echo "== fuzzing $target for ${fuzz_seconds}s"
    if scripts/fuzz.sh "$target" "$fuzz_seconds"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        status=1
    fi
done

if [ "$kvm_skipped" -gt 0 ]; then
    echo "test.sh: $kvm_skipped test(s) that need KVM were skipped: failing"
    status=1
fi
[ "$failed" -eq 0 ] || status=1
echo "summary: $passed passed, $failed failed, $skipped skipped"
exit $status
