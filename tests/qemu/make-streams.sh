#!/usr/bin/env bash
# Produce real QEMU migration streams for ftvm's tests.
#
#   tests/qemu/make-streams.sh [OUTDIR]      (default: the directory of this script)
#   tests/qemu/make-streams.sh --expect-only [OUTDIR]
#       only regenerate NAME.expect from existing NAME.qemu + NAME.info
#
# For each variant (plain, compress, xbzrle) it boots a tiny pc guest (no NIC,
# no disk: SeaBIOS alone; the xbzrle variant adds a 512-byte floppy boot
# sector that dirties memory), lets it run, drives the HMP monitor over a
# unix socket with socat, migrates to "exec:cat > FILE", waits for the
# migration to complete and records:
#   NAME.qemu    the raw stream
#   NAME.info    the exact "info migrate" output (monitor echo and prompts removed)
#   NAME.expect  "key value" lines: QEMU's counters, the RAM block list parsed
#                by ram_blocks.py, and ram_blocks.py's own record counts
# The script fails if ram_blocks.py's counts differ from QEMU's counters
# (except for the two documented QEMU 7.2 counter quirks, see README.md).
#
# Environment: QEMU (binary, default qemu-system-x86_64), MEM (default 32M),
# ACCEL (default tcg), RUN_SECONDS (guest run time before migrating, default
# 1.5), XBZRLE_SYNCS (see below), PYTHON (default python3).  Needs socat.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
expect_only=0
if [[ ${1:-} == --expect-only ]]; then
    expect_only=1
    shift
fi
out=${1:-$here}
mkdir -p "$out"
out=$(cd "$out" && pwd)

QEMU=${QEMU:-qemu-system-x86_64}
MEM=${MEM:-32M}
ACCEL=${ACCEL:-tcg}
RUN_SECONDS=${RUN_SECONDS:-1.5}
PY=${PYTHON:-python3}

if ((!expect_only)); then
    command -v "$QEMU" >/dev/null || { echo "no $QEMU" >&2; exit 1; }
    command -v socat >/dev/null || { echo "socat is required" >&2; exit 1; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ftvm-qemu.XXXXXX")
qpid=
cleanup() {
    if [[ -n $qpid ]] && kill -0 "$qpid" 2>/dev/null; then
        kill "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

sock=$work/mon.sock

# hmp CMD: run one HMP command on a fresh monitor connection and print its
# output.  The raw connection looks like
#   "QEMU 7.2.22 monitor - type 'help' for more information\r\n"
#   "(qemu) <readline echo of CMD with ESC[K / ESC[D sequences>\r\n"
#   <output lines, \r\n terminated>
#   "(qemu) "
# so: drop \r, drop the first two lines and the final prompt line.
hmp() {
    printf '%s\n' "$1" | socat -t 2 - "UNIX-CONNECT:$sock" |
        tr -d '\r' |
        awk 'NR > 2 { if (have) print prev; prev = $0; have = 1 }
             END { if (have && prev !~ /^\(qemu\) ?$/) print prev }'
}

start_qemu() {
    rm -f "$sock"
    "$QEMU" -accel "$ACCEL" -machine pc -m "$MEM" -smp 1 \
        -nodefaults -nic none -vga none -display none \
        -serial none -parallel none -no-user-config \
        -rtc base=2024-01-01T00:00:00,clock=vm \
        -monitor "unix:$sock,server,nowait" "$@" \
        >"$work/qemu.log" 2>&1 &
    qpid=$!
    for _ in $(seq 100); do
        [[ -S $sock ]] && return 0
        kill -0 "$qpid" 2>/dev/null || break
        sleep 0.1
    done
    echo "QEMU did not start:" >&2
    cat "$work/qemu.log" >&2
    exit 1
}

stop_qemu() {
    hmp quit >/dev/null || true
    wait "$qpid" 2>/dev/null || true
    qpid=
}

# wait_migration: poll "info migrate" until completed; fail on failed/cancelled.
wait_migration() {
    local status
    for _ in $(seq 600); do
        status=$(hmp "info migrate" | sed -n 's/^Migration status: //p')
        case $status in
        completed) return 0 ;;
        failed | cancelled) echo "migration $status" >&2; hmp "info migrate" >&2; exit 1 ;;
        esac
        sleep 0.1
    done
    echo "migration did not complete" >&2
    exit 1
}

# info_value FILE LABEL: first number of the "LABEL: N ..." line.
info_value() {
    sed -n "s/^$2: \([0-9][0-9]*\).*/\1/p" "$1" | head -n1
}

