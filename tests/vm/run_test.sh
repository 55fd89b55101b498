#!/usr/bin/env bash
# Integration tests of `ftvm run` with the guest images:
#   run_test.sh CASE FTVM GUEST_DIR
# Each CASE runs one behaviour and exits 0 (pass), 1 (fail) or 77 (skipped:
# no usable /dev/kvm here; a failure instead with FTVM_REQUIRE_KVM=1).
# Timing is checked loosely: only that waits happen at all and finish.
# Deadlines are multiplied by FTVM_TIME_SCALE (default 1), as in
# tests/lib/ftvmtest.py; FTVM_PYTHON is the Python to run (meson's).
set -u

case_name=$1
ftvm=$2
guests=$3

fail() {
    echo "FAIL [$case_name]: $*" >&2
    [ -n "${out:-}" ] && { echo "--- stdout:"; cat "$out"; } >&2
    [ -n "${err:-}" ] && { echo "--- stderr:"; cat "$err"; } >&2
    exit 1
}

python=${FTVM_PYTHON:-python3}

# scaled SECONDS: a deadline for an ordinary machine, for this one.
scaled() {
    awk -v t="$1" -v s="${FTVM_TIME_SCALE:-1}" \
        'BEGIN { if (s + 0 < 1) s = 1; printf "%d\n", t * s + 0.5 }'
}

needs_kvm() {
    if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        if [ "${FTVM_REQUIRE_KVM:-}" = 1 ]; then
            fail "/dev/kvm is missing or not usable by $(id -un), and" \
                 "FTVM_REQUIRE_KVM=1 says this run has KVM"
        fi
        echo "SKIP: /dev/kvm is missing or not usable by $(id -un); the" \
             "VM tests need KVM"
        exit 77
    fi
}

tmp=$(mktemp -d /tmp/ftvm-vm-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
err=$tmp/err

# run EXPECTED_STATUS ARGS... : runs ftvm run, checks its exit status.
run() {
    local want=$1
    shift
    timeout "$(scaled 60)" "$ftvm" run "$@" >"$out" 2>"$err"
    status=$?
    [ "$status" -eq "$want" ] ||
        fail "ftvm run $* exited $status, expected $want"
}

has() { grep -qF -- "$1" "$out" || fail "stdout lacks '$1'"; }
has_err() { grep -qF -- "$1" "$err" || fail "stderr lacks '$1'"; }

# attempt IMAGE NAME STATUS EXPECTED_TEXT [STREAM]: one bad_* attempt.
attempt() {
    local image=$1 name=$2 want=$3 text=$4 stream=${5:-out}
    shift 5 2>/dev/null || shift $#
    run "$want" "$@" "$guests/$image.elf" "attempt=$name"
    if [ "$stream" = err ]; then has_err "$text"; else has "$text"; fi
}

case $case_name in
usage)
    run 0 --help
    has "usage: ftvm run"
    run 2
    has_err "no guest image"
    run 2 --mem 3M "$guests/hello.elf"
    has_err "multiple of 2 MiB"
    run 2 --mem lots "$guests/hello.elf"
    has_err "expected a size"
    run 2 --vcpus 0 "$guests/hello.elf"
    run 2 --mac 02:00 "$guests/hello.elf"
    needs_kvm
    run 120 /nonexistent/guest.elf
    has_err "/nonexistent/guest.elf: No such file or directory"
    echo "not an image" >"$tmp/text.elf"
    run 120 "$tmp/text.elf"
    has_err "not an ELF file"
    head -c 100 "$guests/hello.elf" >"$tmp/short.elf"
    run 120 "$tmp/short.elf"
    has_err "program header table"
    run 120 /bin/true
    has_err "position-independent"
    run 2 "$guests/hello.elf" "two words"
    has_err "white space"
    # Damaged copies of hello.elf, one header field each.
    for damage in interp beyond-ram overlap filesz paddr entry phnum; do
        "$python" - "$guests/hello.elf" "$tmp/$damage.elf" "$damage" <<'PY'
import struct, sys
src, dst, how = sys.argv[1:]
b = bytearray(open(src, "rb").read())
phoff, = struct.unpack_from("<Q", b, 0x20)
ph1 = phoff + 56                        # the second program header
if how == "interp":
    struct.pack_into("<I", b, ph1, 3)   # PT_INTERP
elif how == "beyond-ram":
    struct.pack_into("<QQ", b, ph1 + 16, 1 << 40, 1 << 40)
elif how == "overlap":
    struct.pack_into("<QQ", b, ph1 + 16, 0x101000, 0x101000)
elif how == "filesz":
    struct.pack_into("<Q", b, ph1 + 32, 1 << 62)
elif how == "paddr":
    struct.pack_into("<Q", b, ph1 + 24, 0x200000)
elif how == "entry":
    struct.pack_into("<Q", b, 0x18, 0x103000)
elif how == "phnum":
    struct.pack_into("<H", b, 0x38, 5000)
open(dst, "wb").write(b)
PY
    done
    run 120 "$tmp/interp.elf"
    has_err "program interpreter (PT_INTERP)"
    run 120 "$tmp/beyond-ram.elf"
    has_err "segment 1: [0x10000000000"
    run 120 "$tmp/overlap.elf"
    has_err "segments 0 and 1 overlap"
    run 120 "$tmp/filesz.elf"
    has_err "p_filesz"
    run 120 "$tmp/paddr.elf"
    has_err "differs from p_paddr"
    run 120 "$tmp/entry.elf"
    has_err "entry point 0x103000 is not in an executable segment"
    run 120 "$tmp/phnum.elf"
    has_err "5000 program headers"
    ;;
