# shellcheck shell=bash
# scripts/lib/cluster.sh: three lifeboatd agents on one machine (h1 h2 h3 on loopback
# addresses) that share one volume dir (the repository and the `local` coordinator's lease
# dir), with one captured workload whose service the primary's agent runs: redis by default.
# Used by the failover tests (through scripts/tests/failover_lib.sh), the demo (through
# scripts/lib/failover_scenario.sh) and scripts/bench/failover.sh.
#
# Source it after scripts/tests/lib.sh (pass/fail/assert_*, lb_info, lb_wait_pid, LB_TMP,
# LB_PIDS) and lb_setup; then `trap fo_cleanup EXIT`. A script without the assertions (the
# failover bench) uses the configs, the agents, the status reads, wait_primary, track_service,
# kill_services and fo_teardown, with LB_TMP="".
#
# The sourcing script sets first:
#   HOSTS ADDRS        three host names and their addresses (arrays)
#   API_PORT PEER_PORT REDIS_PORT
#   VOLUME             the shared dir (repository and the coordinator's lease dir)
#   FC                 the path of failover_client.py
#   AGENT_PIDS         ("" "" ""): the running agent of each host ("" while it is down)
#   SERVICE_PIDS       (): redis pids the status API named
#   LIFEBOATD_BIN      the agent binary
# and may set (read when used, so a script can change them between clusters):
#   FO_DIR             where the host dirs hN/ live (default $LB_TMP)
#   MODE               replication: sync|async
#   MIN_SYNC_PEERS SYNC_TIMEOUT ON_SYNC_TIMEOUT LEASE_TTL   workload keys (default 1, 5s, fail, 2s)
#   WRITER_ARGS        extra arguments for failover_client.py write (array, default none)
#   CL_WORKLOAD        the workload's name (default redis)
#   CL_DISOWN=1        agent_start disowns the agents (no job notice when one is SIGKILLed)
#   CL_ETCD            etcd client URL(s), comma-separated: the agents use the etcd coordinator
#                      (keys under CL_ETCD_PREFIX, default /lifeboat) instead of `local`
#   CL_SERVICE         a function NAME: `NAME I` prints host I's `service:` keys (start,
#                      health, stop; six spaces in) and writes what they need (default
#                      redis_service: hI/redis.conf, redis on ADDRS[I]:REDIS_PORT)
#   CL_SERVICE_CMD     text that a service command line of host I (is_service_of) holds and
#                      nothing else's: default hI/redis.conf

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# cluster_hosts NET API PEER REDIS VOLUME: the three hosts of a test cluster, h1 h2 h3 on
# NET.1 NET.2 NET.3 (e.g. 127.0.0.1 gives 127.0.0.11-13), with their ports and shared volume
# dir; sets FC, HOSTS, ADDRS, API_PORT, PEER_PORT, REDIS_PORT, VOLUME, AGENT_PIDS, SERVICE_PIDS.
# Each test uses addresses of its own, so two tests never collide.
cluster_hosts() {
    FC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests" && pwd)/failover_client.py"
    HOSTS=(h1 h2 h3)
    ADDRS=("$1"1 "$1"2 "$1"3)
    API_PORT=$2 PEER_PORT=$3 REDIS_PORT=$4 VOLUME=$5
    AGENT_PIDS=("" "" "") # the running agent of each host ("" while it is down)
    SERVICE_PIDS=()       # redis pids the status API named
}

# ---------------------------------------------------------------- small helpers

api() { printf 'http://%s:%s' "${ADDRS[$1]}" "$API_PORT"; }
hdir() { printf '%s/%s' "${FO_DIR:-$LB_TMP}" "${HOSTS[$1]}"; }

# fc ARGS...: the Python helper, with a timeout so a hung call cannot hang the test
fc() { timeout -k 5 180 python3 "$FC" "$@"; }
# fc_status URL ARGS...: failover_client.py status of this cluster's workload
fc_status() {
    local url=$1
    shift
    fc status --workload "${CL_WORKLOAD:-redis}" "$url" "$@"
}

