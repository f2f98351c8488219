#!/usr/bin/env bash
# capture-failures.sh: lifeboatd (the FUSE passthrough agent) when things go wrong.
#
#  1. SIGKILL of the agent while a writer appends fsync'd records in the mount, 5 times: the
#     writer gets an error (no hang), stat/ls of the data dir return, the dead mount goes away
#     (auto_unmount; in cycles 4 and 5 the fusermount3 helper is killed too, so the restarted
#     agent must clear the dead mount itself); the restarted agent mounts again and every record
#     whose fsync returned before the kill is in the file. In cycle 3 one record is appended
#     without fsync right before the kill (reported, not asserted: only fsync'd writes are promised).
#  2. The journal after those kills: `lifeboat journal` reads it, and a snapshot taken after the
#     restarts plus the journal replayed on it gives the backing dir's digest.
#  3. fsync, fdatasync and fsync of a directory in the mount succeed and reach the agent (the
#     record is in the journal file when the call returns: not a kernel-side ENOSYS shortcut).
#  4. A full backing disk (16 MiB tmpfs): the writer gets ENOSPC (not EIO, no hang), earlier
#     data reads back, deleting frees space, the journal reads and replays to the same digest.
#  5. Bad configs and dirs: exit 2, one stderr line naming the problem (file:line for YAML
#     keys), nothing mounted; a data dir that is already a mount; the listen port in use.
#  6. The HTTP API answers while the agent runs; SIGTERM: exit 0 within 10 s, nothing mounted.
#
# LB_KEEP=1 keeps the temp dir (agent logs in <tmp>/<workload>/agent.log).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_setup
lb_need_agent copy
T0=$(date +%s)

# (mounts_on and not_mounted: scripts/lib/common.sh)
# mount_desc DIR: "fstype source" of every mount on DIR, for messages
mount_desc() {
    awk -v p="$1" '$5 == p { for (i = 7; i <= NF; i++) if ($i == "-") { printf "%s %s; ", $(i + 1), $(i + 2); break } }' \
        /proc/self/mountinfo
}

