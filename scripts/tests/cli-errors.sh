#!/usr/bin/env bash
# cli-errors.sh: bad input gives the documented exit code, one stderr line that names the
# thing and says what to do, nothing on stdout, and no change to the repository (or target).
# Also: a backup with unreadable source files exits 3, names them, and commits the rest.
# The unreadable-file case runs lifeboat as user nobody (setpriv), so it needs root.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_setup
OUT="$LB_TMP/out"
ERR="$LB_TMP/err"
REPO="$LB_TMP/repo"
SRC="$LB_TMP/src"
# words a message uses when it says what to do
HINT_RE='use |run |pass |give |set |create|choose|pick|remove|delete|empty|specify|check|try|restore|point|list|see |make|free|wait|ask|add |upgrade|--'

# state_of PATH: a listing that changes when anything below PATH changes. The mtime of a
# repository's locks/ directory is left out: read commands take and release a shared lock,
# which changes it; a lock file left behind still shows.
state_of() {
    if [ -d "$1" ]; then
        (cd "$1" && find . ! -path ./locks -printf '%P %y %s %m %T@\n' | LC_ALL=C sort)
    elif [ -e "$1" ] || [ -L "$1" ]; then
        stat -c '%F %s %a %Y' "$1"
    else
        echo absent
    fi
}

# bad NAME CODES NAMED WATCH [ENV=VALUE...] -- ARGS...
#   CODES: expected exit code(s), e.g. 2 or "2|10"; NAMED: a literal stderr must contain
#   (empty: no check); WATCH: a path that must not change.
bad() {
    local name=$1 codes=$2 named=$3 watch=$4
    shift 4
    local before after
    before="$(state_of "$watch")"
    lb_env "$OUT" "$ERR" "$@"  # the rest is [ENV=VALUE...] -- ARGS..., as lb_env takes it
    assert_exit "$name" "$codes" "$LB_RC" "$ERR"
    assert_one_line "$name: stderr" "$ERR"
    if [ -n "$named" ]; then
        if grep -Fq -- "$named" "$ERR"; then pass; else fail "$name: stderr names '$named'" "'$named' in stderr" "$(lb_head "$ERR")"; fi
    fi
    assert_file_match "$name: stderr says what to do" "$HINT_RE" "$ERR"
    if [ -s "$OUT" ]; then fail "$name: stdout" "nothing on stdout" "$(lb_head "$OUT")"; else pass; fi
    after="$(state_of "$watch")"
    if [ "$before" == "$after" ]; then pass; else
        fail "$name: $watch unchanged" "no change" "$(diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep '^[<>]' | head -n 4)"
    fi
}

# ---------------------------------------------------------------- a valid repository
make_tree "$SRC" 2 2
lb_ok "init" init --repo "$REPO"
[ "$LB_RC" -eq 0 ] || lb_finish
lb_ok "backup 1" backup --repo "$REPO" "$SRC"
ID1="$(lb_last_line "$OUT")"
printf 'changed\n' >>"$SRC/hello.txt"
lb_ok "backup 2" backup --repo "$REPO" "$SRC"
ID2="$(lb_last_line "$OUT")"

# positive controls: the env variable, `latest` and an 8-digit prefix work
lb_env "$OUT" "$ERR" "LIFEBOAT_REPOSITORY=$REPO" -- snapshots
assert_exit "snapshots with LIFEBOAT_REPOSITORY" 0 "$LB_RC" "$ERR"
lb_ok "ls latest" ls --repo "$REPO" latest
lb_ok "ls with an 8-digit prefix" ls --repo "$REPO" "${ID1:0:8}"

# ---------------------------------------------------------------- repository missing / wrong (10)
bad "snapshots without --repo or LIFEBOAT_REPOSITORY" 10 "--repo" "$REPO" -- snapshots
bad "backup without --repo or LIFEBOAT_REPOSITORY" 10 "--repo" "$REPO" -- backup "$SRC"
bad "check without --repo or LIFEBOAT_REPOSITORY" 10 "--repo" "$REPO" -- check