# is_service_of I PID: PID runs host I's redis: its command line names hI/redis.conf (the
# /bin/sh -c wrapper, or redis before it sets its process title), or it is a redis-server whose
# process title names hI's address and port (setup made sure nothing else listened there), or
# its cwd is hI's data dir
is_service_of() {
    local pid=$2 d cmd
    is_int "$pid" && pid_alive "$pid" || return 1
    d="$(hdir "$1")"
    cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"
    [[ "$cmd" == *"${CL_SERVICE_CMD:-$d/redis.conf}"* ]] && return 0
    if [ "$(cat 2>/dev/null <"/proc/$pid/comm")" = redis-server ] &&
        [[ "$cmd" == *"${ADDRS[$1]}:${REDIS_PORT:-}"* ]]; then
        return 0
    fi
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$d/data" ]
}

# service_pids_of I: host I's redis processes: the pids the status API named that still run
# it, and children / grandchildren of I's agent that run it (one started after the last
# status read). Only processes is_service_of accepts.
service_pids_of() {
    local i=$1 ap=${AGENT_PIDS[$1]} pid c g
    {
        for pid in "${SERVICE_PIDS[@]+"${SERVICE_PIDS[@]}"}"; do
            is_service_of "$i" "$pid" && echo "$pid"
        done
        if [ -n "$ap" ]; then
            for c in $(pgrep -P "$ap" 2>/dev/null); do
                is_service_of "$i" "$c" && echo "$c"
                for g in $(pgrep -P "$c" 2>/dev/null); do
                    is_service_of "$i" "$g" && echo "$g"
                done
            done
        fi
    } | sort -u
}

# track_service I PID: PID (from the status API) is host I's redis: the cleanup kills it first
track_service() {
    local p
    is_service_of "$1" "$2" || return 0
    for p in "${SERVICE_PIDS[@]+"${SERVICE_PIDS[@]}"}"; do [ "$p" = "$2" ] && return 0; done
    SERVICE_PIDS+=("$2")
    lb_track_first "$2"
}
untrack_service() {
    local p keep=()
    for p in "${SERVICE_PIDS[@]+"${SERVICE_PIDS[@]}"}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    SERVICE_PIDS=("${keep[@]+"${keep[@]}"}")
    lb_untrack "$1"
}

# fo_teardown: freeze the agents (so none starts a service meanwhile), kill the redis
# processes (verified as ours), then the agents (still frozen), the writers (every pid in
# LB_PIDS), then any redis of these hosts that appeared meanwhile, then lazily detach every
# mount below the temp dir (a SIGKILLed agent's mount can be dead: `mountpoint` fails on it,
# so lb_cleanup alone would skip it). AGENT_PIDS are "" afterwards.
fo_teardown() {
    local pid i m
    for pid in "${AGENT_PIDS[@]}"; do
        [ -n "$pid" ] && kill -STOP "$pid" 2>/dev/null
    done
    kill_services
    # the agents die still frozen: a SIGCONT first would let one restart its service
    for pid in "${AGENT_PIDS[@]}"; do
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${LB_PIDS[@]+"${LB_PIDS[@]}"}"; do
        if kill -0 "$pid" 2>/dev/null; then lb_kill_pid "$pid"; fi
    done
    LB_PIDS=()
    AGENT_PIDS=("" "" "")
    # a service an agent forked just before the freeze execs redis only now, orphaned
    for m in 1 2 3; do
        sleep 0.2
        for pid in $(pgrep -f redis 2>/dev/null); do
            for i in 0 1 2; do
                is_service_of "$i" "$pid" && kill -KILL "$pid" 2>/dev/null
            done
        done
    done
    if [ -n "$LB_TMP" ]; then unmount_below "$LB_TMP"; fi
}

# kill_services: SIGKILL to every service process of the three hosts (service_pids_of; each
# waited for up to 5 s); SERVICE_PIDS is empty afterwards
kill_services() {
    local pid i victims=()
    for i in 0 1 2; do
        for pid in $(service_pids_of "$i"); do victims+=("$pid"); done
    done
    for pid in "${victims[@]+"${victims[@]}"}"; do kill -KILL "$pid" 2>/dev/null; done
    for pid in "${victims[@]+"${victims[@]}"}"; do wait_until 5 pid_gone "$pid"; done
    for pid in "${SERVICE_PIDS[@]+"${SERVICE_PIDS[@]}"}"; do lb_untrack "$pid"; done
    SERVICE_PIDS=()
}

# fo_cleanup: the EXIT trap: fo_teardown, then lib.sh's cleanup
fo_cleanup() {
    fo_teardown
    lb_cleanup
}

