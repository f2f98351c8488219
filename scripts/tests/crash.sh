#!/usr/bin/env bash
# crash.sh: crash safety of backup, forget and prune.
#
# Kills lifeboat (SIGKILL) at every documented crash point (LIFEBOAT_CRASH_AT, also POINT:2)
# and at random instants (within a bound that adapts to how fast the commands finish here),
# CRASH_ROUNDS kills in all (default 60). After every kill:
#   - `check --read-data` exits 0;
#   - every snapshot committed before the kill is still listed (unless it was being
#     forgotten) and restores equal to the tree it was taken from (digest + diff + stat);
#   - a snapshot that appeared without being reported (kill after its rename) is complete;
#   - the next normal backup / prune succeeds.
#
# Settings: CRASH_ROUNDS (kills, default 60), CRASH_BIG_MIB (random data in the tree, default 80),
# CRASH_SEED (for $RANDOM), CRASH_LEASE (LIFEBOAT_LOCK_LEASE_SECONDS for every command, default 5,
# so that the lock of a killed process goes stale quickly).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CRASH_ROUNDS="${CRASH_ROUNDS:-60}"
CRASH_BIG_MIB="${CRASH_BIG_MIB:-80}"
CRASH_SEED="${CRASH_SEED:-$$}"
CRASH_LEASE="${CRASH_LEASE:-5}"
RANDOM="$CRASH_SEED"
NBIG=10

lb_setup
lb_info "seed $CRASH_SEED, target $CRASH_ROUNDS kills, tree of $CRASH_BIG_MIB MiB random data, lock lease $CRASH_LEASE s"

REPO="$LB_TMP/repo"
SRC="$LB_TMP/src"
STATES="$LB_TMP/states"
OUT="$LB_TMP/out"
ERR="$LB_TMP/err"
mkdir -p "$STATES"

declare -A SNAP_STATE=()   # snapshot id -> number of the state copy it was taken from
declare -A STATE_DIGEST=() # state number -> lifeboat digest of the copy
TRACKED=()                 # committed, not forgotten snapshot ids, oldest first
STATE_N=0
SRC_DIRTY=1
KILLS=0
POINT_KILLS=0
RANDOM_KILLS=0
RANDOM_MISSES=0
LOCK_RETRIES=0
ROT=0   # rotating index into big/file-*.bin
ROUND=0

# ------------------------------------------------------------------ helpers

# run_crash POINT ARGS...: lifeboat ARGS (OUT, ERR) with the test's lease and, unless POINT is
# "", LIFEBOAT_CRASH_AT=POINT; retried once after the lease when refused as locked (the lock of
# a killed process stays until it is stale). run_lb ARGS...: the same without a crash point.
run_crash() {
    local envs=("LIFEBOAT_LOCK_LEASE_SECONDS=$CRASH_LEASE")
    [ -z "$1" ] || envs+=("LIFEBOAT_CRASH_AT=$1")
    lb_env "$OUT" "$ERR" "${envs[@]}" -- "${@:2}"
    [ "$LB_RC" -eq 11 ] || return 0
    LOCK_RETRIES=$((LOCK_RETRIES + 1))
    sleep "$((CRASH_LEASE + 1))"
    lb_env "$OUT" "$ERR" "${envs[@]}" -- "${@:2}"
}
run_lb() { run_crash "" "$@"; }

# run in the background and SIGKILL after a random 0-RANDOM_MAX_MS ms; exit code in LB_RC.
# The bound adapts to how fast the commands run here: a run that finished before its kill
# shrinks it by a third (at least 10 ms), a run that was killed widens it by 20 ms (at most
# 300), so the kills keep landing on a fast machine instead of the count falling short.
RANDOM_MAX_MS=300
run_random_kill() {
    local ms=$((RANDOM % (RANDOM_MAX_MS + 1))) pid
    exec 3>&2 2>/dev/null # no "Killed" job notice from bash
    env "LIFEBOAT_LOCK_LEASE_SECONDS=$CRASH_LEASE" "$LIFEBOAT_BIN" "$@" >"$OUT" 2>"$ERR" </dev/null &
    pid=$!
    LB_PIDS+=("$pid")
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    kill -KILL "$pid" 2>/dev/null
    lb_wait_pid "$pid" "$LB_CMD_TIMEOUT"
    exec 2>&3 3>&-
    LB_RC=$LB_WAIT_RC
    RANDOM_DELAY_MS=$ms
    if [ "$LB_RC" -eq 0 ]; then
        RANDOM_MAX_MS=$((RANDOM_MAX_MS * 2 / 3 > 10 ? RANDOM_MAX_MS * 2 / 3 : 10))
    elif [ "$LB_RC" -eq 137 ]; then
        RANDOM_MAX_MS=$((RANDOM_MAX_MS + 20 < 300 ? RANDOM_MAX_MS + 20 : 300))
    fi
}