hello)
    needs_kvm
    run 0 "$guests/hello.elf" alpha beta=2
    has "hello from ftvm guest"
    has "argv[1]=alpha"
    has "argv[2]=beta=2"
    has "mem_size=268435456"
    run 0 --mem 16M "$guests/hello.elf"
    has "mem_size=16777216"
    # Above 4 GiB the stack stays below it: structs need 32-bit addresses.
    run 0 --mem 6G "$guests/hello.elf" big
    has "mem_size=6442450944"
    has "argv[1]=big"
    ;;
halt-status)
    needs_kvm
    for s in 0 1 42 255; do
        run "$s" "$guests/hello.elf" "$s"
        has "exit status=$s"
    done
    ;;
counter)
    needs_kvm
    run 0 "$guests/counter.elf" rate=50 count=20
    [ "$(grep -c '^tick ' "$out")" -eq 20 ] || fail "expected 20 ticks"
    has "tick 20 crc "
    has "counter done ticks=20"
    # The ticks are a function of the arguments alone.
    cp "$out" "$tmp/first"
    run 0 "$guests/counter.elf" rate=50 count=20
    cmp -s "$out" "$tmp/first" || fail "two runs printed different ticks"
    ;;
poll-timeout)
    needs_kvm
    # 5 ticks at 10 per second: 4 sleeps of 100 ms on POLL deadlines.
    start=$(date +%s%N)
    run 0 "$guests/counter.elf" rate=10 count=5
    ms=$((($(date +%s%N) - start) / 1000000))
    echo "5 ticks at rate=10 took $ms ms"
    [ "$ms" -ge 350 ] || fail "finished in $ms ms: deadlines not honoured"
    [ "$ms" -lt "$(scaled 30000)" ] || fail "took $ms ms: a deadline was missed"
    ;;
bad-pointer)
    needs_kvm
    run 0 "$guests/bad_pointer.elf"
    has "bad_pointer attempt=control ret=0 (OK)"
    for a in past-end straddle high empty-outside; do
        has "bad_pointer attempt=$a ret=-1 (EFAULT)"
    done
    for a in huge-len wrap over-limit; do
        grep -qE "bad_pointer attempt=$a ret=-(1 \(EFAULT|2 \(EINVAL)\)" \
            "$out" || fail "$a not refused"
    done
    has "bad_pointer done"
    ;;
bad-struct)
    needs_kvm
    for a in outside straddle top halt-outside; do
        attempt bad_struct "$a" 121 "is not inside guest RAM" err
        has_err "vm: guest stopped: hypercall"
    done
    ;;
bad-number)
    needs_kvm
    attempt bad_number nr-zero 121 "hypercall port 0x500 unknown" err
    attempt bad_number nr-max 121 "hypercall port 0x50c unknown" err
    attempt bad_number nr-99 121 "hypercall port 0x563 unknown" err
    attempt bad_number below-base 121 "I/O port 0x4ff, which is no device" err
    attempt bad_number serial 121 "I/O port 0x3f8, which is no device" err
    attempt bad_number outb 121 "1-byte out" err
    attempt bad_number outw 121 "2-byte out" err
    attempt bad_number inl 121 "in from hypercall port 0x501" err
    grep -q "should not be printed" "$out" && fail "a bad call was served"
    ;;
bad-fault)
    needs_kvm
    attempt bad_fault pagefault 121 "#PF (page fault)" err
    attempt bad_fault beyond-ram 121 "#PF (page fault)" err
    attempt bad_fault noncanonical 121 "CPU exception #GP" err
    attempt bad_fault hlt 121 "CPU exception #GP" err
    attempt bad_fault cr3 121 "CPU exception #GP" err
    attempt bad_fault wrmsr 121 "CPU exception #GP" err
    attempt bad_fault ud2 121 "#UD (invalid opcode)" err
    attempt bad_fault int3 121 "CPU exception" err
    attempt bad_fault divide 121 "#DE (divide error)" err
    ;;
bad-net)
    needs_kvm
    run 0 "$guests/bad_net.elf"
    has "bad_net attempt=info ret=-4 (ENODEV)"
    net="dgram:$tmp/guest.sock,$tmp/peer.sock"
    run 0 --net "$net" --mac 02:00:00:00:00:07 "$guests/bad_net.elf"
    has "bad_net mtu=1500"
    has "bad_net attempt=info ret=0 (OK)"
    for a in write-huge-len write-over-mtu write-empty; do
        has "bad_net attempt=$a ret=-2 (EINVAL)"
    done
    for a in write-past-end write-straddle read-straddle read-past-end \
             read-huge-len; do
        grep -qE "bad_net attempt=$a ret=-(1 \(EFAULT|3 \(EAGAIN)\)" \
            "$out" || fail "$a not refused"
    done
    has "bad_net done"
    ;;
signal)
    needs_kvm
    # A guest that would run for ever; SIGINT stops the monitor cleanly.
    timeout "$(scaled 60)" "$ftvm" run "$guests/counter.elf" rate=100 \
        >"$out" 2>"$err" &
    pid=$!
    deadline=$((SECONDS + $(scaled 10)))
    until grep -q '^tick 5 ' "$out"; do
        [ "$SECONDS" -lt "$deadline" ] ||
            { kill "$pid"; fail "no tick 5 within $(scaled 10) s"; }
        sleep 0.1
    done
    kill -INT "$pid"
    wait "$pid"
    status=$?
    [ "$status" -eq 130 ] || fail "exit status $status after SIGINT"
    has_err "stopped by"
    has "tick 5 "
    ;;
*)
    echo "unknown case '$case_name'" >&2
    exit 2
    ;;
esac
echo "ok: $case_name"
