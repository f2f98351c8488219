# shellcheck shell=bash
# scripts/lib/lab_scenario.sh: the redis failover on the lab (scripts/lab/up.sh), step by
# step, with its assertions: scripts/lab/failover-demo.sh (`scripts/demo.sh --lab`) and
# scripts/tests/lab-smoke.sh run it.
#
#  1. Up: scripts/lab/up.sh --dir LAB_RUN_DIR --prefix LAB_RUN_PREFIX (its JSON in
#     LS_WORK/up.json); up.sh returns once each workload has one primary with its service
#     running. Exactly one agent says primary for redis, redis answers PING on its address
#     from the client namespace.
#  2. A writer in the client namespace (failover_client.py write) SETs distinct keys on
#     whichever host is primary and logs each acknowledged one; a snapshot is taken through
#     the primary's API while it writes, and it writes a few seconds more.
#  3. Host loss: the primary's link is taken down on the switch (so nothing it sends arrives:
#     a crash, not a clean close), then its agent and every process under it (redis, and
#     postgres when that primary is there too) are frozen and SIGKILLed. Within 30 s another
#     host is primary for redis with a higher epoch and redis running, its last_recovery is
#     the recovery into that epoch, and the writer carries on there (50 more acknowledged
#     writes). The lost host stays cut off (its etcd member and brick run on, unreachable).
#  4. The writer stops; every acknowledged write, those before the kill and those after, is
#     read back from the new primary (replication sync: none may be lost).
#
# Source it after scripts/tests/lib.sh and lb_setup (pass/fail/assert_*, LB_PIDS); set first:
#   LAB_RUN_DIR LAB_RUN_PREFIX   the lab's dir and prefix
#   LS_WORK                      where the writer's and checker's files go
# then `trap ls_cleanup EXIT` and call the steps. What they saw, for a summary:
#   LS_OLD LS_OLD_EPOCH LS_NEW LS_NEW_EPOCH   the lost host and the new primary (1-based), epochs
#   LS_KILL_ACKS LS_T_KILL LS_T_UP           acks at the kill; kill and new-primary times
#   LS_SNAPSHOT LS_KILLED                    the snapshot id; the pids killed with the agent
#   R_<field>                                the new primary's last_recovery (LS_RECOVERY_FIELDS)
#   CHECK_ACKED CHECK_OK CHECK_LOST          the final check's counts

. "$(dirname "${BASH_SOURCE[0]}")/lab.sh"

LS_FC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests" && pwd)/failover_client.py"
LS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LS_RECOVERY_FIELDS=(epoch kind snapshot detection_seconds lease_seconds snapshot_load_seconds delta_seconds
    replay_seconds mount_seconds service_start_seconds total_seconds snapshot_bytes local_records delta_records
    delta_bytes delta_peer replayed_records announce_seconds warm_from)
LS_WRITER=""
LS_DOWN_DONE=0

