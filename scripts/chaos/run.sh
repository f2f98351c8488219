#!/usr/bin/env bash
# Chaos on the lab (scripts/lab/up.sh) with a checker. A writer in the client namespace writes
# distinct redis keys to whichever host is primary and logs each one only after redis
# acknowledged it (failover_client.py write --detail: key, sha256, host, epoch, time); a monitor
# asks every host's /v1/status every 0.2 s from inside that host's network namespace
# (monitor.py); each cycle does the scenario's damage to the lab, measures the recovery, heals,
# and reads every acknowledged key back from the current primary.
#
#   scripts/chaos/run.sh --scenario NAME [--cycles N] [--workload redis] [--json] [--lab DIR] [--prefix P]
#                        [--brick-size SIZE]
#
#   --scenario    kill-primary-host  the primary's link down, then SIGKILL of its agent, service,
#                                    brick (glusterfsd) and etcd member; its backing, journal and
#                                    data dirs wiped; link up, etcd member, brick and agent
#                                    restarted: it must rejoin, empty, as a peer
#                 pause-primary      SIGSTOP of the primary's agent and service past the lease
#                                    TTL, then SIGCONT: it must rejoin as a peer
#                 partition-primary  the primary's link down: it must fence itself (its own
#                                    status, read inside its namespace: not primary, or service
#                                    not running, within TTL + 2 s); another host takes over;
#                                    link up: it rejoins as a peer, what it never got
#                                    acknowledged set aside (.diverged-*), never merged
#                 partition-peer     a peer's link down for TTL + 3 s: no failover may happen
#                 kill-etcd-member   SIGKILL of the etcd member on the primary's host for
#                                    2 x TTL + 2 s, then restarted: no failover may happen
#                 restart-all        every agent (and service) SIGKILLed at once and restarted:
#                                    the workload comes back on exactly one primary
#                 kill-brick         SIGKILL of the brick (glusterfsd) on the primary's host, its
#                                    agent and etcd member left running: no failover may happen,
#                                    the writer carries on, a snapshot asked of the agent
#                                    (`lifeboat backup --agent`) commits while the brick is down;
#                                    then the brick restarts, the volume heals and
#                                    `lifeboat check` passes
#                 volume-full        (bounded bricks only: up.sh --brick-size) 4 MiB of random bytes
#                                    written into the service, then a ballast file on the volume
#                                    (outside the repository, from a peer's mount) grown until
#                                    ENOSPC and cut back to leave 1 MiB: the primary's snapshot
#                                    must fail with an error that says so, commit nothing and
#                                    leave no temp file, while the service answers, the writer
#                                    carries on and no failover happens; ballast removed, the
#                                    next snapshot commits and `lifeboat check` passes
#   --cycles N    cycles in a row (default 1)
#   --workload W  redis (default: failover_client.py, SET of distinct keys) or postgres
#                 (pg_client.py: one INSERT per committed transaction through psql)
#   --json        the table goes to stderr and the result as JSON to stdout
#   --lab DIR     the lab's dir (default lab/ in the repository); when no lab runs there it is
#                 brought up with scripts/lab/up.sh --dir DIR --prefix P and taken down at the end
#   --prefix P    the prefix for a lab it brings up (default lab; a running lab's own is used)
#   --brick-size SIZE  the bricks of a lab it brings up (up.sh --brick-size; default: plain
#                 dirs, 4G for volume-full); a running lab keeps its own. volume-full refuses
#                 (exit 2) a running lab whose bricks are plain dirs
#
# Results stay in CHAOS_DIR (default /var/tmp/lifeboat-chaos)/SCENARIO.TIME/: result.json,
# cycles.jsonl, writer.acks, writer.out, monitor.jsonl, check-*.out, run.log (and the lab's
# logs/ when the run failed). Figures: cycles, acknowledged, lost (0 with replication sync),
# stale-epoch acks (an ack under an epoch lower than one that had acknowledged earlier), samples
# with two primaries serving, recovery seconds (damage to the new primary's service answering
# from the client: redis PING, pg_isready) p50/p99/max; kill-brick and volume-full add per
# cycle the snapshot (id, seconds), the error of the one that did not fit and the heal time.
# Exit 0 only when lost, stale and two-primary counts are 0
# and every cycle went as the scenario says; 1 otherwise; 2 for bad arguments.
# On exit (also on failure or a signal) the writer and the monitor are killed by pid, cut links
# are healed, frozen processes continued, and a lab it brought up is removed (scripts/lab/down.sh).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
ROOT=$PWD
LB_SCRIPT=chaos/run.sh
. scripts/lib/common.sh
. scripts/lib/lab_scenario.sh

SCENARIOS=(kill-primary-host pause-primary partition-primary partition-peer kill-etcd-member restart-all kill-brick volume-full)
SCENARIO="" CYCLES=1 WORKLOAD=redis JSON=0 DIR="" PREFIX=lab BRICK_SIZE=""
bad() { echo "$LB_SCRIPT: $*" >&2 && exit 2; }
while [ "$#" -gt 0 ]; do
    case "$1" in
        --scenario) SCENARIO=${2:-} && shift 2 || bad "--scenario needs a name (${SCENARIOS[*]})" ;;
        --cycles) CYCLES=${2:-} && shift 2 || bad "--cycles needs a number" ;;
        --workload) WORKLOAD=${2:-} && shift 2 || bad "--workload needs redis or postgres" ;;
        --json) JSON=1 && shift ;;
        --lab) DIR=${2:-} && shift 2 || bad "--lab needs a dir" ;;
        --prefix) PREFIX=${2:-} && shift 2 || bad "--prefix needs a name" ;;
        --brick-size) BRICK_SIZE=${2:-} && shift 2 || bad "--brick-size needs a size like 1G" ;;
        -h | --help) usage && exit 0 ;;
        *) bad "unknown argument '$1' (see --help)" ;;
    esac
done
[ -n "$SCENARIO" ] || bad "--scenario is missing: one of ${SCENARIOS[*]}"
[[ " ${SCENARIOS[*]} " == *" $SCENARIO "* ]] || bad "unknown scenario '$SCENARIO': use one of ${SCENARIOS[*]}"
is_positive "$CYCLES" || bad "--cycles must be a positive number, not '$CYCLES'"
case "$WORKLOAD" in
    redis | postgres) ;;
    *) bad "unknown workload '$WORKLOAD': use redis or postgres" ;;
