#!/usr/bin/env python3
"""pg_client.py: the PostgreSQL writer and checker of scripts/chaos/run.sh (psql, no driver).

  pg_client.py write --agents URL[,URL...] --acks LOG [--port 5432] [--seconds S] [--stop FILE]
                     [--prefix key] [--seed N] [--timeout 3]
      Finds the primary of workload "postgres" like failover_client.py write, keeps one psql
      session to it and INSERTs one row per statement (autocommit: each row its own committed
      transaction) into chaos_rows(k, v), RETURNING k. psql prints the key only after the server
      answered the whole statement, commit included; only then "KEY SHA256-OF-VALUE HOST EPOCH
      UNIX-TIME" is appended to LOG (the format of failover_client.py write --detail). No answer
      within --timeout, an error or a closed session: the row counts as unacknowledged, and it
      finds the primary again. The last line: "writer: acked=N unacked=N errors=N reconnects=N next=KEY hosts=...".

  pg_client.py check --host ADDR [--port 5432] --acks LOG [--wait 30]
      Reads every row of chaos_rows and compares it with the log. Prints "check: acked=N ok=N
      missing=N wrong=N dbsize=N" and "lost acknowledged writes: N"; exit 1 when it cannot read.
"""
import argparse
import hashlib
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from failover_client import run_writer  # noqa: E402

TABLE = "chaos_rows"


def psql_args(host, port):
    return ["psql", "-h", host, "-p", str(port), "-U", "postgres", "-d", "postgres",
            "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=0"]


class Session:
    """One psql process; statements on stdin, answers (one line each) on stdout."""

    def __init__(self, host, port):
        self.p = subprocess.Popen(psql_args(host, port), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, bufsize=0)
        self.buf = b""

    def line(self, timeout):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer within %.1f s" % timeout)
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    raise ConnectionError("psql ended")
                self.buf += chunk
        out, _, self.buf = self.buf.partition(b"\n")
        return out.decode("utf-8", "replace")

    def ask(self, sql, timeout):
        self.p.stdin.write((sql + "\n").encode())
        return self.line(timeout)

    def close(self):
        try:
            self.p.kill()
            self.p.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def cmd_write(a):
    def connect(addr):
        s = Session(addr, a.port)
        try:
            ans = s.ask("CREATE TABLE IF NOT EXISTS %s (k text PRIMARY KEY, v text NOT NULL); SELECT 'ready';"
                        % TABLE, a.timeout)
            while ans != "ready":
                ans = s.line(a.timeout)
        except (OSError, TimeoutError, ConnectionError) as e:
            s.close()
            raise OSError(str(e))
        return s

    def write_one(s, key, rnd):
        value = "%s=%x" % (key, rnd.getrandbits(rnd.choice((32, 256, 2048))))
        try:
            ans = s.ask("INSERT INTO %s (k, v) VALUES ('%s', '%s') RETURNING k;" % (TABLE, key, value), a.timeout)
        except (OSError, TimeoutError, ConnectionError) as e:
            ans = "(%s)" % e
        return ans == key, value.encode(), ans[:200]

    a.start, a.detail = 0, True
    return run_writer(a, "postgres", connect, write_one)


def cmd_check(a):
    want = {}
    with open(a.acks, encoding="utf-8", errors="replace") as f:
        for line in f:
            p = line.split()
            if line.endswith("\n") and len(p) >= 2 and len(p[1]) == 64:
                want[p[0]] = p[1]
    deadline = time.monotonic() + a.wait
    while True:
        r = subprocess.run(psql_args(a.host, a.port) + ["-v", "ON_ERROR_STOP=1", "-F", "\t", "-c",
                           "SELECT k, v FROM %s" % TABLE], capture_output=True, text=True, timeout=120)
        if r.returncode == 0:
            break
        if time.monotonic() >= deadline:
            print("check: postgres at %s:%d could not be read: %s" % (a.host, a.port, r.stdout.strip() or r.stderr.strip()))
            return 1
        time.sleep(0.5)
    got = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition("\t")
        if k:
            got[k] = v
    missing = [k for k in want if k not in got]
    wrong = [k for k in want if k in got and sha(got[k]) != want[k]]
    print("check: acked=%d ok=%d missing=%d wrong=%d dbsize=%d" % (
        len(want), len(want) - len(missing) - len(wrong), len(missing), len(wrong), len(got)))
    if missing:
        print("missing: %s" % " ".join(missing[:15]))
    if wrong:
        print("wrong value: %s" % " ".join(wrong[:10]))
    print("lost acknowledged writes: %d" % (len(missing) + len(wrong)))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--agents", required=True)
    w.add_argument("--acks", required=True)
    w.add_argument("--port", type=int, default=5432)
    w.add_argument("--seconds", type=float, default=60.0)
    w.add_argument("--stop")
    w.add_argument("--prefix", default="key")
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--timeout", type=float, default=3.0)
    c = sub.add_parser("check")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, default=5432)
    c.add_argument("--acks", required=True)
    c.add_argument("--wait", type=float, default=30.0)
    a = p.parse_args()
    return {"write": cmd_write, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
