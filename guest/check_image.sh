#!/bin/sh
# Checks that a guest image is what the monitor expects to load:
#   check_image.sh IMAGE [--privileged-ok]
# A static x86-64 executable whose PT_LOAD segments start at 0x100000,
# page-aligned, identity-placed (vaddr = paddr); no interpreter, no dynamic
# section, no undefined or sanitizer symbols; no privileged or AVX
# instructions (bad_fault passes --privileged-ok: faulting is its job).
set -eu

image=$1
privileged_ok=${2:-}
fail() {
    echo "$image: $*" >&2
    exit 1
}

readelf -h "$image" | grep -q 'Type: *EXEC' || fail "not an ET_EXEC file"
readelf -h "$image" | grep -q 'Machine: *Advanced Micro Devices X86-64' ||
    fail "not x86-64"

phdrs=$(readelf -lW "$image")
echo "$phdrs" | grep -q 'INTERP' && fail "has a PT_INTERP"
echo "$phdrs" | grep -q 'DYNAMIC' && fail "has a PT_DYNAMIC"
echo "$phdrs" | awk '
    $1 == "LOAD" {
        n++
        if (n == 1 && $3 != "0x0000000000100000") bad = "first PT_LOAD not at 0x100000"
        if ($3 != $4) bad = "PT_LOAD with vaddr != paddr"
        if ($NF != "0x1000") bad = "PT_LOAD not page-aligned"
    }
    END {
        if (n == 0) bad = "no PT_LOAD"
        if (bad != "") { print bad; exit 1 }
    }' >&2 || fail "bad program headers"

undefined=$(nm -u "$image")
[ -z "$undefined" ] || fail "undefined symbols: $undefined"
if nm "$image" | grep -Eq '__(asan|ubsan|sanitizer|gcov|tsan|msan)'; then
    fail "has sanitizer or coverage symbols"
fi

# Mnemonics are the first word of the instruction column.
bad=$(objdump -d --no-show-raw-insn "$image" | awk -F'\t' -v priv="$privileged_ok" '
    NF >= 2 {
        split($2, w, " ")
        m = w[1]
        if (m ~ /^(rep|repz|repnz|lock|data16|cs|ds|es|ss|notrack|bnd)$/) m = w[2]
        if (priv == "" && m ~ /^(hlt|cli|sti|lgdt|lidt|lldt|ltr|lmsw|clts|invd|wbinvd|invlpg|wrmsr|rdmsr|swapgs|sysret[lq]?|iret[lqw]?)$/)
            print m
        if (priv == "" && m ~ /^mov/ && $2 ~ /%[cd]r[0-9]/)
            print m " control/debug register"
        if ($2 ~ /%[yz]mm|%k[0-7]/ || m ~ /^v[a-z]/)
            print m " (AVX)"
    }' | sort -u | tr '\n' ' ')
[ -z "$bad" ] || fail "forbidden instructions: $bad"
exit 0
