#!/usr/bin/env python3
"""bench_service.py: the workload's service in scripts/bench/failover.sh (standard library only).

    bench_service.py --dir DATA_DIR --listen ADDR:PORT

Runs on the primary (lifeboatd starts it with the workload's `service.start`, after the data
dir is mounted and caught up). It first opens every regular file below DATA_DIR and reads its
first and last 4 KiB (what a database does when it opens its files), keeps them open, then
listens on ADDR:PORT. Any connection gets one HTTP/1.0 answer:

    200 OK  "ok files=N bytes=B open_seconds=S"

so `curl -sf http://ADDR:PORT/` is its health probe and the benchmark's "the service answers".
SIGTERM / SIGINT stop it (exit 0). A file it cannot open or read stops it with exit 1 (a data
dir that is not whole is a finding, not something to serve).
"""
import argparse
import os
import signal
import socket
import sys
import time


def open_files(root):
    fds, total = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            size = os.fstat(fd).st_size
            if size:
                os.pread(fd, 4096, 0)
                os.pread(fd, 4096, max(0, size - 4096))
            fds.append(fd)
            total += size
    return fds, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--listen", required=True, help="ADDR:PORT")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    t0 = time.perf_counter()
    try:
        fds, total = open_files(args.dir)
    except OSError as e:
        print("bench_service: cannot open the data dir's files: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)
    opened = time.perf_counter() - t0
    body = ("ok files=%d bytes=%d open_seconds=%.3f\n" % (len(fds), total, opened)).encode()
    answer = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(64)
    print("bench_service: %d files, %d bytes opened in %.3f s; listening on %s" %
          (len(fds), total, opened, args.listen), flush=True)
    try:
        while True:
            conn, _ = srv.accept()
            try:
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                except OSError:
                    pass
                conn.sendall(answer)
            except OSError:
                pass
            finally:
                conn.close()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
