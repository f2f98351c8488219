# shellcheck shell=bash
# scripts/lib/bench.sh: what the benchmarks in scripts/bench/ share: arguments, the run dir,
# private copies of the binaries, the header lines, and one lifeboatd run by the bench
# (capture.sh, snapshot.sh). Source it after setting LB_SCRIPT; it sources common.sh.
#
# Settings it reads: BENCH_DIR (default /var/tmp/lifeboat-bench), BENCH_KEEP=1 (keep the run
# dir), BENCH_WARM=1 (never drop the page cache), LIFEBOATD_BIN and LIFEBOAT_BIN (default
# .build/release/ of this checkout; a relative path is taken from the checkout's root).

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BENCH_DIR=${BENCH_DIR:-/var/tmp/lifeboat-bench}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_WARM=${BENCH_WARM:-0}
LIFEBOATD_BIN=${LIFEBOATD_BIN:-$LB_ROOT/.build/release/lifeboatd}
LIFEBOAT_BIN=${LIFEBOAT_BIN:-$LB_ROOT/.build/release/lifeboat}
case "$LIFEBOATD_BIN" in /*) ;; *) LIFEBOATD_BIN="$LB_ROOT/$LIFEBOATD_BIN" ;; esac
case "$LIFEBOAT_BIN" in /*) ;; *) LIFEBOAT_BIN="$LB_ROOT/$LIFEBOAT_BIN" ;; esac

# bench_args ARGS...: --markdown [FILE], --markdown=FILE, -h/--help (the header). Sets
# CMDLINE, MARKDOWN (0/1) and MARKDOWN_FILE (absolute, "" for stdout).
bench_args() {
    CMDLINE=$(printf '%q ' "$0" "$@")
    CMDLINE=${CMDLINE% }
    MARKDOWN=0
    MARKDOWN_FILE=""
    while (($#)); do
        case "$1" in
            --markdown)
                MARKDOWN=1
                shift
                if (($#)) && [[ $1 != -* ]]; then MARKDOWN_FILE=$1 && shift; fi
                ;;
            --markdown=*) MARKDOWN=1 MARKDOWN_FILE=${1#--markdown=} && shift ;;
            -h | --help) usage && exit 0 ;;
            *) echo "$LB_SCRIPT: unknown argument: $1 (see --help)" >&2 && exit 2 ;;
        esac
    done
    if [[ -n $MARKDOWN_FILE && $MARKDOWN_FILE != /* ]]; then MARKDOWN_FILE="$PWD/$MARKDOWN_FILE"; fi
}

# bench_workdir NAME: WORK, a fresh dir BENCH_DIR/NAME.XXXXXX (BENCH_DIR made if missing,
# then removed again by bench_remove_work if it was)
bench_workdir() {
    CREATED_BENCH_DIR=0
    if [[ ! -d $BENCH_DIR ]]; then
        mkdir -p "$BENCH_DIR"
        CREATED_BENCH_DIR=1
    fi
    BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
    WORK=$(mktemp -d "$BENCH_DIR/$1.XXXXXX") || die "cannot create a dir in $BENCH_DIR"
    chmod 755 "$WORK"
}

# bench_space NEED: dies when BENCH_DIR has less than NEED bytes free
bench_space() {
    local avail
    avail=$(df -PB1 "$WORK" | awk 'NR==2 {print $4}')
    ((avail >= $1)) || die "not enough space in $BENCH_DIR: $((avail >> 20)) MiB free, about $(($1 >> 20)) MiB needed"
}

# bench_remove_work MOUNT...: unmounts what is left of MOUNT..., then removes WORK (kept with
# BENCH_KEEP=1, or when something below it is still mounted)
bench_remove_work() {
    unmount_each "$@"
    if [[ $BENCH_KEEP == 1 ]]; then
        log "BENCH_KEEP=1: leaving $WORK"
    elif [[ -n $(mounts_under "$WORK") ]]; then
        log "something below $WORK is still mounted; NOT removing $WORK"
    else
        rm -rf -- "$WORK"
        if [[ $CREATED_BENCH_DIR == 1 ]]; then rmdir -- "$BENCH_DIR" 2>/dev/null || true; fi
    fi
}

# unmount_each MOUNT...: umount (umount -l when busy) each one that is mounted
unmount_each() {
    local m
    for m; do
        if mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; fi
    done
}

# bin_version FILE: "built DATE, sha256 PREFIX"
bin_version() { echo "built $(stat -c '%y' "$1" | cut -d. -f1), sha256 $(sha256sum "$1" | cut -c1-12)"; }

# bench_private_bins NAME...: copies each binary (lifeboatd, lifeboat) to WORK/bin, so that a
# rebuild during the run cannot swap it; LIFEBOATD_BIN / LIFEBOAT_BIN then name the copies,
# LIFEBOATD_ORIGIN / LIFEBOAT_ORIGIN the originals, LIFEBOATD_VERSION / LIFEBOAT_VERSION theirs.
bench_private_bins() {
    local b var
    mkdir -p "$WORK/bin"
    for b; do
        var=$(tr '[:lower:]' '[:upper:]' <<<"$b")_BIN
        cp "${!var}" "$WORK/bin/$b" || die "cannot copy ${!var}"
        printf -v "${var%_BIN}_ORIGIN" '%s' "${!var}"
        printf -v "${var%_BIN}_VERSION" '%s' "$(bin_version "${!var}")"
        printf -v "$var" '%s' "$WORK/bin/$b"
    done
}

# size_bytes SIZE: the bytes of an IEC size (64M, 1G)
size_bytes() { numfmt --from=iec "${1%B}" 2>/dev/null; }

# data_bytes DIR, data_files DIR: bytes and number of the regular files below DIR
data_bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d\n", s}'; }
data_files() { find "$1" -type f | wc -l; }

# machine_line: "nproc=N, CPU: MODEL, kernel K, RAM X GiB"
machine_line() {
    local cpu
    cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    echo "nproc=$(nproc), CPU: ${cpu:-unknown}, kernel $(uname -r), RAM $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
}
# storage_line DIR: "FSTYPE on DEVICE (MOUNTPOINT)"
storage_line() { df -PT "$1" | awk 'NR==2 {print $2 " on " $1 " (" $7 ")"}'; }

# ---------------------------------------------------------------- one lifeboatd of the bench

AGENT_PID=""
AGENT_RC=""
AGENT_HWM_KB=""
AGENT_CPU_S=""

# agent_log_tail [N]: the last N (30) lines of AGENT_LOG on stderr
agent_log_tail() {
    echo "---- last lines of lifeboatd's log ($AGENT_LOG) ----" >&2
    tail -n "${1:-30}" "$AGENT_LOG" >&2 2>/dev/null || true
    echo "----" >&2
}
agent_alive() { pid_alive "$AGENT_PID"; }
# agent_cpu_s: utime + stime of AGENT_PID, in seconds
agent_cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz}' "/proc/$AGENT_PID/stat"; }

# agent_run CONFIG WHAT READY-CMD...: starts LIFEBOATD_BIN on CONFIG (output appended to
# AGENT_LOG), sets AGENT_PID, and waits up to 30 s for READY-CMD; dies, after the log's tail,
# when the agent exits first or is not ready by then (WHAT: "mount X", for the message).
agent_run() {
    local config=$1 what=$2 i
    shift 2
    log "starting lifeboatd: $LIFEBOATD_BIN --config $config"
    "$LIFEBOATD_BIN" --config "$config" >>"$AGENT_LOG" 2>&1 </dev/null 9>&- &
    AGENT_PID=$!
    for ((i = 0; i < 300; i++)); do
        "$@" && return 0
        agent_alive || break
        sleep 0.1
    done
    agent_log_tail
    if agent_alive; then die "lifeboatd (pid $AGENT_PID) did not $what within 30 s"; fi
    wait_gone "$AGENT_PID" 5 || true
    AGENT_RC=$WAIT_RC
    AGENT_PID=""
    die "lifeboatd exited (status $AGENT_RC) before it could $what"
}

# agent_stop MOUNT...: SIGTERM to the agent (SIGKILL after 30 s), after reading its peak RSS
# (AGENT_HWM_KB) and CPU time (AGENT_CPU_S); AGENT_RC is its exit status. FAILED=1 when it
# did not exit 0 or left one of MOUNT... mounted (then unmounted).
agent_stop() {
    [[ -n $AGENT_PID ]] || return 0
    if agent_alive; then
        AGENT_HWM_KB=$(awk '/^VmHWM:/ {print $2}' "/proc/$AGENT_PID/status" 2>/dev/null || true)
        AGENT_CPU_S=$(agent_cpu_s 2>/dev/null || true)
        log "stopping lifeboatd (pid $AGENT_PID): SIGTERM"
        kill -TERM "$AGENT_PID"
        if wait_gone "$AGENT_PID" 30; then
            AGENT_RC=$WAIT_RC
        else
            log "lifeboatd did not exit within 30 s of SIGTERM; SIGKILL"
            agent_log_tail 20
            kill -KILL "$AGENT_PID" 2>/dev/null || true
            wait_gone "$AGENT_PID" 10 || true
            AGENT_RC=killed
        fi
    else # it had died before
        wait_gone "$AGENT_PID" 5 || true
        AGENT_RC=${WAIT_RC:-unknown}
    fi
    AGENT_PID=""
    local m
    for m; do
        if mountpoint -q "$m"; then
            log "lifeboatd exited but $m is still mounted; umount -l"
            FAILED=1
            unmount_each "$m"
        fi
    done
    if [[ $AGENT_RC != 0 ]]; then
        log "lifeboatd exit status: $AGENT_RC"
        agent_log_tail 20
        FAILED=1
    fi
}
