#!/usr/bin/env python3
"""lab_json.py: the lab's JSON description (scripts/lab/up.sh writes it to DIR/lab.json).

Reads the names up.sh exported (LAB_DIR, LAB_PREFIX, LAB_HOSTS, LAB_SUBNET, ports, ...) and the
pid files in LAB_DIR/pids/; the layout is the one scripts/lib/lab.sh describes. Standard
library only.
"""
import json
import os

E = os.environ
D = E["LAB_DIR"]
P = E["LAB_PREFIX"]
N = int(E["LAB_HOSTS"])
SUBNET = E["LAB_SUBNET"]
ETCD_HOSTS = int(E["LAB_ETCD_HOSTS"])
API, PEER = int(E["LAB_API_PORT"]), int(E["LAB_PEER_PORT"])
REDIS, PG, ETCD = int(E["LAB_REDIS_PORT"]), int(E["LAB_PG_PORT"]), int(E["LAB_ETCD_PORT"])
WORKLOADS = ("redis", "postgres")


def addr(i):
    return "%s.%d" % (SUBNET, i)


def pids(i):
    out = {}
    for name in ("agent", "etcd", "glusterd", "brick", "shd", "mount"):
        try:
            with open(os.path.join(D, "pids", "h%d.%s" % (i, name))) as f:
                out[name] = int(f.read().strip())
        except (OSError, ValueError):
            pass
    return out


def loop_device(i):
    """the loop device under host i's brick (up.sh --brick-size), or None"""
    try:
        with open(os.path.join(D, "pids", "h%d.loop" % i)) as f:
            return f.read().strip() or None
    except OSError:
        return None


def host(i):
    h = "%s/hosts/h%d" % (D, i)
    netns = "%s-h%d" % (P, i)
    mntns = "%s/h%d.mnt" % (E["LAB_NSDIR"], i)
    link = "%s-h%d" % (P, i)
    return {
        "name": "h%d" % i,
        "netns": netns,
        "mount_ns": mntns,
        "address": addr(i),
        "link": link,
        "link_netns": E["LAB_SW"],
        "partition": "ip -n %s link set %s down" % (E["LAB_SW"], link),
        "heal": "ip -n %s link set %s up" % (E["LAB_SW"], link),
        "api": "http://%s:%d" % (addr(i), API),
        "peer": "%s:%d" % (addr(i), PEER),
        "etcd": "http://%s:%d" % (addr(i), ETCD) if i <= ETCD_HOSTS else None,
        "dirs": {
            "root": h,
            "brick": h + "/brick" if i <= 3 else None,
            "brick_device": loop_device(i) if i <= 3 else None,
            "etcd": h + "/etcd" if i <= ETCD_HOSTS else None,
            "backing": {w: "%s/%s/backing" % (h, w) for w in WORKLOADS},
            "journal": {w: "%s/%s/journal" % (h, w) for w in WORKLOADS},
            "data": {w: "%s/%s/data" % (h, w) for w in WORKLOADS},
        },
        "config": h + "/agent.yaml",
        "logs": "%s/logs/h%d" % (D, i),
        "shell": "nsenter --mount=%s --net=/run/netns/%s -- bash" % (mntns, netns),
        "pids": pids(i),
    }


client_addr = "%s.%s" % (SUBNET, E["LAB_CLIENT_OCTET"])
lab = {
    "dir": D,
    "prefix": P,
    "subnet": SUBNET + ".0/24",
    "up_seconds": float(E["T_UP"]),
    "switch": {"netns": E["LAB_SW"], "bridge": "br0"},
    "client": {
        "netns": E["LAB_CLIENT"],
        "address": client_addr,
        "link": "%s-client" % P,
        "shell": "ip netns exec %s bash" % E["LAB_CLIENT"],
    },
    "etcd": {"endpoints": ["http://%s:%d" % (addr(i), ETCD) for i in range(1, ETCD_HOSTS + 1)],
             "prefix": "/lifeboat-" + P},
    "volume": {
        "name": E["LAB_VOLUME"],
        "replica": 3,
        "mount": E["LAB_MOUNT"],
        "bricks": ["%s:%s/hosts/h%d/brick" % (addr(i), D, i) for i in (1, 2, 3)],
        "repository": E["REPO"],
        "ping_timeout": int(E["PING_TIMEOUT"]),
        "heal_timeout": int(E["HEAL_TIMEOUT"]),
        "brick_size": E.get("LAB_BRICK_SIZE") or None,
    },
    "hosts": [host(i) for i in range(1, N + 1)],
    "workloads": [
        {"name": "redis", "port": REDIS, "replication": E["REPLICATION"], "lease_ttl": E["LEASE_TTL"],
         "service_addresses": ["%s:%d" % (addr(i), REDIS) for i in range(1, N + 1)],
         "user": "root"},
        {"name": "postgres", "port": PG, "replication": E["REPLICATION"], "lease_ttl": E["LEASE_TTL"],
         "service_addresses": ["%s:%d" % (addr(i), PG) for i in range(1, N + 1)],
         "user": "postgres", "database": "postgres"},
    ],
}
print(json.dumps(lab, indent=2))