EMPTY="$LB_TMP/empty-dir"
mkdir -p "$EMPTY"
bad "snapshots --repo <empty dir>" 10 "$EMPTY" "$EMPTY" -- snapshots --repo "$EMPTY"
bad "backup --repo <empty dir>" 10 "$EMPTY" "$EMPTY" -- backup --repo "$EMPTY" "$SRC"
NOTREPO="$LB_TMP/not-a-repo"
mkdir -p "$NOTREPO/data"
printf 'x\n' >"$NOTREPO/somefile"
bad "check --repo <dir with other files>" 10 "$NOTREPO" "$NOTREPO" -- check --repo "$NOTREPO"
bad "restore --repo <dir with other files>" 10 "$NOTREPO" "$NOTREPO" -- restore --repo "$NOTREPO" latest --target "$LB_TMP/t-notrepo"
if [ -e "$LB_TMP/t-notrepo" ]; then fail "restore from a non-repository" "no target created" "$LB_TMP/t-notrepo exists"; else pass; fi
NOWHERE="$LB_TMP/no/such/repo"
bad "snapshots --repo <nonexistent>" 10 "$NOWHERE" "$NOWHERE" -- snapshots --repo "$NOWHERE"
bad "backup --repo <nonexistent>" 10 "$NOWHERE" "$NOWHERE" -- backup --repo "$NOWHERE" "$SRC"
bad "LIFEBOAT_REPOSITORY=<nonexistent> snapshots" 10 "$NOWHERE" "$NOWHERE" "LIFEBOAT_REPOSITORY=$NOWHERE" -- snapshots
AFILE="$LB_TMP/a-file"
printf 'not a repo\n' >"$AFILE"
bad "snapshots --repo <regular file>" 10 "$AFILE" "$AFILE" -- snapshots --repo "$AFILE"

# ---------------------------------------------------------------- unknown format version (12)
# Docs/repository-format.md / RepositoryConfig: `config` is one JSON line and a line
# "sha256:<hex of that JSON>". Rewrite both with version 999.
VREPO="$LB_TMP/repo-v999"
cp -a "$REPO" "$VREPO"
if python3 - "$VREPO/config" <<'EOF'; then
import hashlib, json, os, sys
path = sys.argv[1]
lines = [l for l in open(path, "rb").read().split(b"\n") if l]
cfg = json.loads(lines[0])
if "version" not in cfg:
    sys.exit(1)
cfg["version"] = 999
new = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
out = new + b"\n"
if len(lines) > 1 and lines[1].startswith(b"sha256:"):
    out += b"sha256:" + hashlib.sha256(new).hexdigest().encode() + b"\n"
os.chmod(path, 0o644)
open(path, "wb").write(out)
EOF
    bad "snapshots on a format-999 repository" 12 "999" "$VREPO" -- snapshots --repo "$VREPO"
    bad "backup into a format-999 repository" 12 "999" "$VREPO" -- backup --repo "$VREPO" "$SRC"
    bad "check on a format-999 repository" 12 "999" "$VREPO" -- check --repo "$VREPO"
    bad "prune on a format-999 repository" 12 "999" "$VREPO" -- prune --repo "$VREPO"
else
    fail "format version edit" "a JSON config with a version field in $VREPO/config" "$(lb_head "$VREPO/config")"
fi

