#!/usr/bin/env bash
# enospc.sh: a backup that runs out of space on the repository's volume.
#
# The repository lives on a 24 MiB tmpfs. A small tree backs up; a 64 MiB incompressible tree
# must fail with exit 1 and one stderr line about space, leave the repository valid (check
# --read-data), keep the first snapshot restorable, leave no temp files, and leave nothing
# that `prune` does not remove. After space is freed the next backups succeed. A sweep of
# files sized just at and below the free space runs out of space at later stages too
# (index, snapshot) with the same guarantees (ENOSPC_SWEEP_STEPS, default 48). A restore into
# a full target and a prune whose repack runs out of space fail cleanly too.
# Needs root (mount).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_setup
OUT="$LB_TMP/out"
ERR="$LB_TMP/err"
VOL="$LB_TMP/vol"
REPO="$VOL/repo"
mkdir -p "$VOL"

if ! mount -t tmpfs -o size=24m tmpfs "$VOL"; then
    fail "mount tmpfs" "a 24 MiB tmpfs at $VOL (needs root)" "mount failed"
    lb_finish
fi
LB_MOUNTS+=("$VOL")

used_kib() { df -k --output=used "$VOL" | tail -n 1 | tr -d ' '; }

lb_ok "init on tmpfs" init --repo "$REPO"
[ "$LB_RC" -eq 0 ] || lb_finish

SMALL="$LB_TMP/small"
make_tree "$SMALL" 0
lb_ok "backup of a small tree that fits" backup --repo "$REPO" "$SMALL"
ID1="$(lb_last_line "$OUT")"
lb_info "first snapshot $ID1; volume use $(used_kib) KiB of 24 MiB"

BEFORE="$(lb_repo_listing "$REPO")"
USED_BEFORE="$(used_kib)"

# ---------------------------------------------------------------- the backup that does not fit
BIG="$LB_TMP/big"
mkdir -p "$BIG"
lb_big_rand_file "$BIG/random-64m.bin" $((64 * 1048576))
lb "$OUT" "$ERR" backup --repo "$REPO" "$BIG"
assert_exit "backup of 64 MiB into a 24 MiB volume" 1 "$LB_RC" "$ERR"
assert_one_line "ENOSPC backup: stderr" "$ERR"
assert_file_match "ENOSPC backup: stderr mentions the lack of space" \
    'no space|space left|ENOSPC|disk (is )?full|volume (is )?full|out of space|not enough space' "$ERR"
lb_info "ENOSPC stderr: $(lb_head "$ERR"); volume use now $(used_kib) KiB"

IDS="$(lb_snapshot_ids "$REPO")"
assert_eq "after ENOSPC: snapshots listed" "$ID1" "$(printf '%s' "$IDS" | tr '\n' ' ' | sed 's/ $//')"

AFTER="$(lb_repo_listing "$REPO")"
NEW_FILES="$(comm -13 <(printf '%s\n' "$BEFORE" | cut -d' ' -f1) <(printf '%s\n' "$AFTER" | cut -d' ' -f1))"
TEMPS="$(printf '%s\n' "$NEW_FILES" | grep -Ei '(^|/)\.|tmp|temp|partial|incomplete|part$' || true)"
assert_eq "after ENOSPC: no temp files left in the repository" "" "$TEMPS"
if [ -n "$NEW_FILES" ]; then lb_info "files new after the failed backup: $(lb_oneline "$NEW_FILES")"; fi

lb_check "after ENOSPC" "$REPO"
lb_restore_check "after ENOSPC: first snapshot" "$REPO" "$ID1" "$SMALL"

# ---------------------------------------------------------------- free space
# a little more room, so prune can take its lock and write; it must remove whatever the
# failed backup left
mount -o remount,size=32m "$VOL"
lb_ok "prune after ENOSPC" prune --repo "$REPO"
AFTER_PRUNE="$(lb_repo_listing "$REPO")"
# prune may write a new (compacted) index; anything else new is a leftover
LEFT="$(comm -13 <(printf '%s\n' "$BEFORE" | cut -d' ' -f1) <(printf '%s\n' "$AFTER_PRUNE" | cut -d' ' -f1) | grep -v '^index/[0-9a-f]*$')"
assert_eq "after ENOSPC + prune: no file (but a new index) that was not there before the failed backup" "" "$LEFT"
USED_AFTER="$(used_kib)"
lb_info "volume use: $USED_BEFORE KiB before the failed backup, $USED_AFTER KiB after it and prune"
if [ "$USED_AFTER" -le $((USED_BEFORE + 1024)) ]; then
    pass
