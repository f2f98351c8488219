#!/usr/bin/env bash
# The main job on the embedded default: one machine, a local volume dir, the local
# coordinator. Three lifeboatd agents (h1 127.0.0.21, h2 127.0.0.22, h3 127.0.0.23; API :7440,
# journal stream :7441, redis :6391) share one "volume" dir (the repository and the lease
# dir) and run the failover scenario of scripts/tests/failover-redis.sh once, with its checks
# (scripts/lib/failover_scenario.sh: election, a writer and a snapshot, the primary host lost
# and recovered elsewhere, every acknowledged write checked), in sync mode (min_sync_peers 1,
# lease_ttl 2s). Then a summary: writes lost (must be 0), the recovery time part by part, and
# where the data came from. scripts/tests/demo-smoke.sh runs it in CI.
#
#   scripts/demo.sh            (as root; as another user it runs itself again through sudo)
#   scripts/demo.sh --lab      the same failover on the lab instead (scripts/lab/failover-demo.sh):
#                              three hosts in network namespaces of their own, leases in a
#                              3-member etcd, the repository on a replica-3 GlusterFS volume
#
# Environment: DEMO_DIR (work dir, default ./lifeboat-demo, with --lab the lab's dir, default
# ./lab; removed at the start, its logs are kept at the end), DEMO_SKIP_SETUP=1 (do not run
# scripts/setup.sh: no apt, no build).
# Exit 0 when every check passed and no acknowledged write was lost, 1 otherwise, 2 when it
# cannot run.
set -uo pipefail
CALLER_DIR=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
LB_SCRIPT=demo
. scripts/lib/common.sh

say() { echo "demo: $*" >&2; }
cannot() {
    say "error: $*"
    exit 2
}

LAB=0
case "${1:-}" in
    "") ;;
    --lab) LAB=1 ;;
    -h | --help) usage && exit 0 ;;
    *) cannot "unknown argument '$1' (scripts/demo.sh [--lab])" ;;
esac
require_root "the agents mount FUSE file systems and bind loopback addresses" "$@"
if [ "${DEMO_SKIP_SETUP:-0}" != 1 ]; then
    say "running scripts/setup.sh (packages and release build; DEMO_SKIP_SETUP=1 skips it)"
    scripts/setup.sh || cannot "scripts/setup.sh failed"
fi
if [ "$LAB" = 1 ]; then
    LAB_DIR_ARG="${DEMO_DIR:-$ROOT/lab}"
    case "$LAB_DIR_ARG" in /*) ;; *) LAB_DIR_ARG="$CALLER_DIR/$LAB_DIR_ARG" ;; esac
    exec scripts/lab/failover-demo.sh --dir "$LAB_DIR_ARG"
fi
for tool in redis-server redis-cli python3 awk; do
    command -v "$tool" >/dev/null || cannot "$tool is not installed (scripts/setup.sh installs it)"
done
[ -c /dev/fuse ] || cannot "/dev/fuse is missing (FUSE is needed to capture the data dir)"
for b in lifeboat lifeboatd; do
    [ -x ".build/release/$b" ] || cannot ".build/release/$b is missing (run scripts/setup.sh)"
done

HOSTS=(h1 h2 h3)
ADDRS=(127.0.0.21 127.0.0.22 127.0.0.23)
API_PORT=7440
PEER_PORT=7441
REDIS_PORT=6391
ports_free "another demo" "${ADDRS[@]}" -- "$API_PORT" "$PEER_PORT" "$REDIS_PORT" || exit 2

# the old work dir goes, but only if it is one (its marker, or empty) and nothing is mounted in it
WORK="${DEMO_DIR:-$ROOT/lifeboat-demo}"
case "$WORK" in /*) ;; *) WORK="$CALLER_DIR/$WORK" ;; esac
WORK="$(realpath -m "$WORK")"
MARKER=".lifeboat-demo"
[ "$WORK" != / ] && [ "$WORK" != "$ROOT" ] || cannot "DEMO_DIR=$WORK would be removed at the start: choose a dir of its own"
if [ -e "$WORK" ]; then
    [ -e "$WORK/$MARKER" ] || [ -z "$(ls -A "$WORK" 2>/dev/null)" ] ||
        cannot "$WORK exists and is not a demo work dir (no $MARKER): not removing it; set DEMO_DIR"
    unmount_below "$WORK"
    [ -z "$(mounts_under "$WORK")" ] || cannot "cannot unmount $(mounts_under "$WORK" | tr '\n' ' ')"
    rm -rf "$WORK" || cannot "cannot remove the old work dir $WORK"
fi
mkdir -p "$WORK" && touch "$WORK/$MARKER" && chmod 755 "$WORK" || cannot "cannot create $WORK"

# the scenario, with the tests' assertions; the work dir is kept (LB_KEEP=1)
. scripts/tests/lib.sh
LB_DIR=$WORK LB_KEEP=1
lb_setup
cp "$LIFEBOATD_BIN" "$LB_TMP/bin/lifeboatd" && LIFEBOATD_BIN="$LB_TMP/bin/lifeboatd"
FC="$ROOT/scripts/tests/failover_client.py"
VOLUME="$WORK/volume"
AGENT_PIDS=("" "" "")
SERVICE_PIDS=()
MODE=sync CYCLES=1 SWITCHOVER=0
. scripts/lib/failover_scenario.sh
LOGS="logs: $WORK/h{1,2,3}/agent.log, $WORK/h{1,2,3}/redis.log, $WORK/writer.out"
# stop: everything stops (the agents, redis, the writers), mounts go; the work dir stays
stop() {
    fo_teardown
    LB_TMP="" # (so the EXIT trap does not report the kept dir after the last line)
}
give_up() {
    show_logs
    stop
    echo "$LOGS"
    echo "demo: FAILED: $LB_FAIL checks failed (the FAIL lines above)"
    exit 1
}
say "work dir $WORK (volume: $VOLUME; configs and logs: $WORK/h1 h2 h3)"
fo_scenario

# ---------------------------------------------------------------- summary

P=$FO_LOST N=$FO_NEW
ACKED_TOTAL=$(acks_count "$ACKS")
head -n "$FO_KILL_ACKS" "$ACKS" >"$WORK/writer.acks.before-kill"
out_before="$(fc check --host "${ADDRS[$N]}" --port "$REDIS_PORT" --acks "$WORK/writer.acks.before-kill" 2>&1)"
printf '%s\n' "$out_before" >"$WORK/check-before-kill.out"
FOUND_BEFORE=$(sed -n 's/^check: .* ok=\([0-9]*\) .*/\1/p' <<<"$out_before")
LOST_BEFORE=$(sed -n 's/^lost acknowledged writes: \([0-9]*\)$/\1/p' <<<"$out_before")
status_table="$(timeout -k 5 30 "$LIFEBOAT_BIN" status --agent "$(api "$N")" 2>&1)" ||
    say "warning: lifeboat status --agent $(api "$N") exited $?"

