#!/usr/bin/env bash
# digest.sh: `lifeboat digest` sees what it promises (cli.md: names, types, contents, modes,
# owners, mtimes, symlink targets, hard links, xattrs), since the other scripts rely on it.
# A faithful copy (cp -a, elsewhere, read again) has the same digest; each single change of
# one of those properties gives a different digest.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_setup
BASE="$LB_TMP/base"
make_tree "$BASE" 4 2
D0="$(lb_digest "$BASE")"
assert_match "digest of a tree is a SHA-256 hex string" '^[0-9a-f]{64}$' "$D0"

cp -a "$BASE" "$LB_TMP/copy"
assert_eq "cp -a copy elsewhere: same digest" "$D0" "$(lb_digest "$LB_TMP/copy")"
cat "$BASE/hello.txt" >/dev/null # atime only
assert_eq "reading a file (atime): same digest" "$D0" "$(lb_digest "$BASE")"

n=0
# changed DESCRIPTION COMMAND... : COMMAND runs in a fresh cp -a copy (as $C); digest must differ
changed() {
    local what=$1
    shift
    n=$((n + 1))
    C="$LB_TMP/changed-$n"
    cp -a "$BASE" "$C"
    # the commands put back parent-directory mtimes they touch, so only the named change counts
    (cd "$C" && eval "$*") || { fail "$what: setup" "the change to apply" "command failed: $*"; return; }
    local d
    d="$(lb_digest "$C")"
    if [ -n "$d" ] && [ "$d" != "$D0" ]; then pass; else fail "$what" "a different digest than $D0" "'$d'"; fi
    rm -rf "$C"
}

changed "one byte of content" 'printf X | dd of=sub/random-1m.bin bs=1 seek=1000 conv=notrunc status=none; touch -r ../base/sub/random-1m.bin sub/random-1m.bin'
changed "file mode" 'chmod 640 hello.txt'
changed "file owner" 'chown 4242 hello.txt'
changed "file group" 'chgrp 4242 hello.txt'
changed "file mtime" 'touch -d "2015-01-01 00:00:00" hello.txt'
changed "directory mtime" 'touch -d "2015-01-01 00:00:00" sub/deeper'
changed "directory mode" 'chmod 750 sub/deeper'
changed "xattr value" 'setfattr -n user.lifeboat.test -v other hello.txt'
changed "xattr added" 'setfattr -n user.another -v 1 sub/run.sh'
changed "symlink target" 'ln -sfn sub/run.sh symlink-relative; touch -h -r ../base/symlink-relative symlink-relative; touch -r ../base .'
changed "file renamed" 'mv empty-file empty-file2; touch -r ../base .'
changed "empty file added" ': > sub/new-empty; touch -r ../base/sub sub'
changed "empty dir added" 'mkdir empty-dir/inner; touch -r ../base/empty-dir empty-dir'
changed "hard link broken (same content)" 'cp -p sub/random-1m.bin tmp && mv tmp hardlink-to-random-1m; touch -r ../base .'
changed "file turned into a symlink" 'rm empty-file && ln -s hello.txt empty-file; touch -r ../base .'
changed "size (truncate, same mtime)" 'truncate -s 100 sub/compressible.txt; touch -r ../base/sub/compressible.txt sub/compressible.txt'

lb_finish
