#!/usr/bin/env bash
# failover-policies.sh: the replication policies of a redis workload between three lifeboatd
# agents on one machine (h1, h2, h3 on 127.0.0.41, .42, .43: API :7440, journal stream :7441,
# redis :6392), each case on a fresh cluster (lease_ttl 2s, sync_timeout 2s, min_sync_peers 1)
# with redis (appendonly, appendfsync always) run by the primary's agent, and a writer
# (failover_client.py write --detail) that logs every acknowledged write with the host that
# acknowledged it, the epoch the status API named, and when.
#
#  1. async, peers killed: replication async. While the peers are up, the primary's /metrics
#     has redis' fsyncs in lifeboat_data_fsync_seconds and the peers' acknowledgements in
#     lifeboat_replication_ack_seconds. Both peers' agents are SIGKILLed. The primary
#     stays primary and acknowledges at least 100 more writes within 20 s. None is lost.
#  2. sync + fail, peers killed: replication sync, on_sync_timeout fail; both peers' agents are
#     SIGKILLed. Within 15 s no new write is acknowledged (an fsync fails with EIO after the
#     sync timeout; redis exits on it and the agent restarts it) and the primary's /metrics
#     has lifeboat_sync_timeouts_total > 0. No write is acknowledged while no peer is up (from
#     1 s after the kill, for in-flight replies, to the restart). One peer's agent is started
#     again: within 30 s writes are acknowledged again and it is a peer. None is lost.
#  3. sync + degrade, peers killed: on_sync_timeout degrade; both peers' agents are SIGKILLed.
#     Writes are still acknowledged after the sync timeout (at least 5 acknowledged more than
#     sync_timeout + 1 s after the kill, within 40 s), the primary stays primary and its status
#     has a non-empty alert. None is lost.
#  4. A primary frozen past its lease (sync, on_sync_timeout $C4_ON_SYNC_TIMEOUT, default fail): the primary's agent (not redis) gets SIGSTOP
#     for 3 x lease_ttl (longer if no other host is primary by then: up to 30 s more). Another host
#     is primary with a higher epoch; SIGCONT; within 30 s the old host reports role peer, its
#     data dir is unmounted and its redis has stopped; the writer carries on at the new primary
#     (50 writes acknowledged there within 30 s); no write was acknowledged by the old host
#     after the new epoch started (the new primary's last_recovery.started_at, which precedes
#     its lease); every acknowledged write is on the new primary. Whether a <journal_dir>.
#     diverged-* dir appeared next to the old primary's journal is reported, not asserted.
#
# Environment: CASES="1 2 3 4" (a subset to run), C4_ON_SYNC_TIMEOUT=fail|degrade (case 4's
# policy, default fail), LB_KEEP=1 keeps the temp dir (<tmp>/cN/hM/
# agent.log, redis.log, <tmp>/cN-writer.acks|out). Skipped without redis-server, redis-cli or
# /dev/fuse. The addresses and ports are fixed: one already in use fails setup.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES="${CASES:-1 2 3 4}"
C4_ON_SYNC_TIMEOUT="${C4_ON_SYNC_TIMEOUT:-fail}"
case "$C4_ON_SYNC_TIMEOUT" in fail | degrade) ;; *)
    fail "setup" "C4_ON_SYNC_TIMEOUT fail or degrade" "C4_ON_SYNC_TIMEOUT=$C4_ON_SYNC_TIMEOUT"
    lb_finish
    ;;
esac
for c in $CASES; do
    case "$c" in 1 | 2 | 3 | 4) ;; *)
        fail "setup" "CASES made of 1 2 3 4" "CASES=$CASES"
        lb_finish
        ;;
    esac
done

lb_need_redis_fuse

lb_setup
lb_need_agent copy
T0=$(date +%s)

. "$LB_TESTS_DIR/../lib/cluster.sh"
cluster_hosts 127.0.0.4 7440 7441 6392 ""
LEASE_TTL=2s
LEASE_TTL_S=2
SYNC_TIMEOUT=2s
SYNC_TIMEOUT_S=2
MIN_SYNC_PEERS=1
WRITER_ARGS=(--detail) # ack lines: KEY SHA HOST EPOCH UNIX-TIME

. "$LB_TESTS_DIR/failover_lib.sh"
trap fo_cleanup EXIT

# ---------------------------------------------------------------- helpers

now() { date +%s.%N | cut -c1-17; }
# fgt A B: A > B (decimals)
fgt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
fadd() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a + b }'; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }

# acks_where LOG AWK-CONDITION: acknowledged writes (lines of LOG) matching the condition on
# $3 (host), $4 (epoch), $5 (unix time)
acks_where() {
    if [ -f "$1" ]; then awk "NF >= 5 && ($2)" "$1" | wc -l | tr -d ' '; else echo 0; fi
}
acks_after() { acks_where "$1" "\$5 > $2"; }
acks_after_above() { [ "$(acks_after "$1" "$2")" -gt "$3" ]; }
acks_by() { acks_where "$1" "\$3 == \"$2\""; }
acks_by_above() { [ "$(acks_by "$1" "$2")" -gt "$3" ]; }
# last_ack_time LOG: unix time of the last acknowledged write (0 for none)
last_ack_time() { if [ -s "$1" ]; then tail -n 1 "$1" | awk '{ print ($5 == "" ? 0 : $5) }'; else echo 0; fi; }
# acks_quiet LOG SECONDS: no write acknowledged in the last SECONDS
acks_quiet() { fgt "$(fsub "$(now)" "$(last_ack_time "$1")")" "$2"; }

# metric I NAME: the sum of NAME's samples on host I's /metrics ("" when it does not answer)
metric() {
    curl -s -m 5 "$(api "$1")/metrics" 2>/dev/null |
        awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF; f = 1 } END { if (f) printf "%g", s }'
}
metric_positive() { fgt "$(metric "$1" "$2")" 0 2>/dev/null; }

# has_alert I: host I's workload status has a non-empty alert
has_alert() {
    ST_ALERT="$(st_field "$1" alert)"
    [ -n "$ST_ALERT" ] && [ "$ST_ALERT" != - ]
}

# assert_none NAME COUNT DETAIL: COUNT must be 0 (DETAIL shows what was seen otherwise)
assert_none() {
    if [ "$2" = 0 ]; then pass; else fail "$1" "none" "$2: $3"; fi
}

# agent_kill I: SIGKILL to host I's agent (no service runs on a peer), waited for
agent_kill() {
    local ap=${AGENT_PIDS[$1]}
    [ -n "$ap" ] || return 0
    kill -KILL "$ap" 2>/dev/null
    lb_wait_pid "$ap" 10 2>/dev/null
    assert_exit "$CASE: the agent of ${HOSTS[$1]} ends on SIGKILL" 137 "$LB_WAIT_RC"
    lb_untrack "$ap"
    AGENT_PIDS[$1]=""
}

# cluster_up N REPLICATION ON_SYNC_TIMEOUT: a fresh cluster in $LB_TMP/cN: three agents, one
# primary with redis running, two peers the primary sees connected. Sets P (the primary's
# index). Returns 1 (after a failed assertion) when it does not come up.
cluster_up() {
    local n=$1 i
    CASE="$n"
    MODE=$2
    ON_SYNC_TIMEOUT=$3
    FO_DIR="$LB_TMP/c$n"
    VOLUME="$FO_DIR/volume"
    SERVICE_PIDS=()
    cluster_ports_free "$n: setup" 15 || return 1
    cluster_launch
    assert_primary "$n: election" 30 0 -1 "exactly one agent with role primary and service running within 30 s" || return 1
    P=$PRIMARY
    assert_true "$n: redis answers PING on the primary ${HOSTS[$P]}" "PONG within 30 s" wait_until 30 redis_pong "$P"
    for i in 0 1 2; do
        [ "$i" = "$P" ] && continue
        if wait_until 30 has_role "$i" peer && wait_until 30 peer_connected "$P" "$i"; then
            pass
        else
            fail "$n: ${HOSTS[$i]} is a peer the primary sees connected" "within 30 s" \
                "${HOSTS[$i]}: $(st_line "$i"); ${HOSTS[$P]}: $(st_line "$P")"
            return 1
        fi
    done
    lb_info "$n: replication $MODE, on_sync_timeout $ON_SYNC_TIMEOUT: ${HOSTS[$P]} is primary (epoch $PRIMARY_EPOCH, redis pid $PRIMARY_PID)"
    return 0
}

