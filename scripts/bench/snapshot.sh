#!/usr/bin/env bash
# Incremental-snapshot benchmark: `lifeboat backup --agent` (lifeboatd's dirty map) vs restic.
#
#   scripts/bench/snapshot.sh [--markdown [FILE]]
#
# This is also the "snapshot" part of scripts/bench/capture.sh, which runs it after its own
# tests (BENCH_SKIP=snapshot leaves it out there). One run starts lifeboatd with two workloads
# (capture: fuse) that share one repository:
#   bench   BENCH_SIZE (default 1G) of scripts/bench/gen_data.py data (seed BENCH_SEED) in its
#           backing dir, plus an identical native copy (cp -a) for restic
#   scale   BENCH_SCALE_SIZE (default BENCH_SIZE / 4) of gen_data.py data, for the scaling table
# and measures:
#   compare   first snapshot of each workload (backup --agent, method scan) and restic init +
#             initial backup of the native copy (not timed); then a 1% change (below) through
#             the mount and into the native copy, and, timed: `lifeboat backup --agent URL
#             --workload bench --json` (wall time of the command; also the agent's CPU time and
#             disk reads, and the report's seconds, changed_bytes_read, stall_ms), then
#             `restic backup` of the native copy (same flags as repository.sh); the ratio
#             restic wall / lifeboat wall against the goal >= 20x
#   guard     right after that snapshot (no writer running): `lifeboat digest` of the mount vs
#             the digest of `lifeboat restore` of the snapshot: MATCH or MISMATCH (a bug)
#   scaling   more timed incrementals of bench (no change, 0.1%, 1%, 5%) and of scale (1%, and
#             the same bytes as 1% of bench): data size, changed bytes, seconds and
#             changed_bytes_read show whether the cost follows the changed bytes or the dir size
#   stall     a python writer does fsync'd 8 KiB random writes without pause into a 16 MiB file
#             it created in the mount (a hot table or log; a fixed size keeps what it dirties
#             per snapshot bounded) and records each write's latency; BENCH_STALL_ROUNDS times: a 1%
#             change, a snapshot, then an idle window as long as the snapshot took. Max, p99
#             and mean latency of the writes overlapping the snapshots vs the idle windows, and
#             the agent's stall_ms. Then, writer stopped, a last snapshot of each workload and
#             the guard again (it covers the whole delta chain and the concurrent writes).
# A change of P% is random 8 KiB pwrites into existing files, each on a distinct 8 KiB-aligned
# block (drawn uniformly from the blocks of all files of at least 8 KiB), of random bytes, with
# a fixed seed, totalling P% of the data size; the same writes (offsets and bytes) go to the
# native copy while it is still compared. The page cache is dropped (sync; echo 3 >
# /proc/sys/vm/drop_caches) before every timed backup, Lifeboat's and restic's alike, unless
# BENCH_WARM=1, and then the lifeboat and restic executables are read back in (untimed), so a
# timing does not include loading the program itself; restic keeps its cache dir
# (RESTIC_CACHE_DIR under the run dir, as in repository.sh) from the initial backup, the agent
# its in-memory state. The stall rounds do not drop the cache. With the defaults a run takes
# about 3 minutes on a 2-core VM (BENCH_QUICK=1: about 1 minute).
#
# Options:
#   --markdown        also print the results as markdown (for Docs/benchmarks.md) on stdout
#   --markdown FILE   append them, as a section with the run's header, to FILE instead
#
# Environment:
#   BENCH_DIR           where the run's dirs go (default /var/tmp/lifeboat-bench); the run uses
#                       a fresh subdirectory of it and removes it on exit
#   BENCH_QUICK         1 = short smoke run: BENCH_SIZE 128M, 2 stall rounds
#   BENCH_SIZE          data size of bench, e.g. 256M, 1G (default 1G; quick 128M), as in
#                       repository.sh
#   BENCH_SCALE_SIZE    data size of scale (default BENCH_SIZE / 4; e.g. 2G for a bigger one)
#   BENCH_SEED          gen_data.py seed (default 1); the changes' seeds derive from it
#   BENCH_ROUNDS        compare rounds (each with a new 1% change); medians (default 1)
#   BENCH_STALL_ROUNDS  snapshots taken under the writer (default 3; quick 2)
#   BENCH_WARM          1 = do not drop the page cache before timed backups
#   BENCH_KEEP          1 = keep the run directory instead of removing it (debugging)
#   LIFEBOATD_BIN       agent binary (default: .build/release/lifeboatd of this checkout)
#   LIFEBOAT_BIN        CLI binary (default: .build/release/lifeboat of this checkout)
#
# Exit status: 0 when every step succeeded and every guard matched, even if the goal is missed
# (it is informational); non-zero on a failure or a MISMATCH.
set -euo pipefail
export LC_ALL=C   # EPOCHREALTIME and printf with a '.' decimal point

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LB_SCRIPT=snapshot.sh
. "$SCRIPT_DIR/../lib/bench.sh"
bench_args "$@"

BENCH_QUICK=${BENCH_QUICK:-0}
if [[ $BENCH_QUICK == 1 ]]; then q_size=128M q_stall=2; else q_size=1G q_stall=3; fi
BENCH_SIZE=${BENCH_SIZE:-$q_size}
BENCH_SCALE_SIZE=${BENCH_SCALE_SIZE:-}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
BENCH_STALL_ROUNDS=${BENCH_STALL_ROUNDS:-$q_stall}

