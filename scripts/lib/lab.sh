# shellcheck shell=bash
# scripts/lib/lab.sh: the lab's names, paths and ways into its namespaces, shared by
# scripts/lab/up.sh, scripts/lab/down.sh, scripts/lib/lab_scenario.sh (demo.sh --lab,
# tests/lab-smoke.sh). Source it after common.sh; it runs nothing.
#
# A lab of N hosts with prefix P in dir D:
#   network namespaces P-sw (the switch: bridge br0), P-h1..P-hN (one per host, eth0 with
#   SUBNET.I/24) and P-client (eth0 with SUBNET.200); the switch side of host I's veth is
#   P-hI in P-sw: `ip -n P-sw link set P-hI down` partitions host I.
#   host I's persistent mount namespace: D/ns/hI.mnt (D/ns is a private bind mount of
#   itself), in which D/hosts/hI/glusterd, D/logs/hI/glusterfs and D/hosts/hI/run are bound
#   over /var/lib/glusterd, /var/log/glusterfs and /run; the volume is mounted on D/volume
#   inside it (private to the host), and so are the agent's data dirs.
#   host I's local dirs: D/hosts/hI/ (brick, etcd, WORKLOAD/{backing,journal,data}); logs:
#   D/logs/hI/; pids: D/pids/hI.NAME (agent etcd glusterd brick shd mount).
#   Bounded bricks (up.sh --brick-size): host I's brick dir is an XFS file system on a loop
#   device over the sparse file D/hosts/hI/brick.img, mounted inside the host only; the
#   device's name is in D/pids/hI.loop.
#   Hosts 1-3 hold the etcd members and the bricks (a 3-member etcd cluster, a replica-3
#   volume); hosts 4..N run glusterd, mount the volume and run an agent.

LAB_SUBNET="${LAB_SUBNET:-10.88.0}"
LAB_API_PORT=7440
LAB_PEER_PORT=7441
LAB_REDIS_PORT=6379
LAB_PG_PORT=5432
LAB_ETCD_PORT=2379
LAB_ETCD_PEER_PORT=2380
LAB_CLIENT_OCTET=200
LAB_PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
LAB_WORKLOADS=(redis postgres)
LAB_PID_NAMES=(agent etcd glusterd brick shd mount)
LAB_BRICK_MIN_MIB=300 # mkfs.xfs makes no smaller file system
LAB_MARKER=.lifeboat-lab # in DIR from the start of up.sh to the end of down.sh (kept with --keep-logs)
LAB_CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# lab_init DIR PREFIX HOSTS [BRICK_SIZE]: the lab's variables (LAB_DIR LAB_PREFIX LAB_HOSTS
# LAB_BRICK_SIZE ("" for bricks that are plain dirs) LAB_SW LAB_CLIENT LAB_VOLUME LAB_MOUNT
# LAB_NSDIR LAB_ETCD_HOSTS)
lab_init() {
    LAB_DIR=$1 LAB_PREFIX=$2 LAB_HOSTS=$3 LAB_BRICK_SIZE=${4:-}
    LAB_SW="$LAB_PREFIX-sw"
    LAB_CLIENT="$LAB_PREFIX-client"
    LAB_VOLUME="${LAB_PREFIX}vol"
    LAB_MOUNT="$LAB_DIR/volume"
    LAB_NSDIR="$LAB_DIR/ns"
    LAB_ETCD_HOSTS=$((LAB_HOSTS < 3 ? LAB_HOSTS : 3))
}

# lab_load_env DIR: lab_init from DIR/lab.env (written first by up.sh); 1 when it is missing
lab_load_env() {
    local LAB_ENV_PREFIX="" LAB_ENV_HOSTS="" LAB_ENV_SUBNET="" LAB_ENV_BRICK_SIZE=""
    [ -f "$1/lab.env" ] || return 1
    # shellcheck disable=SC1091
    . "$1/lab.env"
    [ -n "$LAB_ENV_SUBNET" ] && LAB_SUBNET=$LAB_ENV_SUBNET
    lab_init "$1" "$LAB_ENV_PREFIX" "$LAB_ENV_HOSTS" "$LAB_ENV_BRICK_SIZE"
}

