#!/usr/bin/env bash
# Failover benchmark: three lifeboatd agents on loopback, one workload, the primary lost.
#
#   scripts/bench/failover.sh
#
# Prints figures and ratios; timing never fails the run (goals are informational). Three
# agents h1, h2, h3 on 127.0.0.31, .32, .33 (API :7440, peer protocol :7441, the workload's
# service :7442) share one "volume" dir (the repository and the `local` coordinator's lease
# files). The workload's service is scripts/bench/bench_service.py, started by the primary's
# agent in the data dir: it opens every file, then answers HTTP on :7442 (its health probe is
# curl). One run measures:
#
#  1. Failover time by part, for each replication mode in BENCH_MODES and lease TTL in
#     BENCH_TTLS, each on a fresh cluster: BENCH_STATE_SIZE of incompressible files (dd from
#     /dev/urandom, fsync) are written into the primary's data dir (the FUSE mount), a snapshot
#     is taken (`lifeboat backup --agent`), then BENCH_DELTA_SIZE of random distinct 8 KiB
#     blocks are overwritten in place (pwrite + fsync each), and the bench waits until both
#     peers acked the primary's last record. The page cache is dropped (then TTL/2 s, and the
#     primary must still hold its lease: the drop's sync can stall its renewal, a lease lost
#     that way is reported as a failure of that run), then the primary's
#     agent and its service (pid from the status API) are SIGKILLed, its data dir unmounted
#     (umount -l) and its backing and journal dirs deleted. Measured: SIGKILL -> the new
#     primary's service answering (polled every 10 ms), and the parts of the new primary's
#     `last_recovery` (detection, lease, snapshot load, delta, replay, mount, service start,
#     total; "everything after detection" = total - detection, goal < 3 s for 1 GiB); the
#     journal bytes after the snapshot (what a peer received for them) vs the bytes written
#     (goal <= 1.2x), the records the new primary held locally and what it fetched.
#  2. rsync comparison, on the first scenario's data: the primary's backing dir right after the
#     changes (a copy taken before the kill, kept on /dev/shm until the failover is measured) is rsynced (`rsync -a --stats --no-whole-file`)
#     over a restore of the snapshot (`lifeboat restore`); its bytes sent / literal data and
#     time vs Lifeboat's journal delta and delta+replay seconds. Page cache dropped first.
#  3. Journal streaming throughput: BENCH_STREAM_SIZE written sequentially (dd bs=1M
#     conv=fsync from a random file in the page cache) into the primary's data dir of an
#     `async` cluster; the peers' lifeboat_bytes_received_total (their /metrics) and acked
#     positions (primary's status) are sampled every 0.1 s: MB/s until each peer acked the last
#     record, and the fastest 1 s window (goal >= 200 MB/s). All three "hosts" share this
#     machine's disk (the primary writes the data twice, backing + journal, each peer once), so
#     the same test is repeated with every dir on tmpfs (BENCH_STREAM_TMPFS).
#  4. fsync latency: fio, 8 KiB random writes with an fsync after each (--ioengine=psync
#     --fsync=1 --rw=randwrite --bs=8k, 16 MiB file, BENCH_FSYNC_RUNTIME s) in the data dir with
#     replication async, with replication sync (min_sync_peers 1), and in a plain dir on the
#     same filesystem (native): IOPS, fsync and write latency p50/p99, ratios.
#
# Then a summary table, the agents' log lines that mention errors, and the command line.
# With the defaults a run takes about 6-10 minutes on a 2-core VM; BENCH_QUICK=1 about 2.
# Nothing else should run meanwhile (the figures are the machine's). Needs root, /dev/fuse,
# fio, rsync, curl, python3, and BENCH_DIR with about 10x the larger of BENCH_STATE_SIZE and
# BENCH_STREAM_SIZE free.
#
# Environment:
#   BENCH_QUICK=1         128M state, 2M delta, one TTL (2), async only, 128M stream, 3 s fio
#   BENCH_STATE_SIZE      state written before the snapshot (default 1G; quick 128M)
#   BENCH_STATE_FILES     number of state files (default 8)
#   BENCH_DELTA_SIZE      bytes overwritten after the snapshot (default 10M; quick 2M)
#   BENCH_TTLS            lease TTLs in seconds (default "2 10"; quick "2")
#   BENCH_MODES           replication modes of the failover runs (default "async sync"; quick "async")
#   BENCH_STREAM_SIZE     sequential write for the streaming test (default 1G; quick 128M)
#   BENCH_FSYNC_RUNTIME   seconds per fio run (default 10; quick 3)
#   BENCH_STREAM_TMPFS    1: also run the streaming test with every host's dirs on /dev/shm (tmpfs),
#                         so the shared disk is out of the picture; 0: do not; auto (default):
#                         when /dev/shm has 5x BENCH_STREAM_SIZE free
#   BENCH_SKIP            parts to leave out, comma or space separated: failover,rsync,stream,fsync
#   BENCH_WARM=1          do not drop the page cache before the kill, rsync and fio
#   BENCH_DIR             where the run's dir goes (default /var/tmp/lifeboat-bench)
#   BENCH_KEEP=1          keep the run's dir (logs, configs) instead of removing it
#   LIFEBOATD_BIN, LIFEBOAT_BIN   binaries (default .build/release/ of this checkout; copied first)
#
# Exit status: 0 when every part ran (goals missed or not), 1 when a part failed (the summary
# says FAILED, the agents' log lines follow), 2 for bad settings.
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LB_SCRIPT=failover.sh
. "$SCRIPT_DIR/../lib/bench.sh"
. "$SCRIPT_DIR/../lib/cluster.sh"
ENVLINE=$(env | grep -E '^(BENCH_|LIFEBOATD?_BIN=)' | sort | tr '\n' ' ')
HELPER="$SCRIPT_DIR/failover_helper.py"
FC="$SCRIPT_DIR/../tests/failover_client.py" # status fields (fc_status, wait_primary: scripts/lib/cluster.sh)
SERVICE="$SCRIPT_DIR/bench_service.py"
bench_args "$@"
bad() { echo "failover.sh: $*" >&2; exit 2; }

