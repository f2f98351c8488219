# shellcheck shell=bash
# Shared helpers for the lifeboat integration tests in scripts/tests/.
# Source it from a test script; it is not a test itself.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   lb_setup                     # temp dir, EXIT trap, binary check
#   ... assertions ...
#   lb_finish                    # prints "N passed, N failed" and exits
#
# Settings (environment):
#   LIFEBOAT_BIN     the binary under test (default: <repo root>/.build/release/lifeboat)
#   LB_CMD_TIMEOUT   seconds one lifeboat command may take before it counts as hung (default 300)
#   LB_KEEP=1        keep the test's temp dir (its path is printed) for debugging

set -uo pipefail

LB_TESTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$LB_TESTS_DIR/../lib/common.sh"
LB_REPO_ROOT="$(cd "$LB_TESTS_DIR/../.." && pwd)"
LIFEBOAT_BIN="${LIFEBOAT_BIN:-$LB_REPO_ROOT/.build/release/lifeboat}"
case "$LIFEBOAT_BIN" in
    /*) ;;
    *) LIFEBOAT_BIN="$LB_REPO_ROOT/$LIFEBOAT_BIN" ;;
esac
LB_CMD_TIMEOUT="${LB_CMD_TIMEOUT:-300}"
LB_NAME="$(basename "${0%.sh}")"

# No ambient lifeboat settings: each test sets what it needs per command.
unset LIFEBOAT_REPOSITORY LIFEBOAT_CRASH_AT LIFEBOAT_LOCK_LEASE_SECONDS LIFEBOAT_COMPRESSION_LEVEL

LB_PASS=0
LB_FAIL=0
LB_TMP=""
LB_PIDS=()
LB_MOUNTS=()
LB_RC=0
LB_WAIT_RC=0

# ---------------------------------------------------------------- lifecycle

# (lb_track_first, lb_untrack and lb_kill_pid for LB_PIDS: scripts/lib/common.sh)
# lb_cleanup: kills LB_PIDS, unmounts LB_MOUNTS and then lazily every mount left below the
# temp dir (a dead FUSE mount of a killed agent fails `mountpoint`), removes the temp dir
lb_cleanup() {
    local pid m i
    for pid in "${LB_PIDS[@]+"${LB_PIDS[@]}"}"; do
        if kill -0 "$pid" 2>/dev/null; then lb_kill_pid "$pid"; fi
    done
    for ((i = ${#LB_MOUNTS[@]} - 1; i >= 0; i--)); do
        m="${LB_MOUNTS[$i]}"
        if mountpoint -q "$m" 2>/dev/null; then
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
        fi
    done
    if [ -n "$LB_TMP" ]; then unmount_below "$LB_TMP"; fi
    if [ -n "$LB_TMP" ] && [ -d "$LB_TMP" ]; then
        if [ "${LB_KEEP:-0}" = 1 ]; then
            echo "kept temp dir: $LB_TMP" >&2
        else
            chmod -R u+rwx "$LB_TMP" 2>/dev/null
            rm -rf "$LB_TMP"
        fi
    fi
}

# lb_setup: makes $LB_TMP (a new temp dir, or LB_DIR when set: scripts/demo.sh keeps its
# work dir), installs the cleanup trap, checks the binary.
lb_setup() {
    if [ -n "${LB_DIR:-}" ]; then LB_TMP=$LB_DIR && mkdir -p "$LB_TMP"; else
        LB_TMP="$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-$LB_NAME.XXXXXX")"
    fi || {
        echo "cannot create a temp dir"
        echo "0 passed, 1 failed"
        exit 1
    }
    trap lb_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if [ ! -x "$LIFEBOAT_BIN" ]; then
        echo "FAIL setup: lifeboat binary not found or not executable at $LIFEBOAT_BIN (build it, or set LIFEBOAT_BIN)"
        echo "0 passed, 1 failed"
        exit 1
    fi
    # run a private copy, so a rebuild during the test cannot swap the binary mid-run
    local origin=$LIFEBOAT_BIN
    mkdir -p "$LB_TMP/bin"
    cp "$origin" "$LB_TMP/bin/lifeboat" && chmod 755 "$LB_TMP/bin" "$LB_TMP/bin/lifeboat" || {
        echo "FAIL setup: cannot copy $origin"
        echo "0 passed, 1 failed"
        exit 1
    }
    LIFEBOAT_BIN="$LB_TMP/bin/lifeboat"
    echo "# $LB_NAME: binary $origin ($(stat -c '%y' "$origin" | cut -d. -f1), sha256 $(sha256sum "$LIFEBOAT_BIN" | cut -c1-12)), temp dir $LB_TMP"
}

# lb_finish: prints the summary line and exits 0 only when nothing failed.
lb_finish() {
    echo "$LB_PASS passed, $LB_FAIL failed"
    if [ "$LB_FAIL" -eq 0 ]; then exit 0; fi
    exit 1
}

lb_skip() { echo "SKIP $*"; }
# lb_give_up NAME LOG [NAME LOG]...: the last 15 lines of each log (on "#" lines), then lb_finish
# (a test whose service did not come up cannot go on)
lb_give_up() {
    while [ "$#" -ge 2 ]; do
        echo "# $1 log:"
        tail -n 15 "$2" | sed 's/^/#   /'
        shift 2
    done
    lb_finish
}
lb_info() { echo "# $*"; }

# ---------------------------------------------------------------- assertions

# One line, at most 400 characters, for "what was seen".
lb_oneline() {
    local s
    s="$(printf '%s' "$*" | tr '\r\n' '\\|' | tr -d '\000')"
    if [ "${#s}" -gt 400 ]; then s="${s:0:400}..."; fi
    printf '%s' "$s"
}

# First lines of a file, on one line.
lb_head() {
    if [ -s "$1" ]; then lb_oneline "$(head -c 600 "$1")"; else printf '(empty)'; fi
}

pass() { LB_PASS=$((LB_PASS + 1)); }

# fail NAME EXPECTED SEEN
fail() {
    LB_FAIL=$((LB_FAIL + 1))
    echo "FAIL $1: expected $2; saw $(lb_oneline "$3")"
}

# assert_eq NAME EXPECTED ACTUAL
assert_eq() {
    if [ "$2" == "$3" ]; then pass; else fail "$1" "'$(lb_oneline "$2")'" "'$3'"; fi
}

# assert_ne NAME UNEXPECTED ACTUAL
assert_ne() {
    if [ "$2" != "$3" ]; then pass; else fail "$1" "anything but '$(lb_oneline "$2")'" "'$3'"; fi
}

# assert_true NAME DESCRIPTION_OF_EXPECTATION CMD...   (passes when CMD exits 0)
assert_true() {
    local name=$1 what=$2
    shift 2
    if "$@"; then pass; else fail "$name" "$what" "command failed: $*"; fi
}

# assert_exit NAME EXPECTED_CODES ACTUAL_CODE [STDERR_FILE]
# EXPECTED_CODES is one code or several separated by '|' (e.g. "2|10").
assert_exit() {
    local name=$1 want=$2 got=$3 err=${4:-}
    if [[ "|$want|" == *"|$got|"* ]]; then
        pass
    else
        local seen="exit $got"
        [ -n "$err" ] && seen="$seen, stderr: $(lb_head "$err")"
        fail "$name" "exit $want" "$seen"
    fi
}

# assert_match NAME ERE TEXT   (grep -E -i on the text)
assert_match() {
    if printf '%s' "$3" | grep -Eiq -- "$2"; then pass; else fail "$1" "text matching /$2/" "'$3'"; fi
}

# assert_no_match NAME ERE TEXT
assert_no_match() {
    if printf '%s' "$3" | grep -Eiq -- "$2"; then fail "$1" "no text matching /$2/" "'$3'"; else pass; fi
}

# assert_file_match NAME ERE FILE
assert_file_match() {
    if grep -Eiq -- "$2" "$3" 2>/dev/null; then pass; else fail "$1" "output matching /$2/" "$(lb_head "$3")"; fi
}

# assert_one_line NAME FILE: exactly one non-empty line
assert_one_line() {
    local n
    n="$(grep -cv '^[[:space:]]*$' "$2" 2>/dev/null)"
    if [ "$n" = 1 ]; then pass; else fail "$1" "exactly one non-empty line on stderr" "$n lines: $(lb_head "$2")"; fi
}

# ---------------------------------------------------------------- running lifeboat

# lb OUT ERR ARGS... : runs lifeboat in the foreground (with a timeout); exit code in LB_RC.
# A lifeboat that hangs past LB_CMD_TIMEOUT gives LB_RC=124.
lb() { lb_env "$1" "$2" -- "${@:3}"; }

# lb_ok NAME ARGS...: lb "$OUT" "$ERR" ARGS, and the assertion NAME that it exits 0
lb_ok() {
    local name=$1
    shift
    lb "$OUT" "$ERR" "$@"
    assert_exit "$name" 0 "$LB_RC" "$ERR"
}

# lb_env OUT ERR VAR=VALUE... -- ARGS... : like lb with extra environment.
lb_env() {
    lb_split_env "${@:3}"
    {
        timeout -k 10 "$LB_CMD_TIMEOUT" env "${LB_ENVS[@]+"${LB_ENVS[@]}"}" "$LIFEBOAT_BIN" "${LB_ARGS[@]+"${LB_ARGS[@]}"}" \
            >"$1" 2>"$2" </dev/null
        LB_RC=$?
    } 2>/dev/null
    return 0
}
# lb_split_env VAR=VALUE... -- ARGS...: LB_ENVS=(the VAR=VALUEs), LB_ARGS=(the ARGS)
lb_split_env() {
    LB_ENVS=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do LB_ENVS+=("$1") && shift; done
    LB_ARGS=("${@:2}")
}

# lb_last_line FILE: last non-empty line, trimmed
lb_last_line() {
    grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | tr -d '[:space:]'
}

# lb_snapshot_ids REPO: full snapshot ids, oldest first, one per line (from `snapshots --json`).
# Returns non-zero if lifeboat or the JSON parse fails.
lb_snapshot_ids() {
    local out="$LB_TMP/.snapids.out" err="$LB_TMP/.snapids.err"
    lb "$out" "$err" snapshots --repo "$1" --json
    [ "$LB_RC" -eq 0 ] || return 1
    python3 - "$out" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    data = json.load(f)
if isinstance(data, dict):
    for key in ("snapshots", "items", "data"):
        if key in data:
            data = data[key]
            break
for snap in data:
    for key in ("id", "snapshot_id", "snapshotId", "ID"):
        if key in snap:
            print(snap[key])
            break
EOF
}

# lb_digest DIR: prints the tree digest (empty output if lifeboat failed)
lb_digest() {
    local out="$LB_TMP/.digest.out" err="$LB_TMP/.digest.err"
    lb "$out" "$err" digest "$1"
    if [ "$LB_RC" -ne 0 ]; then
        echo "lifeboat digest $1 failed with exit $LB_RC: $(lb_head "$err")" >&2
        return 1
    fi
    local d
    d="$(grep -oE '[0-9a-f]{64}' "$out" | head -n 1)"
    if [ -z "$d" ]; then d="$(tr -d '[:space:]' <"$out")"; fi
    printf '%s\n' "$d"
}

# lb_repo_listing REPO: "path size" of every file, sorted (to prove a command changed nothing)
lb_repo_listing() {
    (cd "$1" && find . -type f -printf '%P %s\n' | LC_ALL=C sort)
}

# ---------------------------------------------------------------- trees

# lb_rand_file PATH BYTES: incompressible random content
lb_rand_file() {
    head -c "$2" /dev/urandom >"$1"
}

# lb_big_rand_file PATH BYTES: fast incompressible content for large files
lb_big_rand_file() {
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$RANDOM$RANDOM$RANDOM$(date +%s%N)" </dev/zero 2>/dev/null |
        head -c "$2" >"$1"
}

# make_tree DIR [BIG_MIB] [BIG_FILES]
# A small tree covering every kind of entry (nested dirs, empty file, empty dir, hard link,
# relative and dangling symlinks, odd modes, a foreign owner when root, an xattr, odd names,
# fixed old mtimes) plus BIG_MIB MiB of random data split over BIG_FILES files in big/.
make_tree() {
    local d=$1 big=${2:-0} nbig=${3:-8} i
    mkdir -p "$d/sub/deeper" "$d/empty-dir" "$d/private-dir"
    printf 'hello lifeboat\n' >"$d/hello.txt"
    : >"$d/empty-file"
    lb_rand_file "$d/sub/random-1m.bin" 1048576
    lb_rand_file "$d/sub/deeper/random-odd.bin" 2500001
    seq 1 150000 >"$d/sub/compressible.txt"
    printf 'spaces and unicode\n' >"$d/sub/name with spaces é.txt"
    printf '#!/bin/sh\necho hi\n' >"$d/sub/run.sh"
    printf 'secret\n' >"$d/private-dir/secret"
    ln "$d/sub/random-1m.bin" "$d/hardlink-to-random-1m"
    ln -s sub/deeper/random-odd.bin "$d/symlink-relative"
    ln -s /nonexistent/lifeboat/target "$d/symlink-dangling"
    chmod 600 "$d/hello.txt"
    chmod 755 "$d/sub/run.sh"
    chmod 444 "$d/sub/compressible.txt"
    chmod 700 "$d/private-dir"
    chmod 640 "$d/private-dir/secret"
    if [ "$(id -u)" = 0 ]; then
        chown 1234:5678 "$d/private-dir/secret"
        chown 4321:4321 "$d/sub/run.sh"
    fi
    setfattr -n user.lifeboat.test -v "xattr value" "$d/hello.txt" 2>/dev/null
    if [ "$big" -gt 0 ]; then
        mkdir -p "$d/big"
        local per=$((big * 1048576 / nbig))
        for ((i = 0; i < nbig; i++)); do
            lb_big_rand_file "$d/big/file-$i.bin" "$per"
        done
        touch -d '2020-01-01 00:00:00' "$d/big"
    fi
    touch -h -d '2003-04-05 06:07:08' "$d/symlink-relative" "$d/symlink-dangling"
    touch -d '2001-02-03 04:05:06' "$d/sub/compressible.txt" "$d/empty-file"
    touch -d '2011-11-11 11:11:11' "$d/sub/deeper" "$d/empty-dir" "$d/private-dir" "$d/sub"
    touch -d '2012-12-12 12:12:12' "$d"
}

# trees_equal NAME EXPECTED_DIR ACTUAL_DIR [EXPECTED_DIGEST]
# Three assertions: `lifeboat digest` equal; `diff -r --no-dereference` clean; and an
# independent metadata comparison of what is below the roots (scripts/lib/treecmp.py).
trees_equal() {
    local name=$1 a=$2 b=$3 da=${4:-} db
    if [ -z "$da" ]; then da="$(lb_digest "$a")"; fi
    db="$(lb_digest "$b")"
    if [ -n "$da" ] && [ "$da" == "$db" ]; then
        pass
    else
        fail "$name: lifeboat digest" "digest '$da' (of $a)" "'$db' (of $b)"
    fi
    local dout="$LB_TMP/.diff.out"
    if diff -r --no-dereference "$a" "$b" >"$dout" 2>&1; then
        pass
    else
        fail "$name: diff -r --no-dereference $a $b" "no differences" "$(head -n 5 "$dout")"
    fi
    if dout="$(python3 "$LB_LIB_DIR/treecmp.py" --below --mtime-s --nlink --link-groups --xattrs user --max 6 "$a" "$b" 2>&1)"; then
        pass
    else
        fail "$name: metadata (mode, owner, mtime s, size, links, hard links, user xattrs)" "same as source" "$dout"
    fi
}

# lb_restore_check NAME REPO SNAPSHOT EXPECTED_DIR [EXPECTED_DIGEST]
# Restores SNAPSHOT into a new dir, compares it with EXPECTED_DIR, removes it.
lb_restore_check() {
    local name=$1 repo=$2 snap=$3 exp=$4 dig=${5:-}
    local target="$LB_TMP/.restore.$$.$RANDOM"
    lb "$LB_TMP/.restore.out" "$LB_TMP/.restore.err" restore --repo "$repo" "$snap" --target "$target"
    assert_exit "$name: restore $snap" 0 "$LB_RC" "$LB_TMP/.restore.err"
    if [ "$LB_RC" -eq 0 ]; then
        trees_equal "$name: restored $snap" "$exp" "$target" "$dig"
    else
        LB_FAIL=$((LB_FAIL + 3))
        echo "FAIL $name: restored $snap: not compared (3 assertions counted as failed) because restore failed"
    fi
    rm -rf "$target"
}

# lb_check NAME REPO: `check --read-data` must exit 0 (warnings allowed)
lb_check() {
    lb "$LB_TMP/.check.out" "$LB_TMP/.check.err" check --repo "$2" --read-data
    if [ "$LB_RC" -eq 0 ]; then
        pass
    else
        fail "$1: check --read-data" "exit 0" "exit $LB_RC, stdout: $(lb_head "$LB_TMP/.check.out"), stderr: $(lb_head "$LB_TMP/.check.err")"
    fi
}

# lb_wait_pid PID SECONDS: waits for a background child of this shell; its exit code goes to
# LB_WAIT_RC (124 if it was still running after SECONDS: then it is killed). Not in a subshell.
lb_wait_pid() {
    if wait_gone "$1" "$2"; then LB_WAIT_RC=$WAIT_RC; else
        lb_kill_pid "$1"
        LB_WAIT_RC=124
    fi
    return 0
}

lb_is_zombie() { [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

# lb_is_running PID: alive and not a zombie
lb_is_running() { pid_alive "$1"; }

# ---------------------------------------------------------------- captured data dirs (lifeboatd)

LIFEBOATD_BIN="${LIFEBOATD_BIN:-$LB_REPO_ROOT/.build/release/lifeboatd}"
case "$LIFEBOATD_BIN" in
    /*) ;;
    *) LIFEBOATD_BIN="$LB_REPO_ROOT/$LIFEBOATD_BIN" ;;
esac
LB_AGENT_PORT_NEXT=$((17400 + RANDOM % 2000))

# lb_need_agent [copy]: lifeboatd must be at LIFEBOATD_BIN (else a failed setup ends the test);
# with "copy" (after lb_setup) the test runs a private copy, so a rebuild cannot swap it.
lb_need_agent() {
    if [ ! -x "$LIFEBOATD_BIN" ]; then
        fail "setup" "lifeboatd at $LIFEBOATD_BIN" "no such executable (build it, or set LIFEBOATD_BIN)"
        lb_finish
    fi
    if [ "${1:-}" = copy ]; then cp "$LIFEBOATD_BIN" "$LB_TMP/bin/lifeboatd" && LIFEBOATD_BIN="$LB_TMP/bin/lifeboatd"; fi
}

# lb_need_redis_fuse: without redis-server, redis-cli or /dev/fuse the test cannot run at all:
# it ends SKIPped, not failed
lb_need_redis_fuse() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        lb_skip "$LB_NAME: redis-server and redis-cli are not installed (scripts/setup.sh)"
        lb_finish
    fi
    if [ ! -c /dev/fuse ]; then
        lb_skip "$LB_NAME: /dev/fuse is missing"
        lb_finish
    fi
}

# lb_capture_config NAME: writes $LB_TMP/NAME/agent.yaml for one workload NAME with
# data/backing/journal dirs under $LB_TMP/NAME and a repository in $LB_TMP/NAME/volume/repo.
# Sets LB_CAP_DIR, LB_CAP_CONFIG, LB_CAP_DATA, LB_CAP_BACKING, LB_CAP_JOURNAL, LB_CAP_REPO,
# LB_CAP_URL. Existing dirs (a restart) are kept.
lb_capture_config() {
    local name=$1
    LB_CAP_DIR="$LB_TMP/$name"
    LB_CAP_DATA="$LB_CAP_DIR/data"
    LB_CAP_BACKING="$LB_CAP_DIR/backing"
    LB_CAP_JOURNAL="$LB_CAP_DIR/journal"
    LB_CAP_REPO="$LB_CAP_DIR/volume/repo"
    LB_CAP_CONFIG="$LB_CAP_DIR/agent.yaml"
    mkdir -p "$LB_CAP_DATA" "$LB_CAP_BACKING" "$LB_CAP_DIR/volume"
    chmod 755 "$LB_CAP_DIR" "$LB_CAP_DATA" "$LB_CAP_BACKING"
    if [ ! -f "$LB_CAP_CONFIG" ]; then
        agent_yaml "$LB_CAP_CONFIG" test-host "127.0.0.1:$LB_AGENT_PORT_NEXT" "$LB_CAP_REPO" \
            "$name" "$LB_CAP_DATA" "$LB_CAP_BACKING" "$LB_CAP_JOURNAL"
        LB_AGENT_PORT_NEXT=$((LB_AGENT_PORT_NEXT + 1))
    fi
    LB_CAP_URL="http://$(awk '/^listen:/ { print $2 }' "$LB_CAP_CONFIG")"
}

# lb_capture_start NAME: starts lifeboatd on NAME's config (lb_capture_config first if needed)
# and waits until the data dir is mounted. Sets LB_CAP_PID. Returns 1 (after printing the
# agent's log) if the mount does not appear within 30 s.
lb_capture_start() {
    local name=$1 i
    lb_capture_config "$name"
    LB_MOUNTS+=("$LB_CAP_DATA")
    "$LIFEBOATD_BIN" --config "$LB_CAP_CONFIG" >>"$LB_CAP_DIR/agent.log" 2>&1 </dev/null &
    LB_CAP_PID=$!
    LB_PIDS+=("$LB_CAP_PID")
    for ((i = 0; i < 300; i++)); do
        if lb_capture_ready; then
            return 0
        fi
        if ! lb_is_running "$LB_CAP_PID"; then break; fi
        sleep 0.1
    done
    echo "# lifeboatd did not mount $LB_CAP_DATA; its log:"
    sed 's/^/#   /' "$LB_CAP_DIR/agent.log" | tail -n 20
    return 1
}

# lb_capture_up NAME [WHAT] [EXPECTED]: lb_capture_start NAME as one assertion (named WHAT,
# default "start lifeboatd"); when the data dir does not get mounted the test ends
lb_capture_up() {
    if ! lb_capture_start "$1"; then
        fail "${2:-start lifeboatd}" "${3:-the data dir mounted within 30 s}" "not mounted (agent log above)"
        lb_finish
    fi
    pass
}

# lb_capture_remount NAME: lb_capture_start NAME (its stderr in $LB_TMP/remount.err), then waits
# (30 s) for this agent's own "mounted over" log line: `mountpoint -q` also says yes to the dead
# mount a killed agent left. Sets LB_CAP_HELPER (the agent's fusermount3 child, if any).
# Returns 1 if the agent exits or never mounts.
lb_capture_remount() {
    local log="$LB_TMP/$1/agent.log" before=0 i
    [ -f "$log" ] && before=$(grep -c 'mounted over' "$log")
    lb_capture_start "$1" 2>"$LB_TMP/remount.err"
    for ((i = 0; i < 300; i++)); do
        if [ "$(grep -c 'mounted over' "$log")" -gt "$before" ]; then
            LB_CAP_HELPER="$(pgrep -P "$LB_CAP_PID" -x fusermount3 | head -n 1)"
            return 0
        fi
        lb_is_running "$LB_CAP_PID" || break
        sleep 0.1
    done
    return 1
}

# lb_capture_ready: the data dir is mounted by the agent
lb_capture_ready() {
    mountpoint -q "$LB_CAP_DATA"
}

# lb_capture_stop: SIGTERM to the agent; waits up to 30 s; LB_WAIT_RC has its exit code.
lb_capture_stop() {
    kill -TERM "$LB_CAP_PID" 2>/dev/null
    lb_wait_pid "$LB_CAP_PID" 30
}

# lb_capture_down NAME [UNMOUNTED_NAME]: lb_capture_stop, and the assertion NAME that the agent
# exits 0; with UNMOUNTED_NAME also that assertion: the data dir is no longer a mountpoint
lb_capture_down() {
    lb_capture_stop
    assert_exit "$1" 0 "$LB_WAIT_RC" "$LB_CAP_DIR/agent.log"
    [ -z "${2:-}" ] || assert_true "$2" "not a mountpoint" lb_capture_unmounted
}
lb_capture_unmounted() { ! mountpoint -q "$LB_CAP_DATA"; }

# lb_file_sums DIR: "sha256  path" of every regular file below DIR, sorted by path
lb_file_sums() { (cd "$1" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -r sha256sum); }
