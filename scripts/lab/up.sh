#!/usr/bin/env bash
# Builds the lab: several hosts on this machine from real parts (Debian packages only), each
# in its own network namespace on a bridge and its own mount namespace, with an etcd member,
# a glusterd and a brick of one replica-3 GlusterFS volume, and a lifeboatd agent (coordinator
# etcd, repository on the volume) running two workloads: redis and PostgreSQL 15 (as the
# postgres user). Prints the lab's JSON description and writes it to DIR/lab.json.
#
#   scripts/lab/up.sh [--hosts N] [--dir DIR] [--prefix P] [--brick-size SIZE]      (as root)
#
#   --hosts N    hosts h1..hN (default 3, at most 20); h1-h3 hold the etcd members and the
#                bricks, hosts after them run glusterd, the mount and an agent only
#   --dir DIR    the lab's dir (default lab/ in the repository): configs, local dirs, logs,
#                pids, namespace files; only the GlusterFS volume is shared between hosts
#   --prefix P   names of the namespaces (P-sw, P-h1.., P-client) and of the volume (Pvol);
#                default lab; 1-8 lowercase letters or digits
#   --brick-size SIZE  each brick is an XFS file system of SIZE (e.g. 1G, 512M; at least
#                300M) on a loop device over a sparse file DIR/hosts/hI/brick.img, mounted on
#                the brick dir inside the host, so the volume can run out of space (chaos
#                volume-full); needs losetup and mkfs.xfs (xfsprogs). Default: the brick is a
#                plain dir on the file system of DIR, as big as that file system
#
# Environment: LIFEBOATD_BIN, LIFEBOAT_BIN (default .build/release/ of this checkout),
# LAB_SUBNET (default 10.88.0: hosts at .1-.N, the client at .200), LAB_LEASE_TTL (3s),
# LAB_REPLICATION (sync), LAB_STANDBY (the workloads' `standby`: cold), LAB_SNAPSHOT_EVERY
# (none), LAB_PING_TIMEOUT (the volume's network.ping-timeout: 2 s; the first write after a
# brick host is lost stalls that long), LAB_HEAL_TIMEOUT (the volume's cluster.heal-timeout:
# 10 s between the self-heal daemons' crawls, instead of 600 s),
# LAB_ETCD_ORDER (own-first: each agent lists its own etcd member first; fixed: h1, h2, h3).
#
# Run twice: when DIR holds a lab whose every process runs and whose agents answer, it prints
# that lab's description and changes nothing; otherwise (a partial or broken lab, or another
# --hosts or --prefix) it runs scripts/lab/down.sh on it and builds a new one.
# On failure it leaves what it made for scripts/lab/down.sh (it says so) and exits 1.
# Exit 2: bad arguments or something missing (root, /dev/fuse, a package, the binaries).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
ROOT=$PWD
LB_SCRIPT=lab/up.sh
. scripts/lib/common.sh
. scripts/lib/lab.sh

HOSTS_N=3 DIR="" PREFIX=lab BRICK_SIZE=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --hosts) HOSTS_N=${2:-} && shift 2 || { echo "$LB_SCRIPT: --hosts needs a number" >&2 && exit 2; } ;;
        --dir) DIR=${2:-} && shift 2 || { echo "$LB_SCRIPT: --dir needs a path" >&2 && exit 2; } ;;
        --prefix) PREFIX=${2:-} && shift 2 || { echo "$LB_SCRIPT: --prefix needs a name" >&2 && exit 2; } ;;
        --brick-size) BRICK_SIZE=${2:-} && shift 2 || { echo "$LB_SCRIPT: --brick-size needs a size like 1G" >&2 && exit 2; } ;;
        -h | --help) usage && exit 0 ;;
        *) echo "$LB_SCRIPT: unknown argument '$1' (see --help)" >&2 && exit 2 ;;
    esac
done
is_int "$HOSTS_N" && [ "$HOSTS_N" -ge 3 ] && [ "$HOSTS_N" -le 20 ] ||
    { echo "$LB_SCRIPT: --hosts must be a number from 3 to 20 (a replica-3 volume needs 3 hosts), not '$HOSTS_N'" >&2 && exit 2; }
