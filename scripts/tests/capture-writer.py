#!/usr/bin/env python3
"""A service stand-in for the capture tests: mixed writes into a data dir until a stop file
appears. Seeded, so a failure can be replayed: writes at random offsets (some fsync'd),
appends, truncates, creates, renames over existing files, hard links, unlinks (also of open
files), mkdir/rmdir, chmod, utime, xattrs.

usage: capture-writer.py DATA_DIR STOP_FILE SEED [OPS_PER_SECOND]
"""
import os
import random
import sys
import time

data, stop, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 400.0
rng = random.Random(seed)
os.makedirs(os.path.join(data, "db"), exist_ok=True)
os.makedirs(os.path.join(data, "logs"), exist_ok=True)
files = [os.path.join(data, "db", f"table{i}") for i in range(4)]
for path in files:
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(os.urandom(256 * 1024))
open_fds = []
ops = 0
start = time.monotonic()


def small_name(directory):
    return os.path.join(data, directory, f"f{rng.randrange(12)}")


while not os.path.exists(stop):
    op = rng.random()
    try:
        if op < 0.45:
            fd = os.open(rng.choice(files), os.O_RDWR)
            os.pwrite(fd, rng.randbytes(rng.choice([512, 4096, 8192, 20000])), rng.randrange(0, 400 * 1024))
            if rng.random() < 0.3:
                os.fsync(fd)
            os.close(fd)
        elif op < 0.55:
            with open(os.path.join(data, "logs", "wal"), "ab") as f:
                f.write(rng.randbytes(rng.randrange(1, 3000)))
                if rng.random() < 0.5:
                    os.fdatasync(f.fileno())
        elif op < 0.6:
            os.truncate(rng.choice(files), rng.randrange(100 * 1024, 420 * 1024))
        elif op < 0.68:
            with open(small_name("logs"), "wb") as f:
                f.write(rng.randbytes(rng.randrange(0, 5000)))
        elif op < 0.74:
            os.rename(small_name("logs"), small_name(rng.choice(["logs", "db"])))
        elif op < 0.78:
            os.link(small_name("logs"), small_name("db"))
        elif op < 0.83:
            os.unlink(small_name(rng.choice(["logs", "db"])))
        elif op < 0.86:
            fd = os.open(small_name("logs"), os.O_RDWR)
            open_fds.append(fd)
        elif op < 0.88 and open_fds:
            fd = open_fds.pop()
            os.pwrite(fd, b"written while maybe unlinked", 0)
            os.close(fd)
        elif op < 0.9:
            os.mkdir(os.path.join(data, f"dir{rng.randrange(3)}"))
        elif op < 0.92:
            os.rmdir(os.path.join(data, f"dir{rng.randrange(3)}"))
        elif op < 0.95:
            os.chmod(small_name("logs"), rng.choice([0o600, 0o644, 0o640]))
        elif op < 0.97:
            t = rng.randrange(10**9, 2 * 10**9) * 10**9 + rng.randrange(10**9)
            os.utime(small_name("logs"), ns=(t, t))
        else:
            os.setxattr(small_name("logs"), "user.v", rng.randbytes(rng.randrange(1, 40)))
    except (FileNotFoundError, FileExistsError, OSError) as error:
        if error.errno not in (2, 17, 39, 21, 20):  # ENOENT EEXIST ENOTEMPTY EISDIR ENOTDIR
            raise
    ops += 1
    ahead = ops / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
for fd in open_fds:
    os.close(fd)
print(f"writer: {ops} operations")
