#!/usr/bin/env bash
# failover-redis.sh: failover of a redis workload between three lifeboatd agents on one
# machine: h1, h2, h3 on 127.0.0.11, .12, .13 (API on :7440, journal stream on :7441, redis
# on :6390), sharing one "volume" dir (the repository and the coordinator's lease dir). The
# agent of the primary mounts the captured data dir and runs redis (appendonly, appendfsync
# always) in it; the script never starts redis itself.
#
#  1. Election: within 30 s exactly one agent reports role primary with its service running,
#     its status names the redis process, redis answers PING on its address, its data dir is
#     mounted; the other two report role peer and have nothing mounted.
#  2. A writer (failover_client.py write) SETs distinct keys one at a time on whichever host
#     is primary and logs every acknowledged one (key + sha256 of the value). A snapshot is
#     taken through the primary's API while it writes.
#  3. Host loss, CYCLES times: the primary's agent and its redis are frozen and SIGKILLed
#     together, its mount is removed, its backing and journal dirs are deleted (the disk is
#     gone). Within 30 s another host is primary with a higher epoch and redis running, its
#     lastRecovery (of that epoch) names the peer the journal delta came from and a non-empty
#     delta, and the writer carries on there. The lost host's agent, restarted on the empty
#     disk, rejoins as a peer within 30 s and the primary sees it connected.
#  4. The writer stops; every acknowledged write is on the primary (MODE=sync: none lost;
#     MODE=async: redis answers and at least 90% are there, the loss is reported).
#  5. Switchover (SWITCHOVER=1): `lifeboat status` shows the cluster, then `lifeboat failover
#     redis --to PEER` (POST /v1/workloads/redis/failover on the primary) while a
#     second writer runs: the target is the only primary within 30 s with a higher epoch and
#     redis running; the old primary's redis stops, its data dir is unmounted and it is a peer
#     again; none of the second writer's acknowledged writes is lost (in MODE=sync none of
#     either writer's).
#  6. One summary line with each recovery's timings and sizes. Timing is reported, never
#     asserted, except as the generous "within 30 s" waits.
#
# Environment: MODE=sync|async (replication, default sync), CYCLES (host losses, default 2),
# SWITCHOVER=0 leaves step 5 out, LB_KEEP=1 keeps the temp dir (<tmp>/hN/agent.log,
# <tmp>/hN/redis.log, <tmp>/writer*.out, <tmp>/acks*). Skipped without redis-server,
# redis-cli or /dev/fuse. The addresses and ports are fixed: one already in use fails setup.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE="${MODE:-sync}"
CYCLES="${CYCLES:-2}"
SWITCHOVER="${SWITCHOVER:-1}"
case "$MODE" in sync | async) ;; *)
    fail "setup" "MODE sync or async" "MODE=$MODE"
    lb_finish
    ;;
esac
if ! [[ "$CYCLES" =~ ^[0-9]+$ ]]; then
    fail "setup" "CYCLES a number" "CYCLES=$CYCLES"
    lb_finish
fi

# without redis or FUSE the test cannot run at all: skipped, not failed
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    lb_skip "$LB_NAME: redis-server and redis-cli are not installed (scripts/setup.sh)"
    lb_finish
fi
if [ ! -c /dev/fuse ]; then
    lb_skip "$LB_NAME: /dev/fuse is missing"
    lb_finish
fi

lb_setup
if [ ! -x "$LIFEBOATD_BIN" ]; then
    fail "setup" "lifeboatd at $LIFEBOATD_BIN" "no such executable (build it, or set LIFEBOATD_BIN)"
    lb_finish
fi
# a private copy, so a rebuild during the test cannot swap the agent between its runs
cp "$LIFEBOATD_BIN" "$LB_TMP/bin/lifeboatd" && LIFEBOATD_BIN="$LB_TMP/bin/lifeboatd"
T0=$(date +%s)

FC="$LB_TESTS_DIR/failover_client.py"
HOSTS=(h1 h2 h3)
ADDRS=(127.0.0.11 127.0.0.12 127.0.0.13)
API_PORT=7440
PEER_PORT=7441
REDIS_PORT=6390
VOLUME="$LB_TMP/volume"
AGENT_PIDS=("" "" "") # the running agent of each host ("" while it is down)
SERVICE_PIDS=()       # redis pids the status API named
RECOVERIES=()         # one summary per host loss

. "$LB_TESTS_DIR/failover_lib.sh"
trap fo_cleanup EXIT

# ---------------------------------------------------------------- setup

