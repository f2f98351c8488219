#!/usr/bin/env bash
# The failover demo on the lab (`scripts/demo.sh --lab` runs this): scripts/lab/up.sh builds
# three hosts (network and mount namespaces of their own, an etcd member, a glusterd and a
# brick of the replica-3 GlusterFS volume holding the repository, lifeboatd with redis and
# PostgreSQL 15); a writer in the client namespace writes distinct keys to the redis primary
# and logs each acknowledged one; a snapshot goes into the volume; then the primary host is
# lost: its link is cut on the switch first, then its agent and services are SIGKILLed.
# Another host takes the etcd lease, recovers and starts redis; the writer carries on there;
# every acknowledged write is read back from the new primary; a summary; scripts/lab/down.sh
# (the logs stay in DIR/logs/). The steps and checks: scripts/lib/lab_scenario.sh.
#
#   scripts/lab/failover-demo.sh [--dir DIR]      (as root; default DIR: lab/ of the repository)
#
# Environment: LAB_KEEP=1 leaves the lab up at the end (scripts/lab/down.sh removes it).
# Exit 0 when every check passed and no acknowledged write was lost, 1 otherwise, 2 when it
# cannot run.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
ROOT=$PWD
DIR="$ROOT/lab"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --dir) DIR=${2:-} && shift 2 || { echo "failover-demo: --dir needs a path" >&2 && exit 2; } ;;
        -h | --help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
        *) echo "failover-demo: unknown argument '$1' (see --help)" >&2 && exit 2 ;;
    esac
done
DIR="$(realpath -m "$DIR")"
LB_SCRIPT=demo-lab
. scripts/tests/lib.sh
require_root "network and mount namespaces, GlusterFS, FUSE" --dir "$DIR"

# the work files (writer, checks, up/down output) go with the logs, which down.sh keeps
LB_DIR="$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-demo-lab.XXXXXX")"
lb_setup >/dev/null
LAB_RUN_DIR=$DIR
LAB_RUN_PREFIX=lab
LS_WORK="$LB_TMP/work"
export LIFEBOAT_BIN
. scripts/lib/lab_scenario.sh
# at the end: the work files into DIR/logs/client, the lab down (logs kept), the temp dir gone
demo_end() {
    if [ -n "$LS_WRITER" ]; then lb_kill_pid "$LS_WRITER" && LS_WRITER=""; fi
    if [ -d "$LAB_RUN_DIR/logs" ]; then mkdir -p "$LAB_RUN_DIR/logs/client" && cp -r "$LS_WORK"/. "$LAB_RUN_DIR/logs/client/" 2>/dev/null; fi
    if [ "${LAB_KEEP:-0}" = 1 ]; then
        echo "demo: the lab stays up (LAB_KEEP=1): $LAB_RUN_DIR/lab.json; scripts/lab/down.sh --dir $LAB_RUN_DIR removes it"
    else
        ls_down --keep-logs
        [ "${LS_DOWN_RC:-1}" = 0 ] || echo "demo: scripts/lab/down.sh failed: $(tail -n 2 "$LS_WORK/down.out" | tr '\n' ' ')"
    fi
    LB_KEEP=0
    lb_cleanup
}
trap demo_end EXIT
ls_give_up() {
    local i
    for ((i = 1; i <= ${LAB_HOSTS:-0}; i++)); do
        [ -f "$(lab_logdir "$i")/agent.log" ] && echo "# h$i agent.log:" && tail -n 12 "$(lab_logdir "$i")/agent.log" | sed 's/^/#   /'
    done
    echo "demo: FAILED: $LB_FAIL checks failed (the FAIL lines above; logs: $LAB_RUN_DIR/logs/)"
    exit 1
}

T0=$(date +%s)
echo "demo: building the lab in $DIR (scripts/lab/up.sh)"
ls_up
echo "demo: the lab is up ($LS_UP_SECONDS s): h1..h$LAB_HOSTS on $LAB_SUBNET.0/24, etcd on h1-h3, volume $LAB_VOLUME on $LAB_MOUNT; redis primary h$LS_P"
ls_writer_snapshot
ls_host_loss
PG_LINE="no postgres primary within 60 s"
if ls_wait_primary 60 postgres 0 "$LS_OLD"; then
    PG_LINE="h$PRIMARY (epoch $PRIMARY_EPOCH), answering as $(timeout 10 ip netns exec "$LAB_CLIENT" "$LAB_PGBIN/psql" -h "$(lab_addr "$PRIMARY")" -p "$LAB_PG_PORT" -U postgres -d postgres -XAtc 'SELECT current_user' 2>&1 | head -n 1)"