# ls_fc ARGS...: failover_client.py in the client namespace, bounded in time
ls_fc() { timeout -k 5 120 ip netns exec "$LAB_CLIENT" python3 "$LS_FC" "$@"; }
ls_agents() {
    local i out=""
    for ((i = 1; i <= LAB_HOSTS; i++)); do out+="${out:+,}$(lab_api "$i")"; done
    echo "$out"
}
# ls_status I W FIELD...: those fields of workload W on host I ("-" for null; nothing when down)
ls_status() {
    local i=$1 w=$2
    shift 2
    ls_fc status --timeout 1 --workload "$w" "$(lab_api "$i")" "$@" 2>/dev/null
}
ls_line() { ls_fc status --timeout 1 --workload "$2" "$(lab_api "$1")" 2>/dev/null || echo "h$1 down"; }
ls_pong() { [ "$(timeout 5 ip netns exec "$LAB_CLIENT" redis-cli -h "$(lab_addr "$1")" -p "$LAB_REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
ls_acks() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }
ls_acks_above() { [ "$(ls_acks "$1")" -gt "$2" ]; }
ls_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# ls_wait_primary SECONDS W MIN_EPOCH EXCLUDE: exactly one host (EXCLUDE, a lost host, is not
# asked) says primary for W with its service running and epoch >= MIN_EPOCH. Sets PRIMARY,
# PRIMARY_EPOCH, PRIMARY_PID; 1 after SECONDS with what it saw in WAIT_SEEN.
ls_wait_primary() {
    local limit=$1 w=$2 min=$3 excl=$4 end i n found role epoch state pid fe fp
    end=$(($(date +%s) + limit))
    PRIMARY="" PRIMARY_EPOCH="" PRIMARY_PID=""
    while :; do
        n=0 found="" WAIT_SEEN=""
        for ((i = 1; i <= LAB_HOSTS; i++)); do
            [ "$i" = "$excl" ] && continue
            role="" epoch="" state="" pid=""
            read -r role epoch state pid < <(ls_status "$i" "$w" role epoch service.state service.pid)
            WAIT_SEEN+="h$i: role ${role:-down}, epoch ${epoch:--}, service ${state:--}; "
            [ "$role" = primary ] || continue
            n=$((n + 1))
            if [ "$state" = running ] && is_int "$epoch" && [ "$epoch" -ge "$min" ]; then
                found=$i fe=$epoch fp=$pid
            fi
        done
        if [ -n "$found" ] && [ "$n" = 1 ]; then
            PRIMARY=$found PRIMARY_EPOCH=$fe PRIMARY_PID=$fp
            return 0
        fi
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.3
    done
}

# ls_etcd_leader: the host (index) whose etcd member leads ("" when none answers)
ls_etcd_leader() {
    local i out
    for ((i = 1; i <= LAB_ETCD_HOSTS; i++)); do
        out="$(timeout 5 ip netns exec "$LAB_CLIENT" curl -sf -m 2 -X POST -d '{}' "$(lab_etcd_url "$i")/v3/maintenance/status" 2>/dev/null)" || continue
        python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d.get("leader") and d["leader"] == d["header"]["member_id"] else 1)' "$out" 2>/dev/null &&
            echo "$i" && return 0
    done
}

