#!/usr/bin/env bash
# failover-etcd.sh: the failover scenario of failover-redis.sh (election, a writer and a
# snapshot, one host loss recovered on another host, every acknowledged write checked, a
# switchover) with the agents' leases in a real etcd (Debian's etcd-server, one member on
# 127.0.0.1 with its data in /dev/shm) through the `etcd` coordinator instead of `local`.
# h1, h2, h3 on 127.0.0.51-.53 (API :7460, stream :7461, redis :6393). Prints each
# recovery's timings, detection included: with etcd a peer learns of the lost lease from the
# watch.
#
# The workload runs with `standby: warm`: the peers' warm copies must be the recovery's base.
#
# Environment: MODE=sync|async (default sync), CYCLES (default 1), STANDBY=warm|cold (default
# warm), LB_KEEP=1 keeps the temp
# dir (<tmp>/etcd.log, <tmp>/hN/agent.log). Skipped without etcd, redis-server, redis-cli or
# /dev/fuse.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE="${MODE:-sync}"
CYCLES="${CYCLES:-1}"
SWITCHOVER=1
lb_need_redis_fuse
if ! command -v etcd >/dev/null; then
    lb_skip "$LB_NAME: etcd is not installed (Debian package etcd-server; scripts/setup.sh installs it)"
    lb_finish
fi

lb_setup
lb_need_agent copy

# One etcd member on loopback, its data on tmpfs (fast fsync); killed by its pid at the end.
ETCD_DIR="$(mktemp -d /dev/shm/lifeboat-etcd.XXXXXX)"
ETCD_CLIENT=$(free_port)
ETCD_PEER=$(free_port)
etcd --name t1 --data-dir "$ETCD_DIR" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "t1=http://127.0.0.1:$ETCD_PEER" --initial-cluster-state new \
    --initial-cluster-token lifeboat-test --logger zap --log-outputs stderr --log-level warn \
    >"$LB_TMP/etcd.log" 2>&1 </dev/null &
ETCD_PID=$!
LB_PIDS+=("$ETCD_PID") # lb_cleanup kills it (after fo_teardown stopped the agents)
trap 'lb_cleanup; rm -rf "$ETCD_DIR"' EXIT
ready=0
for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$ETCD_CLIENT/health" | grep -q true; then ready=1 && break; fi
    sleep 0.1
done
assert_true "etcd answers /health on 127.0.0.1:$ETCD_CLIENT" "a healthy member within 10 s" [ "$ready" = 1 ]
[ "$ready" = 1 ] || lb_finish

. "$LB_TESTS_DIR/../lib/cluster.sh"
cluster_hosts 127.0.0.5 7460 7461 6393 "$LB_TMP/volume"
CL_ETCD="http://127.0.0.1:$ETCD_CLIENT"
CL_ETCD_PREFIX="/lifeboat-test"
# the peers keep warm copies (failover-redis.sh covers the cold path): the failover restores
# nothing from the volume
CL_STANDBY="${STANDBY:-warm}"

. "$LB_TESTS_DIR/../lib/failover_scenario.sh"
trap 'fo_cleanup; rm -rf "$ETCD_DIR"' EXIT
fo_scenario

# The lease lives in etcd, not in a file on the volume.
assert_true "no local lease file was written on the volume" "no $VOLUME/coordinator" [ ! -e "$VOLUME/coordinator" ]
keys=$(curl -sf "http://127.0.0.1:$ETCD_CLIENT/v3/kv/range" \
    -d "{\"key\":\"$(printf '%s' "$CL_ETCD_PREFIX/" | base64 -w0)\",\"range_end\":\"$(printf "%s" "${CL_ETCD_PREFIX}0" | base64 -w0)\",\"keys_only\":true}" |
    python3 -c 'import base64, json, sys; print(" ".join(sorted(base64.b64decode(k["key"]).decode() for k in json.load(sys.stdin).get("kvs", []))))')
assert_match "etcd holds the workload's epoch, history and lease keys" "$CL_ETCD_PREFIX/workloads/redis/epoch .*$CL_ETCD_PREFIX/workloads/redis/history .*$CL_ETCD_PREFIX/workloads/redis/lease" "$keys"

[ "$LB_FAIL" -eq 0 ] || { show_logs; tail -n 20 "$LB_TMP/etcd.log" | sed 's/^/# etcd: /'; }
lb_finish