# ---------------------------------------------------------------- snapshots (2)
UNKNOWN="$(openssl rand -hex 32)"
bad "restore of an unknown snapshot id" 2 "${UNKNOWN:0:8}" "$REPO" -- restore --repo "$REPO" "$UNKNOWN" --target "$LB_TMP/t-unknown"
if [ -e "$LB_TMP/t-unknown" ]; then fail "restore of an unknown snapshot" "no target created" "$LB_TMP/t-unknown exists"; else pass; fi
bad "ls of an unknown snapshot id" 2 "${UNKNOWN:0:8}" "$REPO" -- ls --repo "$REPO" "$UNKNOWN"
bad "diff with an unknown snapshot id" 2 "${UNKNOWN:0:8}" "$REPO" -- diff --repo "$REPO" "$ID1" "$UNKNOWN"
# a prefix of a real id, but shorter than 4 digits
bad "restore with a 3-digit prefix" 2 "${ID1:0:3}" "$REPO" -- restore --repo "$REPO" "${ID1:0:3}" --target "$LB_TMP/t-short"
bad "ls with a 2-digit prefix" 2 "${ID1:0:2}" "$REPO" -- ls --repo "$REPO" "${ID1:0:2}"
bad "ls with a non-hex snapshot name" 2 "not-a-snapshot" "$REPO" -- ls --repo "$REPO" not-a-snapshot
# ambiguity needs two ids sharing 4 digits: back up a tiny tree into a second repository until
# two ids do (about 300 backups on average; CLI_AMBIG_MAX caps it, default 800)
AREPO="$LB_TMP/repo-ambiguous"
ASRC="$LB_TMP/tiny"
mkdir -p "$ASRC"
printf 'tiny\n' >"$ASRC/f"
lb "$OUT" "$ERR" init --repo "$AREPO"
declare -A SEEN=()
AMBIG=""
for ((n = 1; n <= ${CLI_AMBIG_MAX:-800}; n++)); do
    lb "$OUT" "$ERR" backup --repo "$AREPO" "$ASRC"
    [ "$LB_RC" -eq 0 ] || break
    id="$(lb_last_line "$OUT")"
    if [ -n "${SEEN[${id:0:4}]+x}" ]; then AMBIG="${id:0:4}"; break; fi
    SEEN[${id:0:4}]=1
done
if [ -n "$AMBIG" ]; then
    lb_info "ambiguous prefix $AMBIG after $n backups"
    bad "ls with an ambiguous prefix" 2 "$AMBIG" "$AREPO" -- ls --repo "$AREPO" "$AMBIG"
    assert_file_match "ambiguous prefix: message says so" 'ambiguous|several|more than one|matches' "$ERR"
    bad "restore with an ambiguous prefix" 2 "$AMBIG" "$AREPO" -- restore --repo "$AREPO" "$AMBIG" --target "$LB_TMP/t-ambiguous"
else
    assert_exit "backups of a tiny tree (looking for an ambiguous prefix)" 0 "$LB_RC" "$ERR"
    lb_skip "ambiguous prefix: no two of $((n - 1)) snapshot ids share a 4-digit prefix"
fi

# ---------------------------------------------------------------- restore target / paths (2)
TNE="$LB_TMP/target-not-empty"
mkdir -p "$TNE"
printf 'keep me\n' >"$TNE/existing"
bad "restore into a non-empty target" 2 "$TNE" "$TNE" -- restore --repo "$REPO" "$ID1" --target "$TNE"
bad "restore of a missing subpath" 2 "no/such/subpath" "$REPO" -- restore --repo "$REPO" "$ID1:no/such/subpath" --target "$LB_TMP/t-subpath"
bad "backup of a nonexistent path" 2 "$LB_TMP/no-such-source" "$REPO" -- backup --repo "$REPO" "$LB_TMP/no-such-source"

# usage errors: only the exit code, the name and no change (a usage text may follow)
lb "$OUT" "$ERR" snapshots --repo "$REPO" --bogus-option
assert_exit "unknown option" 2 "$LB_RC" "$ERR"
assert_file_match "unknown option: named" 'bogus-option' "$ERR"
lb "$OUT" "$ERR" forget --repo "$REPO" --keep-last notanumber
assert_exit "forget --keep-last notanumber" 2 "$LB_RC" "$ERR"
assert_eq "forget with a bad number: snapshots kept" "$ID1 $ID2" "$(lb_snapshot_ids "$REPO" | tr '\n' ' ' | sed 's/ $//')"