# rewrite the big files with these indexes (fresh random data) and touch small files
mutate() {
    local i
    for i in "$@"; do
        lb_big_rand_file "$SRC/big/.new" $((CRASH_BIG_MIB * 1048576 / NBIG))
        mv -f "$SRC/big/.new" "$SRC/big/file-$i.bin"
    done
    printf 'round %d\n' "$ROUND" >>"$SRC/hello.txt"
    rm -f "$SRC"/sub/round-*.txt
    printf 'added in round %d\n' "$ROUND" >"$SRC/sub/round-$ROUND.txt"
    SRC_DIRTY=1
}

# next K rotating file indexes
next_files() {
    local k=$1 i
    for ((i = 0; i < k; i++)); do
        printf '%d ' $(((ROT + i) % NBIG))
    done
    ROT=$(((ROT + k) % NBIG))
}

# copy the source tree as a new state if it changed since the last copy
snapshot_state() {
    if [ "$SRC_DIRTY" = 1 ]; then
        STATE_N=$((STATE_N + 1))
        cp -a "$SRC" "$STATES/$STATE_N"
        STATE_DIGEST[$STATE_N]="$(lb_digest "$STATES/$STATE_N")"
        SRC_DIRTY=0
    fi
}

# drop state copies no tracked snapshot needs
gc_states() {
    local d n id keep
    for d in "$STATES"/*; do
        [ -d "$d" ] || continue
        n="${d##*/}"
        [ "$n" = "$STATE_N" ] && continue
        keep=0
        for id in "${TRACKED[@]+"${TRACKED[@]}"}"; do
            if [ "${SNAP_STATE[$id]}" = "$n" ]; then keep=1; break; fi
        done
        [ "$keep" = 1 ] || rm -rf "$d"
    done
}

# normal backup of the current tree; must succeed. Prints nothing; sets LAST_ID.
backup_ok() {
    local ctx=$1
    snapshot_state
    run_lb backup --repo "$REPO" "$SRC"
    assert_exit "$ctx: backup" 0 "$LB_RC" "$ERR"
    LAST_ID=""
    if [ "$LB_RC" -eq 0 ]; then
        LAST_ID="$(lb_last_line "$OUT")"
        sync_after "$ctx: backup" 1 1 ""
        if [ -n "$LAST_ID" ] && [ -z "${SNAP_STATE[$LAST_ID]+x}" ]; then
            fail "$ctx: backup" "its printed id $LAST_ID to be listed" "$(lb_snapshot_ids "$REPO" | tr '\n' ' ')"
        fi
    fi
}

