#!/usr/bin/env bash
# Installs what Lifeboat needs on Debian 12 (once; safe to run again) and builds it.
#
#   scripts/setup.sh            packages + release build
#   scripts/setup.sh --no-build packages only
#
# Packages: libfuse3-dev fuse3 (capture), libzstd-dev (compression), pkg-config (build),
# attr (xattr tools for tests), util-linux (script, for terminal tests), time (peak RSS),
# python3 (benchmark data, file-operation tests), restic and borgbackup (benchmark peers),
# curl (agent API from scripts), sqlite3 redis-server postgresql postgresql-contrib (real
# services inside a captured data dir; the Debian services are disabled, tests start their
# own), fio (capture benchmark), rsync (failover benchmark's comparison), etcd-server etcd-client
# (the etcd coordinator: its tests start their own etcd from /usr/bin/etcd; etcdctl to inspect it),
# glusterfs-server glusterfs-client iproute2 (the lab, scripts/lab/: one glusterd per host
# namespace, the volume's FUSE mounts, `ip netns`; it runs its own glusterds and leaves a system one alone),
# xfsprogs (mkfs.xfs for the lab's bounded bricks, `up.sh --brick-size`; losetup is in util-linux's mount).
#
# As root it runs apt-get itself; as another user through sudo (a fresh Debian 12 has no sudo:
# run it as root there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LB_SCRIPT=setup
. scripts/lib/common.sh

packages=(libfuse3-dev fuse3 libzstd-dev pkg-config attr util-linux time python3 restic borgbackup
    curl sqlite3 redis-server postgresql postgresql-contrib fio rsync etcd-server etcd-client
    glusterfs-server glusterfs-client iproute2 xfsprogs)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" != "--no-build" ]]; then
    echo "setup: building lifeboat and lifeboatd (release)" >&2
    swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
    test -x .build/release/lifeboat && test -x .build/release/lifeboatd || { echo "setup: build failed" >&2; exit 1; }
fi
