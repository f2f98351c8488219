#!/usr/bin/env bash
# Lab benchmark: snapshots into the GlusterFS volume and a failover with a large state, on the
# lab (scripts/lab/up.sh: three hosts in network namespaces, etcd, a replica-3 GlusterFS volume
# holding the repository), for each `standby` mode in BENCH_STANDBYS, each on a fresh lab.
#
#   scripts/bench/lab.sh [--markdown]
#
# One run per mode measures, with the lab's postgres workload (PostgreSQL 15 as `postgres`):
#  1. State: BENCH_STATE_MB MiB of incompressible rows (pgcrypto gen_random_bytes, 1 KiB each,
#     one committed INSERT per 64 MiB) written through the primary's FUSE data dir with
#     replication sync, then CHECKPOINT.
#  2. Snapshot throughput into the volume: a snapshot through the primary's API
#     (POST /v1/workloads/postgres/snapshot), its bytes and seconds from the report; side by
#     side in the same run, on the same host, `restic backup` and `borg create` (when installed)
#     of the same backing dir into repositories of their own on the same GlusterFS mount
#     (first backups of each; compression: restic auto, borg zstd,3 like Lifeboat's zstd; the
#     page cache dropped before each of the three).
#     Ratios: their seconds / Lifeboat's.
#  3. Delta: BENCH_DELTA_MB MiB more rows after the snapshot; the bench waits until both peers
#     acknowledged the primary's last record (and, for `warm`, until each peer's copy is warm
#     at that position).
#  4. Host loss: the primary's link is taken down, then its agent and every process under it
#     SIGKILLed. Measured: kill -> pg_isready answering on the new primary (polled every
#     50 ms from the client namespace), and the new primary's last_recovery by part
#     (detection, lease, snapshot load and bytes, delta, replay, mount, service start, total);
#     "after detection" = total - detection. Goals (issue 10): after detection < 3 s, kill to
#     answering < lease_ttl + 3 s. The rows are counted on the new primary: every one of them
#     (they were all acknowledged) must be there.
# Timing never fails the run; a lost row or a failed step does (exit 1). A lab this bench
# brings up is taken down at the end, also on failure. Needs root, the lab's packages
# (scripts/setup.sh) and about 8 x BENCH_STATE_MB free in BENCH_DIR's file system.
#
# Environment:
#   BENCH_STATE_MB   state size in MiB (default 1024)
#   BENCH_DELTA_MB   written after the snapshot, MiB (default 10)
#   BENCH_STANDBYS   modes to measure, in order (default "cold warm")
#   BENCH_DIR        run dirs (default /var/tmp/lifeboat-bench); removed unless BENCH_KEEP=1
#   BENCH_PREFIX     the labs' prefix (default bl) and BENCH_SUBNET their /24 (10.89.0)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
ROOT=$PWD
LB_SCRIPT=bench/lab.sh
. scripts/lib/common.sh
export LAB_SUBNET="${BENCH_SUBNET:-10.89.0}"
. scripts/lib/lab_scenario.sh

MARKDOWN=0
case "${1:-}" in
    --markdown) MARKDOWN=1 ;;
    "") ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) echo "$LB_SCRIPT: unknown argument '$1' (see --help)" >&2 && exit 2 ;;
esac
STATE_MB="${BENCH_STATE_MB:-1024}"
DELTA_MB="${BENCH_DELTA_MB:-10}"
STANDBYS="${BENCH_STANDBYS:-cold warm}"
PREFIX="${BENCH_PREFIX:-bl}"
is_positive "$STATE_MB" || { echo "$LB_SCRIPT: BENCH_STATE_MB must be a positive number of MiB, not '$STATE_MB'" >&2 && exit 2; }
is_positive "$DELTA_MB" || { echo "$LB_SCRIPT: BENCH_DELTA_MB must be a positive number of MiB, not '$DELTA_MB'" >&2 && exit 2; }
for m in $STANDBYS; do
    case "$m" in cold | warm) ;; *) echo "$LB_SCRIPT: BENCH_STANDBYS: '$m' is not a standby (cold, warm)" >&2 && exit 2 ;; esac
