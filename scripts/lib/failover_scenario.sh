# shellcheck shell=bash
# scripts/lib/failover_scenario.sh: the redis failover scenario, step by step, with its
# assertions: scripts/tests/failover-redis.sh runs it (and scripts/chaos/redis-failover.sh
# through it, with many cycles), scripts/demo.sh runs it once and prints a summary.
#
#  1. Election: within 30 s exactly one agent reports role primary with its service running,
#     its status names the redis process, redis answers PING on its address, its data dir is
#     mounted; the other two report role peer and have nothing mounted.
#  2. A writer (failover_client.py write) SETs distinct keys one at a time on whichever host
#     is primary and logs every acknowledged one (key + sha256 of the value). A snapshot is
#     taken through the primary's API (POST /v1/workloads/redis/snapshot) while it writes.
#  3. Host loss, CYCLES times: the primary's agent and its redis are frozen and SIGKILLed
#     together, its mount is removed, its backing and journal dirs are deleted (the disk is
#     gone). Within 30 s another host is primary with a higher epoch and redis running, its
#     last_recovery (of that epoch) shows a non-empty journal delta after the snapshot, and
#     the writer carries on there. The lost host's agent, restarted on the empty disk, rejoins
#     as a peer within 30 s and the primary sees it connected.
#  4. The writer stops; every acknowledged write is on the primary (MODE=sync: none lost;
#     MODE=async: redis answers and at least 90% are there, the loss is reported).
#  5. Switchover (SWITCHOVER=1): `lifeboat status` shows the cluster, then `lifeboat failover
#     redis --to PEER` while a second writer runs: the target is the only primary within 30 s
#     with a higher epoch and redis running; the old primary's redis stops, its data dir is
#     unmounted and it is a peer again; none of the second writer's acknowledged writes is
#     lost (in MODE=sync none of either writer's).
# Timing is reported, never asserted, except as the generous "within 30 s" waits.
#
# Source it after scripts/tests/lib.sh, lb_setup and the variables scripts/lib/cluster.sh
# names (HOSTS ADDRS API_PORT PEER_PORT REDIS_PORT VOLUME FC AGENT_PIDS SERVICE_PIDS MODE),
# then call fo_scenario (or the steps one by one). It sets `trap fo_cleanup EXIT`. A step that
# cannot go on calls give_up (show the logs, lb_finish): a script may define its own after
# sourcing this file. What the steps saw, for a summary:
#   FO_SNAPSHOT FO_SNAPSHOT_AT  the snapshot id and position of step 2
#   FO_LOST FO_LOST_EPOCH   the host lost last (index) and its epoch
#   FO_NEW FO_NEW_EPOCH     the host that took over (index) and its epoch
#   FO_KILL_ACKS            acknowledged writes when the host was killed
#   FO_T_KILL FO_T_UP       when it was killed and when the new primary was seen (date +%s.%N)
#   R_<field>               the new primary's last_recovery fields (FO_RECOVERY_FIELDS)
#   RECOVERIES              one summary per host loss
#   ACKS ACKS2              the writers' logs; CHECK_LOST CHECK_ACKED CHECK_OK of step 4

. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
trap fo_cleanup EXIT

FO_RECOVERY_FIELDS=(epoch kind snapshot detection_seconds lease_seconds snapshot_load_seconds delta_seconds
    replay_seconds mount_seconds service_start_seconds total_seconds snapshot_bytes local_records delta_records
    delta_bytes delta_peer replayed_records warm_from)
RECOVERIES=()

# fo_setup: checks the addresses are free, starts the cluster
fo_setup() {
    cluster_ports_free setup 0 || lb_finish
    cluster_launch
}

