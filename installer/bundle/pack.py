"""Carrying a bundle on media: one tar (optionally zstd) or numbered parts with an index.

Pack writes a reproducible tar (sorted names, fixed times and owners). With ``--split`` the
stream is cut into ``FILE.part001``, ``FILE.part002``, … and ``FILE.parts.json`` records each
part's size and sha256, so a bad copy is found part by part.

Unpack never trusts the archive: only regular files and folders, no absolute paths, no
``..``, no links or devices, no duplicates, free space checked; every file is hashed while it
is written into a private folder beside the target, the result is verified against
SHA256SUMS, and only then renamed into place. The media are read once: each part is hashed
as the stream reads it (a part missing or of the wrong size stops the unpack before any
extraction), and a damaged part is named, with every other bad one, whether the archive
broke on it or not. Parts found good are remembered beside the target, so a re-run after
replacing a bad part does not hash them again.

Bounds, so that hostile media is refused in bounded memory and time: the part index is read
once within ``LIMITS["parts"]``, names at most MAX_PARTS parts, named FILE.part001… in
order, sizes integers from 0; parts, the archive and the resume state are read only if they
are regular files. In the tar stream, pax and GNU long-name headers are refused past
MAX_HEADER bytes (tarfile would read them whole), global pax headers and sparse members
always; SHA256SUMS (what ``pack`` writes first) must come within the first BEFORE_SUMS
members, and after it every file must be one it lists (or a signature / TUF file) and every
folder one of theirs: a stream of members that are not the bundle's stops there.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from installer.bundle.digest import CHUNK, sha256_file
from installer.bundle.inspect import load_meta
from installer.bundle.meta import SUMS, SumsError, bundle_files, excluded_from_sums, parse_sums
from installer.bundle.verify import verify
from installer.console import NullProgress
from installer.errors import AirlockError, IntegrityError, StorageError, UsageError
from installer.fsutil import TMP_MARK, atomic_write, disk_full, staged_dir
from installer.untrusted import (
    LIMITS,
    KiB,
    non_negative_int,
    open_stream,
    positive_int,
    read_json,
)

INDEX_FORMAT = "airlock-parts/v1"
# unpack reads the tar stream in pieces of this size: tarfile's stream reader joins and
# slices a fresh buffer per read, and pieces of CHUNK (4 MiB) cost a third more time in
# page faults and copies than these (measured on a 2 GiB bundle)
STREAM_CHUNK = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PART_RE = re.compile(r"^(?P<base>.+)\.part(?P<n>\d{3,})$")
MAX_MEMBERS = 1_000_000
MAX_PARTS = 100_000        # 700 MB parts of a 70 TB bundle
MAX_HEADER = 64 * KiB      # one pax or GNU long-name header's data
MAX_NAME = 1024            # a member's path, in characters
BEFORE_SUMS = 16           # members (folders) before SHA256SUMS, what pack writes first
MAX_UNLISTED = 2048        # files SHA256SUMS cannot list: signatures, TUF metadata, delta
UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", text.upper().replace("IB", "B"))
    if not m or int(m.group(1)) == 0:
        raise UsageError(f"--split {text!r}: expected a size such as 700M, 4G or 1048576")
    value = int(m.group(1)) * UNITS[m.group(2)]
    if value < 4096:
        raise UsageError(f"--split {text!r}: parts must be at least 4 KiB")
    return value


# --------------------------------------------------------------------------- pack

class _PartSink:
    """A write-only stream that cuts what it gets into parts, hashing each one. The whole
    stream's hash is taken on a second thread while this one writes and hashes the part
    (hashlib lets go of the GIL for large buffers): two hashes of every byte cost the
    time of one where there are two cores."""

    def __init__(self, folder: Path, name: str, split: int | None):
        self.folder, self.name, self.split = folder, name, split
        self.parts: list[dict[str, Any]] = []
        self.total = hashlib.sha256()
        self.size = 0
        self._f: BinaryIO | None = None
        self._h = hashlib.sha256()
        self._n = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pack-hash")

    def _open(self) -> None:
        part = f"{self.name}.part{len(self.parts) + 1:03d}" if self.split else self.name
        self._f = open(self.folder / part, "wb")  # noqa: SIM115 - closed in _close
        self._h, self._n = hashlib.sha256(), 0
        self.parts.append({"name": part})

    def _close(self) -> None:
        if self._f:
            self._f.close()
            self.parts[-1].update(size=self._n, sha256=self._h.hexdigest())
            self._f = None

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        while view:
            if self._f is None:
                self._open()
            room = (self.split - self._n) if self.split else len(view)
            chunk = view[:room]
            whole = self._pool.submit(self.total.update, chunk)
            self._f.write(chunk)  # type: ignore[union-attr]
            self._h.update(chunk)
            whole.result()  # before the caller may reuse its buffer
            self._n += len(chunk)
            self.size += len(chunk)
            view = view[len(chunk):]
            if self.split and self._n >= self.split:
                self._close()
        return len(data)

    def flush(self) -> None:
        pass

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        if not self.parts:
            self._open()
        self._close()

    def shutdown(self) -> None:
        """The hashing thread ends (also when the pack failed half way)."""
        if self._f:
            self._f.close()
            self._f = None
        self._pool.shutdown()


def pack(bundle: Path, out_file: Path, *, zstd: bool, level: int, split: int | None,
         force: bool, progress: Any = None) -> dict[str, Any]:
    progress = progress or NullProgress()
    meta = load_meta(bundle)
    files = bundle_files(bundle)
    for rel in files:
        if (bundle / rel).is_symlink() or not (bundle / rel).is_file():
            raise IntegrityError(f"{bundle / rel}: not a regular file; refusing to pack it")
    out_file = out_file.absolute()
    index_path = out_file.with_name(out_file.name + ".parts.json")
    name = out_file.name
    stage = out_file.parent / f".{name}{TMP_MARK}{os.getpid()}"
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir(exist_ok=False)
    except OSError as e:
        raise StorageError(f"cannot write beside {out_file}: {e.strerror}") from None
    epoch = _epoch(meta.get("created"))
    total = sum((bundle / rel).stat().st_size for rel in files)
    task = progress.add_task(f"pack {name}", total=total)
    sink = _PartSink(stage, name, split)
    try:
        writer: Any = sink
        if zstd:
            cctx = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True)
            writer = cctx.stream_writer(sink, closefd=False)
        # "w", not "w|": tarfile's stream mode appends each 16 KiB read to a 4 MiB buffer
        # (bytes +=, a copy of the whole buffer each time) and ran at a fifth of the disk's
        # speed; here every read is CHUNK and goes straight to the sink (same bytes)
        with tarfile.open(fileobj=writer, mode="w", format=tarfile.GNU_FORMAT,
                          copybufsize=CHUNK) as tar:
            dirs = sorted({str(Path(r).parent) for r in files} - {"."})
            for d in _with_parents(dirs):
                tar.addfile(_info(d, tarfile.DIRTYPE, 0, 0o755, epoch))
            for rel in files:
                size = (bundle / rel).stat().st_size
                with open_stream(bundle / rel) as f:
                    tar.addfile(_info(rel, tarfile.REGTYPE, size, 0o644, epoch),
                                _Counting(f, lambda n: progress.advance(task, n)))
        if zstd:
            writer.close()
        sink.close()
        outputs = [out_file.parent / p["name"] for p in sink.parts]
        if split:
            outputs.append(index_path)
        existing = [p for p in outputs if p.exists()]
        if existing and not force:
            raise StorageError(f"{existing[0]} already exists",
                               hint="choose another name, or --force to replace")
        for p in sink.parts:
            os.replace(stage / p["name"], out_file.parent / p["name"])
        index = {"format": INDEX_FORMAT, "bundle": {"name": meta["name"],
                                                     "version": meta["version"]},
                 "compression": "zstd" if zstd else "none", "size": sink.size,
                 "sha256": sink.total.hexdigest(), "parts": sink.parts}
        if split:
            atomic_write(index_path, (json.dumps(index, indent=2) + "\n").encode())
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise disk_full(e, out_file) from None
        raise
    finally:
        sink.shutdown()
        shutil.rmtree(stage, ignore_errors=True)
    return {**index, "index": str(index_path) if split else None}


def _epoch(created: str | None) -> int:
    from datetime import datetime

    if not created:
        return 0
    return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())


def _with_parents(dirs: list[str]) -> list[str]:
    out = set()
    for d in dirs:
        parts = d.split("/")
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return sorted(out)


def _info(name: str, kind: bytes, size: int, mode: int, epoch: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.mode, ti.mtime = kind, size, mode, epoch
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


class _Counting:
    def __init__(self, f: BinaryIO, advance: Any):
        self.f, self.advance = f, advance

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.advance(len(data))
        return data


# --------------------------------------------------------------------------- unpack

def _locate(source: Path) -> tuple[Path | None, list[Path]]:
    """(index or None, the files to read in order)."""
    if source.name.endswith(".parts.json"):
        index = source
    elif m := PART_RE.match(source.name):
        index = source.with_name(m.group("base") + ".parts.json")
        if not os.path.lexists(index):
            raise IntegrityError(f"{index} is missing: it lists the parts and their hashes",
                                 hint="copy the .parts.json file from the media too")
    else:
        candidate = source.with_name(source.name + ".parts.json")
        index = candidate if os.path.lexists(candidate) else None
    if index is None:
        if not os.path.lexists(source):
            raise IntegrityError(f"{source}: no such file")
        return None, [source]
    return index, []


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _read_index(index: Path) -> dict[str, Any]:
    """The part index, read once within LIMITS["parts"], every field checked: at most
    MAX_PARTS parts named BASE.part001, BASE.part002, … in order (a name is not taken from
    the file as it is: it becomes a path), sizes integers from 0, sha256 64 hex digits."""
    doc = read_json(index, LIMITS["parts"])
    try:
        if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
            raise ValueError(f"format is not {INDEX_FORMAT}")
        parts = doc.get("parts")
        if not isinstance(parts, list) or not 1 <= len(parts) <= MAX_PARTS:
            raise ValueError(f"parts must list 1 to {MAX_PARTS} parts")
        first = parts[0].get("name") if isinstance(parts[0], dict) else None
        m = PART_RE.match(first) if isinstance(first, str) else None
        base = m.group("base") if m else ""
        if not base or "/" in base or "\0" in base or base.startswith("."):
            raise ValueError(f"unsafe part name {first!r}"[:200])
        if len(f"{base}.part{len(parts):03d}".encode()) > 255:  # NAME_MAX: not a file name
            raise ValueError(f"part names longer than 255 bytes ({first[:60]!r}...)")
        total = 0
        for i, p in enumerate(parts, 1):
            want = f"{base}.part{i:03d}"
            if not isinstance(p, dict) or p.get("name") != want:
                got = p.get("name") if isinstance(p, dict) else p
                raise ValueError(f"part {i} must be named {want!r}, not {got!r}"[:200])
            total += non_negative_int(p.get("size"), f"part {i}: size")
            if type(p.get("sha256")) is not str or not _HEX64.fullmatch(p["sha256"]):
                raise ValueError(f"part {i}: sha256 must be 64 hex digits")
        if "size" in doc and non_negative_int(doc["size"], "size") != total:
            raise ValueError(f"size {doc['size']} is not the sum of the parts' ({total})")
        if isinstance(doc.get("bundle"), dict) and "version" in doc["bundle"]:
            positive_int(doc["bundle"]["version"], "bundle.version")
        return doc
    except (ValueError, AirlockError) as e:
        raise IntegrityError(f"{index}: not a valid part index ({e})") from None


def _read_state(state_file: Path) -> dict[str, Any]:
    """Parts checked before (a cache beside the output): anything unreadable, a link, a
    FIFO or not what this wrote is no cache at all (the parts are hashed again)."""
    if not os.path.lexists(state_file):
        return {}
    try:
        state = read_json(state_file, LIMITS["state"])
    except AirlockError:
        return {}
    return state if isinstance(state, dict) else {}


@dataclass
class _Pending:
    """A part not checked yet: its hash is compared as the stream reads it."""
    name: str
    sha256: str
    key: list[int]


def _check_parts(index: Path, doc: dict[str, Any], state_file: Path, progress: Any
                 ) -> tuple[list[Path], dict[Path, _Pending], dict[str, Any]]:
    """The parts' paths, the ones still to hash (those an earlier run checked, unchanged
    since, are not), and the resume state. A part missing, not a regular file or of the
    wrong size stops here, before anything is extracted; then the others are hashed at
    once, so that every bad part is named in one go and the good ones are remembered."""
    state = _read_state(state_file)
    problems: list[dict[str, str]] = []
    paths: list[Path] = []
    pending: dict[Path, _Pending] = {}
    for p in doc["parts"]:
        path = index.parent / p["name"]
        paths.append(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            problems.append({"file": p["name"], "problem": "missing"})
            continue
        if not stat.S_ISREG(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            problems.append({"file": p["name"], "problem": f"is {kind}; parts must be "
                             "regular files"})
            continue
        if st.st_size != p["size"]:
            problems.append({"file": p["name"], "problem": f"has {st.st_size} bytes, the "
                             f"index says {p['size']} (truncated or wrong file)"})
            continue
        key = [st.st_size, st.st_mtime_ns, st.st_ino]
        cached = state.get(p["name"])
        if not (isinstance(cached, dict) and cached.get("key") == key
                and cached.get("sha256") == p["sha256"]):
            pending[path] = _Pending(p["name"], p["sha256"], key)
    if problems:
        task = progress.add_task("check parts",
                                 total=sum(want.key[0] for want in pending.values()))
        for path, want in pending.items():
            digest, _ = sha256_file(path, lambda n: progress.advance(task, n),
                                    what=want.name)
            if digest[7:] == want.sha256:
                state[want.name] = {"key": want.key, "sha256": want.sha256}
            else:
                problems.append(_damaged(want.name))
        _bad_parts(problems, doc, state, state_file)
    return paths, pending, state


def _damaged(name: str) -> dict[str, str]:
    return {"file": name, "problem": "sha256 differs from the index (damaged copy)"}


def _bad_parts(problems: list[dict[str, str]], doc: dict[str, Any], state: dict[str, Any],
               state_file: Path) -> None:
    """Remember the parts found good; raise naming the bad ones (in the index's order)."""
    atomic_write(state_file, json.dumps(state).encode())
    order = {p["name"]: k for k, p in enumerate(doc["parts"])}
    problems.sort(key=lambda x: order.get(x["file"], 0))
    raise IntegrityError(f"{len(problems)} of {len(doc['parts'])} parts are missing or "
                         f"damaged", problems,
                         hint="copy those parts again and re-run; good parts are "
                              "remembered and not re-read")


class _Concat:
    """Read several files as one stream (each opened only if it is a regular file). The
    parts in PENDING are hashed as they are read: one pass over the media, not a check
    pass and then an extraction pass. ``bad`` names those whose hash differed;
    ``checked`` those that matched."""

    def __init__(self, paths: list[Path], pending: dict[Path, _Pending] | None = None):
        self.paths = list(paths)
        self.pending = pending or {}
        self.f: BinaryIO | None = None
        self.current: _Pending | None = None
        self.h: Any = None
        self.pos = 0
        self.bad: list[dict[str, str]] = []
        self.checked: list[_Pending] = []
        # a part's hash is taken on a second thread while this one extracts what was read
        # (hashlib lets go of the GIL): one update in flight at a time, in order
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="unpack-hash") \
            if self.pending else None
        self._hashing: Any = None

    def _settle(self) -> None:
        """The update in flight (if any) done."""
        if self._hashing is not None:
            self._hashing.result()
            self._hashing = None

    def _hash(self, data: bytes) -> None:
        self._settle()
        self._hashing = self._pool.submit(self.h.update, data) if self._pool else None

    def read(self, n: int = -1) -> bytes:
        while True:
            if self.f is None:
                if not self.paths:
                    return b""
                path = self.paths.pop(0)
                self.f = open_stream(path)
                self.current = self.pending.get(path)
                self.h = hashlib.sha256() if self.current else None
            data = self.f.read(n if n and n > 0 else CHUNK)
            if data:
                self.pos += len(data)
                if self.h is not None:
                    self._hash(data)  # bytes: nobody changes them while they are hashed
                return data
            self.f.close()
            self.f = None
            if self.current is not None:
                self._settle()
                ok = self.h.hexdigest() == self.current.sha256
                (self.checked.append(self.current) if ok
                 else self.bad.append(_damaged(self.current.name)))
                self.current = None

    def drain(self) -> None:
        """Read (and hash) the rest: after the archive's end, or after an error, so that
        every part's hash is known."""
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        if self.f:
            self.f.close()
        if self._pool is not None:
            self._pool.shutdown()