for v in BENCH_ROUNDS BENCH_STALL_ROUNDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number >= 1 (got '${!v}')"
done
[[ $BENCH_SEED =~ ^[0-9]+$ ]] || die "BENCH_SEED must be a non-negative integer"
parse_size() {
    python3 -B -c 'import sys; sys.path.insert(0, sys.argv[1]); import gen_data; print(gen_data.parse_size(sys.argv[2]))' \
        "$SCRIPT_DIR" "$1" 2>/dev/null
}
SIZE_BYTES=$(parse_size "$BENCH_SIZE") || die "bad BENCH_SIZE: $BENCH_SIZE (use e.g. 256M, 1G)"
if [[ -z $BENCH_SCALE_SIZE ]]; then
    SCALE_BYTES=$((SIZE_BYTES / 4 / 1048576 * 1048576))
    ((SCALE_BYTES >= 1048576)) || SCALE_BYTES=1048576
    BENCH_SCALE_SIZE=$((SCALE_BYTES >> 20))M
else
    SCALE_BYTES=$(parse_size "$BENCH_SCALE_SIZE") || die "bad BENCH_SCALE_SIZE: $BENCH_SCALE_SIZE (use e.g. 256M, 2G)"
fi

# --- prerequisites ---------------------------------------------------------------------------
[[ $EUID -eq 0 ]] || die "run as root (FUSE mount with allow_other, dropping the page cache)"
command -v python3 >/dev/null || die "python3 is missing (apt-get install python3)"
missing=()
[[ -x /usr/bin/time ]] || missing+=(time)
command -v restic >/dev/null || missing+=(restic)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    log "installing missing packages: ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
[[ -x $LIFEBOATD_BIN ]] || die "lifeboatd not found at $LIFEBOATD_BIN
  build it (swift build -c release) or set LIFEBOATD_BIN"
[[ -x $LIFEBOAT_BIN ]] || die "lifeboat not found at $LIFEBOAT_BIN
  build it (swift build -c release) or set LIFEBOAT_BIN"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"
command -v mountpoint >/dev/null || die "mountpoint is missing (util-linux)"

cache_setup "before every timed backup, both tools, then both executables read back in"
[[ $BENCH_WARM == 1 ]] || CACHE_MODE+="; restic's cache dir kept"

# After a drop, both tools' executables are read back in (not timed), so that a timed command
# does not include loading its own program from disk; the data and repositories stay cold.
warm_binaries() {
    cat "$LIFEBOAT_BIN" "$(command -v restic)" >/dev/null
    "$LIFEBOAT_BIN" --version >/dev/null 2>&1 || true
    restic version >/dev/null 2>&1 || true
}

# --- work dir and cleanup ----------------------------------------------------------------------
bench_workdir snapshot

BACKING=$WORK/backing             # bench: where the mount's files really live
MOUNT=$WORK/data                  # bench: lifeboatd's FUSE mount point
JOURNAL=$WORK/journal
SCALE_BACKING=$WORK/scale-backing # scale: the second workload
SCALE_MOUNT=$WORK/scale-data
SCALE_JOURNAL=$WORK/scale-journal
NATIVE=$WORK/native               # restic's copy of bench's data (same filesystem)
REPO=$WORK/repo-lifeboat          # the agent's repository (it creates it)
RESTIC_REPO=$WORK/repo-restic
LOGS=$WORK/logs
AGENT_CONFIG=$WORK/agent.yaml
AGENT_LOG=$LOGS/lifeboatd.log
SNAPS=$WORK/snapshots.tsv         # label workload t0 t1 wall agent_cpu agent_read_bytes
CHANGES=$WORK/changes.tsv         # label workload spec blocks bytes data_bytes seconds
RESTIC_TIMES=$WORK/restic.tsv     # label wall user sys rss_kb fs_inputs
WINDOWS=$WORK/stall-windows.tsv   # round snap_t0 snap_t1 idle_t0 idle_len
GUARDS=$WORK/guards.tsv           # label workload snapshot mount_digest restore_digest entries bytes result
WRITER_OUT=$WORK/writer.tsv
MARKER=base/16384/heap.dat        # gen_data.py's large file
HOT=stall/hot.dat                 # the stall writer's file in bench (16 MiB)
mkdir -p "$BACKING" "$MOUNT" "$SCALE_BACKING" "$SCALE_MOUNT" "$LOGS"
chmod 755 "$BACKING" "$MOUNT" "$SCALE_BACKING" "$SCALE_MOUNT"
: >"$SNAPS"; : >"$CHANGES"; : >"$RESTIC_TIMES"; : >"$WINDOWS"; : >"$GUARDS"

# Tool environments: every cache and config goes under $WORK so cleanup removes it (as repository.sh).
export XDG_CACHE_HOME=$WORK/home/cache
export RESTIC_PASSWORD=lifeboat-bench
export RESTIC_CACHE_DIR=$WORK/home/cache/restic
unset RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE LIFEBOAT_REPOSITORY LIFEBOAT_CRASH_AT

AGENT_URL=""
WRITER_PID=""
FAILED=0
MISMATCH=0

