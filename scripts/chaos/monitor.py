#!/usr/bin/env python3
"""monitor.py: who says primary, sampled every 0.2 s from inside each host (scripts/chaos/run.sh).

  monitor.py --workload W --out FILE --stop FILE HOST=NETNS=URL [HOST=NETNS=URL ...]   (as root)

One thread per host enters that host's network namespace (setns on /run/netns/NETNS, which
affects the calling thread only) and polls URL/v1/status there, so a host whose link is cut
is still asked (through its own address, which is local to it). Every 0.2 s the main thread
appends one JSON line to FILE: {"t": UNIX-TIME, "hosts": {HOST: {"role", "epoch", "service",
"age"} or null}}: each host's latest answer, null when it has not answered for 1 s (a frozen
or killed agent). Stops as soon as the stop FILE exists.
"""
import argparse
import ctypes
import json
import os
import sys
import threading
import time
import urllib.error

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from agent_status import fetch_workload, resolve  # noqa: E402

CLONE_NEWNET = 0x40000000
FRESH_SECONDS = 1.0
PERIOD = 0.2

libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(name):
    fd = os.open("/run/netns/%s" % name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns %s: %s" % (name, os.strerror(err)))
    finally:
        os.close(fd)


def plain(v):
    """A JSON value as is; None for a missing one."""
    return v if isinstance(v, (str, int, float, bool)) else None


class Poller(threading.Thread):
    def __init__(self, host, netns, url, workload, stop):
        super().__init__(daemon=True)
        self.host, self.netns, self.url, self.workload, self.stop = host, netns, url.rstrip("/"), workload, stop
        self.latest = None  # (monotonic time, dict)
        self.error = None

    def run(self):
        try:
            enter_netns(self.netns)
        except OSError as e:
            self.error = str(e)
            return
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                _, w = fetch_workload(self.url, self.workload, 0.8)
                self.latest = (time.monotonic(), {
                    "role": plain(resolve(w, "role")),
                    "epoch": plain(resolve(w, "epoch")),
                    "service": plain(resolve(w, "service.state")),
                })
            except (OSError, ValueError, urllib.error.URLError):
                pass
            self.stop.wait(max(0.0, PERIOD - (time.monotonic() - t0)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stop", required=True)
    p.add_argument("hosts", nargs="+", help="HOST=NETNS=URL")
    a = p.parse_args()
    stop = threading.Event()
    pollers = []
    for spec in a.hosts:
        parts = spec.split("=", 2)
        if len(parts) != 3:
            print("monitor.py: '%s' is not HOST=NETNS=URL" % spec, file=sys.stderr)
            return 2
        pollers.append(Poller(parts[0], parts[1], parts[2], a.workload, stop))
    for t in pollers:
        t.start()
    with open(a.out, "a") as out:
        while not os.path.exists(a.stop):
            time.sleep(PERIOD)
            now = time.monotonic()
            hosts = {}
            for t in pollers:
                if t.error:
                    print("monitor.py: %s: %s" % (t.host, t.error), file=sys.stderr)
                    return 1
                seen = t.latest
                if seen is None or now - seen[0] > FRESH_SECONDS:
                    hosts[t.host] = None
                else:
                    hosts[t.host] = dict(seen[1], age=round(now - seen[0], 3))
            out.write(json.dumps({"t": round(time.time(), 3), "hosts": hosts}, separators=(",", ":")) + "\n")
            out.flush()
    stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