done
require_root "the lab's namespaces and mounts" "$@"
mkdir -p "${BENCH_DIR:-/var/tmp/lifeboat-bench}" && RUN="$(mktemp -d "${BENCH_DIR:-/var/tmp/lifeboat-bench}/lab.XXXXXX")" || exit 2
chmod 755 "$RUN" # the lab's postgres user must reach the lab dirs under it
LAB_UP=""
say() { log "bench/lab: $*"; }
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$LAB_UP" ]; then
        [ "$rc" != 0 ] && cp -a "$LAB_UP/logs" "$RUN/lab-logs" 2>/dev/null
        for i in 1 2 3; do lab_link_set "$i" up 2>/dev/null; done
        scripts/lab/down.sh --dir "$LAB_UP" >"$RUN/down.out" 2>&1 || say "scripts/lab/down.sh failed: $(tail -n 1 "$RUN/down.out")"
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then say "run dir kept: $RUN"; else rm -rf "$RUN"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# sql I SQL: psql on host I's postgres from the client namespace; the answer unaligned
sql() { timeout -k 5 600 ip netns exec "$LAB_CLIENT" psql -X -q -t -A -v ON_ERROR_STOP=1 -h "$(lab_addr "$1")" -p "$LAB_PG_PORT" -U postgres -d postgres -c "$2"; }
pg_answers() { timeout 3 ip netns exec "$LAB_CLIENT" "$LAB_PGBIN/pg_isready" -q -h "$(lab_addr "$1")" -p "$LAB_PG_PORT" -U postgres -d postgres; }
st() { ls_status "$1" postgres "${@:2}"; }
peers_acked() {
    local last i a
    last="$(st "$1" position)"
    for ((i = 1; i <= 3; i++)); do
        [ "$i" = "$1" ] && continue
        a="$(st "$1" "peers[h$i].acked")"
        [ "$a" = "$last" ] || return 1
    done
}
copies_warm() {
    local last i
    last="$(st "$1" position)"
    for ((i = 1; i <= 3; i++)); do
        [ "$i" = "$1" ] && continue
        [ "$(st "$i" standby.state standby.position | tr '\n' ' ')" = "warm $last " ] || return 1
    done
}
RESULTS=()
TABLE=()

