#!/usr/bin/env bash
# redis-failover.sh: a long chaos run. Three agents on one machine run redis (appendfsync
# always) in a captured data dir; a client writes and logs every acknowledged write; the
# primary host is lost CYCLES times in a row (agent and redis SIGKILLed, mount removed,
# backing and journal dirs deleted), another host recovers, the lost one rejoins on its empty
# disk. It is scripts/tests/failover-redis.sh run with many cycles; this script prints each
# recovery's time by part and the acknowledged writes lost (must be 0 in sync mode).
#
#   scripts/chaos/redis-failover.sh                 # 50 cycles, sync replication
#   CYCLES=100 MODE=async scripts/chaos/redis-failover.sh
#
# Exit 0 when every check of the run passed (in sync mode that includes 0 lost writes).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
CYCLES="${CYCLES:-50}"
MODE="${MODE:-sync}"
log="$(mktemp "${TMPDIR:-/tmp}/lifeboat-chaos.XXXXXX")"
trap 'rm -f "$log"' EXIT

echo "chaos: $CYCLES host losses in a row, replication $MODE (scripts/tests/failover-redis.sh)" >&2
start=$(date +%s)
CYCLES="$CYCLES" MODE="$MODE" SWITCHOVER=0 bash scripts/tests/failover-redis.sh 2>&1 | tee "$log" | grep -E '^(FAIL|# [0-9.]+: (recovery of|lost acknowledged))' >&2
status=${PIPESTATUS[0]}
elapsed=$(($(date +%s) - start))

echo
echo "== recoveries (seconds; from the new primary's last_recovery)"
python3 - "$log" <<'PY'
import re, statistics, sys
rows = []
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"# \d+\.(\d+): recovery of (\S+): delta (\d+) records held locally \+ (\d+) records / (\d+) bytes fetched from (\S+), snapshot (\d+) bytes; seconds: total ([\d.]+), detection ([\d.]+), lease ([\d.]+), snapshot load ([\d.]+), delta ([\d.]+), replay ([\d.]+), service start ([\d.]+)", line)
    if m:
        rows.append(m.groups())
print(f"{'cycle':>5} {'host':>4} {'total':>7} {'detect':>7} {'lease':>7} {'snap':>7} {'delta':>7} {'replay':>7} {'start':>7} {'local':>7} {'fetched':>7} {'snap MB':>8}")
for r in rows:
    print(f"{r[0]:>5} {r[1]:>4} {float(r[7]):7.3f} {float(r[8]):7.3f} {float(r[9]):7.3f} {float(r[10]):7.3f} {float(r[11]):7.3f} {float(r[12]):7.3f} {float(r[13]):7.3f} {r[2]:>7} {r[3]:>7} {int(r[6])/1e6:8.2f}")
if rows:
    totals = [float(r[7]) for r in rows]
    after = [float(r[7]) - float(r[8]) for r in rows]
    print(f"recoveries: {len(rows)}; total s: min {min(totals):.3f} median {statistics.median(totals):.3f} max {max(totals):.3f}; after detection s: median {statistics.median(after):.3f} max {max(after):.3f}")
PY
lost=$(grep -E '^# 4: lost acknowledged writes:' "$log" | tail -n 1 | sed -E 's/.*writes: ([0-9]+).*/\1/')
echo "lost acknowledged writes: ${lost:-unknown} (replication $MODE)"
grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1
echo "run took ${elapsed}s"
exit "$status"
