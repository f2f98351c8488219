#!/usr/bin/env bash
# demo-smoke.sh: the README's first command, as CI runs it: `scripts/demo.sh` (with
# DEMO_SKIP_SETUP=1, since scripts/test.sh ran scripts/setup.sh already, and DEMO_DIR in this
# test's temp dir so the run cleans up after itself). The demo runs the failover scenario of
# failover-redis.sh once; this test checks that it exits 0, that its summary says no
# acknowledged write was lost and names a new primary with a recovery of kind failover and a
# total time, that its last line is "demo: OK: ...", that it left no mount and no agent
# behind, and that the agents' logs are in DEMO_DIR. About a minute.
#
# Environment: LB_KEEP=1 keeps the temp dir (<tmp>/demo/ holds the demo's logs, <tmp>/demo.out
# its output). Skipped without redis-server, redis-cli or /dev/fuse.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_need_redis_fuse
lb_setup
DEMO="$LB_TMP/demo"
OUT="$LB_TMP/demo.out"

start=$(date +%s)
(cd "$LB_TMP" && DEMO_SKIP_SETUP=1 DEMO_DIR="$DEMO" timeout -k 10 300 "$LB_REPO_ROOT/scripts/demo.sh" >"$OUT" 2>&1 </dev/null)
rc=$?
lb_info "scripts/demo.sh exited $rc after $(($(date +%s) - start)) s"
assert_exit "scripts/demo.sh exits 0" 0 "$rc" "$OUT"
summary="$(grep -E '^=== summary: ' "$OUT")"
assert_match "the summary names the lost primary and no lost write" \
    '^=== summary: redis on h1 h2 h3, primary h[123] lost, no acknowledged write lost$' "$summary"
assert_match "the summary says 0 lost" '^  lost +0$' "$(grep -E '^  lost ' "$OUT")"
assert_match "the summary counts every acknowledged write as found" \
    '^  acknowledged in all +[1-9][0-9]* \(\+[0-9]+ by h[123] after the failover\): found [0-9]+, lost 0$' \
    "$(grep -E '^  acknowledged in all ' "$OUT")"
assert_match "the summary names the new primary and a recovery of kind failover" \
    '^  new primary +h[123] \(127\.0\.0\.2[123]\), epoch [0-9]+ \(was h[123], epoch [0-9]+\); recovery kind failover$' \
    "$(grep -E '^  new primary ' "$OUT")"
assert_match "the summary has the recovery's total time" '^  total +[0-9]+\.[0-9]{3} s$' "$(grep -E '^  total ' "$OUT")"
assert_match "the summary has the records replayed" '^  records replayed +[1-9][0-9]*$' "$(grep -E '^  records replayed ' "$OUT")"
assert_match "the demo prints lifeboat status of the new primary" '^h[123] +redis +primary ' "$(cat "$OUT")"
assert_eq "the last line is demo: OK" "demo: OK: every acknowledged write survived the loss of the primary host" \
    "$(tail -n 1 "$OUT")"
assert_eq "no FAIL line in the demo's output" "" "$(grep -E '^FAIL ' "$OUT")"
assert_eq "nothing is left mounted below DEMO_DIR" "" "$(awk -v t="$DEMO" 'index($5, t "/") == 1' /proc/self/mountinfo)"
assert_eq "no agent of the demo is left running" "" "$(pgrep -af "lifeboatd --config $DEMO/" 2>/dev/null)"
for h in h1 h2 h3; do
    assert_true "the demo kept $h's agent log" "a non-empty $DEMO/$h/agent.log" test -s "$DEMO/$h/agent.log"
done
[ "$LB_FAIL" -eq 0 ] || { echo "# the demo's output (last 40 lines):"; tail -n 40 "$OUT" | sed 's/^/#   /'; }
lb_finish