esac
if [ -n "$BRICK_SIZE" ]; then
    m="$(lab_size_mib "$BRICK_SIZE")" && [ "$m" -ge "$LAB_BRICK_MIN_MIB" ] ||
        bad "--brick-size must be a size of at least ${LAB_BRICK_MIN_MIB}M like 512M or 2G (M or G), not '$BRICK_SIZE'"
fi
[ "$SCENARIO" = volume-full ] && BRICK_SIZE=${BRICK_SIZE:-4G} # sparse: room for 50 cycles (~20 MB each) costs nothing
DIR="$(realpath -m "${DIR:-$ROOT/lab}")"
require_root "the lab's namespaces, signals to its processes" "$@"

RUN="${CHAOS_DIR:-/var/tmp/lifeboat-chaos}/$SCENARIO.$(date +%Y%m%d-%H%M%S).$$"
mkdir -p "$RUN" || bad "cannot create $RUN (set CHAOS_DIR)"
LS_WORK=$RUN
exec 3>&2 2> >(tee -a "$RUN/run.log" >&3)
say() { log "chaos: $*"; }
W=$WORKLOAD
ACKS="$RUN/writer.acks"
CYCLES_LOG="$RUN/cycles.jsonl"
: >"$CYCLES_LOG"
: >"$ACKS"
WRITER="" MONITOR="" BROUGHT_UP=0 STOPPED=() CUT=() BALLAST_HOST=""

# ---------------------------------------------------------------- cleanup (EXIT trap)

cleanup() {
    local rc=$? p i
    trap - EXIT INT TERM
    touch "$RUN/writer.stop" "$RUN/monitor.stop"
    for p in "$WRITER" "$MONITOR"; do
        [ -n "$p" ] && pid_alive "$p" && { wait_gone "$p" 5 || lb_kill_pid "$p"; }
    done
    for p in "${STOPPED[@]+"${STOPPED[@]}"}"; do kill -CONT "$p" 2>/dev/null; done
    for i in "${CUT[@]+"${CUT[@]}"}"; do lab_link_set "$i" up 2>/dev/null; done
    [ -n "$BALLAST_HOST" ] && remove_ballast
    if [ "$BROUGHT_UP" = 1 ]; then
        [ "$rc" != 0 ] && [ -d "$DIR/logs" ] && cp -a "$DIR/logs" "$RUN/lab-logs" 2>/dev/null
        say "removing the lab it brought up: scripts/lab/down.sh --dir $DIR"
        scripts/lab/down.sh --dir "$DIR" >"$RUN/down.out" 2>&1 || {
            say "scripts/lab/down.sh failed: $(tail -n 1 "$RUN/down.out")"
            [ "$rc" = 0 ] && rc=1
        }
    fi
    say "results in $RUN"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- the lab

lab_is_up() {
    local i
    lab_load_env "$DIR" && [ -f "$DIR/lab.json" ] || return 1
    for ((i = 1; i <= LAB_HOSTS; i++)); do
        lab_pid_in_host "$(lab_pid "$i" agent)" "$i" || return 1
        lab_client curl -sf -m 3 "$(lab_api "$i")/livez" >/dev/null 2>&1 || return 1
    done
}
if lab_is_up; then
    say "using the running lab in $DIR (prefix $LAB_PREFIX, $LAB_HOSTS hosts, bricks ${LAB_BRICK_SIZE:-plain dirs})"
    if [ "$SCENARIO" = volume-full ] && [ -z "$LAB_BRICK_SIZE" ]; then
        echo "$LB_SCRIPT: volume-full needs bricks of a bounded size, and the running lab in $DIR has plain-dir bricks (as big as the file system under them): take it down (scripts/lab/down.sh --dir $DIR) and let run.sh bring one up, or bring it up with scripts/lab/up.sh --brick-size 4G" >&2
        exit 2
    fi
else
    UP_ARGS=(--dir "$DIR" --prefix "$PREFIX")
    [ -n "$BRICK_SIZE" ] && UP_ARGS+=(--brick-size "$BRICK_SIZE")
    say "bringing the lab up: scripts/lab/up.sh ${UP_ARGS[*]}"
    BROUGHT_UP=1
    scripts/lab/up.sh "${UP_ARGS[@]}" >"$RUN/up.json" 2>"$RUN/up.err" ||
        { say "scripts/lab/up.sh failed: $(tail -n 2 "$RUN/up.err" | tr '\n' ' ')" && exit 1; }
    lab_load_env "$DIR" || { say "no $DIR/lab.env after up.sh" && exit 1; }
fi
REPO_DIR="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["volume"]["repository"])' "$DIR/lab.json" 2>/dev/null)"
REPO_DIR=${REPO_DIR:-$LAB_MOUNT/repo}
TTL="$(sed -n 's/^ *lease_ttl: *\([0-9.]*\)s$/\1/p' "$(lab_hdir 1)/agent.yaml" | head -n 1)"
TTL=${TTL:-3}
PORT=$LAB_REDIS_PORT
[ "$W" = postgres ] && PORT=$LAB_PG_PORT
PGC="$ROOT/scripts/chaos/pg_client.py"

# ---------------------------------------------------------------- helpers

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# status_inside I FIELD...: workload W's fields as host I itself sees them (from its own namespace)
status_inside() { timeout 5 ip netns exec "$(lab_netns "$1")" python3 "$LS_FC" status --timeout 1 --workload "$W" "$(lab_api "$1")" "${@:2}" 2>/dev/null; }
answers() {
    if [ "$W" = redis ]; then ls_pong "$1"; else
        timeout 5 ip netns exec "$LAB_CLIENT" "$LAB_PGBIN/pg_isready" -q -h "$(lab_addr "$1")" -p "$PORT" -U postgres -d postgres
    fi
}
# svc_wait_answering I SECONDS: the service on host I answers (polled every 0.1 s)
svc_wait_answering() { WAIT_POLL=0.1 wait_until "$2" answers "$1"; }
# freeze_tree PID: SIGSTOP of PID and every descendant (remembered for the cleanup); sets FROZEN
freeze_tree() {
    kill -STOP "$1" 2>/dev/null
    mapfile -t FROZEN < <(lab_descendants "$1")
    kill -STOP "${FROZEN[@]+"${FROZEN[@]}"}" 2>/dev/null
    FROZEN=("$1" "${FROZEN[@]+"${FROZEN[@]}"}")
    STOPPED+=("${FROZEN[@]}")
}
thaw() {
    local p
    for p; do kill -CONT "$p" 2>/dev/null; done
    STOPPED=()
}
cut_link() { lab_link_set "$1" down && CUT+=("$1"); }
heal_link() { lab_link_set "$1" up && CUT=(); }
# daemon_again I NAME ARGV...: a lab process restarted like up.sh starts it (own session, clean
# environment, host I's namespaces, log appended, pid file rewritten)
daemon_again() {
    local i=$1 name=$2
    shift 2
    echo "=== $(date '+%F %T') restarted by chaos/run.sh" >>"$(lab_logdir "$i")/$name.log"
    setsid env -i PATH="$LAB_CLEAN_PATH" HOME=/root LANG=C.UTF-8 \
        nsenter --mount="$(lab_mntns "$i")" --net="/run/netns/$(lab_netns "$i")" -- "$@" \
        >>"$(lab_logdir "$i")/$name.log" 2>&1 </dev/null &
    echo "$!" >"$(lab_pidfile "$i" "$name")"
    disown "$!" # the lab's, not this run's: lab/down.sh ends it
}
# argv_of PID: its command line, one argument a line
argv_of() { tr '\0' '\n' <"/proc/$1/cmdline"; }
# brick_pid_now I: the pid of host I's running brick process (glusterfsd), if any
brick_pid_now() {
    local pid
    for pid in $(lab_pids_in_net "$(lab_netns "$1")"); do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = glusterfsd ] || continue
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$(lab_brick "$1")" && echo "$pid" && return 0
    done
    return 1
}
# pid_reaped PID: no /proc entry for PID (not even a zombie)
pid_reaped() { [ ! -e "/proc/$1" ]; }
# brick_restart I: glusterd of host I starts its brick again (volume start force); pid file
# updated. The killed brick must be reaped first: glusterd takes a pid file whose pid still
# has a /proc entry (a zombie: bricks are children of PID 1, which reaps them a few seconds
# late here) for a running brick and starts nothing. The new process may appear after the
# command returns; a second start is asked for when none did within 15 s.
brick_restart() {
    local i=$1 old try
    old="$(lab_pid "$i" brick)"
    [ -z "$old" ] || wait_until 30 pid_reaped "$old" || return 1
    for try in 1 2; do
        lab_in "$i" timeout -k 5 60 gluster --mode=script volume start "$LAB_VOLUME" force >>"$RUN/gluster.out" 2>&1 || return 1
        wait_until 15 brick_pid_now "$i" >/dev/null && break
        [ "$try" = 2 ] && return 1
    done
    brick_pid_now "$i" >"$(lab_pidfile "$i" brick)"
}
# wipe_disk I: host I's workload dirs are gone: the dead FUSE data dirs detached inside the
# host, backing, journal and data dirs deleted, an empty backing dir made again
wipe_disk() {
    local i=$1 w H
    H="$(lab_hdir "$i")"
    for w in "${LAB_WORKLOADS[@]}"; do
        lab_in "$i" umount -l "$H/$w/data" 2>/dev/null
        rm -rf "$H/$w/backing" "$H/$w/journal" "$H/$w/data"
        mkdir -p "$H/$w/backing" && chmod 755 "$H/$w/backing"
    done
}
# volume_healed: every brick connected, no entry pending heal or in split-brain (asked on
# h1; entries "possibly healing" are files being written, left out); the answer in HEAL_INFO
volume_healed() {
    HEAL_INFO="$(lab_in 1 timeout -k 5 30 gluster --mode=script volume heal "$LAB_VOLUME" info summary 2>&1)" || return 1
    [ "$(grep -c '^Status: Connected' <<<"$HEAL_INFO")" = 3 ] &&
        [ -z "$(sed -n 's/^Number of entries in \(heal pending\|split-brain\): *//p' <<<"$HEAL_INFO" | grep -vx 0)" ]
}
# wait_healed SECONDS: volume_healed, with an index heal (`gluster volume heal`) asked for at
# once and every 10 s: self-heal daemons crawl on their own only every cluster.heal-timeout
# (10 s in a lab from up.sh, 600 s by default), and a directory a host missed while cut off
# (repo/epochs/W) stays pending until then
wait_healed() {
    local end=$(($(date +%s) + $1)) next=0
    while :; do
        volume_healed && return 0
        [ "$(date +%s)" -ge "$end" ] && return 1
        if [ "$(date +%s)" -ge "$next" ]; then
            lab_in 1 timeout -k 5 30 gluster --mode=script volume heal "$LAB_VOLUME" >>"$RUN/gluster.out" 2>&1
            next=$(($(date +%s) + 10))
        fi
        sleep 1
    done
}
# role_of I: host I's role as the client sees it ("down" when it does not answer)
role_of() { local r; r="$(ls_status "$1" "$W" role)"; echo "${r:-down}"; }
is_peer() { [ "$(role_of "$1")" = peer ]; }
peer_connected() { [ "$(ls_status "$1" "$W" "peers[h$2].connected")" = true ]; }
writer_moves() { ls_acks_above "$ACKS" "$1"; }

