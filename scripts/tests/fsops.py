#!/usr/bin/env python3
"""fsops.py: seeded, reproducible, randomized differential file-operation tester.

    python3 fsops.py --seed S --ops N [--verbose] [--stats] DIR_A DIR_B

DIR_A is the directory under test (e.g. a FUSE mount), DIR_B a plain directory on a native
filesystem; both start empty (or with identical content). Each of the N random operations is
done on both directories with the same arguments, and its outcome (return value, or the errno
name of the error) must be the same on both. After every step the paths and open descriptors
the step touched are compared, every 100 steps and at the end the whole trees: per entry the
type, st_mode, uid, gid, nlink, size (not of directories), content, symlink target, sorted
listing (directories), user.* xattrs (names starting user.lifeboat. are ignored), the hard-link
groups, and st_mtime_ns of entries whose mtime was set with os.utime(ns=...) and has not changed
since on DIR_B (an operation on the entry's data or size ends that: filesystems differ on whether
e.g. a truncate to the same size updates mtime). atime, ctime, directory sizes and st_blocks are
not compared.

The first difference prints `MISMATCH step K op ...: <what differs>`, the seed and the last 20
operations, and exits 1. Otherwise it ends with `fsops: N ops, seed S, OK` and exits 0.
The run depends only on the seed (and on the outcomes on DIR_B), so a failure replays with the
same seed on two new empty directories, and --ops K-1 stops just before step K, to look at the
state a failing step starts from. --verbose prints each operation, --stats the outcome counts
per operation. Python 3 standard library only; Linux only; run as root for chown.
"""

import argparse
import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import random
import stat
import struct
import sys
from collections import deque

# ---------------------------------------------------------------------------- constants

NAMES = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "sp ace", "\u00e9t\u00e9", ".hid"]
BIG_PREFIX = "big."          # large-directory tests; never produced by the random namespace
BIG_PERIOD = 1200            # steps between two large-directory tests
SOFT_CAP = 40                # entries above which removals are favoured
MAX_FDS = 10                 # open descriptor pairs kept across steps
MAX_FILE = 3 * 1024 * 1024   # writes/truncates stay below this size
ALIGN = 4096                 # O_DIRECT offsets, sizes and buffers
XATTR_NAMES = ["user.a", "user.b", "user.long.attribute.name", "user.x"]

O_DIRECT = getattr(os, "O_DIRECT", 0o40000)
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100
F_OFD_GETLK = 36
F_OFD_SETLK = 37
FLOCK_FMT = "hhqqi4x"  # struct flock on 64-bit Linux

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
LIBC.fallocate.restype = ctypes.c_int
LIBC.syscall.restype = ctypes.c_long
SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "riscv64": 276}.get(os.uname().machine)
try:
    _renameat2 = LIBC.renameat2
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _renameat2.restype = ctypes.c_int
except AttributeError:
    _renameat2 = None


def _raise_errno(path=None):
    e = ctypes.get_errno()
    raise OSError(e, os.strerror(e), path)


def renameat2(src, dst, flags):
    s, d = os.fsencode(src), os.fsencode(dst)
    if _renameat2 is not None:
        rc = _renameat2(AT_FDCWD, s, AT_FDCWD, d, flags)
    elif SYS_RENAMEAT2 is not None:
        rc = LIBC.syscall(ctypes.c_long(SYS_RENAMEAT2), ctypes.c_long(AT_FDCWD), ctypes.c_char_p(s),
                          ctypes.c_long(AT_FDCWD), ctypes.c_char_p(d), ctypes.c_long(flags))
    else:
        raise OSError(errno.ENOSYS, "renameat2 unavailable")
    if rc != 0:
        _raise_errno(src)


def fallocate(fd, mode, off, length):
    if LIBC.fallocate(fd, mode, off, length) != 0:
        _raise_errno()


def errname(e):
    if isinstance(e, OSError):
        if e.errno is None:
            return "OSError(%s)" % e
        return errno.errorcode.get(e.errno, "E%d" % e.errno)
    return "%s(%s)" % (type(e).__name__, e)


def short(v, limit=120):
    """A printable form of an outcome, cut for long bytes."""
    if isinstance(v, (bytes, bytearray)):
        if len(v) > 32:
            return "<%d bytes sha256 %s>" % (len(v), hashlib.sha256(v).hexdigest()[:12])
        return repr(bytes(v))
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + "..."


def first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(0, n, 4096):
        if a[i:i + 4096] != b[i:i + 4096]:
            for j in range(i, min(i + 4096, n)):
                if a[j] != b[j]:
                    return j
    return n


def describe_diff(a, b):
    if isinstance(a, (bytes, bytearray)) and isinstance(b, (bytes, bytearray)):
        off = first_diff(a, b)
        return "A %s, B %s, first difference at byte %d (A %r, B %r)" % (
            short(a), short(b), off, bytes(a[off:off + 8]), bytes(b[off:off + 8]))
    return "A %s, B %s" % (short(a), short(b))


class Mismatch(Exception):
    pass


class Slot:
    """One descriptor pair in the pool: the same open on both sides."""

    def __init__(self, sid, path, flags, fda, fdb):
        self.sid, self.path, self.flags = sid, path, flags
        self.fd = [fda, fdb]
        self.direct = bool(flags & O_DIRECT)

    def readable(self):
        return (self.flags & os.O_ACCMODE) in (os.O_RDONLY, os.O_RDWR)

    def name(self):
        return "fd#%d(%s)" % (self.sid, self.path)


def flags_str(flags):
    acc = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}[flags & os.O_ACCMODE]
    parts = [acc]
    for name in ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_NOFOLLOW", "O_DIRECTORY"):
        if flags & getattr(os, name):
            parts.append(name)
    if flags & O_DIRECT:
        parts.append("O_DIRECT")
    return "|".join(parts)