# writer_up N: starts the case's writer (cN-writer) and waits for 50 acknowledged writes.
# Sets W (its pid) and ACKS. Returns 1 when nothing is acknowledged.
writer_up() {
    writer_start "c$1-writer" "c$1"
    W=$WRITER_PID
    ACKS="$LB_TMP/c$1-writer.acks"
    if wait_until 30 acks_above "$ACKS" 50; then
        pass
    else
        fail "$1: the writer gets writes acknowledged" "50 acknowledged writes within 30 s" \
            "$(acks_count "$ACKS"); $(tail -n 3 "$LB_TMP/c$1-writer.out")"
        return 1
    fi
}

# cluster_down: everything of the case stops (agents, redis, writer), mounts go
cluster_down() {
    [ "$LB_FAIL" -gt "${FAILS_BEFORE:-0}" ] && show_logs
    fo_teardown
}

# peers_of P: the two other indexes
peers_of() {
    local i
    for i in 0 1 2; do [ "$i" = "$1" ] || printf '%s ' "$i"; done
}

# ---------------------------------------------------------------- 1. async, peers killed

case_1() {
    cluster_up 1 async fail || return
    writer_up 1 || return
    local i at
    assert_true "1: redis' fsyncs on ${HOSTS[$P]} in lifeboat_data_fsync_seconds" "a positive count within 15 s" \
        wait_until 15 metric_positive "$P" lifeboat_data_fsync_seconds_count
    for i in $(peers_of "$P"); do
        assert_true "1: ${HOSTS[$i]}'s acknowledgements in lifeboat_replication_ack_seconds on ${HOSTS[$P]}" \
            "a positive count within 15 s" wait_until 15 metric_positive "$P" \
            "lifeboat_replication_ack_seconds_count{host=\"${HOSTS[$P]}\",workload=\"redis\",peer=\"${HOSTS[$i]}\"}"
    done
    for i in $(peers_of "$P"); do agent_kill "$i"; done
    at=$(acks_count "$ACKS")
    lb_info "1: both peers' agents SIGKILLed after $at acknowledged writes"
    assert_true "1: the primary ${HOSTS[$P]} acknowledges 100 more writes with no peer up" \
        "$((at + 100)) acknowledged writes within 20 s (had $at)" wait_until 20 acks_above "$ACKS" $((at + 100))
    assert_true "1: ${HOSTS[$P]} is still primary" "role primary" has_role "$P" primary
    lb_info "1: $(st_line "$P")"
    writer_stop 1 c1-writer "$W"
    check_acks 1 "$P" none-lost "$ACKS"
}

# ---------------------------------------------------------------- 2. sync + fail, peers killed

case_2() {
    cluster_up 2 sync fail || return
    writer_up 2 || return
    local i at t_kill t_quiet t_restart during R
    for i in $(peers_of "$P"); do agent_kill "$i"; done
    t_kill=$(now)
    at=$(acks_count "$ACKS")
    lb_info "2: both peers' agents SIGKILLed after $at acknowledged writes"
    if wait_until 15 acks_quiet "$ACKS" 4; then
        pass
        t_quiet=$(now)
        lb_info "2: no acknowledgement since $(fsub "$(last_ack_time "$ACKS")" "$t_kill") s after the kill ($(($(acks_count "$ACKS") - at)) acknowledged after the kill)"
    else
        fail "2: acknowledgements stop with no sync peer" "no acknowledged write for 4 s, within 15 s of the kill" \
            "$(($(acks_count "$ACKS") - at)) acknowledged since the kill; $(tail -n 2 "$ACKS")"
    fi
    assert_true "2: lifeboat_sync_timeouts_total > 0 on ${HOSTS[$P]}" "a positive counter within 15 s" \
        wait_until 15 metric_positive "$P" lifeboat_sync_timeouts_total
    sleep 6 # no peer for a while longer: several sync timeouts, redis restarts
    lb_info "2: with no peer: $(st_line "$P"); sync timeouts $(metric "$P" lifeboat_sync_timeouts_total); $(grep -c 'restarting it' "$(hdir "$P")/agent.log") service restarts, $(grep -c 'fsync fails with EIO' "$(hdir "$P")/agent.log") EIO fsyncs in the agent log"

    R=$(peers_of "$P" | awk '{ print $1 }')
    t_restart=$(now)
    at=$(acks_count "$ACKS")
    during=$(acks_after "$ACKS" "$(fadd "$t_kill" 1)")
    assert_none "2: writes acknowledged from 1 s after the peers died to a peer's restart" "$during" \
        "$(awk -v t="$(fadd "$t_kill" 1)" 'NF >= 5 && $5 > t' "$ACKS" | head -n 3)"
    agent_start "$R"
    if wait_until 30 acks_above "$ACKS" "$at"; then
        pass
        lb_info "2: writes acknowledged again $(fsub "$(awk -v t="$t_restart" 'NF >= 5 && $5 > t { print $5; exit }' "$ACKS")" "$t_restart") s after ${HOSTS[$R]}'s agent started"
    else
        fail "2: writes are acknowledged again once ${HOSTS[$R]} is back" "an acknowledged write within 30 s" \
            "none; ${HOSTS[$P]}: $(st_line "$P"); writer: $(tail -n 2 "$LB_TMP/c2-writer.out")"
    fi
    assert_peer "2: ${HOSTS[$R]} rejoins as a peer" "$R"
    assert_true "2: 50 more writes are acknowledged with ${HOSTS[$R]} back" "within 30 s" \
        wait_until 30 acks_above "$ACKS" $((at + 50))
    writer_stop 2 c2-writer "$W"
    if wait_primary 30 0 -1; then
        [ "$PRIMARY" = "$P" ] || lb_info "2: the primary is now ${HOSTS[$PRIMARY]} (epoch $PRIMARY_EPOCH)"
        check_acks 2 "$PRIMARY" none-lost "$ACKS"
    else
        fail "2: a primary for the check" "exactly one primary with service running within 30 s" "$WAIT_SEEN"
    fi
}

