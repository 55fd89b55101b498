# demo-lib.sh: what the demo scripts share (sourced, not run).
#
#   demo_init NAME   a work directory ($work, under /tmp) and the list of
#                    processes to kill ($pids): on exit both go
#   step TEXT        a heading
#   cmd TEXT         a command, as typed
#   note TEXT...     indented lines
#   wait_for FILE PATTERN [SECONDS]
#                    until a line of FILE matches (default 10 s); else says
#                    so with the end of FILE and its neighbours, and fails
demo_init() {
    demo_name=$1
    work=$(mktemp -d "/tmp/ftvm-$1.XXXXXX")
    pids=()
    trap demo_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
demo_cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cmd() { printf '\033[2m$\033[0m %s\n' "$*"; }
note() { printf '   %s\n' "$@"; }
wait_for() {
    local tenths=$(( ${3:-10} * 20 ))
    for _ in $(seq "$tenths"); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "$demo_name: timed out waiting for '$2' in $1; it and its" \
         "neighbours end with:" >&2
    tail -n 5 "${1%.*}".* >&2 || true
    return 1
}
