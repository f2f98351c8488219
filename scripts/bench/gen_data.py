#!/usr/bin/env python3
"""Deterministic benchmark data shaped like a database's data directory.

    gen_data.py DIR [--size 1G] [--seed 1]          create DIR (must not exist or be empty)
    gen_data.py DIR --mutate [--seed 1]             mutate an existing DIR in place

Layout (sizes for --size S):
  base/16384/heap.dat    ~70% of S, a whole number of 8 KiB pages
  rel/sNN/fNNNNN.dat     ~30% of S, files of 1 KiB-256 KiB (log-uniform), in 20 subdirectories

About half of all bytes are compressible (pages or files holding text-like records plus
zero padding), half incompressible (bytes from a seeded Mersenne Twister). Output depends
only on --size and --seed (and on CPython's `random`, which is stable across versions).

--mutate rewrites 1% of the large file's pages in place (same file size) and 1% of the
small files (same size, new content), and adds a few new small files. It depends only on
the directory's current file list and --seed.

Standard library only.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import struct
import sys

PAGE = 8192
BLOCK_PAGES = 256  # pages written per write() call (2 MiB)
LARGE_SHARE = 0.70
COMPRESSIBLE_SHARE = 0.5
SMALL_MIN = 1024
SMALL_MAX = 256 * 1024
SUBDIRS = 20
LARGE_REL = os.path.join("base", "16384", "heap.dat")
SMALL_ROOT = "rel"
CORPUS_SIZE = 32 << 20

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu "
    "active pending shipped cancelled refunded invoice order customer account balance "
    "london paris berlin madrid rome vienna prague warsaw lisbon dublin oslo helsinki "
    "smith jones taylor brown williams wilson johnson davies robinson wright thompson"
).split()


def parse_size(text: str) -> int:
    """64M, 1G, 1GiB, 512MB, 1048576 (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size: {text!r} (use e.g. 64M, 1G)")
    value = int(float(m.group(1)) * (1 << (10 * " KMGT".index(m.group(2).upper() or " "))))
    if value < (1 << 20):
        raise argparse.ArgumentTypeError("size must be at least 1M")
    return value


def make_corpus(seed: int) -> bytes:
    """A buffer of text-like records; compressible pages are slices of it at random offsets."""
    rng = random.Random(seed * 7919 + 17)
    words = WORDS
    records = []
    total = 0
    row = 0
    while total < CORPUS_SIZE:
        row += 1
        name = f"{rng.choice(words)} {rng.choice(words)}"
        rec = (
            f"{row}|{name}|{rng.choice(words)}@{rng.choice(words)}.example|"
            f"{rng.randrange(100000) / 100:.2f}|{rng.choice(words)}|"
            f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}|"
            f"{' '.join(rng.choice(words) for _ in range(rng.randrange(2, 12)))}\n"
        ).encode()
        records.append(rec)
        total += len(rec)
    return b"".join(records)[:CORPUS_SIZE]


class Content:
    """Produces page and file contents from one seeded PRNG."""

    def __init__(self, rng: random.Random, corpus: bytes):
        self.rng = rng
        self.corpus = corpus

    def text(self, n: int) -> bytes:
        """n bytes of records (about 60-95% of them) followed by zero padding."""
        rng = self.rng
        fill = int(n * (0.60 + 0.35 * rng.random()))
        if fill > len(self.corpus):
            fill = len(self.corpus)
        off = rng.randrange(len(self.corpus) - fill + 1)
        return self.corpus[off:off + fill] + bytes(n - fill)

    def page(self, number: int, compressible: bool, random_body: bytes | None = None) -> bytes:
        """An 8 KiB page: 24-byte header (page number, lsn, flags, checksum-ish) and body."""
        rng = self.rng
        header = struct.pack("<QQII", number, rng.getrandbits(64), 1 if compressible else 2,
                             rng.getrandbits(32))
        body_len = PAGE - len(header)
        if compressible:
            body = self.text(body_len)
        else:
            body = random_body if random_body is not None else rng.randbytes(body_len)
        return header + body

    def pages(self, first: int, count: int) -> bytes:
        """count consecutive pages, each compressible with probability COMPRESSIBLE_SHARE;
        the incompressible bodies come from one big randbytes call (fast)."""
        rng = self.rng
        kinds = [rng.random() < COMPRESSIBLE_SHARE for _ in range(count)]
        body_len = PAGE - 24
        n_random = kinds.count(False)
        pool = rng.randbytes(body_len * n_random) if n_random else b""
        out = []
        r = 0
        for i, comp in enumerate(kinds):
            if comp:
                out.append(self.page(first + i, True))
            else:
                out.append(self.page(first + i, False, pool[r * body_len:(r + 1) * body_len]))
                r += 1
        return b"".join(out)

    def small_file(self, size: int) -> bytes:
        if self.rng.random() < COMPRESSIBLE_SHARE:
            return self.text(size)
        return self.rng.randbytes(size)

    def small_size(self) -> int:
        # log-uniform in [1 KiB, 256 KiB]
        lo, hi = math.log(SMALL_MIN), math.log(SMALL_MAX)
        return int(math.exp(lo + (hi - lo) * self.rng.random()))