# ---------------------------------------------------------------- 3. sync + degrade, peers killed

case_3() {
    cluster_up 3 sync degrade || return
    writer_up 3 || return
    local i at t_kill after n
    for i in $(peers_of "$P"); do agent_kill "$i"; done
    t_kill=$(now)
    at=$(acks_count "$ACKS")
    lb_info "3: both peers' agents SIGKILLed after $at acknowledged writes"
    after=$(fadd "$t_kill" $((SYNC_TIMEOUT_S + 1)))
    assert_true "3: writes are still acknowledged after the sync timeout" \
        "5 writes acknowledged more than $((SYNC_TIMEOUT_S + 1)) s after the kill, within 40 s" \
        wait_until 40 acks_after_above "$ACKS" "$after" 4
    if wait_until 10 has_alert "$P"; then
        pass
        lb_info "3: alert: $ST_ALERT"
    else
        fail "3: the status of ${HOSTS[$P]} has an alert" "a non-empty alert within 10 s" "'$ST_ALERT': $(st_line "$P")"
    fi
    assert_true "3: ${HOSTS[$P]} is still primary" "role primary" has_role "$P" primary
    sleep 5
    n=$(acks_after "$ACKS" "$after")
    lb_info "3: $n writes acknowledged from $((SYNC_TIMEOUT_S + 1)) s after the kill to $(fsub "$(now)" "$t_kill") s after it; sync timeouts $(metric "$P" lifeboat_sync_timeouts_total); $(grep -c 'ALERT' "$(hdir "$P")/agent.log") ALERT lines in the agent log"
    writer_stop 3 c3-writer "$W"
    check_acks 3 "$P" none-lost "$ACKS"
}

# ---------------------------------------------------------------- 4. a primary frozen past its lease