exec 9>&2   # the script's stderr, for the cleanup
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 2>&9
    if [[ -n $CHILD_PID ]]; then stop_pid "$CHILD_PID" 10; fi
    if [[ -n $WRITER_PID ]]; then stop_pid "$WRITER_PID" 10; fi
    if [[ -n $AGENT_PID ]]; then stop_pid "$AGENT_PID" 30; fi
    bench_remove_work "$MOUNT" "$SCALE_MOUNT"
    if [[ $rc -ne 0 ]]; then log "snapshot.sh: FAILED (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bench_space $((SIZE_BYTES * 6 + SCALE_BYTES * 3 + 512 * 1048576))

# --- helpers -------------------------------------------------------------------------------------
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }

agent_read_bytes() {  # bytes AGENT_PID (all its threads) fetched from storage
    awk '/^read_bytes:/ {print $2}' "/proc/$AGENT_PID/io"
}

# die_agent MESSAGE [FILE]: shows FILE and the agent's log, then stops the run.
die_agent() {
    if [[ -n ${2:-} && -f $2 ]]; then
        echo "---- $2 ----" >&2
        tail -n 20 "$2" >&2
    fi
    if agent_alive; then log "lifeboatd (pid $AGENT_PID) is running"; else log "lifeboatd is NOT running"; fi
    agent_log_tail 40
    die "$1"
}

json_field() {  # FILE KEY...: the values, space separated
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(" ".join(str(d.get(k, "-")) for k in sys.argv[2:]))' "$@"
}

mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

start_agent() {
    local port
    port=$(free_port)
    AGENT_URL=http://127.0.0.1:$port
    agent_yaml "$AGENT_CONFIG" bench "127.0.0.1:$port" "$REPO" bench "$MOUNT" "$BACKING" "$JOURNAL" \
        scale "$SCALE_MOUNT" "$SCALE_BACKING" "$SCALE_JOURNAL"
    agent_run "$AGENT_CONFIG" "mount both data dirs and answer /readyz" agent_ready
    chmod 755 "$MOUNT" "$SCALE_MOUNT" || true
    log "lifeboatd (pid $AGENT_PID) mounted $MOUNT and $SCALE_MOUNT; API on $AGENT_URL"
}
agent_ready() {
    mountpoint -q "$MOUNT" && mountpoint -q "$SCALE_MOUNT" && curl -fsS -o /dev/null --max-time 2 "$AGENT_URL/readyz" 2>/dev/null
}
stop_agent() { agent_stop "$MOUNT" "$SCALE_MOUNT"; }

