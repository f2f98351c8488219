#!/usr/bin/env bash
# The main job on one machine: a data dir shaped like a database's, a repository in a local
# volume dir, a full backup, 1% of the data changed, an incremental backup, both snapshots
# restored and verified byte for byte, and a summary.
#
#   scripts/demo.sh [--size 256M] [--keep]
#
# Everything goes under ./lifeboat-demo (removed at the end unless --keep).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=256M
keep=0
while (($#)); do
    case "$1" in
        --size) size=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

scripts/setup.sh
bin=$PWD/.build/release/lifeboat
work=$PWD/lifeboat-demo
rm -rf "$work"
mkdir -p "$work/volume"
cleanup() { [[ $keep == 1 ]] || rm -rf "$work"; }
trap cleanup EXIT

now() { date +%s.%N; }
seconds() { printf '%.2f' "$(echo "$2 - $1" | bc -l 2>/dev/null || python3 -c "print($2 - $1)")"; }
mib() { python3 -c "print(f'{$1/1048576:.1f}')"; }

echo "== generating a $size data dir shaped like a database's"
python3 scripts/bench/gen_data.py "$work/data" --size "$size" --seed 1 >&2
data_bytes=$(du -sb "$work/data" | cut -f1)

repo=$work/volume/repo
"$bin" init --repo "$repo"

echo "== full backup"
t0=$(now)
first=$("$bin" backup --repo "$repo" --workload demo "$work/data" | tail -n 1)
t1=$(now)
repo_after_first=$(du -sb "$repo" | cut -f1)
cp -a "$work/data" "$work/data-at-first"

echo "== changing 1% of the pages and files"
python3 scripts/bench/gen_data.py "$work/data" --mutate --seed 2 >&2

echo "== incremental backup"
t2=$(now)
second=$("$bin" backup --repo "$repo" --workload demo "$work/data" | tail -n 1)
t3=$(now)
repo_after_second=$(du -sb "$repo" | cut -f1)

echo "== restoring both snapshots and verifying them"
t4=$(now)
"$bin" restore --repo "$repo" "$first" --target "$work/restore-first"
t5=$(now)
"$bin" restore --repo "$repo" "$second" --target "$work/restore-second"
verify() {
    local source=$1 restored=$2
    diff -r --no-dereference "$source" "$restored" >/dev/null || { echo "demo: $restored differs from $source" >&2; exit 1; }
    [[ $("$bin" digest "$source" | cut -d' ' -f1) == $("$bin" digest "$restored" | cut -d' ' -f1) ]] ||
        { echo "demo: metadata of $restored differs from $source" >&2; exit 1; }
}
verify "$work/data-at-first" "$work/restore-first"
verify "$work/data" "$work/restore-second"
"$bin" check --repo "$repo" --read-data >/dev/null
"$bin" snapshots --repo "$repo"

added=$((repo_after_second - repo_after_first))
echo
echo "== summary"
echo "data dir:            $(mib "$data_bytes") MiB"
echo "full backup:         $(seconds "$t0" "$t1") s, repository $(mib "$repo_after_first") MiB (compression $(python3 -c "print(f'{$data_bytes/$repo_after_first:.2f}')")x)"
echo "incremental backup:  $(seconds "$t2" "$t3") s, added $(mib "$added") MiB for a 1% change (dedup kept $(python3 -c "print(f'{100*(1-$added/$repo_after_first):.1f}')")% of the data from the first snapshot)"
echo "restore (full):      $(seconds "$t4" "$t5") s"
echo "verified:            both snapshots restore byte for byte with equal metadata; check --read-data passed"
echo "snapshots:           ${first:0:8} ${second:0:8}"
