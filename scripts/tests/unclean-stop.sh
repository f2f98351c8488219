#!/usr/bin/env bash
# unclean-stop.sh: after the agent dies (SIGKILL) on a live host, the backing dir and the
# journal agree again before the data dir is served (Docs/capture.md, "After an unclean stop").
#
#  1. The sequence of the bug: a writer changes files in the mount without fsync, lifeboatd is
#     SIGKILLed mid-writing (the backing dir holds writes the journal never recorded), started
#     again, a file is written and fsynced, the agent stops with SIGTERM: the whole journal
#     replayed into an empty dir equals the backing dir, and the dir the rebuild replaced is
#     kept as <backing>.unclean-<time> (never deleted).
#  2. Random kills, 4 rounds: an fsync'd appender and an unsynced writer (writes, renames,
#     truncates, mkdir/rmdir, xattrs) run; SIGKILL at a random moment; restart. After each
#     restart: every fsync-acknowledged record is there, and replay(snapshot + journal) equals
#     the backing dir (snapshots are taken in two rounds, so later rebuilds start from one).
#  3. A backing dir seeded before capture, no snapshot: after a SIGKILL the agent refuses to
#     start (one error line saying what to do), mounts nothing and changes nothing; after the
#     operator's step from the message it serves; with a snapshot, the next unclean stop
#     rebuilds from it.
#
# LB_KEEP=1 keeps the temp dir (agent logs in <tmp>/<workload>/agent.log).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_setup
lb_need_agent copy
T0=$(date +%s)
# (lb_cleanup also detaches the dead FUSE mount a SIGKILLed agent can leave; lb_capture_remount
# starts the agent and sets LB_CAP_HELPER, its fusermount3 auto_unmount helper)

# wait_helper: waits (10 s) until the stopped agent's fusermount3 auto_unmount helper is gone:
# a helper still running would unmount the *next* agent's mount on the same data dir
wait_helper() { [ -z "${LB_CAP_HELPER:-}" ] || WAIT_POLL=0.1 wait_until 10 pid_gone "$LB_CAP_HELPER"; }

# kill_agent: SIGKILL, wait for it, and for the mount to go (auto_unmount), else detach it
kill_agent() {
    local real
    real="$(realpath -m "$LB_CAP_DATA")"
    kill -KILL "$LB_CAP_PID" 2>/dev/null
    lb_wait_pid "$LB_CAP_PID" 10
    wait_helper
    WAIT_POLL=0.1 wait_until 5 not_mounted "$real" || umount -l "$LB_CAP_DATA" 2>/dev/null
}

# stop_agent NAME: SIGTERM, exit 0 within 30 s
stop_agent() {
    lb_capture_stop
    wait_helper
    assert_exit "$1: lifeboatd exits 0 on SIGTERM" 0 "$LB_WAIT_RC" "$LB_CAP_DIR/agent.log"
}

# digest_matches NAME EXPECTED_DIR TREE: lifeboat digests equal (with a metadata diff on failure)
digest_matches() {
    local want got
    want="$(lb_digest "$2")"
    got="$(lb_digest "$3")"
    if [ -n "$want" ] && [ "$want" == "$got" ]; then
        pass
    else
        fail "$1" "digest '$want' (of $2)" "'$got' (of $3)"
        python3 "$LB_LIB_DIR/treecmp.py" --hash --max 6 "$2" "$3" 2>&1 | sed 's/^/#   /'
    fi
}

# rebuilt_matches NAME: replay(newest snapshot + journal), or the whole journal into an empty
# dir when there is no snapshot, equals the backing dir
rebuilt_matches() {
    local target="$LB_TMP/check-$RANDOM$RANDOM" snaps
    snaps="$(lb_snapshot_ids "$LB_CAP_REPO" 2>/dev/null | grep -c .)"
    if [ "${snaps:-0}" -gt 0 ]; then
        lb "$LB_TMP/rb.out" "$LB_TMP/rb.err" restore --repo "$LB_CAP_REPO" latest --workload "$W" \
            --target "$target" --journal "$LB_CAP_JOURNAL"
        assert_exit "$1: lifeboat restore latest --journal" 0 "$LB_RC" "$LB_TMP/rb.err"
    else
        mkdir -m 755 "$target"
        lb "$LB_TMP/rb.out" "$LB_TMP/rb.err" replay --journal "$LB_CAP_JOURNAL" --target "$target"
        assert_exit "$1: lifeboat replay of the whole journal into an empty dir" 0 "$LB_RC" "$LB_TMP/rb.err"
    fi
    digest_matches "$1: replay(${snaps:-0} snapshot(s) + journal) equals the backing dir" "$LB_CAP_BACKING" "$target"
    rm -rf "$target"
}