# ---------------------------------------------------------------- agents and their status

# write_config I: hI/agent.yaml (and what the service needs, e.g. hI/redis.conf); the backing
# dir exists (the data dir and the journal dir are the agent's to create)
write_config() {
    local i=$1 j d
    d="$(hdir "$i")"
    mkdir -p "$d/backing"
    chmod 755 "$d" "$d/backing"
    {
        cat <<YAML
host: ${HOSTS[$i]}
listen: ${ADDRS[$i]}:$API_PORT
peer_listen: ${ADDRS[$i]}:$PEER_PORT
repository: $VOLUME/repo
YAML
        if [ -n "${CL_ETCD:-}" ]; then
            printf 'coordinator:\n  backend: etcd\n  endpoints: [%s]\n  prefix: %s\n' "$CL_ETCD" "${CL_ETCD_PREFIX:-/lifeboat}"
        else
            printf 'coordinator:\n  backend: local\n  path: %s/coordinator\n' "$VOLUME"
        fi
        cat <<YAML
peers:
YAML
        for j in 0 1 2; do
            [ "$j" = "$i" ] && continue
            printf '  - host: %s\n    api: %s:%s\n    address: %s:%s\n' \
                "${HOSTS[$j]}" "${ADDRS[$j]}" "$API_PORT" "${ADDRS[$j]}" "$PEER_PORT"
        done
        cat <<YAML
workloads:
  - name: ${CL_WORKLOAD:-redis}
    capture: fuse
    data_dir: $d/data
    backing_dir: $d/backing
    journal_dir: $d/journal
    replication: $MODE
    min_sync_peers: ${MIN_SYNC_PEERS:-1}
    sync_timeout: ${SYNC_TIMEOUT:-5s}
    on_sync_timeout: ${ON_SYNC_TIMEOUT:-fail}
    lease_ttl: ${LEASE_TTL:-2s}
    standby: ${CL_STANDBY:-cold}
    service:
YAML
        "${CL_SERVICE:-redis_service}" "$i"
    } >"$d/agent.yaml"
}

# redis_service I: redis (appendonly, appendfsync always) on ADDRS[I]:REDIS_PORT in hI/data
redis_service() {
    local i=$1 d
    d="$(hdir "$i")"
    cat <<YAML
      start: "redis-server $d/redis.conf"
      health: "redis-cli -h ${ADDRS[$i]} -p $REDIS_PORT ping"
      stop: "redis-cli -h ${ADDRS[$i]} -p $REDIS_PORT shutdown nosave"
YAML
    cat >"$d/redis.conf" <<CONF
bind ${ADDRS[$i]}
port $REDIS_PORT
dir $d/data
appendonly yes
appendfsync always
save ""
daemonize no
protected-mode no
logfile $d/redis.log
CONF
}

# cluster_launch: the volume dir, the three configs, the three agents (their data dirs in
# LB_MOUNTS, for the cleanup)
cluster_launch() {
    local i
    mkdir -p "$VOLUME"
    for i in 0 1 2; do
        write_config "$i"
        LB_MOUNTS+=("$(hdir "$i")/data")
    done
    for i in 0 1 2; do agent_start "$i"; done
}

# agent_start I: starts host I's agent in the background (output appended to hI/agent.log)
agent_start() {
    local d
    d="$(hdir "$1")"
    echo "=== $(date '+%F %T') start" >>"$d/agent.log"
    "$LIFEBOATD_BIN" --config "$d/agent.yaml" >>"$d/agent.log" 2>&1 </dev/null &
    AGENT_PIDS[$1]=$!
    LB_PIDS+=("$!")
    if [ "${CL_DISOWN:-0}" = 1 ]; then disown "$!"; fi
}

# st_read I: role, epoch, service state and service pid of host I's redis workload, from its
# status API, into ST_ROLE ST_EPOCH ST_STATE ST_PID ("-" for null; ST_ROLE=down when the agent
# does not answer)
st_read() {
    ST_ROLE="" ST_EPOCH="" ST_STATE="" ST_PID=""
    read -r ST_ROLE ST_EPOCH ST_STATE ST_PID \
        < <(fc_status "$(api "$1")" role epoch service.state service.pid 2>/dev/null)
    ST_ROLE=${ST_ROLE:-down}
}