# fo_election: step 1; sets P
fo_election() {
    local i
    assert_primary "1: election" 30 0 -1 "exactly one agent with role primary and service running within 30 s" || give_up
    P=$PRIMARY
    lb_info "1: ${HOSTS[$P]} is primary (epoch $PRIMARY_EPOCH, redis pid $PRIMARY_PID) $(($(date +%s) - T0)) s after the start"
    assert_true "1: the primary's service.pid is the redis-server of ${HOSTS[$P]}" \
        "pid $PRIMARY_PID running $(hdir "$P")/redis.conf" is_service_of "$P" "$PRIMARY_PID"
    assert_true "1: redis answers PING on ${ADDRS[$P]}:$REDIS_PORT" "PONG within 30 s" wait_until 30 redis_pong "$P"
    assert_true "1: the primary's data dir is mounted" "a mount on $(hdir "$P")/data" is_mounted "$(hdir "$P")/data"
    for i in 0 1 2; do
        [ "$i" = "$P" ] && continue
        assert_peer "1: ${HOSTS[$i]} is a peer" "$i"
        assert_true "1: ${HOSTS[$i]} (a peer) has nothing mounted on its data dir" "no mount on $(hdir "$i")/data" \
            not_mounted "$(hdir "$i")/data"
    done
}

# fo_writer_snapshot: step 2; sets WRITER ACKS FO_SNAPSHOT FO_SNAPSHOT_AT
fo_writer_snapshot() {
    local out rc
    writer_start writer key
    WRITER=$WRITER_PID
    ACKS="$LB_TMP/writer.acks"
    sleep 3
    if wait_until 30 acks_above "$ACKS" 0; then
        pass
    else
        fail "2: the writer gets writes acknowledged" "acknowledged writes within 30 s" "none; $(tail -n 3 "$LB_TMP/writer.out")"
        give_up
    fi
    out="$(fc post "$(api "$P")/v1/workloads/redis/snapshot" snapshot position)"
    rc=$?
    assert_exit "2: POST /v1/workloads/redis/snapshot on the primary (${HOSTS[$P]}) answers 2xx" 0 "$rc"
    assert_match "2: the snapshot answer is 200 with a snapshot id" '^200 [^- ]' "$out"
    read -r _ FO_SNAPSHOT FO_SNAPSHOT_AT <<<"$out"
    lb_info "2: snapshot $out after $(acks_count "$ACKS") acknowledged writes"
    sleep 3
}

