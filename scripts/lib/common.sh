# shellcheck shell=bash
# scripts/lib/common.sh: the helpers every script of scripts/ shares (one implementation each).
# Source it; it defines functions and a few variables, runs nothing, and is safe under
# `set -euo pipefail` as well as `set -uo pipefail`.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
#
# Sets LB_LIB_DIR (this dir), LB_ROOT (the repository root) and LB_SCRIPT (the calling
# script's file name, for messages; set it first to name the script differently).

LB_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LB_ROOT="$(cd "$LB_LIB_DIR/../.." && pwd)"
LB_SCRIPT="${LB_SCRIPT:-$(basename "$0")}"

# ---------------------------------------------------------------- messages

# log MESSAGE: a timestamped line on stderr
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
# die MESSAGE: "SCRIPT: ERROR: MESSAGE" on stderr, exit 1 (the EXIT trap cleans up)
die() {
    echo "$LB_SCRIPT: ERROR: $*" >&2
    exit 1
}
# usage: the script's header comment (line 2 up to its `set -` line), for --help
usage() { sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# ---------------------------------------------------------------- root, without assuming sudo

# as_root CMD...: runs CMD directly as root; as another user through sudo. Fails with a
# one-line message when not root and sudo is not installed (a fresh Debian has no sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "$LB_SCRIPT: needs root for '$*' and sudo is not installed: run it as root" >&2
        return 1
    fi
}

# require_root WHY ARGS...: returns when root; otherwise runs this script again through sudo
# (environment kept) with ARGS, or exits 2 with a one-line message when sudo is missing.
require_root() {
    local why=$1
    shift
    [ "$(id -u)" -eq 0 ] && return 0
    if command -v sudo >/dev/null 2>&1; then
        echo "$LB_SCRIPT: needs root ($why): running it again through sudo" >&2
        exec sudo -E "$0" "$@"
    fi
    echo "$LB_SCRIPT: must run as root ($why), and sudo is not installed: run it as root" >&2
    exit 2
}

# ---------------------------------------------------------------- values and waiting

is_int() { [[ "${1:-}" =~ ^[0-9]+$ ]]; }
is_positive() { is_int "${1:-}" && [ "$1" -gt 0 ]; }

# wait_until SECONDS CMD...: true as soon as CMD is (polled every WAIT_POLL s, default 0.3)
wait_until() {
    local end=$(($(date +%s) + $1))
    shift
    while :; do
        "$@" && return 0
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep "${WAIT_POLL:-0.3}"
    done
}

# pid_alive PID: PID runs and is not a zombie
pid_alive() {
    local state
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    # a pid whose stat cannot be read any more has just gone (it is not taken for alive)
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)"
    [ -n "$state" ] && [ "$state" != Z ]
}
pid_gone() { ! pid_alive "$1"; }

