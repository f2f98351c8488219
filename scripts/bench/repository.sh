#!/usr/bin/env bash
# Repository benchmark: lifeboat vs restic vs borg on the same generated data.
#
#   scripts/bench/repository.sh [--markdown FILE]
#
# One run generates a database-shaped data dir (scripts/bench/gen_data.py), then for each
# tool: full backup, mutation of the data (once, shared by all tools), incremental backup,
# restore of the latest snapshot into an empty dir (verified byte for byte against the
# source with diff -r), and a check that reads all data. Each step is timed with
# /usr/bin/time (wall, user+sys CPU, peak RSS); the repository size is taken after each
# backup. The page cache is dropped before every step unless BENCH_WARM=1.
#
# Environment:
#   BENCH_DIR       where data, repositories and restores go (default /var/tmp/lifeboat-bench);
#                   the run uses a fresh subdirectory of it and removes it on exit
#   BENCH_SIZE      data size, e.g. 64M, 256M, 1G (default 1G)
#   BENCH_SEED      generator seed (default 1)
#   BENCH_WARM      1 = do not drop the page cache before each step (default 0: drop it)
#   BENCH_TOOLS     tools to run, in order (default "lifeboat restic borg")
#   BENCH_KEEP      1 = keep the run directory instead of removing it (debugging)
#   BENCH_ROUNDS    run the full backup (into a fresh repository each time), the restore and the
#                   check this many times, tools taking turns, and report the median of each
#                   figure (default 1); this VM's timings vary by ±20% from run to run
#   LIFEBOAT_BIN    lifeboat binary (default: .build/release/lifeboat of this checkout)
#   BENCH_BORG_COMPRESSION  borg --compression (default zstd,3)
#   BENCH_BORG_ENCRYPTION   borg init --encryption (default none; e.g. repokey)
#   LIFEBOAT_COMPRESSION_LEVEL is passed through to lifeboat untouched if set.
#
# Exit status: 0 when every step of every tool succeeded and every restore matched, even if
# goals are missed (they are informational); non-zero on any error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LB_SCRIPT=repository.sh
. "$SCRIPT_DIR/../lib/bench.sh"
bench_args "$@"
[[ $MARKDOWN == 0 || -n $MARKDOWN_FILE ]] || { echo "repository.sh: --markdown needs a FILE" >&2; exit 2; }
MARKDOWN=$MARKDOWN_FILE

BENCH_SIZE=${BENCH_SIZE:-1G}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_TOOLS=${BENCH_TOOLS:-lifeboat restic borg}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
[[ $BENCH_ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "repository.sh: BENCH_ROUNDS must be a whole number >= 1" >&2; exit 2; }
BORG_COMPRESSION=${BENCH_BORG_COMPRESSION:-zstd,3}
BORG_ENCRYPTION=${BENCH_BORG_ENCRYPTION:-none}
read -r -a TOOLS <<<"$BENCH_TOOLS"

has_tool() { local t; for t in "${TOOLS[@]}"; do [[ $t == "$1" ]] && return 0; done; return 1; }

for t in "${TOOLS[@]}"; do
    case "$t" in lifeboat|restic|borg) ;; *) die "unknown tool in BENCH_TOOLS: $t" ;; esac