# wait_failover OLD OLD_EPOCH T_EVENT: a new primary (not OLD) with a higher epoch whose service
# answers; sets NEW NEW_EPOCH RECOVERY (seconds from T_EVENT); 1 after 60 s
wait_failover() {
    NEW="" NEW_EPOCH="" RECOVERY=""
    ls_wait_primary 60 "$W" $(($2 + 1)) "$1" || { problem "no new primary within 60 s ($WAIT_SEEN)" && return 1; }
    svc_wait_answering "$PRIMARY" 30 || { problem "the new primary h$PRIMARY's $W does not answer within 30 s" && return 1; }
    RECOVERY=$(secs "$3" "$(now)")
    NEW=$PRIMARY NEW_EPOCH=$PRIMARY_EPOCH
    say "h$NEW is primary (epoch $NEW_EPOCH), $W answering $RECOVERY s after the damage"
}
# wait_rejoin I T: host I says peer and the primary NEW sees it connected; sets REJOINED (s from T)
wait_rejoin() {
    REJOINED=""
    if wait_until 90 is_peer "$1" && wait_until 60 peer_connected "$NEW" "$1"; then
        REJOINED=$(secs "$2" "$(now)")
        say "h$1 rejoined as a peer ($REJOINED s after it came back)"
    else
        problem "h$1 does not rejoin as a peer connected to h$NEW within 150 s (role $(role_of "$1"))"
    fi
}
# same_primary P EPOCH WHAT: still one primary, P, at EPOCH (no failover happened)
same_primary() {
    if ls_wait_primary 30 "$W" 0 -1 && [ "$PRIMARY" = "$1" ] && [ "$PRIMARY_EPOCH" = "$2" ]; then
        NEW=$1 NEW_EPOCH=$2
    else
        problem "a failover during $3: primary h${PRIMARY:-none} epoch ${PRIMARY_EPOCH:-none}, was h$1 epoch $2"
        NEW=${PRIMARY:-$1} NEW_EPOCH=${PRIMARY_EPOCH:-$2}
    fi
}
FAILS=()
problem() {
    FAILS+=("$*")
    say "PROBLEM: $*"
}