# appender.py FILE ACKLOG: numbered 64-byte records, fsync after each; an ack line once it returned
cat >"$LB_TMP/appender.py" <<'EOF'
import os, sys
path, acklog = sys.argv[1:3]
d = os.path.dirname(path)
if os.stat(d).st_dev == os.stat(os.path.dirname(d)).st_dev:
    sys.exit("%s is not mounted (%d %d)" % (d, os.stat(d).st_dev, os.stat(os.path.dirname(d)).st_dev))
ack = open(acklog, "a")
# continue after the last record in the file (one written but not acknowledged may be there)
n = open(path, "rb").read().count(b"\n") if os.path.exists(path) else 0
try:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while True:
        n += 1
        os.write(fd, b"%08d " % n + b"y" * 54 + b"\n")
        os.fsync(fd)
        ack.write("%d\n" % n)
        ack.flush()
except OSError:
    sys.exit(0)
EOF

# verify.py FILE ACKLOG: every acknowledged record is in FILE; records are 1..max without holes
cat >"$LB_TMP/verify.py" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read() if __import__("os").path.exists(sys.argv[1]) else b""
acked = [int(x) for x in open(sys.argv[2]).read().split()]
have = []
for line in data.split(b"\n"):
    if len(line) == 63 and line[:8].isdigit():
        have.append(int(line[:8]))
ok = have == list(range(1, len(have) + 1)) and set(acked) <= set(have)
print("%d acked, %d in the file%s" % (len(acked), len(have), "" if ok else ": MISSING or out of order"))
sys.exit(0 if ok else 1)
EOF

# scribbler.py DIR SEED [PROGRESS]: changes files without ever calling fsync, until it fails
# (the mount died); every 50 changes it writes how many it made to PROGRESS (outside the mount)
cat >"$LB_TMP/scribbler.py" <<'EOF'
import os, random, sys
d, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
if os.stat(d).st_dev == os.stat(os.path.dirname(d)).st_dev:
    sys.exit("%s is not mounted (%d %d)" % (d, os.stat(d).st_dev, os.stat(os.path.dirname(d)).st_dev))
os.makedirs(os.path.join(d, "scratch"), exist_ok=True)
base = os.path.join(d, "scratch")
progress = sys.argv[3] if len(sys.argv) > 3 else None
done = 0
try:
    while True:
        done += 1
        if progress and done % 50 == 0:
            open(progress, "w").write("%d\n" % done)
        i = rnd.randrange(6)
        p = os.path.join(base, "f%d" % i)
        op = rnd.randrange(7)
        if op <= 2:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
            os.pwrite(fd, os.urandom(rnd.randrange(1, 9000)), rnd.randrange(0, 200000))
            os.close(fd)
        elif op == 3 and os.path.exists(p):
            os.rename(p, os.path.join(base, "f%d" % rnd.randrange(6)))
        elif op == 4 and os.path.exists(p):
            os.truncate(p, rnd.randrange(0, 100000))
        elif op == 5:
            q = os.path.join(base, "d%d" % i)
            if os.path.isdir(q): os.rmdir(q)
            else: os.mkdir(q, 0o750)
        elif op == 6 and os.path.exists(p):
            os.setxattr(p, "user.n", str(rnd.randrange(1000)).encode())
except OSError:
    sys.exit(0)
EOF

# ---------------------------------------------------------------- 1: the sequence of the bug

W="unclean"
if ! lb_capture_remount "$W"; then
    fail "1: start lifeboatd" "the data dir mounted within 30 s" "$(tail -n 3 "$LB_CAP_DIR/agent.log")"
    lb_finish
fi
pass
BACKING_REAL="$(realpath -e "$LB_CAP_BACKING")"
printf 'fsynced before\n' >"$LB_CAP_DATA/before.txt" && sync "$LB_CAP_DATA/before.txt"
python3 "$LB_TMP/scribbler.py" "$LB_CAP_DATA" 1 "$LB_TMP/progress" &
SPID=$!
LB_PIDS+=("$SPID")
# kill while it keeps changing files: the changes of the last 0.2 s are not journaled yet
for ((i = 0; i < 100; i++)); do
    [ "$(cat "$LB_TMP/progress" 2>/dev/null || echo 0)" -ge 400 ] && break
    sleep 0.1
done
assert_true "1: the unsynced writer changes files in the mount" "400 changes within 10 s" \
    test "$(cat "$LB_TMP/progress" 2>/dev/null || echo 0)" -ge 400
