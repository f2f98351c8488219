#!/usr/bin/env bash
# bootstrap-seeded.sh: a cluster whose data exists on one host only. h1's backing dir is
# seeded with a redis database (written by a redis-server run on the backing dir itself, plus
# a SEED-README file with a random token) before any agent ran; h2 and h3 start empty. The
# service is "initdb-needing": its start command refuses to run on a data dir without a
# database (as PostgreSQL refuses an empty PGDATA). Three agents (h1, h2, h3 on 127.0.0.21,
# .22, .23; API :7450, peers :7451, redis :6391) start within half a second, the seeded one
# last (the worst case: the empty hosts look for the first lease before it does).
#
#  1. Within 60 s h1 is the only primary, at epoch 1, its last recovery a bootstrap (the lease
#     did not go to an empty host, nor circle the hosts); redis serves the seeded key; h2 and
#     h3 are peers.
#  2. The seed is never deleted: SEED-README is still in h1's backing dir, unchanged, and the
#     repository holds a snapshot tagged `seed`.
#  3. A write on the primary (sync replication), then h1 dies: another host is primary within
#     60 s with a higher epoch and serves the seeded key, the new key and SEED-README (restored
#     from the seed snapshot plus the journal).
#
# On the code before the fix step 1 fails: an empty host wins the first lease, its service
# refuses to start, and the seeded host then empties its backing dir for a "failover" restore
# with no snapshot at all: the only copy is deleted.
#
# Environment: LB_KEEP=1 keeps the temp dir (<tmp>/hN/agent.log, <tmp>/hN/redis.log).
# Skipped without redis-server, redis-cli or /dev/fuse.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_need_redis_fuse
lb_setup
lb_need_agent copy

. "$LB_TESTS_DIR/../lib/cluster.sh"
cluster_hosts 127.0.0.2 7450 7451 6391 "$LB_TMP/volume"
MODE=sync
LEASE_TTL=3s
SEED_PID=""

. "$LB_TESTS_DIR/failover_lib.sh"
seed_cleanup() {
    [ -n "$SEED_PID" ] && kill -KILL "$SEED_PID" 2>/dev/null
    fo_cleanup
}
trap seed_cleanup EXIT

cluster_ports_free setup 0 || lb_finish
mkdir -p "$VOLUME"
for i in 0 1 2; do
    write_config "$i"
    LB_MOUNTS+=("$(hdir "$i")/data")
    d="$(hdir "$i")"
    # the service refuses to start on nothing, like PostgreSQL on an empty PGDATA
    cat >"$d/start.sh" <<SH
#!/bin/sh
if [ ! -d "$d/data/appendonlydir" ]; then
    echo "no database in $d/data (initdb first); refusing to start" >&2
    exit 1
fi
exec redis-server "$d/redis.conf"
SH
    chmod 755 "$d/start.sh"
    sed -i "s|^      start: .*|      start: \"$d/start.sh\"|" "$d/agent.yaml"
done

# ---------------------------------------------------------------- the seed, on h1 only

H1="$(hdir 0)"
TOKEN="seed-$RANDOM-$RANDOM-$(date +%s%N)"
SEED_VALUE="value-$TOKEN"
sed -e "s|^dir .*|dir $H1/backing|" -e "s|^logfile .*|logfile $H1/seed-redis.log|" "$H1/redis.conf" >"$H1/seed.conf"
redis-server "$H1/seed.conf" </dev/null >/dev/null 2>&1 &
SEED_PID=$!
seeded=no
if wait_until 20 redis_pong 0; then
    timeout 10 redis-cli -h "${ADDRS[0]}" -p "$REDIS_PORT" set lifeboat:seed "$SEED_VALUE" >/dev/null &&
        timeout 10 redis-cli -h "${ADDRS[0]}" -p "$REDIS_PORT" shutdown >/dev/null 2>&1
    wait_until 20 pid_gone "$SEED_PID" && seeded=yes
fi
wait "$SEED_PID" 2>/dev/null
SEED_PID=""
printf '%s\n' "$TOKEN" >"$H1/backing/SEED-README"
if [ "$seeded" = yes ] && [ -d "$H1/backing/appendonlydir" ]; then
    pass