# ---------------------------------------------------------------- the scenarios
# each gets P and EP (the primary and its epoch) and sets NEW NEW_EPOCH, and RECOVERY FENCE
# REJOINED DIVERGED SNAPSHOT SNAPSHOT_S SNAP_ERROR HEALED_S NOTE where they apply

sc_kill_primary_host() {
    local AP EPID BPID t0 etcd_argv=() agent_argv=() pid
    AP="$(lab_pid "$P" agent)" EPID="" BPID=""
    lab_pid_in_host "$AP" "$P" || { problem "the agent pid file of h$P names no running agent" && return; }
    mapfile -t agent_argv < <(argv_of "$AP")
    if lab_is_etcd_host "$P"; then
        EPID="$(lab_pid "$P" etcd)"
        lab_pid_in_host "$EPID" "$P" && mapfile -t etcd_argv < <(argv_of "$EPID")
    fi
    lab_is_brick_host "$P" && BPID="$(lab_pid "$P" brick)"
    say "h$P lost: link down, then SIGKILL of its agent ($AP) and what runs under it, etcd member (${EPID:-none}), brick (${BPID:-none})"
    cut_link "$P"
    freeze_tree "$AP"
    kill -KILL "${FROZEN[@]}" $EPID $BPID 2>/dev/null
    T_EVENT=$(now)
    STOPPED=()
    echo "=== $(date '+%F %T') SIGKILLed with its link down by chaos/run.sh (host lost)" >>"$(lab_logdir "$P")/agent.log"
    for pid in "${FROZEN[@]}" $EPID $BPID; do wait_until 10 pid_gone "$pid" || problem "pid $pid of h$P still runs 10 s after SIGKILL"; done
    wipe_disk "$P"
    wait_failover "$P" "$EP" "$T_EVENT" || return
    wait_until 30 writer_moves $(($(ls_acks "$ACKS") + 20)) || problem "the writer does not carry on at h$NEW (20 acks within 30 s)"
    say "h$P comes back: link up, etcd member, brick and agent restarted on its empty disk"
    heal_link "$P"
    t0=$(now)
    [ "${#etcd_argv[@]}" -gt 0 ] && daemon_again "$P" etcd "${etcd_argv[@]}"
    if [ -n "$BPID" ]; then brick_restart "$P" || problem "the brick of h$P does not restart (gluster volume start force: $RUN/gluster.out)"; fi
    daemon_again "$P" agent "${agent_argv[@]}"
    wait_rejoin "$P" "$t0"
}

sc_pause_primary() {
    local AP t_thaw
    AP="$(lab_pid "$P" agent)"
    lab_pid_in_host "$AP" "$P" || { problem "the agent pid file of h$P names no running agent" && return; }
    freeze_tree "$AP"
    T_EVENT=$(now)
    say "h$P paused: SIGSTOP of its agent ($AP) and ${#FROZEN[@]} processes with it"
    wait_failover "$P" "$EP" "$T_EVENT"
    # past the TTL in any case, then the host wakes up
    t_thaw=$(awk -v a="$T_EVENT" -v t="$TTL" 'BEGIN { printf "%.3f", a + t + 1 }')
    while awk -v a="$t_thaw" -v b="$(now)" 'BEGIN { exit !(b < a) }'; do sleep 0.2; done
    say "h$P continues (SIGCONT) $(secs "$T_EVENT" "$(now)") s after the pause"
    thaw "${FROZEN[@]}"
    [ -n "$NEW" ] || return
    wait_until 30 writer_moves $(($(ls_acks "$ACKS") + 20)) || problem "the writer does not carry on at h$NEW (20 acks within 30 s)"
    wait_rejoin "$P" "$(now)"
}

# fenced I: host I, asked inside its own namespace, is no longer a serving primary
fenced() {
    local role state
    read -r role state < <(status_inside "$1" role service.state)
    [ -n "${role:-}" ] && { [ "$role" != primary ] || [ "$state" != running ]; }
}
# diverged_dirs I: the .diverged-* dirs under host I's dir
diverged_dirs() { find "$(lab_hdir "$1")" -maxdepth 3 -name '*.diverged-*' 2>/dev/null | wc -l; }
# diverged_seen I DIRS_BEFORE SINCE_LINE: what host I set aside this cycle (new .diverged-*
# dirs, "diverged" lines of its agent log after SINCE_LINE)
diverged_seen() {
    local lines
    lines="$(tail -n +"$(($3 + 1))" "$(lab_logdir "$1")/agent.log" 2>/dev/null | grep -c 'diverged')"
    echo "h$1: $(($(diverged_dirs "$1") - $2)) new .diverged- dirs, $lines log lines"
}

# status_across_cut CUT ASKED: `lifeboat status --json` from the client, asking host ASKED,
# while host CUT's link is down: it must answer (exit 0) within its bounds (5 s for ASKED,
# 2 s per peer, 30 s here at most), with CUT listed as unreachable and ASKED as primary
status_across_cut() {
    local t out rc took
    t=$(now)
    out="$(timeout -k 5 30 ip netns exec "$LAB_CLIENT" "$LAB_DIR/bin/lifeboat" status --agent "$(lab_api "$2")" --json 2>&1)"
    rc=$?
    took=$(secs "$t" "$(now)")
    if [ "$rc" != 0 ]; then
        problem "lifeboat status --agent h$2 with h$1 cut off exited $rc after $took s: $(tail -n 1 <<<"$out")"
        return
    fi
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])
hosts = {h["host"]: h for h in d["hosts"]}
cut, asked = hosts.get("h" + sys.argv[2]), hosts.get("h" + sys.argv[3])
sys.exit(0 if cut is not None and not cut["reachable"] and asked is not None and asked["reachable"] else 1)' "$out" "$1" "$2" ||
        { problem "lifeboat status with h$1 cut off does not list h$1 unreachable and h$2 reachable: $(head -c 300 <<<"$out")" && return; }
    say "lifeboat status --agent h$2 answered in $took s with h$1 unreachable"
    NOTE="${NOTE:+$NOTE; }status across the cut: $took s"
}