kill_agent
lb_wait_pid "$SPID" 10
BEFORE_RESTART="$(lb_digest "$LB_CAP_BACKING")"
mkdir -m 755 "$LB_TMP/journal-only"
lb "$LB_TMP/jo.out" "$LB_TMP/jo.err" replay --journal "$LB_CAP_JOURNAL" --target "$LB_TMP/journal-only"
JOURNAL_ONLY="$(lb_digest "$LB_TMP/journal-only")"
rm -rf "$LB_TMP/journal-only"
lb_info "1: after the kill the backing dir $([ "$BEFORE_RESTART" = "$JOURNAL_ONLY" ] && echo equals || echo differs from) the journal's replay (the writes answered without fsync)"

if ! lb_capture_remount "$W"; then
    fail "1: lifeboatd starts again after the SIGKILL" "the data dir mounted within 30 s" \
        "$(grep -v '^20' "$LB_CAP_DIR/agent.log" | tail -n 2)"
    lb_finish
fi
pass
printf 'fsynced after the restart\n' >"$LB_CAP_DATA/after.txt" && sync "$LB_CAP_DATA/after.txt"
assert_eq "1: a write and fsync in the mount after the restart" 0 "$?"
stop_agent "1"
mkdir -m 755 "$LB_TMP/replayed-1"
lb "$LB_TMP/r1.out" "$LB_TMP/r1.err" replay --journal "$LB_CAP_JOURNAL" --target "$LB_TMP/replayed-1"
assert_exit "1: lifeboat replay of the whole journal into an empty dir" 0 "$LB_RC" "$LB_TMP/r1.err"
digest_matches "1: the journal replayed into an empty dir equals the backing dir after kill, restart, fsync'd write, SIGTERM" \
    "$LB_CAP_BACKING" "$LB_TMP/replayed-1"
rm -rf "$LB_TMP/replayed-1"
assert_eq "1: before.txt (fsynced before the kill) is in the backing dir" "fsynced before" "$(cat "$LB_CAP_BACKING/before.txt" 2>&1)"
ASIDE="$(compgen -G "$BACKING_REAL.unclean-*" | head -n 1)"
assert_true "1: the replaced backing dir is kept as $BACKING_REAL.unclean-<time>" "a dir $BACKING_REAL.unclean-*" test -d "$ASIDE"
[ -n "$ASIDE" ] && assert_eq "1: the kept dir is the backing dir as the killed agent left it" "$BEFORE_RESTART" "$(lb_digest "$ASIDE")"
assert_file_match "1: the agent logs the rebuild and where the old dir is kept" "rebuilt.*kept at .*unclean-" "$LB_CAP_DIR/agent.log"

# ---------------------------------------------------------------- 2: random kills

: >"$LB_TMP/acks"
for round in 1 2 3 4; do
    if ! lb_capture_remount "$W"; then
        fail "2.$round: lifeboatd starts" "the data dir mounted within 30 s" "$(grep -v '^20' "$LB_CAP_DIR/agent.log" | tail -n 2)"
        lb_finish
    fi
    if [ "$round" = 2 ] || [ "$round" = 4 ]; then
        lb "$LB_TMP/snap.out" "$LB_TMP/snap.err" backup --agent "$LB_CAP_URL" --workload "$W"
        assert_exit "2.$round: snapshot through the agent" 0 "$LB_RC" "$LB_TMP/snap.err"
    fi
    python3 "$LB_TMP/appender.py" "$LB_CAP_DATA/acked.dat" "$LB_TMP/acks" &
    APID=$!
    python3 "$LB_TMP/scribbler.py" "$LB_CAP_DATA" $((round * 7919)) &
    SPID=$!
    LB_PIDS+=("$APID" "$SPID")
    acks_before=$(grep -c . "$LB_TMP/acks")
    for ((i = 0; i < 50; i++)); do
        [ "$(grep -c . "$LB_TMP/acks")" -ge $((acks_before + 20)) ] && break
        lb_is_running "$APID" || break
        sleep 0.1
    done
    if [ "$(grep -c . "$LB_TMP/acks")" -ge $((acks_before + 20)) ]; then pass; else
        fail "2.$round: the fsync'd appender runs in the mount before the kill" "20 acknowledged records within 5 s" \
            "$(($(grep -c . "$LB_TMP/acks") - acks_before)); mounts on the data dir: $(awk -v p="$(realpath -m "$LB_CAP_DATA")" '$5 == p { print $1, $(NF-2) }' /proc/self/mountinfo | tr '\n' ' ')"
    fi
    sleep "0.$((RANDOM % 9 + 1))"
    [ $((RANDOM % 2)) = 0 ] && sleep 0.$((RANDOM % 10))
    kill_agent
    lb_wait_pid "$APID" 10
    lb_wait_pid "$SPID" 10
    if ! lb_capture_remount "$W"; then
        fail "2.$round: lifeboatd starts again after a SIGKILL" "the data dir mounted within 30 s" \
            "$(grep -v '^20' "$LB_CAP_DIR/agent.log" | tail -n 2)"
        lb_finish
    fi
    pass
    V="$(python3 "$LB_TMP/verify.py" "$LB_CAP_DATA/acked.dat" "$LB_TMP/acks" 2>&1)"
    assert_eq "2.$round: every fsync-acknowledged record is in the file after the restart ($V)" 0 "$?"
    sleep 0.5 # the agent makes the journal durable within 0.2 s
    rebuilt_matches "2.$round"
    stop_agent "2.$round"