done
[[ ${#TOOLS[@]} -gt 0 ]] || die "BENCH_TOOLS is empty"
[[ $BENCH_SEED =~ ^[0-9]+$ ]] || die "BENCH_SEED must be a non-negative integer"

# --- size -------------------------------------------------------------------------------
SIZE_BYTES=$(python3 -B -c 'import sys; sys.path.insert(0, sys.argv[1]); import gen_data; print(gen_data.parse_size(sys.argv[2]))' \
    "$SCRIPT_DIR" "$BENCH_SIZE" 2>/dev/null) || die "bad BENCH_SIZE: $BENCH_SIZE (use e.g. 64M, 1G)"

# --- tools: install what is missing (Debian packages only) ------------------------------
missing=()
[[ -x /usr/bin/time ]] || missing+=(time)
if has_tool restic && ! command -v restic >/dev/null; then missing+=(restic); fi
if has_tool borg && ! command -v borg >/dev/null; then missing+=(borgbackup); fi
if ((${#missing[@]})); then
    [[ $EUID -eq 0 ]] || die "missing packages (${missing[*]}); install them: apt-get install -y restic borgbackup time"
    log "installing missing packages: ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
if has_tool lifeboat; then
    [[ -x $LIFEBOAT_BIN ]] || die "lifeboat binary not found at $LIFEBOAT_BIN
  build it (swift build -c release), set LIFEBOAT_BIN, or leave it out: BENCH_TOOLS=\"restic borg\""
fi

cache_setup "before every step"

# --- work dir and cleanup ----------------------------------------------------------------
bench_workdir run
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    bench_remove_work
    if [[ $rc -ne 0 ]]; then log "FAILED (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_space $((SIZE_BYTES * 6))

DATA=$WORK/data
LOGS=$WORK/logs
RESULTS=$WORK/results.tsv
mkdir -p "$LOGS" "$WORK/home/cache" "$WORK/home/borg" "$WORK/restore"
: >"$RESULTS"

# Tool environments: every cache and config goes under $WORK so cleanup removes it.
export XDG_CACHE_HOME=$WORK/home/cache
export RESTIC_PASSWORD=lifeboat-bench
export RESTIC_CACHE_DIR=$WORK/home/cache/restic
export BORG_BASE_DIR=$WORK/home/borg
export BORG_PASSPHRASE=lifeboat-bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
unset RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE BORG_REPO LIFEBOAT_REPOSITORY LIFEBOAT_CRASH_AT

# --- header ------------------------------------------------------------------------------
tool_version() {
    case "$1" in
        lifeboat) local v; v=$("$LIFEBOAT_BIN" --version 2>/dev/null | head -n1) || true; echo "${v:-version unknown}" ;;
        restic) restic version | head -n1 ;;
        borg) borg --version | head -n1 ;;
    esac
}
{
    echo "== Lifeboat repository benchmark =="
    echo "command:   $CMDLINE"
    echo "env:       BENCH_DIR=$BENCH_DIR BENCH_SIZE=$BENCH_SIZE BENCH_SEED=$BENCH_SEED BENCH_WARM=$BENCH_WARM BENCH_ROUNDS=$BENCH_ROUNDS BENCH_TOOLS=\"${TOOLS[*]}\"${LIFEBOAT_COMPRESSION_LEVEL:+ LIFEBOAT_COMPRESSION_LEVEL=$LIFEBOAT_COMPRESSION_LEVEL}"
    echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "machine:   $(machine_line)"
    echo "storage:   $(storage_line "$WORK")"
    echo "cache:     $CACHE_MODE"
    for t in "${TOOLS[@]}"; do
        case "$t" in
            lifeboat) echo "lifeboat:  $LIFEBOAT_BIN ($(tool_version lifeboat)); repository defaults${LIFEBOAT_COMPRESSION_LEVEL:+, LIFEBOAT_COMPRESSION_LEVEL=$LIFEBOAT_COMPRESSION_LEVEL}" ;;
            restic) echo "restic:    $(tool_version restic); init --repository-version 2, compression auto (default), encrypted (always)" ;;
            borg) echo "borg:      $(tool_version borg); init --encryption=$BORG_ENCRYPTION, create --compression $BORG_COMPRESSION, default chunker" ;;
        esac
    done
} | tee "$WORK/header.txt"

# --- data --------------------------------------------------------------------------------

log "generating $BENCH_SIZE of data (seed $BENCH_SEED) in $DATA"
python3 "$SCRIPT_DIR/gen_data.py" "$DATA" --size "$BENCH_SIZE" --seed "$BENCH_SEED" 2>>"$LOGS/gen.log" \
    || { cat "$LOGS/gen.log" >&2; die "data generation failed"; }
