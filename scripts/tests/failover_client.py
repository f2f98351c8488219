#!/usr/bin/env python3
"""failover_client.py: the client side of failover-redis.sh (standard library only).

  failover_client.py write --agents URL[,URL...] --acks LOG [--port 6390] [--seconds S]
                           [--stop FILE] [--prefix key] [--start 0] [--seed N] [--workload redis]
                           [--detail]
      Finds the primary by polling every agent's GET /v1/status every 0.2 s (role "primary"
      and service state "running"; the highest epoch if several say so), connects to redis on
      that agent's address (the host part of its URL) and sends SET PREFIX:<counter> <value>,
      one at a time. After each +OK reply it appends "KEY SHA256-OF-VALUE" to LOG and flushes.
      On a connection error, a timeout or an error reply it finds the primary again and goes
      on with the next counter (the SET that got no +OK may or may not exist). Stops after S
      seconds or as soon as FILE exists. Progress goes to stdout; the last line is
      "writer: acked=N unacked=N errors=N reconnects=N next=PREFIX:N hosts=h1:N,h2:N".
      With --detail each LOG line goes on with who acknowledged it and when:
      "KEY SHA256-OF-VALUE HOST EPOCH UNIX-TIME" (HOST and EPOCH as the status API named them
      when the writer connected, UNIX-TIME when the +OK arrived, in seconds with microseconds).

  failover_client.py check --host ADDR --port PORT --acks LOG [--acks LOG ...] [--wait 30]
      Reads every key of the logs (their first two columns) from redis (MGET; waits up to --wait s for redis to answer
      and finish loading) and compares the sha256 of each value with the logged one. Prints
      "check: acked=N ok=N missing=N wrong=N dbsize=N", the first missing / wrong keys, and
      "lost acknowledged writes: N" (missing + wrong). Exit 0 when redis was read (whatever
      was found), 1 when it could not be read.

  failover_client.py status [--workload redis] URL [FIELD ...]
      GET URL/v1/status. With FIELDs (paths into the workload's object: role, epoch,
      service.state, service.pid, lastRecovery.deltaBytes, peers[h2].connected, ...) prints
      their values on one line, separated by spaces: "-" for null or missing, true/false for
      booleans, whitespace in strings replaced by "_". Without FIELDs: one summary line.
      camelCase and snake_case spellings of a key both match. Exit 2, printing nothing, when
      the agent does not answer (or answers no JSON).

  failover_client.py post [--data JSON] [--timeout 120] URL [FIELD ...]
      POST to URL (an empty body without --data). Prints the HTTP code, then the FIELDs of the
      JSON answer (top-level paths, as above) or, without FIELDs, the compact answer. Exit 0
      for a 2xx answer, 1 for any other code, 2 when nothing answered (code printed as 000).
"""
import argparse
import hashlib
import json
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from agent_status import MISSING, fetch_workload, fmt, resolve  # noqa: E402

def summary(host, w):
    if w is None:
        return "%s no such workload" % host
    out = [host] + ["%s=%s" % (k, fmt(resolve(w, k))) for k in ("role", "epoch", "position", "durable")]
    out.append("service=%s/%s" % (fmt(resolve(w, "service.state")), fmt(resolve(w, "service.pid"))))
    peers = resolve(w, "peers")
    if isinstance(peers, list):
        out.append("peers=" + ",".join(
            "%s:%s:acked=%s:lag=%s" % (fmt(resolve(p, "host")),
                                       "up" if resolve(p, "connected") is True else "down",
                                       fmt(resolve(p, "acked")), fmt(resolve(p, "lag")))
            for p in peers))
    snap = resolve(w, "newestSnapshot")
    if isinstance(snap, dict):
        out.append("snapshot=%s@%s" % (fmt(resolve(snap, "id"))[:12], fmt(resolve(snap, "position"))))
    rec = resolve(w, "lastRecovery")
    if isinstance(rec, dict):
        out.append("recovery=epoch:%s,total:%ss,delta:%sB@%s,snapshot:%sB" % tuple(
            fmt(resolve(rec, k)) for k in ("epoch", "totalSeconds", "deltaBytes", "deltaPeer", "snapshotBytes")))
    return " ".join(out)


def cmd_status(a):
    try:
        host, w = fetch_workload(a.url, a.workload, a.timeout)
    except (OSError, ValueError, urllib.error.URLError) as e:
        print("status: %s: %s" % (a.url, e), file=sys.stderr)
        return 2
    if not a.fields:
        print(summary(host, w))
    else:
        print(" ".join(fmt(resolve(w, f) if w is not None else MISSING) for f in a.fields))
    return 0


