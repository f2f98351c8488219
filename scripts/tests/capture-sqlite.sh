#!/usr/bin/env bash
# capture-sqlite.sh: SQLite databases live in a captured data dir (lifeboatd's FUSE mount).
# Random transactions (inserts, updates, deletes, deliberate rollbacks, blobs big enough for
# overflow pages) run on a WAL database (two writer processes at once: file locks and the
# mmap'ed -shm file) and, meanwhile, on a rollback-journal database. Through the mount:
# integrity_check is ok and the rows are exactly those the writers committed. After the agent
# stops: the backing dir holds the same bytes, and the databases opened there (read-only) give
# the same content. After the agent restarts: same again, and more transactions still work.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_setup

lb_need_agent copy

# ---------------------------------------------------------------- helpers (python)

# workload.py DB MODE SEED TXNS WRITER NWRITERS MODEL_OUT
# Random transactions on table t(id, val, note, data). This writer owns the rows with
# id % NWRITERS == WRITER: it starts from those already in the database, keeps a model of what
# it committed (rolled-back transactions leave it unchanged) and writes it to MODEL_OUT.
cat >"$LB_TMP/workload.py" <<'EOF'
import hashlib, json, os, random, sqlite3, sys
db, mode, seed, txns, writer, nwriters, model_out = sys.argv[1:8]
seed, txns, writer, nwriters = int(seed), int(txns), int(writer), int(nwriters)
rnd = random.Random(seed)
con = sqlite3.connect(db, timeout=60, isolation_level=None)
con.execute("PRAGMA busy_timeout = 60000")
got = con.execute("PRAGMA journal_mode = %s" % mode).fetchone()[0]
if got.lower() != mode.lower():
    sys.exit("journal_mode %s requested, got %s" % (mode, got))
con.execute("PRAGMA synchronous = FULL")
con.execute("""CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, val INTEGER NOT NULL,
               note TEXT, data BLOB)""")
con.execute("CREATE INDEX IF NOT EXISTS t_val ON t(val)")
con.execute("CREATE INDEX IF NOT EXISTS t_note ON t(note)")
def digest(b):
    return hashlib.sha256(b or b"").hexdigest()
model = {}  # id -> [val, note, sha256 of data]
for (i, val, note, data) in con.execute("SELECT id, val, note, data FROM t WHERE id % ? = ?",
                                         (nwriters, writer)):
    model[i] = [val, note, digest(data)]
next_id = max(list(model) + [writer]) + nwriters
ops = commits = 0
for n in range(txns):
    view = dict(model)
    con.execute("BEGIN IMMEDIATE")
    for _ in range(rnd.randint(3, 25)):
        r = rnd.random()
        if r < 0.5 or not view:
            i = next_id
            next_id += nwriters
            data = os.urandom(rnd.choice([0, 10, 100, 1000, 5000, 20000]))
            row = [rnd.randint(-10**9, 10**9), "note-%d-%d" % (i, rnd.randint(0, 99)), digest(data)]
            con.execute("INSERT INTO t (id, val, note, data) VALUES (?, ?, ?, ?)", (i, row[0], row[1], data))
            view[i] = row
        elif r < 0.85:
            i = rnd.choice(list(view))
            val, note = view[i][0] + rnd.randint(1, 1000), view[i][1] + "+"
            if rnd.random() < 0.3:
                data = os.urandom(rnd.choice([0, 50, 3000, 9000]))
                con.execute("UPDATE t SET val = ?, note = ?, data = ? WHERE id = ?", (val, note, data, i))
                view[i] = [val, note, digest(data)]
            else:
                con.execute("UPDATE t SET val = ?, note = ? WHERE id = ?", (val, note, i))
                view[i] = [val, note, view[i][2]]
        else:
            i = rnd.choice(list(view))
            con.execute("DELETE FROM t WHERE id = ?", (i,))
            del view[i]
        ops += 1
    if rnd.random() < 0.1:
        con.execute("ROLLBACK")
    else:
        con.execute("COMMIT")
        model = view
        commits += 1
con.close()
with open(model_out, "w") as f:
    json.dump({str(k): v for k, v in model.items()}, f)
