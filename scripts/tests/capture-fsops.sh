#!/usr/bin/env bash
# capture-fsops.sh: a captured data dir (lifeboatd's FUSE passthrough mount) behaves like a plain
# directory. fsops.py runs the same seeded random file operations (open flags incl. O_DIRECT,
# reads/writes with holes, copy_file_range, truncate, fallocate and hole punching, mmap writes, rename and
# renameat2 NOREPLACE/EXCHANGE, hard and symbolic links, unlinking open files, mkdir/rmdir,
# chmod/chown/utime, user xattrs, flock/POSIX/OFD locks, fsync, 2000-entry directories) in the
# mount and in a plain dir, and compares every outcome and the trees (content, modes, owners,
# link counts, xattrs, hard links, explicitly set mtimes). Then the backing dir must hold the
# same tree as the mount, and, after the agent stops, the same tree as the plain dir.
#
# Settings: FSOPS_SEEDS (fixed seeds, default "1 2 3"), FSOPS_OPS (ops per seed, default 1500),
# FSOPS_SEED (the extra random seed; default: a new one each run, printed), FSOPS_TIMEOUT
# (seconds one fsops.py run may take, default 600), FSOPS_PY (the tester, default fsops.py here).
# Replay a failure: python3 scripts/tests/fsops.py --seed S --ops N MOUNT_SUBDIR PLAIN_SUBDIR
# on two new empty directories.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FSOPS_SEEDS="${FSOPS_SEEDS-1 2 3}"
FSOPS_OPS="${FSOPS_OPS:-1500}"
FSOPS_SEED="${FSOPS_SEED:-$((RANDOM * 32768 + RANDOM))}"
FSOPS_TIMEOUT="${FSOPS_TIMEOUT:-600}"
FSOPS_PY="${FSOPS_PY:-$LB_TESTS_DIR/fsops.py}"

lb_setup

lb_need_agent

t0=$(date +%s)
lb_capture_up fsops
PLAIN="$LB_TMP/plain"
mkdir -p "$PLAIN"
chmod 755 "$PLAIN"

# run_fsops SEED SUBDIR: fsops.py on new empty dirs SUBDIR of the mount and of the plain dir
run_fsops() {
    local seed=$1 sub=$2 out="$LB_TMP/fsops-$2.out" rc start
    if ! mkdir -m 755 "$LB_CAP_DATA/$sub" "$PLAIN/$sub"; then
        fail "fsops.py --seed $seed: setup" "new dirs $sub in the mount and the plain dir" "mkdir failed"
        return
    fi
    start=$(date +%s)
    timeout -k 10 "$FSOPS_TIMEOUT" python3 "$FSOPS_PY" --seed "$seed" --ops "$FSOPS_OPS" \
        "$LB_CAP_DATA/$sub" "$PLAIN/$sub" >"$out" 2>&1 </dev/null
    rc=$?
    if [ "$rc" -eq 0 ]; then
        pass
        lb_info "$(tail -n 1 "$out") in $(($(date +%s) - start)) s"
    else
        local line
        line="$(grep -m 1 '^MISMATCH' "$out")"
        [ -n "$line" ] || line="exit $rc: $(tail -n 3 "$out")"
        [ "$rc" -eq 124 ] && line="timed out after $FSOPS_TIMEOUT s (hung?); last output: $(tail -n 2 "$out")"
        fail "fsops.py --seed $seed --ops $FSOPS_OPS: mount and plain dir behave alike" "exit 0" "$line"
        sed -n '2,$p' "$out" | grep -v '^MISMATCH' | sed 's/^/#   /' | head -n 30
    fi
}

for seed in $FSOPS_SEEDS; do
    run_fsops "$seed" "s$seed"
done
lb_info "random seed $FSOPS_SEED (replay with FSOPS_SEED=$FSOPS_SEED FSOPS_SEEDS= bash $0)"
run_fsops "$FSOPS_SEED" "r$FSOPS_SEED"
lb_info "fsops runs took $(($(date +%s) - t0)) s"

# the backing dir has the tree the mount shows (names, types, contents, symlink targets)
if diff -r --no-dereference "$LB_CAP_BACKING" "$LB_CAP_DATA" >"$LB_TMP/diff-backing.out" 2>&1; then
    pass
else
    fail "diff -r --no-dereference backing dir and mount" "no differences" "$(head -n 5 "$LB_TMP/diff-backing.out")"
fi

lb_capture_down "lifeboatd stops on SIGTERM with exit 0" "after the agent stops, the data dir is no longer a mountpoint"

# what the operations left in the backing dir is what they left in the plain dir
if diff -r --no-dereference "$PLAIN" "$LB_CAP_BACKING" >"$LB_TMP/diff-plain.out" 2>&1; then
    pass
else
    fail "diff -r --no-dereference plain dir and backing dir (agent stopped)" "no differences" \
        "$(head -n 5 "$LB_TMP/diff-plain.out")"
fi
lb_info "took $(($(date +%s) - t0)) s"

lb_finish
