#!/usr/bin/env bash
# concurrency.sh: operations on one repository at the same time.
#   (a) two backups of different trees at once: both succeed and restore exactly;
#   (b) prune while a backup runs (the backup is paused, its lease still fresh): prune refuses
#       with exit 11 or waits; it never deletes data the running backup relies on;
#   (c) a backup paused past its lock lease: prune reports the stale lock and goes on; the
#       resumed backup aborts (non-zero, error about its lease) and commits nothing.
#   (d) prune while a restore runs (paused), with packs that hold both the restored snapshot's
#       blobs and forgotten ones, so prune wants to repack them: prune refuses with exit 11
#       or waits, or, if it goes on, the resumed restore still completes exactly.
# In (b) and (c) the backup re-adds data that an earlier snapshot had and that was forgotten,
# so a prune that ran over a live backup would delete blobs the new snapshot uses.
#
# Settings: CONC_BIG_MIB (size of the tree the paused backups read, default 192).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONC_BIG_MIB="${CONC_BIG_MIB:-192}"
lb_setup
OUT="$LB_TMP/out"
ERR="$LB_TMP/err"
REPO="$LB_TMP/repo"

lb_ok "init" init --repo "$REPO"
[ "$LB_RC" -eq 0 ] || lb_finish

declare -A EXPECT=() # snapshot id -> tree it must restore to

# start_bg NAME ENV... -- ARGS... : lifeboat in the background; pid in BG_PID, output in $LB_TMP/NAME.{out,err}
start_bg() {
    lb_split_env "${@:2}"
    env "${LB_ENVS[@]+"${LB_ENVS[@]}"}" "$LIFEBOAT_BIN" "${LB_ARGS[@]}" >"$LB_TMP/$1.out" 2>"$LB_TMP/$1.err" </dev/null &
    BG_PID=$!
    LB_PIDS+=("$BG_PID")
}

# lock_files: the repository's lock files (Docs/repository-format.md: locks/<id>; temp files
# being written there start with a dot, and ls leaves them out)
lock_files() { ls "$REPO/locks" 2>/dev/null; }

# wait until PID holds a lock: a lock file appears that was not there before
wait_for_lock() {
    local pid=$1 before=$2 i
    for ((i = 0; i < 5000; i++)); do
        if [ "$(lock_files)" != "$before" ]; then return 0; fi
        lb_is_running "$pid" || return 1
        sleep 0.002
    done
    return 1
}

verify_expected() {
    local ctx=$1 id
    for id in "${!EXPECT[@]}"; do
        lb_restore_check "$ctx: snapshot ${id:0:12}" "$REPO" "$id" "${EXPECT[$id]}"
    done
}

# ---------------------------------------------------------------- (a) two backups at once
for round in 1 2 3; do
    A="$LB_TMP/a$round"
    B="$LB_TMP/b$round"
    make_tree "$A" 24 3
    make_tree "$B" 24 3
    BEFORE_IDS="$(lb_snapshot_ids "$REPO" | sort)"
    start_bg "a$round" -- backup --repo "$REPO" "$A"
    PA=$BG_PID
    start_bg "b$round" -- backup --repo "$REPO" "$B"
    PB=$BG_PID
    lb_wait_pid "$PA" "$LB_CMD_TIMEOUT"
    RA=$LB_WAIT_RC
    lb_wait_pid "$PB" "$LB_CMD_TIMEOUT"
    RB=$LB_WAIT_RC
    assert_exit "(a) round $round: first of two concurrent backups" 0 "$RA" "$LB_TMP/a$round.err"
    assert_exit "(a) round $round: second of two concurrent backups" 0 "$RB" "$LB_TMP/b$round.err"
    IA="$(lb_last_line "$LB_TMP/a$round.out")"
    IB="$(lb_last_line "$LB_TMP/b$round.out")"
    AFTER_IDS="$(lb_snapshot_ids "$REPO" | sort)"
    NEW="$(comm -13 <(printf '%s\n' "$BEFORE_IDS") <(printf '%s\n' "$AFTER_IDS") | tr '\n' ' ')"
    assert_eq "(a) round $round: new snapshots listed" "$(printf '%s\n' "$IA" "$IB" | sort | tr '\n' ' ')" "$NEW"
    [ -n "$IA" ] && EXPECT[$IA]="$A"
    [ -n "$IB" ] && EXPECT[$IB]="$B"
    lb_restore_check "(a) round $round: first tree" "$REPO" "$IA" "$A"
    lb_restore_check "(a) round $round: second tree" "$REPO" "$IB" "$B"