BYTES_FULL=$(data_bytes "$DATA")
FILES_FULL=$(data_files "$DATA")
MARKER=base/16384/heap.dat   # gen_data.py's large file, used to find the root of a restore

# --- steps -------------------------------------------------------------------------------
# run_step STEP TOOL CMD...: drop caches, run CMD under /usr/bin/time, record the figures.
run_step() {
    local step=$1 tool=$2; shift 2
    local out="$LOGS/$step-$tool.log" tf="$LOGS/$step-$tool.time"
    drop_caches
    log "$step: $tool: $*"
    if ! /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$out" 2>&1; then
        echo "---- last lines of $tool $step output ----" >&2
        tail -n 40 "$out" >&2
        cat "$tf" >&2 2>/dev/null || true
        die "$tool $step failed: $*"
    fi
    local wall user sys rss
    read -r wall user sys rss < <(tail -n 1 "$tf")
    [[ -n ${rss:-} ]] || die "could not read /usr/bin/time output for $tool $step"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$step" "$tool" "$wall" "$user" "$sys" "$rss" "-" >>"$RESULTS"
    log "$step: $tool: ${wall}s wall, $(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')s CPU, $((rss / 1024)) MiB peak RSS"
}

# record_repo_size STEP TOOL: fill in the repository size of the last result of STEP/TOOL.
record_repo_size() {
    local step=$1 tool=$2 size
    size=$(du -sb "$WORK/repo-$tool" | cut -f1)
    awk -v FS='\t' -v OFS='\t' -v st="$step" -v t="$tool" -v sz="$size" \
        '$1 == st && $2 == t {$7 = sz} {print}' "$RESULTS" >"$RESULTS.new"
    mv "$RESULTS.new" "$RESULTS"
    log "$step: $tool: repository $((size >> 20)) MiB"
}

tool_init() {
    local tool=$1 repo="$WORK/repo-$1"
    case "$tool" in
        lifeboat) "$LIFEBOAT_BIN" init --repo "$repo" ;;
        restic) restic --repo "$repo" init --repository-version 2 ;;
        borg) borg init --encryption="$BORG_ENCRYPTION" "$repo" ;;
    esac >"$LOGS/init-$tool.log" 2>&1 || { tail -n 40 "$LOGS/init-$tool.log" >&2; die "$tool init failed"; }
}

tool_backup() {  # STEP TOOL
    local step=$1 tool=$2 repo="$WORK/repo-$2"
    case "$tool" in
        lifeboat) run_step "$step" "$tool" "$LIFEBOAT_BIN" backup --repo "$repo" "$DATA" ;;
        restic) run_step "$step" "$tool" restic --repo "$repo" backup "$DATA" ;;
        borg) run_step "$step" "$tool" borg create --compression "$BORG_COMPRESSION" "$repo::$step" "$DATA" ;;
    esac
    record_repo_size "$step" "$tool"
}

tool_restore() {  # TOOL TARGET
    local tool=$1 target=$2 repo="$WORK/repo-$1"
    case "$tool" in
        lifeboat) run_step restore "$tool" "$LIFEBOAT_BIN" restore --repo "$repo" latest --target "$target" ;;
        restic) run_step restore "$tool" restic --repo "$repo" restore latest --target "$target" ;;
        borg) run_step restore "$tool" env -C "$target" borg extract "$repo::incr" ;;
    esac
}

tool_check() {
    local tool=$1 repo="$WORK/repo-$1"
    case "$tool" in
        lifeboat) run_step check "$tool" "$LIFEBOAT_BIN" check --repo "$repo" --read-data ;;
        restic) run_step check "$tool" restic --repo "$repo" check --read-data ;;
        borg) run_step check "$tool" borg check --verify-data "$repo" ;;
    esac
}