write_expect() {
    local name=$1 info=$out/$1.info stream=$out/$1.qemu exp=$work/$1.expect
    local kib
    kib=$(info_value "$info" "total ram")
    {
        echo "# $name.qemu: values reported by QEMU's 'info migrate' ($name.info)"
        echo "total_ram_bytes $((kib * 1024))"
        echo "duplicate_pages $(info_value "$info" duplicate)"
        echo "normal_pages $(info_value "$info" normal)"
        if grep -q '^compression pages:' "$info"; then
            echo "compressed_pages $(info_value "$info" "compression pages")"
        fi
        if grep -q '^xbzrle pages:' "$info"; then
            echo "xbzrle_pages $(info_value "$info" "xbzrle pages")"
        fi
        echo "dirty_sync_count $(info_value "$info" "dirty sync count")"
        echo "# RAM blocks from the first ram section (ram_blocks.py)"
        "$PY" "$here/ram_blocks.py" "$stream"
        echo "# walk of the whole stream (ram_blocks.py --count / --sha256)"
        "$PY" "$here/ram_blocks.py" --count "$stream"
        "$PY" "$here/ram_blocks.py" --sha256 "$stream"
    } >"$exp"

    # cross-check QEMU's counters against the records actually in the stream
    local ok=1 pair s q
    for pair in stream_zero_pages:duplicate_pages stream_normal_pages:normal_pages \
        stream_compressed_pages:compressed_pages stream_xbzrle_pages:xbzrle_pages \
        stream_total_ram_bytes:total_ram_bytes; do
        s=$(awk -v k="${pair%%:*}" '$1 == k { print $2 }' "$exp")
        q=$(awk -v k="${pair#*:}" '$1 == k { print $2 }' "$exp")
        [[ -z $q ]] && q=0 # counter not printed by QEMU => feature off => 0
        if [[ $s != "$q" ]]; then
            case $name:${pair#*:} in
            xbzrle:xbzrle_pages)
                # QEMU counts every xbzrle cache hit, including dirty pages
                # whose content equals the cached copy and which are therefore
                # not sent at all (see README.md).
                echo "$name: note: stream ${pair%%:*}=$s, QEMU ${pair#*:}=$q" \
                    "(QEMU also counts unchanged, unsent cache hits)" >&2
                ((s <= q)) || ok=0 ;;
            compress:duplicate_pages | compress:compressed_pages)
                # QEMU 7.2 re-counts each compression thread's last result
                # at every flush (see README.md); the stream is the truth.
                echo "$name: note: stream ${pair%%:*}=$s, QEMU ${pair#*:}=$q" \
                    "(known QEMU 7.2 compress-thread over-count)" >&2 ;;
            *)
                echo "$name: ${pair%%:*}=$s but QEMU ${pair#*:}=$q" >&2
                ok=0 ;;
            esac
        fi
    done
    mv "$exp" "$out/$name.expect"
    [[ $ok == 1 ]] || { echo "$name: counts differ (see README.md)" >&2; return 1; }
}

# run_variant NAME SETUP_FUNCTION
run_variant() {
    local name=$1 setup=$2
    echo "== $name"
    if [[ $name == xbzrle ]]; then
        make_floppy "$work/boot.img"
        start_qemu -drive "if=floppy,format=raw,readonly=on,file=$work/boot.img" -boot a
    else
        start_qemu
    fi
    "$setup"
    sleep "$RUN_SECONDS"
    hmp "migrate -d \"exec:cat > $work/$name.qemu\"" >/dev/null
    if [[ $name == xbzrle ]]; then
        xbzrle_let_converge
    fi
    wait_migration
    hmp "info migrate" >"$work/$name.info"
    stop_qemu
    mv "$work/$name.qemu" "$out/$name.qemu"
    mv "$work/$name.info" "$out/$name.info"
    write_expect "$name"
    ls -l "$out/$name.qemu"
}

setup_plain() { :; }

setup_compress() {
    hmp "migrate_set_capability compress on" >/dev/null
}