done
lb_check "(a)" "$REPO"

# ---------------------------------------------------------------- (b) prune while a backup runs
P="$LB_TMP/p"         # the path that is backed up (its content is swapped by renaming dirs)
V1="$LB_TMP/v1"       # big tree
V2="$LB_TMP/v2"       # small tree
make_tree "$V1" "$CONC_BIG_MIB" 12
make_tree "$V2" 0
printf 'v2\n' >>"$V2/hello.txt"

swap_in() { mv "$1" "$P"; }    # make DIR the backed up path
swap_out() { mv "$P" "$1"; }

# backup_p TREE: normal backup of P holding TREE; prints the id
backup_p() {
    local tree=$1
    swap_in "$tree"
    lb "$OUT" "$ERR" backup --repo "$REPO" "$P"
    swap_out "$tree"
    assert_exit "backup of $(basename "$tree") as $P" 0 "$LB_RC" "$ERR"
    BACKUP_ID="$(lb_last_line "$OUT")"
}

# forget_p KEEP_ID: forget --keep-last 1 (the group of path P) and drop the forgotten ids
forget_p() {
    local ctx=$1 id
    lb_ok "$ctx: forget --keep-last 1" forget --repo "$REPO" --keep-last 1
    local ids
    ids=" $(lb_snapshot_ids "$REPO" | tr '\n' ' ') "
    for id in "${!EXPECT[@]}"; do
        [[ "$ids" == *" $id "* ]] || unset "EXPECT[$id]"
    done
}

# v1 in the repository, then forgotten: its blobs stay in the index but nothing references them
backup_p "$V1"
S1=$BACKUP_ID
EXPECT[$S1]="$V1"
backup_p "$V2"
S2=$BACKUP_ID
EXPECT[$S2]="$V2"
forget_p "(b) prep"
if [ -n "${EXPECT[$S1]+x}" ]; then
    fail "(b) prep: forget --keep-last 1" "snapshot $S1 (older of path $P) forgotten" "still listed"
fi
assert_eq "(b) prep: (a)'s snapshots are kept by forget (other paths)" 7 "${#EXPECT[@]}"

IDS_BEFORE="$(lb_snapshot_ids "$REPO" | sort)"
LOCKS_BEFORE="$(lock_files)"
swap_in "$V1"
start_bg backup_b -- backup --repo "$REPO" "$P"
PBK=$BG_PID
if wait_for_lock "$PBK" "$LOCKS_BEFORE"; then
    kill -STOP "$PBK" 2>/dev/null
    pass
    start_bg prune_b -- prune --repo "$REPO"
    PPR=$BG_PID
    # give prune time to either refuse or show that it waits
    for ((i = 0; i < 50; i++)); do lb_is_running "$PPR" || break; sleep 0.1; done
    if lb_is_running "$PPR"; then
        lb_info "(b) prune waits for the backup's lock"
        kill -CONT "$PBK" 2>/dev/null
        lb_wait_pid "$PBK" "$LB_CMD_TIMEOUT"
        RBK=$LB_WAIT_RC
        lb_wait_pid "$PPR" "$LB_CMD_TIMEOUT"
        RPR=$LB_WAIT_RC
        assert_exit "(b) prune that waited for a running backup" 0 "$RPR" "$LB_TMP/prune_b.err"
    else
        lb_wait_pid "$PPR" 10
        RPR=$LB_WAIT_RC
        lb_info "(b) prune during backup: exit $RPR, stderr: $(lb_head "$LB_TMP/prune_b.err")"
        assert_exit "(b) prune while a backup holds a fresh lock" 11 "$RPR" "$LB_TMP/prune_b.err"
        assert_one_line "(b) prune refused: stderr" "$LB_TMP/prune_b.err"
        assert_file_match "(b) prune refused: names the lock" 'lock' "$LB_TMP/prune_b.err"
        kill -CONT "$PBK" 2>/dev/null
        lb_wait_pid "$PBK" "$LB_CMD_TIMEOUT"
        RBK=$LB_WAIT_RC
    fi
    swap_out "$V1"
    assert_exit "(b) backup that ran during prune" 0 "$RBK" "$LB_TMP/backup_b.err"
    S3="$(lb_last_line "$LB_TMP/backup_b.out")"
    IDS_AFTER="$(lb_snapshot_ids "$REPO" | sort)"
    NEW="$(comm -13 <(printf '%s\n' "$IDS_BEFORE") <(printf '%s\n' "$IDS_AFTER") | tr -d '\n')"
    assert_eq "(b) the backup's snapshot is listed" "$S3" "$NEW"
    [ -n "$S3" ] && EXPECT[$S3]="$V1"
    lb_check "(b)" "$REPO"
    lb_restore_check "(b) backup that ran during prune" "$REPO" "$S3" "$V1"
    # and a normal prune now, then everything still restores
    lb_ok "(b) prune after the backup" prune --repo "$REPO"
    lb_check "(b) after prune" "$REPO"
    lb_restore_check "(b) after prune: backup that ran during prune" "$REPO" "$S3" "$V1"
