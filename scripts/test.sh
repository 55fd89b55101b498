#!/usr/bin/env bash
# The whole test suite: bootstrap, every test, the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the loader's fuzzer
# for a bounded time (FUZZ_SECONDS, default 60) on the corpus in tests/fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh

passed=0
failed=0
count() {   # adds up meson's "Ok:" and "Fail:" summary lines from a log
    local log=$1
    passed=$((passed + $(awk '/^Ok:/ {print $2}' "$log" | tail -1)))
    failed=$((failed + $(awk '/^Fail:/ {print $2}' "$log" | tail -1)))
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

echo "== tests"
meson test -C build --print-errorlogs 2>&1 | tee "$log" || status=1
count "$log"

echo "== unit tests under ASan + UBSan"
if [ ! -f build-san/build.ninja ]; then
    meson setup build-san -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C build-san
meson test -C build-san --suite unit --print-errorlogs 2>&1 | tee "$log" || status=1
count "$log"

echo "== fuzzing the loader for ${FUZZ_SECONDS:-60}s"
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false \
        -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C build-fuzz
newcorpus=$(mktemp -d)
if ./build-fuzz/tests/fuzz/fuzz_load -max_total_time="${FUZZ_SECONDS:-60}" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "$newcorpus" tests/fuzz/corpus 2>&1 | tail -15; then
    passed=$((passed + 1))
else
    echo "fuzz: the loader crashed or leaked; the input is saved as crash-*"
    failed=$((failed + 1))
    status=1
fi
rm -rf "$newcorpus"

echo "summary: $passed passed, $failed failed"
exit $status
