#!/usr/bin/env bash
# Removes everything scripts/lab/up.sh made: the processes (by pid: the pid files, then every
# pid left in a lab network namespace or in a host's mount namespace), the mounts (the volume
# and the data dirs inside each host, the namespace files, DIR/ns), the namespaces (hosts,
# client, switch: the bridge and the veths go with them), the bricks (a bounded brick's file
# system unmounted and its loop device detached), etcd data and every local dir: DIR itself.
# Works after a failed or partial up too, and is safe to run twice.
#
#   scripts/lab/down.sh [--dir DIR] [--prefix P] [--keep-logs]      (as root)
#
#   --dir DIR     the lab's dir (default lab/ in the repository)
#   --prefix P    the namespaces' prefix when DIR/lab.env is gone (default: from lab.env, else lab)
#   --keep-logs   keep DIR/logs/ (and nothing else of DIR)
#
# Exit 0 when nothing of the lab is left; 1 naming what is left.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
ROOT=$PWD
LB_SCRIPT=lab/down.sh
. scripts/lib/common.sh
. scripts/lib/lab.sh

DIR="" PREFIX="" KEEP_LOGS=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --dir) DIR=${2:-} && shift 2 || { echo "$LB_SCRIPT: --dir needs a path" >&2 && exit 2; } ;;
        --prefix) PREFIX=${2:-} && shift 2 || { echo "$LB_SCRIPT: --prefix needs a name" >&2 && exit 2; } ;;
        --keep-logs) KEEP_LOGS=1 && shift ;;
        -h | --help) usage && exit 0 ;;
        *) echo "$LB_SCRIPT: unknown argument '$1' (see --help)" >&2 && exit 2 ;;
    esac
done
DIR="$(realpath -m "${DIR:-$ROOT/lab}")"
require_root "network and mount namespaces, mounts" "$@"
T0=$(date +%s.%N)
say() { log "down: $*"; }

if ! lab_load_env "$DIR"; then
    [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ] && [ ! -e "$DIR/$LAB_MARKER" ] && [ ! -d "$DIR/ns" ] &&
        { echo "$LB_SCRIPT: $DIR is not a lab dir (no $LAB_MARKER, lab.env or ns/): not touching it" >&2 && exit 2; }
    lab_init "$DIR" "${PREFIX:-lab}" 0
fi
[ -n "$PREFIX" ] && [ "$PREFIX" != "$LAB_PREFIX" ] && lab_init "$DIR" "$PREFIX" "$LAB_HOSTS"

# the hosts: those lab.env names, those with a namespace or a namespace file, those with a dir
host_indexes() {
    {
        for ((i = 1; i <= LAB_HOSTS; i++)); do echo "$i"; done
        ip netns list 2>/dev/null | awk '{ print $1 }' | sed -n "s/^$LAB_PREFIX-h\([0-9][0-9]*\)$/\1/p"
        for f in "$LAB_NSDIR"/h*.mnt "$DIR"/hosts/h* "$DIR"/pids/h*.*; do
            [ -e "$f" ] || continue
            f="$(basename "$f")"
            f="${f#h}"
            echo "${f%%.*}"
        done
    } | grep -E '^[0-9]+$' | sort -un
}
mapfile -t IDX < <(host_indexes)
say "lab $LAB_PREFIX in $DIR: hosts ${IDX[*]:-none}"

# kill_all PID...: SIGCONT + SIGKILL
kill_all() {
    local p
    for p; do
        kill -CONT "$p" 2>/dev/null
        kill -KILL "$p" 2>/dev/null
    done
}
# host_pids I: every pid of host I (recorded ones that still run there, its network
# namespace's, its mount namespace's)
host_pids() {
    local i=$1 n p
    {
        for n in "${LAB_PID_NAMES[@]}"; do
            p="$(lab_pid "$i" "$n")"
            lab_pid_in_host "$p" "$i" && echo "$p"
        done
        lab_pids_in_net "$(lab_netns "$i")"
        lab_pids_in_mnt "$(lab_mntns "$i")"
    } | sort -un
}
alive_of() {
    local p
    for p; do pid_alive "$p" && echo "$p"; done
}

# 1. the agents first (frozen, then killed with their services), so none starts a service or
# takes a lease meanwhile
for i in "${IDX[@]+"${IDX[@]}"}"; do
    p="$(lab_pid "$i" agent)"
    if lab_pid_in_host "$p" "$i"; then
        kill -STOP "$p" 2>/dev/null
        mapfile -t kids < <(lab_descendants "$p")
        kill_all "$p" "${kids[@]+"${kids[@]}"}"
    fi
