#!/usr/bin/env bash
# Soak (not in CI): issue 9's faults against a pair with a witness, RUNS
# times (default 500), each run a fault drawn at random from the six that
# tests/witness/faults_test.py checks (its `mixed` case; that file says
# what each run checks).  A failed run is counted and the soak goes on.
#
#   scripts/soak-fence.sh [RUNS] [BUILD_DIR]       (BUILD_DIR: build)
#
# Needs root (network namespaces), etcd and /dev/kvm.  Prints every run,
# then a table: per fault, runs, failures, mean seconds and outcomes
# (which side won; gaps are the lost-ACK race docs/replication.md
# allows).  Exit 0 if no run failed, 1 otherwise, 77 if skipped.
# FTVM_E2E_SEED repeats a soak's random moments; PYTHON picks the
# interpreter (python3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:-500}
build=${2:-$here/../build}
case $runs in ''|*[!0-9]*) echo "soak-fence.sh: RUNS must be a number" >&2; exit 2;; esac
for f in "$build/tools/ftvm" "$build/tools/ftvmctl" "$build/guest/counter.elf"; do
    [ -e "$f" ] || { echo "soak-fence.sh: $f is missing: build first (ninja -C $build)" >&2; exit 2; }
done
log=$(mktemp /tmp/ftvm-soak-fence-XXXXXX.log)
start=$(date +%s)
set +e
FTVM_E2E_KEEP_GOING=1 "${PYTHON:-python3}" "$here/../tests/witness/faults_test.py" \
    mixed "$build/tools/ftvm" "$build/tools/ftvmctl" "$build/guest" \
    --runs "$runs" 2>&1 | tee "$log" | grep -E '^(run [0-9]+ |FAIL|SKIP|.*FTVM_E2E_SEED)'
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 77 ] && exit 77
if ! grep -q '^summary: total' "$log"; then
    echo "soak-fence: no summary (exit $rc); see $log"
    exit 1
fi
printf '\n%-15s %5s %8s %6s  %s\n' fault runs failures mean outcomes
sed -n 's/^summary: \([a-z-]*\) *runs=\([0-9]*\) failures=\([0-9]*\) mean=\([0-9.]*s\) *\(.*\)$/\1 \2 \3 \4 \5/p' "$log" |
    grep -v '^total ' | while read -r kind n f m rest; do
        printf '%-15s %5s %8s %6s  %s\n' "$kind" "$n" "$f" "$m" "$rest"
    done
grep '^summary: total' "$log" | sed 's/^summary: //'
echo "soak-fence: $(( $(date +%s) - start )) s; log $log"
[ "$rc" -eq 0 ]