# bench_mode MODE: one lab with standby MODE, the four steps; appends to TABLE
bench_mode() {
    local mode=$1 dir="$RUN/lab-$1" P EP out rc t0 snap_s snap_b restic_s="" borg_s="" batches b rows_before rows_after \
        AP frozen t_kill t_up N f
    say "standby $mode: bringing a lab up (prefix $PREFIX, subnet $LAB_SUBNET)"
    LAB_STANDBY=$mode scripts/lab/up.sh --dir "$dir" --prefix "$PREFIX" >"$RUN/up-$mode.json" 2>"$RUN/up-$mode.err" ||
        { say "scripts/lab/up.sh failed: $(tail -n 2 "$RUN/up-$mode.err" | tr '\n' ' ')" && return 1; }
    LAB_UP=$dir
    lab_load_env "$dir" || return 1
    ls_wait_primary 60 postgres 0 -1 || { say "no postgres primary: $WAIT_SEEN" && return 1; }
    P=$PRIMARY EP=$PRIMARY_EPOCH
    say "postgres primary h$P (epoch $EP); writing $STATE_MB MiB of incompressible rows"
    sql "$P" "CREATE EXTENSION IF NOT EXISTS pgcrypto; CREATE TABLE state (id bigserial PRIMARY KEY, payload bytea NOT NULL) WITH (autovacuum_enabled = off); ALTER TABLE state ALTER payload SET STORAGE EXTERNAL;" ||
        return 1
    t0=$(now)
    batches=$(((STATE_MB + 63) / 64))
    for ((b = 0; b < batches; b++)); do
        sql "$P" "INSERT INTO state (payload) SELECT gen_random_bytes(1024) FROM generate_series(1, 65536);" || return 1
    done
    sql "$P" "CHECKPOINT;" || return 1
    say "state written in $(secs "$t0" "$(now)") s: $(sql "$P" "SELECT pg_size_pretty(pg_database_size('postgres'));")"

    # 2. the snapshot, then restic and borg of the same backing dir on the same mount
    sync && echo 3 >/proc/sys/vm/drop_caches
    out="$(timeout -k 5 1800 ip netns exec "$LAB_CLIENT" python3 "$LS_FC" post --timeout 1800 \
        "$(lab_api "$P")/v1/workloads/postgres/snapshot" snapshot position total_bytes seconds 2>&1)"
    rc=$?
    [ "$rc" = 0 ] || { say "the snapshot failed: $out" && return 1; }
    read -r _ _ _ snap_b snap_s <<<"$out"
    say "snapshot: $out"
    local B="$(lab_hdir "$P")/postgres/backing"
    if command -v restic >/dev/null; then
        lab_in "$P" env RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$RUN/restic-cache" restic init --repo "$LAB_MOUNT/restic-$mode" >"$RUN/restic-$mode.out" 2>&1 &&
            sync && echo 3 >/proc/sys/vm/drop_caches && t0=$(now) &&
            lab_in "$P" env RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$RUN/restic-cache" restic backup --repo "$LAB_MOUNT/restic-$mode" --quiet "$B" >>"$RUN/restic-$mode.out" 2>&1 &&
            restic_s=$(secs "$t0" "$(now)")
        say "restic backup of the same dir into the volume: ${restic_s:-failed ($(tail -n 1 "$RUN/restic-$mode.out"))} s"
    fi
    if command -v borg >/dev/null; then
        lab_in "$P" env BORG_PASSPHRASE="" BORG_BASE_DIR="$RUN/borg-base" borg init --encryption none "$LAB_MOUNT/borg-$mode" >"$RUN/borg-$mode.out" 2>&1 &&
            sync && echo 3 >/proc/sys/vm/drop_caches && t0=$(now) &&
            lab_in "$P" env BORG_PASSPHRASE="" BORG_BASE_DIR="$RUN/borg-base" borg create --compression zstd,3 "$LAB_MOUNT/borg-$mode::first" "$B" >>"$RUN/borg-$mode.out" 2>&1 &&
            borg_s=$(secs "$t0" "$(now)")
        say "borg create of the same dir into the volume: ${borg_s:-failed ($(tail -n 1 "$RUN/borg-$mode.out"))} s"
    fi

    # 3. the delta after the snapshot
    sql "$P" "INSERT INTO state (payload) SELECT gen_random_bytes(1024) FROM generate_series(1, $((DELTA_MB * 1024)));" || return 1
    rows_before="$(sql "$P" "SELECT count(*) FROM state;")"
    WAIT_POLL=0.2 wait_until 60 peers_acked "$P" || { say "the peers did not acknowledge h$P's last record within 60 s" && return 1; }
    if [ "$mode" = warm ]; then
        WAIT_POLL=0.2 wait_until 120 copies_warm "$P" || { say "the peers' copies are not warm at h$P's last record within 120 s" && return 1; }
    fi
    sleep 1

    # 4. host loss (an etcd leader on the lost host adds an election, and the new leader
    # extends every lease by its election timeout: the lease runs out later)
    local leader
    leader="$(ls_etcd_leader)"
    AP="$(lab_pid "$P" agent)"
    lab_link_set "$P" down
    kill -STOP "$AP"
    mapfile -t frozen < <(lab_descendants "$AP")
    kill -KILL "$AP" "${frozen[@]}" 2>/dev/null
    t_kill=$(now)
    ls_wait_primary 60 postgres $((EP + 1)) "$P" || { say "no new primary within 60 s: $WAIT_SEEN" && return 1; }
    N=$PRIMARY
    WAIT_POLL=0.05 wait_until 60 pg_answers "$N" || { say "postgres on h$N does not answer" && return 1; }
    t_up=$(now)
    for f in "${LS_RECOVERY_FIELDS[@]}"; do printf -v "R_$f" '%s' ""; done
    read -r "${LS_RECOVERY_FIELDS[@]/#/R_}" < <(st "$N" "${LS_RECOVERY_FIELDS[@]/#/last_recovery.}")
    rows_after="$(sql "$N" "SELECT count(*) FROM state;")"
    local after_detection kill_up lost=$((rows_before - ${rows_after:-0}))
    after_detection=$(awk -v t="$R_total_seconds" -v d="$R_detection_seconds" 'BEGIN { printf "%.2f", t - d }')
    kill_up=$(secs "$t_kill" "$t_up")
    say "standby $mode: h$N primary at epoch $PRIMARY_EPOCH; postgres answering $kill_up s after the kill (etcd leader was h${leader:-?}, the lost host h$P); rows $rows_after of $rows_before"
    grep -h "primary at epoch $PRIMARY_EPOCH\|warm copy" "$(lab_logdir "$N")/agent.log" >"$RUN/recovery-$mode.log" 2>/dev/null
    TABLE+=("$(printf '| %s | %s | %.0f MiB in %.2f s (%.0f MB/s) | %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %s | %.2f | %.2f | %.2f | %s | %s |' \
        "$mode" "$STATE_MB" "$(awk -v b="$snap_b" 'BEGIN { print b / 1048576 }')" "$snap_s" \
        "$(awk -v b="$snap_b" -v s="$snap_s" 'BEGIN { print (s > 0 ? b / s / 1e6 : 0) }')" \
        "${restic_s:--}${restic_s:+ s ($(awk -v r="$restic_s" -v s="$snap_s" 'BEGIN { printf "%.1fx", r / s }'))}" \
        "${borg_s:--}${borg_s:+ s ($(awk -v r="$borg_s" -v s="$snap_s" 'BEGIN { printf "%.1fx", r / s }'))}" \
        "$kill_up" "$R_detection_seconds" "$R_lease_seconds" "${R_announce_seconds/-/0}" "$R_snapshot_load_seconds" \
        "$R_snapshot_bytes" "$R_delta_seconds" "$R_replay_seconds" "$R_service_start_seconds" "$after_detection" "$lost")")
    RESULTS+=("$mode: lost host h$P (etcd leader h${leader:-?}): kill->answering $kill_up s, after detection $after_detection s (detection $R_detection_seconds, lease $R_lease_seconds, announce $R_announce_seconds, snapshot load $R_snapshot_load_seconds s / $R_snapshot_bytes bytes, delta $R_delta_seconds, replay $R_replay_seconds, mount $R_mount_seconds, service $R_service_start_seconds), lost rows $lost")
    lab_link_set "$P" up
    local keep=()
    [ "${BENCH_KEEP:-0}" = 1 ] && keep=(--keep-logs)
    scripts/lab/down.sh --dir "$dir" "${keep[@]+"${keep[@]}"}" >"$RUN/down-$mode.out" 2>&1 || say "scripts/lab/down.sh failed: $(tail -n 1 "$RUN/down-$mode.out")"
    LAB_UP=""
    [ "$lost" = 0 ] || { say "PROBLEM: $lost acknowledged rows missing on the new primary" && return 1; }
}

FAILED=0
for mode in $STANDBYS; do bench_mode "$mode" || { FAILED=1 && break; }; done

HEAD='| standby | state MiB | Lifeboat snapshot into the volume | restic (x Lifeboat) | borg (x Lifeboat) | kill -> answering s (goal < 6) | detection s | lease s | announce s | snapshot load s | snapshot bytes | delta s | replay s | service start s | after detection s (goal < 3) | rows lost |'
echo
echo "bench/lab.sh: $(date -u '+%F %H:%M') UTC, $(nproc) cores, state $STATE_MB MiB + $DELTA_MB MiB after the snapshot, lease_ttl 3 s, replication sync"
echo "$HEAD"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${TABLE[@]+"${TABLE[@]}"}"
printf '%s\n' "${RESULTS[@]+"${RESULTS[@]}"}"
[ "$MARKDOWN" = 1 ] && echo "command: BENCH_STATE_MB=$STATE_MB BENCH_DELTA_MB=$DELTA_MB BENCH_STANDBYS=\"$STANDBYS\" scripts/bench/lab.sh"
exit "$FAILED"
