#!/usr/bin/env bash
# memory.sh: memory does not grow with the size of one file.
#
# Peak RSS (/usr/bin/time -f %M) of backing up a single MEM_SMALL_MIB (64) MiB file and a single
# MEM_LARGE_MIB (768) MiB file of random data, each into a fresh repository, and of restoring
# each: the large one may use at most MEM_MAX_DIFF_MIB (48) MiB more than the small one.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MEM_SMALL_MIB="${MEM_SMALL_MIB:-64}"
MEM_LARGE_MIB="${MEM_LARGE_MIB:-768}"
MEM_MAX_DIFF_MIB="${MEM_MAX_DIFF_MIB:-48}"

lb_setup
OUT="$LB_TMP/out"
ERR="$LB_TMP/err"

# measured NAME ARGS... : runs lifeboat under /usr/bin/time; peak RSS in KiB in PEAK_KIB
measured() {
    local name=$1
    shift
    timeout -k 10 "$LB_CMD_TIMEOUT" /usr/bin/time -f '%M' -o "$LB_TMP/$name.rss" \
        "$LIFEBOAT_BIN" "$@" >"$OUT" 2>"$ERR" </dev/null
    LB_RC=$?
    PEAK_KIB="$(tail -n 1 "$LB_TMP/$name.rss" 2>/dev/null | tr -dc '0-9')"
    PEAK_KIB="${PEAK_KIB:-0}"
}

declare -A BACKUP_KIB=() RESTORE_KIB=()
for mib in "$MEM_SMALL_MIB" "$MEM_LARGE_MIB"; do
    src="$LB_TMP/src-$mib"
    repo="$LB_TMP/repo-$mib"
    mkdir -p "$src"
    lb_big_rand_file "$src/one-file.bin" $((mib * 1048576))
    lb_ok "init ($mib MiB case)" init --repo "$repo"

    measured "backup-$mib" backup --repo "$repo" "$src"
    assert_exit "backup of one $mib MiB file" 0 "$LB_RC" "$ERR"
    BACKUP_KIB[$mib]=$PEAK_KIB
    id="$(lb_last_line "$OUT")"

    measured "restore-$mib" restore --repo "$repo" "$id" --target "$LB_TMP/restore-$mib"
    assert_exit "restore of one $mib MiB file" 0 "$LB_RC" "$ERR"
    RESTORE_KIB[$mib]=$PEAK_KIB
    if cmp -s "$src/one-file.bin" "$LB_TMP/restore-$mib/one-file.bin"; then pass; else
        fail "restore of one $mib MiB file" "the same bytes" "$(cmp "$src/one-file.bin" "$LB_TMP/restore-$mib/one-file.bin" 2>&1 | head -n 1)"
    fi
    rm -rf "$src" "$repo" "$LB_TMP/restore-$mib"
done

kib_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
limit=$((MEM_MAX_DIFF_MIB * 1024))
for op in backup restore; do
    if [ "$op" = backup ]; then
        small=${BACKUP_KIB[$MEM_SMALL_MIB]}
        large=${BACKUP_KIB[$MEM_LARGE_MIB]}
    else
        small=${RESTORE_KIB[$MEM_SMALL_MIB]}
        large=${RESTORE_KIB[$MEM_LARGE_MIB]}
    fi
    echo "peak RSS of $op: $(kib_to_mib "$small") MiB for one $MEM_SMALL_MIB MiB file, $(kib_to_mib "$large") MiB for one $MEM_LARGE_MIB MiB file"
    if [ "$small" -gt 0 ] && [ "$large" -gt 0 ] && [ $((large - small)) -lt "$limit" ]; then
        pass
    else
        fail "peak RSS of $op" "the $MEM_LARGE_MIB MiB file to need less than $MEM_MAX_DIFF_MIB MiB more than the $MEM_SMALL_MIB MiB file" \
            "$(kib_to_mib "$large") MiB vs $(kib_to_mib "$small") MiB"
    fi
done

lb_finish
