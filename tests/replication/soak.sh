#!/usr/bin/env bash
# Soak test (not in CI): kill -9 of the primary at random moments, RUNS
# times, as the e2e-kill-primary test does 20 times (e2e_test.py says what
# each run checks).  A failed run is counted and the soak goes on.
#
#   tests/replication/soak.sh RUNS [BUILD_DIR]     (BUILD_DIR: build)
#
# Prints every run, then a summary: runs, failovers, bring-up kills (the
# secondary exited 3: killed before checkpoint 1 was applied; or killed
# before the primary connected), failures, and the log's path.  Exit 0 if
# no run failed, 1 otherwise, 77 without /dev/kvm.  FTVM_E2E_SEED repeats
# a soak's random delays.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:?usage: soak.sh RUNS [BUILD_DIR]}
build=${2:-$here/../../build}
case $runs in ''|*[!0-9]*) echo "soak.sh: RUNS must be a number" >&2; exit 2;; esac
for f in "$build/tools/ftvm" "$build/tools/ftvmctl" "$build/guest/counter.elf"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "soak.sh: $f is missing: build first (ninja -C $build)" >&2; exit 2; }
done
log=$(mktemp /tmp/ftvm-soak-XXXXXX.log)
start=$(date +%s)
set +e
FTVM_E2E_KEEP_GOING=1 python3 "$here/e2e_test.py" kill-primary \
    "$build/tools/ftvm" "$build/tools/ftvmctl" "$build/guest" "$runs" \
    2>&1 | tee "$log" | grep -E '^(run [0-9]+:|FAIL|SKIP|  gap)'
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 77 ] && exit 77
s=$(grep '^summary:' "$log" | tail -1)
get() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$s"; }
if [ -z "$s" ]; then
    echo "soak: no summary (exit $rc); see $log"
    exit 1
fi
echo "soak: runs $(get runs), failovers $(get failovers), bring-up kills" \
     "$(( $(get exit3) + $(get before_vm) )) (exit 3: $(get exit3)," \
     "before the VM was sent: $(get before_vm)), failovers from" \
     "checkpoint 1 $(get from_ckpt1), gaps (lost ACK) $(get gaps)," \
     "failures $(get failures), $(( $(date +%s) - start )) s; log $log"
[ "$(get failures)" = 0 ]