done
ASIDE_COUNT="$(compgen -G "$BACKING_REAL.unclean-*" | grep -c .)"
assert_eq "2: one kept dir per rebuild (1 + 4 rounds), none deleted" 5 "$ASIDE_COUNT"
assert_file_match "2: a rebuild after a snapshot starts from it" "rebuilding .* from snapshot" "$LB_CAP_DIR/agent.log"
lb_info "parts 1-2 took $(($(date +%s) - T0)) s"

# ---------------------------------------------------------------- 3: a seeded backing dir

W="seeded"
lb_capture_config "$W"
make_tree "$LB_CAP_BACKING"
if ! lb_capture_remount "$W"; then
    fail "3: start lifeboatd on a seeded backing dir" "mounted" "$(tail -n 3 "$LB_CAP_DIR/agent.log")"
    lb_finish
fi
pass
printf 'x\n' >>"$LB_CAP_DATA/hello.txt"
kill_agent
SEEDED_DIGEST="$(lb_digest "$LB_CAP_BACKING")"
timeout -k 5 60 "$LIFEBOATD_BIN" --config "$LB_CAP_CONFIG" >"$LB_TMP/refused.out" 2>"$LB_TMP/refused.err" </dev/null
rc=$?
assert_exit "3: after a SIGKILL with no snapshot, lifeboatd refuses to start a seeded workload" 1 "$rc" "$LB_TMP/refused.err"
grep 'error:' "$LB_TMP/refused.err" >"$LB_TMP/refused.line"
assert_one_line "3: one error line" "$LB_TMP/refused.line"
assert_file_match "3: the error says what is wrong and what to do" \
    "stopped uncleanly.*held files when capture began.*remove .*/running.*snapshot" "$LB_TMP/refused.line"
lb_info "3: $(lb_head "$LB_TMP/refused.line")"
assert_eq "3: nothing is mounted after the refusal" 0 "$(mounts_on "$(realpath -m "$LB_CAP_DATA")")"
assert_eq "3: the refusal changes nothing in the backing dir" "$SEEDED_DIGEST" "$(lb_digest "$LB_CAP_BACKING")"
assert_eq "3: no rebuilt or kept dir beside it" "" "$(compgen -G "$(realpath -e "$LB_CAP_BACKING").*")"
rm -f "$LB_CAP_JOURNAL/running"
if ! lb_capture_remount "$W"; then
    fail "3: lifeboatd starts after the step the error names" "mounted" "$(grep -v '^20' "$LB_CAP_DIR/agent.log" | tail -n 2)"
    lb_finish
fi
pass
printf 'after the operator step\n' >"$LB_CAP_DATA/step.txt" && sync "$LB_CAP_DATA/step.txt"
lb "$LB_TMP/snap.out" "$LB_TMP/snap.err" backup --agent "$LB_CAP_URL" --workload "$W"
assert_exit "3: snapshot after the start" 0 "$LB_RC" "$LB_TMP/snap.err"
python3 "$LB_TMP/scribbler.py" "$LB_CAP_DATA" 3 &
SPID=$!
LB_PIDS+=("$SPID")
sleep 0.5
kill_agent
lb_wait_pid "$SPID" 10
if ! lb_capture_remount "$W"; then
    fail "3: with a snapshot, lifeboatd rebuilds and starts after the next SIGKILL" "mounted" \
        "$(grep -v '^20' "$LB_CAP_DIR/agent.log" | tail -n 2)"
    lb_finish
fi
pass
sleep 0.5
rebuilt_matches "3 (seeded, rebuilt from the snapshot)"
stop_agent "3"

lb_info "took $(($(date +%s) - T0)) s"
lb_finish