lab_name() { printf 'h%s' "$1"; }
lab_netns() { printf '%s-h%s' "$LAB_PREFIX" "$1"; }
lab_addr() { printf '%s.%s' "$LAB_SUBNET" "$1"; }
lab_client_addr() { printf '%s.%s' "$LAB_SUBNET" "$LAB_CLIENT_OCTET"; }
lab_link() { printf '%s-h%s' "$LAB_PREFIX" "$1"; }
lab_mntns() { printf '%s/h%s.mnt' "$LAB_NSDIR" "$1"; }
lab_hdir() { printf '%s/hosts/h%s' "$LAB_DIR" "$1"; }
lab_logdir() { printf '%s/logs/h%s' "$LAB_DIR" "$1"; }
lab_pidfile() { printf '%s/pids/h%s.%s' "$LAB_DIR" "$1" "$2"; }
lab_brick() { printf '%s/hosts/h%s/brick' "$LAB_DIR" "$1"; }
# lab_brick_img I: the sparse file under host I's bounded brick (up.sh --brick-size)
lab_brick_img() { printf '%s/hosts/h%s/brick.img' "$LAB_DIR" "$1"; }
lab_api() { printf 'http://%s:%s' "$(lab_addr "$1")" "$LAB_API_PORT"; }
lab_etcd_url() { printf 'http://%s:%s' "$(lab_addr "$1")" "$LAB_ETCD_PORT"; }
# lab_is_brick_host I / lab_is_etcd_host I: host I holds a brick / an etcd member
lab_is_etcd_host() { [ "$1" -le "$LAB_ETCD_HOSTS" ]; }
lab_is_brick_host() { [ "$1" -le 3 ]; }

# lab_in I CMD...: CMD in host I's network and mount namespaces (its own /run, glusterd dirs,
# volume mount and data dirs)
lab_in() {
    local i=$1
    shift
    nsenter --mount="$(lab_mntns "$i")" --net="/run/netns/$(lab_netns "$i")" -- "$@"
}
# lab_client CMD...: CMD in the client namespace
lab_client() { ip netns exec "$LAB_CLIENT" "$@"; }
# lab_shell_cmd I: the command line that runs a shell on host I (for lab.json and messages)
lab_shell_cmd() { printf 'nsenter --mount=%s --net=/run/netns/%s -- bash' "$(lab_mntns "$1")" "$(lab_netns "$1")"; }

# lab_namespaces I...: the switch's, the client's and hosts I...'s network namespace names, one a line
lab_namespaces() {
    local i
    printf '%s\n%s\n' "$LAB_SW" "$LAB_CLIENT"
    for i; do printf '%s\n' "$(lab_netns "$i")"; done
}
# lab_netns_exists NAME
lab_netns_exists() { [ -e "/run/netns/$1" ]; }
# lab_ns_inode FILE: the inode of the namespace FILE names ("" when it names none)
lab_ns_inode() { stat -L -c %i "$1" 2>/dev/null; }
# lab_pids_in_net NAME: the pids in network namespace NAME
lab_pids_in_net() { lab_netns_exists "$1" && ip netns pids "$1" 2>/dev/null; }
# lab_pids_in_mnt FILE: the pids whose mount namespace is the one FILE holds
lab_pids_in_mnt() {
    local want pid
    want="$(lab_ns_inode "$1")"
    [ -n "$want" ] || return 0
    # (a mount namespace file that is not mounted has the inode of a plain file: no match)
    [ "$(stat -c %T -f "$1" 2>/dev/null)" = nsfs ] || return 0
    for pid in /proc/[0-9]*; do
        [ "$(stat -L -c %i "$pid/ns/mnt" 2>/dev/null)" = "$want" ] && echo "${pid#/proc/}"
    done
}
# lab_pid_in_host PID I: PID runs in host I's network namespace (a pid file's pid, not a reused one)
lab_pid_in_host() {
    local want
    pid_alive "$1" || return 1
    want="$(lab_ns_inode "/run/netns/$(lab_netns "$2")")"
    [ -n "$want" ] && [ "$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null)" = "$want" ]
}
# lab_pid I NAME: the pid recorded for host I's NAME ("" when none)
lab_pid() { cat "$(lab_pidfile "$1" "$2")" 2>/dev/null || true; }

# lab_descendants PID: every descendant of PID (children first, then theirs)
lab_descendants() {
    local queue=("$1") p c
    while [ "${#queue[@]}" -gt 0 ]; do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        for c in $(pgrep -P "$p" 2>/dev/null); do
            echo "$c"
            queue+=("$c")
        done
    done
}

# lab_size_mib SIZE: SIZE (a number with M or G, e.g. 512M, 2G) in MiB; 1 for anything else
lab_size_mib() {
    case "$1" in
        [1-9]*M) is_int "${1%M}" && echo "${1%M}" ;;
        [1-9]*G) is_int "${1%G}" && echo "$((${1%G} * 1024))" ;;
        *) return 1 ;;
    esac
}
# lab_loops_of I: the loop devices attached to host I's brick.img (those up.sh recorded in
# D/pids/hI.loop and any other, e.g. of an up.sh killed before it recorded one), one a line
lab_loops_of() {
    local img dev
    img="$(lab_brick_img "$1")"
    [ -e "$img" ] || return 0
    {
        dev="$(lab_pid "$1" loop)"
        [ -n "$dev" ] && [ "$(losetup -n -O BACK-FILE "$dev" 2>/dev/null | sed 's/ *$//')" = "$img" ] && echo "$dev"
        losetup -n -O NAME -j "$img" 2>/dev/null
    } | sed 's/ *$//' | sort -u
}

# lab_link_set I up|down: host I's link on the switch side
lab_link_set() { ip -n "$LAB_SW" link set "$(lab_link "$1")" "$2"; }