# The restored tree is at TARGET (lifeboat), TARGET/<absolute source path> (restic) or
# TARGET/<source path without leading /> (borg): find it by the large file.
restored_root() {
    local target=$1 c
    for c in "$target" "$target$DATA" "$target/${DATA##*/}"; do
        if [[ -f $c/$MARKER ]]; then echo "$c"; return 0; fi
    done
    return 1
}

verify_restore() {  # TOOL TARGET
    local tool=$1 target=$2 root
    root=$(restored_root "$target") || {
        find "$target" -maxdepth 4 | head -n 20 >&2
        die "RESTORE MISMATCH: $tool: restored tree has no $MARKER under $target"
    }
    if ! diff -r --no-dereference -q "$DATA" "$root" >"$LOGS/verify-$tool.log" 2>&1; then
        head -n 20 "$LOGS/verify-$tool.log" >&2
        die "RESTORE MISMATCH: $tool's restore differs from the source ($(wc -l <"$LOGS/verify-$tool.log") differences)"
    fi
    local n
    n=$(find "$root" -type f | wc -l)
    [[ $n -eq $(data_files "$DATA") ]] || die "RESTORE MISMATCH: $tool restored $n files, source has $(data_files "$DATA")"
    log "restore: $tool: verified byte for byte ($n files)"
}

for round in $(seq "$BENCH_ROUNDS"); do
    for t in "${TOOLS[@]}"; do
        rm -rf -- "$WORK/repo-$t"
        tool_init "$t"
        tool_backup full "$t"
    done
done

log "mutating the data (seed $BENCH_SEED)"
python3 "$SCRIPT_DIR/gen_data.py" "$DATA" --mutate --seed "$BENCH_SEED" 2>>"$LOGS/gen.log" \
    || { cat "$LOGS/gen.log" >&2; die "data mutation failed"; }
BYTES_INCR=$(data_bytes "$DATA")
FILES_INCR=$(data_files "$DATA")

for t in "${TOOLS[@]}"; do tool_backup incr "$t"; done
for round in $(seq "$BENCH_ROUNDS"); do
    for t in "${TOOLS[@]}"; do
        target="$WORK/restore/$t"
        mkdir -p "$target"
        tool_restore "$t" "$target"
        verify_restore "$t" "$target"
        rm -rf -- "$target"
    done
done
for round in $(seq "$BENCH_ROUNDS"); do
    for t in "${TOOLS[@]}"; do tool_check "$t"; done
done

# --- report ------------------------------------------------------------------------------
echo
sed -n '/^gen_data/p' "$LOGS/gen.log"
echo "data:      full: $BYTES_FULL bytes in $FILES_FULL files; after mutation: $BYTES_INCR bytes in $FILES_INCR files"
python3 - "$RESULTS" "$BYTES_FULL" "$BYTES_INCR" "${MARKDOWN:-}" "$WORK/header.txt" "$LB_LIB_DIR" <<'PY'
import sys
sys.path.insert(0, sys.argv[6])
from report import text_table, md_table

results, bytes_full, bytes_incr, markdown, header = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
STEPS = [("full", "full backup"), ("incr", "incremental"), ("restore", "restore"), ("check", "check (read all)")]
runs = {}
tools = []
for line in open(results):
    step, tool, wall, user, sys_, rss, repo = line.rstrip("\n").split("\t")
    runs.setdefault((step, tool), []).append(dict(wall=float(wall), cpu=float(user) + float(sys_), rss=int(rss) / 1024,
                                                  repo=None if repo == "-" else int(repo) / 2**20))
    if tool not in tools:
        tools.append(tool)

def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

# With BENCH_ROUNDS > 1 each figure is the median over the rounds; the repository size is the last one.
rows = {key: dict(wall=median([r["wall"] for r in rs]), cpu=median([r["cpu"] for r in rs]),
                  rss=median([r["rss"] for r in rs]), repo=rs[-1]["repo"])
        for key, rs in runs.items()}