def cmd_post(a):
    data = a.data.encode() if a.data is not None else b""
    req = urllib.request.Request(a.url, data=data, method="POST")
    if a.data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=a.timeout) as r:
            code, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        print("000 unreachable: %s" % fmt(str(e)))
        return 2
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(text) if text.strip() else None
    except ValueError:
        doc = MISSING
    if a.fields:
        vals = [fmt(resolve(doc, f)) if isinstance(doc, dict) else "-" for f in a.fields]
        print(" ".join(["%03d" % code] + vals))
    elif doc is MISSING:
        print("%03d %s" % (code, " ".join(text.split())[:400]))
    else:
        print("%03d %s" % (code, json.dumps(doc, separators=(",", ":"))[:400]))
    return 0 if 200 <= code < 300 else 1


# ---------------------------------------------------------------- RESP over TCP

class ErrorReply(str):
    """A "-ERR ..." reply (returned, not raised)."""


class Redis:
    """A RESP connection over TCP (HOST, PORT), or over the unix socket UNIX (capture-redis.sh)."""
    def __init__(self, host, port, timeout, unix=None):
        if unix is None:
            self.s = socket.create_connection((host, port), timeout=timeout)
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            self.s = socket.socket(socket.AF_UNIX)
            self.s.settimeout(timeout)
            self.s.connect(unix)
        self.f = self.s.makefile("rb")

    def close(self):
        for x in (self.f, self.s):
            try:
                x.close()
            except OSError:
                pass

    def send(self, cmds):
        """Sends the commands (argument tuples) at once; their replies come by reply()."""
        out = []
        for args in cmds:
            out.append(b"*%d\r\n" % len(args))
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))

    def call(self, *args):
        self.send([args])
        return self.reply()

    def reply(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return ErrorReply(rest.decode("utf-8", "replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            if len(data) < n + 2:
                raise ConnectionError("connection closed")
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError("bad reply %r" % line[:80])


def sha(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- writer

def say(msg):
    print("%s %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def find_primary(agents, workload, stopping):
    """(epoch, url, host name) of the agent that reports role primary with its service
    running (the highest epoch if several do); None when told to stop first."""
    while True:
        best = None
        for url in agents:
            try:
                host, w = fetch_workload(url, workload, 1.0)
            except (OSError, ValueError, urllib.error.URLError):
                continue
            if w is None or resolve(w, "role") != "primary" or resolve(w, "service.state") != "running":
                continue
            epoch = resolve(w, "epoch")
            epoch = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else -1
            if best is None or epoch > best[0]:
                best = (epoch, url, host)
        if best is not None:
            return best
        if stopping():
            return None
        time.sleep(0.2)


def run_writer(a, workload, connect, write_one):
    """The writer loop both writers share: follows the primary of `workload` among a.agents
    until a.seconds pass or a.stop exists, writes distinct keys a.prefix:N, and logs a key to
    a.acks only after the service acknowledged it ("KEY SHA256 HOST EPOCH TIME" with
    a.detail, else "KEY SHA256"). connect(addr) returns a session (or raises OSError);
    write_one(session, key, rnd) returns (acknowledged, value bytes, note for a refusal) or
    raises OSError when the session broke. A refusal or a broken session counts the key as
    unacknowledged and finds the primary again. Prints the summary line at the end."""
    agents = [u.rstrip("/") for u in a.agents.split(",") if u.strip()]
    rnd = random.Random(a.seed)
    end = time.monotonic() + a.seconds

    def stopping():
        return time.monotonic() >= end or (a.stop is not None and os.path.exists(a.stop))

    counter = a.start
    acked = unacked = errors = reconnects = 0
    per_host = {}
    session, host, epoch = None, None, None
    say("writer: agents %s, prefix %s, seed %d" % (",".join(agents), a.prefix, a.seed))
    with open(a.acks, "a") as log:
        while not stopping():
            if session is None:
                found = find_primary(agents, workload, stopping)
                if found is None:
                    break
                epoch, url, host = found
                addr = urllib.parse.urlsplit(url).hostname
                try:
                    session = connect(addr)
                except OSError as e:
                    say("cannot use %s on %s (%s:%d): %s" % (workload, host, addr, a.port, e))
                    time.sleep(0.2)
                    continue
                say("writing to %s (%s:%d, epoch %s) from %s:%d" % (host, addr, a.port, epoch, a.prefix, counter))
            key = "%s:%d" % (a.prefix, counter)
            counter += 1
            try:
                ok, value, note = write_one(session, key, rnd)
            except OSError as e:
                unacked += 1
                reconnects += 1
                say("%s went away at %s (not acknowledged): %s" % (host, key, e))
                session.close()
                session = None
                continue
            if ok:
                if a.detail:
                    log.write("%s %s %s %s %.6f\n" % (key, sha(value), host, epoch, time.time()))
                else:
                    log.write("%s %s\n" % (key, sha(value)))
                log.flush()
                acked += 1
                per_host[host] = per_host.get(host, 0) + 1
            else:
                unacked += 1
                errors += 1
                reconnects += 1
                if errors <= 50:
                    say("%s answered %s with %s (not acknowledged); finding the primary again" % (host, key, note))
                session.close()
                session = None
                time.sleep(0.2)
    if session is not None:
        session.close()
    print("writer: acked=%d unacked=%d errors=%d reconnects=%d next=%s:%d hosts=%s" % (
        acked, unacked, errors, reconnects, a.prefix, counter,
        ",".join("%s:%d" % kv for kv in sorted(per_host.items())) or "-"), flush=True)
    return 0


def cmd_write(a):
    def write_one(conn, key, rnd):
        size = rnd.choice((8, 64, 512, 4096))
        value = ("%s=%0*x" % (key, size, rnd.getrandbits(size * 4))).encode()
        try:
            r = conn.call(b"SET", key.encode(), value)
        except ValueError as e:
            raise OSError(str(e))
        return r == "OK" and not isinstance(r, ErrorReply), value, "SET %r" % (r,)

    return run_writer(a, a.workload, lambda addr: Redis(addr, a.port, a.timeout), write_one)


# ---------------------------------------------------------------- checker

def key_order(k):
    prefix, _, n = k.rpartition(":")
    return (prefix, int(n)) if n.isdigit() else (k, -1)


def ready_conn(host, port, deadline):
    """A connection once redis answers PING with PONG (not -LOADING); None at the deadline."""
    last = "no attempt"
    while True:
        c = None
        try:
            c = Redis(host, port, 10)
            r = c.call("PING")
            if r == "PONG" and not isinstance(r, ErrorReply):
                return c
            last = "PING answered %r" % r
        except OSError as e:
            last = str(e)
        if c is not None:
            c.close()
        if time.monotonic() >= deadline:
            print("check: redis at %s:%d did not answer: %s" % (host, port, last))
            return None
        time.sleep(0.2)


def cmd_check(a):
    want = {}
    for path in a.acks:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.endswith("\n"):
                    continue  # a torn last line was never acknowledged as written
                parts = line.split()
                if len(parts) >= 2 and len(parts[1]) == 64:
                    want[parts[0]] = parts[1]
    deadline = time.monotonic() + a.wait
    conn = ready_conn(a.host, a.port, deadline)
    if conn is None:
        return 1
    keys = sorted(want, key=key_order)
    got = {}
    i = 0
    try:
        while i < len(keys):
            part = keys[i:i + 500]
            r = conn.call("MGET", *part)
            if isinstance(r, ErrorReply):
                if r.startswith("LOADING") and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                print("check: MGET failed: %s" % r)
                return 1
            if not isinstance(r, list) or len(r) != len(part):
                print(("check: MGET answered %r" % (r,))[:200])
                return 1
            got.update(zip(part, r))
            i += len(part)
        dbsize = conn.call("DBSIZE")
    except OSError as e:
        print("check: lost the connection to redis at %s:%d: %s" % (a.host, a.port, e))
        return 1
    finally:
        conn.close()
    missing = [k for k in keys if got.get(k) is None]
    wrong = [k for k in keys if got.get(k) is not None and sha(got[k]) != want[k]]
    print("check: acked=%d ok=%d missing=%d wrong=%d dbsize=%s" % (
        len(keys), len(keys) - len(missing) - len(wrong), len(missing), len(wrong), dbsize))
    if missing:
        shown = missing if len(missing) <= 15 else missing[:10] + ["..."] + missing[-5:]
        print("missing: %s" % " ".join(shown))
    if wrong:
        print("wrong value: %s" % " ".join(wrong[:10]))
    print("lost acknowledged writes: %d" % (len(missing) + len(wrong)))
    return 0


# ---------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description="redis writer, checker and status helper for failover-redis.sh")
    sub = p.add_subparsers(dest="cmd", required=True)

    w = sub.add_parser("write")
    w.add_argument("--agents", required=True, help="agent API URLs, comma-separated")
    w.add_argument("--acks", required=True)
    w.add_argument("--port", type=int, default=6390)
    w.add_argument("--seconds", type=float, default=60.0)
    w.add_argument("--stop")
    w.add_argument("--prefix", default="key")
    w.add_argument("--start", type=int, default=0)
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--workload", default="redis")
    w.add_argument("--timeout", type=float, default=15.0, help="seconds a reply may take")
    w.add_argument("--detail", action="store_true",
                   help="log host, epoch and time of each acknowledgement after key and sha256")

    c = sub.add_parser("check")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, default=6390)
    c.add_argument("--acks", required=True, action="append")
    c.add_argument("--wait", type=float, default=30.0)

    s = sub.add_parser("status")
    s.add_argument("--workload", default="redis")
    s.add_argument("--timeout", type=float, default=3.0)
    s.add_argument("url")
    s.add_argument("fields", nargs="*")

    o = sub.add_parser("post")
    o.add_argument("--data")
    o.add_argument("--timeout", type=float, default=120.0)
    o.add_argument("url")
    o.add_argument("fields", nargs="*")

    a = p.parse_args()
    return {"write": cmd_write, "check": cmd_check, "status": cmd_status, "post": cmd_post}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
