"""Reading what comes from outside the trust boundary, in bounded memory and time.

Bundles, specs, locks, VSIX files, signatures and downloads come from a vendor, a public
registry, a USB stick or a colleague. Every reader of such data goes through here:

- a file is opened once, with ``O_NOFOLLOW | O_NONBLOCK``, and used only when ``fstat`` on
  that descriptor says it is a regular file: no symbolic link is followed, and a FIFO or a
  device is refused at once instead of blocking or reading for ever;
- at most ``limit`` bytes are read: the size is checked before reading and again while
  reading (a file that grows is cut off, not trusted);
- JSON is refused past a nesting depth and an element count, and with duplicate keys or
  the non-standard constants ``NaN``/``Infinity`` (two parsers could read those two ways).

Every refusal names the file and the bound it passed. Callers choose the error class (and
so the exit code): a bundle's files give an ``IntegrityError``, a spec a ``SpecError``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from installer.errors import AirlockError, IntegrityError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# Bounds on the files airlock reads from outside. Each is far above what a real bundle or
# spec of the largest planned site needs (a 100 000-package mirror's metadata is ~40 MiB)
# and far below what would hurt a 2-core staging host or an IDE host.
LIMITS: dict[str, int] = {
    "spec": 1 * MiB,             # a bundle spec (YAML)
    "lock": 64 * MiB,            # NAME.lock.json: every mirror file and hash
    "bundle.json": 64 * MiB,     # lists every artifact and mirror package
    "index.json": 4 * MiB,       # OCI index: one line per artifact
    "manifest": 4 * MiB,         # an OCI/Docker manifest or image config
    "SHA256SUMS": 64 * MiB,      # one line per file
    "sbom": 128 * MiB,           # CycloneDX: one component per package
    "tuf": 64 * MiB,             # TUF metadata (targets lists every file)
    "signature": 64 * KiB,       # an SSHSIG armoured signature
    "key": 64 * KiB,             # an OpenSSH key or allowed_signers line set
    "state": 1 * MiB,            # small JSON state files (resume state, markers)
    "mirror-index": 256 * MiB,   # a package index (apt Packages, PEP 691 page)
    # a bundle's own: its manifests (a package mirror's lists every package: ~400 bytes
    # each), its part index (one entry per part), a delta's list of the blobs it omits
    "bundle-manifest": 64 * MiB,
    "parts": 4 * MiB,
    "delta": 64 * MiB,
}
MAX_DEPTH = 64           # JSON nesting: airlock's own documents nest fewer than 10 levels
MAX_ITEMS = 2_000_000    # JSON values and keys in one document (~0.5 GiB at worst in Python)

Err = Callable[..., AirlockError]


def _refuse(error: Err, message: str, hint: str | None) -> AirlockError:
    return error(message, hint=hint)


def open_regular(path: Path | str, *, what: str | None = None,
                 error: Err = IntegrityError, follow_links: bool = False) -> int:
    """Open PATH for reading and return the descriptor, only if it is a regular file.

    The check is made on the opened descriptor (no window between check and use); a
    symbolic link in the last component, a FIFO, a socket or a device is refused.
    FOLLOW_LINKS is for the staging host's own inputs that a spec names (a docker save
    archive, a VSIX, the spec and its lock), where a link to the real file is ordinary (a
    cache, a Hugging Face snapshot): the file it leads to must still be regular. A bundle's
    own files never take it."""
    label = what or str(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == 40:  # ELOOP: the last component is a symbolic link
            raise _refuse(error, f"{label} is a symbolic link; airlock reads only regular "
                                 "files from outside", "replace the link with the file") \
                from None
        raise _refuse(error, f"cannot read {label}: {e.strerror}", None) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else
                    "a FIFO" if stat.S_ISFIFO(st.st_mode) else
                    "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                    "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise _refuse(error, f"{label} is {kind}; airlock reads only regular files "
                                 "from outside", None)
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, fl & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_stream(path: Path | str, *, what: str | None = None,
                error: Err = IntegrityError, follow_links: bool = False) -> BinaryIO:
    """PATH opened for reading in chunks (a large blob that is hashed or copied, never held
    whole), only if it is a regular file; unbuffered, so ``readinto`` goes straight in."""
    return os.fdopen(open_regular(path, what=what, error=error, follow_links=follow_links),
                     "rb", buffering=0)


def read_bytes(path: Path | str, limit: int, *, what: str | None = None,
               error: Err = IntegrityError, follow_links: bool = False) -> bytes:
    """All of PATH (a regular file, opened once), refused if longer than LIMIT bytes."""
    label = what or str(path)
    fd = open_regular(path, what=label, error=error, follow_links=follow_links)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise _too_big(error, label, limit, size)
        data = f.read(size + 1)  # one byte more than fstat said: did it grow?
    if len(data) != size:
        raise _refuse(error, f"{label} changed size while being read ({size} bytes, then "
                             f"{len(data)}{'+' if len(data) > size else ''})",
                      "read it again once nothing writes to it")
    return data


def read_text(path: Path | str, limit: int, *, what: str | None = None,
              error: Err = IntegrityError, follow_links: bool = False) -> str:
    label = what or str(path)
    data = read_bytes(path, limit, what=label, error=error, follow_links=follow_links)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _refuse(error, f"{label} is not UTF-8 text (byte {e.start})", None) from None


def read_json(path: Path | str, limit: int, *, what: str | None = None,
              error: Err = IntegrityError, max_depth: int = MAX_DEPTH,
              max_items: int = MAX_ITEMS, follow_links: bool = False) -> Any:
    label = what or str(path)
    return parse_json(read_bytes(path, limit, what=label, error=error,
                                 follow_links=follow_links), label, error=error,
                      max_depth=max_depth, max_items=max_items)


def _too_big(error: Err, label: str, limit: int, size: int) -> AirlockError:
    got = f" ({size} bytes)"
    return _refuse(error, f"{label} is larger than the {human(limit)} airlock accepts for "
                          f"it{got}", "a file this large is not one airlock wrote; "
                                      "check where it came from")


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Duplicate(k)
            seen.add(k)
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"non-standard constant {name}")


def parse_json(data: bytes | str, what: str, *, error: Err = IntegrityError,
               max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> Any:
    """JSON text (already bounded in size) into data, refused past MAX_DEPTH nesting or
    MAX_ITEMS values, or with duplicate keys, NaN or Infinity."""
    # Every value but the first follows a ',' '[' '{' or ':', so their count bounds the
    # values: a document that may hold too many is refused before anything is built.
    b = data.encode() if isinstance(data, str) else data
    opens = b.count(b"[") + b.count(b"{")
    if opens + b.count(b",") + b.count(b":") + 1 > max_items:
        raise _refuse(error, f"{what}: more than {max_items} JSON values and separators",
                      None)
    if opens > max_depth and not _nesting_within(b, max_depth):
        raise _refuse(error, f"{what}: JSON nested deeper than {max_depth} levels", None)
    try:
        doc = json.loads(b, object_pairs_hook=_pairs, parse_constant=_constant)
    except _Duplicate as e:
        raise _refuse(error, f"{what}: the key {str(e)!r} appears twice in one object", None) \
            from None
    except RecursionError:
        raise _refuse(error, f"{what}: JSON nested deeper than {max_depth} levels", None) \
            from None
    except (ValueError, UnicodeDecodeError) as e:
        raise _refuse(error, f"{what} is not valid JSON ({e})", None) from None
    return doc


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _nesting_within(b: bytes, max_depth: int) -> bool:
    """Whether JSON text B nests at most MAX_DEPTH levels: strings dropped, brackets kept,
    then one innermost level removed per pass (C speed, at most MAX_DEPTH passes)."""
    s = _STRING.sub(b"", b).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not s:
            return True
        t = _INNERMOST.sub(b"", s)
        if t == s:
            return True  # unbalanced: the parser names the error
        s = t
    return not s


def positive_int(value: Any, what: str, *, error: Err = IntegrityError,
                 maximum: int = 2**53) -> int:
    """VALUE as an integer 1..MAXIMUM; a boolean, a float or a string is refused."""
    if type(value) is not int or not 1 <= value <= maximum:
        raise _refuse(error, f"{what} must be an integer from 1 to {maximum}, "
                             f"got {_short(value)}", None)
    return value


def non_negative_int(value: Any, what: str, *, error: Err = IntegrityError,
                     maximum: int = 2**53) -> int:
    """VALUE as an integer 0..MAXIMUM (a size, a count); a boolean, a float or a string is
    refused."""
    if type(value) is not int or not 0 <= value <= maximum:
        raise _refuse(error, f"{what} must be an integer from 0 to {maximum}, "
                             f"got {_short(value)}", None)
    return value


SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


def sha256_digest(value: Any, what: str, *, error: Err = IntegrityError) -> str:
    """VALUE as ``sha256:`` and 64 lowercase hex digits, nothing else (it becomes a path)."""
    if type(value) is not str or not SHA256.fullmatch(value):
        raise _refuse(error, f"{what} must be a digest 'sha256:' + 64 hex digits, "
                             f"got {_short(value)}", None)
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"