# xbzrle only encodes pages that were already sent once with xbzrle active,
# i.e. from the third dirty pass on (pass 1: bulk, xbzrle not yet enabled;
# pass 2: cache miss -> normal page + cache insert; pass 3+: XBZRLE).  An idle
# SeaBIOS dirties almost nothing, so this variant boots a 512-byte floppy boot
# sector (hand-assembled below) that keeps dirtying 16 pages at 0x10000:
#
#   7c00 fa                    cli
#   7c01 b8 00 10              mov ax,0x1000
#   7c04 8e c0                 mov es,ax
#   7c06 31 ff           top:  xor di,di
#   7c08 26 fe 05        pg:   inc byte [es:di]          ; byte 0 of the page
#   7c0b 26 fe 85 ff 07        inc byte [es:di+0x7ff]    ; byte 0x7ff
#   7c10 81 c7 00 10           add di,0x1000             ; next 4 KiB page
#   7c14 75 f2                 jnz pg                    ; 16 pages
#   7c16 0f 20 c3              mov ebx,cr0               ; toggle CR0.WP twice:
#   7c19 66 81 f3 00 00 01 00  xor ebx,0x10000           ; each change flushes
#   7c20 0f 22 c3              mov cr0,ebx               ; the TCG TLB, see
#   7c23 66 81 f3 00 00 01 00  xor ebx,0x10000           ; README.md ("TCG
#   7c2a 0f 22 c3              mov cr0,ebx               ; dirty tracking")
#   7c2d eb d7                 jmp top
#
# The migration is kept iterating with a 1 ms downtime limit: 1 MB/s
# bandwidth for the bulk pass (so it takes > 100 ms and QEMU's bandwidth
# estimate, hence its convergence threshold, stays ~1 KiB), then 2 KB/s from
# the second bitmap sync on, until QEMU has done XBZRLE_SYNCS syncs; then the
# limits are lifted so it completes.  Without the 2 KB/s phase the tiny xbzrle
# passes run back to back and a sync often finds no newly dirtied page (the
# guest loop has not come round yet), so QEMU converges after 5 syncs with
# ~10 XBZRLE records.  If the stream still holds fewer than XBZRLE_MIN XBZRLE
# records the variant is retried (5 attempts; the last one is kept if it has
# at least one).
XBZRLE_SYNCS=${XBZRLE_SYNCS:-20}
XBZRLE_MIN=${XBZRLE_MIN:-100}
make_floppy() {
    local img=$1 code
    code='\xfa\xb8\x00\x10\x8e\xc0\x31\xff\x26\xfe\x05\x26\xfe\x85\xff\x07'
    code+='\x81\xc7\x00\x10\x75\xf2'
    code+='\x0f\x20\xc3\x66\x81\xf3\x00\x00\x01\x00\x0f\x22\xc3'
    code+='\x66\x81\xf3\x00\x00\x01\x00\x0f\x22\xc3\xeb\xd7'
    rm -f "$img"
    truncate -s 1474560 "$img"
    printf '%b' "$code" | dd of="$img" conv=notrunc status=none
    printf '\x55\xaa' | dd of="$img" bs=1 seek=510 conv=notrunc status=none
}
setup_xbzrle() {
    hmp "migrate_set_capability xbzrle on" >/dev/null
    hmp "migrate_set_parameter xbzrle-cache-size 4M" >/dev/null
    hmp "migrate_set_parameter downtime-limit 1" >/dev/null
    hmp "migrate_set_parameter max-bandwidth 1M" >/dev/null
}
# wait_syncs N: poll until QEMU reports >= N dirty-bitmap syncs (or the
# migration is no longer active).
wait_syncs() {
    local info n
    for _ in $(seq 3000); do
        info=$(hmp "info migrate")
        grep -q '^Migration status: active' <<<"$info" || return 0
        n=$(sed -n 's/^dirty sync count: //p' <<<"$info")
        [[ -n $n && $n -ge $1 ]] && return 0
        sleep 0.005
    done
}
xbzrle_let_converge() {
    wait_syncs 2
    hmp "migrate_set_parameter max-bandwidth 2k" >/dev/null
    wait_syncs "$XBZRLE_SYNCS"
    hmp "migrate_set_parameter downtime-limit 2000" >/dev/null
    hmp "migrate_set_parameter max-bandwidth 128M" >/dev/null
}

if ((expect_only)); then
    for name in plain compress xbzrle; do
        [[ -f $out/$name.qemu && -f $out/$name.info ]] || continue
        write_expect "$name"
        echo "wrote $out/$name.expect"
    done
    exit 0
fi

"$QEMU" --version | head -n1
run_variant plain setup_plain
run_variant compress setup_compress
for attempt in 1 2 3 4 5; do
    run_variant xbzrle setup_xbzrle
    n=$(awk '$1 == "stream_xbzrle_pages" { print $2 }' "$out/xbzrle.expect")
    ((n >= XBZRLE_MIN)) && break
    echo "xbzrle attempt $attempt: only $n XBZRLE pages (want >= $XBZRLE_MIN)"
done
if ((n == 0)); then
    echo "xbzrle run produced no XBZRLE pages; dropping it"
    rm -f "$out/xbzrle.qemu" "$out/xbzrle.info" "$out/xbzrle.expect"
fi