done
# 2. inside each host: detach every mount below DIR (the volume, dead FUSE data dirs), deepest
# first, while the bricks still run (a client whose bricks are gone would stall); a bounded
# brick's file system waits for step 3b
for i in "${IDX[@]+"${IDX[@]}"}"; do
    f="$(lab_mntns "$i")"
    [ "$(stat -c %T -f "$f" 2>/dev/null)" = nsfs ] || continue
    while read -r m; do
        [ -n "$m" ] && [ "$m" != "$(lab_brick "$i")" ] && nsenter --mount="$f" umount -l "$m" 2>/dev/null
    done < <(nsenter --mount="$f" awk -v t="$DIR" '$5 == t || index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
done
# 3. every process of every host, of the client and of the switch
victims=()
for i in "${IDX[@]+"${IDX[@]}"}"; do
    mapfile -t -O "${#victims[@]}" victims < <(host_pids "$i")
done
for ns in "$LAB_CLIENT" "$LAB_SW"; do
    mapfile -t -O "${#victims[@]}" victims < <(lab_pids_in_net "$ns")
done
if [ "${#victims[@]}" -gt 0 ]; then
    say "killing ${#victims[@]} processes (by pid)"
    kill_all "${victims[@]}"
    wait_until 15 eval '[ -z "$(alive_of "${victims[@]}")" ]' ||
        say "still running after 15 s: $(alive_of "${victims[@]}" | tr '\n' ' ')"
fi
# 3b. bounded bricks: each host's brick file system unmounted inside it (its processes are
# gone), then its loop devices detached (a device still busy detaches when its last user
# goes: checked before the dirs are removed)
brick_mounted_in() { nsenter --mount="$(lab_mntns "$1")" awk -v t="$(lab_brick "$1")" '$5 == t { n++ } END { exit !n }' /proc/self/mountinfo; }
for i in "${IDX[@]+"${IDX[@]}"}"; do
    [ "$(stat -c %T -f "$(lab_mntns "$i")" 2>/dev/null)" = nsfs ] || continue
    wait_until 10 eval '! brick_mounted_in "$i" || nsenter --mount="$(lab_mntns "$i")" umount "$(lab_brick "$i")" 2>/dev/null' ||
        { say "h$i's brick file system is busy after 10 s: detaching it lazily" && nsenter --mount="$(lab_mntns "$i")" umount -l "$(lab_brick "$i")"; }
done
for i in "${IDX[@]+"${IDX[@]}"}"; do
    for dev in $(lab_loops_of "$i"); do losetup -d "$dev" 2>/dev/null || say "losetup -d $dev (h$i's brick) failed"; done
done
# 4. the mount namespace files (the namespaces end with their last process), DIR/ns, and any
# mount left below DIR in this namespace
for i in "${IDX[@]+"${IDX[@]}"}"; do
    f="$(lab_mntns "$i")"
    while is_mounted "$f"; do umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null || break; done
done
while is_mounted "$LAB_NSDIR"; do umount "$LAB_NSDIR" 2>/dev/null || umount -l "$LAB_NSDIR" 2>/dev/null || break; done
unmount_below "$DIR"
# 5. the network namespaces (the veths and the bridge go with them)
for ns in $(lab_namespaces "${IDX[@]+"${IDX[@]}"}"); do
    lab_netns_exists "$ns" && { ip netns del "$ns" 2>/dev/null || say "cannot delete network namespace $ns"; }
done
# 6. the dirs: bricks, etcd data, backing and journal dirs, configs, pids (logs with --keep-logs)
left=()
loops_left() {
    local i
    for i in "${IDX[@]+"${IDX[@]}"}"; do lab_loops_of "$i"; done
}
if [ -n "$(mounts_under "$DIR")" ]; then
    left+=("mounts: $(mounts_under "$DIR" | tr '\n' ' ')")
elif ! wait_until 10 eval '[ -z "$(loops_left)" ]'; then
    # DIR stays, so that another down.sh finds them by their files
    left+=("loop devices still attached to the bricks' files: $(loops_left | tr '\n' ' ')")
elif [ -d "$DIR" ]; then
    # the host dirs at once (unlinks are slow on a file system mounted with `discard`)
    for d in "$DIR"/hosts/*/*; do [ -e "$d" ] && rm -rf "$d" & done
    wait
    if [ "$KEEP_LOGS" = 1 ]; then
        find "$DIR" -mindepth 1 -maxdepth 1 ! -name logs ! -name "$LAB_MARKER" -exec rm -rf {} +
    else
        rm -rf "$DIR"
    fi
fi

# what is left?
for ns in $(lab_namespaces "${IDX[@]+"${IDX[@]}"}"); do
    lab_netns_exists "$ns" && left+=("network namespace $ns")
done
still="$(alive_of "${victims[@]+"${victims[@]}"}" | tr '\n' ' ')"
[ -n "${still// /}" ] && left+=("processes: $still")
if [ "$KEEP_LOGS" = 1 ]; then
    [ -n "$(find "$DIR" -mindepth 1 -maxdepth 1 ! -name logs ! -name "$LAB_MARKER" 2>/dev/null)" ] && left+=("files in $DIR")
else
    [ -e "$DIR" ] && left+=("$DIR")
fi
took=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
if [ "${#left[@]}" -gt 0 ]; then
    echo "$LB_SCRIPT: ERROR: left after ${took} s: $(printf '%s; ' "${left[@]}")" >&2
    exit 1
fi
say "the lab $LAB_PREFIX is gone (${took} s)$([ "$KEEP_LOGS" = 1 ] && echo "; logs kept in $DIR/logs")"
