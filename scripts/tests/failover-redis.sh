#!/usr/bin/env bash
# failover-redis.sh: failover of a redis workload between three lifeboatd agents on one
# machine: h1, h2, h3 on 127.0.0.11, .12, .13 (API on :7440, journal stream on :7441, redis
# on :6390), sharing one "volume" dir (the repository and the coordinator's lease dir). The
# agent of the primary mounts the captured data dir and runs redis (appendonly, appendfsync
# always) in it; the script never starts redis itself. The steps and their assertions are
# scripts/lib/failover_scenario.sh (election; a writer and a snapshot; CYCLES host losses,
# each recovered on another host while the lost one rejoins on an empty disk; every
# acknowledged write checked; a switchover through `lifeboat failover`); scripts/demo.sh runs
# the same scenario. At the end one summary line with each recovery's timings and sizes.
#
# Environment: MODE=sync|async (replication, default sync), CYCLES (host losses, default 2),
# SWITCHOVER=0 leaves step 5 out, LB_KEEP=1 keeps the temp dir (<tmp>/hN/agent.log,
# <tmp>/hN/redis.log, <tmp>/writer*.out, <tmp>/acks*). Skipped without redis-server,
# redis-cli or /dev/fuse. The addresses and ports are fixed: one already in use fails setup.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE="${MODE:-sync}"
CYCLES="${CYCLES:-2}"
SWITCHOVER="${SWITCHOVER:-1}"
case "$MODE" in sync | async) ;; *)
    fail "setup" "MODE sync or async" "MODE=$MODE"
    lb_finish
    ;;
esac
if ! [[ "$CYCLES" =~ ^[0-9]+$ ]]; then
    fail "setup" "CYCLES a number" "CYCLES=$CYCLES"
    lb_finish
fi

lb_need_redis_fuse

lb_setup
lb_need_agent copy

. "$LB_TESTS_DIR/../lib/cluster.sh"
cluster_hosts 127.0.0.1 7440 7441 6390 "$LB_TMP/volume"

. "$LB_TESTS_DIR/../lib/failover_scenario.sh"
fo_scenario
[ "$LB_FAIL" -eq 0 ] || show_logs
lb_finish