sc_partition_primary() {
    local t0 since dirs
    since="$(wc -l <"$(lab_logdir "$P")/agent.log")"
    dirs="$(diverged_dirs "$P")"
    say "h$P partitioned: its link $(lab_link "$P") down"
    cut_link "$P"
    T_EVENT=$(now)
    if WAIT_POLL=0.2 wait_until $((${TTL%.*} + 10)) fenced "$P"; then
        FENCE=$(secs "$T_EVENT" "$(now)")
        say "h$P fenced itself $FENCE s after the cut: $(status_inside "$P" role service.state | tr '\n' ' ')"
        awk -v f="$FENCE" -v t="$TTL" 'BEGIN { exit !(f <= t + 2) }' || problem "h$P fenced after $FENCE s, more than TTL $TTL s + 2 s"
    else
        problem "h$P still serves as primary $(secs "$T_EVENT" "$(now)") s after the cut (TTL $TTL s) ($(status_inside "$P" role service.state))"
    fi
    wait_failover "$P" "$EP" "$T_EVENT" || { heal_link "$P"; return; }
    wait_until 30 writer_moves $(($(ls_acks "$ACKS") + 20)) || problem "the writer does not carry on at h$NEW (20 acks within 30 s)"
    status_across_cut "$P" "$NEW"
    heal_link "$P"
    t0=$(now)
    say "h$P's link is up again"
    wait_rejoin "$P" "$t0"
    DIVERGED="$(diverged_seen "$P" "$dirs" "$since")"
    say "set aside: $DIVERGED"
}

sc_partition_peer() {
    local Q i
    for ((i = 1; i <= LAB_HOSTS; i++)); do [ "$i" != "$P" ] && Q=$i && break; done
    say "peer h$Q partitioned for $TTL s + 3 s"
    cut_link "$Q"
    T_EVENT=$(now)
    sleep "$(awk -v t="$TTL" 'BEGIN { print t + 3 }')"
    wait_until 20 writer_moves $(($(ls_acks "$ACKS") + 20)) || problem "the writer stalls while peer h$Q is cut off"
    same_primary "$P" "$EP" "the partition of peer h$Q"
    heal_link "$Q"
    wait_rejoin "$Q" "$(now)"
}

sc_kill_etcd_member() {
    local EPID argv=()
    lab_is_etcd_host "$P" || { problem "h$P holds no etcd member" && return; }
    EPID="$(lab_pid "$P" etcd)"
    lab_pid_in_host "$EPID" "$P" || { problem "the etcd pid file of h$P names no running etcd" && return; }
    mapfile -t argv < <(argv_of "$EPID")
    say "SIGKILL of the etcd member on the primary h$P ($EPID) for 2 x $TTL s + 2 s"
    kill -KILL "$EPID"
    T_EVENT=$(now)
    wait_until 10 pid_gone "$EPID" || problem "etcd $EPID still runs"
    sleep "$(awk -v t="$TTL" 'BEGIN { print 2 * t + 2 }')"
    same_primary "$P" "$EP" "the loss of h$P's etcd member"
    sleep 1.5 # a killed member needs more than 1 s to free its ports
    daemon_again "$P" etcd "${argv[@]}"
    wait_until 30 eval 'lab_client curl -sf -m 2 "$(lab_etcd_url "$P")/health" 2>/dev/null | grep -q true' ||
        problem "the etcd member of h$P is not healthy within 30 s of its restart"
}

sc_restart_all() {
    local i AP all=() argvs=() n
    for ((i = 1; i <= LAB_HOSTS; i++)); do
        AP="$(lab_pid "$i" agent)"
        lab_pid_in_host "$AP" "$i" || { problem "no running agent on h$i" && return; }
        argvs[i]="$(argv_of "$AP" | tr '\n' '\001')"
        freeze_tree "$AP"
        all+=("${FROZEN[@]}")
    done
    say "every agent SIGKILLed at once (${#all[@]} processes with their services), then restarted"
    kill -KILL "${all[@]}" 2>/dev/null
    T_EVENT=$(now)
    STOPPED=()
    for i in "${all[@]}"; do wait_until 10 pid_gone "$i" || problem "pid $i still runs 10 s after SIGKILL"; done
    for ((i = 1; i <= LAB_HOSTS; i++)); do
        for n in "${LAB_WORKLOADS[@]}"; do lab_in "$i" umount -l "$(lab_hdir "$i")/$n/data" 2>/dev/null; done
        IFS=$'\001' read -r -a AV <<<"${argvs[i]}"
        daemon_again "$i" agent "${AV[@]}"
    done
    if ls_wait_primary 120 "$W" "$EP" -1 && svc_wait_answering "$PRIMARY" 30; then
        RECOVERY=$(secs "$T_EVENT" "$(now)") NEW=$PRIMARY NEW_EPOCH=$PRIMARY_EPOCH
        say "h$NEW is the one primary (epoch $NEW_EPOCH), $W answering $RECOVERY s after the kill"
    else
        problem "not exactly one primary with $W answering within 150 s of the restart ($WAIT_SEEN)"
        return
    fi
    for ((i = 1; i <= LAB_HOSTS; i++)); do [ "$i" = "$NEW" ] || wait_rejoin "$i" "$T_EVENT"; done
}

# ---------------------------------------------------------------- snapshots and the volume

