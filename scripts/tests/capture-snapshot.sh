#!/usr/bin/env bash
# Snapshots of a captured data dir while a service keeps writing (issue 3):
# - `lifeboat backup --agent` snapshots at a journal position, the first one by scan, later
#   ones from the dirty map;
# - restoring a snapshot alone gives exactly the state at its position (checked by restoring
#   the previous snapshot and replaying the journal up to that position);
# - restoring a snapshot and replaying the journal to the end gives the live data dir;
# - check --read-data passes, and the agent reports how long writes were held back.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lb_setup

WRITER="$LB_TESTS_DIR/capture-writer.py"
if ! lb_capture_start snap; then
    fail "start agent" "the data dir mounted" "see the agent log above"
    lb_finish
fi
STOP="$LB_TMP/stop-writer"

snapshot_json() { # prints the agent's report; fails the test on a non-zero exit
    lb "$LB_TMP/snap.out" "$LB_TMP/snap.err" backup --agent "$LB_CAP_URL" --workload snap --json
    assert_exit "$1: backup --agent" 0 "$LB_RC" "$LB_TMP/snap.err"
    cat "$LB_TMP/snap.out"
}
field() { python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"; }

restore_digest() { # SNAPSHOT [--journal DIR [--until POS]] -> digest of the restored tree
    local target="$LB_TMP/restore.$RANDOM$RANDOM" snap=$1
    shift
    lb "$LB_TMP/restore.out" "$LB_TMP/restore.err" restore --repo "$LB_CAP_REPO" "$snap" --target "$target" "$@"
    if [ "$LB_RC" -ne 0 ]; then
        echo "restore $snap $* failed (exit $LB_RC): $(lb_head "$LB_TMP/restore.err")" >&2
        echo "restore-failed"
        return
    fi
    lb_digest "$target"
    rm -rf "$target"
}

for round in 1 2; do
    rm -f "$STOP"
    python3 "$WRITER" "$LB_CAP_DATA" "$STOP" "$round" 300 >"$LB_TMP/writer.log" 2>&1 &
    writer=$!
    LB_PIDS=("$writer" "${LB_PIDS[@]}")
    sleep 1.5
    s1="$(snapshot_json "round $round: first snapshot")"
    sleep 1
    s2="$(snapshot_json "round $round: second snapshot")"
    sleep 1
    s3="$(snapshot_json "round $round: third snapshot")"
    sleep 0.5
    touch "$STOP"
    lb_wait_pid "$writer" 30
    assert_exit "round $round: the writer ran without errors ($(lb_head "$LB_TMP/writer.log"))" 0 "$LB_WAIT_RC"
    sleep 0.6 # the agent's flusher makes the last records durable within 0.2 s

    id1="$(field snapshot <<<"$s1")" id2="$(field snapshot <<<"$s2")" id3="$(field snapshot <<<"$s3")"
    p2="$(field position <<<"$s2")" p3="$(field position <<<"$s3")"
    lb_info "round $round: snapshots ${id1:0:8} ($(field method <<<"$s1"), stall $(field stall_ms <<<"$s1") ms), ${id2:0:8} at $p2 ($(field method <<<"$s2"), stall $(field stall_ms <<<"$s2") ms, $(field changed_bytes_read <<<"$s2") changed bytes read), ${id3:0:8} at $p3 (stall $(field stall_ms <<<"$s3") ms)"
    if [ "$round" = 1 ]; then
        assert_eq "round 1: the first snapshot after start scans" scan "$(field method <<<"$s1")"
    fi
    assert_eq "round $round: the second snapshot reads only the dirty map" delta "$(field method <<<"$s2")"
    assert_ne "round $round: snapshot 2 has a position" "" "$p2"

    live="$(lb_digest "$LB_CAP_DATA")"
    end="$(curl -fsS "$LB_CAP_URL/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["workloads"][0]["position"])')"
    lb_info "round $round: live data dir at $end: ${live:0:16}"

    # A snapshot alone is exactly the state at its position.
    alone2="$(restore_digest "$id2")"
    replayed2="$(restore_digest "$id1" --journal "$LB_CAP_JOURNAL" --until "$p2")"
    assert_eq "round $round: snapshot 2 alone == snapshot 1 + journal up to $p2" "$replayed2" "$alone2"
    alone3="$(restore_digest "$id3")"
    replayed3="$(restore_digest "$id2" --journal "$LB_CAP_JOURNAL" --until "$p3")"
    assert_eq "round $round: snapshot 3 alone == snapshot 2 + journal up to $p3" "$replayed3" "$alone3"
    # A snapshot plus the journal to the end is the live data dir.
    assert_eq "round $round: snapshot 2 + journal to $end == live data dir" "$live" "$(restore_digest "$id2" --journal "$LB_CAP_JOURNAL")"
    assert_eq "round $round: snapshot 3 + journal to $end == live data dir" "$live" "$(restore_digest "$id3" --journal "$LB_CAP_JOURNAL" --until "$end")"

    if [ "$round" = 1 ]; then
        # The agent restarts: its first snapshot scans again and is still exact.
        lb_capture_down "round 1: agent stops on SIGTERM"
        if ! lb_capture_start snap; then
            fail "restart agent" "the data dir mounted again" "see the agent log above"
            lb_finish
        fi
        assert_eq "round 1: the restarted agent serves the same tree" "$live" "$(lb_digest "$LB_CAP_DATA")"
    fi
done

# Errors an operator can meet.
lb "$LB_TMP/e.out" "$LB_TMP/e.err" backup --agent "$LB_CAP_URL" --workload nosuch
assert_exit "backup --agent for an unknown workload" 2 "$LB_RC" "$LB_TMP/e.err"
assert_file_match "unknown workload is named" "nosuch" "$LB_TMP/e.err"
lb "$LB_TMP/e.out" "$LB_TMP/e.err" backup --agent "http://127.0.0.1:1" --workload snap
assert_exit "backup --agent with no agent listening" 1 "$LB_RC" "$LB_TMP/e.err"
assert_one_line "no agent listening: one line" "$LB_TMP/e.err"
lb "$LB_TMP/e.out" "$LB_TMP/e.err" restore --repo "$LB_CAP_REPO" latest --target "$LB_TMP/e-target" --journal "$LB_TMP/missing-journal"
assert_exit "restore --journal with a missing journal dir" 2 "$LB_RC" "$LB_TMP/e.err"

lb_check "snapshots" "$LB_CAP_REPO"
lb_capture_down "agent stops on SIGTERM" "data dir unmounted"
lb_finish