fi
ls_check_all
# the lost host's link comes back (its agent stays dead, so its API refuses at once: with the
# link down `lifeboat status` would wait a minute for it)
lab_link_set "$LS_OLD" up
status_table="$(timeout -k 5 90 ip netns exec "$LAB_CLIENT" "$LIFEBOAT_BIN" status --agent "$(lab_api "$LS_NEW")" 2>&1)"

secs() { awk -v v="${1:-}" 'BEGIN { if (v ~ /^[0-9.eE+-]+$/) printf "%.3f s", v; else print "?" }'; }
num() { if is_int "${1:-}"; then echo "$1"; else echo "?"; fi; }
row() { printf '  %-34s %s\n' "$1" "$2"; }
LOST=?
if is_int "${LS_BEFORE_LOST:-}" && is_int "${CHECK_LOST:-}"; then LOST=$((LS_BEFORE_LOST > CHECK_LOST ? LS_BEFORE_LOST : CHECK_LOST)); fi
verdict="$LOST ACKNOWLEDGED WRITES LOST"
[ "$LOST" = 0 ] && verdict="no acknowledged write lost"
echo
echo "=== summary: the lab (h1..h$LAB_HOSTS, etcd, GlusterFS replica 3), redis primary h$LS_OLD lost, $verdict"
row "acknowledged before the kill" "$LS_KILL_ACKS (by h$LS_OLD; snapshot ${LS_SNAPSHOT:0:12} into the volume)"
row "found after recovery" "$(num "$LS_BEFORE_OK") on h$LS_NEW, lost $(num "$LS_BEFORE_LOST")"
row "acknowledged in all" "$(num "$CHECK_ACKED"): found $(num "$CHECK_OK"), lost $(num "$CHECK_LOST")"
row "host lost" "h$LS_OLD: link $(lab_link "$LS_OLD") down, then agent + services SIGKILLed (pids $LS_KILLED)"
row "new redis primary" "h$LS_NEW ($(lab_addr "$LS_NEW")), epoch $LS_NEW_EPOCH (was epoch $LS_OLD_EPOCH); recovery kind ${R_kind:-?}"
row "postgres primary afterwards" "$PG_LINE"
row "primary again after the kill" "$(ls_elapsed "$LS_T_KILL" "$LS_T_UP") s (as this script saw it, polling every 0.3 s)"
echo "recovery time by part (h$LS_NEW: /v1/status workloads[redis].last_recovery):"
row "detection (after lease expiry)" "$(secs "$R_detection_seconds")"
row "lease taken" "$(secs "$R_lease_seconds")"
row "snapshot load" "$(secs "$R_snapshot_load_seconds") ($(num "$R_snapshot_bytes") bytes from the volume)"
row "delta from a peer" "$(secs "$R_delta_seconds") ($(num "$R_delta_records") records from ${R_delta_peer:-no peer})"
row "replay" "$(secs "$R_replay_seconds") ($(num "$R_replayed_records") records, $(num "$R_local_records") held locally)"
row "mount" "$(secs "$R_mount_seconds")"
row "service start" "$(secs "$R_service_start_seconds")"
row "total" "$(secs "$R_total_seconds")"
echo
echo "\$ ip netns exec $LAB_CLIENT lifeboat status --agent $(lab_api "$LS_NEW")"
echo "$status_table"
echo
echo "demo: logs: $LAB_RUN_DIR/logs/h*/ (agent, etcd, glusterfs, redis), $LAB_RUN_DIR/logs/client/ (writer, checks); took $(($(date +%s) - T0)) s; checks: $LB_PASS passed, $LB_FAIL failed"
if [ "$LOST" = 0 ] && [ "$LB_FAIL" = 0 ]; then
    echo "demo: OK: every acknowledged write survived the loss of the primary host"
    exit 0
fi
echo "demo: FAILED: $LOST acknowledged writes lost, $LB_FAIL checks failed (the FAIL lines above)"
exit 1
