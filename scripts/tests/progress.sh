#!/usr/bin/env bash
# progress.sh: a progress line is drawn on stderr only when stderr is a terminal.
#
# backup and restore run once with stderr on a pseudo-terminal (`script` from util-linux,
# stdout to a file) and once with stderr to a file. On the terminal the output must redraw a
# line in place (a carriage return not followed by a newline, or an erase-line escape) and
# show a byte count (e.g. "12.0 MiB"); in the file there must be no carriage return and no
# such count; stdout holds only the data (the snapshot id) either way.
#
# Settings: PROGRESS_MIB (size of the random tree, default 256: long enough to draw a few times).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROGRESS_MIB="${PROGRESS_MIB:-256}"
# what lifeboat draws, e.g. "[0:03] backed up 8 files, 256 MiB, 76.7 MiB/s, 250 MiB new"
PROGRESS_RE='[0-9]+ files, [0-9]+(\.[0-9]+)? (B|KiB|MiB|GiB)'
# any byte count with a unit, or a percentage: none of it may reach stderr when it is a file
ANY_COUNT_RE='[0-9]+([.,][0-9]+)? ?(B|KiB|MiB|GiB|kB|KB|MB|GB)\b|[0-9]+(\.[0-9]+)? ?%'

lb_setup
OUT="$LB_TMP/out"
ERR="$LB_TMP/err"
REPO="$LB_TMP/repo"
SRC="$LB_TMP/src"
make_tree "$SRC" "$PROGRESS_MIB" 8

lb_ok "init" init --repo "$REPO"
[ "$LB_RC" -eq 0 ] || lb_finish

# on_pty NAME ARGS... : runs lifeboat with stdout to $LB_TMP/NAME.stdout and stderr on a pty
# whose output lands in $LB_TMP/NAME.pty; exit code in LB_RC
on_pty() {
    local name=$1
    shift
    local cmd
    cmd="$(printf '%q ' "$LIFEBOAT_BIN" "$@")>$(printf '%q' "$LB_TMP/$name.stdout")"
    timeout -k 10 "$LB_CMD_TIMEOUT" script -qfec "$cmd" /dev/null >"$LB_TMP/$name.pty" 2>&1 </dev/null
    LB_RC=$?
}

# redraws FILE: number of carriage returns that are not part of "\r\n", plus erase-line escapes
redraws() {
    python3 - "$1" <<'EOF'
import re, sys
data = open(sys.argv[1], "rb").read()
print(len(re.findall(rb"\r(?!\n)", data)) + len(re.findall(rb"\x1b\[[0-2]?K", data)))
EOF
}

# progress_lines FILE [ERE]: the pieces of output between carriage returns/newlines that show a count
progress_lines() {
    tr '\r' '\n' <"$1" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | grep -E -- "${2:-$PROGRESS_RE}"
}

check_pty() {
    local what=$1 name=$2 n shown
    n="$(redraws "$LB_TMP/$name.pty")"
    if [ "${n:-0}" -gt 0 ]; then pass; else
        fail "$what on a terminal: progress redraws a line" "a carriage return not followed by a newline, or ESC[K" \
            "$(od -c "$LB_TMP/$name.pty" | head -n 4)"
    fi
    shown="$(progress_lines "$LB_TMP/$name.pty" | tail -n 1)"
    if [ -n "$shown" ]; then pass; else
        fail "$what on a terminal: progress shows a byte count" "a line matching /$PROGRESS_RE/" "$(lb_head "$LB_TMP/$name.pty")"
    fi
    lb_info "$what progress on a terminal ($n redraws), last: $(lb_oneline "$shown")"
    if grep -q $'\r' "$LB_TMP/$name.stdout"; then
        fail "$what on a terminal: stdout" "no progress on stdout" "$(lb_head "$LB_TMP/$name.stdout")"
    else pass; fi
}

check_file() {
    local what=$1 errfile=$2
    if grep -q $'\r' "$errfile" || grep -q $'\x1b' "$errfile"; then
        fail "$what with stderr to a file: no redraws" "no carriage return or escape in stderr" "$(od -c "$errfile" | head -n 3)"
    else pass; fi
    local shown
    shown="$(progress_lines "$errfile" "$ANY_COUNT_RE" | head -n 1)"
    assert_eq "$what with stderr to a file: no progress line" "" "$shown"
}

# ---------------------------------------------------------------- backup
on_pty backup1 backup --repo "$REPO" "$SRC"
assert_exit "backup with stderr on a terminal" 0 "$LB_RC" "$LB_TMP/backup1.pty"
check_pty "backup" backup1
ID1="$(lb_last_line "$LB_TMP/backup1.stdout")"
assert_match "backup on a terminal: last stdout line is the snapshot id" '^[0-9a-f]{8,}$' "$ID1"

# new data again, so the second backup does as much work as the first
for f in "$SRC"/big/*.bin; do lb_big_rand_file "$f.new" "$(stat -c %s "$f")"; mv -f "$f.new" "$f"; done
lb_ok "backup with stderr to a file" backup --repo "$REPO" "$SRC"
check_file "backup" "$ERR"
ID2="$(lb_last_line "$OUT")"
assert_match "backup to a file: last stdout line is the snapshot id" '^[0-9a-f]{8,}$' "$ID2"

# ---------------------------------------------------------------- restore
on_pty restore1 restore --repo "$REPO" "$ID1" --target "$LB_TMP/r1"
assert_exit "restore with stderr on a terminal" 0 "$LB_RC" "$LB_TMP/restore1.pty"
check_pty "restore" restore1
rm -rf "$LB_TMP/r1"

lb_ok "restore with stderr to a file" restore --repo "$REPO" "$ID2" --target "$LB_TMP/r2"
check_file "restore" "$ERR"
trees_equal "restore with stderr to a file" "$SRC" "$LB_TMP/r2"

lb_finish
