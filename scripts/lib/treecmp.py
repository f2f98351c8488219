#!/usr/bin/env python3
"""treecmp.py: where two directory trees differ, entry by entry (standard library only).

  treecmp.py [--below] [--mtime-s] [--nlink] [--hash] [--link-groups]
             [--xattrs all|user|names] [--max N] [--count] A B

Every entry, the root included (--below: only what is below it), is compared by its path
relative to the root: type and permission bits, uid, gid, mtime (in ns; --mtime-s: whole
seconds), size (not of a directory) and xattrs (all: every one but trusted.lifeboat.*, with
its value, the default; user: user.* with values; names: the names but trusted.lifeboat.*).
--nlink adds the link count (not of a directory), --hash the sha256 of a regular file's bytes,
--link-groups which paths are hard links of one another. Prints the first N (default 8)
entries that differ, "PATH: A's VALUES != B's VALUES" (--count: then "N entries differ");
exit 0 when nothing differs, 1 when something does.
"""
import argparse
import hashlib
import os
import stat
import sys


def xattrs(path, which):
    try:
        names = sorted(os.listxattr(path, follow_symlinks=False))
    except OSError:
        return ()
    names = [n for n in names if n.startswith("user.")] if which == "user" else \
        [n for n in names if not n.startswith("trusted.lifeboat.")]
    if which == "names":
        return tuple(names)
    out = []
    for n in names:
        try:
            out.append((n, os.getxattr(path, n, follow_symlinks=False)))
        except OSError:
            pass
    return tuple(out)


def tree(root, a):
    """{relative path: (values...)}, and the hard-link groups (sorted tuples of paths)."""
    out, inodes = {}, {}
    for dirpath, dirs, files in os.walk(root):
        for name in ([None] if dirpath == root and not a.below else []) + dirs + files:
            p = dirpath if name is None else os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            isdir = stat.S_ISDIR(st.st_mode)
            v = [stat.filemode(st.st_mode), st.st_uid, st.st_gid,
                 st.st_mtime_ns // 10**9 if a.mtime_s else st.st_mtime_ns, None if isdir else st.st_size]
            if a.nlink:
                v.append(None if isdir else st.st_nlink)
            if a.hash:
                v.append(hashlib.sha256(open(p, "rb").read()).hexdigest()[:12] if stat.S_ISREG(st.st_mode) else None)
            v.append(xattrs(p, a.xattrs))
            out[rel] = tuple(v)
            if not isdir and st.st_nlink > 1:
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    return out, sorted(tuple(sorted(g)) for g in inodes.values())


def main():
    p = argparse.ArgumentParser(description="where two directory trees differ (see the file's doc)")
    for flag in ("--below", "--mtime-s", "--nlink", "--hash", "--link-groups", "--count"):
        p.add_argument(flag, action="store_true")
    p.add_argument("--xattrs", choices=("all", "user", "names"), default="all")
    p.add_argument("--max", type=int, default=8)
    p.add_argument("a")
    p.add_argument("b")
    a = p.parse_args()
    sys.stdout.reconfigure(errors="backslashreplace")
    (ta, ga), (tb, gb) = tree(a.a, a), tree(a.b, a)
    differ = [k for k in sorted(set(ta) | set(tb)) if ta.get(k) != tb.get(k)]
    for k in differ[:a.max]:
        print("%s: %s != %s" % (k, ta.get(k), tb.get(k)))
    if a.link_groups and ga != gb:
        differ.append("hard links")
        print("hard links: %s != %s" % (ga, gb))
    if a.count:
        print("%d entries differ" % len(differ))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