# ls_give_up: the end of the logs, then the summary line (the EXIT trap brings the lab down)
ls_give_up() {
    local i f
    for ((i = 1; i <= ${LAB_HOSTS:-0}; i++)); do
        for f in agent.log etcd.log; do
            [ -f "$(lab_logdir "$i")/$f" ] || continue
            echo "# h$i $f:"
            tail -n 12 "$(lab_logdir "$i")/$f" | sed 's/^/#   /'
        done
    done
    for f in "$LS_WORK"/*.out; do
        [ -f "$f" ] || continue
        echo "# $(basename "$f"):"
        tail -n 6 "$f" | sed 's/^/#   /'
    done
    lb_finish
}

# ls_down [ARGS...]: scripts/lab/down.sh on the lab (once), the writer stopped first
ls_down() {
    if [ -n "$LS_WRITER" ]; then
        lb_kill_pid "$LS_WRITER"
        lb_untrack "$LS_WRITER"
        LS_WRITER=""
    fi
    [ "$LS_DOWN_DONE" = 1 ] && return 0
    LS_DOWN_DONE=1
    "$LS_ROOT/scripts/lab/down.sh" --dir "$LAB_RUN_DIR" "$@" >"$LS_WORK/down.out" 2>&1
    LS_DOWN_RC=$?
}
# ls_cleanup: the EXIT trap: the lab down (its logs kept with LB_KEEP=1), then lib.sh's cleanup
ls_cleanup() {
    if [ "${LB_KEEP:-0}" = 1 ]; then ls_down --keep-logs; else ls_down; fi
    lb_cleanup
}

# ---------------------------------------------------------------- the steps

# ls_up: step 1; sets LS_P (the redis primary)
ls_up() {
    local rc
    mkdir -p "$LS_WORK"
    LS_T0=$(date +%s)
    "$LS_ROOT/scripts/lab/up.sh" --dir "$LAB_RUN_DIR" --prefix "$LAB_RUN_PREFIX" >"$LS_WORK/up.json" 2>"$LS_WORK/up.err"
    rc=$?
    assert_exit "1: scripts/lab/up.sh --dir $LAB_RUN_DIR --prefix $LAB_RUN_PREFIX" 0 "$rc" "$LS_WORK/up.err"
    lab_load_env "$LAB_RUN_DIR" || {
        fail "1: the lab's lab.env" "$LAB_RUN_DIR/lab.env" "none"
        ls_give_up
    }
    [ "$rc" = 0 ] || ls_give_up
    LS_UP_SECONDS=$(($(date +%s) - LS_T0))
    lb_info "1: the lab is up in $LS_UP_SECONDS s ($(tail -n 1 "$LS_WORK/up.err"))"
    if ls_wait_primary 30 redis 0 -1; then pass; else
        fail "1: one primary for redis" "exactly one agent with role primary and redis running within 30 s" "$WAIT_SEEN"
        ls_give_up
    fi
    LS_P=$PRIMARY
    lb_info "1: h$LS_P is primary for redis (epoch $PRIMARY_EPOCH, redis pid $PRIMARY_PID)"
    assert_true "1: redis answers PING on $(lab_addr "$LS_P"):$LAB_REDIS_PORT from the client namespace" \
        "PONG within 30 s" wait_until 30 ls_pong "$LS_P"
}

# ls_writer_snapshot: step 2; sets LS_ACKS LS_SNAPSHOT
ls_writer_snapshot() {
    local out rc
    LS_ACKS="$LS_WORK/writer.acks"
    ip netns exec "$LAB_CLIENT" python3 -u "$LS_FC" write --agents "$(ls_agents)" --port "$LAB_REDIS_PORT" \
        --acks "$LS_ACKS" --seconds 1800 --stop "$LS_WORK/writer.stop" --timeout 3 --prefix key --seed "$RANDOM" \
        >"$LS_WORK/writer.out" 2>&1 </dev/null &
    LS_WRITER=$!
    lb_track_first "$LS_WRITER"
    if wait_until 30 ls_acks_above "$LS_ACKS" 0; then pass; else
        fail "2: the writer gets writes acknowledged" "acknowledged writes within 30 s" "none; $(tail -n 3 "$LS_WORK/writer.out")"
        ls_give_up
    fi
    sleep 2
    out="$(ls_fc post "$(lab_api "$LS_P")/v1/workloads/redis/snapshot" snapshot position)"
    rc=$?
    assert_exit "2: POST /v1/workloads/redis/snapshot on the primary h$LS_P answers 2xx" 0 "$rc"
    read -r _ LS_SNAPSHOT _ <<<"$out"
    lb_info "2: snapshot $out after $(ls_acks "$LS_ACKS") acknowledged writes"
    sleep 2
}

# ls_host_loss: step 3; sets LS_OLD LS_NEW LS_* R_*
ls_host_loss() {
    local AP pid at_new f killed=()
    if ls_wait_primary 30 redis 0 -1; then pass; else
        fail "3: a primary before the kill" "exactly one primary within 30 s" "$WAIT_SEEN"
        ls_give_up
    fi
    LS_OLD=$PRIMARY LS_OLD_EPOCH=$PRIMARY_EPOCH
    AP="$(lab_pid "$LS_OLD" agent)"
    assert_true "3: the agent pid of h$LS_OLD ($AP) runs in h$LS_OLD's network namespace" "pid $AP in $(lab_netns "$LS_OLD")" \
        lab_pid_in_host "$AP" "$LS_OLD"
    LS_ETCD_LEADER="$(ls_etcd_leader)"
    lb_info "3: cutting h$LS_OLD's link $(lab_link "$LS_OLD"), then killing its agent (pid $AP) and its services, after $(ls_acks "$LS_ACKS") acknowledged writes (the etcd leader is h${LS_ETCD_LEADER:-?})"
    lab_link_set "$LS_OLD" down
    assert_eq "3: h$LS_OLD's link is down on the switch" DOWN \
        "$(ip -n "$LAB_SW" -o link show "$(lab_link "$LS_OLD")" | grep -o 'state [A-Z]*' | cut -d' ' -f2)"
    kill -STOP "$AP" 2>/dev/null
    mapfile -t killed < <(lab_descendants "$AP")
    kill -STOP "${killed[@]+"${killed[@]}"}" 2>/dev/null
    kill -KILL "$AP" "${killed[@]+"${killed[@]}"}" 2>/dev/null
    LS_T_KILL=$(date +%s.%N)
    LS_KILL_ACKS=$(ls_acks "$LS_ACKS")
    LS_KILLED="$AP ${killed[*]+"${killed[*]}"}"
    echo "=== $(date '+%F %T') SIGKILLed with its link down (host lost)" >>"$(lab_logdir "$LS_OLD")/agent.log"
    assert_true "3: the agent of h$LS_OLD is gone" "pid $AP gone within 10 s" wait_until 10 pid_gone "$AP"
    assert_true "3: the agent of h$LS_OLD had its redis under it" "the redis pid $PRIMARY_PID among its descendants" \
        grep -qw -- "$PRIMARY_PID" <<<"$LS_KILLED"
    for pid in "${killed[@]+"${killed[@]}"}"; do
        wait_until 10 pid_gone "$pid" || fail "3: process $pid under h$LS_OLD's agent is gone" "gone within 10 s" "still running"
    done

    if ls_wait_primary 30 redis $((LS_OLD_EPOCH + 1)) "$LS_OLD"; then pass; else
        fail "3: failover" "another host primary for redis with epoch > $LS_OLD_EPOCH and redis running within 30 s" "$WAIT_SEEN"
        ls_give_up
    fi
    LS_T_UP=$(date +%s.%N)
    LS_NEW=$PRIMARY LS_NEW_EPOCH=$PRIMARY_EPOCH
    lb_info "3: h$LS_NEW is primary (epoch $LS_NEW_EPOCH, redis pid $PRIMARY_PID) $(ls_elapsed "$LS_T_KILL" "$LS_T_UP") s after the kill"
    assert_true "3: redis answers PING on the new primary $(lab_addr "$LS_NEW")" "PONG within 30 s" wait_until 30 ls_pong "$LS_NEW"
    at_new=$(ls_acks "$LS_ACKS")
    if wait_until 30 ls_acks_above "$LS_ACKS" $((at_new + 50)); then pass; else
        fail "3: the writer carries on at h$LS_NEW" "50 more acknowledged writes within 30 s" \
            "$(($(ls_acks "$LS_ACKS") - at_new)); $(tail -n 3 "$LS_WORK/writer.out")"
    fi
    for f in "${LS_RECOVERY_FIELDS[@]}"; do printf -v "R_$f" '%s' ""; done
    read -r "${LS_RECOVERY_FIELDS[@]/#/R_}" < <(ls_status "$LS_NEW" redis "${LS_RECOVERY_FIELDS[@]/#/last_recovery.}")
    assert_eq "3: last_recovery of h$LS_NEW is the recovery into epoch $LS_NEW_EPOCH" "$LS_NEW_EPOCH" "${R_epoch:-}"
    lb_info "3: recovery of h$LS_NEW: kind $R_kind, total $R_total_seconds s (detection $R_detection_seconds, lease $R_lease_seconds, snapshot load $R_snapshot_load_seconds, delta $R_delta_seconds, replay $R_replay_seconds, service start $R_service_start_seconds), local records $R_local_records, fetched $R_delta_records from ${R_delta_peer:-no peer}"
}

# ls_check LOG WHAT: failover_client.py check of LOG against redis on the new primary; sets CHECK_*
ls_check() {
    local out rc
    out="$(ls_fc check --host "$(lab_addr "$LS_NEW")" --port "$LAB_REDIS_PORT" --acks "$1" 2>&1)"
    rc=$?
    printf '%s\n' "$out" >"$LS_WORK/check-$2.out"
    CHECK_ACKED="" CHECK_OK="" CHECK_LOST=""
    assert_exit "4: the checker reads redis on h$LS_NEW ($2)" 0 "$rc" "$LS_WORK/check-$2.out"
    CHECK_LOST="$(sed -n 's/^lost acknowledged writes: \([0-9][0-9]*\)$/\1/p' <<<"$out")"
    CHECK_ACKED="$(sed -n 's/^check: acked=\([0-9]*\) .*/\1/p' <<<"$out")"
    CHECK_OK="$(sed -n 's/^check: .* ok=\([0-9]*\) .*/\1/p' <<<"$out")"
    lb_info "4: $2: $(grep -E '^(check|missing|wrong)' <<<"$out" | tr '\n' ';')"
    assert_true "4: $2: the log holds acknowledged writes" "at least one" is_positive "${CHECK_ACKED:-0}"
    assert_eq "4: $2: acknowledged writes lost (replication ${LAB_REPLICATION:-sync})" 0 "${CHECK_LOST:-unknown}"
}

# ls_check_all: step 4: the writer stops, the writes before the kill, then all of them
ls_check_all() {
    touch "$LS_WORK/writer.stop"
    lb_wait_pid "$LS_WRITER" 60
    assert_exit "4: the writer stops at its stop file with exit 0" 0 "$LB_WAIT_RC" "$LS_WORK/writer.out"
    lb_untrack "$LS_WRITER"
    LS_WRITER=""
    lb_info "4: $(tail -n 1 "$LS_WORK/writer.out")"
    head -n "$LS_KILL_ACKS" "$LS_ACKS" >"$LS_WORK/writer.acks.before-kill"
    ls_check "$LS_WORK/writer.acks.before-kill" before-kill
    LS_BEFORE_OK=$CHECK_OK LS_BEFORE_LOST=$CHECK_LOST
    ls_check "$LS_ACKS" all
}
