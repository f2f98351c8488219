#!/usr/bin/env bash
# Capture benchmark: the FUSE-captured data dir of lifeboatd vs the native filesystem under it.
#
#   scripts/bench/capture.sh [--markdown [FILE]]
#
# One run starts lifeboatd with one workload (capture: fuse) whose backing dir lives on the
# same filesystem as a plain "native" dir, then runs the same job on the native dir and on the
# mount, taking turns (round 1: native first; round 2: mount first; ...):
#   seqwrite   fio, sequential 1 MiB writes of a BENCH_SEQ_SIZE file, end_fsync=1     -> MB/s
#   randwrite  fio, random 8 KiB writes, fsync after each, BENCH_RANDWRITE_SIZE file,
#              BENCH_RUNTIME seconds                                                  -> IOPS
#   randread   fio, random 8 KiB reads, one pass over the seqwrite file in random order
#              (each block once, capped at BENCH_RUNTIME s), cold page cache          -> IOPS
#   metadata   python3, BENCH_FILES small files (1 KiB) in 20 dirs: create+write+close, stat,
#              unlink; ops/s over all three phases (and per phase)                    -> ops/s
#   pgbench    PostgreSQL 15, initdb into the dir, fsync=on, synchronous_commit=on,
#              pgbench -i -s BENCH_PGBENCH_SCALE, CHECKPOINT, then
#              pgbench -c 4 -j 2 -T BENCH_PGBENCH_TIME                                -> TPS
#   snapshot   scripts/bench/snapshot.sh, run after the tests above with its own data, agent
#              and repositories: `lifeboat backup --agent` after a 1% change of BENCH_SIZE
#              (default 1G) of gen_data.py data vs restic's incremental backup of a copy
#              (goal >= 20x), the snapshot cost vs changed bytes and data dir size, write
#              latency in the mount during snapshots vs idle, and a guard comparing the digest
#              of the mount with that of the snapshot's restore (MATCH/MISMATCH); its --help
#              has the details and its settings (BENCH_SIZE, BENCH_SCALE_SIZE, BENCH_SEED,
#              BENCH_STALL_ROUNDS; BENCH_QUICK, BENCH_ROUNDS, BENCH_WARM, BENCH_KEEP,
#              BENCH_DIR and LIFEBOATD_BIN apply to it too)
# and prints absolute figures, ratios (mount / native) and the goals (seqwrite >= 60% of native,
# randwrite >= 50%, metadata >= 40%, pgbench >= 60%), then lifeboatd's peak RSS (VmHWM), its
# CPU time, its RLIMIT_NOFILE and open fds (after the metadata creates), and the size of the
# journal dir. The page cache is dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every
# measured run unless BENCH_WARM=1. lifeboatd runs (idle) during the native runs too. fio uses
# psync, iodepth 1, buffered I/O and its default fadvise hint (POSIX_FADV_RANDOM for randread on
# the file it opens; lifeboatd's reads of the backing file get no such hint). With the defaults
# a run takes about 4 minutes on a 2-core VM plus about 3 minutes for the snapshot
# part (BENCH_QUICK=1: about 1 minute plus 1 minute); this VM's figures vary a lot from
# run to run when other work runs, so use BENCH_ROUNDS=3 for published figures.
#
# Options:
#   --markdown        also print the results as markdown (for Docs/benchmarks.md) on stdout
#   --markdown FILE   append them, as a section with the run's header, to FILE instead
#
# Environment:
#   BENCH_DIR             where the run's dirs go (default /var/tmp/lifeboat-bench); the run uses a
#                         fresh subdirectory of it and removes it on exit
#   BENCH_QUICK           1 = short smoke run: 64M seq file, 16M randwrite file, 3 s runtimes,
#                         2000 files, pgbench -s 1 -T 3, snapshot part on 128M (each figure
#                         below still overrides)
#   BENCH_SKIP            tests to leave out, comma or space separated
#                         (seqwrite,randwrite,randread,metadata,pgbench,snapshot)
#   BENCH_NATIVE_ONLY     1 = do not start lifeboatd; run the native side only (no snapshot part)
#   BENCH_ROUNDS          runs of each test per target, report the median (default 1)
#   BENCH_WARM            1 = do not drop the page cache before runs (randread is then warm)
#   BENCH_KEEP            1 = keep the run directory instead of removing it (debugging)
#   BENCH_SEQ_SIZE        seqwrite/randread file size, fio syntax (default 1G; quick 64M)
#   BENCH_RANDWRITE_SIZE  randwrite file size (default 64M; quick 16M)
#   BENCH_RUNTIME         seconds for randwrite and the randread cap (default 15; quick 3)
#   BENCH_FILES           metadata file count (default 20000; quick 2000)
#   BENCH_PGBENCH_SCALE   pgbench -i -s (default 10; quick 1)
#   BENCH_PGBENCH_TIME    pgbench -T (default 20; quick 3)
#   BENCH_PGBENCH_CLIENTS pgbench -c (default 4); BENCH_PGBENCH_JOBS pgbench -j (default 2)
#   LIFEBOATD_BIN         agent binary (default: .build/release/lifeboatd of this checkout)
#   PG_BIN                PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# Exit status: 0 when every run succeeded, even if goals are missed (they are informational);
# non-zero if a run failed (the table shows FAILED), lifeboatd did not mount / died, or the
# snapshot part failed or its guard found a MISMATCH.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LB_SCRIPT=capture.sh
. "$SCRIPT_DIR/../lib/bench.sh"
bench_args "$@"