# snapshot_ids I: the committed snapshots as host I sees the repository: the manifests' names
# under snapshots/, read without the repository's lock (a full volume cannot take one)
snapshot_ids() {
    lab_in "$1" timeout -k 5 30 find "$REPO_DIR/snapshots" -maxdepth 1 -type f -printf '%f\n' 2>/dev/null |
        grep -E '^[0-9a-f]{64}$' | sort
}
# repo_temps I: the temp files (.tmp-*) in the repository as host I sees it
repo_temps() { lab_in "$1" timeout -k 5 30 find "$REPO_DIR" -name '.tmp-*' -printf '%P\n' 2>/dev/null | sort; }
# take_snapshot I NAME: `lifeboat backup --agent` for W on host I, from the client namespace
# (output in snapshot-cycleC-NAME.out/.err); sets SNAP_RC, SNAP_ID (the last stdout line when
# it is an id), SNAP_ERR (stderr in one line), SNAP_S
take_snapshot() {
    local t0 out="$RUN/snapshot-cycle$c-$2"
    t0=$(now)
    timeout -k 5 180 ip netns exec "$LAB_CLIENT" "$LAB_DIR/bin/lifeboat" backup --agent "$(lab_api "$1")" --workload "$W" \
        >"$out.out" 2>"$out.err"
    SNAP_RC=$?
    SNAP_S=$(secs "$t0" "$(now)")
    SNAP_ID="$(tail -n 1 "$out.out" | grep -E '^[0-9a-f]{64}$')"
    SNAP_ERR="$(tr '\n' ' ' <"$out.err" | sed 's/ *$//')"
}
# snapshot_committed I ID BEFORE: ID is a manifest in the repository now and was not in BEFORE
snapshot_committed() { [ -n "$2" ] && snapshot_ids "$1" | grep -qx "$2" && ! grep -qx "$2" <<<"$3"; }
# expect_snapshot I NAME BEFORE WHEN: take_snapshot I NAME must commit a new manifest (one not
# in BEFORE, the ids before it); sets SNAPSHOT SNAPSHOT_S, else a problem naming WHEN
expect_snapshot() {
    take_snapshot "$1" "$2"
    if [ "$SNAP_RC" != 0 ]; then
        problem "the snapshot on h$1 $4 failed (exit $SNAP_RC): $SNAP_ERR"
    elif snapshot_committed "$1" "$SNAP_ID" "$3"; then
        SNAPSHOT="${SNAP_ID:0:12}" SNAPSHOT_S=$SNAP_S
        say "snapshot $SNAPSHOT committed $4 ($SNAP_S s)"
    else
        problem "the snapshot on h$1 $4 answered '${SNAP_ID:-no id}', which is no new manifest in $REPO_DIR/snapshots"
    fi
}
# volume_avail I: the bytes free on the volume as host I's mount sees it
volume_avail() { lab_in "$1" df -B1 --output=avail "$LAB_MOUNT" 2>/dev/null | tail -n 1 | tr -d ' '; }

VF_ROOM_MIB=1 VF_BULK_MIB=4
BALLAST="$LAB_MOUNT/chaos-ballast" # on the volume, beside the repository, not in it
# fill_volume Q: the ballast file, written through host Q's mount: allocated up to 16 MiB short
# of the free space, appended to until ENOSPC (FULL_ERR: what dd said), then cut back by
# VF_ROOM_MIB; sets ROOM (bytes free then). 1 when the volume did not fill.
fill_volume() {
    local q=$1 avail
    BALLAST_HOST=$q FULL_ERR="" ROOM=""
    avail="$(volume_avail "$q")"
    is_int "$avail" || { problem "no free space figure for the volume on h$q" && return 1; }
    if [ "$avail" -gt $((16 << 20)) ]; then
        lab_in "$q" fallocate -l $((avail - (16 << 20))) "$BALLAST" 2>"$RUN/ballast.err" ||
            { problem "fallocate of the ballast on h$q: $(tr '\n' ' ' <"$RUN/ballast.err")" && return 1; }
    fi
    if lab_in "$q" timeout -k 5 120 dd if=/dev/zero of="$BALLAST" bs=1M oflag=append conv=notrunc,fsync status=none 2>"$RUN/ballast.err"; then
        problem "dd into the ballast on h$q ended without an error: the volume did not fill" && return 1
    fi
    FULL_ERR="$(head -n 1 "$RUN/ballast.err")"
    grep -q 'No space left on device' "$RUN/ballast.err" ||
        { problem "dd into the ballast on h$q failed, but not with ENOSPC: $FULL_ERR" && return 1; }
    lab_in "$q" truncate -s "-${VF_ROOM_MIB}M" "$BALLAST" || { problem "cannot cut the ballast back on h$q" && return 1; }
    ROOM="$(volume_avail "$q")"
}
remove_ballast() {
    lab_in "$BALLAST_HOST" rm -f "$BALLAST" || return 1
    BALLAST_HOST=""
}
# put_bulk I: VF_BULK_MIB MiB of random bytes written into W on host I (one redis key, one
# PostgreSQL row), acknowledged by the service: a snapshot that needs more than the room left
BULK_KEY="chaos$$-bulk"
put_bulk() {
    local out
    if [ "$W" = redis ]; then
        head -c "${VF_BULK_MIB}M" /dev/urandom >"$RUN/bulk.bin"
        out="$(timeout -k 5 60 ip netns exec "$LAB_CLIENT" redis-cli -h "$(lab_addr "$1")" -p "$PORT" -x SET "$BULK_KEY" <"$RUN/bulk.bin" 2>&1)"
        rm -f "$RUN/bulk.bin"
        [ "$out" = OK ]
    else
        out="$(timeout -k 5 60 ip netns exec "$LAB_CLIENT" "$LAB_PGBIN/psql" -h "$(lab_addr "$1")" -p "$PORT" -U postgres -d postgres \
            -v ON_ERROR_STOP=1 -qAt -c "CREATE TABLE IF NOT EXISTS chaos_bulk (b bytea)" \
            -c "INSERT INTO chaos_bulk SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, $((VF_BULK_MIB << 16)))" 2>&1)"
    fi || { problem "writing $VF_BULK_MIB MiB into $W on h$1: $out" && return 1; }
}
# drop_bulk I: the bulk gone from the service again (its bytes stay in the snapshots)
drop_bulk() {
    if [ "$W" = redis ]; then
        timeout -k 5 30 ip netns exec "$LAB_CLIENT" redis-cli -h "$(lab_addr "$1")" -p "$PORT" DEL "$BULK_KEY" >/dev/null
    else
        timeout -k 5 30 ip netns exec "$LAB_CLIENT" "$LAB_PGBIN/psql" -h "$(lab_addr "$1")" -p "$PORT" -U postgres -d postgres \
            -qAt -c "TRUNCATE chaos_bulk" >/dev/null
    fi
}
# repo_check I: `lifeboat check` of the repository on host I (output in
# repo-check-cycleC.out); NOTE gets its last line; a problem unless it exits 0
repo_check() {
    local out rc
    out="$(lab_in "$1" timeout -k 5 300 "$LAB_DIR/bin/lifeboat" check --repo "$REPO_DIR" 2>&1)"
    rc=$?
    printf '%s\n' "$out" >"$RUN/repo-check-cycle$c.out"
    NOTE="${NOTE:+$NOTE; }lifeboat check: $(tail -n 1 <<<"$out")"
    [ "$rc" = 0 ] || problem "lifeboat check --repo $REPO_DIR on h$1: exit $rc: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
}
# heal_pending: the entries pending heal over every brick that answers (from HEAL_INFO)
heal_pending() {
    volume_healed
    sed -n 's/^Number of entries in heal pending: *\([0-9][0-9]*\)$/\1/p' <<<"$HEAL_INFO" | awk '{ n += $1 } END { print n + 0 }'
}