# ---------------------------------------------------------------- init (2 or 10)
NE="$LB_TMP/init-not-empty"
mkdir -p "$NE"
printf 'data\n' >"$NE/precious"
bad "init on a non-empty dir" "2|10" "$NE" "$NE" -- init --repo "$NE"
assert_file_match "init on a non-empty dir: says it is not empty" 'not empty|non-empty|is empty|must be empty|contains' "$ERR"
bad "init on an existing repository" "2|10" "$REPO" "$REPO" -- init --repo "$REPO"

# ---------------------------------------------------------------- unreadable source files (3)
if [ "$(id -u)" != 0 ]; then
    lb_skip "unreadable source files: needs root to run lifeboat as nobody"
else
    chmod 755 "$LB_TMP"
    NB="$LB_TMP/nobody"
    mkdir -p "$NB"
    NSRC="$NB/src"
    make_tree "$NSRC" 2 2
    lb_rand_file "$NSRC/sub/unreadable.bin" 300000
    mkdir -p "$NSRC/locked-dir"
    printf 'hidden\n' >"$NSRC/locked-dir/inside"
    chown -R 65534:65534 "$NB"
    chmod 000 "$NSRC/sub/unreadable.bin" "$NSRC/locked-dir"
    touch -d '2011-11-11 11:11:11' "$NSRC/sub" "$NSRC"
    NREPO="$NB/repo"
    as_nobody() { timeout -k 10 "$LB_CMD_TIMEOUT" setpriv --reuid=65534 --regid=65534 --clear-groups -- "$LIFEBOAT_BIN" "$@" >"$OUT" 2>"$ERR" </dev/null; LB_RC=$?; }
    as_nobody init --repo "$NREPO"
    assert_exit "init as nobody" 0 "$LB_RC" "$ERR"
    as_nobody backup --repo "$NREPO" "$NSRC"
    assert_exit "backup with unreadable files (as nobody)" 3 "$LB_RC" "$ERR"
    assert_file_match "partial backup: unreadable file named" 'sub/unreadable\.bin' "$ERR"
    assert_file_match "partial backup: unreadable dir named" 'locked-dir' "$ERR"
    lb_info "partial backup stderr: $(lb_head "$ERR")"
    NID="$(lb_last_line "$OUT")"
    assert_match "partial backup: last stdout line is a snapshot id" '^[0-9a-f]{8,}$' "$NID"
    assert_eq "partial backup: snapshot listed" "$NID" "$(lb_snapshot_ids "$NREPO" | tr -d '\n')"
    lb_check "partial backup" "$NREPO"
    # what must be restored: everything but the unreadable file and the locked dir
    EXP="$LB_TMP/expected-partial"
    RES="$LB_TMP/restored-partial"
    cp -a "$NSRC" "$EXP"
    lb "$LB_TMP/r.out" "$LB_TMP/r.err" restore --repo "$NREPO" "$NID" --target "$RES"
    assert_exit "restore of the partial backup" 0 "$LB_RC" "$LB_TMP/r.err"
    if [ -e "$RES/sub/unreadable.bin" ]; then
        # it may only be there with its real content, which lifeboat could not read
        if cmp -s "$NSRC/sub/unreadable.bin" "$RES/sub/unreadable.bin"; then pass; else
            fail "partial backup: the unreadable file" "absent from the snapshot (its content was never read)" \
                "restored as $(stat -c '%F, %s bytes, mode %a' "$RES/sub/unreadable.bin")"
        fi
    else
        pass
    fi
    if [ -d "$RES/locked-dir" ] && [ -n "$(ls -A "$RES/locked-dir" 2>/dev/null)" ]; then
        fail "partial backup: the unreadable dir" "no content restored for it" "$(ls -A "$RES/locked-dir")"
    else
        pass
    fi
    if [ -d "$RES" ]; then
        rm -rf "$EXP/sub/unreadable.bin" "$EXP/locked-dir" "$RES/sub/unreadable.bin" "$RES/locked-dir"
        touch -d '2011-11-11 11:11:11' "$EXP/sub" "$RES/sub"
        touch -d '2011-11-11 11:11:11' "$EXP" "$RES"
        trees_equal "partial backup: the readable rest" "$EXP" "$RES"
    fi
fi

lb_finish