# fo_host_loss CYCLE: step 3, one host loss and the recovery; sets FO_* and R_*
fo_standby_warm() { [ "$(st_field "$1" standby.state)" = warm ]; }
fo_host_loss() {
    local c="3.$1" AP EP D N pid at_new f i
    assert_primary "$c: a primary before the kill" 30 0 -1 || give_up
    P=$PRIMARY
    EP=$PRIMARY_EPOCH
    AP=${AGENT_PIDS[$P]}
    if [ "${CL_STANDBY:-cold}" = warm ]; then
        for i in 0 1 2; do
            [ "$i" = "$P" ] && continue
            assert_true "$c: ${HOSTS[$i]} holds a warm copy (standby.state)" "warm within 20 s" wait_until 20 fo_standby_warm "$i"
        done
    fi
    lb_info "$c: killing ${HOSTS[$P]} (agent pid $AP, redis pid $PRIMARY_PID, epoch $EP) after $(acks_count "$ACKS") acknowledged writes"

    host_kill "$P"
    FO_T_KILL=$(date +%s.%N)
    FO_KILL_ACKS=$(acks_count "$ACKS")
    FO_LOST=$P FO_LOST_EPOCH=$EP
    lb_wait_pid "$AP" 10
    assert_exit "$c: the agent of ${HOSTS[$P]} ends on SIGKILL" 137 "$LB_WAIT_RC"
    lb_untrack "$AP"
    AGENT_PIDS[P]=""
    echo "=== $(date '+%F %T') SIGKILLed (host lost)" >>"$(hdir "$P")/agent.log"
    assert_true "$c: the redis of ${HOSTS[$P]} was found and killed" "at least one redis pid of ${HOSTS[$P]}" \
        is_positive "${#KILLED_SERVICES[@]}"
    for pid in "${KILLED_SERVICES[@]+"${KILLED_SERVICES[@]}"}"; do
        assert_true "$c: redis pid $pid of ${HOSTS[$P]} is gone" "gone within 10 s" wait_until 10 pid_gone "$pid"
        untrack_service "$pid"
    done

    # the disk is gone: the mount (auto_unmount may already have removed it), backing, journal
    D="$(hdir "$P")/data"
    wait_until 5 not_mounted "$D" || unmount_lazy "$D"
    assert_true "$c: ${HOSTS[$P]}'s data dir is unmounted" "no mount on $D" wait_until 5 not_mounted "$D"
    rm -rf "$(hdir "$P")/backing" "$(hdir "$P")/journal"
    mkdir -p "$(hdir "$P")/backing"
    chmod 755 "$(hdir "$P")/backing"
    lb_info "$c: ${HOSTS[$P]}'s disk is gone: data dir unmounted, backing and journal dirs deleted"

    assert_primary "$c: failover" 30 $((EP + 1)) "$P" "another host primary with epoch > $EP and service running within 30 s" ||
        give_up
    FO_T_UP=$(date +%s.%N)
    N=$PRIMARY
    FO_NEW=$N FO_NEW_EPOCH=$PRIMARY_EPOCH
    lb_info "$c: ${HOSTS[$N]} is primary (epoch $PRIMARY_EPOCH, redis pid $PRIMARY_PID) $(fo_elapsed "$FO_T_KILL" "$FO_T_UP") s after the kill"
    assert_true "$c: the new primary's service.pid is the redis-server of ${HOSTS[$N]}" \
        "pid $PRIMARY_PID running $(hdir "$N")/redis.conf" is_service_of "$N" "$PRIMARY_PID"
    assert_true "$c: redis answers PING on ${ADDRS[$N]}:$REDIS_PORT" "PONG within 30 s" wait_until 30 redis_pong "$N"
    assert_true "$c: the writer is still running" "writer pid $WRITER running" lb_is_running "$WRITER"
    at_new=$(acks_count "$ACKS")
    if wait_until 30 acks_above "$ACKS" $((at_new + 100)); then
        pass
    else
        fail "$c: the writer carries on at ${HOSTS[$N]}" "100 more acknowledged writes within 30 s" \
            "$(($(acks_count "$ACKS") - at_new)); $(tail -n 3 "$LB_TMP/writer.out")"
    fi

    for f in "${FO_RECOVERY_FIELDS[@]}"; do printf -v "R_$f" '%s' ""; done
    read -r "${FO_RECOVERY_FIELDS[@]/#/R_}" < <(st_field "$N" "${FO_RECOVERY_FIELDS[@]/#/last_recovery.}")
    assert_eq "$c: lastRecovery of ${HOSTS[$N]} is the recovery into epoch $PRIMARY_EPOCH" "$PRIMARY_EPOCH" "${R_epoch:-}"
    # the delta after the snapshot is the new primary's own streamed journal (local records)
    # plus what it fetched from a more advanced peer (delta records): together not empty
    is_int "${R_local_records:-}" || R_local_records=0
    is_int "${R_delta_records:-}" || R_delta_records=0
    if [ "${CL_STANDBY:-cold}" = warm ]; then
        # the new primary was a peer with a warm copy since the snapshot: nothing is restored,
        # and the copy already holds the records after the snapshot
        assert_match "$c: ${HOSTS[$N]} recovered from its warm copy (last_recovery.warm_from)" '^[0-9]+:[0-9]+$' "${R_warm_from:-}"
        assert_eq "$c: nothing was restored from the volume (snapshot_bytes)" 0 "${R_snapshot_bytes:-}"
        assert_true "$c: the warm copy (at ${R_warm_from:-}) holds records after the snapshot (at $FO_SNAPSHOT_AT)" \
            "a seq past ${FO_SNAPSHOT_AT#*:}" [ "${R_warm_from#*:}" -gt "${FO_SNAPSHOT_AT#*:}" ] 2>/dev/null
    else
        assert_true "$c: the recovery replayed a journal delta after the snapshot (local $R_local_records + fetched $R_delta_records records)" \
            "a positive number" is_positive "$((R_local_records + R_delta_records))"
    fi
    lb_info "$c: recovery of ${HOSTS[$N]}: ${R_warm_from:+warm copy at $R_warm_from, }delta $R_local_records records held locally + $R_delta_records records / $R_delta_bytes bytes fetched from ${R_delta_peer:-no peer}, snapshot $R_snapshot_bytes bytes; seconds: total $R_total_seconds, detection $R_detection_seconds, lease $R_lease_seconds, snapshot load $R_snapshot_load_seconds, delta $R_delta_seconds, replay $R_replay_seconds, service start $R_service_start_seconds"
    RECOVERIES+=("cycle $1 ${HOSTS[$P]}->${HOSTS[$N]} epoch $PRIMARY_EPOCH: total=${R_total_seconds}s snapshotLoad=${R_snapshot_load_seconds}s delta=${R_delta_seconds}s deltaBytes=$R_delta_bytes snapshotBytes=$R_snapshot_bytes")

    # the lost host comes back on its empty disk, with the same config
    agent_start "$P"
    assert_peer "$c: ${HOSTS[$P]} rejoins as a peer" "$P"
    assert_true "$c: the primary ${HOSTS[$N]} sees ${HOSTS[$P]} connected" \
        "peers[${HOSTS[$P]}].connected true within 30 s" wait_until 30 peer_connected "$N" "$P"
    lb_info "$c: $(st_line "$N")"
    sleep 2
}