sc_kill_brick() {
    local BPID before t0 pending
    lab_is_brick_host "$P" || { problem "h$P holds no brick (the bricks are on h1-h3)" && return; }
    BPID="$(lab_pid "$P" brick)"
    lab_pid_in_host "$BPID" "$P" || { problem "the brick pid file of h$P names no running glusterfsd" && return; }
    before="$(snapshot_ids "$P")"
    say "SIGKILL of the brick on the primary h$P (glusterfsd $BPID); its agent, etcd member and glusterd run on"
    kill -KILL "$BPID"
    T_EVENT=$(now)
    wait_until 10 pid_gone "$BPID" || problem "glusterfsd $BPID of h$P still runs 10 s after SIGKILL"
    wait_until 30 writer_moves $(($(ls_acks "$ACKS") + 20)) || problem "the writer stalls with h$P's brick down (20 acks within 30 s)"
    expect_snapshot "$P" brick-down "$before" "with h$P's brick down"
    brick_pid_now "$P" >/dev/null && problem "h$P's brick ran again before the snapshot was checked"
    pending="$(heal_pending)"
    NOTE="heal pending with the brick down: $pending"
    same_primary "$P" "$EP" "the loss of h$P's brick"
    say "h$P's brick restarts (gluster volume start force); $pending entries pending heal"
    brick_restart "$P" || { problem "the brick of h$P does not restart (gluster volume start force: $RUN/gluster.out)" && return; }
    t0=$(now)
    if wait_healed 180; then
        HEALED_S=$(secs "$t0" "$(now)")
        say "the volume healed $HEALED_S s after the brick's restart"
    else
        problem "the volume is not healed within 180 s of h$P's brick restart"
    fi
    wait_until 30 writer_moves $(($(ls_acks "$ACKS") + 20)) || problem "the writer does not carry on after the heal (20 acks within 30 s)"
    repo_check "$P"
}

# space_back I BYTES: host I's mount shows at least half of BYTES free
space_back() {
    local a
    a="$(volume_avail "$1")"
    is_int "$a" && [ "$a" -ge $(($2 / 2)) ]
}

sc_volume_full() {
    local Q i before temps t0 new_temps avail0
    for ((i = 1; i <= LAB_HOSTS; i++)); do [ "$i" != "$P" ] && Q=$i && break; done
    before="$(snapshot_ids "$P")"
    temps="$(repo_temps "$P")"
    avail0="$(volume_avail "$P")"
    is_int "$avail0" || avail0=0
    put_bulk "$P" || return
    say "$VF_BULK_MIB MiB of random bytes written into $W on h$P; filling the volume from h$Q ($BALLAST)"
    t0=$(now)
    if ! fill_volume "$Q"; then
        remove_ballast || problem "cannot remove the ballast $BALLAST on h$Q"
        return
    fi
    T_EVENT=$(now)
    say "volume full after $(secs "$t0" "$T_EVENT") s (dd: $FULL_ERR); cut back to $ROOM bytes free"
    take_snapshot "$P" full
    if [ "$SNAP_RC" = 0 ]; then
        problem "the snapshot on the full volume ($ROOM bytes free, $VF_BULK_MIB MiB new) reported success: ${SNAP_ID:-no id}"
    else
        SNAP_ERROR="exit $SNAP_RC: $SNAP_ERR"
        say "the snapshot on the full volume failed in $SNAP_S s ($SNAP_ERROR)"
        grep -qiE 'no space|ENOSPC|space left' <<<"$SNAP_ERR" || problem "the failed snapshot's error does not say the volume is full: $SNAP_ERR"
    fi
    [ "$(snapshot_ids "$P")" = "$before" ] ||
        problem "the snapshot manifests changed on the full volume: $(comm -13 <(echo "$before") <(snapshot_ids "$P") | tr '\n' ' ')"
    new_temps="$(comm -13 <(echo "$temps") <(repo_temps "$P"))"
    [ -z "$new_temps" ] || problem "temp files left in the repository by the failed snapshot: $(echo "$new_temps" | tr '\n' ' ')"
    answers "$P" || problem "$W on h$P does not answer on the full volume"
    wait_until 30 writer_moves $(($(ls_acks "$ACKS") + 20)) || problem "the writer stalls on the full volume (20 acks within 30 s)"
    lab_pid_in_host "$(lab_pid "$P" agent)" "$P" || problem "the agent of h$P is gone after the failed snapshot"
    for i in 1 2 3; do brick_pid_now "$i" >/dev/null || problem "the brick of h$i went down on the full volume"; done
    same_primary "$P" "$EP" "the full volume"
    remove_ballast || { problem "cannot remove the ballast $BALLAST on h$Q" && return; }
    # the space comes back when the bricks have let go of the file, not always at once (seen:
    # still full 4 s after the rm)
    t0=$(now)
    wait_until 60 space_back "$P" "$avail0" || problem "the volume is still full 60 s after the ballast's removal ($(volume_avail "$P") bytes free)"
    say "ballast removed: $(volume_avail "$P") bytes free after $(secs "$t0" "$(now)") s"
    expect_snapshot "$P" after "$(snapshot_ids "$P")" "after the ballast's removal"
    repo_check "$P"
    drop_bulk "$P" || problem "cannot drop the bulk from $W on h$P"
}

# ---------------------------------------------------------------- the run

check_now() {
    local host=$1 name=$2 out
    if [ "$W" = redis ]; then
        out="$(ls_fc check --host "$(lab_addr "$host")" --port "$PORT" --acks "$ACKS" 2>&1)"
    else
        out="$(timeout -k 5 180 ip netns exec "$LAB_CLIENT" python3 "$PGC" check --host "$(lab_addr "$host")" --port "$PORT" --acks "$ACKS" 2>&1)"
    fi
    printf '%s\n' "$out" >"$RUN/check-$name.out"
    CHECK_LOST="$(sed -n 's/^lost acknowledged writes: \([0-9][0-9]*\)$/\1/p' <<<"$out")"
    CHECK_ACKED="$(sed -n 's/^check: acked=\([0-9]*\) .*/\1/p' <<<"$out")"
    say "check ($name) on h$host: $(grep -E '^(check|missing|wrong)' <<<"$out" | tr '\n' ' ')"
}
record_cycle() {
    python3 -c 'import json, sys; print(json.dumps(dict(a.split("=", 1) for a in sys.argv[1:])))' "$@" >>"$CYCLES_LOG"
}

