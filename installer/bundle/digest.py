"""Streaming SHA-256: chunked, never a whole blob in memory, parallel across files.

hashlib releases the GIL while it hashes a large buffer, so a thread pool of one worker per
core reaches close to cores x single-core OpenSSL throughput on data in the page cache.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from installer.untrusted import open_stream

CHUNK = 4 * 1024 * 1024
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

Advance = Callable[[int], None]


def workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest.split(":", 1)[1]


def sha256_file(path: Path, advance: Advance | None = None, *,
                what: str | None = None) -> tuple[str, int]:
    """Digest and size of a file, read in chunks into one reused buffer. Only a regular file
    is read (no link followed; a FIFO or a device is refused at once with an
    IntegrityError naming WHAT, instead of blocking or reading for ever)."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    with open_stream(path, what=what) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
            if advance:
                advance(n)
    return "sha256:" + h.hexdigest(), size


def copy_hashing(src: BinaryIO, dst: BinaryIO, advance: Advance | None = None,
                 limit: int | None = None, also: list[Any] | None = None,
                 check: Callable[[], None] | None = None) -> tuple[str, int]:
    """Copy a stream while hashing it, one pass. ``limit`` caps the bytes accepted (never
    more than ``limit + 1`` are read); ``also`` are further hashlib objects fed the same
    bytes (e.g. sha512 for npm's integrity); ``check`` is called before each chunk is
    written (it raises to stop the copy: a build being cancelled)."""
    h = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK if limit is None else min(CHUNK, limit - size + 1)):
        size += len(chunk)
        if limit is not None and size > limit:
            raise OverflowError(f"stream exceeds {limit} bytes")
        if check:
            check()
        h.update(chunk)
        for other in also or ():
            other.update(chunk)
        dst.write(chunk)
        if advance:
            advance(len(chunk))
    return "sha256:" + h.hexdigest(), size


def sha256_many(paths: Iterable[Path], advance: Advance | None = None
                ) -> dict[Path, tuple[str, int]]:
    """Hash many files on every core. Returns {path: (digest, size)}; raises the first OSError."""
    paths = list(paths)
    # Largest first so one big file does not start last and run alone.
    paths.sort(key=lambda p: -_size_or_zero(p))
    with ThreadPoolExecutor(max_workers=workers()) as pool:
        results = pool.map(lambda p: (p, sha256_file(p, advance)), paths)
        return dict(results)


def _size_or_zero(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0
