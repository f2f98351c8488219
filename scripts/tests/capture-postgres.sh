#!/usr/bin/env bash
# capture-postgres.sh: a PostgreSQL 15 cluster (data checksums on, fsync on) lives in a
# captured data dir (lifeboatd's FUSE mount), run as the postgres user (the mount allows other
# users). pgbench loads and runs; the pgbench invariants (sum of balances of accounts, tellers,
# branches == sum of history deltas), the row counts, content checksums, pg_amcheck and
# pg_checksums must hold after a fast shutdown and restart, after an immediate shutdown (crash
# recovery replays the WAL: every transaction pgbench counted is there), and after a clean
# restart of the agent (the backing dir alone also passes pg_checksums). The server listens
# only on a unix socket in the test's temp dir, on a random port: the system's cluster is
# never touched.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_setup

PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
lb_need_agent copy
if [ ! -x "$PGBIN/postgres" ] || ! id postgres >/dev/null 2>&1; then
    fail "setup" "PostgreSQL 15 in $PGBIN and a postgres user (scripts/setup.sh)" "not found"
    lb_finish
fi

PG_PID=""
# On exit, before lib.sh's cleanup: an immediate shutdown (SIGQUIT) of the postmaster also ends
# its backends (a SIGKILL would leave them holding files in the mount).
pg_cleanup() {
    if [ -n "$PG_PID" ] && lb_is_running "$PG_PID"; then
        kill -QUIT "$PG_PID" 2>/dev/null
        lb_wait_pid "$PG_PID" 10
    fi
}
trap 'pg_cleanup; lb_cleanup' EXIT

chmod 755 "$LB_TMP" # postgres must reach the data dir and the socket dir
SOCKDIR="$LB_TMP/pgsock"
mkdir -p "$SOCKDIR"
chown postgres:postgres "$SOCKDIR"
PORT=$((20000 + RANDOM % 30000))
PGLOG="$LB_TMP/postgres.log"
: >"$PGLOG"

as_pg() { runuser -u postgres -- "$@"; }
# q SQL: one query as the postgres role over the private socket; unaligned, tuples only
q() {
    timeout -k 5 120 "$PGBIN/psql" -h "$SOCKDIR" -p "$PORT" -U postgres -d postgres -XAtq \
        -v ON_ERROR_STOP=1 -c "$1" 2>&1
}

# pg_start WHAT: starts the postmaster itself in the background (setpriv execs it, so $! is
# the postmaster) and waits until it accepts connections
pg_start() {
    setpriv --reuid=postgres --regid=postgres --init-groups \
        "$PGBIN/postgres" -D "$PGDATA" -k "$SOCKDIR" -p "$PORT" \
        -c listen_addresses= -c fsync=on -c synchronous_commit=on -c full_page_writes=on \
        -c shared_buffers=32MB -c max_wal_size=64MB -c logging_collector=off \
        </dev/null >>"$PGLOG" 2>&1 &
    PG_PID=$!
    lb_track_first "$PG_PID"
    local i
    for ((i = 0; i < 600; i++)); do
        if "$PGBIN/pg_isready" -q -h "$SOCKDIR" -p "$PORT" -U postgres -d postgres 2>/dev/null; then
            pass
            return 0
        fi
        lb_is_running "$PG_PID" || break
        sleep 0.1
    done
    fail "$1" "postgres accepts connections on $SOCKDIR port $PORT within 60 s" \
        "$(tail -n 5 "$PGLOG")"
    return 1
}

# pg_stop MODE WHAT: pg_ctl stop -m MODE, then the postmaster must exit
pg_stop() {
    as_pg timeout -k 5 90 "$PGBIN/pg_ctl" -D "$PGDATA" stop -m "$1" -w -t 60 >"$LB_TMP/pg_ctl.out" 2>&1
    assert_exit "$2: pg_ctl stop -m $1" 0 $? "$LB_TMP/pg_ctl.out"
    lb_wait_pid "$PG_PID" 60
    if [ "$1" = fast ]; then
        assert_exit "$2: postmaster exits 0 after a fast shutdown" 0 "$LB_WAIT_RC"
    else
        assert_ne "$2: postmaster exits after an immediate shutdown" 124 "$LB_WAIT_RC"
    fi
}