else
    fail "space after ENOSPC + prune" "at most $((USED_BEFORE + 1024)) KiB used" "$USED_AFTER KiB"
fi
lb_check "after ENOSPC + prune" "$REPO"

# the next backup that fits succeeds
SMALL2="$LB_TMP/small2"
cp -a "$SMALL" "$SMALL2"
lb_rand_file "$SMALL2/sub/new-after-enospc.bin" 2000000
lb_ok "next backup (fits) after ENOSPC" backup --repo "$REPO" "$SMALL2"
ID2="$(lb_last_line "$OUT")"

# ---------------------------------------------------------------- ENOSPC at every stage
# Backups of one random file sized to the free space and a little less, 4 KiB apart, so the
# volume fills up while writing the pack, or later while writing the index or the snapshot.
# Each failure must look the same (exit 1, one line about space, nothing committed, the
# repository valid); prune (with some room) must clear what it left. The sweep ends at the
# first backup that fits.
mount -o remount,size=24m "$VOL"
SWEEP="$LB_TMP/sweep"
mkdir -p "$SWEEP"
SWEEP_FAILS=0
SWEEP_OK=""
for ((k = 0; k < ${ENOSPC_SWEEP_STEPS:-48}; k++)); do
    avail=$(($(df -k --output=avail "$VOL" | tail -n 1 | tr -d ' ') * 1024))
    size=$((avail - k * 4096))
    [ "$size" -gt 0 ] || break
    lb_big_rand_file "$SWEEP/file.bin" "$size"
    ids_before="$(lb_snapshot_ids "$REPO")"
    lb "$OUT" "$ERR" backup --repo "$REPO" "$SWEEP"
    if [ "$LB_RC" -eq 0 ]; then
        SWEEP_OK="$(lb_last_line "$OUT")"
        lb_info "sweep: a $size-byte file fits (free space minus $((k * 4)) KiB)"
        break
    fi
    SWEEP_FAILS=$((SWEEP_FAILS + 1))
    ctx="sweep: $size-byte file, $avail bytes free"
    lb_info "$ctx: exit $LB_RC: $(lb_head "$ERR")"
    assert_exit "$ctx: backup" 1 "$LB_RC" "$ERR"
    assert_one_line "$ctx: stderr" "$ERR"
    assert_file_match "$ctx: stderr mentions the lack of space" \
        'no space|space left|ENOSPC|disk (is )?full|volume (is )?full|out of space|not enough space' "$ERR"
    assert_eq "$ctx: no new snapshot" "$ids_before" "$(lb_snapshot_ids "$REPO")"
    lb_check "$ctx" "$REPO"
    mount -o remount,size=64m "$VOL"
    lb "$LB_TMP/p.out" "$LB_TMP/p.err" prune --repo "$REPO"
    assert_exit "$ctx: prune" 0 "$LB_RC" "$LB_TMP/p.err"
    if ! mount -o remount,size=24m "$VOL"; then
        fail "$ctx: prune freed the space" "the volume fits in 24 MiB again" "$(used_kib) KiB used"
        break
    fi
done
lb_info "sweep: $SWEEP_FAILS backups ran out of space before one fitted"
if [ -n "$SWEEP_OK" ]; then
    pass
    lb_restore_check "sweep: the backup that fitted" "$REPO" "$SWEEP_OK" "$SWEEP"
    lb_check "sweep: end" "$REPO"
    lb_restore_check "sweep: first snapshot" "$REPO" "$ID1" "$SMALL"
else
    fail "sweep" "a backup that fits within ${ENOSPC_SWEEP_STEPS:-48} steps of 4 KiB below the free space" "none fitted"
fi

# room for the big tree
mount -o remount,size=160m "$VOL"
lb_ok "backup of the big tree once there is room" backup --repo "$REPO" "$BIG"
ID3="$(lb_last_line "$OUT")"

IDS="$(lb_snapshot_ids "$REPO" | tr '\n' ' ' | sed 's/ $//')"
assert_eq "snapshots at the end" "$ID1 $ID2${SWEEP_OK:+ $SWEEP_OK} $ID3" "$IDS"
lb_check "end" "$REPO"
lb_restore_check "end: first snapshot" "$REPO" "$ID1" "$SMALL"
lb_restore_check "end: second snapshot" "$REPO" "$ID2" "$SMALL2"
# the restore of the big tree goes to the local disk, not the tmpfs
lb_restore_check "end: big snapshot" "$REPO" "$ID3" "$BIG"