def data_bytes(step):
    return bytes_full if step == "full" else bytes_incr

def mbps(step, tool):
    r = rows[(step, tool)]
    return data_bytes(step) / 1e6 / max(r["wall"], 0.01)

def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)

tables = []  # (title, header, rows) rendered as text and markdown

main = []
for step, name in STEPS:
    for tool in tools:
        r = rows.get((step, tool))
        if r is None:
            continue
        main.append([name, tool, f"{r['wall']:.2f}", f"{mbps(step, tool):.1f}", f"{r['cpu']:.2f}",
                     f"{r['rss']:.1f}", fmt(r["repo"])])
rounds = max(len(rs) for rs in runs.values())
tables.append((("Results, median of %d rounds " % rounds if rounds > 1 else "Results ")
               + "(MB/s = data dir bytes / wall, 1 MB = 10^6 bytes; RSS and repo in MiB)",
               ["step", "tool", "wall s", "MB/s", "CPU s", "peak RSS MiB", "repo MiB"], main))

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b

others = [t for t in ("restic", "borg") if t in tools]
goals = []
if "lifeboat" in tools and others:
    rat = []
    for step, name in STEPS:
        row = [name]
        for o in others:
            row.append(fmt(ratio(mbps(step, "lifeboat"), mbps(step, o)), ".2f"))
        for o in others:
            row.append(fmt(ratio(rows[(step, "lifeboat")]["rss"], rows[(step, o)]["rss"]), ".2f"))
        for o in others:
            row.append(fmt(ratio(rows[(step, "lifeboat")]["repo"], rows[(step, o)]["repo"]), ".2f"))
        rat.append(row)
    hdr = (["step"] + [f"throughput L/{o}" for o in others] + [f"RSS L/{o}" for o in others]
           + [f"repo L/{o}" for o in others])
    tables.append(("Ratios Lifeboat/other (throughput: higher is better; RSS, repo size: lower is better)",
                   hdr, rat))

if "lifeboat" in tools and "restic" in tools:
    def thr_goal(step, name, target):
        v = ratio(mbps(step, "lifeboat"), mbps(step, "restic"))
        return [f"{name} throughput >= {target}x restic", f"{v:.2f}x", "PASS" if v >= target else "MISS"]
    goals.append(thr_goal("full", "full backup", 3.0))
    goals.append(thr_goal("restore", "restore", 3.0))
    goals.append(thr_goal("incr", "incremental backup", 1.5))
    peak = {t: max(r["rss"] for (s, tt), r in rows.items() if tt == t) for t in ("lifeboat", "restic")}
    goals.append(["peak RSS (max over all steps) <= restic's",
                  f"{peak['lifeboat']:.2f} vs {peak['restic']:.2f} MiB",
                  "PASS" if peak["lifeboat"] <= peak["restic"] else "MISS"])
    rl, rr = rows[("incr", "lifeboat")]["repo"], rows[("incr", "restic")]["repo"]
    goals.append(["repo size after incremental <= restic's", f"{rl:.2f} vs {rr:.2f} MiB",
                  "PASS" if rl <= rr else "MISS"])
    tables.append(("Goals vs restic (informational)", ["goal", "measured", "result"], goals))
else:
    tables.append(("Goals vs restic (informational)", ["goal", "measured", "result"],
                   [["(need both lifeboat and restic in BENCH_TOOLS)", "-", "n/a"]]))

for title, hdr, body in tables:
    print(f"\n{title}\n")
    print(text_table(hdr, body))

if markdown:
    with open(markdown, "a") as f:
        f.write("\n## Lifeboat repository benchmark\n\n```\n" + open(header).read() + "```\n")
        f.write(f"\nData: {bytes_full} bytes (full), {bytes_incr} bytes after mutation.\n")
        for title, hdr, body in tables:
            f.write(f"\n### {title}\n\n" + md_table(hdr, body) + "\n")
    print(f"\n(markdown appended to {markdown})")
PY