# apply_change LABEL WORKLOAD SPEC SEED DIR...: SPEC is "P%" (of the data size of the first DIR)
# or a byte count. Writes the same random 8 KiB blocks (offsets and bytes) into the existing
# files of every DIR; the first DIR gives the file list.
apply_change() {
    local label=$1 workload=$2 spec=$3 seed=$4; shift 4
    local out="$LOGS/change-$label.log"
    log "change $label: $spec of $workload (seed $seed) into $*"
    if ! run python3 - "$spec" "$seed" "$@" >"$out" 2>&1 <<'PY'
import bisect, os, random, stat, sys, time
spec, seed, dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
BS = 8192
ref = dirs[0]
files, total = [], 0
for d, subdirs, names in os.walk(ref):
    subdirs.sort()
    for name in sorted(names):
        path = os.path.join(d, name)
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            continue
        total += st.st_size
        if st.st_size >= BS:
            files.append((os.path.relpath(path, ref), st.st_size // BS))
target = total * float(spec[:-1]) / 100 if spec.endswith("%") else float(spec)
count = int(round(target / BS))
ends, n = [], 0
for _, blocks in files:
    n += blocks
    ends.append(n)
if count > n:
    sys.exit("change: %d blocks wanted, only %d in the files" % (count, n))
rng = random.Random(seed)
writes = {}   # file index -> [(offset, bytes)], in the order drawn
for b in rng.sample(range(n), count):
    i = bisect.bisect_right(ends, b)
    first = ends[i - 1] if i else 0
    writes.setdefault(i, []).append(((b - first) * BS, rng.randbytes(BS)))
t0 = time.perf_counter()
for d in dirs:
    for i in sorted(writes):
        fd = os.open(os.path.join(d, files[i][0]), os.O_WRONLY)
        try:
            for off, data in writes[i]:
                if os.pwrite(fd, data, off) != BS:
                    sys.exit("short write")
        finally:
            os.close(fd)
print(count, count * BS, total, len(writes), "%.2f" % (time.perf_counter() - t0))
PY
    then
        cat "$out" >&2
        die "change $label failed"
    fi
    read -r CHANGE_BLOCKS CHANGE_BYTES CHANGE_DATA CHANGE_FILES CHANGE_S <"$out"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$workload" "$spec" "$CHANGE_BLOCKS" "$CHANGE_BYTES" \
        "$CHANGE_DATA" "$CHANGE_S" >>"$CHANGES"
    log "change $label: $CHANGE_BLOCKS writes of 8 KiB = $(mib "$CHANGE_BYTES") MiB of $(mib "$CHANGE_DATA") MiB in $CHANGE_FILES files (${CHANGE_S}s)"
}

# lb_snapshot LABEL WORKLOAD [nodrop]: `lifeboat backup --agent URL --workload W --json`, timed
# (wall of the command), with the agent's CPU time and disk reads over it; the report goes to
# $LOGS/snap-LABEL.json. Sets SNAP_ID and SNAP_WALL.
lb_snapshot() {
    local label=$1 workload=$2 mode=${3:-drop}
    local out="$LOGS/snap-$label.json" err="$LOGS/snap-$label.err"
    local c0 c1 r0 r1 t0 t1
    agent_alive || die_agent "lifeboatd is not running (before snapshot $label)"
    [[ $mode == nodrop ]] || { drop_caches; warm_binaries; }
    c0=$(agent_cpu_s); r0=$(agent_read_bytes)
    t0=$EPOCHREALTIME
    if ! run "$LIFEBOAT_BIN" backup --agent "$AGENT_URL" --workload "$workload" --json >"$out" 2>"$err"; then
        cat "$out" >>"$err"
        die_agent "snapshot $label of $workload failed (lifeboat backup --agent)" "$err"
    fi
    t1=$EPOCHREALTIME
    c1=$(agent_cpu_s); r1=$(agent_read_bytes)
    SNAP_WALL=$(elapsed "$t0" "$t1")
    local fields
    fields=$(json_field "$out" snapshot method seconds changed_bytes_read base_bytes_read stall_ms) \
        || die_agent "snapshot $label: the report is not JSON" "$out"
    local method seconds changed base stall
    read -r SNAP_ID method seconds changed base stall <<<"$fields"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$workload" "$t0" "$t1" "$SNAP_WALL" \
        "$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')" "$((r1 - r0))" >>"$SNAPS"
    log "snapshot $label: $workload: ${SNAP_WALL}s wall ($method, agent ${seconds}s), changed_bytes_read $changed, base_bytes_read $base, stall ${stall} ms, ${SNAP_ID:0:12}"
}

# restic_backup LABEL: timed `restic backup` of the native copy (flags as in repository.sh).
restic_backup() {
    local label=$1 out="$LOGS/restic-$1.log" tf="$LOGS/restic-$1.time" t0 t1
    drop_caches
    warm_binaries
    log "restic $label: restic --repo $RESTIC_REPO backup $NATIVE"
    t0=$EPOCHREALTIME
    if ! run /usr/bin/time -f '%e %U %S %M %I' -o "$tf" restic --repo "$RESTIC_REPO" backup "$NATIVE" >"$out" 2>&1; then
        tail -n 30 "$out" >&2
        die "restic backup ($label) failed"
    fi
    t1=$EPOCHREALTIME
    local wall user sys rss inputs
    read -r _ user sys rss inputs < <(tail -n 1 "$tf")
    wall=$(elapsed "$t0" "$t1")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$wall" "$user" "$sys" "$rss" "$inputs" >>"$RESTIC_TIMES"
    log "restic $label: ${wall}s wall, $(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')s CPU, $(mib $((inputs * 512))) MiB read from disk"
}

# guard LABEL WORKLOAD DIR SNAPSHOT: the digest of DIR (the mount, nothing writing) against the
# digest of a restore of SNAPSHOT. Records MATCH or MISMATCH; a mismatch fails the run.
guard() {
    local label=$1 workload=$2 dir=$3 snap=$4 target="$WORK/restore-$1"
    local dm="$LOGS/digest-$label-mount.json" dr="$LOGS/digest-$label-restore.json"
    local mount_digest restore_digest entries bytes r_entries r_bytes result
    log "guard $label: lifeboat digest $dir"
    run "$LIFEBOAT_BIN" digest --json "$dir" >"$dm" 2>&1 || die_agent "lifeboat digest of $dir failed" "$dm"
    read -r mount_digest entries bytes < <(json_field "$dm" digest entries bytes)
    log "guard $label: lifeboat restore --repo $REPO ${snap:0:12} --target $target"
    if ! run "$LIFEBOAT_BIN" restore --repo "$REPO" "$snap" --target "$target" >"$LOGS/restore-$label.log" 2>&1; then
        tail -n 20 "$LOGS/restore-$label.log" >&2
        log "guard $label: RESTORE FAILED"
        FAILED=1
        MISMATCH=1
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$workload" "$snap" "$mount_digest" "-" "$entries" "$bytes" \
            "RESTORE FAILED" >>"$GUARDS"
        rm -rf -- "$target"
        return 0
    fi
    run "$LIFEBOAT_BIN" digest --json "$target" >"$dr" 2>&1 || die "lifeboat digest of $target failed: $(tail -n 3 "$dr")"
    read -r restore_digest r_entries r_bytes < <(json_field "$dr" digest entries bytes)
    if [[ $mount_digest == "$restore_digest" ]]; then
        result=MATCH
    else
        result=MISMATCH
        MISMATCH=1
        FAILED=1
        log "guard $label: MISMATCH: mount $mount_digest ($entries entries, $bytes bytes), restore $restore_digest ($r_entries entries, $r_bytes bytes)"
        diff -rq --no-dereference "$dir" "$target" 2>&1 | head -n 20 >&2 || true
        # metadata differences the digest covers but diff does not
        python3 "$LB_LIB_DIR/treecmp.py" --xattrs names --max 20 --count "$dir" "$target" | sed 's/^/  /' >&2 || true
        agent_log_tail 20
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$workload" "$snap" "$mount_digest" "$restore_digest" "$entries" \
        "$bytes" "$result" >>"$GUARDS"
    log "guard $label: $result ($entries entries, $(mib "$bytes") MiB)"
    if [[ $BENCH_KEEP == 1 && $result != MATCH ]]; then return 0; fi
    rm -rf -- "$target"
}

# --- header --------------------------------------------------------------------------------------
bench_private_bins lifeboatd lifeboat
{
    echo "== Lifeboat incremental snapshot benchmark: lifeboatd (backup --agent) vs restic =="
    echo "command:   $CMDLINE"
    echo "env:       BENCH_DIR=$BENCH_DIR BENCH_QUICK=$BENCH_QUICK BENCH_SIZE=$BENCH_SIZE BENCH_SCALE_SIZE=$BENCH_SCALE_SIZE BENCH_SEED=$BENCH_SEED BENCH_ROUNDS=$BENCH_ROUNDS BENCH_STALL_ROUNDS=$BENCH_STALL_ROUNDS BENCH_WARM=$BENCH_WARM"
    echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "machine:   $(machine_line)"
    echo "storage:   $(storage_line "$WORK"); backing dirs, native copy and both repositories on it"
    echo "cache:     $CACHE_MODE"
    echo "lifeboatd: $LIFEBOATD_ORIGIN ($LIFEBOATD_VERSION), capture: fuse, 2 workloads, repository defaults"
    echo "lifeboat:  $LIFEBOAT_ORIGIN ($LIFEBOAT_VERSION)"
    echo "restic:    $(restic version | head -n1); init --repository-version 2, backup DIR (as repository.sh)"
} | tee "$WORK/header.txt"
T_START=$(date +%s)

# --- data ----------------------------------------------------------------------------------------
log "generating $BENCH_SIZE of data (seed $BENCH_SEED) in $BACKING"
run python3 "$SCRIPT_DIR/gen_data.py" "$BACKING" --size "$SIZE_BYTES" --seed "$BENCH_SEED" 2>>"$LOGS/gen.log" \
    || { cat "$LOGS/gen.log" >&2; die "data generation failed"; }
log "generating $BENCH_SCALE_SIZE of data (seed $((BENCH_SEED + 1))) in $SCALE_BACKING"
run python3 "$SCRIPT_DIR/gen_data.py" "$SCALE_BACKING" --size "$SCALE_BYTES" --seed "$((BENCH_SEED + 1))" 2>>"$LOGS/gen.log" \
    || { cat "$LOGS/gen.log" >&2; die "data generation failed"; }
log "copying $BACKING to $NATIVE (cp -a)"
run cp -a "$BACKING" "$NATIVE" || die "cp -a $BACKING $NATIVE failed"
BENCH_BYTES=$(data_bytes "$BACKING"); BENCH_FILES=$(data_files "$BACKING")
SCALE_DATA_BYTES=$(data_bytes "$SCALE_BACKING"); SCALE_FILES=$(data_files "$SCALE_BACKING")
T_DATA=$(($(date +%s) - T_START))

# --- first snapshots (scan) and restic's initial backup, not part of the comparison -------------
start_agent
lb_snapshot first-bench bench
lb_snapshot first-scale scale
log "restic init + initial backup"
run restic --repo "$RESTIC_REPO" init --repository-version 2 >"$LOGS/restic-init.log" 2>&1 \
    || { tail -n 20 "$LOGS/restic-init.log" >&2; die "restic init failed"; }
restic_backup initial

# --- compare: 1% change, lifeboat backup --agent vs restic backup -------------------------------
T_COMPARE=$(date +%s)
for round in $(seq "$BENCH_ROUNDS"); do
    apply_change "compare-$round" bench 1% "$((BENCH_SEED * 1000 + round))" "$MOUNT" "$NATIVE"
    lb_snapshot "compare-$round" bench
    COMPARE_SNAP=$SNAP_ID
    restic_backup "compare-$round"
done
T_COMPARE=$(($(date +%s) - T_COMPARE))
guard compare bench "$MOUNT" "$COMPARE_SNAP"

# --- scaling: cost vs changed bytes and vs data dir size -----------------------------------------
T_SCALE=$(date +%s)
lb_snapshot scale-bench-0 bench
k=0
for pct in 0.1 1 5; do
    k=$((k + 1))
    apply_change "scale-bench-$pct" bench "$pct%" "$((BENCH_SEED * 1000 + 100 + k))" "$MOUNT"
    lb_snapshot "scale-bench-$pct" bench
done
apply_change scale-scale-1 scale 1% "$((BENCH_SEED * 1000 + 110))" "$SCALE_MOUNT"
lb_snapshot scale-scale-1 scale
# the same bytes as 1% of bench, on the other dir
same=$(awk -F'\t' '$1 == "compare-1" {print $5}' "$CHANGES")
apply_change scale-scale-same scale "$same" "$((BENCH_SEED * 1000 + 111))" "$SCALE_MOUNT"
lb_snapshot scale-scale-same scale
T_SCALE=$(($(date +%s) - T_SCALE))

# --- stall: write latency in the mount during snapshots vs idle ----------------------------------
T_STALL=$(date +%s)
log "stall: creating $MOUNT/$HOT (16 MiB) and taking a snapshot that holds it"
mkdir -p "$MOUNT/${HOT%/*}"
run python3 -c 'import os, random, sys
with open(sys.argv[1], "wb") as f:
    f.write(random.Random(int(sys.argv[2])).randbytes(16 << 20))
    f.flush()
    os.fsync(f.fileno())' "$MOUNT/$HOT" "$((BENCH_SEED * 1000 + 299))" || die_agent "cannot create $MOUNT/$HOT"
lb_snapshot stall-0 bench nodrop
log "stall: starting the writer (fsync'd 8 KiB random writes into $MOUNT/$HOT)"
python3 - "$MOUNT/$HOT" "$WRITER_OUT" "$((BENCH_SEED * 1000 + 300))" "$WORK/writer.ready" \
    >"$LOGS/writer.log" 2>&1 9>&- <<'PY' &
import array, os, random, signal, sys, time
path, out, seed, ready = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
stop = False
def on_term(signum, frame):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
rng = random.Random(seed)
BS = 8192
fd = os.open(path, os.O_WRONLY)
blocks = os.fstat(fd).st_size // BS
bufs = [rng.randbytes(BS) for _ in range(64)]
starts, lats = array.array("d"), array.array("d")
i = 0
while not stop:
    off = rng.randrange(blocks) * BS
    t = time.time()
    p = time.perf_counter()
    os.pwrite(fd, bufs[i & 63], off)
    os.fsync(fd)
    lats.append(time.perf_counter() - p)
    starts.append(t)
    i += 1
    if i == 100:
        open(ready, "w").close()
os.close(fd)
with open(out, "w") as f:
    for s, l in zip(starts, lats):
        f.write("%.6f\t%.6f\n" % (s, l))
print("writer: %d writes" % i)
PY
WRITER_PID=$!
for ((i = 0; i < 300; i++)); do
    [[ -e $WORK/writer.ready ]] && break
    kill -0 "$WRITER_PID" 2>/dev/null || break
    sleep 0.1
done
[[ -e $WORK/writer.ready ]] || { cat "$LOGS/writer.log" >&2; die_agent "the writer did not get going (100 writes) within 30 s"; }
for round in $(seq "$BENCH_STALL_ROUNDS"); do
    apply_change "stall-$round" bench 1% "$((BENCH_SEED * 1000 + 200 + round))" "$MOUNT"
    sleep 0.5
    lb_snapshot "stall-$round" bench nodrop
    read -r s_t0 s_t1 < <(awk -F'\t' -v l="stall-$round" '$1 == l {print $3, $4}' "$SNAPS")
    sleep 0.3
    idle_t0=$EPOCHREALTIME
    sleep "$SNAP_WALL"
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$s_t0" "$s_t1" "$idle_t0" "$SNAP_WALL" >>"$WINDOWS"
    sleep 0.3
done
log "stall: stopping the writer"
kill -TERM "$WRITER_PID" 2>/dev/null || true
if ! wait_gone "$WRITER_PID" 60; then
    kill -KILL "$WRITER_PID" 2>/dev/null || true
    wait_gone "$WRITER_PID" 10 || true
    WRITER_PID=""
    die_agent "the writer did not stop within 60 s of SIGTERM (a write or fsync in the mount hangs?)"
fi
WRITER_PID=""
[[ $WAIT_RC == 0 && -s $WRITER_OUT ]] || { cat "$LOGS/writer.log" >&2; die_agent "the writer failed (status $WAIT_RC)"; }
log "stall: $(cat "$LOGS/writer.log")"
T_STALL=$(($(date +%s) - T_STALL))

# --- last snapshots (writer stopped) and the guard over the whole chain ---------------------------
lb_snapshot final-bench bench
guard final bench "$MOUNT" "$SNAP_ID"
lb_snapshot final-scale scale
guard final-scale scale "$SCALE_MOUNT" "$SNAP_ID"

# --- agent figures, then stop it -----------------------------------------------------------------
JOURNAL_BYTES=$(du -sb "$JOURNAL" 2>/dev/null | cut -f1 || true)
REPO_BYTES=$(du -sb "$REPO" 2>/dev/null | cut -f1 || true)
RESTIC_BYTES=$(du -sb "$RESTIC_REPO" 2>/dev/null | cut -f1 || true)
grep -E 'snapshot [0-9a-f]+ of ' "$AGENT_LOG" >"$LOGS/agent-snapshots.log" 2>/dev/null || true
grep -iE 'error|warn|fail|scanning instead' "$AGENT_LOG" >"$LOGS/agent-problems.log" 2>/dev/null || true
stop_agent
T_TOTAL=$(($(date +%s) - T_START))
log "lifeboatd's log lines of the snapshots:"
sed 's/^/    /' "$LOGS/agent-snapshots.log" >&2

# --- report --------------------------------------------------------------------------------------
{
    echo "data:      bench $BENCH_BYTES bytes in $BENCH_FILES files, scale $SCALE_DATA_BYTES bytes in $SCALE_FILES files ($(sed -n 's/^gen_data: .*: \([0-9]* pages\).*/\1/p' "$LOGS/gen.log" | head -n1) of 8 KiB in $MARKER of bench)"
    echo "lifeboatd: peak RSS (VmHWM) ${AGENT_HWM_KB:-?} kB, CPU ${AGENT_CPU_S:-?} s over the run, exit status ${AGENT_RC:-?}; journal of bench ${JOURNAL_BYTES:-?} bytes at the end"
    echo "repos:     lifeboat ${REPO_BYTES:-?} bytes (both workloads), restic ${RESTIC_BYTES:-?} bytes"
    echo "run time:  ${T_TOTAL}s (data generation and copy ${T_DATA}s, compare ${T_COMPARE}s, scaling ${T_SCALE}s, stall ${T_STALL}s)"
} >"$WORK/footer.txt"
if [[ -s $LOGS/agent-problems.log ]]; then
    log "lines of lifeboatd's log that mention errors, warnings or a scan fallback:"
    head -n 20 "$LOGS/agent-problems.log" >&2
fi
echo
cat "$WORK/footer.txt"
python3 - "$WORK" "$MARKDOWN" "$MARKDOWN_FILE" "$LB_LIB_DIR" <<'PY'
import json, math, os, sys
sys.path.insert(0, sys.argv[4])
from report import median, text_table, md_table, emit

work, markdown, md_file = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
logs = os.path.join(work, "logs")
MiB = 1048576

def tsv(name):
    with open(os.path.join(work, name)) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]

snaps = {r[0]: dict(workload=r[1], t0=float(r[2]), t1=float(r[3]), wall=float(r[4]), cpu=float(r[5]),
                    read=int(r[6])) for r in tsv("snapshots.tsv")}
for label, s in snaps.items():
    s["report"] = json.load(open(os.path.join(logs, "snap-%s.json" % label)))
changes = {r[0]: dict(workload=r[1], spec=r[2], blocks=int(r[3]), bytes=int(r[4]), data=int(r[5])) for r in tsv("changes.tsv")}
restic = {r[0]: dict(wall=float(r[1]), cpu=float(r[2]) + float(r[3]), rss=int(r[4]), read=int(r[5]) * 512)
          for r in tsv("restic.tsv")}
guards = tsv("guards.tsv")
windows = [dict(round=int(r[0]), s0=float(r[1]), s1=float(r[2]), i0=float(r[3]), length=float(r[4])) for r in tsv("stall-windows.tsv")]
writes = []
with open(os.path.join(work, "writer.tsv")) as f:
    for line in f:
        s, l = line.split()
        writes.append((float(s), float(l)))

def mib(b):
    return "%.2f" % (b / MiB)

def secs(v):
    return "%.3f" % v if v < 10 else "%.2f" % v

tables = []   # (title, header, rows, notes)

# compare
rounds = sorted(k for k in snaps if k.startswith("compare-"))
lb = [snaps[k] for k in rounds]
rs = [restic[k] for k in rounds]
rep = [s["report"] for s in lb]
lb_wall = median([s["wall"] for s in lb])
rs_wall = median([r["wall"] for r in rs])
agent_s = median([r["seconds"] for r in rep])
ch_bytes = median([changes[k]["bytes"] for k in rounds])
data_bytes = changes[rounds[0]]["data"]
n = len(rounds)
title = ("Incremental after a 1%% change of %.2f GiB (%s MiB in %d random 8 KiB writes)%s" %
         (data_bytes / 2**30, mib(ch_bytes), changes[rounds[0]]["blocks"],
          ", median of %d rounds" % n if n > 1 else ""))
rows = [
    ["lifeboat backup --agent (%s)" % rep[-1].get("method"), secs(lb_wall), secs(agent_s),
     "%.2f" % median([s["cpu"] for s in lb]), mib(median([s["read"] for s in lb])),
     mib(median([r["changed_bytes_read"] for r in rep])), mib(median([r["base_bytes_read"] for r in rep])),
     "%.2f" % median([r["stall_ms"] for r in rep])],
    ["restic backup", secs(rs_wall), "-", "%.2f" % median([r["cpu"] for r in rs]), mib(median([r["read"] for r in rs])),
     "-", "-", "-"],
]
hdr = ["tool", "wall s", "agent s", "CPU s", "disk read MiB", "changed_bytes_read MiB", "base_bytes_read MiB", "stall ms"]
notes = ["wall s: the command's wall time; agent s: the report's `seconds`; CPU s: lifeboatd's CPU time "
         "over the command (lifeboat) or restic's user+sys; disk read: lifeboatd's /proc read_bytes "
         "delta, or restic's file system inputs x 512 B; page cache as in the header."]
tables.append((title, hdr, rows, notes))

ratio = rs_wall / lb_wall if lb_wall > 0 else float("inf")
ratio_agent = rs_wall / agent_s if agent_s > 0 else float("inf")
goal_rows = [["restic wall / lifeboat wall >= 20x", "%.1fx (%s s / %s s)" % (ratio, secs(rs_wall), secs(lb_wall)),
              "met" if ratio >= 20 else "missed"],
             ["(restic wall / agent seconds, for reference)", "%.1fx" % ratio_agent, ""]]
tables.append(("Goal (informational)", ["goal", "measured", "result"], goal_rows, []))

# scaling
rows = []
for label in ["scale-bench-0", "scale-bench-0.1", "scale-bench-1", "scale-bench-5", "scale-scale-1", "scale-scale-same"]:
    s = snaps.get(label)
    if not s:
        continue
    r = s["report"]
    c = changes.get(label)
    if c:
        d, cb = c["data"], c["bytes"]
    else:
        d, cb = data_bytes, 0
    if label.endswith("-same"):
        what = "%.2f%% (bytes of 1%% of bench)" % (100.0 * cb / d)
    else:
        what = label.rsplit("-", 1)[1] + "%"
    rows.append([s["workload"], "%.0f" % (d / MiB), what, mib(cb), secs(s["wall"]), secs(r["seconds"]),
                 mib(r["changed_bytes_read"]), mib(r["base_bytes_read"]), mib(r["new_bytes"]), "%.2f" % r["stall_ms"]])
tables.append(("Scaling: snapshot cost vs changed bytes and data dir size (each row: change, then a cold snapshot)",
               ["workload", "data MiB", "changed", "changed MiB", "wall s", "agent s", "changed_bytes_read MiB",
                "base_bytes_read MiB", "new MiB", "stall ms"], rows, []))

# stall
def overlapping(t0, t1):
    return [l for s, l in writes if s < t1 and s + l > t0]

def stats(lats, seconds):
    if not lats:
        return [str(0), "%.2f" % seconds, "-", "-", "-", "-"]
    v = sorted(lats)
    p99 = v[max(0, math.ceil(0.99 * len(v)) - 1)]
    return [str(len(v)), "%.2f" % seconds, "%.0f" % (len(v) / seconds) if seconds > 0 else "-",
            "%.2f" % (1000 * sum(v) / len(v)), "%.2f" % (1000 * p99), "%.2f" % (1000 * v[-1])]

during, idle, total = [], [], 0.0
slowest = None   # (latency, start relative to the snapshot, snapshot seconds, round)
for w in windows:
    during += overlapping(w["s0"], w["s1"])
    idle += overlapping(w["i0"], w["i0"] + w["length"])
    total += w["length"]
    for s, l in writes:
        if s < w["s1"] and s + l > w["s0"] and (slowest is None or l > slowest[0]):
            slowest = (l, s - w["s0"], w["s1"] - w["s0"], w["round"])
stall_reports = [snaps["stall-%d" % w["round"]]["report"] for w in windows]
rows = [["during the snapshots (%d)" % len(windows)] + stats(during, total),
        ["idle windows of the same length"] + stats(idle, total)]
all_lat = [l for _, l in writes]
notes = ["agent stall_ms per snapshot: %s (max %.2f); changed_bytes_read during the stall: %s MiB; "
         "snapshot wall s: %s" % (", ".join("%.2f" % r["stall_ms"] for r in stall_reports),
                                   max(r["stall_ms"] for r in stall_reports),
                                   ", ".join(mib(r.get("changed_bytes_read_during_stall", 0)) for r in stall_reports),
                                   ", ".join(secs(snaps["stall-%d" % w["round"]]["wall"]) for w in windows)),
         "writer: %d fsync'd 8 KiB writes in the whole test, max %.2f ms; a write counts for a window "
         "if it overlaps it; each round: 1%% change, 0.5 s, snapshot, 0.3 s, idle window" %
         (len(all_lat), 1000 * max(all_lat))]
if slowest:
    notes.append("slowest write during a snapshot: %.2f ms, started %+.3f s after the start of the %.3f s "
                 "`backup --agent` command of round %d; writes over 50 ms: %d during the snapshots, %d in the idle windows"
                 % (1000 * slowest[0], slowest[1], slowest[2], slowest[3],
                    sum(1 for l in during if l > 0.05), sum(1 for l in idle if l > 0.05)))
tables.append(("Write latency in the mount (fsync'd 8 KiB random writes) during snapshots vs idle",
               ["window", "writes", "seconds", "writes/s", "mean ms", "p99 ms", "max ms"], rows, notes))

# guards
rows = [[g[0], g[1], g[2][:12], g[5], mib(int(g[6])) if g[6].isdigit() else g[6], g[3][:16], g[4][:16], g[7]] for g in guards]
tables.append(("Correctness guard: digest of the mount right after the snapshot vs digest of its restore",
               ["after", "workload", "snapshot", "entries", "MiB", "mount digest", "restore digest", "result"], rows, []))

# first snapshots, for context
first = []
for label in ["first-bench", "first-scale"]:
    s = snaps.get(label)
    if s:
        r = s["report"]
        first.append("%s: %s, %s s wall (agent %s s), %s MiB scanned" % (
            label, r.get("method"), secs(s["wall"]), secs(r["seconds"]), mib(r.get("scan_bytes_read", 0))))
if "initial" in restic:
    first.append("restic initial backup: %s s wall" % secs(restic["initial"]["wall"]))

print("\nfirst snapshots (not compared): " + "; ".join(first))
for title, hdr, body, nts in tables:
    print("\n" + title + "\n")
    print(text_table(hdr, body))
    for note in nts:
        print("\n" + note)
if markdown:
    section = ("\n## Incremental snapshot: lifeboatd (backup --agent) vs restic\n\n```\n"
               + open(os.path.join(work, "header.txt")).read() + open(os.path.join(work, "footer.txt")).read()
               + "```\n\nFirst snapshots (not compared): " + "; ".join(first) + ".\n")
    for title, hdr, body, nts in tables:
        section += "\n### " + title + "\n\n" + md_table(hdr, body) + "\n"
        for note in nts:
            section += "\n" + note + "\n"
    emit(section, md_file)
PY
if [[ $MISMATCH != 0 ]]; then
    log "a correctness guard did not MATCH (see above): a bug"
    exit 1
fi
if [[ $FAILED != 0 ]]; then
    log "some steps FAILED (see above)"
    exit 1
fi