# give_up: the rest cannot run without postgres
give_up() { lb_give_up postgres "$PGLOG" agent "$LB_CAP_DIR/agent.log"; }

# pgbench ARGS...: as the postgres role, over the socket; output in $LB_TMP/pgbench.out
pgbench() {
    timeout -k 5 180 "$PGBIN/pgbench" -h "$SOCKDIR" -p "$PORT" -U postgres "$@" postgres \
        >"$LB_TMP/pgbench.out" 2>&1
}

# pgbench_run WHAT ARGS...: (-n: no vacuum, which would also empty pgbench_history and break
# the balance invariants across runs) sets PROCESSED to the transactions pgbench counted
pgbench_run() {
    local what=$1
    shift
    pgbench "$@"
    assert_exit "$what: pgbench $*" 0 $? "$LB_TMP/pgbench.out"
    PROCESSED="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$LB_TMP/pgbench.out")"
    local failed
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$LB_TMP/pgbench.out")"
    assert_eq "$what: pgbench reports no failed transactions" 0 "${failed:-0}"
    lb_info "$what: pgbench $* processed ${PROCESSED:-?} transactions ($(grep -E '^tps' "$LB_TMP/pgbench.out" | head -n 1))"
    PROCESSED=${PROCESSED:-0}
}

# state: counts, sums and content checksums of the pgbench tables, on one line
STATE_SQL="SELECT 'accounts=' || (SELECT count(*) FROM pgbench_accounts)
  || ' tellers=' || (SELECT count(*) FROM pgbench_tellers)
  || ' branches=' || (SELECT count(*) FROM pgbench_branches)
  || ' history=' || (SELECT count(*) FROM pgbench_history)
  || ' abalance=' || (SELECT sum(abalance) FROM pgbench_accounts)
  || ' accounts_md5=' || (SELECT md5(string_agg(aid || ':' || bid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts)
  || ' tellers_md5=' || (SELECT md5(string_agg(tid || ':' || bid || ':' || tbalance, ',' ORDER BY tid)) FROM pgbench_tellers)
  || ' branches_md5=' || (SELECT md5(string_agg(bid || ':' || bbalance, ',' ORDER BY bid)) FROM pgbench_branches)
  || ' history_md5=' || (SELECT coalesce(md5(string_agg(tid || ':' || bid || ':' || aid || ':' || delta || ':' || mtime, ','
        ORDER BY tid, bid, aid, delta, mtime)), '-') FROM pgbench_history)"
INVARIANTS_SQL="SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts) || ' ' ||
  (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers) || ' ' ||
  (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches) || ' ' ||
  (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"

# verify WHAT: pgbench invariants, amcheck; sets STATE and HISTORY
verify() {
    local what=$1 inv
    inv="$(q "$INVARIANTS_SQL")"
    read -r a t b h <<<"$inv"
    assert_match "$what: sum(abalance) of pgbench_accounts == sum(delta) of pgbench_history" '^-?[0-9]+$' "${h:-$inv}"
    assert_eq "$what: sum(abalance) of pgbench_accounts == sum(delta) of pgbench_history ($inv)" "${h:-x}" "${a:-y}"
    assert_eq "$what: sum(tbalance) of pgbench_tellers == sum(delta) of pgbench_history" "${h:-x}" "${t:-y}"
    assert_eq "$what: sum(bbalance) of pgbench_branches == sum(delta) of pgbench_history" "${h:-x}" "${b:-y}"
    timeout -k 5 120 "$PGBIN/pg_amcheck" -h "$SOCKDIR" -p "$PORT" -U postgres -d postgres \
        --heapallindexed --parent-check >"$LB_TMP/amcheck.out" 2>&1
    assert_exit "$what: pg_amcheck --heapallindexed --parent-check finds no corruption" 0 $? "$LB_TMP/amcheck.out"
    STATE="$(q "$STATE_SQL")"
    HISTORY="$(printf '%s' "$STATE" | sed -n 's/.* history=\([0-9]*\) .*/\1/p')"
    assert_match "$what: the pgbench tables can be read" '^accounts=200000 tellers=20 branches=2 history=[0-9]+ ' "$STATE"
}

# checksums WHAT DIR: pg_checksums --check of a cleanly stopped cluster
checksums() {
    as_pg timeout -k 5 120 "$PGBIN/pg_checksums" --check -D "$2" >"$LB_TMP/checksums.out" 2>&1
    assert_exit "$1: pg_checksums --check -D $2 (every page's checksum)" 0 $? "$LB_TMP/checksums.out"
}

# ---------------------------------------------------------------- initdb, load, run

t0=$(date +%s)
lb_capture_up postgres
PGDATA="$LB_CAP_DATA/pg"
mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"
assert_eq "chown through the mount" "postgres 700" "$(stat -c '%U %a' "$PGDATA")"
as_pg timeout -k 5 180 "$PGBIN/initdb" -D "$PGDATA" --auth=trust -U postgres --data-checksums \
    -E UTF8 --locale=C --no-instructions >"$LB_TMP/initdb.out" 2>&1
assert_exit "initdb in the mount, as postgres" 0 $? "$LB_TMP/initdb.out"
lb_info "initdb took $(($(date +%s) - t0)) s"
pg_start "start postgres in the mount" || give_up

pgbench -i -s 2 -q
assert_exit "pgbench -i -s 2 in the mount" 0 $? "$LB_TMP/pgbench.out"
q "CREATE EXTENSION IF NOT EXISTS amcheck" >"$LB_TMP/amcheck-ext.out"
assert_exit "CREATE EXTENSION amcheck" 0 $? "$LB_TMP/amcheck-ext.out"
pgbench_run "run 1" -n -c 2 -j 2 -T 10
verify "after run 1"
assert_eq "after run 1: pgbench_history has one row per transaction pgbench counted" "$PROCESSED" "$HISTORY"
STATE1="$STATE"
lb_info "state: $STATE1"

# ---------------------------------------------------------------- fast shutdown, restart

pg_stop fast "fast shutdown"
checksums "after a fast shutdown, through the mount" "$PGDATA"
pg_start "start postgres after a fast shutdown" || give_up
verify "after a fast shutdown and restart"
assert_eq "after a fast shutdown and restart: counts, sums and checksums as before" "$STATE1" "$STATE"

# ---------------------------------------------------------------- immediate shutdown: crash recovery

before=$HISTORY
pgbench_run "run 2" -n -c 2 -j 2 -T 5
pg_stop immediate "immediate shutdown (crash)"
loglines=$(wc -l <"$PGLOG")
pg_start "start postgres after an immediate shutdown (WAL replay)" || give_up
assert_match "postgres ran crash recovery" 'not properly shut down|redo starts' "$(tail -n +"$((loglines + 1))" "$PGLOG")"
verify "after crash recovery"
assert_eq "after crash recovery: every transaction pgbench counted in run 2 is in pgbench_history" \
    "$((before + PROCESSED))" "$HISTORY"
STATE2="$STATE"

# ---------------------------------------------------------------- agent restart

pg_stop fast "fast shutdown before the agent restart"
checksums "before the agent restart, through the mount" "$PGDATA"
lb_capture_down "lifeboatd stops on SIGTERM with exit 0" "after the agent stops, the data dir is no longer a mountpoint"
checksums "the backing dir alone, agent stopped" "$LB_CAP_BACKING/pg"
assert_match "the backing dir's control file says the cluster was shut down" \
    'Database cluster state: +shut down$' "$("$PGBIN/pg_controldata" -D "$LB_CAP_BACKING/pg" 2>&1 | grep 'cluster state')"

lb_capture_up postgres "restart lifeboatd" "the data dir mounted again within 30 s"
pg_start "start postgres after the agent restart" || give_up
verify "after the agent restart"
assert_eq "after the agent restart: counts, sums and checksums as before" "$STATE2" "$STATE"
before=$HISTORY
pgbench_run "run 3" -n -c 2 -j 2 -t 300
verify "after run 3"
assert_eq "after run 3: pgbench_history grew by the transactions pgbench counted" "$((before + PROCESSED))" "$HISTORY"
pg_stop fast "final fast shutdown"
lb_capture_down "lifeboatd stops on SIGTERM with exit 0 (second run)"
checksums "the backing dir alone, end" "$LB_CAP_BACKING/pg"
lb_info "took $(($(date +%s) - t0)) s"

lb_finish