# fo_check_all: step 4
fo_check_all() {
    writer_stop "4" writer "$WRITER"
    assert_primary "4: a primary for the check" 30 0 -1 || give_up
    assert_true "4: redis answers PING on the primary ${HOSTS[$PRIMARY]}" "PONG within 30 s" wait_until 30 redis_pong "$PRIMARY"
    if [ "$MODE" = sync ]; then
        check_acks "4" "$PRIMARY" none-lost "$ACKS"
    else
        check_acks "4" "$PRIMARY" most "$ACKS"
    fi
}

# fo_switchover: step 5
fo_switchover() {
    local S=$PRIMARY SEP=$PRIMARY_EPOCH SPID=$PRIMARY_PID T="" i out rc W2 at_new
    for i in 0 1 2; do
        if [ "$i" != "$S" ] && has_role "$i" peer && peer_connected "$S" "$i"; then
            T=$i
            break
        fi
    done
    if [ -z "$T" ]; then
        fail "5: a connected peer to switch over to" "a host with role peer that ${HOSTS[$S]} sees connected" "$(st_line "$S")"
        return 0
    fi
    writer_start switchover sw
    W2=$WRITER_PID
    ACKS2="$LB_TMP/switchover.acks"
    assert_true "5: the second writer gets writes acknowledged" "50 acknowledged writes within 30 s" \
        wait_until 30 acks_above "$ACKS2" 50
    # the operator's way: lifeboat status shows the cluster, lifeboat failover moves the primary
    out="$(timeout 60 "$LIFEBOAT_BIN" status --agent "$(api "$S")" 2>&1)"
    rc=$?
    assert_exit "5: lifeboat status --agent ${HOSTS[$S]} exits 0" 0 "$rc"
    assert_match "5: lifeboat status shows ${HOSTS[$S]} as the primary" "^${HOSTS[$S]} +redis +primary " "$out"
    out="$(timeout 60 "$LIFEBOAT_BIN" status --agent "$(api "$S")" --json 2>&1)"
    assert_true "5: lifeboat status --json lists the three hosts" "3 hosts in valid JSON" \
        python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if len(d["hosts"]) == 3 else 1)' "$out"
    out="$(timeout 120 "$LIFEBOAT_BIN" failover redis --to "${HOSTS[$T]}" --agent "$(api "$S")" 2>&1)"
    rc=$?
    assert_exit "5: lifeboat failover redis --to ${HOSTS[$T]} --agent ${HOSTS[$S]} exits 0" 0 "$rc"
    lb_info "5: switchover ${HOSTS[$S]} -> ${HOSTS[$T]}: $out"
    if wait_primary 30 $((SEP + 1)) "$S"; then
        assert_eq "5: the switchover target is the primary" "${HOSTS[$T]}" "${HOSTS[$PRIMARY]}"
        lb_info "5: ${HOSTS[$PRIMARY]} is primary (epoch $PRIMARY_EPOCH, redis pid $PRIMARY_PID)"
        assert_true "5: the new primary's service.pid is the redis-server of ${HOSTS[$PRIMARY]}" \
            "pid $PRIMARY_PID running $(hdir "$PRIMARY")/redis.conf" is_service_of "$PRIMARY" "$PRIMARY_PID"
        assert_true "5: redis answers PING on ${ADDRS[$PRIMARY]}:$REDIS_PORT" "PONG within 30 s" \
            wait_until 30 redis_pong "$PRIMARY"
        if is_int "$SPID"; then
            assert_true "5: the old primary's redis (pid $SPID) has stopped" "gone within 30 s" \
                wait_until 30 pid_gone "$SPID"
            pid_gone "$SPID" && untrack_service "$SPID"
        fi
        assert_peer "5: the old primary ${HOSTS[$S]} is a peer again" "$S"
        if [ "${CL_STANDBY:-cold}" = warm ]; then
            assert_true "5: the old primary ${HOSTS[$S]} warms its copy again as a peer (standby.state)" \
                "warm within 30 s" wait_until 30 fo_standby_warm "$S"
        fi
        assert_true "5: the old primary's data dir is unmounted" "no mount on $(hdir "$S")/data within 30 s" \
            wait_until 30 not_mounted "$(hdir "$S")/data"
        at_new=$(acks_count "$ACKS2")
        assert_true "5: the second writer carries on at ${HOSTS[$PRIMARY]}" "50 more acknowledged writes within 30 s" \
            wait_until 30 acks_above "$ACKS2" $((at_new + 50))
    else
        fail "5: switchover" "${HOSTS[$T]} the only primary, epoch > $SEP, service running, within 30 s" "$WAIT_SEEN"
    fi
    writer_stop "5" switchover "$W2"
    if wait_primary 30 0 -1; then
        check_acks "5: writes across the switchover" "$PRIMARY" none-lost "$ACKS2"
        if [ "$MODE" = sync ]; then
            check_acks "5: all writes after the switchover" "$PRIMARY" none-lost "$ACKS" "$ACKS2"
        fi
    else
        fail "5: a primary for the check" "exactly one primary with service running within 30 s" "$WAIT_SEEN"
    fi
}

# fo_elapsed T0 T1: seconds between two `date +%s.%N` times, to a tenth
fo_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# fo_scenario: the steps 1-5 (CYCLES host losses; step 5 when SWITCHOVER=1)
fo_scenario() {
    local cycle
    T0=$(date +%s)
    fo_setup
    fo_election
    fo_writer_snapshot
    for ((cycle = 1; cycle <= CYCLES; cycle++)); do fo_host_loss "$cycle"; done
    fo_check_all
    if [ "$SWITCHOVER" = 1 ]; then fo_switchover; fi
    if [ "${#RECOVERIES[@]}" -gt 0 ]; then
        lb_info "recoveries (MODE=$MODE): $(printf '%s; ' "${RECOVERIES[@]}")"
    fi
    lb_info "took $(($(date +%s) - T0)) s"
}