for i in 0 1 2; do
    for port in "$API_PORT" "$PEER_PORT" "$REDIS_PORT"; do
        if port_busy "${ADDRS[$i]}" "$port"; then
            fail "setup" "${ADDRS[$i]}:$port free" "something already listens there (another run?)"
            lb_finish
        fi
    done
done
mkdir -p "$VOLUME"
for i in 0 1 2; do
    write_config "$i"
    LB_MOUNTS+=("$(hdir "$i")/data")
done
for i in 0 1 2; do agent_start "$i"; done

# ---------------------------------------------------------------- 1. election

if wait_primary 30 0 -1; then
    pass
else
    fail "1: election" "exactly one agent with role primary and service running within 30 s" "$WAIT_SEEN"
    give_up
fi
P=$PRIMARY
lb_info "1: ${HOSTS[$P]} is primary (epoch $PRIMARY_EPOCH, redis pid $PRIMARY_PID) $(($(date +%s) - T0)) s after the start"
assert_true "1: the primary's service.pid is the redis-server of ${HOSTS[$P]}" \
    "pid $PRIMARY_PID running $(hdir "$P")/redis.conf" is_service_of "$P" "$PRIMARY_PID"
assert_true "1: redis answers PING on ${ADDRS[$P]}:$REDIS_PORT" "PONG within 30 s" wait_until 30 redis_pong "$P"
assert_true "1: the primary's data dir is mounted" "a mount on $(hdir "$P")/data" is_mounted "$(hdir "$P")/data"
for i in 0 1 2; do
    [ "$i" = "$P" ] && continue
    if wait_until 30 has_role "$i" peer; then
        pass
    else
        fail "1: ${HOSTS[$i]} is a peer" "role peer within 30 s" "role $ST_ROLE: $(st_line "$i")"
    fi
    assert_true "1: ${HOSTS[$i]} (a peer) has nothing mounted on its data dir" "no mount on $(hdir "$i")/data" \
        not_mounted "$(hdir "$i")/data"
done

# ---------------------------------------------------------------- 2. writer and snapshot

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
lb_info "2: snapshot $out after $(acks_count "$ACKS") acknowledged writes"
sleep 3

# ---------------------------------------------------------------- 3. host losses

