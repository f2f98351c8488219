#!/usr/bin/env bash
# capture-redis.sh: redis-server keeps its append-only file (appendonly yes, appendfsync
# always, no RDB snapshots) in a captured data dir (lifeboatd's FUSE mount). Every write redis
# acknowledged must be there after redis is killed with SIGKILL (mid-write) and started again,
# after an AOF rewrite (BGREWRITEAOF: fork, new files, renames), and after a clean restart of
# the agent between two redis runs. Redis listens on a unix socket in the test's temp dir only
# (port 0), so the system's redis is never touched.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_setup
has_manifest() { compgen -G "$LB_CAP_BACKING/redis/appendonlydir/*.manifest" >/dev/null; }

lb_need_agent copy
command -v redis-server >/dev/null || { fail "setup" "redis-server installed (scripts/setup.sh)" "not found"; lb_finish; }

SOCK="$LB_TMP/redis.sock"
LOGS="$LB_TMP/acks"
mkdir -p "$LOGS"

# resp.py: a small RESP client over the unix socket.
#   resp.py write SOCK LOG PREFIX N SEED
#     N operations in batches of 1-20 (SET of distinct values from a few bytes to 8 KB, INCR of
#     a counter, DEL of an earlier key). Each batch goes to LOG ("op" lines, flushed) before it
#     is sent, and a "+" line after all its replies came back: only then was it acknowledged.
#     When redis goes away mid-run, stops with exit 0 (the crash is the test's doing).
#   resp.py check SOCK LOG...
#     Replays the acknowledged operations of the logs, reads every key (and DBSIZE) and prints
#     "ok dbsize=N keys=N" or "BAD ..." naming what differs. Operations of a batch that was
#     sent but not acknowledged (only the last of a log) may or may not have happened.
{
    echo "import sys; sys.path.insert(0, '$LB_TESTS_DIR')" # failover_client.Redis: the RESP connection
    cat <<'EOF'
import hashlib, random
from failover_client import ErrorReply, Redis

def Conn(path):
    return Redis(None, 0, None, unix=path)

def value(key, gen):
    size = random.Random(key + gen).choice([1, 10, 100, 500, 1000, 8000])
    block = hashlib.sha256((key + gen).encode()).hexdigest()
    return (key + "=" + gen + ":" + block * (size // 64 + 1))[:max(size, len(key) + len(gen) + 2)]

def write(sock, log, prefix, n, seed):
    rnd = random.Random(seed)
    c = Conn(sock)
    done = acked = 0
    keys = []
    with open(log, "a") as lf:
        try:
            while done < n:
                batch = []
                for _ in range(min(rnd.randint(1, 20), n - done)):
                    r = rnd.random()
                    if r < 0.8 or len(keys) < 10:
                        key = "%s:%d" % (prefix, done)
                        gen = str(rnd.randint(0, 10**9))
                        keys.append(key)
                        batch.append(("SET", key, gen))
                    elif r < 0.9:
                        batch.append(("INCR", "%s:counter" % prefix, ""))
                    else:
                        key = keys.pop(rnd.randrange(len(keys)))
                        batch.append(("DEL", key, ""))
                    done += 1
                for op in batch:
                    lf.write("%s %s %s\n" % op)
                lf.flush()
                c.send([(o, k, value(k, g)) if o == "SET" else (o, k) for (o, k, g) in batch])
                for op in batch:
                    r = c.reply()
                    if isinstance(r, ErrorReply):
                        sys.exit("redis refused %s: %s" % (op, r))
                lf.write("+\n")
                lf.flush()
                acked += len(batch)
        except (ConnectionError, OSError) as e:
            print("%s: redis went away after %d acknowledged operations (%s)" % (prefix, acked, e))
            return
    print("%s: %d operations acknowledged" % (prefix, acked))

def check(sock, logs):
    want = {}      # key -> value the acknowledged operations leave (None: absent)
    maybe = {}     # key -> other allowed values (operations sent but not acknowledged)
    for log in logs:
        pending = []
        for line in open(log):
            if line == "+\n":
                for (o, k, g) in pending:
                    if o == "SET":
                        want[k] = value(k, g)
                    elif o == "DEL":
                        want[k] = None
                    else:
                        want[k] = str(int(want.get(k) or 0) + 1)
                pending = []
            else:
                pending.append(tuple((line.rstrip("\n") + " ").split(" ")[:3]))
        state = dict(want)  # unacknowledged tail: each prefix of it may have been applied
        for (o, k, g) in pending:
            if o == "SET":
                state[k] = value(k, g)
            elif o == "DEL":
                state[k] = None
            else:
                state[k] = str(int(state.get(k) or 0) + 1)
            maybe.setdefault(k, set()).add(state[k])
    c = Conn(sock)
    keys = sorted(want.keys() | maybe.keys())
    got = {}
    for i in range(0, len(keys), 200):
        part = keys[i:i + 200]
        c.send([("MGET",) + tuple(part)])
        for k, v in zip(part, c.reply()):
            got[k] = v.decode() if isinstance(v, bytes) else v
    c.send([("DBSIZE",)])
    dbsize = c.reply()
    bad = [k for k in keys if got[k] != want.get(k) and got[k] not in maybe.get(k, ())]
    present = sum(1 for k in keys if got[k] is not None)
    if bad:
        k = bad[0]
        print("BAD %d of %d keys differ from the acknowledged writes; first %s: want %r, got %r"
              % (len(bad), len(keys), k, (want.get(k) or "(absent)")[:60], (got[k] or "(absent)")[:60]))
    elif dbsize != present:
        print("BAD dbsize=%d but %d of the written keys are present (unexpected keys)" % (dbsize, present))
    else:
        print("ok dbsize=%d keys=%d acknowledged-ops-checked" % (dbsize, len(keys)))

if sys.argv[1] == "write":
    write(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
else:
    check(sys.argv[2], sys.argv[3:])
EOF
} >"$LB_TMP/resp.py"

# ---------------------------------------------------------------- redis control

REDIS_PID=""

# redis_start WHAT: starts redis-server on $LB_CAP_DATA/redis, waits for PING
redis_start() {
    cat >"$LB_TMP/redis.conf" <<CONF
port 0
unixsocket $SOCK
unixsocketperm 700
daemonize no
dir $LB_CAP_DATA/redis
appendonly yes
appendfsync always
save ""
logfile $LB_TMP/redis.log
CONF
    rm -f "$SOCK"
    redis-server "$LB_TMP/redis.conf" </dev/null >>"$LB_TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    lb_track_first "$REDIS_PID"
    local i
    for ((i = 0; i < 300; i++)); do
        if [ "$(redis-cli -s "$SOCK" ping 2>/dev/null)" = PONG ] &&
            redis-cli -s "$SOCK" info persistence 2>/dev/null | grep -q '^loading:0'; then
            pass
            return 0
        fi
        lb_is_running "$REDIS_PID" || break
        sleep 0.1
    done
    fail "$1" "redis answers PING on $SOCK within 30 s" "no answer; redis log: $(tail -n 5 "$LB_TMP/redis.log")"
    return 1
}

# redis_check WHAT LOG...: every acknowledged write of the logs is there
redis_check() {
    local what=$1
    shift
    local out
    out="$(python3 "$LB_TMP/resp.py" check "$SOCK" "$@" 2>&1)"
    assert_match "$what: every acknowledged write is there, nothing else" '^ok ' "$out"
    lb_info "$what: $out"
}

# redis_write TAG N SEED: N operations, must all be acknowledged
redis_write() {
    local out
    out="$(python3 "$LB_TMP/resp.py" write "$SOCK" "$LOGS/$1" "$1" "$2" "$3" 2>&1)"
    assert_eq "redis acknowledges $2 writes ($1)" "$1: $2 operations acknowledged" "$out"
}

# give_up: the rest cannot run without redis
give_up() { lb_give_up redis "$LB_TMP/redis.log" agent "$LB_CAP_DIR/agent.log"; }

# ---------------------------------------------------------------- run 1: SIGKILL mid-write

t0=$(date +%s)
lb_capture_up redis
mkdir -p "$LB_CAP_DATA/redis"
redis_start "start redis in the mount" || give_up
redis_write a 3000 1
lb_info "3000 acknowledged writes took $(($(date +%s) - t0)) s"

# writes go on while redis is killed
python3 "$LB_TMP/resp.py" write "$SOCK" "$LOGS/b" b 10000000 2 >"$LB_TMP/writer-b.out" 2>&1 &
writer=$!
lb_track_first "$writer"
sleep 2
kill -KILL "$REDIS_PID"
{ lb_wait_pid "$REDIS_PID" 10; } 2>/dev/null
assert_exit "redis ends on SIGKILL" 137 "$LB_WAIT_RC"
lb_wait_pid "$writer" 30
assert_exit "writer ends when redis goes away" 0 "$LB_WAIT_RC" "$LB_TMP/writer-b.out"
assert_match "writer saw acknowledged writes before the SIGKILL" 'after [1-9][0-9]* acknowledged' "$(cat "$LB_TMP/writer-b.out")"
lb_info "$(cat "$LB_TMP/writer-b.out")"

redis_start "start redis again after SIGKILL" || give_up
redis_check "after SIGKILL and restart" "$LOGS/a" "$LOGS/b"

# an AOF rewrite (forked child, new base file, manifest renamed), then more writes
redis-cli -s "$SOCK" bgrewriteaof >/dev/null 2>&1
for ((i = 0; i < 300; i++)); do
    info="$(redis-cli -s "$SOCK" info persistence 2>/dev/null | tr -d '\r')"
    if printf '%s' "$info" | grep -q '^aof_rewrite_in_progress:0' &&
        ! printf '%s' "$info" | grep -q '^aof_rewrite_scheduled:1'; then break; fi
    sleep 0.1
done
assert_match "BGREWRITEAOF in the mount succeeds" 'aof_last_bgrewrite_status:ok' "$info"
assert_match "AOF writes in the mount succeed" 'aof_last_write_status:ok' "$info"
redis_write c 500 3
redis_check "after BGREWRITEAOF and more writes" "$LOGS/a" "$LOGS/b" "$LOGS/c"
DBSIZE1="$(redis-cli -s "$SOCK" dbsize 2>/dev/null)"

# clean stop of redis
kill -TERM "$REDIS_PID"
lb_wait_pid "$REDIS_PID" 30
assert_exit "redis stops on SIGTERM with exit 0" 0 "$LB_WAIT_RC"

# ---------------------------------------------------------------- agent restart, run 2

lb_capture_down "lifeboatd stops on SIGTERM with exit 0" "after the agent stops, the data dir is no longer a mountpoint"
assert_true "the backing dir holds redis's AOF manifest" "a file $LB_CAP_BACKING/redis/appendonlydir/*.manifest" \
    has_manifest
SUMS="$(lb_file_sums "$LB_CAP_BACKING/redis")"

lb_capture_up redis "restart lifeboatd" "the data dir mounted again within 30 s"
assert_eq "after the agent restart, the mount shows the same AOF bytes" "$SUMS" "$(lb_file_sums "$LB_CAP_DATA/redis")"
redis_start "start redis after the agent restart" || give_up
redis_check "after the agent restart" "$LOGS/a" "$LOGS/b" "$LOGS/c"
assert_eq "DBSIZE after the agent restart is as before" "$DBSIZE1" "$(redis-cli -s "$SOCK" dbsize 2>/dev/null)"
redis_write d 500 4
kill -KILL "$REDIS_PID"
{ lb_wait_pid "$REDIS_PID" 10; } 2>/dev/null
redis_start "start redis after a second SIGKILL" || give_up
redis_check "after a second SIGKILL" "$LOGS/a" "$LOGS/b" "$LOGS/c" "$LOGS/d"
kill -TERM "$REDIS_PID"
lb_wait_pid "$REDIS_PID" 30
assert_exit "redis stops on SIGTERM with exit 0 (second run)" 0 "$LB_WAIT_RC"
lb_capture_down "lifeboatd stops on SIGTERM with exit 0 (second run)"
lb_info "took $(($(date +%s) - t0)) s"

lb_finish