else
    fail "setup: a redis database seeded in h1's backing dir" "appendonlydir in $H1/backing" \
        "$(ls -A "$H1/backing" 2>&1 | tr '\n' ' '); $(tail -n 3 "$H1/seed-redis.log" 2>/dev/null | tr '\n' '|')"
    lb_finish
fi
lb_info "setup: h1 seeded ($(du -sb "$H1/backing" | cut -f1) bytes: $(ls -A "$H1/backing" | tr '\n' ' '))"

# seed_intact: SEED-README with the token is still on h1 (in the backing dir, or moved aside)
seed_on_h1() {
    local f
    for f in "$H1"/backing/SEED-README "$H1"/backing.seed-*/SEED-README; do
        [ -f "$f" ] && [ "$(cat "$f")" = "$TOKEN" ] && return 0
    done
    return 1
}

# ---------------------------------------------------------------- start all agents

agent_start 1
agent_start 2
sleep 0.5
agent_start 0
T0=$(date +%s)

# ---------------------------------------------------------------- 1. the first lease

assert_primary "1: election" 60 0 -1 "exactly one primary with its service running within 60 s" || {
    assert_true "2: the seed is still on h1" "SEED-README with the token in $H1/backing (or aside)" seed_on_h1
    give_up
}
P=$PRIMARY
lb_info "1: ${HOSTS[$P]} is primary at epoch $PRIMARY_EPOCH $(($(date +%s) - T0)) s after the start"
assert_eq "1: the seeded host takes the first lease" h1 "${HOSTS[$P]}"
assert_eq "1: the lease did not circle the hosts: epoch" 1 "$PRIMARY_EPOCH"
assert_eq "1: the primary's last recovery is a bootstrap" bootstrap "$(st_field "$P" last_recovery.kind)"
assert_true "1: redis answers PING on the primary" "PONG within 30 s" wait_until 30 redis_pong "$P"
got="$(timeout 10 redis-cli -h "${ADDRS[$P]}" -p "$REDIS_PORT" get lifeboat:seed 2>&1)"
assert_eq "1: the primary serves the seeded key" "$SEED_VALUE" "$got"
for i in 0 1 2; do
    [ "$i" = "$P" ] || assert_peer "1: ${HOSTS[$i]} is a peer" "$i"
done

# ---------------------------------------------------------------- 2. nothing deleted

assert_true "2: the seed is still in h1's backing dir, unchanged" "SEED-README with the token" seed_on_h1
seeds="$("$LIFEBOAT_BIN" snapshots --repo "$VOLUME/repo" --json 2>&1 | grep -c '"seed"')"
assert_true "2: the repository holds the seed snapshot" "a snapshot tagged seed" is_positive "${seeds:-0}"

# ---------------------------------------------------------------- 3. every host can restore it

out="$(timeout 10 redis-cli -h "${ADDRS[$P]}" -p "$REDIS_PORT" set lifeboat:after "after-$TOKEN" 2>&1)"
assert_eq "3: a write on the primary is acknowledged" OK "$out"
host_kill "$P"
wait_until 10 pid_gone "${AGENT_PIDS[$P]}"
AGENT_PIDS[$P]=""
assert_primary "3: failover" 60 2 "$P" "another host primary with epoch >= 2 within 60 s" || give_up
Q=$PRIMARY
lb_info "3: ${HOSTS[$Q]} is primary at epoch $PRIMARY_EPOCH; recovery from snapshot $(st_field "$Q" last_recovery.snapshot_position)"
assert_true "3: redis answers PING on the new primary" "PONG within 30 s" wait_until 30 redis_pong "$Q"
got="$(timeout 10 redis-cli -h "${ADDRS[$Q]}" -p "$REDIS_PORT" get lifeboat:seed 2>&1)"
assert_eq "3: the new primary serves the seeded key" "$SEED_VALUE" "$got"
got="$(timeout 10 redis-cli -h "${ADDRS[$Q]}" -p "$REDIS_PORT" get lifeboat:after 2>&1)"
assert_eq "3: the new primary serves the write made after the seed" "after-$TOKEN" "$got"
assert_eq "3: SEED-README is in the new primary's data dir" "$TOKEN" "$(cat "$(hdir "$Q")/data/SEED-README" 2>&1)"
assert_true "3: the seed is still on h1 after it died" "SEED-README with the token" seed_on_h1

lb_finish