print("writer %d: %d transactions (%d committed), %d operations, %d rows" % (writer, txns, commits, ops, len(model)))
EOF

# check.py DB [MODEL...]: prints "integrity=<result> rows=<n> content=<sha256>" and, given
# models, " model=match" or " model=differs(...)". Opens the database read-only.
cat >"$LB_TMP/check.py" <<'EOF'
import hashlib, json, sqlite3, sys
db, models = sys.argv[1], sys.argv[2:]
con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=60)
integrity = "|".join(r[0] for r in con.execute("PRAGMA integrity_check"))
h = hashlib.sha256()
for (name, sql) in con.execute("SELECT name, sql FROM sqlite_master ORDER BY type, name"):
    h.update(repr((name, sql)).encode())
rows = {}
for (i, val, note, data) in con.execute("SELECT id, val, note, data FROM t ORDER BY id"):
    rows[i] = [val, note, hashlib.sha256(data or b"").hexdigest()]
    h.update(repr((i, val, note, data)).encode())
con.close()
out = "integrity=%s rows=%d content=%s" % (integrity, len(rows), h.hexdigest())
if models:
    want = {}
    for m in models:
        with open(m) as f:
            want.update({int(k): v for k, v in json.load(f).items()})
    if want == rows:
        out += " model=match"
    else:
        missing = sorted(set(want) - set(rows))[:5]
        extra = sorted(set(rows) - set(want))[:5]
        changed = sorted(k for k in set(want) & set(rows) if want[k] != rows[k])[:5]
        out += " model=differs(missing ids %s, unexpected ids %s, changed ids %s)" % (missing, extra, changed)
print(out)
EOF

M="$LB_TMP/models"
mkdir -p "$M"

# workload TAG DB MODE SEED TXNS WRITER NWRITERS: runs workload.py in the background, sets WPID
workload() {
    local tag=$1
    shift
    python3 "$LB_TMP/workload.py" "$@" "$M/$tag.json" >"$LB_TMP/$tag.out" 2>&1 &
    WPID=$!
    lb_track_first "$WPID"
}

# wait_workload TAG PID WHAT
wait_workload() {
    lb_wait_pid "$2" 120
    assert_exit "$3 (writer $1)" 0 "$LB_WAIT_RC" "$LB_TMP/$1.out"
    lb_info "$(tr '\n' ' ' <"$LB_TMP/$1.out" 2>/dev/null)"
}

# check NAME DB [MODEL...]: asserts integrity ok (and the rows of the models); output in CHECK_OUT
check() {
    local name=$1 db=$2
    shift 2
    CHECK_OUT="$(python3 "$LB_TMP/check.py" "$db" "$@" 2>&1)"
    assert_match "$name: PRAGMA integrity_check of $db is ok" '^integrity=ok ' "$CHECK_OUT"
    if [ "$#" -gt 0 ]; then
        assert_match "$name: $db holds exactly the rows its writers committed" ' model=match$' "$CHECK_OUT"
    fi
}

content_of() { printf '%s' "$1" | grep -oE 'rows=[0-9]+ content=[0-9a-f]+'; }

# ---------------------------------------------------------------- in the mount

t0=$(date +%s)
lb_capture_up sqlite
mkdir -p "$LB_CAP_DATA/db"
WAL_DB="$LB_CAP_DATA/db/wal.db"
DEL_DB="$LB_CAP_DATA/db/journal.db"

# the WAL database is created by one writer first, then two write at once
workload wal-a "$WAL_DB" wal 1 5 0 2
wait_workload wal-a "$WPID" "create a WAL database in the mount"
workload wal-b "$WAL_DB" wal 11 150 0 2
wb=$WPID
workload wal-c "$WAL_DB" wal 12 150 1 2
wc=$WPID
workload del-a "$DEL_DB" delete 21 200 0 1
wd=$WPID
wait_workload wal-b "$wb" "concurrent transactions on the WAL database in the mount"
wait_workload wal-c "$wc" "concurrent transactions on the WAL database in the mount"
wait_workload del-a "$wd" "transactions on the rollback-journal database in the mount"
lb_info "workload took $(($(date +%s) - t0)) s"