# sync_after CONTEXT MIN_NEW MAX_NEW "IDS ALLOWED TO DISAPPEAR"
# Compares the listed snapshots with TRACKED. New ones (at most MAX_NEW) belong to the state
# being backed up (STATE_N).
sync_after() {
    local ctx=$1 min=$2 max=$3 gone=" $4 " ids id
    if ! ids="$(lb_snapshot_ids "$REPO")"; then
        fail "$ctx: snapshots --json" "exit 0 and a JSON list" "$(lb_head "$LB_TMP/.snapids.err")"
        return
    fi
    declare -A listed=()
    for id in $ids; do listed[$id]=1; done
    local kept=() new=()
    for id in "${TRACKED[@]+"${TRACKED[@]}"}"; do
        if [ -n "${listed[$id]+x}" ]; then
            kept+=("$id")
        elif [[ "$gone" == *" $id "* ]]; then
            :
        else
            fail "$ctx: committed snapshot $id (state ${SNAP_STATE[$id]})" "still listed" "not listed any more"
        fi
    done
    declare -A was=()
    for id in "${TRACKED[@]+"${TRACKED[@]}"}"; do was[$id]=1; done
    for id in $ids; do
        [ -n "${was[$id]+x}" ] || new+=("$id")
    done
    local n=${#new[@]}
    if [ "$n" -ge "$min" ] && [ "$n" -le "$max" ]; then
        pass
    else
        fail "$ctx: new snapshots" "between $min and $max" "$n: ${new[*]-}"
    fi
    for id in "${new[@]+"${new[@]}"}"; do
        if [ "$max" -gt 0 ]; then
            SNAP_STATE[$id]=$STATE_N
            kept+=("$id")
        fi
    done
    TRACKED=("${kept[@]+"${kept[@]}"}")
    gc_states
}

# check --read-data, then restore and compare every tracked snapshot
verify_all() {
    local ctx=$1 id n
    lb_check "$ctx" "$REPO"
    for id in "${TRACKED[@]+"${TRACKED[@]}"}"; do
        n="${SNAP_STATE[$id]}"
        lb_restore_check "$ctx: snapshot ${id:0:12} (state $n)" "$REPO" "$id" "$STATES/$n" "${STATE_DIGEST[$n]}"
    done
}

# restore one snapshot and compare
verify_one() {
    local ctx=$1 id=$2 n
    [ -n "$id" ] || return 0
    n="${SNAP_STATE[$id]:-}"
    [ -n "$n" ] || return 0
    lb_restore_check "$ctx: snapshot ${id:0:12} (state $n)" "$REPO" "$id" "$STATES/$n" "${STATE_DIGEST[$n]}"
}

all_but_newest() {
    local n=${#TRACKED[@]} i
    for ((i = 0; i < n - 1; i++)); do printf '%s ' "${TRACKED[$i]}"; done
}

counted_kill() { # KIND
    KILLS=$((KILLS + 1))
    if [ "$1" = point ]; then POINT_KILLS=$((POINT_KILLS + 1)); else RANDOM_KILLS=$((RANDOM_KILLS + 1)); fi
}

# Two backups that leave a partly used pack once the older one is forgotten:
# X rewrites files a b c, Y rewrites a b again.
prune_prep() {
    local ctx=$1 files a b c
    files="$(next_files 3)"
    read -r a b c <<<"$files"
    mutate "$a" "$b" "$c"
    backup_ok "$ctx: prep X"
    mutate "$a" "$b"
    backup_ok "$ctx: prep Y"
}

# ------------------------------------------------------------------ rounds

# backup killed at a crash point
round_backup_point() {
    local point=$1 ctx="round $ROUND: backup killed at $1" min=0 max=0
    if [[ "$point" == *:2 ]]; then
        # more new data than one pack holds, so the point is reached a second time
        # shellcheck disable=SC2046
        mutate $(seq 0 $((NBIG - 1)))
    else
        # shellcheck disable=SC2046
        mutate $(next_files 3)
    fi
    snapshot_state
    run_crash "$point" backup --repo "$REPO" "$SRC"
    assert_exit "$ctx" 137 "$LB_RC" "$ERR"
    [ "$LB_RC" -eq 137 ] && counted_kill point
    case "$point" in
        snapshot.after-rename*) min=1 max=1 ;;
    esac
    if [ "$LB_RC" -eq 0 ]; then min=1 max=1; fi
    sync_after "$ctx" "$min" "$max" ""
    verify_all "$ctx"
    backup_ok "$ctx: next backup"
    lb_check "$ctx: after next backup" "$REPO"
    verify_one "$ctx: next backup" "$LAST_ID"
}

# backup killed at a random instant
round_backup_random() {
    local ctx="round $ROUND: backup killed at random"
    # shellcheck disable=SC2046
    mutate $(next_files 4)
    snapshot_state
    run_random_kill backup --repo "$REPO" "$SRC"
    ctx="$ctx (after ${RANDOM_DELAY_MS} ms)"
    if [ "$LB_RC" -eq 137 ]; then
        counted_kill random
        sync_after "$ctx" 0 1 ""
    elif [ "$LB_RC" -eq 0 ]; then
        RANDOM_MISSES=$((RANDOM_MISSES + 1))
        pass
        sync_after "$ctx (finished before the kill)" 1 1 ""
    else
        fail "$ctx" "exit 137 (killed) or 0 (finished first)" "exit $LB_RC, stderr: $(lb_head "$ERR")"
        sync_after "$ctx" 0 1 ""
    fi
    verify_all "$ctx"
    backup_ok "$ctx: next backup"
    verify_one "$ctx: next backup" "$LAST_ID"
}

# forget/prune killed at a crash point. MODE: prune | forgetprune | forget
round_prune_point() {
    local mode=$1 point=$2 ctx="round $ROUND: $1 killed at $2" gone
    prune_prep "$ctx"
    gone="$(all_but_newest)"
    case "$mode" in
        prune)
            run_lb forget --repo "$REPO" --keep-last 1
            assert_exit "$ctx: forget --keep-last 1" 0 "$LB_RC" "$ERR"
            sync_after "$ctx: forget" 0 0 "$gone"
            run_crash "$point" prune --repo "$REPO"
            ;;
        forgetprune)
            run_crash "$point" forget --repo "$REPO" --keep-last 1 --prune
            ;;
        forget)
            run_crash "$point" forget --repo "$REPO" --keep-last 1
            ;;
    esac
    assert_exit "$ctx" 137 "$LB_RC" "$ERR"
    [ "$LB_RC" -eq 137 ] && counted_kill point
    sync_after "$ctx" 0 0 "$gone"
    verify_all "$ctx"
    # the next normal run finishes the job
    gone="$(all_but_newest)"
    if [ "$mode" = forget ]; then
        run_lb forget --repo "$REPO" --keep-last 1 --prune
        assert_exit "$ctx: next forget --keep-last 1 --prune" 0 "$LB_RC" "$ERR"
    else
        run_lb prune --repo "$REPO"
        assert_exit "$ctx: next prune" 0 "$LB_RC" "$ERR"
    fi
    sync_after "$ctx: after the next run" 0 0 "$gone"
    lb_check "$ctx: after the next run" "$REPO"
}

