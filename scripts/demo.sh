#!/usr/bin/env bash
# The main job on the embedded default: one machine, a local volume dir, the local
# coordinator. Three lifeboatd agents (h1 127.0.0.21, h2 127.0.0.22, h3 127.0.0.23; API :7440,
# journal stream :7441, redis :6391) share one "volume" dir (the repository and the lease
# dir). The primary's agent mounts the captured data dir and runs redis in it; the journal is
# streamed to the peers synchronously (replication sync, min_sync_peers 1, lease_ttl 2s).
#
#  1. the agents elect a primary, which starts redis;
#  2. a writer SETs distinct keys on the primary and logs every acknowledged one; after ~3 s a
#     snapshot is taken (`lifeboat backup --agent`), then ~3 s more writes;
#  3. the primary host dies: its agent and redis are SIGKILLed, its data dir unmounted, its
#     backing and journal dirs deleted (the disk is gone);
#  4. another agent takes the lease, loads the snapshot from the volume, the journal delta from
#     a peer, and starts redis; the writer carries on there, then stops;
#  5. every acknowledged write is checked on the new primary, and a summary is printed: writes
#     lost (must be 0), the recovery time part by part, and where the data came from.
#
#   sudo scripts/demo.sh
#
# Environment: DEMO_DIR (work dir, default ./lifeboat-demo; removed at the start, its logs are
# kept at the end), DEMO_SKIP_SETUP=1 (do not run scripts/setup.sh: no apt, no build).
# Exit 0 when no acknowledged write was lost, 1 otherwise or on failure, 2 when it cannot run.
set -uo pipefail
CALLER_DIR=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD

say() { echo "demo: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: must run as root (the agents mount FUSE file systems and bind loopback addresses): sudo scripts/demo.sh" >&2
    exit 2
fi

if [ "${DEMO_SKIP_SETUP:-0}" != 1 ]; then
    say "running scripts/setup.sh (packages and release build; DEMO_SKIP_SETUP=1 skips it)"
    scripts/setup.sh || {
        say "error: scripts/setup.sh failed"
        exit 2
    }
fi

for tool in redis-server redis-cli python3 awk; do
    command -v "$tool" >/dev/null || {
        say "error: $tool is not installed (scripts/setup.sh installs it)"
        exit 2
    }
done
[ -c /dev/fuse ] || {
    say "error: /dev/fuse is missing (FUSE is needed to capture the data dir)"
    exit 2
}
for b in lifeboat lifeboatd; do
    [ -x ".build/release/$b" ] || {
        say "error: .build/release/$b is missing (run scripts/setup.sh)"
        exit 2
    }
done

HOSTS=(h1 h2 h3)
ADDRS=(127.0.0.21 127.0.0.22 127.0.0.23)
API_PORT=7440
PEER_PORT=7441
REDIS_PORT=6391
FC="$ROOT/scripts/tests/failover_client.py"
WORK="${DEMO_DIR:-$ROOT/lifeboat-demo}"
case "$WORK" in /*) ;; *) WORK="$CALLER_DIR/$WORK" ;; esac
WORK="$(realpath -m "$WORK")"
if [ "$WORK" = / ] || [ "$WORK" = "$ROOT" ]; then
    say "error: DEMO_DIR=$WORK would be removed at the start: choose a dir of its own"
    exit 2
fi
VOLUME="$WORK/volume"
MARKER=".lifeboat-demo"

AGENT_PIDS=("" "" "") # the running agent of each host ("" when it is down)
SERVICE_PIDS=()       # redis pids the status API named (verified as ours before any kill)
WRITER_PID=""
CLEANED=""
RESULT=1

# ---------------------------------------------------------------- helpers

api() { printf 'http://%s:%s' "${ADDRS[$1]}" "$API_PORT"; }
hdir() { printf '%s/%s' "$WORK" "${HOSTS[$1]}"; }
fc() { timeout -k 5 180 python3 "$FC" "$@"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
is_int() { [[ "${1:-}" =~ ^[0-9]+$ ]]; }
alive() { kill -0 "$1" 2>/dev/null; }
port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
mounts_under() { awk -v t="$1" '$5 == t || index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r; }
mounted() { [ -n "$(awk -v p="$1" '$5 == p' /proc/self/mountinfo)" ]; }
acks() { if [ -f "$WORK/writer.acks" ]; then wc -l <"$WORK/writer.acks" | tr -d ' '; else echo 0; fi; }

# wait_until SECONDS CMD...: true as soon as CMD is (polled every 0.2 s)
wait_until() {
    local end
    end=$(($(date +%s) + $1))
    shift
    while :; do
        "$@" && return 0
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.2
    done
}

unmount() { umount -l "$1" 2>/dev/null || fusermount3 -u -z "$1" 2>/dev/null; }

# is_service_of I PID: PID is host I's redis (its command line names hI/redis.conf or hI's
# address and port, or its cwd is hI's data dir): never kill a pid that is not ours
is_service_of() {
    local pid=$2 d cmd
    is_int "$pid" && alive "$pid" || return 1
    d="$(hdir "$1")"
    cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"
    [[ "$cmd" == *"$d/redis.conf"* ]] && return 0
    [ "$(cat 2>/dev/null <"/proc/$pid/comm")" = redis-server ] &&
        [[ "$cmd" == *"${ADDRS[$1]}:$REDIS_PORT"* ]] && return 0
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$d/data" ]
}

# started_by_us PID: PID started after this script did (so it is not an older process that
# happens to match)
started_at() { awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null; }
MY_START=$(started_at $$)
started_by_us() {
    local t
    t=$(started_at "$1")
    is_int "$t" && [ "$t" -ge "$MY_START" ]
}

# service_pids_of I [all]: host I's redis processes that is_service_of accepts: pids the status
# API named and their children, and children or grandchildren of I's agent; with "all" also any
# redis-server started after this script that is_service_of accepts (one whose agent and
# /bin/sh wrapper are gone)
service_pids_of() {
    local i=$1 ap=${AGENT_PIDS[$1]} pid c g
    {
        for pid in "${SERVICE_PIDS[@]+"${SERVICE_PIDS[@]}"}"; do
            is_service_of "$i" "$pid" && echo "$pid"
            for c in $(pgrep -P "$pid" 2>/dev/null); do is_service_of "$i" "$c" && echo "$c"; done
        done
        if [ "${2:-}" = all ]; then
            for pid in $(pgrep -x redis-server 2>/dev/null); do
                started_by_us "$pid" && is_service_of "$i" "$pid" && echo "$pid"
            done
        fi
        if [ -n "$ap" ]; then
            for c in $(pgrep -P "$ap" 2>/dev/null); do
                is_service_of "$i" "$c" && echo "$c"
                for g in $(pgrep -P "$c" 2>/dev/null); do is_service_of "$i" "$g" && echo "$g"; done
            done
        fi
    } | sort -u
}

remember_service() {
    local p
    is_int "$1" || return 0
    for p in "${SERVICE_PIDS[@]+"${SERVICE_PIDS[@]}"}"; do [ "$p" = "$1" ] && return 0; done
    SERVICE_PIDS+=("$1")
}

# st_read I: ST_ROLE ST_EPOCH ST_STATE ST_PID of host I's redis workload (ST_ROLE=down when
# the agent does not answer)
st_read() {
    ST_ROLE="" ST_EPOCH="" ST_STATE="" ST_PID=""
    read -r ST_ROLE ST_EPOCH ST_STATE ST_PID \
        < <(fc status "$(api "$1")" role epoch service.state service.pid 2>/dev/null)
    ST_ROLE=${ST_ROLE:-down}
}

# wait_primary SECONDS MIN_EPOCH EXCLUDE: exactly one live host claims primary, it is not
# EXCLUDE (-1: none), its epoch >= MIN_EPOCH and its service runs. Sets PRIMARY PRIMARY_EPOCH
# PRIMARY_PID; on timeout returns 1 with the roles last seen in SEEN.
wait_primary() {
    local end i n found fe fp
    end=$(($(date +%s) + $1))
    while :; do
        n=0 found="" SEEN=""
        for i in 0 1 2; do
            [ -n "${AGENT_PIDS[$i]}" ] || continue
            st_read "$i"
            SEEN+="${HOSTS[$i]}: $ST_ROLE/epoch $ST_EPOCH/service $ST_STATE; "
            [ "$ST_ROLE" = primary ] || continue
            n=$((n + 1))
            if [ "$i" != "$3" ] && [ "$ST_STATE" = running ] && is_int "$ST_EPOCH" && [ "$ST_EPOCH" -ge "$2" ]; then
                found=$i fe=$ST_EPOCH fp=$ST_PID
            fi
        done
        if [ -n "$found" ] && [ "$n" = 1 ]; then
            PRIMARY=$found PRIMARY_EPOCH=$fe PRIMARY_PID=$fp
            remember_service "$fp"
            return 0
        fi
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.2
    done
}

redis_pong() { [ "$(timeout 5 redis-cli -h "${ADDRS[$1]}" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

# show_logs: the end of every log (after a failure); of an agent's, its log lines and the
# first lines of a crash report (not the backtrace)
show_logs() {
    local i f
    for i in 0 1 2; do
        f="$(hdir "$i")/agent.log"
        if [ -s "$f" ]; then
            echo "--- ${HOSTS[$i]}/agent.log (last lines)" >&2
            grep -E '^(20[0-9][0-9]-|=== |\*\*\* )|malloc|[Ff]atal error|corrupt' "$f" | tail -n 12 | sed 's/^/    /' >&2
        fi
        f="$(hdir "$i")/redis.log"
        if [ -s "$f" ]; then
            echo "--- ${HOSTS[$i]}/redis.log (last lines)" >&2
            tail -n 4 "$f" | sed 's/^/    /' >&2
        fi
    done
    if [ -s "$WORK/writer.out" ]; then
        echo "--- writer.out (last lines)" >&2
        tail -n 6 "$WORK/writer.out" | sed 's/^/    /' >&2
    fi
}

# ---------------------------------------------------------------- cleanup

# Stops everything this script started: the writer, the agents (SIGTERM: they stop redis and
# unmount; SIGKILL after 20 s), any redis of ours still running, any mount left under the work
# dir. Runs once, at the end or on Ctrl-C / failure.
cleanup() {
    local pid i m end rc victims=()
    [ -n "$CLEANED" ] && return 0
    CLEANED=1
    [ -d "$WORK" ] || return 0
    say "stopping the writer, the agents and redis"
    if [ -n "$WRITER_PID" ]; then
        touch "$WORK/writer.stop" 2>/dev/null
        wait_until 10 eval '! alive $WRITER_PID'
        alive "$WRITER_PID" && kill -KILL "$WRITER_PID" 2>/dev/null
        wait "$WRITER_PID" 2>/dev/null
        WRITER_PID=""
    fi
    for i in 0 1 2; do
        for pid in $(service_pids_of "$i" all); do victims+=("$i:$pid"); done
    done
    for i in 0 1 2; do
        pid=${AGENT_PIDS[$i]}
        [ -n "$pid" ] || continue
        if alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null
        else
            wait "$pid" 2>/dev/null
            rc=$?
            echo "=== $(date '+%F %T') had already exited, status $rc" >>"$(hdir "$i")/agent.log"
            say "the agent of ${HOSTS[$i]} (pid $pid) had already exited, status $rc"
            AGENT_PIDS[$i]=""
        fi
    done
    end=$(($(date +%s) + 20))
    for i in 0 1 2; do
        pid=${AGENT_PIDS[$i]}
        [ -n "$pid" ] || continue
        while alive "$pid" && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
        if alive "$pid"; then
            say "agent ${HOSTS[$i]} (pid $pid) did not stop on SIGTERM within 20 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
        rc=$?
        echo "=== $(date '+%F %T') exit $rc (stopped by demo.sh)" >>"$(hdir "$i")/agent.log"
        AGENT_PIDS[$i]=""
    done
    # the agents are gone: what still runs as one of their services (seen before, or now)
    for i in 0 1 2; do
        for pid in $(service_pids_of "$i" all); do victims+=("$i:$pid"); done
    done
    for m in "${victims[@]+"${victims[@]}"}"; do
        i=${m%%:*} pid=${m#*:}
        is_service_of "$i" "$pid" || continue
        say "redis of ${HOSTS[$i]} (pid $pid) still runs after its agent stopped: SIGKILL"
        kill -KILL "$pid" 2>/dev/null
        wait_until 5 eval '! alive $pid'
    done
    while read -r m; do
        [ -n "$m" ] || continue
        say "unmounting $m"
        unmount "$m"
    done < <(mounts_under "$WORK")
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'exit 143' TERM

fail_run() {
    say "error: $*"
    show_logs
    say "logs: $WORK/h{1,2,3}/agent.log, $WORK/h{1,2,3}/redis.log, $WORK/writer.out"
    exit 1
}

# check_agents: every agent still meant to run does; one that exited is a failure of the demo
check_agents() {
    local i pid rc
    for i in 0 1 2; do
        pid=${AGENT_PIDS[$i]}
        [ -n "$pid" ] && ! alive "$pid" || continue
        wait "$pid" 2>/dev/null
        rc=$?
        AGENT_PIDS[$i]=""
        echo "=== $(date '+%F %T') exited on its own with status $rc" >>"$(hdir "$i")/agent.log"
        fail_run "the agent of ${HOSTS[$i]} (pid $pid) exited on its own with status $rc$( ((rc > 128)) && echo " (signal $((rc - 128)))"); see $(hdir "$i")/agent.log"
    done
}

# pause SECONDS: sleeps, checking the agents every 0.2 s
pause() {
    local end
    end=$(($(date +%s%N) + $1 * 1000000000))
    while [ "$(date +%s%N)" -lt "$end" ]; do
        check_agents
        sleep 0.2
    done
}

# ---------------------------------------------------------------- setup

for i in 0 1 2; do
    for port in "$API_PORT" "$PEER_PORT" "$REDIS_PORT"; do
        if port_busy "${ADDRS[$i]}" "$port"; then
            CLEANED=1
            say "error: ${ADDRS[$i]}:$port is in use (another demo still running?)"
            exit 2
        fi
    done
done
# the old work dir goes, but only if it is one (its marker, or empty) and nothing is mounted in it
if [ -e "$WORK" ]; then
    if [ ! -e "$WORK/$MARKER" ] && [ -n "$(ls -A "$WORK" 2>/dev/null)" ]; then
        CLEANED=1
        say "error: $WORK exists and is not a demo work dir (no $MARKER): not removing it; set DEMO_DIR"
        exit 2
    fi
    while read -r m; do [ -n "$m" ] && unmount "$m"; done < <(mounts_under "$WORK")
    if [ -n "$(mounts_under "$WORK")" ]; then
        CLEANED=1
        say "error: cannot unmount $(mounts_under "$WORK" | tr '\n' ' ')"
        exit 2
    fi
    rm -rf "$WORK" || die "cannot remove the old work dir $WORK"
fi
mkdir -p "$WORK/bin" "$VOLUME" || die "cannot create $WORK"
touch "$WORK/$MARKER"
chmod 755 "$WORK"
# private copies, so a rebuild during the demo cannot swap the binaries
cp .build/release/lifeboatd .build/release/lifeboat "$WORK/bin/" || die "cannot copy the binaries"
LIFEBOATD="$WORK/bin/lifeboatd"
LIFEBOAT="$WORK/bin/lifeboat"

# write_config I: hI/agent.yaml and hI/redis.conf, and the (empty) backing dir
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
coordinator:
  backend: local
  path: $VOLUME/coordinator
peers:
YAML
        for j in 0 1 2; do
            [ "$j" = "$i" ] && continue
            printf '  - host: %s\n    api: %s:%s\n    address: %s:%s\n' \
                "${HOSTS[$j]}" "${ADDRS[$j]}" "$API_PORT" "${ADDRS[$j]}" "$PEER_PORT"
        done
        cat <<YAML
workloads:
  - name: redis
    capture: fuse
    data_dir: $d/data
    backing_dir: $d/backing
    journal_dir: $d/journal
    replication: sync
    min_sync_peers: 1
    sync_timeout: 5s
    on_sync_timeout: fail
    lease_ttl: 2s
    service:
      start: "redis-server $d/redis.conf"
      health: "redis-cli -h ${ADDRS[$i]} -p $REDIS_PORT ping"
      stop: "redis-cli -h ${ADDRS[$i]} -p $REDIS_PORT shutdown nosave"
YAML
    } >"$d/agent.yaml"
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

agent_start() {
    local d
    d="$(hdir "$1")"
    echo "=== $(date '+%F %T') start" >>"$d/agent.log"
    "$LIFEBOATD" --config "$d/agent.yaml" >>"$d/agent.log" 2>&1 </dev/null &
    AGENT_PIDS[$1]=$!
}

T0=$(now)
for i in 0 1 2; do write_config "$i"; done
say "work dir $WORK (volume: $VOLUME; configs and logs: $WORK/h1 h2 h3)"
for i in 0 1 2; do agent_start "$i"; done
say "started agents h1 (pid ${AGENT_PIDS[0]}), h2 (pid ${AGENT_PIDS[1]}), h3 (pid ${AGENT_PIDS[2]}) on ${ADDRS[0]}, ${ADDRS[1]}, ${ADDRS[2]}"

# ---------------------------------------------------------------- 1. election

wait_primary 30 0 -1 || { check_agents; fail_run "no primary with redis running within 30 s ($SEEN)"; }
check_agents
P=$PRIMARY
EP=$PRIMARY_EPOCH
wait_until 30 redis_pong "$P" || fail_run "redis on ${ADDRS[$P]}:$REDIS_PORT does not answer PING"
say "${HOSTS[$P]} is primary (epoch $EP, service pid $PRIMARY_PID), $(elapsed "$T0" "$(now)") s after the start"

# ---------------------------------------------------------------- 2. writer, snapshot

python3 -u "$FC" write --agents "$(api 0),$(api 1),$(api 2)" --port "$REDIS_PORT" \
    --acks "$WORK/writer.acks" --seconds 600 --stop "$WORK/writer.stop" \
    --prefix key --seed 1 >"$WORK/writer.out" 2>&1 </dev/null &
WRITER_PID=$!
wait_until 30 eval '[ "$(acks)" -gt 0 ]' || fail_run "the writer got no write acknowledged within 30 s"
say "writer (pid $WRITER_PID) is writing to redis on ${HOSTS[$P]}"
pause 3
say "snapshot after $(acks) acknowledged writes: lifeboat backup --agent $(api "$P") --workload redis"
backup_out="$(timeout -k 5 120 "$LIFEBOAT" backup --agent "$(api "$P")" --workload redis 2>&1)"
rc=$?
sed 's/^/    /' <<<"$backup_out"
[ "$rc" -eq 0 ] || { check_agents; fail_run "lifeboat backup --agent exited $rc"; }
SNAPSHOT_ID="$(tail -n 1 <<<"$backup_out")"
pause 3

# ---------------------------------------------------------------- 3. the primary host dies

check_agents
wait_primary 10 "$EP" -1 || fail_run "no primary before the kill ($SEEN)"
[ "$PRIMARY" = "$P" ] || fail_run "the primary moved from ${HOSTS[$P]} to ${HOSTS[$PRIMARY]} (epoch $PRIMARY_EPOCH) before the kill; see the agent logs"
P=$PRIMARY
EP=$PRIMARY_EPOCH
AP=${AGENT_PIDS[$P]}
victims=()
KILLED=""
for pid in $(service_pids_of "$P"); do
    victims+=("$pid")
    KILLED+="${KILLED:+, }$(cat "/proc/$pid/comm" 2>/dev/null) $pid"
done
# freeze the agent and redis, then SIGKILL them together: the host is gone at once
kill -STOP "$AP" "${victims[@]+"${victims[@]}"}" 2>/dev/null
kill -KILL "$AP" "${victims[@]+"${victims[@]}"}" 2>/dev/null
T_KILL=$(now)
ACKED_BEFORE=$(acks)
wait "$AP" 2>/dev/null
echo "=== $(date '+%F %T') SIGKILLed by demo.sh (host lost)" >>"$(hdir "$P")/agent.log"
AGENT_PIDS[$P]=""
for pid in "${victims[@]+"${victims[@]}"}"; do wait_until 10 eval '! alive $pid'; done
say "killed ${HOSTS[$P]} (SIGKILL, epoch $EP): agent pid $AP, service ${KILLED:-none found} after $ACKED_BEFORE acknowledged writes"
D="$(hdir "$P")/data"
wait_until 2 eval '! mounted "$D"' || unmount "$D"
wait_until 5 eval '! mounted "$D"' || fail_run "cannot unmount $D"
rm -rf "$(hdir "$P")/backing" "$(hdir "$P")/journal"
say "${HOSTS[$P]}'s disk is gone: data dir unmounted, backing and journal dirs deleted"

# ---------------------------------------------------------------- 4. failover

wait_primary 30 $((EP + 1)) "$P" || {
    check_agents
    fail_run "no other host became primary with redis running within 30 s of the kill ($SEEN)"
}
T_UP=$(now)
N=$PRIMARY
NEP=$PRIMARY_EPOCH
say "${HOSTS[$N]} is primary (epoch $NEP, service pid $PRIMARY_PID), $(elapsed "$T_KILL" "$T_UP") s after the kill"
wait_until 30 redis_pong "$N" || fail_run "redis on ${ADDRS[$N]}:$REDIS_PORT does not answer PING"
wait_until 30 eval '[ "$(acks)" -gt "$ACKED_BEFORE" ]' || {
    check_agents
    fail_run "the writer got no write acknowledged on ${HOSTS[$N]} within 30 s"
}
pause 2
touch "$WORK/writer.stop"
wait_until 60 eval '! alive $WRITER_PID' || fail_run "the writer did not stop"
wait "$WRITER_PID" 2>/dev/null
WRITER_PID=""
check_agents
ACKED_TOTAL=$(acks)
say "writer stopped: $(tail -n 1 "$WORK/writer.out")"

# ---------------------------------------------------------------- 5. check and summary

head -n "$ACKED_BEFORE" "$WORK/writer.acks" >"$WORK/writer.acks.before-kill"
check() { fc check --host "${ADDRS[$N]}" --port "$REDIS_PORT" --acks "$1" 2>&1; }
out_before="$(check "$WORK/writer.acks.before-kill")" || fail_run "the checker could not read redis on ${HOSTS[$N]}: $out_before"
out_all="$(check "$WORK/writer.acks")" || fail_run "the checker could not read redis on ${HOSTS[$N]}: $out_all"
printf '%s\n' "$out_before" >"$WORK/check-before-kill.out"
printf '%s\n' "$out_all" >"$WORK/check-all.out"
ok_of() { sed -n 's/^check: .* ok=\([0-9]*\) .*/\1/p' <<<"$1"; }
lost_of() { sed -n 's/^lost acknowledged writes: \([0-9]*\)$/\1/p' <<<"$1"; }
FOUND_BEFORE=$(ok_of "$out_before")
LOST_BEFORE=$(lost_of "$out_before")
FOUND_ALL=$(ok_of "$out_all")
LOST_ALL=$(lost_of "$out_all")
is_int "$LOST_BEFORE" && is_int "$LOST_ALL" || fail_run "unexpected checker output: $out_before / $out_all"
LOST=$((LOST_BEFORE > LOST_ALL ? LOST_BEFORE : LOST_ALL))

R_FIELDS=(epoch kind snapshot detection_seconds lease_seconds snapshot_load_seconds delta_seconds replay_seconds
    mount_seconds service_start_seconds total_seconds snapshot_bytes local_records delta_records delta_bytes delta_peer
    replayed_records)
read -r "${R_FIELDS[@]/#/R_}" < <(fc status "$(api "$N")" "${R_FIELDS[@]/#/last_recovery.}" 2>/dev/null)
status_table="$(timeout -k 5 30 "$LIFEBOAT" status --agent "$(api "$N")" 2>&1)" ||
    say "warning: lifeboat status --agent $(api "$N") exited $?"

# bytes N: N bytes, readable; secs S: S seconds to the millisecond ("?" for anything else)
bytes() { awk -v b="${1:-}" -v n="${1:-}" 'BEGIN { if (b !~ /^[0-9]+$/) { print "?"; exit } if (b < 1024) { printf "%d B", b; exit }
    s = "KiB"; b /= 1024; if (b >= 1024) { b /= 1024; s = "MiB" } if (b >= 1024) { b /= 1024; s = "GiB" } printf "%.1f %s (%d bytes)", b, s, n }'; }
secs() { awk -v v="${1:-}" 'BEGIN { if (v ~ /^[0-9.eE+-]+$/ && v != "-") printf "%.3f s", v; else print "?" }'; }
num() { if is_int "${1:-}"; then echo "$1"; else echo "?"; fi; }
row() { printf '  %-34s %s\n' "$1" "$2"; }

if [ "$LOST" -eq 0 ]; then
    verdict="no acknowledged write lost"
    RESULT=0
else
    verdict="$LOST ACKNOWLEDGED WRITES LOST"
fi
[ "${R_delta_peer:--}" = - ] && R_delta_peer="no peer (nothing was missing)"
[ "${R_snapshot:--}" = - ] && R_snapshot="(none)"
{
    echo
    echo "=== summary: redis on h1 h2 h3, primary ${HOSTS[$P]} lost, $verdict"
    row "acknowledged before the kill" "$ACKED_BEFORE (by ${HOSTS[$P]}; snapshot ${SNAPSHOT_ID:0:12} taken after ~3 s of them)"
    row "found after recovery" "$(num "$FOUND_BEFORE") on ${HOSTS[$N]}"
    row "lost" "$LOST_BEFORE"
    row "acknowledged in all" "$ACKED_TOTAL (+$((ACKED_TOTAL - ACKED_BEFORE)) by ${HOSTS[$N]} after the failover): found $(num "$FOUND_ALL"), lost $LOST_ALL"
    row "new primary" "${HOSTS[$N]} (${ADDRS[$N]}), epoch $NEP (was ${HOSTS[$P]}, epoch $EP); recovery kind ${R_kind:-?}"
    row "primary again after the kill" "$(elapsed "$T_KILL" "$T_UP") s (as this script saw it, polling every 0.2 s)"
    echo "recovery time by part (${HOSTS[$N]}: /v1/status workloads[0].last_recovery):"
    row "detection (after lease expiry)" "$(secs "${R_detection_seconds:-}")"
    row "lease taken" "$(secs "${R_lease_seconds:-}")"
    row "snapshot load" "$(secs "${R_snapshot_load_seconds:-}")"
    row "delta from a peer" "$(secs "${R_delta_seconds:-}")"
    row "replay" "$(secs "${R_replay_seconds:-}")"
    row "mount" "$(secs "${R_mount_seconds:-}")"
    row "service start" "$(secs "${R_service_start_seconds:-}")"
    row "total" "$(secs "${R_total_seconds:-}")"
    echo "where the data came from:"
    row "snapshot from the volume" "$(bytes "${R_snapshot_bytes:-}"), snapshot ${R_snapshot:0:12}"
    row "journal records held locally" "$(num "${R_local_records:-}") (streamed to ${HOSTS[$N]} before the kill)"
    row "fetched from peers" "$(num "${R_delta_records:-}") records, $(bytes "${R_delta_bytes:-}"), from $R_delta_peer"
    row "records replayed" "$(num "${R_replayed_records:-}")"
    echo
    echo "\$ lifeboat status --agent $(api "$N")"
    echo "$status_table"
    echo
}

cleanup
leftover="$(mounts_under "$WORK")"
[ -z "$leftover" ] || say "warning: still mounted: $leftover"
echo "logs: $WORK/h{1,2,3}/agent.log, $WORK/h{1,2,3}/redis.log, $WORK/writer.out, $WORK/check-*.out (took $(elapsed "$T0" "$(now)") s)"
if [ "$RESULT" = 0 ]; then
    echo "demo: OK: every acknowledged write survived the loss of the primary host"
else
    echo "demo: FAILED: $LOST acknowledged writes lost (see $WORK/check-all.out)"
fi
exit "$RESULT"