def aligned_buffer(n):
    """A page-aligned writable buffer of at least n bytes (for O_DIRECT I/O)."""
    return mmap.mmap(-1, max(ALIGN, (n + ALIGN - 1) // ALIGN * ALIGN))


def read_all_fd(fd, direct, size):
    """The whole content through fd with pread (preadv into an aligned buffer for O_DIRECT)."""
    if direct:
        buf = aligned_buffer(size + 1)
        try:
            n = os.preadv(fd, [buf], 0)
            return bytes(buf[:n])
        finally:
            buf.close()
    chunks = []
    off = 0
    while True:
        b = os.pread(fd, 1 << 20, off)
        if not b:
            break
        chunks.append(b)
        off += len(b)
    return b"".join(chunks)


def file_content(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        return read_all_fd(fd, False, 0)
    finally:
        os.close(fd)


def user_xattrs(path):
    out = {}
    for n in sorted(os.listxattr(path, follow_symlinks=False)):
        if not n.startswith("user.") or n.startswith("user.lifeboat."):
            continue
        out[n] = os.getxattr(path, n, follow_symlinks=False)
    return out


def content_key(data):
    return data if len(data) <= 4096 else "%d bytes sha256 %s" % (len(data), hashlib.sha256(data).hexdigest())


# ---------------------------------------------------------------------------- the tester


class Tester:
    def __init__(self, seed, nops, roots, verbose):
        self.seed, self.nops, self.roots, self.verbose = seed, nops, roots, verbose
        self.rng = random.Random(seed)
        self.is_root = os.geteuid() == 0
        self.pool = {}          # sid -> Slot
        self.next_sid = 1
        self.history = deque(maxlen=20)
        self.step = 0
        self.desc = "(setup)"
        self.pinned = {}        # DIR_B inode -> mtime_ns set explicitly by utime
        self.touched = set()
        self.touched_slots = set()
        self.entries = []       # (rel, kind) of DIR_B, refreshed each step
        self.big_steps = set()
        self.nbig = 0
        self.stats = {}         # (op, outcome on B) -> count, printed with --stats

    # ------------------------------------------------------------------ plumbing

    def p(self, side, rel):
        return os.path.join(self.roots[side], rel) if rel else self.roots[side]

    def fail(self, what):
        raise Mismatch(what)

    def both(self, fn, compare=True):
        """Runs fn(side) for side 0 (A) and 1 (B); returns the two outcomes
        ('ok', value) or ('err', name). A differing outcome is a mismatch when compare is set."""
        res = []
        for side in (0, 1):
            try:
                res.append(("ok", fn(side)))
            except (OSError, ValueError, OverflowError, BufferError, TypeError) as e:
                res.append(("err", errname(e)))
        if compare and res[0] != res[1]:
            self.fail(self.outcome_diff(res[0], res[1]))
        key = (self.desc.split(" ")[0], res[1][0] if res[1][0] == "ok" else res[1][1])
        self.stats[key] = self.stats.get(key, 0) + 1
        return res

    @staticmethod
    def outcome_diff(ra, rb):
        if ra[0] == "ok" and rb[0] == "ok":
            return describe_diff(ra[1], rb[1])
        fa = short(ra[1]) if ra[0] == "ok" else ra[1]
        fb = short(rb[1]) if rb[0] == "ok" else rb[1]
        return "outcome A %s %s, B %s %s" % (ra[0], fa, rb[0], fb)

    def touch(self, *rels):
        for rel in rels:
            if rel is None:
                continue
            self.touched.add(rel)
            self.touched.add(os.path.dirname(rel))

    # ------------------------------------------------------------------ namespace

    def scan(self):
        """Entries of DIR_B (the reference) below the root, sorted, big dirs left out."""
        out = []

        def walk(rel, depth):
            try:
                it = os.scandir(self.p(1, rel))
            except OSError:
                return
            with it:
                items = sorted(it, key=lambda e: e.name)
            for e in items:
                r = os.path.join(rel, e.name) if rel else e.name
                if not rel and e.name.startswith(BIG_PREFIX):
                    continue
                if e.is_symlink():
                    out.append((r, "l"))
                elif e.is_dir():
                    out.append((r, "d"))
                    if depth < 6:
                        walk(r, depth + 1)
                elif e.is_file():
                    out.append((r, "f"))
                else:
                    out.append((r, "o"))

        walk("", 1)
        self.entries = out

    def existing(self, kinds=None):
        c = [r for r, k in self.entries if kinds is None or k in kinds]
        return self.rng.choice(c) if c else None

    def new_path(self):
        dirs = [""] + [r for r, k in self.entries if k == "d" and r.count("/") < 2]
        d = self.rng.choice(dirs)
        n = self.rng.choice(NAMES)
        return os.path.join(d, n) if d else n

    def odd_path(self):
        r = self.rng.random()
        f = self.existing("fl")
        if r < 0.5 and f:
            return f + "/" + self.rng.choice(NAMES)       # through a file or symlink
        return "nodir/" + self.rng.choice(NAMES)            # missing parent

    def path(self, kinds=None, p_existing=0.6, p_odd=0.04):
        r = self.rng.random()
        if r < p_odd:
            return self.odd_path()
        if r < p_odd + p_existing:
            e = self.existing(kinds)
            if e is not None:
                return e
        return self.new_path()

    def slot(self):
        return self.pool[self.rng.choice(sorted(self.pool))] if self.pool else None

    def use_slot(self, write=False):
        """slot(), marked as used (and its path as touched, for a WRITE); None when none is open."""
        sl = self.slot()
        if sl is not None:
            self.touched_slots.add(sl)
            if write:
                self.touch(sl.path)
        return sl

    def size(self, hi=256 * 1024):
        """A size 1 .. hi, log-uniform-ish."""
        bits = self.rng.randint(0, max(1, hi.bit_length() - 1))
        return max(1, min(hi, self.rng.randint(1 << bits >> 1 or 1, 1 << bits)))

    def offset(self, cur):
        r = self.rng.random()
        if r < 0.3:
            o = self.rng.randint(0, max(0, cur))
        elif r < 0.55:
            o = max(0, cur + self.rng.randint(-4096, 4096))
        elif r < 0.8:
            o = cur + self.rng.randint(0, 300 * 1024)    # past EOF: a hole
        elif r < 0.9:
            o = self.rng.randint(0, 1 << 20)
        else:
            o = self.rng.choice([0, 4095, 4096, 65536, 131071])
        return min(o, MAX_FILE - 1)

    def cur_size(self, slot):
        try:
            return os.fstat(slot.fd[1]).st_size
        except OSError:
            return 0

    def mode(self, is_dir=False):
        if is_dir:
            return self.rng.choice([0o755, 0o755, 0o700, 0o777, 0o2775, 0o1777, 0o500, 0o750])
        return self.rng.choice([0o644, 0o644, 0o600, 0o755, 0o666, 0o400, 0o000, 0o777, 0o640,
                                0o4755, 0o2755, 0o1644, self.rng.randint(0, 0o7777)])

    # ------------------------------------------------------------------ comparison

    def entry_info(self, side, rel):
        path = self.p(side, rel)
        try:
            st = os.lstat(path)
        except OSError as e:
            return {"exists": errname(e)}, None
        info = {"type": stat.S_IFMT(st.st_mode), "mode": oct(st.st_mode), "uid": st.st_uid,
                "gid": st.st_gid, "nlink": st.st_nlink}
        call = ""
        try:
            if stat.S_ISDIR(st.st_mode):
                call = "listdir"
                info["listing"] = sorted(os.listdir(path))
            else:
                info["size"] = st.st_size
            if stat.S_ISREG(st.st_mode):
                call = "open+read"
                info["content"] = content_key(file_content(path))
            elif stat.S_ISLNK(st.st_mode):
                call = "readlink"
                info["target"] = os.readlink(path)
            call = "listxattr/getxattr (no follow)"
            info["xattrs"] = user_xattrs(path)
        except OSError as e:
            info["error"] = "%s failed with %s" % (call, errname(e))
        return info, st

    def compare_info(self, what, ia, ib):
        if ia == ib:
            return
        for k in ["exists", "error", "type", "mode", "uid", "gid", "nlink", "size", "content", "target",
                  "listing", "xattrs"]:
            va, vb = ia.get(k, "(none)"), ib.get(k, "(none)")
            if va != vb:
                if k == "listing" and isinstance(va, list) and isinstance(vb, list):
                    sa, sb = set(va), set(vb)
                    if sa != sb:
                        self.fail("%s: directory listing differs: only in A %s, only in B %s" % (
                            what, sorted(sa - sb)[:10], sorted(sb - sa)[:10]))
                self.fail("%s: %s differs: %s" % (what, k, describe_diff(va, vb)))
        self.fail("%s: differs: A %s, B %s" % (what, short(ia, 300), short(ib, 300)))

    def check_mtime(self, what, sta, stb):
        if sta is None or stb is None:
            return
        want = self.pinned.get(stb.st_ino)
        if want is not None and stb.st_mtime_ns == want and sta.st_mtime_ns != stb.st_mtime_ns:
            self.fail("%s: mtime (set by utime, unchanged on B since) differs: A %d, B %d" % (
                what, sta.st_mtime_ns, stb.st_mtime_ns))

    def unpin_slot(self, slot):
        """Whether a data or size change (even of zero bytes, or to the same size) updates mtime
        differs between filesystems: an inode such an operation reaches loses its pinned mtime."""
        try:
            self.pinned.pop(os.fstat(slot.fd[1]).st_ino, None)
        except OSError:
            pass

    def unpin_path(self, rel):
        try:
            self.pinned.pop(os.stat(self.p(1, rel)).st_ino, None)
        except OSError:
            pass

    def compare_path(self, rel):
        ia, sta = self.entry_info(0, rel)
        ib, stb = self.entry_info(1, rel)
        what = "path '%s'" % (rel or ".")
        self.compare_info(what, ia, ib)
        self.check_mtime(what, sta, stb)

    def compare_slot(self, slot):
        info = []
        for side in (0, 1):
            fd = slot.fd[side]
            try:
                st = os.fstat(fd)
                i = {"type": stat.S_IFMT(st.st_mode), "mode": oct(st.st_mode), "uid": st.st_uid,
                     "gid": st.st_gid, "nlink": st.st_nlink}
                if not stat.S_ISDIR(st.st_mode):
                    i["size"] = st.st_size
                if slot.readable() and stat.S_ISREG(st.st_mode):
                    i["content"] = content_key(read_all_fd(fd, slot.direct, st.st_size))
                    i["offset"] = os.lseek(fd, 0, os.SEEK_CUR)
            except OSError as e:
                i, st = {"error": errname(e)}, None
            info.append((i, st))
        what = "open %s" % slot.name()
        (ia, sta), (ib, stb) = info
        if ia != ib:
            for k in ["error", "type", "mode", "uid", "gid", "nlink", "size", "content", "offset"]:
                if ia.get(k) != ib.get(k):
                    self.fail("%s: fstat/content %s differs: %s" % (what, k, describe_diff(ia.get(k), ib.get(k))))
        self.check_mtime(what, sta, stb)

    def walk_all(self, side):
        out = []

        def walk(rel):
            with os.scandir(self.p(side, rel)) as it:
                names = sorted(e.name for e in it)
            for n in names:
                r = os.path.join(rel, n) if rel else n
                out.append(r)
                if stat.S_ISDIR(os.lstat(self.p(side, r)).st_mode):
                    walk(r)

        walk("")
        return out

    def compare_tree(self):
        try:
            la, lb = self.walk_all(0), self.walk_all(1)
        except OSError as e:
            self.fail("walking the trees failed: %s (%s)" % (errname(e), e))
        if la != lb:
            sa, sb = set(la), set(lb)
            self.fail("tree differs: only in A %s, only in B %s" % (sorted(sa - sb)[:10], sorted(sb - sa)[:10]))
        groups = []
        for side in (0, 1):
            by_ino = {}
            for r in la:
                st = os.lstat(self.p(side, r))
                if not stat.S_ISDIR(st.st_mode):
                    by_ino.setdefault(st.st_ino, []).append(r)
            groups.append(sorted(sorted(g) for g in by_ino.values() if len(g) > 1))
        self.compare_path("")
        for r in la:
            self.compare_path(r)
        if groups[0] != groups[1]:
            self.fail("hard-link groups differ: A %s, B %s" % (short(groups[0], 300), short(groups[1], 300)))

    # ------------------------------------------------------------------ operations

    def op_open(self):
        rng = self.rng
        if len(self.pool) >= MAX_FDS:
            return self.op_close()
        acc = rng.choice([os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR, os.O_RDWR])
        flags = acc | os.O_CLOEXEC
        if rng.random() < 0.55:
            flags |= os.O_CREAT
            if rng.random() < 0.2:
                flags |= os.O_EXCL
        if rng.random() < 0.12:
            flags |= os.O_TRUNC
        if rng.random() < 0.06:
            flags |= O_DIRECT
        elif rng.random() < 0.2:
            flags |= os.O_APPEND
        if rng.random() < 0.04:
            flags |= os.O_NOFOLLOW
        mode = self.mode()
        if flags & os.O_CREAT:
            path = self.path("f", p_existing=0.35)
        else:
            path = self.path("fl" if rng.random() < 0.9 else None, p_existing=0.9)
        self.desc = "open %s %s mode %o" % (path, flags_str(flags), mode)
        if flags & os.O_TRUNC:
            self.unpin_path(path)
        self.touch(path)
        res = self.both(lambda s: os.open(self.p(s, path), flags, mode), compare=False)
        if res[0][0] != res[1][0] or (res[0][0] == "err" and res[0] != res[1]):
            for side in (0, 1):
                if res[side][0] == "ok":
                    os.close(res[side][1])
            self.fail(self.outcome_diff(*res))
        if res[0][0] == "ok":
            sl = Slot(self.next_sid, path, flags, res[0][1], res[1][1])
            self.next_sid += 1
            self.pool[sl.sid] = sl
            self.desc += " -> " + sl.name()
            self.touched_slots.add(sl)

    def op_close(self):
        sl = self.slot()
        if sl is None:
            return self.op_open()
        self.desc = "close %s" % sl.name()
        self.compare_slot(sl)
        del self.pool[sl.sid]
        self.touch(sl.path)
        self.both(lambda s: os.close(sl.fd[s]))

    def op_write(self):
        sl = self.use_slot(write=True)
        if sl is None:
            return self.op_open()
        if sl.direct:
            return self.direct_write(sl)
        n = self.size()
        data = self.rng.randbytes(n)
        self.desc = "write %s %d bytes" % (sl.name(), n)
        self.unpin_slot(sl)
        if self.rng.random() < 0.3:
            pos = self.offset(self.cur_size(sl))
            self.desc += " after lseek(%d)" % pos
            self.both(lambda s: os.lseek(sl.fd[s], pos, os.SEEK_SET))
        self.both(lambda s: os.write(sl.fd[s], data))

    def direct_write(self, sl):
        off = self.rng.randint(0, 96) * ALIGN
        n = self.rng.randint(1, 16) * ALIGN
        data = self.rng.randbytes(n)
        self.desc = "pwritev(O_DIRECT, aligned) %s off %d %d bytes" % (sl.name(), off, n)
        self.unpin_slot(sl)

        def fn(s):
            buf = aligned_buffer(n)
            try:
                buf[:n] = data
                return os.pwritev(sl.fd[s], [memoryview(buf)[:n]], off)
            finally:
                buf.close()
        self.both(fn)

    def direct_read(self, sl):
        off = self.rng.randint(0, 100) * ALIGN
        n = self.rng.randint(1, 16) * ALIGN
        self.desc = "preadv(O_DIRECT, aligned) %s off %d %d bytes" % (sl.name(), off, n)

        def fn(s):
            buf = aligned_buffer(n)
            try:
                got = os.preadv(sl.fd[s], [memoryview(buf)[:n]], off)
                return bytes(buf[:got])
            finally:
                buf.close()
        self.both(fn)

    def op_pwrite(self):
        sl = self.use_slot(write=True)
        if sl is None:
            return self.op_open()
        if sl.direct:
            return self.direct_write(sl)
        n = self.size()
        off = self.offset(self.cur_size(sl))
        data = self.rng.randbytes(n)
        self.desc = "pwrite %s off %d %d bytes" % (sl.name(), off, n)
        self.unpin_slot(sl)
        self.both(lambda s: os.pwrite(sl.fd[s], data, off))

    def op_read(self):
        sl = self.use_slot()
        if sl is None:
            return self.op_open()
        if sl.direct:
            return self.direct_read(sl)
        n = self.size()
        self.desc = "read %s %d bytes" % (sl.name(), n)
        self.both(lambda s: os.read(sl.fd[s], n))

    def op_pread(self):
        sl = self.use_slot()
        if sl is None:
            return self.op_open()
        if sl.direct:
            return self.direct_read(sl)
        n = self.size()
        off = self.offset(self.cur_size(sl))
        self.desc = "pread %s off %d %d bytes" % (sl.name(), off, n)
        self.both(lambda s: os.pread(sl.fd[s], n, off))

    def op_lseek(self):
        sl = self.use_slot()
        if sl is None:
            return self.op_open()
        try:
            if stat.S_ISDIR(os.fstat(sl.fd[1]).st_mode):
                return self.op_fstat()    # directory offsets are filesystem-specific cookies
        except OSError:
            pass
        whence = self.rng.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END])
        off = self.rng.choice([0, 1, 100, 4096, 70000, -1, -100, -5000])
        if whence == os.SEEK_SET:
            off = abs(off)
        self.desc = "lseek %s %d whence %d" % (sl.name(), off, whence)
        self.both(lambda s: os.lseek(sl.fd[s], off, whence))

    def op_ftruncate(self):
        sl = self.use_slot(write=True)
        if sl is None:
            return self.op_open()
        length = self.new_length(self.cur_size(sl))
        self.desc = "ftruncate %s %d" % (sl.name(), length)
        self.unpin_slot(sl)
        self.both(lambda s: os.ftruncate(sl.fd[s], length))

    def new_length(self, cur):
        r = self.rng.random()
        if r < 0.15:
            return 0
        if r < 0.5:
            return self.rng.randint(0, max(cur, 1))
        if r < 0.6:
            return cur
        return min(MAX_FILE, cur + self.rng.randint(1, 512 * 1024))

    def op_truncate(self):
        path = self.path("fl", p_existing=0.85)
        try:
            cur = os.stat(self.p(1, path)).st_size
        except OSError:
            cur = 0
        length = self.new_length(cur)
        self.desc = "truncate %s %d" % (path, length)
        self.unpin_path(path)
        self.touch(path)
        self.both(lambda s: os.truncate(self.p(s, path), length))

    def op_fsync(self):
        sl = self.use_slot()
        if sl is None:
            return self.op_open()
        fn = self.rng.choice([os.fsync, os.fdatasync])
        self.desc = "%s %s" % (fn.__name__, sl.name())
        self.both(lambda s: fn(sl.fd[s]))

    def op_fsync_dir(self):
        path = self.existing("d") if self.rng.random() < 0.7 else ""
        path = path or ""
        self.desc = "fsync dir %s" % (path or ".")

        def fn(s):
            fd = os.open(self.p(s, path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.both(fn)

    def op_fstat(self):
        sl = self.slot()
        if sl is None:
            return self.op_open()
        self.desc = "fstat %s" % sl.name()
        self.compare_slot(sl)

    def op_flock(self):
        sl = self.use_slot()
        if sl is None:
            return self.op_open()
        op, name = self.rng.choice([(fcntl.LOCK_EX | fcntl.LOCK_NB, "LOCK_EX|LOCK_NB"),
                                    (fcntl.LOCK_SH | fcntl.LOCK_NB, "LOCK_SH|LOCK_NB"),
                                    (fcntl.LOCK_UN, "LOCK_UN")])
        self.desc = "flock %s %s" % (sl.name(), name)
        self.both(lambda s: fcntl.flock(sl.fd[s], op))

    def op_posix_lock(self):
        sl = self.use_slot()
        if sl is None:
            return self.op_open()
        cmd, name = self.rng.choice([(fcntl.LOCK_EX | fcntl.LOCK_NB, "F_WRLCK"),
                                     (fcntl.LOCK_SH | fcntl.LOCK_NB, "F_RDLCK"),
                                     (fcntl.LOCK_UN, "F_UNLCK")])
        start = self.rng.choice([0, 0, 100, 4096])
        length = self.rng.choice([0, 1, 100, 10000])
        self.desc = "fcntl F_SETLK %s %s start %d len %d" % (sl.name(), name, start, length)
        self.both(lambda s: fcntl.lockf(sl.fd[s], cmd, length, start, os.SEEK_SET))

    def op_ofd_lock(self):
        sl = self.use_slot()
        if sl is None:
            return self.op_open()
        ltype = self.rng.choice([fcntl.F_RDLCK, fcntl.F_WRLCK, fcntl.F_UNLCK])
        cmd = self.rng.choice([F_OFD_SETLK, F_OFD_SETLK, F_OFD_GETLK])
        if cmd == F_OFD_GETLK and ltype == fcntl.F_UNLCK:
            ltype = fcntl.F_WRLCK
        start = self.rng.choice([0, 0, 50, 4096])
        length = self.rng.choice([0, 1, 100, 10000])
        self.desc = "fcntl %s %s type %d start %d len %d" % (
            "F_OFD_SETLK" if cmd == F_OFD_SETLK else "F_OFD_GETLK", sl.name(), ltype, start, length)
        arg = struct.pack(FLOCK_FMT, ltype, os.SEEK_SET, start, length, 0)
        self.both(lambda s: struct.unpack(FLOCK_FMT, fcntl.fcntl(sl.fd[s], cmd, arg)))

    def op_copy_file_range(self):
        if not self.pool or not hasattr(os, "copy_file_range"):
            return self.op_open()
        src, dst = self.slot(), self.slot()
        if src.direct or dst.direct:
            return self.op_pread()    # O_DIRECT alignment rules for splicing differ between filesystems
        self.touched_slots.update((src, dst))
        self.touch(dst.path)
        n = self.size()
        off_src = self.offset(self.cur_size(src))
        off_dst = self.offset(self.cur_size(dst))
        self.desc = "copy_file_range %s off %d -> %s off %d %d bytes" % (src.name(), off_src, dst.name(), off_dst, n)
        self.unpin_slot(dst)

        def fn(s):
            done = 0
            while done < n:      # a short copy is allowed; compare the total
                got = os.copy_file_range(src.fd[s], dst.fd[s], n - done, off_src + done, off_dst + done)
                if got == 0:
                    break
                done += got
            return done
        self.both(fn)

    def op_posix_fallocate(self):
        sl = self.use_slot(write=True)
        if sl is None:
            return self.op_open()
        off = self.offset(self.cur_size(sl))
        n = self.size()
        self.desc = "posix_fallocate %s off %d len %d" % (sl.name(), off, n)
        self.unpin_slot(sl)
        self.both(lambda s: os.posix_fallocate(sl.fd[s], off, n))

    def op_punch(self):
        sl = self.use_slot(write=True)
        if sl is None:
            return self.op_open()
        cur = self.cur_size(sl)
        off = self.rng.randint(0, max(0, cur)) if self.rng.random() < 0.8 else self.offset(cur)
        n = self.size()
        self.desc = "fallocate PUNCH_HOLE|KEEP_SIZE %s off %d len %d" % (sl.name(), off, n)
        self.unpin_slot(sl)
        self.both(lambda s: fallocate(sl.fd[s], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, n))

    def op_mmap(self):
        path = self.path("f", p_existing=0.8)
        try:
            cur = os.stat(self.p(1, path)).st_size
        except OSError:
            cur = 0
        n = self.size(64 * 1024)
        off = self.rng.randint(0, max(0, cur)) if self.rng.random() < 0.7 else self.rng.randint(0, 512 * 1024)
        data = self.rng.randbytes(n)
        self.desc = "mmap MAP_SHARED write %s off %d %d bytes" % (path, off, n)
        self.unpin_path(path)
        self.touch(path)

        def fn(s):
            fd = os.open(self.p(s, path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size < off + n:
                    os.ftruncate(fd, off + n)
                    size = off + n
                mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                try:
                    mm[off:off + n] = data
                    mm.flush()
                    back = mm[off:off + n] == data
                finally:
                    mm.close()
                return size, back
            finally:
                os.close(fd)
        self.both(fn)

    def op_rename(self):
        rng = self.rng
        src = self.path(None, p_existing=0.9)
        r = rng.random()
        if r < 0.3:
            dst = self.path(None, p_existing=1.0)        # over an existing entry
        elif r < 0.4 and src:
            dst = src + "/" + rng.choice(NAMES)          # into itself
        elif r < 0.5:
            d = self.existing("d")
            dst = (d + "/" if d else "") + rng.choice(NAMES)
        else:
            dst = self.path(None, p_existing=0.1)
        flags = 0
        if rng.random() < 0.35:
            flags = rng.choice([RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_EXCHANGE,
                                RENAME_NOREPLACE | RENAME_EXCHANGE])
        self.touch(src, dst)
        if flags:
            self.desc = "renameat2 %s -> %s flags %d" % (src, dst, flags)
            self.both(lambda s: renameat2(self.p(s, src), self.p(s, dst), flags))
        else:
            self.desc = "rename %s -> %s" % (src, dst)
            self.both(lambda s: os.rename(self.p(s, src), self.p(s, dst)))
        self.retarget(src, dst)

    def retarget(self, src, dst):
        """Slot paths follow renames (only used to choose what to compare)."""
        for sl in self.pool.values():
            if sl.path == src or sl.path.startswith(src + "/"):
                sl.path = dst + sl.path[len(src):]

    def op_link(self):
        src = self.path("fl" if self.rng.random() < 0.9 else None, p_existing=0.9)
        dst = self.path(None, p_existing=0.15)
        follow = self.rng.random() < 0.3
        self.desc = "link %s -> %s follow_symlinks=%s" % (src, dst, follow)
        self.touch(src, dst)
        self.both(lambda s: os.link(self.p(s, src), self.p(s, dst), follow_symlinks=follow))

    def op_unlink(self):
        r = self.rng.random()
        if r < 0.35 and self.pool:
            path = self.slot().path                       # a file that is still open
        else:
            path = self.path("fl" if r < 0.9 else None, p_existing=0.85)
        self.desc = "unlink %s" % path
        self.touch(path)
        self.both(lambda s: os.unlink(self.p(s, path)))

    def op_symlink(self):
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            target = rng.choice(NAMES)
        elif r < 0.7:
            target = "/".join(rng.choice(NAMES) for _ in range(rng.randint(2, 3)))
        elif r < 0.85:
            target = self.existing() or "a"
        elif r < 0.95:
            target = "/nonexistent/lifeboat/" + rng.choice(NAMES)
        else:
            target = "x" * rng.randint(100, 1000)
        dst = self.path(None, p_existing=0.15)
        self.desc = "symlink %s -> %r" % (dst, target)
        self.touch(dst)
        self.both(lambda s: os.symlink(target, self.p(s, dst)))

    def op_readlink(self):
        path = self.path("l" if self.rng.random() < 0.8 else None, p_existing=0.9)
        self.desc = "readlink %s" % path
        self.both(lambda s: os.readlink(self.p(s, path)))

    def op_stat(self):
        path = self.path(None, p_existing=0.9)
        follow = self.rng.random() < 0.6
        self.desc = "stat %s follow_symlinks=%s" % (path, follow)

        def fn(s):
            st = os.stat(self.p(s, path), follow_symlinks=follow)
            return (oct(st.st_mode), st.st_uid, st.st_gid, st.st_nlink,
                    None if stat.S_ISDIR(st.st_mode) else st.st_size)
        self.both(fn)

    def op_mkdir(self):
        path = self.path("d", p_existing=0.15)
        mode = self.mode(True)
        self.desc = "mkdir %s mode %o" % (path, mode)
        self.touch(path)
        self.both(lambda s: os.mkdir(self.p(s, path), mode))

    def op_rmdir(self):
        path = self.path("d" if self.rng.random() < 0.9 else None, p_existing=0.9)
        self.desc = "rmdir %s" % path
        self.touch(path)
        self.both(lambda s: os.rmdir(self.p(s, path)))

    def op_rmtree(self):
        path = self.existing("d")
        if path is None:
            return self.op_mkdir()
        self.desc = "rmtree %s" % path
        self.touch(path)

        def fn(s):
            n = 0
            for root, dirs, files in os.walk(self.p(s, path), topdown=False):
                for f in sorted(files):
                    os.unlink(os.path.join(root, f))
                    n += 1
                for d in sorted(dirs):
                    full = os.path.join(root, d)
                    if os.path.islink(full):
                        os.unlink(full)
                    else:
                        os.rmdir(full)
                    n += 1
            os.rmdir(self.p(s, path))
            return n
        self.both(fn)
        self.retarget(path, "(removed)")

    def op_chmod(self):
        path = self.path(None, p_existing=0.9)
        mode = self.mode(self.rng.random() < 0.3)
        self.desc = "chmod %s %o" % (path, mode)
        self.touch(path)
        self.both(lambda s: os.chmod(self.p(s, path), mode))

    def op_fchmod(self):
        sl = self.use_slot(write=True)
        if sl is None:
            return self.op_open()
        mode = self.mode()
        self.desc = "fchmod %s %o" % (sl.name(), mode)
        self.both(lambda s: os.fchmod(sl.fd[s], mode))

    def op_chown(self):
        if not self.is_root:
            return self.op_chmod()
        path = self.path(None, p_existing=0.9)
        uid = self.rng.choice([0, 1000, 1234, 65534, -1])
        gid = self.rng.choice([0, 1000, 5678, 65534, -1])
        follow = self.rng.random() < 0.7
        self.desc = "chown %s %d:%d follow_symlinks=%s" % (path, uid, gid, follow)
        self.touch(path)
        self.both(lambda s: os.chown(self.p(s, path), uid, gid, follow_symlinks=follow))

    def op_utime(self):
        rng = self.rng
        path = self.path(None, p_existing=0.9) if rng.random() < 0.95 else ""
        follow = rng.random() < 0.7
        self.touch(path)
        if rng.random() < 0.1:
            self.desc = "utime %s now follow_symlinks=%s" % (path or ".", follow)
            self.both(lambda s: os.utime(self.p(s, path), None, follow_symlinks=follow))
            return
        at = rng.randint(978307200, 1600000000) * 10**9 + rng.randint(0, 10**9 - 1)
        mt = rng.randint(978307200, 1600000000) * 10**9 + rng.randint(0, 10**9 - 1)
        self.desc = "utime %s ns=(%d, %d) follow_symlinks=%s" % (path or ".", at, mt, follow)
        res = self.both(lambda s: os.utime(self.p(s, path), ns=(at, mt), follow_symlinks=follow))
        if res[1][0] == "ok":
            try:
                stb = os.stat(self.p(1, path), follow_symlinks=follow)
                sta = os.stat(self.p(0, path), follow_symlinks=follow)
            except OSError as e:
                self.fail("stat after utime failed: %s" % errname(e))
            self.pinned[stb.st_ino] = stb.st_mtime_ns
            if sta.st_mtime_ns != stb.st_mtime_ns or stb.st_mtime_ns != mt:
                self.fail("mtime after utime differs: A %d, B %d (set %d)" % (sta.st_mtime_ns, stb.st_mtime_ns, mt))

    def op_setxattr(self):
        rng = self.rng
        path = self.path(None, p_existing=0.9)
        name = rng.choice(XATTR_NAMES)
        value = rng.randbytes(rng.choice([0, 1, 10, 100, 200]))
        flags = rng.choice([0, 0, os.XATTR_CREATE, os.XATTR_REPLACE])
        follow = rng.random() < 0.8
        self.desc = "setxattr %s %s %d bytes flags %d follow_symlinks=%s" % (path, name, len(value), flags, follow)
        self.touch(path)
        self.both(lambda s: os.setxattr(self.p(s, path), name, value, flags, follow_symlinks=follow))

    def op_getxattr(self):
        path = self.path(None, p_existing=0.9)
        name = self.rng.choice(XATTR_NAMES)
        follow = self.rng.random() < 0.8
        self.desc = "getxattr %s %s follow_symlinks=%s" % (path, name, follow)
        self.both(lambda s: os.getxattr(self.p(s, path), name, follow_symlinks=follow))

    def op_listxattr(self):
        path = self.path(None, p_existing=0.9)
        follow = self.rng.random() < 0.8
        self.desc = "listxattr %s follow_symlinks=%s" % (path, follow)
        self.both(lambda s: sorted(n for n in os.listxattr(self.p(s, path), follow_symlinks=follow)
                                   if n.startswith("user.") and not n.startswith("user.lifeboat.")))

    def op_removexattr(self):
        path = self.path(None, p_existing=0.9)
        name = self.rng.choice(XATTR_NAMES)
        follow = self.rng.random() < 0.8
        self.desc = "removexattr %s %s follow_symlinks=%s" % (path, name, follow)
        self.touch(path)
        self.both(lambda s: os.removexattr(self.p(s, path), name, follow_symlinks=follow))

    def op_statvfs(self):
        path = self.existing("d") if self.rng.random() < 0.5 else ""
        path = path or ""
        self.desc = "statvfs %s" % (path or ".")
        self.both(lambda s: os.statvfs(self.p(s, path)) and None)

    def op_listdir(self):
        path = self.path("d", p_existing=0.9) if self.rng.random() < 0.8 else ""
        self.desc = "listdir %s" % (path or ".")
        self.both(lambda s: sorted(os.listdir(self.p(s, path))))

    def op_umask(self):
        m = self.rng.choice([0o022, 0o022, 0o002, 0o077, 0o000, 0o027])
        self.desc = "umask %o" % m
        os.umask(m)

    def op_bigdir(self):
        self.nbig += 1
        name = "%s%d" % (BIG_PREFIX, self.nbig)
        count = 2000
        names = ["file-%04d-%s" % (i, "x" * (i % 40)) for i in range(count)]
        self.desc = "big directory %s: create %d files, list, unlink while reading the directory" % (name, count)
        self.touch(name)

        def create(s):
            d = self.p(s, name)
            os.mkdir(d, 0o755)
            for i, n in enumerate(names):
                fd = os.open(os.path.join(d, n), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                try:
                    if i % 10 == 0:
                        os.write(fd, n.encode())
                finally:
                    os.close(fd)
            return None
        self.both(create)

        def listing(s):
            with os.scandir(self.p(s, name)) as it:
                return sorted((e.name, e.is_file(follow_symlinks=False),
                               e.stat(follow_symlinks=False).st_size) for e in it)
        res = self.both(listing)
        if res[1][0] == "ok" and [x[0] for x in res[1][1]] != sorted(names):
            self.fail("big directory listing on B is not the files created")

        def remove(s):
            d = self.p(s, name)
            n = 0
            with os.scandir(d) as it:
                for e in it:
                    os.unlink(e.path)
                    n += 1
            left = sorted(os.listdir(d))
            os.rmdir(d) if not left else None
            return n, left[:5], len(left)
        self.both(remove)

    # ------------------------------------------------------------------ driver

    OPS = [  # (name, weight, creates entries, removes entries)
        ("open", 10, True, False), ("close", 5, False, False), ("write", 8, False, False),
        ("pwrite", 9, False, False), ("read", 5, False, False), ("pread", 7, False, False),
        ("lseek", 2, False, False), ("ftruncate", 4, False, False), ("truncate", 3, False, False),
        ("fsync", 3, False, False), ("fsync_dir", 1, False, False), ("fstat", 2, False, False),
        ("flock", 3, False, False), ("posix_lock", 2, False, False), ("ofd_lock", 2, False, False),
        ("posix_fallocate", 2, False, False), ("copy_file_range", 2, False, False), ("punch", 2, False, False), ("mmap", 2, True, False),
        ("rename", 6, False, False), ("link", 3, True, False), ("unlink", 5, False, True),
        ("symlink", 3, True, False), ("readlink", 2, False, False), ("stat", 2, False, False),
        ("mkdir", 4, True, False), ("rmdir", 3, False, True), ("rmtree", 0.3, False, True),
        ("chmod", 3, False, False), ("fchmod", 1, False, False), ("chown", 2, False, False),
        ("utime", 3, False, False), ("setxattr", 3, False, False), ("getxattr", 2, False, False),
        ("listxattr", 1, False, False), ("removexattr", 2, False, False), ("statvfs", 0.5, False, False),
        ("listdir", 1, False, False), ("umask", 0.3, False, False),
    ]

    def choose(self):
        full = len(self.entries) > SOFT_CAP
        names, weights = [], []
        for name, w, creates, removes in self.OPS:
            if full and creates:
                w *= 0.2
            if full and removes:
                w *= 4 if name != "rmtree" else 20
            names.append(name)
            weights.append(w)
        return self.rng.choices(names, weights)[0]

    def run(self):
        os.umask(0o022)
        # every BIG_PERIOD steps from a seed-dependent start (not from --ops, so that a run
        # with fewer --ops replays exactly the first steps of a longer one)
        first = random.Random(self.seed * 7919 + 17).randint(1, BIG_PERIOD)
        self.big_steps = set(range(first, self.nops + 1, BIG_PERIOD))
        try:
            self.compare_tree()
        except Mismatch as m:
            return self.report("the trees differ before the first operation: %s" % m)
        try:
            for self.step in range(1, self.nops + 1):
                self.scan()
                self.touched = set()
                self.touched_slots = set()
                if self.step in self.big_steps:
                    name = "bigdir"
                else:
                    name = self.choose()
                self.desc = name
                try:
                    getattr(self, "op_" + name)()
                finally:
                    self.history.append("%d: %s" % (self.step, self.desc))
                if self.verbose:
                    print("%d: %s" % (self.step, self.desc), flush=True)
                for sl in sorted(self.touched_slots, key=lambda x: x.sid):
                    if sl.sid in self.pool:
                        self.compare_slot(sl)
                for rel in sorted(self.touched):
                    self.compare_path(rel)
                if self.step % 100 == 0:
                    self.compare_tree()
            self.step = self.nops + 1
            self.desc = "close all descriptors and compare the trees"
            self.history.append("end: " + self.desc)
            for sid in sorted(self.pool):
                sl = self.pool.pop(sid)
                self.compare_slot(sl)
                self.both(lambda s: os.close(sl.fd[s]))
            self.compare_tree()
        except Mismatch as m:
            return self.report(str(m))
        if self.show_stats:
            for (op, out), n in sorted(self.stats.items()):
                print("  %-18s %-14s %d" % (op, out, n))
        print("fsops: %d ops, seed %d, OK" % (self.nops, self.seed))
        return 0

    def report(self, what):
        print("MISMATCH step %d op %s: %s" % (self.step, self.desc, what))
        print("seed %d (replay: fsops.py --seed %d --ops %d DIR_A DIR_B on two new empty dirs; "
              "--ops %d stops just before this step)" % (self.seed, self.seed, self.step, self.step - 1))
        print("last %d ops:" % len(self.history))
        for h in self.history:
            print("  " + h)
        sys.stdout.flush()
        for sl in self.pool.values():
            for fd in sl.fd:
                try:
                    os.close(fd)
                except OSError:
                    pass
        return 1


def main():
    ap = argparse.ArgumentParser(description="seeded randomized differential file-operation tester")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--ops", type=int, required=True)
    ap.add_argument("--verbose", action="store_true", help="print every operation")
    ap.add_argument("--stats", action="store_true", help="print outcome counts per operation at the end")
    ap.add_argument("dir_a", help="directory under test (e.g. a FUSE mount)")
    ap.add_argument("dir_b", help="reference directory on a native filesystem")
    args = ap.parse_args()
    for d in (args.dir_a, args.dir_b):
        if not os.path.isdir(d):
            print("fsops: not a directory: %s" % d, file=sys.stderr)
            return 2
    if os.path.realpath(args.dir_a) == os.path.realpath(args.dir_b):
        print("fsops: DIR_A and DIR_B are the same directory", file=sys.stderr)
        return 2
    t = Tester(args.seed, args.ops, [os.path.abspath(args.dir_a), os.path.abspath(args.dir_b)], args.verbose)
    t.show_stats = args.stats
    return t.run()


if __name__ == "__main__":
    sys.exit(main())