@contextmanager
def _open_stream(raw: _Concat) -> Iterator[BinaryIO]:
    head = raw.read(4)
    rest = _Prefixed(head, raw)
    try:
        if head == ZSTD_MAGIC:
            dctx = zstandard.ZstdDecompressor()
            with dctx.stream_reader(rest, read_size=CHUNK, closefd=False) as r:
                yield r  # type: ignore[misc]
        else:
            yield rest  # type: ignore[misc]
    finally:
        raw.close()


class _Prefixed:
    def __init__(self, head: bytes, rest: _Concat):
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head, b""
            return out
        return self.rest.read(n)


def _safe_name(name: str) -> str | None:
    if name.startswith("/") or "\\" in name or "\x00" in name or len(name) > MAX_NAME:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


class HeaderRefused(Exception):
    pass


class BoundedTarInfo(tarfile.TarInfo):
    """Refuses, before tarfile reads its data whole into memory, a pax or GNU long-name
    header past MAX_HEADER bytes, and a global pax header (it would pile up for the rest of
    the stream); airlock's own archives (GNU format, short names) have neither."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type == tarfile.XGLTYPE:
            raise HeaderRefused("a global pax header (airlock's archives have none)")
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                         tarfile.SOLARIS_XHDTYPE) and self.size > MAX_HEADER:
            raise HeaderRefused(f"an extended header of {self.size} bytes, more than the "
                                 f"{MAX_HEADER} airlock accepts")
        return super()._proc_member(tar)  # type: ignore[misc]


class _Listed:
    """What may follow SHA256SUMS in the stream: the files it lists, a few it cannot list
    (signatures, TUF metadata, delta.json), and the folders they are in."""

    def __init__(self, sums: bytes, label: str) -> None:
        try:
            self.files = parse_sums(sums.decode("utf-8"))
        except (SumsError, UnicodeDecodeError) as e:
            raise IntegrityError(f"{label}: its SHA256SUMS is malformed ({e})") from None
        self.dirs = {"tuf"}
        for rel in self.files:
            parts = rel.split("/")[:-1]
            self.dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        self.unlisted = 0

    def check(self, rel: str, is_dir: bool, label: str, name: str) -> None:
        if is_dir:
            if rel not in self.dirs:
                raise IntegrityError(f"{label}: member {name!r} is a folder no file of "
                                     "SHA256SUMS is in; refused")
            return
        if rel in self.files:
            return
        if rel == SUMS or not excluded_from_sums(rel):
            raise IntegrityError(f"{label}: member {name!r} is not listed in SHA256SUMS; "
                                 "refused")
        self.unlisted += 1
        if self.unlisted > MAX_UNLISTED:
            raise IntegrityError(f"{label}: more than {MAX_UNLISTED} signature and TUF "
                                 "files; refused")


def _extract(stream: BinaryIO, dest: Path, label: str, progress: Any
             ) -> dict[str, tuple[str, int]]:
    hashed: dict[str, tuple[str, int]] = {}
    task = progress.add_task("unpack", total=None)
    count = 0
    listed: _Listed | None = None
    try:
        tar = tarfile.open(fileobj=stream, mode="r|", bufsize=STREAM_CHUNK,  # noqa: SIM115
                           tarinfo=BoundedTarInfo)
    except HeaderRefused as e:  # the first header is read on opening
        raise IntegrityError(f"{label}: member 1 has {e}; refused") from None
    # each file's hash is taken on a second thread while this one writes the same bytes
    with tar, ThreadPoolExecutor(1, thread_name_prefix="unpack-file-hash") as hasher:
        while True:
            try:
                m = tar.next()
            except HeaderRefused as e:
                raise IntegrityError(f"{label}: member {count + 1} has {e}; refused") from None
            if m is None:
                break
            tar.members.clear()  # a stream needs no list of what passed: memory stays flat
            count += 1
            if count > MAX_MEMBERS:
                raise IntegrityError(f"{label}: more than {MAX_MEMBERS} members; refused")
            if listed is None and count > BEFORE_SUMS:
                raise IntegrityError(f"{label}: no SHA256SUMS among its first {BEFORE_SUMS} "
                                     "members (airlock pack writes it first): not a packed "
                                     "bundle; refused")
            rel = _safe_name(m.name)
            if rel is None:
                raise IntegrityError(f"{label}: member {m.name[:200]!r} has an unsafe path "
                                     "(absolute, '..' or too long); refused")
            if listed is not None:
                listed.check(rel, m.isdir(), label, m.name)
            if m.isdir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
                continue
            if not m.isfile() or m.issparse():
                kind = "link" if m.issym() or m.islnk() else "special file"
                raise IntegrityError(f"{label}: member {m.name!r} is a {kind}; bundles hold "
                                     "regular files only")
            if rel in hashed:
                raise IntegrityError(f"{label}: member {m.name!r} appears twice; refused")
            if rel == SUMS and m.size > LIMITS[SUMS]:
                raise IntegrityError(f"{label}: its SHA256SUMS has {m.size} bytes, more than "
                                     f"the {LIMITS[SUMS] >> 20} MiB airlock accepts; refused")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if shutil.disk_usage(dest).free < m.size + (64 << 20):
                raise StorageError(f"not enough space in {dest.parent} for {rel} "
                                   f"({m.size} bytes)", hint="free space and re-run")
            src = tar.extractfile(m)
            assert src is not None
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            h = hashlib.sha256()
            n = 0
            kept = bytearray() if rel == SUMS else None
            with os.fdopen(fd, "wb") as f:
                while chunk := src.read(STREAM_CHUNK):
                    hashing = hasher.submit(h.update, chunk)  # beside the write
                    f.write(chunk)
                    if kept is not None:
                        kept += chunk
                    n += len(chunk)
                    progress.advance(task, len(chunk))
                    hashing.result()
            if n != m.size:
                raise IntegrityError(f"{label}: member {rel} is truncated")
            hashed[rel] = ("sha256:" + h.hexdigest(), n)
            if kept is not None:
                listed = _Listed(bytes(kept), label)
    return hashed


def _parts_to_blame(raw: _Concat, doc: dict[str, Any] | None, state: dict[str, Any],
                    state_file: Path) -> None:
    """After the stream ended or broke: every part hashed; raise naming the damaged ones
    (a damaged part explains a broken archive better than the archive's own error)."""
    if doc is None:
        return
    raw.drain()
    if raw.bad:
        for good in raw.checked:
            state[good.name] = {"key": good.key, "sha256": good.sha256}
        _bad_parts(list(raw.bad), doc, state, state_file)


def unpack(source: Path, out_dir: Path, *, force: bool, progress: Any = None,
           trust_root: Path | None = None, state_dir: Path | None = None) -> dict[str, Any]:
    """With ``trust_root``, the signatures are checked too before the bundle is renamed
    into place (and the trust state advances only then)."""
    progress = progress or NullProgress()
    index, files = _locate(source)
    out_dir = out_dir.absolute()
    state_file = out_dir.parent / f".{out_dir.name}.airlock-parts.json"
    doc, pending, state = None, {}, {}
    if index is not None:
        doc = _read_index(index)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        files, pending, state = _check_parts(index, doc, state_file, progress)
    label = str(index or source)
    raw = _Concat(files, pending)
    try:
        with staged_dir(out_dir, force=force) as tmp, _open_stream(raw) as stream:
            try:
                hashed = _extract(stream, tmp, label, progress)
            except (tarfile.TarError, zstandard.ZstdError, EOFError, IntegrityError) as e:
                _parts_to_blame(raw, doc, state, state_file)
                if isinstance(e, IntegrityError):
                    raise
                raise IntegrityError(f"{label}: truncated or damaged archive ({e})",
                                     hint="copy it again from the original media") from None
            _parts_to_blame(raw, doc, state, state_file)
            if trust_root is not None:
                from installer.bundle.trust import verify_signed

                trusted = verify_signed(tmp, trust_root, state_dir, progress, hashed)
                report, problems = trusted.integrity, trusted.to_json()["problems"]
                ok = trusted.ok
            else:
                report = verify(tmp, progress, hashed=hashed)
                ok, problems = report.ok, report.problems
            if not ok:
                raise IntegrityError(f"{label}: the unpacked bundle does not verify",
                                     problems)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise disk_full(e, out_dir) from None
        raise
    state_file.unlink(missing_ok=True)
    return {"path": str(out_dir), "name": report.meta.get("name"),
            "version": report.meta.get("version"), "files": report.files,
            "bytes": report.bytes, "parts": len(doc["parts"]) if doc else 1,
            "digest": report.digest, "signaturesChecked": trust_root is not None}