# st_field I FIELD...: those fields of host I's workload status, on one line ("-" for null)
st_field() {
    local i=$1
    shift
    fc_status "$(api "$i")" "$@" 2>/dev/null
}

# st_line I: host I's status as one summary line (for messages)
st_line() { fc_status "$(api "$1")" 2>/dev/null || echo "${HOSTS[$1]} down"; }

has_role() {
    st_read "$1"
    [ "$ST_ROLE" = "$2" ]
}
peer_connected() { [ "$(st_field "$1" "peers[${HOSTS[$2]}].connected")" = true ]; }

# wait_primary SECONDS MIN_EPOCH EXCLUDE: waits until exactly one host claims role primary,
# it is not host EXCLUDE (an index, -1 for none), its epoch is >= MIN_EPOCH and its service is
# running. Returns the host index in PRIMARY (epoch in PRIMARY_EPOCH, redis pid in
# PRIMARY_PID, tracked for the cleanup); returns 1 after SECONDS, with the roles last seen in
# WAIT_SEEN.
wait_primary() {
    local limit=$1 min=$2 excl=$3 end i n found fe fp
    end=$(($(date +%s) + limit))
    PRIMARY="" PRIMARY_EPOCH="" PRIMARY_PID=""
    while :; do
        n=0 found="" WAIT_SEEN=""
        for i in 0 1 2; do
            st_read "$i"
            WAIT_SEEN+="${HOSTS[$i]}: role $ST_ROLE, epoch $ST_EPOCH, service $ST_STATE; "
            [ "$ST_ROLE" = primary ] || continue
            n=$((n + 1))
            if [ "$i" != "$excl" ] && [ "$ST_STATE" = running ] && is_int "$ST_EPOCH" &&
                [ "$ST_EPOCH" -ge "$min" ]; then
                found=$i fe=$ST_EPOCH fp=$ST_PID
            fi
        done
        if [ -n "$found" ] && [ "$n" = 1 ]; then
            PRIMARY=$found PRIMARY_EPOCH=$fe PRIMARY_PID=$fp
            track_service "$PRIMARY" "$PRIMARY_PID"
            return 0
        fi
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.3
    done
}

# assert_primary NAME SECONDS MIN_EPOCH EXCLUDE [EXPECTED]: wait_primary as the assertion NAME;
# returns 1 when it failed (EXPECTED: what the FAIL line says was expected)
assert_primary() {
    if wait_primary "$2" "$3" "$4"; then pass && return 0; fi
    fail "$1" "${5:-exactly one primary with service running within $2 s}" "$WAIT_SEEN"
    return 1
}
# assert_peer NAME I: the assertion NAME that host I reports role peer within 30 s
assert_peer() {
    if wait_until 30 has_role "$2" peer; then pass; else fail "$1" "role peer within 30 s" "role $ST_ROLE: $(st_line "$2")"; fi
}

# cluster_ports_free NAME SECONDS: every address and port of the cluster is free within SECONDS
# (0: now); else the assertion NAME fails, naming the first one taken, and it returns 1
cluster_ports_free() {
    local i port
    for i in 0 1 2; do
        for port in "$API_PORT" "$PEER_PORT" "$REDIS_PORT"; do
            wait_until "$2" eval "! port_busy ${ADDRS[$i]} $port" && continue
            fail "$1" "${ADDRS[$i]}:$port free" "something still listens there (another run?)"
            return 1
        done
    done
}