else
    lb_wait_pid "$PBK" 5
    [ -d "$P" ] && swap_out "$V1"
    fail "(b) setup" "the backup still running when it took its lock" "it finished first (exit $LB_WAIT_RC); raise CONC_BIG_MIB"
fi

# ---------------------------------------------------------------- (c) backup paused past its lease
backup_p "$V2"
S4=$BACKUP_ID
EXPECT[$S4]="$V2"
forget_p "(c) prep"
if [ -n "${S3:-}" ] && [ -n "${EXPECT[$S3]+x}" ]; then
    fail "(c) prep: forget --keep-last 1" "snapshot $S3 forgotten" "still listed"
fi

IDS_BEFORE="$(lb_snapshot_ids "$REPO" | sort)"
LOCKS_BEFORE="$(lock_files)"
swap_in "$V1"
start_bg backup_c LIFEBOAT_LOCK_LEASE_SECONDS=2 -- backup --repo "$REPO" "$P"
PBK=$BG_PID
wait_for_lock "$PBK" "$LOCKS_BEFORE"
sleep 0.05
kill -STOP "$PBK" 2>/dev/null
if ! lb_is_running "$PBK"; then
    lb_wait_pid "$PBK" 5
    [ -d "$P" ] && swap_out "$V1"
    fail "(c) setup" "the backup still running when paused" "it finished first (exit $LB_WAIT_RC); raise CONC_BIG_MIB"
else
    pass
    sleep 5
    lb_env "$LB_TMP/prune_c.out" "$LB_TMP/prune_c.err" LIFEBOAT_LOCK_LEASE_SECONDS=2 -- prune --repo "$REPO"
    assert_exit "(c) prune while a backup is paused past its lease" 0 "$LB_RC" "$LB_TMP/prune_c.err"
    assert_file_match "(c) prune reports the stale lock" 'stale' "$LB_TMP/prune_c.err"
    lb_info "(c) prune stderr: $(lb_head "$LB_TMP/prune_c.err")"
    kill -CONT "$PBK" 2>/dev/null
    lb_wait_pid "$PBK" "$LB_CMD_TIMEOUT"
    RBK=$LB_WAIT_RC
    swap_out "$V1"
    if [ "$RBK" -ne 0 ] && [ "$RBK" -ne 137 ] && [ "$RBK" -ne 124 ]; then
        pass
    else
        fail "(c) resumed backup after its lease lapsed" "a non-zero exit (abort before commit)" \
            "exit $RBK, stdout: $(lb_head "$LB_TMP/backup_c.out"), stderr: $(lb_head "$LB_TMP/backup_c.err")"
    fi
    assert_file_match "(c) resumed backup: error about its lock lease" 'lease|lock' "$LB_TMP/backup_c.err"
    lb_info "(c) backup stderr: $(lb_head "$LB_TMP/backup_c.err")"
    IDS_AFTER="$(lb_snapshot_ids "$REPO" | sort)"
    assert_eq "(c) no new snapshot from the aborted backup" "$IDS_BEFORE" "$IDS_AFTER"
    lb_check "(c)" "$REPO"
    # the repository is fine for the next backup of the same data
    backup_p "$V1"
    S5=$BACKUP_ID
    EXPECT[$S5]="$V1"
    lb_check "(c) after the next backup" "$REPO"