BENCH_QUICK=${BENCH_QUICK:-0}
if [[ $BENCH_QUICK == 1 ]]; then
    q_seq=64M q_rw=16M q_rt=3 q_files=2000 q_scale=1 q_pgt=3
else
    q_seq=1G q_rw=64M q_rt=15 q_files=20000 q_scale=10 q_pgt=20
fi
BENCH_SKIP=${BENCH_SKIP:-}
BENCH_NATIVE_ONLY=${BENCH_NATIVE_ONLY:-0}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
BENCH_SEQ_SIZE=${BENCH_SEQ_SIZE:-$q_seq}
BENCH_RANDWRITE_SIZE=${BENCH_RANDWRITE_SIZE:-$q_rw}
BENCH_RUNTIME=${BENCH_RUNTIME:-$q_rt}
BENCH_FILES=${BENCH_FILES:-$q_files}
BENCH_PGBENCH_SCALE=${BENCH_PGBENCH_SCALE:-$q_scale}
BENCH_PGBENCH_TIME=${BENCH_PGBENCH_TIME:-$q_pgt}
BENCH_PGBENCH_CLIENTS=${BENCH_PGBENCH_CLIENTS:-4}
BENCH_PGBENCH_JOBS=${BENCH_PGBENCH_JOBS:-2}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

ALL_TESTS=(seqwrite randwrite randread metadata pgbench snapshot)
TESTS=()
read -r -a skip_list <<<"${BENCH_SKIP//,/ }"
for s in "${skip_list[@]+"${skip_list[@]}"}"; do
    case " ${ALL_TESTS[*]} " in *" $s "*) ;; *) die "unknown test in BENCH_SKIP: $s (tests: ${ALL_TESTS[*]})" ;; esac
done
for t in "${ALL_TESTS[@]}"; do
    case " ${skip_list[*]+"${skip_list[*]}"} " in *" $t "*) ;; *) TESTS+=("$t") ;; esac
