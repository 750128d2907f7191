"""Carrying a bundle on media: one tar (optionally zstd) or numbered parts with an index.

Pack writes a reproducible tar (sorted names, fixed times and owners). With ``--split`` the
stream is cut into ``FILE.part001``, ``FILE.part002``, … and ``FILE.parts.json`` records each
part's size and sha256, so a bad copy is found part by part.

Unpack never trusts the archive: only regular files and folders, no absolute paths, no
``..``, no links or devices, no duplicates, free space checked; every file is hashed while it
is written into a private folder beside the target, the result is verified against
SHA256SUMS, and only then renamed into place. Parts already checked are remembered beside
the target, so a re-run after replacing a bad part re-reads only what changed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from installer.bundle.digest import CHUNK, sha256_file
from installer.bundle.inspect import load_meta
from installer.bundle.meta import bundle_files
from installer.bundle.verify import verify
from installer.console import NullProgress
from installer.errors import IntegrityError, StorageError, UsageError
from installer.fsutil import TMP_MARK, atomic_write, disk_full, staged_dir

INDEX_FORMAT = "airlock-parts/v1"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PART_RE = re.compile(r"^(?P<base>.+)\.part(?P<n>\d{3,})$")
MAX_MEMBERS = 1_000_000
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
    """A write-only stream that cuts what it gets into parts, hashing each one."""

    def __init__(self, folder: Path, name: str, split: int | None):
        self.folder, self.name, self.split = folder, name, split
        self.parts: list[dict[str, Any]] = []
        self.total = hashlib.sha256()
        self.size = 0
        self._f: BinaryIO | None = None
        self._h = hashlib.sha256()
        self._n = 0

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
            self._f.write(chunk)  # type: ignore[union-attr]
            self._h.update(chunk)
            self.total.update(chunk)
            self._n += len(chunk)
            self.size += len(chunk)
            view = view[len(chunk):]
            if self.split and self._n >= self.split:
                self._close()
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.parts:
            self._open()
        self._close()


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
    try:
        sink = _PartSink(stage, name, split)
        writer: Any = sink
        if zstd:
            cctx = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True)
            writer = cctx.stream_writer(sink, closefd=False)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.GNU_FORMAT,
                          bufsize=CHUNK) as tar:
            dirs = sorted({str(Path(r).parent) for r in files} - {"."})
            for d in _with_parents(dirs):
                tar.addfile(_info(d, tarfile.DIRTYPE, 0, 0o755, epoch))
            for rel in files:
                size = (bundle / rel).stat().st_size
                with open(bundle / rel, "rb") as f:
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
        if not index.exists():
            raise IntegrityError(f"{index} is missing: it lists the parts and their hashes",
                                 hint="copy the .parts.json file from the media too")
    else:
        candidate = source.with_name(source.name + ".parts.json")
        index = candidate if candidate.exists() else None
    if index is None:
        if not source.is_file():
            raise IntegrityError(f"{source}: no such file")
        return None, [source]
    return index, []


def _read_index(index: Path) -> dict[str, Any]:
    try:
        doc = json.loads(index.read_bytes())
        assert doc["format"] == INDEX_FORMAT
        for p in doc["parts"]:
            if "/" in p["name"] or p["name"].startswith("."):
                raise ValueError(f"unsafe part name {p['name']!r}")
            int(p["size"])
            bytes.fromhex(p["sha256"])
        return doc
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
        raise IntegrityError(f"{index}: not a valid part index ({e})") from None


def _check_parts(index: Path, doc: dict[str, Any], state_file: Path,
                 progress: Any) -> list[Path]:
    state: dict[str, Any] = {}
    if state_file.exists():
        try:
            state = json.loads(state_file.read_text())
        except ValueError:
            state = {}
    problems, paths = [], []
    task = progress.add_task("check parts", total=sum(p["size"] for p in doc["parts"]))
    for p in doc["parts"]:
        path = index.parent / p["name"]
        paths.append(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            problems.append({"file": p["name"], "problem": "missing"})
            continue
        if st.st_size != p["size"]:
            problems.append({"file": p["name"], "problem": f"has {st.st_size} bytes, the "
                             f"index says {p['size']} (truncated or wrong file)"})
            continue
        key = [st.st_size, st.st_mtime_ns, st.st_ino]
        cached = state.get(p["name"])
        if cached and cached["key"] == key and cached["sha256"] == p["sha256"]:
            progress.advance(task, st.st_size)
            continue
        digest, _ = sha256_file(path, lambda n: progress.advance(task, n))
        if digest[7:] != p["sha256"]:
            problems.append({"file": p["name"], "problem": "sha256 differs from the index "
                             "(damaged copy)"})
            continue
        state[p["name"]] = {"key": key, "sha256": p["sha256"]}
    atomic_write(state_file, json.dumps(state).encode())
    if problems:
        raise IntegrityError(f"{len(problems)} of {len(doc['parts'])} parts are missing or "
                             f"damaged", problems,
                             hint="copy those parts again and re-run; good parts are "
                                  "remembered and not re-read")
    return paths


class _Concat:
    """Read several files as one stream."""

    def __init__(self, paths: list[Path]):
        self.paths = list(paths)
        self.f: BinaryIO | None = None
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        while True:
            if self.f is None:
                if not self.paths:
                    return b""
                self.f = open(self.paths.pop(0), "rb")  # noqa: SIM115 - closed below
            data = self.f.read(n if n and n > 0 else CHUNK)
            if data:
                self.pos += len(data)
                return data
            self.f.close()
            self.f = None

    def close(self) -> None:
        if self.f:
            self.f.close()


@contextmanager
def _open_stream(files: list[Path]) -> Iterator[BinaryIO]:
    raw = _Concat(files)
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
    if name.startswith("/") or "\\" in name or "\x00" in name:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def _extract(stream: BinaryIO, dest: Path, label: str, progress: Any
             ) -> dict[str, tuple[str, int]]:
    hashed: dict[str, tuple[str, int]] = {}
    task = progress.add_task("unpack", total=None)
    count = 0
    with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tar:
        for m in tar:
            count += 1
            if count > MAX_MEMBERS:
                raise IntegrityError(f"{label}: more than {MAX_MEMBERS} members; refused")
            rel = _safe_name(m.name)
            if rel is None:
                raise IntegrityError(f"{label}: member {m.name!r} has an unsafe path "
                                     "(absolute or '..'); refused")
            if m.isdir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
                continue
            if not m.isfile():
                kind = "link" if m.issym() or m.islnk() else "special file"
                raise IntegrityError(f"{label}: member {m.name!r} is a {kind}; bundles hold "
                                     "regular files only")
            if rel in hashed:
                raise IntegrityError(f"{label}: member {m.name!r} appears twice; refused")
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
            with os.fdopen(fd, "wb") as f:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    f.write(chunk)
                    n += len(chunk)
                    progress.advance(task, len(chunk))
            if n != m.size:
                raise IntegrityError(f"{label}: member {rel} is truncated")
            hashed[rel] = ("sha256:" + h.hexdigest(), n)
    return hashed


def unpack(source: Path, out_dir: Path, *, force: bool, progress: Any = None,
           trust_root: Path | None = None, state_dir: Path | None = None) -> dict[str, Any]:
    """With ``trust_root``, the signatures are checked too before the bundle is renamed
    into place (and the trust state advances only then)."""
    progress = progress or NullProgress()
    index, files = _locate(source)
    out_dir = out_dir.absolute()
    state_file = out_dir.parent / f".{out_dir.name}.airlock-parts.json"
    doc = None
    if index is not None:
        doc = _read_index(index)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        files = _check_parts(index, doc, state_file, progress)
    label = str(index or source)
    try:
        with staged_dir(out_dir, force=force) as tmp, _open_stream(files) as stream:
            try:
                hashed = _extract(stream, tmp, label, progress)
            except (tarfile.TarError, zstandard.ZstdError, EOFError) as e:
                raise IntegrityError(f"{label}: truncated or damaged archive ({e})",
                                     hint="copy it again from the original media") from None
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