BENCH_QUICK=${BENCH_QUICK:-0}
if [[ $BENCH_QUICK == 1 ]]; then
    q_state=128M q_delta=2M q_ttls="2" q_modes="async" q_stream=128M q_rt=3
else
    q_state=1G q_delta=10M q_ttls="2 10" q_modes="async sync" q_stream=1G q_rt=10
fi
BENCH_STATE_SIZE=${BENCH_STATE_SIZE:-$q_state}
BENCH_STATE_FILES=${BENCH_STATE_FILES:-8}
BENCH_DELTA_SIZE=${BENCH_DELTA_SIZE:-$q_delta}
BENCH_TTLS=${BENCH_TTLS:-$q_ttls}
BENCH_MODES=${BENCH_MODES:-$q_modes}
BENCH_STREAM_SIZE=${BENCH_STREAM_SIZE:-$q_stream}
BENCH_FSYNC_RUNTIME=${BENCH_FSYNC_RUNTIME:-$q_rt}
BENCH_SKIP=${BENCH_SKIP:-}
BENCH_STREAM_TMPFS=${BENCH_STREAM_TMPFS:-auto}

STATE_BYTES=$(size_bytes "$BENCH_STATE_SIZE") || bad "bad BENCH_STATE_SIZE: $BENCH_STATE_SIZE (use e.g. 128M, 1G)"
DELTA_BYTES=$(size_bytes "$BENCH_DELTA_SIZE") || bad "bad BENCH_DELTA_SIZE: $BENCH_DELTA_SIZE"
STREAM_BYTES=$(size_bytes "$BENCH_STREAM_SIZE") || bad "bad BENCH_STREAM_SIZE: $BENCH_STREAM_SIZE"
[[ $BENCH_STATE_FILES =~ ^[1-9][0-9]*$ ]] || bad "BENCH_STATE_FILES must be a whole number >= 1"
[[ $BENCH_FSYNC_RUNTIME =~ ^[1-9][0-9]*$ ]] || bad "BENCH_FSYNC_RUNTIME must be a whole number >= 1"
FILE_MIB=$((STATE_BYTES / BENCH_STATE_FILES / 1048576))
((FILE_MIB >= 1)) || bad "BENCH_STATE_SIZE / BENCH_STATE_FILES must be at least 1 MiB"
STATE_BYTES=$((FILE_MIB * 1048576 * BENCH_STATE_FILES))
((DELTA_BYTES >= 8192 && DELTA_BYTES <= STATE_BYTES)) || bad "BENCH_DELTA_SIZE must be 8K .. BENCH_STATE_SIZE"
((STREAM_BYTES >= 1048576)) || bad "BENCH_STREAM_SIZE must be at least 1M"
STREAM_MIB=$((STREAM_BYTES / 1048576))
STREAM_BYTES=$((STREAM_MIB * 1048576))
for t in $BENCH_TTLS; do [[ $t =~ ^[1-9][0-9]*$ ]] || bad "BENCH_TTLS: whole seconds >= 1 (got '$t')"; done
for m in $BENCH_MODES; do [[ $m == async || $m == sync ]] || bad "BENCH_MODES: async and/or sync (got '$m')"; done
read -r -a SKIP <<<"${BENCH_SKIP//,/ }"
for s in "${SKIP[@]+"${SKIP[@]}"}"; do
    case $s in failover | rsync | stream | fsync) ;; *) bad "unknown part in BENCH_SKIP: $s (failover, rsync, stream, fsync)" ;; esac
done
want() { [[ " ${SKIP[*]+"${SKIP[*]}"} " != *" $1 "* ]]; }
want failover || SKIP+=(rsync)   # the rsync part uses the first failover run's data