[[ "$PREFIX" =~ ^[a-z0-9]{1,8}$ ]] ||
    { echo "$LB_SCRIPT: --prefix must be 1-8 lowercase letters or digits, not '$PREFIX'" >&2 && exit 2; }
if [ -n "$BRICK_SIZE" ]; then
    BRICK_MIB="$(lab_size_mib "$BRICK_SIZE")" && [ "$BRICK_MIB" -ge "$LAB_BRICK_MIN_MIB" ] ||
        { echo "$LB_SCRIPT: --brick-size must be a size of at least ${LAB_BRICK_MIN_MIB}M like 512M or 2G (M or G), not '$BRICK_SIZE'" >&2 && exit 2; }
fi
[[ "$LAB_SUBNET" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
    { echo "$LB_SCRIPT: LAB_SUBNET must be three octets like 10.88.0, not '$LAB_SUBNET'" >&2 && exit 2; }
DIR="${DIR:-$ROOT/lab}"
DIR="$(realpath -m "$DIR")"
[ "$DIR" != / ] && [ "$DIR" != "$ROOT" ] || { echo "$LB_SCRIPT: --dir $DIR: choose a dir of its own" >&2 && exit 2; }
require_root "network and mount namespaces, glusterd, FUSE mounts" "$@"

LIFEBOATD_BIN="${LIFEBOATD_BIN:-$ROOT/.build/release/lifeboatd}"
LIFEBOAT_BIN="${LIFEBOAT_BIN:-$ROOT/.build/release/lifeboat}"
LEASE_TTL="${LAB_LEASE_TTL:-3s}"
REPLICATION="${LAB_REPLICATION:-sync}"
PING_TIMEOUT="${LAB_PING_TIMEOUT:-2}"
HEAL_TIMEOUT="${LAB_HEAL_TIMEOUT:-10}"
T_START=$(date +%s.%N)
say() { log "up: $*"; }
cannot() {
    echo "$LB_SCRIPT: ERROR: $*" >&2
    exit 2
}

# ---------------------------------------------------------------- what it needs

need_tools() {
    local t missing=()
    for t in ip nsenter unshare setsid glusterd gluster mount.glusterfs etcd redis-server redis-cli \
        runuser setpriv python3 curl; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    [ -x "$LAB_PGBIN/postgres" ] || missing+=("$LAB_PGBIN/postgres")
    if [ -n "$BRICK_SIZE" ]; then
        for t in losetup mkfs.xfs; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    fi
    printf '%s\n' "${missing[@]+"${missing[@]}"}"
}
if [ -n "$(need_tools)" ]; then
    say "missing: $(need_tools | tr '\n' ' '); running scripts/setup.sh --no-build"
    scripts/setup.sh --no-build >&2 || cannot "scripts/setup.sh --no-build failed"
    [ -z "$(need_tools)" ] || cannot "still missing after scripts/setup.sh: $(need_tools | tr '\n' ' ')"
fi
[ -c /dev/fuse ] || cannot "/dev/fuse is missing (the agents capture their data dirs through FUSE; GlusterFS mounts through it)"
id postgres >/dev/null 2>&1 || cannot "no postgres user (the postgresql package makes it: scripts/setup.sh)"
for b in "$LIFEBOATD_BIN" "$LIFEBOAT_BIN"; do
    [ -x "$b" ] || cannot "$b is missing: build it (swift build -c release, or scripts/setup.sh)"
done
ip netns list >/dev/null 2>&1 || cannot "ip netns does not work here (network namespaces are needed)"

# ---------------------------------------------------------------- a lab already there

lab_init "$DIR" "$PREFIX" "$HOSTS_N" "$BRICK_SIZE"

# lab_running: every pid of DIR/pids runs in its host and every agent answers /livez
lab_running() {
    local i n
    [ -f "$DIR/lab.json" ] || return 1
    for ((i = 1; i <= LAB_HOSTS; i++)); do
        for n in agent glusterd mount; do lab_pid_in_host "$(lab_pid "$i" "$n")" "$i" || return 1; done
        if lab_is_etcd_host "$i"; then lab_pid_in_host "$(lab_pid "$i" etcd)" "$i" || return 1; fi
        if lab_is_brick_host "$i"; then lab_pid_in_host "$(lab_pid "$i" brick)" "$i" || return 1; fi
        lab_client curl -sf -m 3 "$(lab_api "$i")/livez" >/dev/null 2>&1 || return 1
    done
}

if [ -e "$DIR" ]; then
    if [ -f "$DIR/lab.env" ]; then
        old_hosts="" old_prefix="" old_bricks=""
        # shellcheck disable=SC1091
        old_hosts="$(. "$DIR/lab.env" && echo "$LAB_ENV_HOSTS")"
        old_prefix="$(. "$DIR/lab.env" && echo "$LAB_ENV_PREFIX")"
        old_bricks="$(LAB_ENV_BRICK_SIZE="" && . "$DIR/lab.env" && echo "$LAB_ENV_BRICK_SIZE")"
        if [ "$old_hosts" = "$HOSTS_N" ] && [ "$old_prefix" = "$PREFIX" ] && [ "$old_bricks" = "$BRICK_SIZE" ] && lab_running; then
            say "the lab in $DIR is up (every process runs, every agent answers): its description, unchanged"
            cat "$DIR/lab.json"
            exit 0
        fi
        say "$DIR holds a lab ($old_hosts hosts, prefix $old_prefix, bricks ${old_bricks:-plain dirs}) that is not fully up or differs: tearing it down first"
        scripts/lab/down.sh --dir "$DIR" >&2 || cannot "scripts/lab/down.sh --dir $DIR failed: see above"
    elif [ -e "$DIR/$LAB_MARKER" ]; then
        say "$DIR holds the logs of an earlier lab: removing them"
        rm -rf "$DIR" || cannot "cannot remove $DIR"
    elif [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
        cannot "$DIR exists and is not a lab dir (no $LAB_MARKER): not touching it; choose another --dir"
    fi
fi
for ns in $(lab_namespaces $(seq "$HOSTS_N")); do
    lab_netns_exists "$ns" && cannot "network namespace $ns exists (a lab with prefix $PREFIX in another dir?): scripts/lab/down.sh --prefix $PREFIX --dir THAT_DIR, or choose another --prefix"
done

mkdir -p "$DIR" "$DIR/pids" "$DIR/bin" && chmod 755 "$DIR" && touch "$DIR/$LAB_MARKER" || cannot "cannot create $DIR"
runuser -u postgres -- test -x "$DIR" || cannot "the postgres user cannot reach $DIR (a parent dir without o+x?): choose another --dir"
printf 'LAB_ENV_PREFIX=%s\nLAB_ENV_HOSTS=%s\nLAB_ENV_SUBNET=%s\nLAB_ENV_BRICK_SIZE=%s\n' \
    "$PREFIX" "$HOSTS_N" "$LAB_SUBNET" "$BRICK_SIZE" >"$DIR/lab.env"
trap 'echo "$LB_SCRIPT: interrupted: the partial lab stays; remove it with scripts/lab/down.sh --dir $DIR" >&2; exit 130' INT
trap 'echo "$LB_SCRIPT: terminated: the partial lab stays; remove it with scripts/lab/down.sh --dir $DIR" >&2; exit 143' TERM
failed() {
    echo "$LB_SCRIPT: ERROR: $*" >&2
    echo "$LB_SCRIPT: the partial lab stays for inspection (logs: $DIR/logs/); remove it with scripts/lab/down.sh --dir $DIR" >&2
    exit 1
}
# private copies: a rebuild while the lab runs cannot swap the binaries under the agents
cp "$LIFEBOATD_BIN" "$DIR/bin/lifeboatd" && cp "$LIFEBOAT_BIN" "$DIR/bin/lifeboat" && chmod 755 "$DIR/bin"/* ||
    failed "cannot copy the binaries into $DIR/bin"
unset "${!ETCD_@}" 2>/dev/null # etcd reads every ETCD_* variable as a flag

# step NAME CMD...: CMD, or the lab fails naming NAME and CMD's output
step() {
    local what=$1 out
    shift
    out="$("$@" 2>&1)" || failed "$what: $(lb_oneline_out "$out")"
}
lb_oneline_out() { printf '%s' "$1" | tr '\n' '|' | cut -c1-400; }

# daemon I NAME CMD...: CMD in host I's namespaces, in its own session (it outlives this
# script), clean environment, output in DIR/logs/hI/NAME.log, pid in DIR/pids/hI.NAME
daemon() {
    local i=$1 name=$2 pid
    shift 2
    setsid env -i PATH="$LAB_CLEAN_PATH" HOME=/root LANG=C.UTF-8 \
        nsenter --mount="$(lab_mntns "$i")" --net="/run/netns/$(lab_netns "$i")" -- "$@" \
        >>"$(lab_logdir "$i")/$name.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$(lab_pidfile "$i" "$name")"
}

# ---------------------------------------------------------------- network

say "network: $LAB_SW (bridge br0), $HOSTS_N hosts on $LAB_SUBNET.0/24, $LAB_CLIENT"
step "switch namespace" ip netns add "$LAB_SW"
step "bridge" ip -n "$LAB_SW" link add br0 type bridge
step "bridge up" ip -n "$LAB_SW" link set br0 up
step "switch lo" ip -n "$LAB_SW" link set lo up
# attach NS LINK ADDR: NS gets eth0 with ADDR/24, its veth peer LINK on the bridge
attach() {
    step "namespace $1" ip netns add "$1"
    step "veth $2" ip -n "$LAB_SW" link add "$2" type veth peer name eth0 netns "$1"
    step "$2 on br0" ip -n "$LAB_SW" link set "$2" master br0 up
    step "address of $1" ip -n "$1" addr add "$3/24" dev eth0
    step "eth0 of $1" ip -n "$1" link set eth0 up
    step "lo of $1" ip -n "$1" link set lo up # the self-heal daemon connects to localhost
}
for ((i = 1; i <= HOSTS_N; i++)); do attach "$(lab_netns "$i")" "$(lab_link "$i")" "$(lab_addr "$i")"; done
attach "$LAB_CLIENT" "$PREFIX-client" "$(lab_client_addr)"

# ---------------------------------------------------------------- hosts: dirs, mount namespaces

say "hosts: local dirs under $DIR/hosts, persistent mount namespaces in $LAB_NSDIR"
mkdir -p "$LAB_NSDIR" "$LAB_MOUNT" /var/lib/glusterd /var/log/glusterfs
chmod 755 "$LAB_MOUNT"
# the namespace files must live on a private mount (a shared one would propagate into the
# namespaces they hold)
is_mounted "$LAB_NSDIR" || step "private bind of $LAB_NSDIR" mount --bind "$LAB_NSDIR" "$LAB_NSDIR"
step "make $LAB_NSDIR private" mount --make-private "$LAB_NSDIR"
for ((i = 1; i <= HOSTS_N; i++)); do
    H="$(lab_hdir "$i")"
    L="$(lab_logdir "$i")"
    mkdir -p "$H/glusterd" "$H/run" "$L/glusterfs" "$H/etc"
    lab_is_brick_host "$i" && mkdir -p "$H/brick"
    lab_is_etcd_host "$i" && mkdir -p "$H/etcd" && chmod 700 "$H/etcd"
    for w in "${LAB_WORKLOADS[@]}"; do mkdir -p "$H/$w/backing"; done
    chmod 755 "$DIR/hosts" "$H" "$H"/redis "$H"/postgres "$H"/*/backing "$H/etc" "$DIR/logs" "$L"
    touch "$(lab_mntns "$i")"
    step "mount namespace of h$i" unshare --mount="$(lab_mntns "$i")" --propagation private true
    step "h$i's own /var/lib/glusterd" nsenter --mount="$(lab_mntns "$i")" mount --bind "$H/glusterd" /var/lib/glusterd
    step "h$i's own /var/log/glusterfs" nsenter --mount="$(lab_mntns "$i")" mount --bind "$L/glusterfs" /var/log/glusterfs
    step "h$i's own /run" nsenter --mount="$(lab_mntns "$i")" mount --bind "$H/run" /run
done

# bounded bricks: an XFS file system on a loop device per brick host, mounted inside the host
# (the device is recorded before mkfs, so down.sh finds it after any failure from here on)
if [ -n "$BRICK_SIZE" ]; then
    say "bricks: XFS file systems of $BRICK_SIZE on loop devices (sparse files $DIR/hosts/hI/brick.img)"
    for i in 1 2 3; do
        IMG="$(lab_brick_img "$i")"
        step "sparse file $IMG" truncate -s "${BRICK_MIB}M" "$IMG"
        dev="$(losetup --find --show "$IMG" 2>&1)" || failed "losetup --find --show $IMG: $dev"
        echo "$dev" >"$(lab_pidfile "$i" loop)"
        step "mkfs.xfs on $dev (h$i's brick)" mkfs.xfs -q -f -i size=512 "$dev"
        step "mount $dev on h$i's brick dir" nsenter --mount="$(lab_mntns "$i")" mount -t xfs -o noatime "$dev" "$(lab_brick "$i")"
    done
fi

# ---------------------------------------------------------------- etcd

ETCD_CLUSTER=""
ETCD_ENDPOINTS=()
for ((i = 1; i <= LAB_ETCD_HOSTS; i++)); do
    ETCD_CLUSTER+="${ETCD_CLUSTER:+,}h$i=http://$(lab_addr "$i"):$LAB_ETCD_PEER_PORT"
    ETCD_ENDPOINTS+=("$(lab_etcd_url "$i")")
done
say "etcd: $LAB_ETCD_HOSTS members ($ETCD_CLUSTER)"
TOKEN="$PREFIX-$(date +%s)-$$"
for ((i = 1; i <= LAB_ETCD_HOSTS; i++)); do
    A="$(lab_addr "$i")"
    daemon "$i" etcd etcd --name "h$i" --data-dir "$(lab_hdir "$i")/etcd" \
        --listen-client-urls "http://$A:$LAB_ETCD_PORT" --advertise-client-urls "http://$A:$LAB_ETCD_PORT" \
        --listen-peer-urls "http://$A:$LAB_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://$A:$LAB_ETCD_PEER_PORT" \
        --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new --initial-cluster-token "$TOKEN" \
        --pre-vote --logger zap --log-outputs stderr --log-level warn
done

# ---------------------------------------------------------------- glusterd, the volume

say "glusterd: one per host (its own /var/lib/glusterd, /var/log/glusterfs and /run)"
for ((i = 1; i <= HOSTS_N; i++)); do daemon "$i" glusterd glusterd -N; done
gl() {
    local i=$1
    shift
    lab_in "$i" timeout -k 5 60 gluster --mode=script "$@"
}
for ((i = 1; i <= HOSTS_N; i++)); do
    wait_until 30 eval "gl $i pool list >/dev/null 2>&1" ||
        failed "glusterd of h$i does not answer within 30 s: $(tail -n 3 "$(lab_logdir "$i")/glusterfs/glusterd.log" 2>/dev/null | tr '\n' '|')"
done
for ((i = 2; i <= HOSTS_N; i++)); do step "gluster peer probe h$i" gl 1 peer probe "$(lab_addr "$i")"; done
peers_connected() { [ "$(gl 1 pool list 2>/dev/null | grep -c Connected)" = "$HOSTS_N" ]; }
wait_until 60 peers_connected || failed "the gluster pool is not all connected within 60 s: $(gl 1 pool list 2>&1 | tr '\n' '|')"
BRICKS=()
for i in 1 2 3; do BRICKS+=("$(lab_addr "$i"):$(lab_hdir "$i")/brick"); done
# a brick on the root file system needs `force`; the create can race the pool's last update
wait_until 30 eval 'gl 1 volume create "$LAB_VOLUME" replica 3 "${BRICKS[@]}" force >"$DIR/logs/volume-create.out" 2>&1' ||
    failed "gluster volume create: $(tr '\n' '|' <"$DIR/logs/volume-create.out")"
# a lost brick host stalls the survivors' I/O for ping-timeout (42 s by default)
step "volume set network.ping-timeout $PING_TIMEOUT" gl 1 volume set "$LAB_VOLUME" network.ping-timeout "$PING_TIMEOUT"
# the self-heal daemons crawl for pending entries every heal-timeout (600 s by default, range
# 5 s and up): a brick that was down is healed within seconds of its return
step "volume set cluster.heal-timeout $HEAL_TIMEOUT" gl 1 volume set "$LAB_VOLUME" cluster.heal-timeout "$HEAL_TIMEOUT"
# bounded bricks: no storage.reserve (1 % by default), so ENOSPC comes from the brick's file
# system when the space df shows is used up. With the reserve, the bricks check their free
# space only every 5 s and writes slip into the reserve meanwhile (an 8 MiB snapshot
# committed into a volume with 2 MiB free); set to 0 on a brick already refusing writes, the
# reserve check stops with its "full" flag still set and every create fails until a restart.
# Without the reserve the bricks' health check (a write into .glusterfs/ every 30 s) must go
# too: on ENOSPC it takes the brick down (SIGTERM of itself), all three at once on a full volume
if [ -n "$BRICK_SIZE" ]; then
    step "volume set storage.reserve 0" gl 1 volume set "$LAB_VOLUME" storage.reserve 0
    step "volume set storage.health-check-interval 0" gl 1 volume set "$LAB_VOLUME" storage.health-check-interval 0
fi
step "volume start" gl 1 volume start "$LAB_VOLUME"
bricks_online() {
    [ "$(gl 1 volume status "$LAB_VOLUME" --xml 2>/dev/null | python3 -c '
import sys, xml.etree.ElementTree as ET
t = ET.parse(sys.stdin)
print(sum(1 for n in t.iter("node") if n.findtext("hostname") not in ("Self-heal Daemon", "NFS Server") and n.findtext("status") == "1"))' 2>/dev/null)" = 3 ]
}
wait_until 60 bricks_online || failed "the 3 bricks are not online within 60 s: $(gl 1 volume status "$LAB_VOLUME" 2>&1 | tr '\n' '|')"

# pid_in_net_by I COMM PATTERN: the pid in host I's netns whose comm is COMM and whose
# command line holds PATTERN
pid_in_net_by() {
    local pid
    for pid in $(lab_pids_in_net "$(lab_netns "$1")"); do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || continue
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$3" && echo "$pid" && return 0
    done
    return 1
}

say "volume $LAB_VOLUME (replica 3: ${BRICKS[*]}): mounting it on $LAB_MOUNT on every host"
for ((i = 1; i <= HOSTS_N; i++)); do
    others=""
    for j in 1 2 3; do [ "$j" = "$i" ] || others+="${others:+:}$(lab_addr "$j")"; done
    step "mount the volume on h$i" lab_in "$i" mount -t glusterfs \
        -o "log-file=$(lab_logdir "$i")/mount.log,backup-volfile-servers=$others" \
        "$(lab_addr "$i"):/$LAB_VOLUME" "$LAB_MOUNT"
    pid_in_net_by "$i" glusterfs "$LAB_MOUNT" >"$(lab_pidfile "$i" mount)" ||
        failed "no glusterfs client process for h$i's mount"
    if lab_is_brick_host "$i"; then
        pid_in_net_by "$i" glusterfsd "$(lab_hdir "$i")/brick" >"$(lab_pidfile "$i" brick)" ||
            failed "no brick process (glusterfsd) on h$i"
        pid_in_net_by "$i" glusterfs glustershd >"$(lab_pidfile "$i" shd)" || rm -f "$(lab_pidfile "$i" shd)"
    fi
done

# ---------------------------------------------------------------- etcd up?

etcd_healthy() {
    local i
    for ((i = 1; i <= LAB_ETCD_HOSTS; i++)); do
        lab_client curl -sf -m 2 "$(lab_etcd_url "$i")/health" 2>/dev/null | grep -q '"health":"true"' || return 1
    done
}
wait_until 60 etcd_healthy ||
    failed "etcd is not healthy on every member within 60 s: $(tail -n 3 "$(lab_logdir 1)/etcd.log" | tr '\n' '|')"

# ---------------------------------------------------------------- repository, configs, agents

REPO="$LAB_MOUNT/repo"
step "lifeboat init $REPO" lab_in 1 "$DIR/bin/lifeboat" init --repo "$REPO"

# redis_conf I: host I's redis config (host-local, outside the data dir)
redis_conf() {
    local i=$1 H
    H="$(lab_hdir "$i")"
    cat >"$H/etc/redis.conf" <<CONF
bind $(lab_addr "$i")
port $LAB_REDIS_PORT
dir $H/redis/data
appendonly yes
appendfsync always
save ""
daemonize no
protected-mode no
logfile $(lab_logdir "$i")/redis.log
CONF
}

# pg_hba I: who may connect to host I's postgres: the lab's subnet (trust: a lab, no secrets)
pg_hba() {
    cat >"$(lab_hdir "$1")/etc/pg_hba.conf" <<CONF
local all all trust
host all all $LAB_SUBNET.0/24 trust
CONF
    chmod 644 "$(lab_hdir "$1")/etc/pg_hba.conf"
}

# endpoints_for I: every etcd member's URL, host I's own first (when it has one; LAB_ETCD_ORDER=fixed:
# h1, h2, h3 on every host), comma-separated
endpoints_for() {
    local e own="" out=""
    [ "${LAB_ETCD_ORDER:-own-first}" = fixed ] || ! lab_is_etcd_host "$1" || own="$(lab_etcd_url "$1")"
    [ -n "$own" ] && out=$own
    for e in "${ETCD_ENDPOINTS[@]}"; do [ "$e" = "$own" ] || out+="${out:+, }$e"; done
    echo "$out"
}

# agent_config I: host I's agent.yaml
agent_config() {
    local i=$1 j H A D P
    H="$(lab_hdir "$i")"
    A="$(lab_addr "$i")"
    D="$H/postgres/data/pg"
    P="$LAB_PGBIN"
    {
        cat <<YAML
# lifeboatd config of lab host h$i (written by scripts/lab/up.sh)
host: h$i
listen: $A:$LAB_API_PORT
peer_listen: $A:$LAB_PEER_PORT
repository: $REPO
coordinator:
  backend: etcd
  endpoints: [$(endpoints_for "$i")]
  prefix: /lifeboat-$PREFIX
  dial_timeout: 1s
peers:
YAML
        for ((j = 1; j <= HOSTS_N; j++)); do
            [ "$j" = "$i" ] && continue
            printf '  - host: h%s\n    api: %s:%s\n    address: %s:%s\n' \
                "$j" "$(lab_addr "$j")" "$LAB_API_PORT" "$(lab_addr "$j")" "$LAB_PEER_PORT"
        done
        echo "workloads:"
        for w in "${LAB_WORKLOADS[@]}"; do
            cat <<YAML
  - name: $w
    capture: fuse
    data_dir: $H/$w/data
    backing_dir: $H/$w/backing
    journal_dir: $H/$w/journal
    replication: $REPLICATION
    min_sync_peers: 1
    sync_timeout: 5s
    on_sync_timeout: fail
    lease_ttl: $LEASE_TTL
    standby: ${LAB_STANDBY:-cold}
YAML
            [ -n "${LAB_SNAPSHOT_EVERY:-}" ] && echo "    snapshot_every: $LAB_SNAPSHOT_EVERY"
            echo "    service:"
            if [ "$w" = redis ]; then
                cat <<YAML
      start: redis-server $H/etc/redis.conf
      health: redis-cli -h $A -p $LAB_REDIS_PORT ping
      stop: redis-cli -h $A -p $LAB_REDIS_PORT shutdown nosave
YAML
            else
                # PostgreSQL runs as the postgres user: root's start command makes the cluster
                # dir (pg/ in the data dir, postgres-owned, 0700), initdb's it through runuser
                # on the first start (a recovered data dir already holds it), then execs the
                # postmaster through setpriv (so the service pid is the postmaster's own)
                cat <<YAML
      start: cd / && mkdir -p $D && chown postgres:postgres $D && chmod 700 $D && { test -s $D/PG_VERSION || runuser -u postgres -- $P/initdb -D $D --auth=trust -U postgres -E UTF8 --locale=C --no-instructions; } && exec setpriv --reuid=postgres --regid=postgres --init-groups $P/postgres -D $D -c listen_addresses=$A -c port=$LAB_PG_PORT -c unix_socket_directories= -c hba_file=$H/etc/pg_hba.conf -c logging_collector=off -c shared_buffers=32MB
      health: $P/pg_isready -q -h $A -p $LAB_PG_PORT -U postgres -d postgres
      stop: cd / && runuser -u postgres -- $P/pg_ctl -D $D stop -m fast -w -t 20
YAML
            fi
        done
    } >"$H/agent.yaml"
}

say "agents: lifeboatd on every host (etcd coordinator, repository $REPO, workloads ${LAB_WORKLOADS[*]})"
for ((i = 1; i <= HOSTS_N; i++)); do
    redis_conf "$i"
    pg_hba "$i"
    agent_config "$i"
done
for ((i = 1; i <= HOSTS_N; i++)); do
    echo "=== $(date '+%F %T') start" >>"$(lab_logdir "$i")/agent.log"
    daemon "$i" agent "$DIR/bin/lifeboatd" --config "$(lab_hdir "$i")/agent.yaml"
done
agents_live() {
    local i
    for ((i = 1; i <= HOSTS_N; i++)); do
        lab_client curl -sf -m 2 "$(lab_api "$i")/livez" >/dev/null 2>&1 || return 1
    done
}
wait_until 60 agents_live || failed "not every agent answers /livez within 60 s: $(tail -n 3 "$(lab_logdir 1)/agent.log" | tr '\n' '|')"

# workload_primary W: exactly one agent says primary with the service running for W
FC="$ROOT/scripts/tests/failover_client.py"
workload_primary() {
    local i n=0 role state
    for ((i = 1; i <= HOSTS_N; i++)); do
        read -r role state < <(lab_client python3 "$FC" status --workload "$1" "$(lab_api "$i")" role service.state 2>/dev/null)
        [ "${role:-}" = primary ] && [ "${state:-}" = running ] && n=$((n + 1))
    done
    [ "$n" = 1 ]
}
for w in "${LAB_WORKLOADS[@]}"; do
    wait_until 180 workload_primary "$w" ||
        failed "no single primary with $w running within 180 s: $(for ((i = 1; i <= HOSTS_N; i++)); do lab_client python3 "$FC" status --workload "$w" "$(lab_api "$i")" 2>&1; echo -n '; '; done)"
done

# ---------------------------------------------------------------- the description

T_UP=$(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
export LAB_DIR LAB_PREFIX LAB_HOSTS LAB_SUBNET LAB_SW LAB_CLIENT LAB_VOLUME LAB_MOUNT LAB_NSDIR LAB_ETCD_HOSTS \
    LAB_API_PORT LAB_PEER_PORT LAB_REDIS_PORT LAB_PG_PORT LAB_ETCD_PORT LAB_CLIENT_OCTET REPO T_UP LEASE_TTL REPLICATION PING_TIMEOUT \
    HEAL_TIMEOUT LAB_BRICK_SIZE
python3 "$ROOT/scripts/lab/lab_json.py" >"$DIR/lab.json.tmp" && mv "$DIR/lab.json.tmp" "$DIR/lab.json" ||
    failed "cannot write $DIR/lab.json"
cat "$DIR/lab.json"
say "the lab is up in $T_UP s: $DIR/lab.json; a shell on h1: $(lab_shell_cmd 1); remove it: scripts/lab/down.sh --dir $DIR"