fi

# ---------------------------------------------------------------- (d) prune while a restore runs
# V4: fresh data; W = V4 plus extra files whose names sort between V4's, so the packs of one
# backup mix blobs of both; K = V4 alone. Forgetting W leaves mixed, partly used packs.
V4="$LB_TMP/v4"
make_tree "$V4" 96 8
for ((i = 0; i < 8; i++)); do lb_big_rand_file "$V4/big/file-${i}x.bin" $((6 * 1048576)); done
touch -d '2020-01-01 00:00:00' "$V4/big"
backup_p "$V4"
W=$BACKUP_ID
rm -f "$V4"/big/file-*x.bin
touch -d '2020-01-01 00:00:00' "$V4/big"
backup_p "$V4"
K=$BACKUP_ID
EXPECT[$K]="$V4"
forget_p "(d) prep"
if [ -n "${EXPECT[$W]+x}" ]; then fail "(d) prep: forget --keep-last 1" "snapshot $W forgotten" "still listed"; fi
lb "$OUT" "$ERR" prune --repo "$REPO" --dry-run
lb_info "(d) prune --dry-run before the restore: $(lb_head "$OUT")"

TARGET="$LB_TMP/restore-d"
LOCKS_BEFORE="$(lock_files)"
start_bg restore_d -- restore --repo "$REPO" "$K" --target "$TARGET"
PRS=$BG_PID
# pause it once it has begun: it holds a lock, or it has written something
for ((i = 0; i < 5000; i++)); do
    if [ "$(lock_files)" != "$LOCKS_BEFORE" ] || [ -n "$(ls -A "$TARGET" 2>/dev/null)" ]; then break; fi
    lb_is_running "$PRS" || break
    sleep 0.002
done
kill -STOP "$PRS" 2>/dev/null
if ! lb_is_running "$PRS"; then
    lb_wait_pid "$PRS" 5
    fail "(d) setup" "the restore still running when paused" "it finished first (exit $LB_WAIT_RC)"
else
    pass
    start_bg prune_d -- prune --repo "$REPO"
    PPR=$BG_PID
    for ((i = 0; i < 50; i++)); do lb_is_running "$PPR" || break; sleep 0.1; done
    if lb_is_running "$PPR"; then
        lb_info "(d) prune waits for the restore"
        kill -CONT "$PRS" 2>/dev/null
        lb_wait_pid "$PRS" "$LB_CMD_TIMEOUT"
        RRS=$LB_WAIT_RC
        lb_wait_pid "$PPR" "$LB_CMD_TIMEOUT"
        assert_exit "(d) prune that waited for a restore" 0 "$LB_WAIT_RC" "$LB_TMP/prune_d.err"
    else
        lb_wait_pid "$PPR" 10
        RPR=$LB_WAIT_RC
        lb_info "(d) prune during restore: exit $RPR: stdout $(lb_head "$LB_TMP/prune_d.out"), stderr $(lb_head "$LB_TMP/prune_d.err")"
        # refusing (11) is fine; going on (0) is fine only if the restore still succeeds
        assert_exit "(d) prune while a restore runs" "0|11" "$RPR" "$LB_TMP/prune_d.err"
        kill -CONT "$PRS" 2>/dev/null
        lb_wait_pid "$PRS" "$LB_CMD_TIMEOUT"
        RRS=$LB_WAIT_RC
    fi
    assert_exit "(d) restore that ran during prune" 0 "$RRS" "$LB_TMP/restore_d.err"
    if [ "$RRS" -eq 0 ]; then
        trees_equal "(d) restore that ran during prune" "$V4" "$TARGET"
    fi
    lb_check "(d)" "$REPO"
    lb_ok "(d) prune after the restore" prune --repo "$REPO"
    lb_info "(d) prune after the restore: $(lb_head "$OUT")"
fi

# ---------------------------------------------------------------- end: everything restores
lb_check "end" "$REPO"
verify_expected "end"
lb_finish