# forget+prune or prune killed at a random instant
round_prune_random() {
    local ctx="round $ROUND: prune killed at random" gone
    prune_prep "$ctx"
    gone="$(all_but_newest)"
    if [ $((RANDOM % 2)) = 0 ]; then
        run_lb forget --repo "$REPO" --keep-last 1
        assert_exit "$ctx: forget --keep-last 1" 0 "$LB_RC" "$ERR"
        sync_after "$ctx: forget" 0 0 "$gone"
        run_random_kill prune --repo "$REPO"
    else
        ctx="round $ROUND: forget --prune killed at random"
        run_random_kill forget --repo "$REPO" --keep-last 1 --prune
    fi
    ctx="$ctx (after ${RANDOM_DELAY_MS} ms)"
    if [ "$LB_RC" -eq 137 ]; then
        counted_kill random
        pass
    elif [ "$LB_RC" -eq 0 ]; then
        RANDOM_MISSES=$((RANDOM_MISSES + 1))
        pass
    else
        fail "$ctx" "exit 137 (killed) or 0 (finished first)" "exit $LB_RC, stderr: $(lb_head "$ERR")"
    fi
    sync_after "$ctx" 0 0 "$gone"
    verify_all "$ctx"
    gone="$(all_but_newest)"
    run_lb forget --repo "$REPO" --keep-last 1 --prune
    assert_exit "$ctx: next forget --keep-last 1 --prune" 0 "$LB_RC" "$ERR"
    sync_after "$ctx: after the next run" 0 0 "$gone"
    lb_check "$ctx: after the next run" "$REPO"
}

# ------------------------------------------------------------------ main

make_tree "$SRC" "$CRASH_BIG_MIB" "$NBIG"
lb_ok "init" init --repo "$REPO"
if [ "$LB_RC" -ne 0 ]; then lb_finish; fi
backup_ok "baseline"
verify_all "baseline"

PLAN=(
    "backup pack.before-rename" "prune prune.after-repack"
    "backup pack.after-rename" "prune prune.after-index-write"
    "backup index.before-rename" "prune prune.after-index-delete"
    "backup index.after-rename" "prune prune.after-pack-delete"
    "backup snapshot.before-rename" "forget forget.after-snapshot-delete"
    "backup snapshot.after-rename" "forget forget.after-snapshot-delete:2"
    "backup pack.before-rename:2" "forgetprune prune.after-repack"
    "backup pack.after-rename:2" "forgetprune prune.after-pack-delete"
    "forgetprune prune.after-index-write" "forgetprune prune.after-index-delete"
)
START=$(date +%s)
for step in "${PLAN[@]}"; do
    ROUND=$((ROUND + 1))
    read -r kind point <<<"$step"
    lb_info "round $ROUND: $kind at $point (kills so far $KILLS, $(($(date +%s) - START)) s)"
    case "$kind" in
        backup) round_backup_point "$point" ;;
        *) round_prune_point "$kind" "$point" ;;
    esac
done

ATTEMPTS=0
MAX_ATTEMPTS=$((CRASH_ROUNDS * 3))
while [ "$KILLS" -lt "$CRASH_ROUNDS" ] && [ "$ATTEMPTS" -lt "$MAX_ATTEMPTS" ]; do
    ROUND=$((ROUND + 1))
    ATTEMPTS=$((ATTEMPTS + 1))
    if [ $((ROUND % 2)) = 0 ]; then
        lb_info "round $ROUND: random kill of backup (kills so far $KILLS, $(($(date +%s) - START)) s)"
        round_backup_random
    else
        lb_info "round $ROUND: random kill of prune (kills so far $KILLS, $(($(date +%s) - START)) s)"
        round_prune_random
    fi
done

verify_all "final"
if [ "$KILLS" -ge "$CRASH_ROUNDS" ]; then
    pass
else
    fail "kill count" "at least $CRASH_ROUNDS kills" "$KILLS after $ATTEMPTS random attempts"
fi
echo "kills: $KILLS ($POINT_KILLS at crash points, $RANDOM_KILLS at random instants; $RANDOM_MISSES random runs finished before the kill; $LOCK_RETRIES runs refused as locked and retried after the lease)"
lb_finish
