# shellcheck shell=bash
# failover_lib.sh: the helpers of the three-agent redis failover tests (failover-redis.sh,
# failover-policies.sh): scripts/lib/cluster.sh, which documents them and what the sourcing
# script sets first. Source it after lib.sh and lb_setup, then `trap fo_cleanup EXIT`.
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cluster.sh"