for ((cycle = 1; cycle <= CYCLES; cycle++)); do
    c="3.$cycle"
    if wait_primary 30 0 -1; then
        pass
    else
        fail "$c: a primary before the kill" "exactly one primary with service running within 30 s" "$WAIT_SEEN"
        give_up
    fi
    P=$PRIMARY
    EP=$PRIMARY_EPOCH
    AP=${AGENT_PIDS[$P]}
    lb_info "$c: killing ${HOSTS[$P]} (agent pid $AP, redis pid $PRIMARY_PID, epoch $EP) after $(acks_count "$ACKS") acknowledged writes"

    host_kill "$P"
    lb_wait_pid "$AP" 10
    assert_exit "$c: the agent of ${HOSTS[$P]} ends on SIGKILL" 137 "$LB_WAIT_RC"
    lb_untrack "$AP"
    AGENT_PIDS[$P]=""
    assert_true "$c: the redis of ${HOSTS[$P]} was found and killed" "at least one redis pid of ${HOSTS[$P]}" \
        is_positive "${#KILLED_SERVICES[@]}"
    for pid in "${KILLED_SERVICES[@]+"${KILLED_SERVICES[@]}"}"; do
        assert_true "$c: redis pid $pid of ${HOSTS[$P]} is gone" "gone within 10 s" wait_until 10 pid_gone "$pid"
        untrack_service "$pid"
    done

    # the disk is gone: the mount (auto_unmount may already have removed it), backing, journal
    D="$(hdir "$P")/data"
    if ! wait_until 5 not_mounted "$D"; then
        umount -l "$D" 2>/dev/null || fusermount3 -u -z "$D" 2>/dev/null
    fi
    assert_true "$c: ${HOSTS[$P]}'s data dir is unmounted" "no mount on $D" wait_until 5 not_mounted "$D"
    rm -rf "$(hdir "$P")/backing" "$(hdir "$P")/journal"
    mkdir -p "$(hdir "$P")/backing"
    chmod 755 "$(hdir "$P")/backing"

    t_kill=$(date +%s)
    if wait_primary 30 $((EP + 1)) "$P"; then
        pass
    else
        fail "$c: failover" "another host primary with epoch > $EP and service running within 30 s" "$WAIT_SEEN"
        give_up
    fi
    N=$PRIMARY
    lb_info "$c: ${HOSTS[$N]} is primary (epoch $PRIMARY_EPOCH, redis pid $PRIMARY_PID) $(($(date +%s) - t_kill)) s after the kill"
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

    read -r r_epoch r_peer r_dbytes r_sbytes r_total r_detect r_lease r_snapload r_delta r_replay r_start r_local r_drec < <(
        st_field "$N" last_recovery.epoch last_recovery.delta_peer last_recovery.delta_bytes last_recovery.snapshot_bytes \
            last_recovery.total_seconds last_recovery.detection_seconds last_recovery.lease_seconds \
            last_recovery.snapshot_load_seconds last_recovery.delta_seconds last_recovery.replay_seconds \
            last_recovery.service_start_seconds last_recovery.local_records last_recovery.delta_records
    )
    assert_eq "$c: lastRecovery of ${HOSTS[$N]} is the recovery into epoch $PRIMARY_EPOCH" "$PRIMARY_EPOCH" "${r_epoch:-}"
    # the delta after the snapshot is the new primary's own streamed journal (local records)
    # plus what it fetched from a more advanced peer (delta records): together not empty
    [[ "${r_local:-}" =~ ^[0-9]+$ ]] || r_local=0
    [[ "${r_drec:-}" =~ ^[0-9]+$ ]] || r_drec=0
    assert_true "$c: the recovery replayed a journal delta after the snapshot (local $r_local + fetched $r_drec records)" \
        "a positive number" is_positive "$((r_local + r_drec))"
    lb_info "$c: recovery of ${HOSTS[$N]}: delta $r_local records held locally + $r_drec records / $r_dbytes bytes fetched from ${r_peer:-no peer}, snapshot $r_sbytes bytes; seconds: total $r_total, detection $r_detect, lease $r_lease, snapshot load $r_snapload, delta $r_delta, replay $r_replay, service start $r_start"
    RECOVERIES+=("cycle $cycle ${HOSTS[$P]}->${HOSTS[$N]} epoch $PRIMARY_EPOCH: total=${r_total}s snapshotLoad=${r_snapload}s delta=${r_delta}s deltaBytes=$r_dbytes snapshotBytes=$r_sbytes")

    # the lost host comes back on its empty disk, with the same config
    agent_start "$P"
    if wait_until 30 has_role "$P" peer; then
        pass
    else
        fail "$c: ${HOSTS[$P]} rejoins as a peer" "role peer within 30 s" "role $ST_ROLE: $(st_line "$P")"
    fi
    assert_true "$c: the primary ${HOSTS[$N]} sees ${HOSTS[$P]} connected" \
        "peers[${HOSTS[$P]}].connected true within 30 s" wait_until 30 peer_connected "$N" "$P"
    lb_info "$c: $(st_line "$N")"
    sleep 2
done

# ---------------------------------------------------------------- 4. every acknowledged write is there

writer_stop "4" writer "$WRITER"
if wait_primary 30 0 -1; then
    pass
else
    fail "4: a primary for the check" "exactly one primary with service running within 30 s" "$WAIT_SEEN"
    give_up
fi
assert_true "4: redis answers PING on the primary ${HOSTS[$PRIMARY]}" "PONG within 30 s" wait_until 30 redis_pong "$PRIMARY"
if [ "$MODE" = sync ]; then
    check_acks "4" "$PRIMARY" none-lost "$ACKS"
else
    check_acks "4" "$PRIMARY" most "$ACKS"
fi

# ---------------------------------------------------------------- 5. switchover

if [ "$SWITCHOVER" = 1 ]; then
    S=$PRIMARY
    SEP=$PRIMARY_EPOCH
    SPID=$PRIMARY_PID
    T=""
    for i in 0 1 2; do
        if [ "$i" != "$S" ] && has_role "$i" peer && peer_connected "$S" "$i"; then
            T=$i
            break
        fi
    done
    if [ -z "$T" ]; then
        fail "5: a connected peer to switch over to" "a host with role peer that ${HOSTS[$S]} sees connected" "$(st_line "$S")"
    else
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
            if wait_until 30 has_role "$S" peer; then
                pass
            else
                fail "5: the old primary ${HOSTS[$S]} is a peer again" "role peer within 30 s" "role $ST_ROLE: $(st_line "$S")"
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
    fi
fi

# ---------------------------------------------------------------- 6. summary

if [ "${#RECOVERIES[@]}" -gt 0 ]; then
    lb_info "recoveries (MODE=$MODE): $(printf '%s; ' "${RECOVERIES[@]}")"
fi
lb_info "took $(($(date +%s) - T0)) s"
[ "$LB_FAIL" -eq 0 ] || show_logs
lb_finish