# --- prerequisites ---------------------------------------------------------------------------
[[ $EUID -eq 0 ]] || die "run as root (FUSE mounts with allow_other, umount -l, dropping the page cache)"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"
for c in python3 curl fio rsync numfmt; do
    command -v "$c" >/dev/null || die "$c is missing (apt-get install -y fio rsync curl python3, or scripts/setup.sh --no-build)"
done
[[ -x $LIFEBOATD_BIN ]] || die "lifeboatd not found at $LIFEBOATD_BIN (build it, or set LIFEBOATD_BIN)"
[[ -x $LIFEBOAT_BIN ]] || die "lifeboat not found at $LIFEBOAT_BIN (build it, or set LIFEBOAT_BIN)"
cache_setup "before each kill, rsync and fio run"

HOSTS=(h1 h2 h3)
ADDRS=(127.0.0.31 127.0.0.32 127.0.0.33)
API_PORT=7440
PEER_PORT=7441
SVC_PORT=7442
ports_free "another run of this bench" "${ADDRS[@]}" -- $API_PORT $PEER_PORT $SVC_PORT || exit 1

# --- work dir and cleanup ----------------------------------------------------------------------
bench_workdir failover
LOGS=$WORK/logs
RESULTS=$WORK/results.tsv
mkdir -p "$LOGS"
: >"$RESULTS"
bench_private_bins lifeboatd lifeboat
LB="$LIFEBOAT_BIN"
# /dev/shm (tmpfs), when it has room: the streaming test's second cluster, and where the rsync
# part's copy of the live data waits until the failover is measured (copying 1 GiB onto the
# shared disk right before the kill would load the disk the agents' lease files are on)
SHM=""
STREAM_TMPFS=0
shm_free=$(df -PB1 /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]]; then
    if want stream && [[ $BENCH_STREAM_TMPFS != 0 ]] && ((${shm_free:-0} >= STREAM_BYTES * 5 + STATE_BYTES * 2)); then
        STREAM_TMPFS=1
    fi
    if ((STREAM_TMPFS)) || { want rsync && ((${shm_free:-0} >= STATE_BYTES * 2)); }; then
        SHM=$(mktemp -d /dev/shm/lifeboat-bench-failover.XXXXXX) || die "cannot create a dir in /dev/shm"
        chmod 755 "$SHM"
    fi
fi
if want stream && [[ $BENCH_STREAM_TMPFS == 1 && $STREAM_TMPFS == 0 ]]; then
    die "BENCH_STREAM_TMPFS=1 but /dev/shm is not a tmpfs with $(((STREAM_BYTES * 5 + STATE_BYTES * 2) >> 20)) MiB free"
fi

CL=""               # the running cluster's dir
CL_NAME=""
CL_EXPECT=""        # ERE of agent log lines that are expected (about the killed host)
P=""                # the running cluster's primary (an index)
AGENT_PIDS=("" "" "")
SERVICE_PIDS=()     # service pids the status API named (killed in the cleanup if still ours)
LB_PIDS=()          # helpers started in the background (killed in the cleanup)
LB_TMP=""           # (fo_teardown: this script unmounts below WORK itself)
FAILED=0
PROBLEMS=$LOGS/agent-problems.txt
: >"$PROBLEMS"

# cluster_stop: SIGTERM to every agent still running (it stops its service and unmounts),
# SIGKILL after 30 s; then the services, the mounts, and the cluster's dir (kept with BENCH_KEEP=1)
cluster_stop() {
    local i pid
    [[ -n $CL ]] || return 0
    # the primary first, so that it does not wait for peers that are gone (sync: sync_timeout)
    pid=${AGENT_PIDS[${P:-0}]}
    if [[ -n $pid ]] && pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        wait_gone "$pid" 30
    fi
    for i in 0 1 2; do
        pid=${AGENT_PIDS[$i]}
        [[ -n $pid ]] && pid_alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    for i in 0 1 2; do
        pid=${AGENT_PIDS[$i]}
        [[ -n $pid ]] || continue
        if ! wait_gone "$pid" 30; then
            log "agent ${HOSTS[$i]} (pid $pid) did not exit within 30 s of SIGTERM; SIGKILL"
            echo "$CL_NAME: agent ${HOSTS[$i]} did not exit within 30 s of SIGTERM" >>"$PROBLEMS"
            kill -KILL "$pid" 2>/dev/null
            wait_gone "$pid" 10
        fi
        AGENT_PIDS[i]=""
    done
    kill_services
    unmount_below "$CL"
    for i in 0 1 2; do
        [[ -f $CL/${HOSTS[$i]}/agent.log ]] && cp "$CL/${HOSTS[$i]}/agent.log" "$LOGS/$CL_NAME-${HOSTS[$i]}.log"
        [[ -f $CL/${HOSTS[$i]}/journal/service.log ]] && cp "$CL/${HOSTS[$i]}/journal/service.log" "$LOGS/$CL_NAME-${HOSTS[$i]}-service.log"
    done
    # lines that mention a problem, but for those about the host this bench killed on purpose
    grep -hiE '(error|warn|failed|fails|failure|panic|fatal|crash|alert|EIO|cannot|refused|timed out|fenced|lost the lease|not renewed)' "$CL"/h?/agent.log 2>/dev/null |
        grep -vE "${CL_EXPECT:-^\$^}" | sed "s/^/$CL_NAME: /" >>"$PROBLEMS"
    CL_EXPECT=""
    if [[ $BENCH_KEEP != 1 ]]; then rm -rf -- "$CL"; fi
    CL=""
}

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    fo_teardown # agents frozen, then their services, the agents and the helpers SIGKILLed
    [[ -n ${WORK:-} ]] && unmount_below "$WORK"
    if [[ -n ${SHM:-} ]]; then
        unmount_below "$SHM"
        if [[ $BENCH_KEEP == 1 ]]; then log "BENCH_KEEP=1: leaving $SHM"; else rm -rf -- "$SHM"; fi
    fi
    [[ -z ${WORK:-} ]] || bench_remove_work
    [[ $rc -ne 0 ]] && log "exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bench_space $(((STATE_BYTES > STREAM_BYTES ? STATE_BYTES : STREAM_BYTES) * 10 + (1 << 30)))

calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }   # EXPR with decimals
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }   # SECTION KEY VALUE
h() { python3 "$HELPER" "$@"; }   # (in the background: python3 "$HELPER" itself, so that $! is python's pid)
# broke SECTION MESSAGE [LINES]: the part failed: recorded, the agents' logs shown (their last LINES)
broke() {
    rec "$1" error "$2"
    agent_tail "${3:-15}"
    FAILED=1
}
agent_tail() {  # the last lines of every agent log of the running cluster
    local i
    for i in 0 1 2; do
        echo "---- ${HOSTS[$i]} (${ADDRS[$i]}) agent.log, last lines ----" >&2
        tail -n "${1:-15}" "$CL/${HOSTS[$i]}/agent.log" >&2 2>/dev/null
    done
}

# --- the cluster -------------------------------------------------------------------------------
# the workload's service: bench_service.py, answering HTTP on ADDRS[I]:SVC_PORT
CL_WORKLOAD=bench
CL_SERVICE=bench_service
CL_SERVICE_CMD="bench_service.py --dir $WORK/" # what only this run's services' command lines hold
CL_DISOWN=1 # no "Killed" notice from bash when the bench SIGKILLs an agent (wait_gone polls the pid)
bench_service() {
    cat <<YAML
      start: "python3 $SERVICE --dir $(hdir "$1")/data --listen ${ADDRS[$1]}:$SVC_PORT"
      health: "curl -sf -o /dev/null --max-time 2 http://${ADDRS[$1]}:$SVC_PORT/"
YAML
}

# cluster_start NAME MODE TTL [BASE]: a fresh cluster in BASE/NAME (default: the run's dir);
# sets P (primary index), P_EPOCH, P_SVC
cluster_start() {
    local i
    CL_NAME=$1
    CL="${4:-$WORK}/$1"
    FO_DIR=$CL VOLUME=$CL/volume MODE=$2 LEASE_TTL=${3}s
    cluster_launch
    if ! wait_primary 60 1 -1; then
        log "$1: no primary with its service running within 60 s: $WAIT_SEEN"
        agent_tail
        return 1
    fi
    P=$PRIMARY P_EPOCH=$PRIMARY_EPOCH P_SVC=$PRIMARY_PID
    for i in 0 1 2; do
        [[ $i == "$P" ]] || wait_until 30 peer_connected "$P" "$i" || {
            log "$1: ${HOSTS[$P]} does not see ${HOSTS[$i]} connected within 30 s: $(st_line "$P")"
            agent_tail
            return 1
        }
    done
    log "$1: ${HOSTS[$P]} is primary (epoch $P_EPOCH, service pid $P_SVC), both peers connected (replication $2, lease_ttl ${3}s)"
}