# ---------------------------------------------------------------- restore into a full target
# 40 files of 1 MiB into an 8 MiB volume: exit 1, the lack of space said once, not once for
# every file that came after it (at most 3 stderr lines)
MANY="$LB_TMP/many"
mkdir -p "$MANY"
for ((i = 0; i < 40; i++)); do lb_rand_file "$MANY/file-$i" 1048576; done
lb_ok "backup of 40 files of 1 MiB" backup --repo "$REPO" "$MANY"
ID_MANY="$(lb_last_line "$OUT")"
TVOL="$LB_TMP/target-vol"
mkdir -p "$TVOL"
if mount -t tmpfs -o size=8m tmpfs "$TVOL"; then
    LB_MOUNTS+=("$TVOL")
    lb "$OUT" "$ERR" restore --repo "$REPO" "$ID_MANY" --target "$TVOL/restore"
    assert_exit "restore of 40 MiB into an 8 MiB target volume" 1 "$LB_RC" "$ERR"
    assert_file_match "restore into a full target: stderr mentions the lack of space" \
        'no space|space left|ENOSPC|disk (is )?full|volume (is )?full|out of space|not enough space' "$ERR"
    nlines="$(grep -cv '^[[:space:]]*$' "$ERR")"
    if [ "$nlines" -le 3 ]; then pass; else
        fail "restore into a full target: stderr" "the lack of space reported once (at most 3 lines)" \
            "$nlines lines, first: $(head -n 1 "$ERR"), last: $(tail -n 1 "$ERR")"
    fi
    lb_info "restore into a full target: $nlines stderr lines; stdout: $(lb_head "$OUT")"
    umount "$TVOL"
else
    fail "mount tmpfs" "a second tmpfs at $TVOL" "mount failed"
fi

# ---------------------------------------------------------------- prune that runs out of space
# K's blobs share packs with forgotten ones, so prune repacks them; with almost no free space
# the repack fails. Prune must then fail cleanly (exit 1, one line) and leave every snapshot
# restorable; with space again it must succeed.
mount -o remount,size=400m "$VOL"
REPO2="$VOL/repo2"
lb_ok "init of a second repository" init --repo "$REPO2"
PT="$LB_TMP/prune-tree"
mkdir -p "$PT/big"
for ((i = 0; i < 8; i++)); do
    lb_big_rand_file "$PT/big/file-$i.bin" $((5 * 1048576))
    lb_big_rand_file "$PT/big/file-${i}x.bin" $((3 * 1048576))
done
touch -d '2020-01-01 00:00:00' "$PT/big"
lb_ok "prune case: backup with the extra files" backup --repo "$REPO2" "$PT"
rm -f "$PT"/big/file-*x.bin
touch -d '2020-01-01 00:00:00' "$PT/big"
lb_ok "prune case: backup without them" backup --repo "$REPO2" "$PT"
K="$(lb_last_line "$OUT")"
lb_ok "prune case: forget --keep-last 1" forget --repo "$REPO2" --keep-last 1
lb "$OUT" "$ERR" prune --repo "$REPO2" --dry-run
lb_info "prune case, dry run: $(lb_head "$OUT")"
# leave 1 MiB free
USED_NOW="$(used_kib)"
mount -o remount,size=$((USED_NOW + 1024))k "$VOL"
lb "$OUT" "$ERR" prune --repo "$REPO2"
assert_exit "prune with 1 MiB free (repack needs more)" 1 "$LB_RC" "$ERR"
assert_one_line "prune out of space: stderr" "$ERR"
assert_file_match "prune out of space: stderr mentions the lack of space" \
    'no space|space left|ENOSPC|disk (is )?full|volume (is )?full|out of space|not enough space' "$ERR"
lb_info "prune out of space: exit $LB_RC: $(lb_head "$ERR")"
assert_eq "prune out of space: snapshots" "$K" "$(lb_snapshot_ids "$REPO2" | tr -d '\n')"
lb_check "prune out of space" "$REPO2"
lb_restore_check "prune out of space" "$REPO2" "$K" "$PT"
lb_restore_check "prune out of space: the other repository" "$REPO" "$ID1" "$SMALL"
mount -o remount,size=400m "$VOL"
lb_ok "prune once there is room" prune --repo "$REPO2"
lb_info "prune once there is room: $(lb_head "$OUT")"
lb_check "prune once there is room" "$REPO2"
lb_restore_check "prune once there is room" "$REPO2" "$K" "$PT"

lb_finish