ls_wait_primary 60 "$W" 0 -1 || { say "no single primary for $W with its service running: $WAIT_SEEN" && exit 1; }
say "$SCENARIO x $CYCLES on $LAB_HOSTS hosts (prefix $LAB_PREFIX, lease TTL $TTL s): primary h$PRIMARY epoch $PRIMARY_EPOCH; results in $RUN"
MON_ARGS=()
for ((i = 1; i <= LAB_HOSTS; i++)); do MON_ARGS+=("h$i=$(lab_netns "$i")=$(lab_api "$i")"); done
python3 "$ROOT/scripts/chaos/monitor.py" --workload "$W" --out "$RUN/monitor.jsonl" --stop "$RUN/monitor.stop" \
    "${MON_ARGS[@]}" >"$RUN/monitor.out" 2>&1 </dev/null &
MONITOR=$!
if [ "$W" = redis ]; then
    ip netns exec "$LAB_CLIENT" python3 -u "$LS_FC" write --agents "$(ls_agents)" --port "$PORT" --workload "$W" \
        --acks "$ACKS" --detail --seconds 86400 --stop "$RUN/writer.stop" --timeout 3 --prefix "chaos$$" --seed "$RANDOM" \
        >"$RUN/writer.out" 2>&1 </dev/null &
else
    ip netns exec "$LAB_CLIENT" python3 -u "$PGC" write --agents "$(ls_agents)" --port "$PORT" \
        --acks "$ACKS" --seconds 86400 --stop "$RUN/writer.stop" --timeout 3 --prefix "chaos$$" --seed "$RANDOM" \
        >"$RUN/writer.out" 2>&1 </dev/null &
fi
WRITER=$!
wait_until 30 writer_moves 20 || { say "the writer gets no writes acknowledged: $(tail -n 3 "$RUN/writer.out")" && exit 1; }

ABORT=0
for ((c = 1; c <= CYCLES; c++)); do
    FAILS=() NEW="" NEW_EPOCH="" RECOVERY="" FENCE="" REJOINED="" DIVERGED="" CHECK_LOST="" CHECK_ACKED=""
    SNAPSHOT="" SNAPSHOT_S="" SNAP_ERROR="" HEALED_S="" NOTE=""
    if ! ls_wait_primary 60 "$W" 0 -1; then
        record_cycle cycle="$c" failures="no single primary before the cycle: $WAIT_SEEN"
        say "cycle $c: no single primary: $WAIT_SEEN; stopping"
        ABORT=1
        break
    fi
    P=$PRIMARY EP=$PRIMARY_EPOCH
    # a cycle starts on a healed volume: damage while self-heal of the last one still runs
    # can leave no good copy of a file on the surviving bricks (ENOTCONN for the new primary)
    t_heal=$(now)
    wait_healed 180 || {
        printf '%s\n' "$HEAL_INFO" >"$RUN/heal-info-cycle$c.out"
        lab_in 1 timeout -k 5 30 gluster --mode=script volume heal "$LAB_VOLUME" info >>"$RUN/heal-info-cycle$c.out" 2>&1
        problem "the volume is not healed within 180 s before the cycle ($RUN/heal-info-cycle$c.out)"
    }
    say "cycle $c: volume healed ($(secs "$t_heal" "$(now)") s)"
    sleep 2 # some writes on this primary first
    say "cycle $c/$CYCLES: $SCENARIO, primary h$P epoch $EP, $(ls_acks "$ACKS") acknowledged so far"
    "sc_${SCENARIO//-/_}"
    if [ -n "$NEW" ]; then check_now "$NEW" "cycle$c"; else check_now "$P" "cycle$c"; fi
    [ -n "$CHECK_LOST" ] || problem "the checker could not read $W ($RUN/check-cycle$c.out)"
    [ "${CHECK_LOST:-0}" = 0 ] || problem "$CHECK_LOST acknowledged writes lost"
    record_cycle cycle="$c" old="h$P" old_epoch="$EP" new="${NEW:+h$NEW}" new_epoch="$NEW_EPOCH" \
        recovery_s="$RECOVERY" fence_s="$FENCE" rejoined_s="$REJOINED" acked="$CHECK_ACKED" lost="$CHECK_LOST" \
        diverged="$DIVERGED" snapshot="$SNAPSHOT" snapshot_s="$SNAPSHOT_S" snapshot_error="$SNAP_ERROR" \
        healed_s="$HEALED_S" note="$NOTE" failures="$(printf '%s; ' "${FAILS[@]+"${FAILS[@]}"}" | sed 's/; $//')"
    if [ -z "$NEW" ]; then
        say "cycle $c: no primary after the damage; stopping"
        ABORT=1
        break
    fi
done

# the writer stops; every acknowledged key, read back from the primary
touch "$RUN/writer.stop" "$RUN/monitor.stop"
wait_gone "$WRITER" 30 || lb_kill_pid "$WRITER"
WRITER=""
wait_gone "$MONITOR" 10 || lb_kill_pid "$MONITOR"
MONITOR=""
say "$(tail -n 1 "$RUN/writer.out")"
FINAL_LOST=""
if ls_wait_primary 60 "$W" 0 -1; then
    check_now "$PRIMARY" final
    FINAL_LOST=$CHECK_LOST
else
    say "no single primary for the final check: $WAIT_SEEN"
fi
TALLY_ARGS=()
[ "$JSON" = 1 ] && TALLY_ARGS+=(--json)
python3 "$ROOT/scripts/chaos/tally.py" --scenario "$SCENARIO" --workload "$W" --cycles-log "$CYCLES_LOG" \
    --acks "$ACKS" --monitor "$RUN/monitor.jsonl" --final-lost "${FINAL_LOST:-unknown}" --json-out "$RUN/result.json" \
    "${TALLY_ARGS[@]+"${TALLY_ARGS[@]}"}"
rc=$?
[ "$ABORT" = 1 ] && rc=1
exit "$rc"