# bytes N: N bytes, readable; secs S: S seconds to the millisecond; num: an integer ("?" else)
bytes() { awk -v b="${1:-}" -v n="${1:-}" 'BEGIN { if (b !~ /^[0-9]+$/) { print "?"; exit } if (b < 1024) { printf "%d B", b; exit }
    s = "KiB"; b /= 1024; if (b >= 1024) { b /= 1024; s = "MiB" } if (b >= 1024) { b /= 1024; s = "GiB" } printf "%.1f %s (%d bytes)", b, s, n }'; }
secs() { awk -v v="${1:-}" 'BEGIN { if (v ~ /^[0-9.eE+-]+$/ && v != "-") printf "%.3f s", v; else print "?" }'; }
num() { if is_int "${1:-}"; then echo "$1"; else echo "?"; fi; }
row() { printf '  %-34s %s\n' "$1" "$2"; }

LOST=?
if is_int "$LOST_BEFORE" && is_int "${CHECK_LOST:-}"; then LOST=$((LOST_BEFORE > CHECK_LOST ? LOST_BEFORE : CHECK_LOST)); fi
verdict="$LOST ACKNOWLEDGED WRITES LOST"
[ "$LOST" = 0 ] && verdict="no acknowledged write lost"
[ "${R_delta_peer:--}" = - ] && R_delta_peer="no peer (nothing was missing)"
[ "${R_snapshot:--}" = - ] && R_snapshot="(none)"
echo
echo "=== summary: redis on h1 h2 h3, primary ${HOSTS[$P]} lost, $verdict"
row "acknowledged before the kill" "$FO_KILL_ACKS (by ${HOSTS[$P]}; snapshot ${FO_SNAPSHOT:0:12} taken after ~3 s of them)"
row "found after recovery" "$(num "$FOUND_BEFORE") on ${HOSTS[$N]}"
row "lost" "$(num "$LOST_BEFORE")"
row "acknowledged in all" "$ACKED_TOTAL (+$((ACKED_TOTAL - FO_KILL_ACKS)) by ${HOSTS[$N]} after the failover): found $(num "${CHECK_OK:-}"), lost $(num "${CHECK_LOST:-}")"
row "new primary" "${HOSTS[$N]} (${ADDRS[$N]}), epoch $FO_NEW_EPOCH (was ${HOSTS[$P]}, epoch $FO_LOST_EPOCH); recovery kind ${R_kind:-?}"
row "primary again after the kill" "$(fo_elapsed "$FO_T_KILL" "$FO_T_UP") s (as this script saw it, polling every 0.3 s)"
echo "recovery time by part (${HOSTS[$N]}: /v1/status workloads[0].last_recovery):"
row "detection (after lease expiry)" "$(secs "$R_detection_seconds")"
row "lease taken" "$(secs "$R_lease_seconds")"
row "snapshot load" "$(secs "$R_snapshot_load_seconds")"
row "delta from a peer" "$(secs "$R_delta_seconds")"
row "replay" "$(secs "$R_replay_seconds")"
row "mount" "$(secs "$R_mount_seconds")"
row "service start" "$(secs "$R_service_start_seconds")"
row "total" "$(secs "$R_total_seconds")"
echo "where the data came from:"
row "snapshot from the volume" "$(bytes "$R_snapshot_bytes"), snapshot ${R_snapshot:0:12}"
row "journal records held locally" "$(num "$R_local_records") (streamed to ${HOSTS[$N]} before the kill)"
row "fetched from peers" "$(num "$R_delta_records") records, $(bytes "$R_delta_bytes"), from $R_delta_peer"
row "records replayed" "$(num "$R_replayed_records")"
echo
echo "\$ lifeboat status --agent $(api "$N")"
echo "$status_table"
echo

stop
echo "$LOGS, $WORK/check-*.out (took $(($(date +%s) - T0)) s; checks: $LB_PASS passed, $LB_FAIL failed)"
if [ "$LOST" = 0 ] && [ "$LB_FAIL" = 0 ]; then
    echo "demo: OK: every acknowledged write survived the loss of the primary host"
    exit 0
fi
echo "demo: FAILED: $LOST acknowledged writes lost, $LB_FAIL checks failed (see the FAIL lines above and $WORK/check-*.out)"
exit 1