# deleted_fds PID: the targets of PID's descriptors that name deleted files, on one line
deleted_fds() {
    local f t
    for f in /proc/"$1"/fd/*; do
        t="$(readlink "$f" 2>/dev/null)"
        [[ "$t" == *" (deleted)" ]] && printf '%s; ' "$t"
    done
}

# journal_ok NAME DIR: `lifeboat journal --dir DIR` and `--json` exit 0; sets JOURNAL_RECORDS
journal_ok() {
    lb "$LB_TMP/journal.out" "$LB_TMP/journal.err" journal --dir "$2"
    assert_exit "$1: lifeboat journal --dir $2 reads the journal" 0 "$LB_RC" "$LB_TMP/journal.err"
    JOURNAL_RECORDS=$(grep -c . "$LB_TMP/journal.out")
    lb "$LB_TMP/journal.json" "$LB_TMP/journal.err" journal --dir "$2" --json
    assert_exit "$1: lifeboat journal --dir $2 --json" 0 "$LB_RC" "$LB_TMP/journal.err"
    local n
    n="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$LB_TMP/journal.json" 2>&1)"
    assert_eq "$1: journal --json is a JSON array with one entry per listed record" "$JOURNAL_RECORDS" "$n"
}

# replay_matches NAME JOURNAL EXPECTED_DIGEST: replays the whole journal onto a new empty dir
# (mode 755, like the backing dirs) and compares its digest
replay_matches() {
    local target="$LB_TMP/replay-$RANDOM$RANDOM" d
    mkdir -m 755 "$target"
    lb "$LB_TMP/replay.out" "$LB_TMP/replay.err" replay --journal "$2" --target "$target"
    assert_exit "$1: lifeboat replay --journal $2 --target (empty dir)" 0 "$LB_RC" "$LB_TMP/replay.err"
    lb_info "$1: replay: $(lb_head "$LB_TMP/replay.err") $(lb_head "$LB_TMP/replay.out")"
    d="$(lb_digest "$target")"
    if [ -n "$3" ] && [ "$d" == "$3" ]; then
        pass
    else
        fail "$1: digest of the whole journal replayed onto an empty dir equals the data dir's" "'$3'" "'$d'"
        lb_info "differences (path: backing != replayed; mode uid gid mtime_ns size nlink xattrs):"
        python3 "$LB_LIB_DIR/treecmp.py" --nlink "$LB_CAP_BACKING" "$target" 2>&1 | sed 's/^/#   /'
        diff -rq --no-dereference "$LB_CAP_BACKING" "$target" 2>&1 | head -n 5 | sed 's/^/#   /'
    fi
}

# term_agent NAME: SIGTERM; exit 0 within 10 s; the data dir is not a mountpoint afterwards
# (60 s: a clean stop ends with syncfs of the backing dir's filesystem, which also writes out
# whatever else is dirty there; on a machine busy writing it once took over 10 s)
term_agent() {
    local start=$SECONDS
    kill -TERM "$LB_CAP_PID" 2>/dev/null
    lb_wait_pid "$LB_CAP_PID" 60
    if [ "$LB_WAIT_RC" = 124 ]; then
        fail "$1: lifeboatd exits on SIGTERM" "exit 0 within 60 s" "still running after 60 s (killed); log: $(tail -n 3 "$LB_CAP_DIR/agent.log")"
    else
        assert_exit "$1: lifeboatd exits 0 on SIGTERM (took $((SECONDS - start)) s)" 0 "$LB_WAIT_RC" "$LB_CAP_DIR/agent.log"
    fi
    assert_true "$1: after SIGTERM the data dir is not a mountpoint" "no mount on $LB_CAP_DATA" not_mounted "$LB_CAP_DATA"
}

# ---------------------------------------------------------------- python helpers

# writer.py FILE ACKLOG TAG: appends numbered records to FILE (O_APPEND), fsync after each;
# writes each record's number to ACKLOG once its fsync returned. On an error: prints it, exit 3.
cat >"$LB_TMP/writer.py" <<'EOF'
import errno, os, sys
path, acklog, tag = sys.argv[1:4]
ack = open(acklog, "a")
n = 0
try:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while True:
        n += 1
        rec = ("%s %08d " % (tag, n)).encode() + b"x" * 80 + b"\n"
        if os.write(fd, rec) != len(rec):
            print("short write of record %d" % n, file=sys.stderr)
            sys.exit(4)
        os.fsync(fd)
        ack.write("%d\n" % n)
        ack.flush()
except OSError as e:
    print("record %d: %s (errno %d %s)" % (n, e.strerror, e.errno, errno.errorcode.get(e.errno, "?")), file=sys.stderr)
    sys.exit(3)
EOF

# verify.py FILE ACKDIR TAG...: every acknowledged record of each TAG is in FILE, lines well formed
cat >"$LB_TMP/verify.py" <<'EOF'
import os, sys
path, ackdir, tags = sys.argv[1], sys.argv[2], sys.argv[3:]
data = open(path, "rb").read()
present = {}
bad = 0
for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
    parts = line.split(b" ")
    if len(parts) != 3 or parts[2] != b"x" * 80 or not parts[1].isdigit():
        bad += 1
        continue
    present.setdefault(parts[0].decode(), set()).add(int(parts[1]))
ok = True
out = []
for tag in tags:
    acked = [int(x) for x in open(os.path.join(ackdir, "ack-" + tag)).read().split()]
    have = present.get(tag, set())
    missing = sorted(set(acked) - have)
    top = max(have) if have else 0
    holes = sorted(set(range(1, top + 1)) - have)
    out.append("%s: %d acked, %d in file (max %d)%s%s" % (tag, len(acked), len(have), top,
               ", MISSING acked %s" % missing[:5] if missing else "",
               ", holes %s" % holes[:5] if holes else ""))
    if missing or holes or not acked:
        ok = False
if bad:
    out.append("%d malformed lines" % bad)
    ok = False
print("; ".join(out))
sys.exit(0 if ok else 1)
EOF

# syncs.py DIR JOURNAL_DIR: fsync, fdatasync and fsync of directories in the mount, 5 rounds;
# after each call, the record it made durable must already be in the journal's segment files
cat >"$LB_TMP/syncs.py" <<'EOF'
import errno, glob, os, sys
d, journal = sys.argv[1], sys.argv[2]
def in_journal(marker):
    for seg in glob.glob(os.path.join(journal, "*.journal")):
        with open(seg, "rb") as f:
            if marker in f.read():
                return True
    return False
def attempt(what, call):
    try:
        call()
        return None
    except OSError as e:
        return "%s: %s (errno %d %s)" % (what, e.strerror, e.errno, errno.errorcode.get(e.errno, "?"))
errors, late = [], []
os.makedirs(os.path.join(d, "syncdir"), exist_ok=True)
for r in range(5):
    for kind in ("fsync", "fdatasync"):
        marker = os.urandom(16).hex().encode()
        fd = os.open(os.path.join(d, "f-%s-%d" % (kind, r)), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, marker)
        e = attempt("%s(file fd) round %d" % (kind, r), lambda: getattr(os, kind)(fd))
        if e: errors.append(e)
        elif not in_journal(marker): late.append("%s(file) round %d" % (kind, r))
        os.close(fd)
    for sub in (d, os.path.join(d, "syncdir")):
        name = "n-%s" % os.urandom(12).hex()
        os.close(os.open(os.path.join(sub, name), os.O_WRONLY | os.O_CREAT, 0o644))
        dfd = os.open(sub, os.O_RDONLY)
        e = attempt("fsync(dir fd %s) round %d" % (sub, r), lambda: os.fsync(dfd))
        if e: errors.append(e)
        elif not in_journal(name.encode()): late.append("fsync(dir %s) round %d" % (sub, r))
        os.close(dfd)
print("errors: %s" % ("; ".join(errors) or "none"))
print("not yet in the journal when the call returned: %s" % (", ".join(late) or "none"))
EOF

# ---------------------------------------------------------------- 6 (API) and 3: a running agent

W="kill"
lb_capture_up "$W" "start lifeboatd ($W)"
DATA_REAL="$(realpath -e "$LB_CAP_DATA")"

api_get() { # api_get PATH OUTFILE: retries for up to 10 s (the API starts just after the mount)
    local i
    for ((i = 0; i < 50; i++)); do
        if curl -fsS --max-time 5 "$LB_CAP_URL$1" >"$2" 2>"$2.err"; then return 0; fi
        sleep 0.2
    done
    return 1
}
if api_get /livez "$LB_TMP/livez"; then pass; else fail "GET $LB_CAP_URL/livez" "HTTP 200" "$(lb_head "$LB_TMP/livez.err")"; fi
assert_match "GET /livez answers ok" '^ok$' "$(cat "$LB_TMP/livez")"
if api_get /readyz "$LB_TMP/readyz"; then pass; else fail "GET $LB_CAP_URL/readyz" "HTTP 200" "$(lb_head "$LB_TMP/readyz.err")"; fi
assert_match "GET /readyz answers ok" '^ok$' "$(cat "$LB_TMP/readyz")"
if api_get /v1/status "$LB_TMP/status"; then pass; else fail "GET $LB_CAP_URL/v1/status" "HTTP 200" "$(lb_head "$LB_TMP/status.err")"; fi
STATUS_CHECK="$(python3 - "$LB_TMP/status" "$W" <<'EOF' 2>&1
import json, sys
doc = json.load(open(sys.argv[1]))
def strings(v):
    if isinstance(v, dict):
        for k, x in v.items():
            yield str(k)
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)
    else:
        yield str(v)
print("names workload" if sys.argv[2] in set(strings(doc)) else "workload not named")
EOF
)"
if [ "$STATUS_CHECK" = "names workload" ]; then pass; else
    fail "GET /v1/status is JSON naming workload $W" "JSON naming '$W'" "$STATUS_CHECK; body: $(lb_head "$LB_TMP/status")"
fi

SYNCS="$(timeout -k 5 60 python3 "$LB_TMP/syncs.py" "$LB_CAP_DATA" "$LB_CAP_JOURNAL" 2>&1)"
lb_info "$(lb_oneline "$SYNCS")"
assert_match "3: os.fsync/os.fdatasync on a file fd and os.fsync on a dir fd in the mount succeed (never ENOSYS)" \
    '^errors: none$' "$SYNCS"
assert_match "3: fsync, fdatasync and fsyncdir reach the agent (their record is in the journal when the call returns)" \
    'returned: none$' "$SYNCS"

# ---------------------------------------------------------------- 1: SIGKILL while a writer runs

FILE="$LB_CAP_DATA/records.dat"
TAGS=()
# restart_agent CYCLE: lb_capture_remount as one assertion; returns 1 (after a FAIL naming the
# agent's error) if the agent exits or never mounts. (lb_capture_config's mkdir/chmod of a dead
# mount complain on stderr: not lifeboatd's.)
restart_agent() {
    if lb_capture_remount "$W"; then pass && return 0; fi
    lb_wait_pid "$LB_CAP_PID" 1
    fail "1.$1: lifeboatd restarted on the same dirs after the SIGKILL mounts the data dir (clearing a mount the killed agent left)" \
        "a new mount within 30 s" "agent exit $LB_WAIT_RC; its log: $(grep -v '^20' "$LB_CAP_DIR/agent.log" | tail -n 2)"
    return 1
}

# cycles 1-3: SIGKILL of the agent alone: its fusermount3 helper (auto_unmount) must remove the
# mount. Cycles 4 and 5: the helper is SIGKILLed first (as when the whole service cgroup is
# killed), so a dead mount stays and the restarted agent must clear it. In cycle 4 the restart
# comes 1.2 s after the kill (the kernel's cached attributes of the mount root, 1 s, have
# expired); in cycle 5 the data dir is stat'ed just before the kill and the agent is restarted
# at once (a supervisor's immediate restart), so the kernel still answers stat() of the dead
# mount's root from its cache.
for cycle in 1 2 3 4 5; do
    tag="c$cycle"
    TAGS+=("$tag")
    : >"$LB_TMP/ack-$tag"
    python3 "$LB_TMP/writer.py" "$FILE" "$LB_TMP/ack-$tag" "$tag" >"$LB_TMP/writer-$tag.out" 2>&1 </dev/null &
    wpid=$!
    LB_PIDS+=("$wpid")
    for ((i = 0; i < 150; i++)); do
        [ "$(wc -l <"$LB_TMP/ack-$tag")" -ge 200 ] && break
        lb_is_running "$wpid" || break
        sleep 0.1
    done
    acks_before=$(wc -l <"$LB_TMP/ack-$tag")
    if ! lb_is_running "$wpid"; then
        fail "1.$cycle: writer runs in the mount before the kill" "running" "ended early: $(lb_head "$LB_TMP/writer-$tag.out")"
    fi
    helper=""
    if [ "$cycle" -ge 4 ]; then
        helper="$(pgrep -P "$LB_CAP_PID" -x fusermount3 | head -n 1)"
        if [ -n "$helper" ]; then
            LB_PIDS+=("$helper")
            # (after 1.1 s the cached attributes have expired: this stat fetches them afresh)
            [ "$cycle" = 5 ] && sleep 1.1 && stat -c %i "$LB_CAP_DATA" >/dev/null
            kill -KILL "$helper"
            lb_info "1.$cycle: killed lifeboatd's fusermount3 helper (pid $helper) first: the mount must stay, dead"
        else
            lb_skip "1.$cycle: no fusermount3 child of lifeboatd found: the dead-mount case is a plain kill"
        fi
    fi
    if [ "$cycle" = 3 ]; then
        # a record appended without fsync right before the kill (a service that does not sync
        # every write), while the writer is stopped (its fsyncs would flush the record): after
        # the restart, the file and the journal must agree on it (part 2 also replays)
        kill -STOP "$wpid"
        printf 'u3 00000001 %s\n' "$(printf 'x%.0s' {1..80})" >>"$FILE"
    fi
    { # (stderr: bash's "Killed" job notice)
        kill -KILL "$LB_CAP_PID"
        killed_at=$SECONDS
        lb_wait_pid "$LB_CAP_PID" 5
    } 2>/dev/null
    [ "$cycle" = 3 ] && kill -CONT "$wpid"
    lb_info "1.$cycle: killed lifeboatd (pid $LB_CAP_PID) after $acks_before acknowledged records"
    restarted=0
    if [ "$cycle" = 5 ] && [ -n "$helper" ]; then
        assert_eq "1.$cycle: without its helper the killed agent's mount stays (a dead mount)" 1 "$(mounts_on "$DATA_REAL")"
        restart_agent "$cycle (restarted at once)" && restarted=1
    fi

    # the writer gets an error, not a hang
    lb_wait_pid "$wpid" 10
    if [ "$LB_WAIT_RC" = 124 ]; then
        fail "1.$cycle: writer in the mount after SIGKILL of the agent" "an error within 10 s" \
            "still running after 10 s (hung; killed): $(lb_head "$LB_TMP/writer-$tag.out")"
    else
        assert_exit "1.$cycle: writer gets an error from its write/fsync after SIGKILL of the agent (exit 3)" 3 \
            "$LB_WAIT_RC" "$LB_TMP/writer-$tag.out"
        lb_info "1.$cycle: writer ended after $((SECONDS - killed_at)) s: $(lb_head "$LB_TMP/writer-$tag.out")"
    fi

    if [ "$cycle" != 5 ] || [ -z "$helper" ]; then
        # stat/ls of the data dir return (error or not) within 5 s
        timeout -k 1 5 stat "$LB_CAP_DATA" >"$LB_TMP/stat.out" 2>&1
        rc=$?
        assert_ne "1.$cycle: stat of the data dir returns within 5 s after the kill" 124 "$rc"
        timeout -k 1 5 ls "$LB_CAP_DATA" >"$LB_TMP/ls.out" 2>&1
        rc2=$?
        assert_ne "1.$cycle: ls of the data dir returns within 5 s after the kill" 124 "$rc2"
        lb_info "1.$cycle: stat: exit $rc $(grep -m1 -iE 'not connected|cannot' "$LB_TMP/stat.out"); ls: exit $rc2 $(grep -m1 -iE 'not connected|cannot' "$LB_TMP/ls.out")"
        if [ -n "$helper" ]; then
            assert_eq "1.$cycle: without its helper the killed agent's mount stays (a dead mount)" 1 "$(mounts_on "$DATA_REAL")"
            sleep 1.2
        elif WAIT_POLL=0.1 wait_until 60 not_mounted "$DATA_REAL"; then
            # auto_unmount: fusermount3 removes the mount. A bound, not a timing goal: its
            # helper was seen taking over 10 s on a loaded 2-core VM (the connection was
            # already aborted and the mount gone right after), so wait up to 60 s for it.
            pass
            lb_info "1.$cycle: data dir unmounted $((SECONDS - killed_at)) s after the kill"
        else
            fail "1.$cycle: data dir is no longer a mount within 60 s of SIGKILL (auto_unmount)" "no mount on $DATA_REAL" \
                "still mounted: $(mount_desc "$DATA_REAL") stat: $(timeout -k 1 5 stat -c %n "$LB_CAP_DATA" 2>&1)"
        fi
        # restart on the same dirs: it must mount (clearing a dead mount itself if one was left)
        restart_agent "$cycle" && restarted=1
    fi
    if [ "$restarted" = 0 ]; then
        if [ "$(mounts_on "$DATA_REAL")" != 0 ]; then
            lb_info "1.$cycle: detaching the mount left on the data dir by hand (umount -l), to go on with the test"
            umount -l "$LB_CAP_DATA"
        fi
        restart_agent "$cycle (after umount -l)" || lb_finish
    fi
    assert_eq "1.$cycle: after the restart exactly one mount is on the data dir" 1 "$(mounts_on "$DATA_REAL")"
    grep -E 'torn|epoch' "$LB_CAP_DIR/agent.log" | tail -n 1 | sed 's/^/# 1.'"$cycle"': /'
    VERIFY="$(python3 "$LB_TMP/verify.py" "$FILE" "$LB_TMP" "${TAGS[@]}" 2>&1)"
    rc=$?
    if [ "$rc" -eq 0 ]; then pass; else
        fail "1.$cycle: after the restart the file holds every record whose fsync returned before the kill" \
            "all acknowledged records, no holes, no malformed lines" "$VERIFY"
    fi
    lb_info "1.$cycle: $VERIFY"
    if [ "$cycle" = 3 ]; then
        lb "$LB_TMP/u3.json" "$LB_TMP/u3.err" journal --dir "$LB_CAP_JOURNAL" --json
        U3="$(python3 - "$FILE" "$LB_TMP/u3.json" <<'PY' 2>&1
import json, sys
data = open(sys.argv[1], "rb").read()
at = data.find(b"u3 00000001 ")
rows = json.load(open(sys.argv[2]))
ids = {r.get("file") for r in rows if r.get("kind") == "create" and r.get("name") == "records.dat"}
hit = [r for r in rows if r.get("kind") == "write" and r.get("file") in ids and r.get("offset") == str(at)]
print("in the file: %s; in the journal: %s" % ("yes (offset %d)" % at if at >= 0 else "no",
      "yes (%s)" % hit[0]["position"] if hit else "no"))
PY
)"
        # Not asserted: only fsync-acknowledged writes are promised (Docs/capture.md). A write
        # answered without fsync can be in the backing file and not in the journal; the first
        # snapshot after a restart scans the backing dir, so the two agree again from there.
        lb_info "1.3: record written without fsync right before the kill: $U3"
    fi
done

# ---------------------------------------------------------------- 2: the journal after the kills

# A snapshot after the restarts (a scan: it takes in whatever the kills left in the backing
# dir), then more changes: the snapshot plus the journal must be the backing dir.
lb "$LB_TMP/snap.out" "$LB_TMP/snap.err" backup --agent "$LB_CAP_URL" --workload kill
assert_exit "2: snapshot through the agent after the kills" 0 "$LB_RC" "$LB_TMP/snap.err"
AFTER_KILLS_SNAPSHOT="$(lb_last_line "$LB_TMP/snap.out")"
# more changes after the last restart, of several kinds
mkdir "$LB_CAP_DATA/after" && printf 'after the kills\n' >"$LB_CAP_DATA/after/a.txt" &&
    mv "$LB_CAP_DATA/after/a.txt" "$LB_CAP_DATA/after/b.txt" && chmod 640 "$LB_CAP_DATA/after/b.txt" &&
    ln -s b.txt "$LB_CAP_DATA/after/link" && rm -f "$LB_CAP_DATA/f-fsync-0"
assert_eq "2: file operations in the mount after the restarts" 0 "$?"
sleep 0.5
journal_ok "2" "$LB_CAP_JOURNAL"
lb_info "2: journal has $JOURNAL_RECORDS records"
MOUNT_DIGEST="$(lb_digest "$LB_CAP_DATA")"
term_agent "6 (after the kills)"
BACKING_DIGEST="$(lb_digest "$LB_CAP_BACKING")"
assert_eq "2: backing dir digest after stop equals the mount's digest" "$MOUNT_DIGEST" "$BACKING_DIGEST"
RESTORED="$LB_TMP/restored-after-kills"
lb "$LB_TMP/r.out" "$LB_TMP/r.err" restore --repo "$LB_CAP_REPO" "$AFTER_KILLS_SNAPSHOT" --target "$RESTORED" --journal "$LB_CAP_JOURNAL"
assert_exit "2: restore the snapshot taken after the kills with --journal" 0 "$LB_RC" "$LB_TMP/r.err"
assert_eq "2: that snapshot plus the journal equals the backing dir" "$BACKING_DIGEST" "$(lb_digest "$RESTORED")"
rm -rf "$RESTORED"
lb_info "parts 1-3 and 6 took $(($(date +%s) - T0)) s"

# ---------------------------------------------------------------- 4: full backing disk

W="full"
mkdir -p "$LB_TMP/$W/backing"
LB_MOUNTS+=("$LB_TMP/$W/backing")
if ! mount -t tmpfs -o size=16m,mode=755 lifeboat-test-full "$LB_TMP/$W/backing"; then
    fail "4: mount a 16 MiB tmpfs as backing dir" "mount exit 0" "mount failed"
else
    if ! lb_capture_start "$W"; then
        fail "4: start lifeboatd on a tmpfs backing dir" "the data dir mounted within 30 s" "not mounted (agent log above)"
    else
        pass
        ENOSPC_OUT="$(timeout -k 5 60 python3 - "$LB_CAP_DATA" <<'EOF' 2>&1
import errno, hashlib, os, sys
d = sys.argv[1]
def err(e):
    return "errno %d %s" % (e.errno, errno.errorcode.get(e.errno, "?"))
keep = os.urandom(1 << 20)
fd = os.open(os.path.join(d, "keep.dat"), os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, keep); os.fsync(fd); os.close(fd)
fd = os.open(os.path.join(d, "fill.dat"), os.O_WRONLY | os.O_CREAT, 0o644)
chunk = os.urandom(256 << 10)
total, first = 0, None
while total < (64 << 20):
    try:
        total += os.write(fd, chunk)
    except OSError as e:
        first = e
        break
print("fill: %s after %d bytes" % (err(first) if first else "no error", total))
try:
    os.fsync(fd)
    print("fsync after the error: ok")
except OSError as e:
    print("fsync after the error: %s" % err(e))
os.close(fd)
# an append to an existing file while the disk is full fails too; the file is kept (so its
# metadata after the failed write is part of the digests compared at the end)
before = os.stat(os.path.join(d, "keep.dat")).st_mtime_ns
try:
    fd = os.open(os.path.join(d, "keep.dat"), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, os.urandom(64 << 10))
        print("append while full: ok")
    finally:
        os.close(fd)
except OSError as e:
    print("append while full: %s" % err(e))
after = os.stat(os.path.join(d, "keep.dat")).st_mtime_ns
print("keep.dat mtime seen in the mount after the failed append: %s" % ("changed" if after != before else "unchanged"))
with open(os.path.join(d, "keep.dat"), "rb") as f:
    print("keep.dat reads back: %s" % ("same" if f.read() == keep else "DIFFERENT"))
os.unlink(os.path.join(d, "fill.dat"))
try:
    fd = os.open(os.path.join(d, "again.dat"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, os.urandom(2 << 20)); os.fsync(fd); os.close(fd)
    print("write after delete: ok")
except OSError as e:
    print("write after delete: %s" % err(e))
EOF
)"
        rc=$?
        lb_info "4: $(lb_oneline "$ENOSPC_OUT")"
        assert_ne "4: writing to a full backing disk does not hang (60 s)" 124 "$rc"
        assert_match "4: a write to a full backing disk fails with ENOSPC (errno 28), not EIO" \
            '^fill: errno 28 ENOSPC after' "$ENOSPC_OUT"
        assert_match "4: fsync'd data written before the disk filled reads back" '^keep.dat reads back: same$' "$ENOSPC_OUT"
        assert_match "4: an append to an existing file on the full disk fails with ENOSPC" \
            '^append while full: errno 28 ENOSPC$' "$ENOSPC_OUT"
        assert_match "4: after deleting the big file, writes (and fsync) work again" '^write after delete: ok$' "$ENOSPC_OUT"
        if ! printf '%s' "$ENOSPC_OUT" | grep -q '^write after delete: ok$'; then
            lb_info "4: backing tmpfs after the delete: $(df -k --output=used,avail "$LB_CAP_BACKING" | awk 'END { print $1 " KiB used, " $2 " KiB free" }');" \
                "lifeboatd holds descriptors of deleted files: $(deleted_fds "$LB_CAP_PID" | head -c 300)"
        fi
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
            fail "4: the ENOSPC script ran to its end" "exit 0" "exit $rc: $ENOSPC_OUT"
        fi
        sleep 0.5
        journal_ok "4" "$LB_CAP_JOURNAL"
        MOUNT_DIGEST="$(lb_digest "$LB_CAP_DATA")"
        term_agent "4"
        BACKING_DIGEST="$(lb_digest "$LB_CAP_BACKING")"
        assert_eq "4: backing dir digest after stop equals the mount's digest" "$MOUNT_DIGEST" "$BACKING_DIGEST"
        replay_matches "4 (journal across ENOSPC)" "$LB_CAP_JOURNAL" "$BACKING_DIGEST"
    fi
fi
lb_info "parts 1-4 took $(($(date +%s) - T0)) s"

# ---------------------------------------------------------------- 5: bad configs and dirs

B="$LB_TMP/bad"
mkdir -p "$B/data" "$B/backing" "$B/other"
chmod 755 "$B/data" "$B/backing"
BAD_DATA="$(realpath -e "$B/data")"
LB_MOUNTS+=("$B/data")
lb "$B/init.out" "$B/init.err" init --repo "$B/repo"
assert_exit "5: lifeboat init --repo (for the configs' repository)" 0 "$LB_RC" "$B/init.err"
BAD_PORT=$LB_AGENT_PORT_NEXT
LB_AGENT_PORT_NEXT=$((LB_AGENT_PORT_NEXT + 1))

# base_config FILE: a valid config; the line numbers matter for the cases below
base_config() {
    mkdir -p "$(dirname "$1")"
    agent_yaml "$1" test-host "127.0.0.1:$BAD_PORT" "$B/repo" bad "$B/data" "$B/backing" "$B/journal"
}

# refused CASE CONFIG ERE [DATA_DIR]: lifeboatd --config CONFIG exits 2 with one stderr line
# matching ERE, within 30 s, and leaves nothing mounted on the data dir
refused() {
    local name="5 $1" cfg=$2 re=$3 data=${4:-$BAD_DATA} out="$B/$1.out" err="$B/$1.err" rc
    timeout -k 5 30 "$LIFEBOATD_BIN" --config "$cfg" >"$out" 2>"$err" </dev/null
    rc=$?
    assert_exit "$name: lifeboatd refuses to start with exit 2" 2 "$rc" "$err"
    assert_one_line "$name: one stderr line" "$err"
    assert_file_match "$name: the line names the problem" "$re" "$err"
    assert_true "$name: nothing mounted on the data dir afterwards" "no mount on $data ($(mount_desc "$data"))" \
        not_mounted "$data"
    lb_info "$1: exit $rc: $(lb_head "$err")"
}

# bad_case CASE SED_SCRIPT ERE: the base config edited with sed
bad_case() {
    local cfg="$B/$1/agent.yaml"
    base_config "$cfg"
    sed -i "$2" "$cfg"
    refused "$1" "$cfg" "$3"
}

bad_case typo-key '7s/data_dir:/dta_dir:/' 'agent\.yaml:7:.*dta_dir'
bad_case unknown-key '9a\    journal_size: 1G' 'agent\.yaml:10:.*journal_size'
bad_case no-data-dir '7d' 'agent\.yaml:5:.*data_dir.*missing'
bad_case relative-backing '8s|backing_dir: .*|backing_dir: relative/backing|' 'agent\.yaml:8:.*backing_dir.*absolute'
bad_case capture-nfs '6s/capture: fuse/capture: nfs/' 'agent\.yaml:6:.*capture.*nfs'
bad_case listen-nonsense '2s/listen: .*/listen: nonsense/' 'agent\.yaml:2:.*listen'
bad_case tab-indent '8s/^    /\t/' 'agent\.yaml(:8:|.*line 8\b)'
bad_case bad-indent '8s/^    /  /' 'agent\.yaml(:8:|.*line 8\b)'
mkdir -p "$B/empty" && : >"$B/empty/agent.yaml"
refused empty-file "$B/empty/agent.yaml" 'agent\.yaml.*empty'
refused missing-file "$B/no-such-dir/agent.yaml" 'no-such-dir/agent\.yaml'
bad_case no-backing "8s|backing_dir: .*|backing_dir: $B/no-such-backing|" 'backing_dir.*no-such-backing.*(does not exist|no such)'
bad_case journal-in-data "9s|journal_dir: .*|journal_dir: $B/data/journal|" 'journal_dir.*data'
bad_case journal-in-backing "9s|journal_dir: .*|journal_dir: $B/backing/journal|" 'journal_dir.*backing'

# a data dir that is already a mount (a bind mount of another dir)
if mount --bind "$B/other" "$B/data"; then
    base_config "$B/already-mounted/agent.yaml"
    timeout -k 5 30 "$LIFEBOATD_BIN" --config "$B/already-mounted/agent.yaml" >"$B/am.out" 2>"$B/am.err" </dev/null
    rc=$?
    assert_exit "5 already-mounted: lifeboatd refuses a data dir that is already a mount with exit 2" 2 "$rc" "$B/am.err"
    assert_one_line "5 already-mounted: one stderr line" "$B/am.err"
    assert_file_match "5 already-mounted: the message says the data dir is already a mount" 'already a mount' "$B/am.err"
    assert_eq "5 already-mounted: only the bind mount is on the data dir afterwards (no FUSE mount over it)" \
        "1" "$(mounts_on "$BAD_DATA")"
    lb_info "already-mounted: exit $rc: $(lb_head "$B/am.err")"
    umount "$B/data"
else
    fail "5 already-mounted: bind-mount a dir on the data dir" "mount --bind exit 0" "failed"
fi

# the listen port is in use
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(5)
print("listening", flush=True); time.sleep(600)' "$BAD_PORT" >"$B/listener.out" 2>&1 &
LPID=$!
LB_PIDS+=("$LPID")
for ((i = 0; i < 50; i++)); do grep -q listening "$B/listener.out" && break; sleep 0.1; done
if grep -q listening "$B/listener.out"; then
    base_config "$B/port/agent.yaml"
    timeout -k 5 30 "$LIFEBOATD_BIN" --config "$B/port/agent.yaml" >"$B/port.out" 2>"$B/port.err" </dev/null
    rc=$?
    if [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        fail "5 port-in-use: lifeboatd exits non-zero when its listen address is taken" "exit 1 or 2 (within 30 s)" \
            "exit $rc; stderr: $(lb_head "$B/port.err")"
    else
        pass
    fi
    assert_file_match "5 port-in-use: an error line names the address 127.0.0.1:$BAD_PORT" \
        "error:.*127\.0\.0\.1:$BAD_PORT" "$B/port.err"
    assert_true "5 port-in-use: nothing mounted on the data dir afterwards" "no mount on $BAD_DATA ($(mount_desc "$BAD_DATA"))" \
        not_mounted "$BAD_DATA"
    lb_info "port-in-use: exit $rc: $(grep error "$B/port.err" | head -c 300)"
else
    fail "5 port-in-use: a listener on 127.0.0.1:$BAD_PORT" "listening" "$(lb_head "$B/listener.out")"
fi
kill "$LPID" 2>/dev/null
wait "$LPID" 2>/dev/null

lb_info "took $(($(date +%s) - T0)) s"
lb_finish