case_4() {
    cluster_up 4 sync "$C4_ON_SYNC_TIMEOUT" || return
    writer_up 4 || return
    assert_true "4: the writer gets 200 writes acknowledged" "within 30 s" wait_until 30 acks_above "$ACKS" 200
    local EP=$PRIMARY_EPOCH AP=${AGENT_PIDS[$P]} OLD_REDIS=$PRIMARY_PID N NE t_stop t_seen t_epoch r_epoch r_start
    local stopped bad late d jd t_cont
    t_stop=$(now)
    kill -STOP "$AP"
    lb_info "4: SIGSTOP to ${HOSTS[$P]}'s agent (pid $AP, epoch $EP, redis pid $OLD_REDIS) after $(acks_count "$ACKS") acknowledged writes"
    # (a status read of the frozen agent takes its 3 s timeout: the wait starts at once)
    assert_primary "4: failover from the frozen primary" $((3 * LEASE_TTL_S + 30)) $((EP + 1)) "$P" \
        "another host primary with epoch > $EP and service running, within 3 x lease_ttl + 30 s" || {
        kill -CONT "$AP"
        return
    }
    t_seen=$(now)
    while ! fgt "$(fsub "$(now)" "$t_stop")" $((3 * LEASE_TTL_S)); do sleep 0.1; done
    N=$PRIMARY NE=$PRIMARY_EPOCH
    read -r r_epoch r_start < <(st_field "$N" last_recovery.epoch last_recovery.started_at)
    if [ "${r_epoch:-}" = "$NE" ] && [[ "${r_start:-}" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
        t_epoch=$r_start
    else
        t_epoch=$t_seen
        lb_info "4: no last_recovery.started_at for epoch $NE on ${HOSTS[$N]} (saw epoch '${r_epoch:-}', '${r_start:-}'): the new epoch counts from when the test saw it"
    fi
    stopped=$(fsub "$(now)" "$t_stop")
    t_cont=$(now)
    kill -CONT "$AP"
    lb_info "4: ${HOSTS[$N]} is primary (epoch $NE, redis pid $PRIMARY_PID), its epoch started $(fsub "$t_epoch" "$t_stop") s after the SIGSTOP; SIGCONT after $stopped s"
    assert_peer "4: the old primary ${HOSTS[$P]} is a peer after SIGCONT" "$P"
    assert_true "4: the old primary's data dir is unmounted" "no mount on $(hdir "$P")/data within 30 s" \
        wait_until 30 not_mounted "$(hdir "$P")/data"
    if is_int "$OLD_REDIS"; then
        assert_true "4: the old primary's redis (pid $OLD_REDIS) has stopped" "gone within 30 s" \
            wait_until 30 pid_gone "$OLD_REDIS"
        pid_gone "$OLD_REDIS" && untrack_service "$OLD_REDIS"
    fi
    assert_true "4: ${HOSTS[$N]} is still the primary" "role primary" has_role "$N" primary
    assert_true "4: the writer carries on at ${HOSTS[$N]}" "50 writes acknowledged by ${HOSTS[$N]} within 30 s" \
        wait_until 30 acks_by_above "$ACKS" "${HOSTS[$N]}" 49
    writer_stop 4 c4-writer "$W"

    bad=$(acks_where "$ACKS" "\$3 == \"${HOSTS[$P]}\" && \$5 > $t_epoch")
    assert_none "4: writes acknowledged by the old primary ${HOSTS[$P]} after epoch $NE started" "$bad" \
        "$(awk -v h="${HOSTS[$P]}" -v t="$t_epoch" -v c="$t_cont" -v s="$t_stop" 'NF >= 5 && $3 == h && $5 > t {
            printf "%s (epoch %s) acknowledged %.3f s after the SIGSTOP, %.3f s after epoch '"$NE"' started, %.3f s after the SIGCONT; ",
                $1, $4, $5 - s, $5 - t, $5 - c }' "$ACKS" | head -c 600)"
    late=$(acks_where "$ACKS" "\$3 == \"${HOSTS[$P]}\" && \$5 > $t_stop")
    lb_info "4: acknowledged by ${HOSTS[$P]} after its SIGSTOP: $late; by ${HOSTS[$N]}: $(acks_by "$ACKS" "${HOSTS[$N]}"); writer: $(tail -n 1 "$LB_TMP/c4-writer.out")"
    check_acks "4: on the new primary ${HOSTS[$N]}" "$N" none-lost "$ACKS"

    jd="$(hdir "$P")/journal"
    d="$(ls -d "$jd".diverged-* 2>/dev/null)"
    if [ -n "$d" ]; then
        lb_info "4: diverged journal kept aside on ${HOSTS[$P]}: $(basename "$d"); REASON: $(lb_oneline "$(cat "$d"/REASON 2>/dev/null | head -c 400)")"
    else
        lb_info "4: no ${jd##*/}.diverged-* dir next to ${HOSTS[$P]}'s journal dir"
    fi
    lb_info "4: ${HOSTS[$P]} after SIGCONT: $(st_line "$P")"
    lb_info "4: ${HOSTS[$P]} agent log: $(lb_oneline "$(grep -E 'lost the lease|fenc|diverged|following|refus|EIO|exited|ALERT' "$(hdir "$P")/agent.log" | tail -n 6 | cut -c26-)")"
}

# ---------------------------------------------------------------- run

for c in $CASES; do
    FAILS_BEFORE=$LB_FAIL
    t=$(date +%s)
    lb_info "case $c"
    "case_$c"
    cluster_down
    lb_info "case $c: $(($(date +%s) - t)) s, $((LB_FAIL - FAILS_BEFORE)) failed"
done
lb_info "took $(($(date +%s) - T0)) s"
lb_finish