# --- 4. fsync latency ---------------------------------------------------------------------------
FIO_SIZE=16M
run_fsync() {  # LABEL DIR
    local label=$1 dir=$2 out="$LOGS/fio-$1.json" v
    fio --name=layout --directory="$dir" --filename=fsync.dat --ioengine=psync --rw=write --bs=1M \
        --size=$FIO_SIZE --end_fsync=1 --output-format=json >"$LOGS/fio-$label-layout.json" 2>&1 || {
        rec "fsync $label" error "fio layout failed: $(tail -n 2 "$LOGS/fio-$label-layout.json" | tr '\n' ' ')"
        FAILED=1
        return 0
    }
    drop_caches
    log "fsync: $label: fio randwrite 8k fsync=1 ${BENCH_FSYNC_RUNTIME}s in $dir"
    if ! fio --name=fsync --directory="$dir" --filename=fsync.dat --ioengine=psync --iodepth=1 --numjobs=1 \
        --rw=randwrite --bs=8k --size=$FIO_SIZE --fsync=1 --time_based --runtime="$BENCH_FSYNC_RUNTIME" \
        --output-format=json --output="$out" >"$out.stderr" 2>&1; then
        rec "fsync $label" error "fio failed: $(tail -n 2 "$out.stderr" "$out" 2>/dev/null | tr '\n' ' ')"
        FAILED=1
        return 0
    fi
    if ! v=$(h fio "$out" 2>&1); then
        rec "fsync $label" error "cannot read fio's output: $v"
        FAILED=1
        return 0
    fi
    python3 -c 'import json, sys
for k, v in json.loads(sys.argv[2]).items():
    print("%s\t%s\t%s" % (sys.argv[1], k, v))' "fsync $label" "$v" >>"$RESULTS"
    log "fsync: $label: $v"
    rm -f "$dir/fsync.dat"
}

# --- 3. streaming --------------------------------------------------------------------------------
stream_source() {  # the random source file, once, in the page cache
    STREAM_SRC="$WORK/stream.src"
    [[ -s $STREAM_SRC ]] && { cat "$STREAM_SRC" >/dev/null; return 0; }
    log "stream: generating $STREAM_MIB MiB of random data in $STREAM_SRC (kept in the page cache)"
    head -c "$STREAM_BYTES" /dev/urandom >"$STREAM_SRC" && cat "$STREAM_SRC" >/dev/null
}
run_stream() {  # LABEL (disk or tmpfs): in the running async cluster
    local sec="stream $1" data="$CL/${HOSTS[$P]}/data" peers=() i w t_start t_written out rep
    stream_source || { rec "$sec" error "cannot write $WORK/stream.src"; FAILED=1; return 0; }
    for i in 0 1 2; do
        [[ $i == "$P" ]] && continue
        peers+=("$(api "$i")")
        rec "$sec" "peer$((${#peers[@]} - 1))" "${HOSTS[$i]}"
    done
    rec "$sec" mode async
    rec "$sec" dirs "$CL"
    python3 "$HELPER" stream-watch "$LOGS/stream-$1.tsv" "$(api "$P")" "${peers[@]}" 2>"$LOGS/stream-$1-watch.err" &
    w=$!
    LB_PIDS+=("$w")
    sleep 0.5
    log "stream ($1): dd bs=1M count=$STREAM_MIB conv=fsync into ${HOSTS[$P]}'s data dir $data"
    t_start=$EPOCHREALTIME
    if ! dd if="$STREAM_SRC" of="$data/stream.dat" bs=1M count="$STREAM_MIB" conv=fsync status=none 2>"$LOGS/stream-$1-dd.err"; then
        kill -TERM "$w"
        wait "$w"
        rec "$sec" error "dd into the mount failed: $(head -c 300 "$LOGS/stream-$1-dd.err")"
        FAILED=1
        agent_tail
        return 0
    fi
    t_written=$EPOCHREALTIME
    if ! out=$(h wait-caught-up 300 "$(api "$P")" 2>&1); then
        log "stream ($1): $out"
        rec "$sec" error "$out"
        FAILED=1
    fi
    sleep 0.3
    kill -TERM "$w"
    wait "$w"
    if rep=$(h stream-report "$LOGS/stream-$1.tsv" "$STREAM_BYTES" "$t_start" "$t_written" 2>&1); then
        rec "$sec" report "$rep"
        log "stream ($1): $rep"
    else
        rec "$sec" error "no figures: $rep"
        FAILED=1
    fi
    rm -f "$data/stream.dat"
}

