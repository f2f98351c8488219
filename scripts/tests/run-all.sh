#!/usr/bin/env bash
# run-all.sh: runs every test script in scripts/tests/ (not lib.sh, *_lib.sh, not itself), prints each
# one's failures and summary, and ends with the combined "N passed, N failed".
# A script that ends without a summary line counts as one failure.
# Pass script names (e.g. crash.sh) to run only those.
set -uo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-run-all.XXXXXX")"
trap 'rm -rf "$LOGDIR"' EXIT

scripts=()
if [ "$#" -gt 0 ]; then
    for s in "$@"; do scripts+=("$DIR/$(basename "$s")"); done
else
    for s in "$DIR"/*.sh; do
        case "$(basename "$s")" in lib.sh | *_lib.sh | run-all.sh) continue ;; esac
        scripts+=("$s")
    done
fi

total_pass=0
total_fail=0
for s in "${scripts[@]}"; do
    name="$(basename "$s")"
    log="$LOGDIR/$name.log"
    start=$(date +%s)
    bash "$s" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)"
    grep -E '^(FAIL|SKIP) ' "$log"
    if [ -n "$summary" ]; then
        p="${summary%% passed*}"
        f="${summary#*, }"
        f="${f%% failed*}"
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; summary="$summary (but exit $rc)"; fi
    else
        p=0
        f=1
        summary="no summary line (exit $rc); last output: $(tail -n 3 "$log" | tr '\n' '|')"
    fi
    echo "== $name: $summary [${secs}s]"
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
done

echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