done
((${#TESTS[@]})) || die "BENCH_SKIP leaves no test to run"
want() { case " ${TESTS[*]} " in *" $1 "*) return 0 ;; esac; return 1; }
# "snapshot" is scripts/bench/snapshot.sh (own data, agent and repositories), run after the others.
CAPTURE_TESTS=()
for t in "${TESTS[@]}"; do [[ $t == snapshot ]] || CAPTURE_TESTS+=("$t"); done
SNAPSHOT_ARGS=()
if [[ $MARKDOWN == 1 ]]; then
    SNAPSHOT_ARGS=(--markdown)
    if [[ -n $MARKDOWN_FILE ]]; then SNAPSHOT_ARGS+=("$MARKDOWN_FILE"); fi
fi
snapshot_env() {  # LIFEBOATD: the settings of this run that the snapshot part shares
    SNAPSHOT_ENV=(BENCH_DIR="$BENCH_DIR" BENCH_QUICK="$BENCH_QUICK" BENCH_ROUNDS="$BENCH_ROUNDS" BENCH_WARM="$BENCH_WARM"
                  BENCH_KEEP="$BENCH_KEEP" LIFEBOATD_BIN="$1")
}
if ((${#CAPTURE_TESTS[@]} == 0)); then
    [[ $BENCH_NATIVE_ONLY != 1 ]] || die "the snapshot part needs lifeboatd (BENCH_NATIVE_ONLY=1 leaves no test to run)"
    snapshot_env "$LIFEBOATD_BIN"
    exec env "${SNAPSHOT_ENV[@]}" "$SCRIPT_DIR/snapshot.sh" "${SNAPSHOT_ARGS[@]}"
fi

for v in BENCH_ROUNDS BENCH_RUNTIME BENCH_FILES BENCH_PGBENCH_SCALE BENCH_PGBENCH_TIME \
         BENCH_PGBENCH_CLIENTS BENCH_PGBENCH_JOBS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number >= 1 (got '${!v}')"
done
SEQ_BYTES=$(size_bytes "$BENCH_SEQ_SIZE") || die "bad BENCH_SEQ_SIZE: $BENCH_SEQ_SIZE (use e.g. 64M, 1G)"
RW_BYTES=$(size_bytes "$BENCH_RANDWRITE_SIZE") || die "bad BENCH_RANDWRITE_SIZE: $BENCH_RANDWRITE_SIZE"
((SEQ_BYTES >= 1048576 && RW_BYTES >= 1048576)) || die "BENCH_SEQ_SIZE and BENCH_RANDWRITE_SIZE must be at least 1M"

if [[ $BENCH_NATIVE_ONLY == 1 ]]; then TARGETS=(native); else TARGETS=(native mount); fi

# --- prerequisites ---------------------------------------------------------------------------
[[ $EUID -eq 0 ]] || die "run as root (FUSE mount with allow_other, dropping the page cache, running PostgreSQL as postgres)"
command -v python3 >/dev/null || die "python3 is missing (apt-get install python3)"
if want seqwrite || want randwrite || want randread; then
    command -v fio >/dev/null || die "fio is missing (apt-get install fio, or scripts/setup.sh)"
fi
if want pgbench; then
    for b in initdb postgres pg_ctl pgbench psql pg_isready; do
        [[ -x $PG_BIN/$b ]] || die "$PG_BIN/$b is missing (apt-get install postgresql postgresql-contrib, or set PG_BIN)"
    done
    id postgres >/dev/null 2>&1 || die "no postgres user (install the postgresql package)"
    command -v setpriv >/dev/null || die "setpriv is missing (util-linux)"
fi
if [[ $BENCH_NATIVE_ONLY != 1 ]]; then
    [[ -x $LIFEBOATD_BIN ]] || die "lifeboatd not found at $LIFEBOATD_BIN
  build it (swift build -c release), set LIFEBOATD_BIN, or run the native side only: BENCH_NATIVE_ONLY=1"
    [[ -c /dev/fuse ]] || die "/dev/fuse is missing"
    command -v mountpoint >/dev/null || die "mountpoint is missing (util-linux)"
fi

cache_setup "before every measured run"

# --- work dir and cleanup ----------------------------------------------------------------------
bench_workdir capture # the postgres user must reach its data dirs under it (755)

NATIVE=$WORK/native       # the plain dir on the backing filesystem
BACKING=$WORK/backing     # where the mount's files really live (same filesystem as NATIVE)
MOUNT=$WORK/data          # lifeboatd's FUSE mount point
JOURNAL=$WORK/journal
VOLUME=$WORK/volume
PGSOCK=$WORK/pgsock
LOGS=$WORK/logs
RESULTS=$WORK/results.tsv
AGENT_CONFIG=$WORK/agent.yaml
AGENT_LOG=$LOGS/lifeboatd.log
mkdir -p "$NATIVE" "$BACKING" "$MOUNT" "$VOLUME" "$PGSOCK" "$LOGS"
chmod 755 "$NATIVE" "$BACKING" "$MOUNT"
: >"$RESULTS"

PG_PID=""
PG_DATA=""
AGENT_DIED=0
JOURNAL_BYTES_RUN=""
META_FDS=""
AGENT_LIMITS=""
FAILED=0

pg_stop() {
    [[ -n $PG_PID ]] || return 0
    kill -INT "$PG_PID" 2>/dev/null || true     # fast shutdown
    if ! wait_gone "$PG_PID" 60; then
        log "postgres ($PG_PID) did not stop within 60 s; SIGQUIT"
        kill -QUIT "$PG_PID" 2>/dev/null || true
        wait_gone "$PG_PID" 10 || { kill -KILL "$PG_PID" 2>/dev/null || true; wait_gone "$PG_PID" 10 || true; }
    fi
    PG_PID=""
}

exec 9>&2   # the script's stderr, for the cleanup (a signal may arrive inside a redirected call)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 2>&9
    if [[ -n $CHILD_PID ]]; then stop_pid "$CHILD_PID" 10; fi
    pg_stop
    if [[ -n $AGENT_PID ]]; then stop_pid "$AGENT_PID" 30; fi
    bench_remove_work "$MOUNT"
    if [[ $rc -ne 0 ]]; then log "FAILED (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bench_space $((SEQ_BYTES * 5 + RW_BYTES * 3 + (BENCH_PGBENCH_SCALE * 40 + 1024) * 1048576))

# --- lifeboatd ---------------------------------------------------------------------------------
start_agent() {
    local port
    port=$(free_port)
    agent_yaml "$AGENT_CONFIG" bench "127.0.0.1:$port" "$VOLUME/repo" bench "$MOUNT" "$BACKING" "$JOURNAL"
    agent_run "$AGENT_CONFIG" "mount $MOUNT" mountpoint -q "$MOUNT"
    AGENT_LIMITS=$(awk '/^Max open files/ {print $4 "/" $5}' "/proc/$AGENT_PID/limits" 2>/dev/null || true)
    log "lifeboatd (pid $AGENT_PID) mounted $MOUNT; RLIMIT_NOFILE ${AGENT_LIMITS:-?} (soft/hard)"
    chmod 755 "$MOUNT" || true
}

agent_fds() {  # "N open fds (limit SOFT/HARD)" of AGENT_PID
    local n lim
    n=$( (ls "/proc/$AGENT_PID/fd" 2>/dev/null || true) | wc -l)
    lim=$(awk '/^Max open files/ {print $4 "/" $5}' "/proc/$AGENT_PID/limits" 2>/dev/null || true)
    echo "$n open fds (RLIMIT_NOFILE ${lim:-?})"
}

stop_agent() {
    [[ -z $AGENT_PID ]] || JOURNAL_BYTES_RUN=$(du -sb "$JOURNAL" 2>/dev/null | cut -f1 || true)
    agent_stop "$MOUNT"
}

# --- helpers -------------------------------------------------------------------------------------
# remove PATH: rm -rf that reports instead of stopping the run when it fails (on the mount that
# is a finding to report, not a reason to skip the remaining tests).
remove() {
    local err
    if ! err=$(rm -rf -- "$1" 2>&1); then
        log "warning: could not remove $1: $(printf '%s\n' "$err" | head -n 3 | tr '\n' ' ')($(printf '%s\n' "$err" | wc -l) errors)"
        return 1
    fi
}

dir_of() { if [[ $1 == native ]]; then echo "$NATIVE"; else echo "$MOUNT"; fi; }

record() {  # TEST TARGET ROUND VALUE (VALUE "ERR" for a failed run)
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
}

# fail TEST TARGET ROUND MESSAGE LOGFILE: records a failed run and shows why.
fail() {
    local test=$1 target=$2 round=$3 msg=$4 file=${5:-}
    FAILED=1
    record "$test" "$target" "$round" ERR
    case "$test" in
        metadata) for sub in create stat unlink; do record "metadata.$sub" "$target" "$round" ERR; done ;;
        pgbench) record pgbench.init "$target" "$round" ERR ;;
    esac
    log "$test: $target: FAILED: $msg"
    if [[ -n $file && -f $file ]]; then
        echo "---- last lines of $file ----" >&2
        tail -n 20 "$file" >&2
    fi
    if [[ $target == mount ]]; then
        if agent_alive; then
            log "lifeboatd (pid $AGENT_PID) is running: $(agent_fds)"
            agent_log_tail 15
        else
            AGENT_DIED=1
            log "lifeboatd (pid $AGENT_PID) is not running any more"
            agent_log_tail 30
        fi
    fi
}

FIO_COMMON=(--ioengine=psync --numjobs=1 --iodepth=1 --group_reporting --output-format=json)

# fio_value JSON rw KIND: KIND mbps (bytes / runtime, 10^6 B/s) or iops.
fio_value() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
path, rw, kind = sys.argv[1:]
text = open(path).read()
doc = json.loads(text[text.index("{"):])   # fio may print notes before the JSON
job = doc["jobs"][0]
if job.get("error"):
    sys.exit("fio job error %s" % job["error"])
side = job[rw]
if side["io_bytes"] <= 0 or side["runtime"] <= 0:
    sys.exit("fio did no I/O")
print("%.1f" % (side["io_bytes"] / (side["runtime"] / 1000) / 1e6 if kind == "mbps" else side["iops"]))
PY
}

# run_fio TEST TARGET ROUND RW KIND fio-args...: one measured fio run.
run_fio() {
    local test=$1 target=$2 round=$3 rw=$4 kind=$5; shift 5
    local dir out value
    dir=$(dir_of "$target")
    out="$LOGS/$test-$target-$round.json"
    drop_caches
    log "$test: $target: fio $*"
    if ! run fio "${FIO_COMMON[@]}" --name="$test" --directory="$dir" --output="$out" "$@" >"$out.stderr" 2>&1; then
        cat "$out.stderr" >>"$out" 2>/dev/null || true
        fail "$test" "$target" "$round" "fio exited with an error" "$out"
        return 0
    fi
    if ! value=$(fio_value "$out" "$rw" "$kind" 2>"$out.parse"); then
        fail "$test" "$target" "$round" "cannot read fio's result: $(cat "$out.parse" "$out.stderr" | tail -n 3)" "$out"
        return 0
    fi
    record "$test" "$target" "$round" "$value"
    log "$test: $target: $value $([[ $kind == mbps ]] && echo MB/s || echo IOPS)"
}

test_seqwrite() {  # TARGET ROUND
    local dir
    dir=$(dir_of "$1")
    rm -f -- "$dir/seq.dat" || true
    run_fio seqwrite "$1" "$2" write mbps --filename=seq.dat --rw=write --bs=1M --size="$SEQ_BYTES" \
        --end_fsync=1 --runtime=$((BENCH_RUNTIME * 4))
}

test_randwrite() {
    local dir
    dir=$(dir_of "$1")
    # lay the file out first (not measured), so every round writes into an existing file
    if [[ ! -f $dir/rw.dat ]]; then
        run fio "${FIO_COMMON[@]}" --name=layout --directory="$dir" --filename=rw.dat --rw=write --bs=1M \
            --size="$RW_BYTES" --end_fsync=1 >"$LOGS/layout-rw-$1.json" 2>&1 \
            || { fail randwrite "$1" "$2" "laying out rw.dat failed" "$LOGS/layout-rw-$1.json"; return 0; }
    fi
    run_fio randwrite "$1" "$2" write iops --filename=rw.dat --rw=randwrite --bs=8k --size="$RW_BYTES" \
        --fsync=1 --time_based --runtime="$BENCH_RUNTIME"
}

test_randread() {
    local dir size
    dir=$(dir_of "$1")
    size=$(stat -c %s "$dir/seq.dat" 2>/dev/null || echo 0)
    if [[ $size != "$SEQ_BYTES" ]]; then
        rm -f -- "$dir/seq.dat" || true
        run fio "${FIO_COMMON[@]}" --name=layout --directory="$dir" --filename=seq.dat --rw=write --bs=1M \
            --size="$SEQ_BYTES" --end_fsync=1 >"$LOGS/layout-seq-$1.json" 2>&1 \
            || { fail randread "$1" "$2" "writing seq.dat failed" "$LOGS/layout-seq-$1.json"; return 0; }
    fi
    # Not time_based: fio's random map reads each 8 KiB block once, so with a dropped cache
    # every read misses; BENCH_RUNTIME caps it.
    run_fio randread "$1" "$2" read iops --filename=seq.dat --rw=randread --bs=8k --size="$SEQ_BYTES" \
        --runtime="$BENCH_RUNTIME"
}

test_metadata() {
    local target=$1 round=$2 dir out
    dir="$(dir_of "$target")/meta.$round"
    out="$LOGS/metadata-$target-$round.log"
    remove "$dir" || true
    mkdir -p "$dir"
    drop_caches
    log "metadata: $target: $BENCH_FILES files: create+write 1 KiB+close, stat, unlink"
    local agent=0
    if [[ $target == mount ]]; then agent=$AGENT_PID; fi
    if ! run python3 - "$dir" "$BENCH_FILES" "$agent" >"$out" 2>&1 <<'PY'
import os, sys, time
root, n, agent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dirs = [os.path.join(root, "d%02d" % i) for i in range(20)]
for d in dirs:
    os.mkdir(d)
paths = [os.path.join(dirs[i % len(dirs)], "f%06d" % i) for i in range(n)]
payload = b"x" * 1024
t0 = time.perf_counter()
for p in paths:
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, payload)
    os.close(fd)
t1 = time.perf_counter()
fds = len(os.listdir("/proc/%d/fd" % agent)) if agent else -1   # lifeboatd's open fds now
for p in paths:
    if os.stat(p).st_size != 1024:
        sys.exit("wrong size: " + p)
t2 = time.perf_counter()
for p in paths:
    os.unlink(p)
t3 = time.perf_counter()
if any(os.listdir(d) for d in dirs):
    sys.exit("files left after unlink")
print("%.1f %.1f %.1f %.1f %d" % (3 * n / (t3 - t0), n / (t1 - t0), n / (t2 - t1), n / (t3 - t2), fds))
PY
    then
        fail metadata "$target" "$round" "python3 file loop failed" "$out"
        remove "$dir" || true
        return 0
    fi
    remove "$dir" || true
    local all="" create="" st="" unl="" fds=""
    read -r all create st unl fds <"$out" || true
    if [[ -z $unl ]]; then
        fail metadata "$target" "$round" "no figures in the file loop's output" "$out"
        return 0
    fi
    record metadata "$target" "$round" "$all"
    record metadata.create "$target" "$round" "$create"
    record metadata.stat "$target" "$round" "$st"
    record metadata.unlink "$target" "$round" "$unl"
    log "metadata: $target: $all ops/s (create $create/s, stat $st/s, unlink $unl/s)"
    if [[ $target == mount ]]; then
        log "metadata: lifeboatd had $fds open fds after the creates; now $(agent_fds)"
        META_FDS="$fds open fds after creating $BENCH_FILES files"
    fi
}

# prefix that runs a command as the postgres user, from / (exec chain: one pid)
AS_PG=(env -C / setpriv --reuid=postgres --regid=postgres --init-groups)

test_pgbench() {
    local target=$1 round=$2 dir port plog i t0 t1 out
    dir=$(dir_of "$target")
    PG_DATA="$dir/pg"
    port=$((20000 + RANDOM % 20000))
    plog="$LOGS/postgres-$target-$round.log"
    out="$LOGS/pgbench-$target-$round.log"
    remove "$PG_DATA" || true
    mkdir -m 700 "$PG_DATA" && chown postgres:postgres "$PG_DATA" && chown postgres:postgres "$PGSOCK" \
        || { fail pgbench "$target" "$round" "cannot create $PG_DATA owned by postgres"; return 0; }
    log "pgbench: $target: initdb $PG_DATA"
    run "${AS_PG[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
        >"$LOGS/initdb-$target-$round.log" 2>&1 \
        || { fail pgbench "$target" "$round" "initdb failed" "$LOGS/initdb-$target-$round.log"; return 0; }
    "${AS_PG[@]}" "$PG_BIN/postgres" -D "$PG_DATA" \
        -c port="$port" -c listen_addresses= -c unix_socket_directories="$PGSOCK" \
        -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c logging_collector=off \
        >"$plog" 2>&1 </dev/null 9>&- &
    PG_PID=$!
    for ((i = 0; i < 600; i++)); do
        "$PG_BIN/pg_isready" -q -h "$PGSOCK" -p "$port" 2>/dev/null && break
        kill -0 "$PG_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! "$PG_BIN/pg_isready" -q -h "$PGSOCK" -p "$port" 2>/dev/null; then
        pg_stop
        fail pgbench "$target" "$round" "postgres did not start" "$plog"
        return 0
    fi
    local pg=(-h "$PGSOCK" -p "$port" -U postgres)
    drop_caches
    log "pgbench: $target: pgbench -i -s $BENCH_PGBENCH_SCALE"
    t0=$(date +%s.%N)
    if ! run "${AS_PG[@]}" "$PG_BIN/pgbench" "${pg[@]}" -i -s "$BENCH_PGBENCH_SCALE" postgres >"$out" 2>&1; then
        pg_stop
        fail pgbench "$target" "$round" "pgbench -i failed" "$out"
        return 0
    fi
    t1=$(date +%s.%N)
    run "${AS_PG[@]}" "$PG_BIN/psql" "${pg[@]}" -qAt -c CHECKPOINT postgres >>"$out" 2>&1 || true
    log "pgbench: $target: pgbench -c $BENCH_PGBENCH_CLIENTS -j $BENCH_PGBENCH_JOBS -T $BENCH_PGBENCH_TIME"
    if ! run "${AS_PG[@]}" "$PG_BIN/pgbench" "${pg[@]}" -c "$BENCH_PGBENCH_CLIENTS" -j "$BENCH_PGBENCH_JOBS" \
            -T "$BENCH_PGBENCH_TIME" postgres >>"$out" 2>&1; then
        pg_stop
        fail pgbench "$target" "$round" "pgbench run failed" "$out"
        return 0
    fi
    pg_stop
    local tps
    tps=$(awk '/^tps = / {print $3; exit}' "$out")
    if [[ -z $tps ]]; then
        fail pgbench "$target" "$round" "no 'tps = ' line in pgbench's output" "$out"
        return 0
    fi
    remove "$PG_DATA" || true
    local init_s
    init_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
    record pgbench "$target" "$round" "$(awk -v v="$tps" 'BEGIN {printf "%.1f", v}')"
    record pgbench.init "$target" "$round" "$init_s"
    log "pgbench: $target: $tps TPS (pgbench -i took ${init_s}s)"
}

# --- header --------------------------------------------------------------------------------------
if [[ $BENCH_NATIVE_ONLY != 1 ]]; then
    bench_private_bins lifeboatd
fi
{
    echo "== Lifeboat capture benchmark: FUSE mount (lifeboatd) vs native filesystem =="
    echo "command:   $CMDLINE"
    echo "env:       BENCH_DIR=$BENCH_DIR BENCH_QUICK=$BENCH_QUICK BENCH_ROUNDS=$BENCH_ROUNDS BENCH_WARM=$BENCH_WARM BENCH_SKIP=\"${BENCH_SKIP}\" BENCH_NATIVE_ONLY=$BENCH_NATIVE_ONLY"
    echo "sizes:     seq/randread file $BENCH_SEQ_SIZE, randwrite file $BENCH_RANDWRITE_SIZE, runtime ${BENCH_RUNTIME}s, $BENCH_FILES files, pgbench -s $BENCH_PGBENCH_SCALE -c $BENCH_PGBENCH_CLIENTS -j $BENCH_PGBENCH_JOBS -T $BENCH_PGBENCH_TIME"
    echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "machine:   $(machine_line)"
    echo "storage:   $(storage_line "$WORK"); native dir and backing dir on it"
    echo "cache:     $CACHE_MODE"
    if want seqwrite || want randwrite || want randread; then echo "fio:       $(fio --version), ioengine=psync, iodepth 1, 1 job"; fi
    if want pgbench; then echo "postgres:  $("$PG_BIN/postgres" --version), fsync=on, synchronous_commit=on, full_page_writes=on, other settings default"; fi
    if [[ $BENCH_NATIVE_ONLY == 1 ]]; then
        echo "lifeboatd: not started (BENCH_NATIVE_ONLY=1)"
    else
        echo "lifeboatd: $LIFEBOATD_ORIGIN ($LIFEBOATD_VERSION), capture: fuse"
    fi
} | tee "$WORK/header.txt"

# --- runs ----------------------------------------------------------------------------------------
if [[ $BENCH_NATIVE_ONLY != 1 ]]; then start_agent; fi
T_START=$(date +%s)
for test in "${CAPTURE_TESTS[@]}"; do
    for round in $(seq "$BENCH_ROUNDS"); do
        if ((round % 2)); then order=("${TARGETS[@]}"); else order=(); for ((k = ${#TARGETS[@]} - 1; k >= 0; k--)); do order+=("${TARGETS[$k]}"); done; fi
        for target in "${order[@]}"; do
            if [[ $target == mount ]] && ! agent_alive; then
                if [[ $AGENT_DIED == 0 ]]; then AGENT_DIED=1; log "lifeboatd is not running"; agent_log_tail 30; fi
                FAILED=1
                record "$test" mount "$round" ERR
                continue
            fi
            if [[ $target == mount ]] && ! mountpoint -q "$MOUNT"; then
                fail "$test" mount "$round" "$MOUNT is not mounted any more"
                continue
            fi
            "test_$test" "$target" "$round"
        done
    done
done
T_RUNS=$(($(date +%s) - T_START))
stop_agent
JOURNAL_BYTES_AFTER=$(du -sb "$JOURNAL" 2>/dev/null | cut -f1 || true)
JOURNAL_FILES=$( (find "$JOURNAL" -type f 2>/dev/null || true) | wc -l)
REPO_BYTES=$(du -sb "$VOLUME" 2>/dev/null | cut -f1 || true)

# --- report --------------------------------------------------------------------------------------
{
    if [[ $BENCH_NATIVE_ONLY != 1 ]]; then
        echo "lifeboatd: peak RSS (VmHWM) ${AGENT_HWM_KB:-?} kB = $(awk -v k="${AGENT_HWM_KB:-0}" 'BEGIN {printf "%.1f", k / 1024}') MiB, CPU ${AGENT_CPU_S:-?} s (user+sys over the whole run), exit status ${AGENT_RC:-?}"
        echo "fds:       lifeboatd RLIMIT_NOFILE ${AGENT_LIMITS:-?} (soft/hard)${META_FDS:+; $META_FDS}"
        echo "journal:   $JOURNAL: ${JOURNAL_BYTES_RUN:-?} bytes ($(awk -v b="${JOURNAL_BYTES_RUN:-0}" 'BEGIN {printf "%.1f", b / 1048576}') MiB) before stopping lifeboatd, ${JOURNAL_BYTES_AFTER:-?} bytes in $JOURNAL_FILES files after; repository dir ${REPO_BYTES:-?} bytes"
    fi
    echo "run time:  ${T_RUNS}s of measured tests (including setup between runs)"
} >"$WORK/footer.txt"
echo
cat "$WORK/footer.txt"
python3 - "$RESULTS" "$MARKDOWN" "$MARKDOWN_FILE" "$WORK/header.txt" "$WORK/footer.txt" "$BENCH_NATIVE_ONLY" "$LB_LIB_DIR" <<'PY'
import sys

results, markdown, md_file, header, footer, native_only, lib = sys.argv[1:]
sys.path.insert(0, lib)
from report import median, text_table, md_table, emit

markdown = markdown == "1"
ROWS = [  # key, label, unit, goal (mount/native), kind: rate (higher better) or time (lower better)
    ("seqwrite", "sequential write 1 MiB, end_fsync", "MB/s", 0.60, "rate"),
    ("randwrite", "random write 8 KiB + fsync each", "IOPS", 0.50, "rate"),
    ("randread", "random read 8 KiB, cold cache", "IOPS", None, "rate"),
    ("metadata", "small files create+stat+unlink", "ops/s", 0.40, "rate"),
    ("metadata.create", "  create+write 1 KiB+close", "ops/s", None, "rate"),
    ("metadata.stat", "  stat", "ops/s", None, "rate"),
    ("metadata.unlink", "  unlink", "ops/s", None, "rate"),
    ("pgbench", "pgbench TPS", "TPS", 0.60, "rate"),
    ("pgbench.init", "  pgbench -i (load + index + vacuum)", "s", None, "time"),
]
runs = {}
for line in open(results):
    test, target, rnd, value = line.rstrip("\n").split("\t")
    runs.setdefault((test, target), []).append(None if value == "ERR" else float(value))

def fmt(v):
    if v is None:
        return "-"
    return "%.2f" % v if v < 10 else "%.1f" % v if v < 1000 else "%.0f" % v

body = []
for key, label, unit, goal, kind in ROWS:
    if (key, "native") not in runs and (key, "mount") not in runs:
        continue
    n_err = [(key, t) in runs and median(runs[(key, t)]) is None for t in ("native", "mount")]
    nat = median(runs.get((key, "native"), []))
    mnt = median(runs.get((key, "mount"), []))
    ratio = None
    if nat and mnt:
        ratio = mnt / nat if kind == "rate" else nat / mnt
    if any(n_err):
        result = "FAILED"
    elif goal is None:
        result = ""
    elif ratio is None:
        result = "n/a"
    else:
        result = "met" if ratio >= goal else "missed"
    body.append([label, unit,
                 "FAILED" if n_err[0] else fmt(nat),
                 "FAILED" if n_err[1] else ("-" if native_only == "1" else fmt(mnt)),
                 "-" if ratio is None else "%.0f%%" % (100 * ratio),
                 "-" if goal is None else ">= %.0f%%" % (100 * goal),
                 result])
rounds = max((len(v) for v in runs.values()), default=1)
title = ("Median of %d rounds; " % rounds if rounds > 1 else "") + \
    "ratio = mount speed / native speed (for times: native s / mount s)"
hdr = ["test", "unit", "native", "mount", "ratio", "goal", "result"]

RIGHT = [False, False, True, True, True, False, False]
print("\n" + title + "\n")
print(text_table(hdr, body, RIGHT))
if markdown:
    emit("\n## Capture: FUSE mount (lifeboatd) vs native filesystem\n\n```\n" + open(header).read()
         + open(footer).read() + "```\n\n" + title + ".\n\n" + md_table(hdr, body, RIGHT) + "\n", md_file)
PY

# --- snapshot part -------------------------------------------------------------------------------
if want snapshot; then
    if [[ $BENCH_NATIVE_ONLY == 1 ]]; then
        log "snapshot: skipped (it needs lifeboatd; BENCH_NATIVE_ONLY=1)"
    else
        echo
        log "snapshot: $SCRIPT_DIR/snapshot.sh (own data, agent and repositories)"
        snapshot_env "$LIFEBOATD_ORIGIN"
        if ! run env "${SNAPSHOT_ENV[@]}" "$SCRIPT_DIR/snapshot.sh" "${SNAPSHOT_ARGS[@]}"; then
            log "snapshot: FAILED (see above)"
            FAILED=1
        fi
    fi
fi
if [[ $FAILED != 0 ]]; then
    log "some runs FAILED (see above)"
    exit 1
fi
