#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time:
#
#     scripts/fuzz.sh TARGET SECONDS [LIBFUZZER-OPTION...]
#     scripts/fuzz.sh --list
#
# TARGET is one of load (a checkpoint file), apply (the secondary's
# per-package path), retpath (the primary's return path and replication
# decisions), control (the control socket's JSON lines), netcmp
# (net-compare's comparator); tests/fuzz/
# says what each drives and checks.  A one-hour run:
#
#     scripts/fuzz.sh apply 3600
#
# It builds build-fuzz/ first (clang, ASan + UBSan, -Dfuzz=true).  New
# inputs go to build-fuzz/fuzz/TARGET/corpus (kept, so a later run goes on
# from there); the seeds the build generated (build-fuzz/tests/fuzz/seeds/
# TARGET) and tests/fuzz/regress/TARGET, if any, are only read.  The log is
# build-fuzz/fuzz/TARGET/fuzz.log, a crashing, leaking or hanging input is
# saved as build-fuzz/fuzz/TARGET/crash-* (leak-*, timeout-*, oom-*); replay
# it with build-fuzz/tests/fuzz/fuzz_TARGET FILE.  The product's own
# messages on stderr are silenced (-close_fd_mask=2); sanitizer reports and
# the target's own findings ("SUMMARY: fuzz_...") are not.
#
# The last line says how it went:
#     fuzz TARGET: ok, N runs in S s (E/s), corpus C inputs
#     fuzz TARGET: FAILED: WHAT; input: FILE; log: LOG
# and the exit status is non-zero on a finding.
set -euo pipefail
cd "$(dirname "$0")/.."

targets="load apply retpath control netcmp block"
case ${1:-} in
--list) echo "$targets"; exit 0 ;;
-h|--help|"") sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
              [ -n "${1:-}" ]; exit ;;
esac
target=$1
seconds=${2:?"fuzz.sh: how many seconds? (see --help)"}
shift 2
case " $targets " in
*" $target "*) ;;
*) echo "fuzz.sh: no target '$target' (one of: $targets)" >&2; exit 2 ;;
esac

if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false \
        -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
ninja -C build-fuzz >/dev/null

work=build-fuzz/fuzz/$target
mkdir -p "$work/corpus"
rm -f "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*
corpora=("$work/corpus" "build-fuzz/tests/fuzz/seeds/$target")
[ -d "tests/fuzz/regress/$target" ] && corpora+=("tests/fuzz/regress/$target")
opts=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
      -close_fd_mask=2 -print_final_stats=1 -artifact_prefix="$work/")
[ -f "tests/fuzz/$target.dict" ] && opts+=(-dict="tests/fuzz/$target.dict")

log=$work/fuzz.log
rc=0
"./build-fuzz/tests/fuzz/fuzz_$target" "${opts[@]}" "$@" "${corpora[@]}" \
    >"$log" 2>&1 || rc=$?
stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
if [ "$rc" -eq 0 ]; then
    echo "fuzz $target: ok, $(stat number_of_executed_units) runs in" \
         "${seconds} s ($(stat average_exec_per_sec)/s), corpus" \
         "$(find "$work/corpus" -type f | wc -l) inputs"
    exit 0
fi
# The report, from the sanitizer's or libFuzzer's first line on.
sed -n '/==ERROR\|deadly signal\|ALARM\|out-of-memory\|SUMMARY: fuzz_/,$p' \
    "$log" | head -60
what=$(grep -m1 -o 'SUMMARY: .*' "$log" || grep -m1 -o '==ERROR: .*' "$log" ||
       echo "exit status $rc")
input=$(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* \
        2>/dev/null | head -1 || true)
echo "fuzz $target: FAILED: $what; input: ${input:-none saved}; log: $log"
exit 1