check "in the mount" "$WAL_DB" "$M/wal-b.json" "$M/wal-c.json"
WAL_CONTENT="$(content_of "$CHECK_OUT")"
check "in the mount" "$DEL_DB" "$M/del-a.json"
DEL_CONTENT="$(content_of "$CHECK_OUT")"
lb_info "wal.db: $WAL_CONTENT; journal.db: $DEL_CONTENT"
MOUNT_SUMS="$(lb_file_sums "$LB_CAP_DATA/db")"

# ---------------------------------------------------------------- agent stopped: the backing dir

lb_capture_down "lifeboatd stops on SIGTERM with exit 0" "after the agent stops, the data dir is no longer a mountpoint"
assert_eq "backing dir holds the same files and bytes as the mount showed" "$MOUNT_SUMS" \
    "$(lb_file_sums "$LB_CAP_BACKING/db")"
check "in the backing dir" "$LB_CAP_BACKING/db/wal.db"
assert_eq "wal.db opened in the backing dir: same content as in the mount" "$WAL_CONTENT" "$(content_of "$CHECK_OUT")"
check "in the backing dir" "$LB_CAP_BACKING/db/journal.db"
assert_eq "journal.db opened in the backing dir: same content as in the mount" "$DEL_CONTENT" "$(content_of "$CHECK_OUT")"
assert_eq "reading the databases read-only left the backing dir unchanged" "$MOUNT_SUMS" \
    "$(lb_file_sums "$LB_CAP_BACKING/db")"

# ---------------------------------------------------------------- agent restarted

lb_capture_up sqlite "restart lifeboatd" "the data dir mounted again within 30 s"
assert_eq "after the restart, the mount shows the same files and bytes" "$MOUNT_SUMS" "$(lb_file_sums "$LB_CAP_DATA/db")"
check "after the agent restart" "$WAL_DB" "$M/wal-b.json" "$M/wal-c.json"
assert_eq "wal.db after the agent restart: same content" "$WAL_CONTENT" "$(content_of "$CHECK_OUT")"
check "after the agent restart" "$DEL_DB" "$M/del-a.json"
assert_eq "journal.db after the agent restart: same content" "$DEL_CONTENT" "$(content_of "$CHECK_OUT")"

# more transactions after the restart
workload wal-d "$WAL_DB" wal 31 40 0 2
wd1=$WPID
workload wal-e "$WAL_DB" wal 32 40 1 2
we1=$WPID
workload del-b "$DEL_DB" delete 41 60 0 1
wdb=$WPID
wait_workload wal-d "$wd1" "transactions on the WAL database after the agent restart"
wait_workload wal-e "$we1" "transactions on the WAL database after the agent restart"
wait_workload del-b "$wdb" "transactions on the rollback-journal database after the agent restart"
check "after more transactions" "$WAL_DB" "$M/wal-d.json" "$M/wal-e.json"
WAL_CONTENT="$(content_of "$CHECK_OUT")"
check "after more transactions" "$DEL_DB" "$M/del-b.json"
DEL_CONTENT="$(content_of "$CHECK_OUT")"
MOUNT_SUMS="$(lb_file_sums "$LB_CAP_DATA/db")"

lb_capture_down "lifeboatd stops on SIGTERM with exit 0 (second run)"
assert_eq "backing dir holds the same bytes as the mount showed (second run)" "$MOUNT_SUMS" \
    "$(lb_file_sums "$LB_CAP_BACKING/db")"
check "in the backing dir (second run)" "$LB_CAP_BACKING/db/wal.db"
assert_eq "wal.db in the backing dir (second run): same content as in the mount" "$WAL_CONTENT" "$(content_of "$CHECK_OUT")"
check "in the backing dir (second run)" "$LB_CAP_BACKING/db/journal.db"
assert_eq "journal.db in the backing dir (second run): same content as in the mount" "$DEL_CONTENT" "$(content_of "$CHECK_OUT")"
lb_info "took $(($(date +%s) - t0)) s"

lb_finish