# wait_gone PID SECONDS: waits until PID (a child of this shell) has exited and reaps it
# (its status in WAIT_RC); 1 on timeout.
WAIT_RC=""
wait_gone() {
    local pid=$1 i
    for ((i = 0; i < $2 * 10; i++)); do
        if ! pid_alive "$pid"; then
            { wait "$pid"; } 2>/dev/null && WAIT_RC=0 || WAIT_RC=$?
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# LB_PIDS: the pids an EXIT cleanup kills. lb_track_first PID puts PID first (a service before
# its agent); lb_untrack PID forgets it (it ended and was waited for: never kill a reused pid);
# lb_kill_pid PID: SIGKILL (after SIGCONT, should it be stopped), reaped
LB_PIDS=("${LB_PIDS[@]+"${LB_PIDS[@]}"}")
lb_track_first() { LB_PIDS=("$1" "${LB_PIDS[@]+"${LB_PIDS[@]}"}"); }
lb_untrack() {
    local p keep=()
    for p in "${LB_PIDS[@]+"${LB_PIDS[@]}"}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    LB_PIDS=("${keep[@]+"${keep[@]}"}")
}
lb_kill_pid() {
    kill -CONT "$1" 2>/dev/null
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS; reaped
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait_gone "$1" "$2" || {
        kill -KILL "$1" 2>/dev/null || true
        wait_gone "$1" 10 || true
    }
}

# run CMD...: runs CMD as a background child and waits for it, so that a signal to the script
# runs its EXIT trap at once (bash defers traps while a foreground command runs); a cleanup
# stops CHILD_PID. Redirections on the call apply to CMD; stdin is kept.
CHILD_PID=""
run() {
    local rc=0
    "$@" <&0 &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}

# agent_yaml FILE HOST LISTEN REPOSITORY NAME DATA BACKING JOURNAL [NAME DATA BACKING JOURNAL]...:
# a lifeboatd config in FILE with one `capture: fuse` workload per NAME and its three dirs
agent_yaml() {
    {
        printf 'host: %s\nlisten: %s\nrepository: %s\nworkloads:\n' "$2" "$3" "$4"
        printf '  - name: %s\n    capture: fuse\n    data_dir: %s\n    backing_dir: %s\n    journal_dir: %s\n' "${@:5}"
    } >"$1"
}

# ---------------------------------------------------------------- network

# port_busy ADDR PORT: something accepts connections there
port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# free_port: a TCP port on 127.0.0.1 that nothing listens on now
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# ports_free WHAT ADDR... -- PORT...: 1, naming the first ADDR:PORT in use, when one is
ports_free() {
    local what=$1 a p addrs=()
    shift
    while [ "$#" -gt 0 ] && [ "$1" != -- ]; do addrs+=("$1") && shift; done
    shift
    for a in "${addrs[@]}"; do
        for p in "$@"; do
            if port_busy "$a" "$p"; then
                echo "$LB_SCRIPT: error: $a:$p is in use ($what still running?)" >&2
                return 1
            fi
        done
    done
}

# ---------------------------------------------------------------- mounts

# mounts_under DIR: mount points at or below DIR, deepest first (from mountinfo, so dead FUSE
# mounts, on which `mountpoint` fails, count too)
mounts_under() { awk -v t="$1" '$5 == t || index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r; }
# mounts_on DIR: how many mounts sit exactly on DIR (mountinfo: works on dead mounts too)
mounts_on() { awk -v p="$1" '$5 == p { n++ } END { print n + 0 }' /proc/self/mountinfo; }
not_mounted() { [ "$(mounts_on "$1")" = 0 ]; }
is_mounted() { [ "$(mounts_on "$1")" != 0 ]; }
# unmount_lazy DIR: detach DIR now (umount -l, or fusermount3 -u -z)
unmount_lazy() { umount -l "$1" 2>/dev/null || fusermount3 -u -z "$1" 2>/dev/null || true; }
# unmount_below DIR: unmount_lazy every mount at or below DIR
unmount_below() {
    local m
    while read -r m; do [ -n "$m" ] && unmount_lazy "$m"; done < <(mounts_under "$1")
}

# ---------------------------------------------------------------- page cache

# cache_setup DESCRIPTION: checks that the page cache can be dropped (unless BENCH_WARM=1) and
# sets CACHE_MODE ("cold (DESCRIPTION)" or "warm ...") for the report header.
cache_setup() {
    if [[ ${BENCH_WARM:-0} == 1 ]]; then
        CACHE_MODE="warm (page cache NOT dropped, BENCH_WARM=1)"
        return 0
    fi
    sync
    { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null ||
        die "cannot drop the page cache (need root and a writable /proc/sys/vm/drop_caches); set BENCH_WARM=1"
    CACHE_MODE="cold (sync; echo 3 > /proc/sys/vm/drop_caches $1)"
}
# drop_caches: sync and drop the page cache (nothing with BENCH_WARM=1)
drop_caches() {
    [[ ${BENCH_WARM:-0} == 1 ]] && return 0
    sync
    echo 3 >/proc/sys/vm/drop_caches
}