# --- 1. one failover -----------------------------------------------------------------------------
# run_failover MODE TTL FIRST: FIRST=1 also keeps what the rsync part needs
RSYNC_SNAP=""
RSYNC_STAGE=""   # the copy of the live data, until run_rsync moves it next to the restore
run_failover() {
    local mode=$1 ttl=$2 first=$3 sec="failover $1 $2" data i n out snap_json snap snap_pos snap_seq
    local recv0 recv1 other=() t_kill ans_pid ans N N_EPOCH N_SVC fields vals k old_pos=""
    rec "$sec" mode "$mode"
    rec "$sec" ttl "$ttl"
    rec "$sec" state_bytes "$STATE_BYTES"
    cluster_start "failover-$mode-$ttl" "$mode" "$ttl" || { rec "$sec" error "cluster did not start (see the log lines below)"; FAILED=1; return 1; }
    data="$CL/${HOSTS[$P]}/data"

    log "failover $mode ttl ${ttl}s: writing $((STATE_BYTES >> 20)) MiB in $BENCH_STATE_FILES files (dd from /dev/urandom, conv=fsync)"
    mkdir -p "$data/state"
    local t0=$EPOCHREALTIME
    for ((n = 0; n < BENCH_STATE_FILES; n++)); do
        dd if=/dev/urandom of="$(printf '%s/state/f%03d.dat' "$data" "$n")" bs=1M count="$FILE_MIB" conv=fsync status=none \
            2>>"$LOGS/state-dd.err" || { broke "$sec" "writing the state failed: $(tail -n 1 "$LOGS/state-dd.err")"; return 1; }
    done
    rec "$sec" state_write_seconds "$(calc "$EPOCHREALTIME - $t0")"

    out=$(h wait-caught-up 300 "$(api "$P")" 2>&1) || { broke "$sec" "peers not caught up after the state: $out"; return 1; }
    log "failover $mode ttl ${ttl}s: state written, peers caught up ($out); snapshot"
    snap_json="$LOGS/snapshot-$mode-$ttl.json"
    if ! "$LB" backup --agent "$(api "$P")" --workload bench --json >"$snap_json" 2>"$snap_json.err"; then
        broke "$sec" "lifeboat backup --agent failed: $(tail -n 2 "$snap_json.err" | tr '\n' ' ')"
        return 1
    fi
    read -r snap snap_pos k < <(python3 -c 'import json, sys
t = open(sys.argv[1]).read(); d = json.loads(t[t.index("{"):])
print(d["snapshot"], d["position"], d["seconds"])' "$snap_json")
    snap_seq=${snap_pos##*:}
    rec "$sec" snapshot_id "$snap"
    rec "$sec" snapshot_position "$snap_pos"
    rec "$sec" snapshot_take_seconds "$k"
    log "failover $mode ttl ${ttl}s: snapshot ${snap:0:12} at $snap_pos in $k s"

    for i in 0 1 2; do [[ $i == "$P" ]] || other+=("$i"); done
    recv0=$(curl -sf "$(api "${other[0]}")/metrics" | awk '/^lifeboat_bytes_received_total/ {print $2}')
    log "failover $mode ttl ${ttl}s: overwriting $((DELTA_BYTES >> 10)) KiB in random 8 KiB blocks (pwrite+fsync each)"
    if ! out=$(h write-delta "$data/state" "$DELTA_BYTES" 8192 "$((ttl * 7 + ${#mode}))" 2>&1); then
        broke "$sec" "the delta writes failed: $out"
        return 1
    fi
    read -r n k t0 <<<"$out"
    rec "$sec" delta_blocks "$n"
    rec "$sec" delta_written_bytes "$k"
    rec "$sec" delta_write_seconds "$t0"
    out=$(h wait-caught-up 120 "$(api "$P")" 2>&1) || { broke "$sec" "peers not caught up after the delta: $out"; return 1; }
    read -r k n <<<"$out"
    rec "$sec" catch_up_seconds "$k"
    recv1=$(curl -sf "$(api "${other[0]}")/metrics" | awk '/^lifeboat_bytes_received_total/ {print $2}')
    rec "$sec" journal_delta_bytes "$((recv1 - recv0))"
    rec "$sec" journal_delta_records "$((${n##*:} - snap_seq))"
    rec "$sec" old_position "$n"
    old_pos=$n
    log "failover $mode ttl ${ttl}s: delta written; both peers acked $n ($((${n##*:} - snap_seq)) records, $((recv1 - recv0)) bytes received by ${HOSTS[${other[0]}]} since the snapshot)"

    if [[ $first == 1 ]] && want rsync; then
        RSYNC_STAGE="${SHM:-$WORK}/rsync-live"   # (without /dev/shm: on the disk after all)
        log "rsync: copying ${HOSTS[$P]}'s backing dir (the data after the changes) to $RSYNC_STAGE for the rsync part"
        rm -rf "$WORK/rsync" "$RSYNC_STAGE"
        mkdir -p "$WORK/rsync"
        cp -a "$CL/${HOSTS[$P]}/backing" "$RSYNC_STAGE" || { rec rsync error "cannot copy the backing dir"; FAILED=1; }
        RSYNC_SNAP=$snap
    fi

    drop_caches
    # The drop's sync flushes gigabytes on the disk every "host" shares, which can stall the
    # primary's lease renewal: let a renewal happen, then kill only a primary that still holds
    # its lease (a lease lost here is a finding, reported, and this run's figures are not taken).
    sleep "$(calc "$ttl / 2 + 0.2")"
    local ap=${AGENT_PIDS[$P]} svc role ep holder left
    read -r role ep holder left < <(fc_status "$(api "$P")" role epoch lease_holder lease_expires_in)
    rec "$sec" lease_expires_in_before_kill "$left"
    if [[ $role != primary || $ep != "$P_EPOCH" || $holder != "${HOSTS[$P]}" ]]; then
        log "failover $mode ttl ${ttl}s: before the kill ${HOSTS[$P]} is $role at epoch $ep, lease holder $holder: it lost its lease without being killed"
        broke "$sec" "before the kill the primary ${HOSTS[$P]} was $role at epoch $ep (lease holder $holder): it lost its lease during the page-cache drop (sync), not killed" 25
        return 1
    fi
    svc=$(fc_status "$(api "$P")" service.pid) || svc=$P_SVC
    track_service "$P" "$svc"
    log "failover $mode ttl ${ttl}s: SIGKILL ${HOSTS[$P]}'s agent (pid $ap) and service (pid $svc)"
    CL_EXPECT="stream to ${HOSTS[$P]}: Connection errors: .*${ADDRS[$P]}:$PEER_PORT.*Connection refused"
    t_kill=$EPOCHREALTIME
    kill -KILL "$ap" 2>/dev/null
    is_service_of "$P" "$svc" && kill -KILL "$svc" 2>/dev/null
    python3 "$HELPER" wait-answer "$t_kill" 120 "${ADDRS[${other[0]}]}:$SVC_PORT" "${ADDRS[${other[1]}]}:$SVC_PORT" >"$LOGS/answer-$mode-$ttl.txt" 2>&1 &
    ans_pid=$!
    LB_PIDS+=("$ans_pid")
    wait_gone "$ap" 10
    AGENT_PIDS[P]=""
    umount -l "$data" 2>/dev/null || fusermount3 -u -z "$data" 2>/dev/null || true
    rm -rf "$CL/${HOSTS[$P]}/backing" "$CL/${HOSTS[$P]}/journal"
    mkdir -p "$CL/${HOSTS[$P]}/backing"
    wait "$ans_pid"
    ans=$(cat "$LOGS/answer-$mode-$ttl.txt")
    if [[ $ans != *:$SVC_PORT\ * ]]; then
        broke "$sec" "no service answered within 120 s of the kill: $ans" 25
        return 1
    fi
    read -r k t0 n <<<"$ans"
    rec "$sec" kill_to_answer "$t0"
    rec "$sec" service_answer "$n"
    if ! wait_primary 30 $((P_EPOCH + 1)) "$P"; then
        broke "$sec" "the service answers at $k but no single new primary: $WAIT_SEEN" 25
        return 1
    fi
    N=$PRIMARY N_EPOCH=$PRIMARY_EPOCH
    P=$N   # the cluster's primary now (cluster_stop stops it first)
    rec "$sec" new_primary "${HOSTS[$N]}"
    rec "$sec" new_epoch "$N_EPOCH"
    fields=(epoch kind detection_seconds lease_seconds snapshot_load_seconds delta_seconds replay_seconds mount_seconds
        service_start_seconds total_seconds snapshot_bytes local_records delta_records delta_bytes delta_peer
        replayed_records started_at snapshot position)
    read -r -a vals < <(fc_status "$(api "$N")" "${fields[@]/#/last_recovery.}")
    for ((i = 0; i < ${#fields[@]}; i++)); do rec "$sec" "${fields[$i]}" "${vals[$i]:--}"; done
    local started=${vals[16]} detect=${vals[2]}
    if [[ $started != - && $detect != - ]]; then
        rec "$sec" lease_left_at_kill "$(calc "$started - $detect - $t_kill")"
    fi
    log "failover $mode ttl ${ttl}s: ${HOSTS[$N]} primary at epoch $N_EPOCH; service answered $t0 s after the kill; last_recovery: $(for ((i = 0; i < ${#fields[@]}; i++)); do printf '%s=%s ' "${fields[$i]}" "${vals[$i]:--}"; done)"
    [[ ${vals[0]} == "$N_EPOCH" ]] || echo "failover-$mode-$ttl: last_recovery.epoch ${vals[0]} is not the new epoch $N_EPOCH" >>"$PROBLEMS"
    [[ ${vals[17]} == "$snap" ]] || echo "failover-$mode-$ttl: the recovery used snapshot ${vals[17]}, not ${snap} (the newest)" >>"$PROBLEMS"
    [[ ${vals[18]} == "$old_pos" ]] || echo "failover-$mode-$ttl: the new primary recovered to ${vals[18]}, the old primary's peers had acked $old_pos" >>"$PROBLEMS"

    if [[ $first == 1 ]] && want rsync && [[ -n $RSYNC_SNAP ]]; then
        log "rsync: restoring snapshot ${snap:0:12} into $WORK/rsync/old"
        drop_caches
        t0=$EPOCHREALTIME
        if ! "$LB" restore --repo "$CL/volume/repo" "$snap" --target "$WORK/rsync/old" >"$LOGS/restore.out" 2>&1; then
            rec rsync error "lifeboat restore failed: $(tail -n 2 "$LOGS/restore.out" | tr '\n' ' ')"
            FAILED=1
            RSYNC_SNAP=""
        else
            k=$EPOCHREALTIME
            sync -f "$WORK/rsync/old"
            rec rsync restore_seconds "$(calc "$k - $t0")"
            rec rsync restore_syncfs_seconds "$(calc "$EPOCHREALTIME - $k")"
            log "rsync: restore $(calc "$k - $t0") s (cold cache), then syncfs $(calc "$EPOCHREALTIME - $k") s"
        fi
    fi
    return 0
}

run_rsync() {
    local out="$LOGS/rsync.out" t0 t1 v
    if [[ -n $RSYNC_STAGE && -d $RSYNC_STAGE ]]; then
        # onto the disk, next to the restore, so that rsync reads both trees from the same disk
        if [[ $RSYNC_STAGE == "$WORK/"* ]]; then
            mv "$RSYNC_STAGE" "$WORK/rsync/live"
        else
            cp -a "$RSYNC_STAGE" "$WORK/rsync/live" || { rec rsync error "cannot copy $RSYNC_STAGE to the disk"; FAILED=1; return 0; }
            rm -rf "$RSYNC_STAGE"
        fi
    fi
    [[ -n $RSYNC_SNAP && -d $WORK/rsync/live && -d $WORK/rsync/old ]] || { grep -q '^rsync' "$RESULTS" || rec rsync error "no data (the first failover run failed)"; return 0; }
    drop_caches
    log "rsync: rsync -a --stats --no-whole-file live/ old/"
    t0=$EPOCHREALTIME
    if ! rsync -a --stats --no-whole-file "$WORK/rsync/live/" "$WORK/rsync/old/" >"$out" 2>&1; then
        rec rsync error "rsync failed: $(tail -n 3 "$out" | tr '\n' ' ')"
        FAILED=1
        return 0
    fi
    t1=$EPOCHREALTIME
    rec rsync seconds "$(calc "$t1 - $t0")"
    v=$(h rsync "$out")
    python3 -c 'import json, sys
for k, v in json.loads(sys.argv[1]).items():
    print("rsync\t%s\t%s" % (k, v))' "$v" >>"$RESULTS"
    log "rsync: $(calc "$t1 - $t0") s: $v"
    rm -rf "$WORK/rsync"
}

# --- the run -------------------------------------------------------------------------------------
T_START=$(date +%s)
HEADER="$(date -u '+%F %H:%M UTC'), $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(df -PT "$WORK" | awk 'NR==2 {print $2}') on $(df -P "$WORK" | awk 'NR==2 {print $1}')
lifeboatd $LIFEBOATD_ORIGIN ($LIFEBOATD_VERSION)
state $((STATE_BYTES >> 20)) MiB in $BENCH_STATE_FILES files, delta $((DELTA_BYTES >> 10)) KiB, TTLs: $BENCH_TTLS s, modes: $BENCH_MODES, stream $STREAM_MIB MiB, fio ${BENCH_FSYNC_RUNTIME}s; page cache $CACHE_MODE"
log "run dir $WORK"

if want fsync || want stream; then
    if cluster_start stream-async async 10; then
        want fsync && run_fsync async "$CL/${HOSTS[$P]}/data"
        want stream && run_stream disk
    else
        FAILED=1
        want fsync && rec "fsync async" error "cluster did not start"
        want stream && rec "stream disk" error "cluster did not start"
    fi
    cluster_stop
fi
if want stream && ((STREAM_TMPFS)); then
    if cluster_start stream-tmpfs async 10 "$SHM"; then
        run_stream tmpfs
    else
        FAILED=1
        rec "stream tmpfs" error "cluster did not start"
    fi
    cluster_stop
fi
rm -f "$WORK/stream.src"
if want fsync; then
    if cluster_start fsync-sync sync 10; then
        run_fsync sync "$CL/${HOSTS[$P]}/data"
    else
        FAILED=1
        rec "fsync sync" error "cluster did not start"
    fi
    cluster_stop
    mkdir -p "$WORK/native"
    run_fsync native "$WORK/native"
fi
if want failover; then
    first=1
    for mode in $BENCH_MODES; do
        for ttl in $BENCH_TTLS; do
            run_failover "$mode" "$ttl" "$first" || FAILED=1
            cluster_stop
            first=0
        done
    done
    want rsync && run_rsync
fi
T_TOTAL=$(($(date +%s) - T_START))

# --- report --------------------------------------------------------------------------------------
echo
echo "== Failover benchmark (scripts/bench/failover.sh) =="
echo "$HEADER"
echo "run time ${T_TOTAL}s"
h report "$RESULTS"
echo
if [[ -s $PROBLEMS ]]; then
    echo "Agent log lines that mention errors, warnings or failures ($(wc -l <"$PROBLEMS") lines; the first 40):"
    head -n 40 "$PROBLEMS" | sed 's/^/  /'
else
    echo "Agent logs: no line mentions an error, warning or failure."
fi
echo
echo "command: ${ENVLINE}${CMDLINE}"
if [[ $FAILED != 0 ]]; then
    log "some parts FAILED (see above)"
    exit 1
fi
exit 0
