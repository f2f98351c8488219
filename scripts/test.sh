#!/usr/bin/env bash
# Runs every test: the Swift unit tests, then the integration scripts against the release
# binary (crash safety, full disk, concurrency, bad input, progress, memory).
# Installs what it needs first (scripts/setup.sh). Ends with one line `N passed, N failed`.
# The integration scripts need root (FUSE mounts, loopback addresses): as another user they
# run through sudo; the Swift tests run as the caller.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LB_SCRIPT=test
. scripts/lib/common.sh

scripts/setup.sh || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift test 2>&1 | tee "$log"
swift_status=${PIPESTATUS[0]}
swift_passed=$(grep -cE "^Test Case '.*' passed" "$log")
swift_failed=$(grep -cE "^Test Case '.*' failed" "$log")
if ((swift_status != 0 && swift_failed == 0)); then swift_failed=1; fi

as_root scripts/tests/run-all.sh 2>&1 | tee "$log"
scripts_status=${PIPESTATUS[0]}
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
scripts_passed=$(echo "$summary" | awk '{print $1}')
scripts_failed=$(echo "$summary" | awk '{print $3}')
scripts_passed=${scripts_passed:-0}
scripts_failed=${scripts_failed:-0}
if ((scripts_status != 0 && scripts_failed == 0)); then scripts_failed=1; fi

echo
echo "swift tests: $swift_passed passed, $swift_failed failed; integration scripts: $scripts_passed passed, $scripts_failed failed"
echo "$((swift_passed + scripts_passed)) passed, $((swift_failed + scripts_failed)) failed"
((swift_failed + scripts_failed == 0))