# redis_pong I: redis on host I's address answers PING
redis_pong() { [ "$(timeout 5 redis-cli -h "${ADDRS[$1]}" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

# acks_count LOG: acknowledged writes logged so far
acks_count() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }
acks_above() { [ "$(acks_count "$1")" -gt "$2" ]; }

# writer_start NAME PREFIX: failover_client.py write in the background, until $LB_TMP/NAME.stop
# appears; acknowledged writes go to $LB_TMP/NAME.acks, its output to $LB_TMP/NAME.out.
# Sets WRITER_PID.
writer_start() {
    python3 -u "$FC" write --agents "$(api 0),$(api 1),$(api 2)" --port "$REDIS_PORT" \
        --acks "$LB_TMP/$1.acks" --seconds 1800 --stop "$LB_TMP/$1.stop" \
        --prefix "$2" --seed "$RANDOM" "${WRITER_ARGS[@]+"${WRITER_ARGS[@]}"}" >"$LB_TMP/$1.out" 2>&1 </dev/null &
    WRITER_PID=$!
    lb_track_first "$WRITER_PID"
}

# writer_stop WHAT NAME PID: creates the stop file, waits (60 s) for exit 0
writer_stop() {
    touch "$LB_TMP/$2.stop"
    lb_wait_pid "$3" 60
    assert_exit "$1: the writer stops at its stop file with exit 0" 0 "$LB_WAIT_RC" "$LB_TMP/$2.out"
    lb_untrack "$3"
    lb_info "$1: $(tail -n 1 "$LB_TMP/$2.out")"
}

# check_acks WHAT I RULE LOG...: failover_client.py check of the logs against redis on host
# I. RULE "none-lost": no acknowledged write may be missing or different; "most": at least 90%
# must be there (MODE=async after host losses). Sets CHECK_LOST, CHECK_ACKED and CHECK_OK
# (the checker's counts; "" when it could not read redis).
check_acks() {
    local what=$1 i=$2 rule=$3 log out rc acked="" ok="" args=()
    shift 3
    for log; do args+=(--acks "$log"); done
    out="$(fc check --host "${ADDRS[$i]}" --port "$REDIS_PORT" "${args[@]}" 2>&1)"
    rc=$?
    CHECK_LOST="" CHECK_ACKED="" CHECK_OK=""
    if [ "$rc" -ne 0 ]; then
        LB_FAIL=$((LB_FAIL + 3))
        echo "FAIL $what: the checker could not read redis on ${HOSTS[$i]} (exit $rc: $(lb_oneline "$out")); 3 assertions counted as failed"
        return 0
    fi
    pass
    CHECK_LOST="$(sed -n 's/^lost acknowledged writes: \([0-9][0-9]*\)$/\1/p' <<<"$out")"
    acked="$(sed -n 's/^check: acked=\([0-9]*\) .*/\1/p' <<<"$out")"
    ok="$(sed -n 's/^check: .* ok=\([0-9]*\) .*/\1/p' <<<"$out")"
    CHECK_ACKED=$acked CHECK_OK=$ok
    lb_info "$what: lost acknowledged writes: ${CHECK_LOST:-?} ($(grep -E '^(check|missing|wrong)' <<<"$out" | tr '\n' ';'))"
    assert_true "$what: the logs hold acknowledged writes" "at least one acknowledged key" is_positive "${acked:-0}"
    if [ "$rule" = none-lost ]; then
        assert_eq "$what: lost acknowledged writes (MODE=$MODE)" 0 "${CHECK_LOST:-unknown: $(lb_oneline "$out")}"
    else
        if is_int "${ok:-}" && is_int "${acked:-}" && [ $((ok * 10)) -ge $((acked * 9)) ]; then
            pass
        else
            fail "$what: at least 90% of the acknowledged writes are there (MODE=$MODE)" \
                "ok >= 90% of acked" "$(lb_oneline "$out")"
        fi
    fi
}

# host_kill I: host I dies: its agent and its redis are frozen, then SIGKILLed together.
# Sets KILLED_SERVICES (the redis pids killed).
host_kill() {
    local i=$1 ap=${AGENT_PIDS[$1]} pid
    kill -STOP "$ap" 2>/dev/null
    KILLED_SERVICES=()
    for pid in $(service_pids_of "$i"); do KILLED_SERVICES+=("$pid"); done
    kill -STOP "${KILLED_SERVICES[@]+"${KILLED_SERVICES[@]}"}" 2>/dev/null
    kill -KILL "$ap" "${KILLED_SERVICES[@]+"${KILLED_SERVICES[@]}"}" 2>/dev/null
}

# show_logs: the end of every log, for a failure the rest cannot recover from
show_logs() {
    local i f
    for i in 0 1 2; do
        lb_info "${HOSTS[$i]}: $(st_line "$i")"
        for f in agent.log redis.log; do
            [ -f "$(hdir "$i")/$f" ] || continue
            echo "# ${HOSTS[$i]} $f:"
            tail -n 15 "$(hdir "$i")/$f" | sed 's/^/#   /'
        done
    done
    for f in "$LB_TMP"/*.out; do
        [ -f "$f" ] || continue
        echo "# $(basename "$f"):"
        tail -n 8 "$f" | sed 's/^/#   /'
    done
}
give_up() {
    show_logs
    lb_finish
}