def write_file(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def small_path(root: str, index: int, subdir: int) -> str:
    return os.path.join(root, SMALL_ROOT, f"s{subdir:02d}", f"f{index:05d}.dat")


def generate(root: str, size: int, seed: int) -> None:
    if os.path.exists(root) and os.listdir(root):
        sys.exit(f"gen_data: {root} exists and is not empty")
    os.makedirs(root, exist_ok=True)
    content = Content(random.Random(seed), make_corpus(seed))
    rng = content.rng

    n_pages = max(1, int(size * LARGE_SHARE) // PAGE)
    large = os.path.join(root, LARGE_REL)
    os.makedirs(os.path.dirname(large), exist_ok=True)
    with open(large, "wb") as f:
        for first in range(0, n_pages, BLOCK_PAGES):
            f.write(content.pages(first, min(BLOCK_PAGES, n_pages - first)))

    budget = size - n_pages * PAGE
    index = 0
    while budget >= SMALL_MIN:
        n = min(content.small_size(), budget)
        if budget - n < SMALL_MIN:
            n = budget  # the last file takes the remainder
        write_file(small_path(root, index, rng.randrange(SUBDIRS)), content.small_file(n))
        budget -= n
        index += 1
    print(f"gen_data: {root}: {n_pages} pages ({n_pages * PAGE} bytes) in {LARGE_REL}, "
          f"{index} small files, {size - budget} bytes total", file=sys.stderr)


def mutate(root: str, seed: int) -> None:
    large = os.path.join(root, LARGE_REL)
    small_dir = os.path.join(root, SMALL_ROOT)
    if not os.path.isfile(large) or not os.path.isdir(small_dir):
        sys.exit(f"gen_data: {root} does not look like generated data")
    # A stream independent of the generation stream, still fixed by the seed.
    content = Content(random.Random(seed * 1_000_003 + 12_345), make_corpus(seed))
    rng = content.rng

    n_pages = os.path.getsize(large) // PAGE
    picked = sorted(rng.sample(range(n_pages), max(1, n_pages // 100)))
    with open(large, "r+b") as f:
        for number in picked:
            f.seek(number * PAGE)
            f.write(content.page(number, rng.random() < COMPRESSIBLE_SHARE))

    files = sorted(
        os.path.join(d, name)
        for d, _, names in os.walk(small_dir)
        for name in names
    )
    rewrite = sorted(rng.sample(files, max(1, len(files) // 100)))
    for path in rewrite:
        write_file(path, content.small_file(os.path.getsize(path)))

    n_new = max(3, len(files) // 500)
    added = 0
    for i in range(n_new):
        path = os.path.join(small_dir, f"s{rng.randrange(SUBDIRS):02d}", f"new-{seed}-{i:04d}.dat")
        if os.path.exists(path):
            continue  # mutated twice with the same seed: keep sizes stable
        size = content.small_size()
        write_file(path, content.small_file(size))
        added += size
    print(f"gen_data: {root}: rewrote {len(picked)} of {n_pages} pages, "
          f"{len(rewrite)} of {len(files)} small files, added {n_new} files ({added} bytes)",
          file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir")
    p.add_argument("--size", type=parse_size, default=1 << 30, help="total bytes, e.g. 64M, 1G (default 1G)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mutate", action="store_true", help="mutate an existing data dir instead of creating one")
    a = p.parse_args()
    if a.mutate:
        mutate(a.dir, a.seed)
    else:
        generate(a.dir, a.size, a.seed)


if __name__ == "__main__":
    main()
