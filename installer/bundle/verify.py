"""Check a bundle directory: the file set is exactly SHA256SUMS, every file hashes to its
line, blob names are their digests, and every manifest's references resolve with the right
sizes. Every problem is reported with the file it is about, not just the first.

Signatures and TUF metadata are checked by the trust layer on top of this.

The bundle comes from outside: nothing under it is opened unless it is a regular file (no
link is followed, a FIFO or a device is never opened), the walk stops past MAX_FILES
entries, and each JSON document (``oci-layout``, ``index.json``, ``bundle.json``, every
manifest) is read once, within its bound from ``installer.untrusted.LIMITS``, hashed from
those very bytes and parsed only when they match SHA256SUMS. Blobs that are only hashed
(layers, weights) are streamed.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.bundle.digest import sha256_bytes, sha256_many, workers
from installer.bundle.inspect import meta_problems
from installer.bundle.meta import BUNDLE_JSON, SUMS, SumsError, excluded_from_sums, parse_sums
from installer.bundle.store import INDEX_TYPES, Descriptor
from installer.console import NullProgress
from installer.errors import AirlockError, IntegrityError
from installer.untrusted import (
    LIMITS,
    non_negative_int,
    parse_json,
    read_bytes,
    sha256_digest,
)

REQUIRED = ("oci-layout", "index.json", BUNDLE_JSON, SUMS)
# Entries (files and folders) under a bundle: far above a 100 000-package mirror's blobs,
# and a bound on the walk's memory and time for a folder of millions of empty files.
MAX_FILES = 1_000_000
# The JSON documents at the top of a bundle and their bounds (LIMITS kinds).
TOP_JSON = {"oci-layout": "state", "index.json": "index.json", BUNDLE_JSON: "bundle.json"}


@dataclass
class Report:
    path: Path
    problems: list[dict[str, str]] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    digest: str | None = None
    # what the trust layer and signing reuse instead of reading the files again: the bytes
    # of SHA256SUMS that were checked, its lines, (digest, size) of every file hashed, and
    # bundle.json's name even when the bundle failed (to find its trust state)
    sums: bytes = b""
    listed: dict[str, str] = field(default_factory=dict)
    hashed: dict[str, tuple[str, int]] = field(default_factory=dict)
    name: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str, problem: str) -> None:
        self.problems.append({"file": file, "problem": problem})

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "ok": self.ok, "name": self.meta.get("name"),
                "version": self.meta.get("version"), "digest": self.digest,
                "files": self.files, "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "workers": workers(), "problems": self.problems}


def descriptor(d: Any, what: str) -> Descriptor:
    """An OCI descriptor from a bundle's JSON, its fields checked: a media type, a sha256
    digest (it becomes a path), a size from 0. Raises IntegrityError naming WHAT."""
    if not isinstance(d, dict) or type(d.get("mediaType")) is not str:
        raise IntegrityError(f"{what}: a descriptor needs a mediaType string")
    annotations = d.get("annotations", {})
    if not isinstance(annotations, dict):
        raise IntegrityError(f"{what}: annotations must be an object")
    return Descriptor(d["mediaType"], sha256_digest(d.get("digest"), f"{what}: digest"),
                      non_negative_int(d.get("size"), f"{what}: size"), dict(annotations),
                      d.get("artifactType"), d.get("platform"))


def _entries(root: Path, report: Report) -> dict[str, tuple[int, int]] | None:
    """{relpath: (mode, size)} of everything under ROOT but folders, links not followed;
    None (and a problem) past MAX_FILES entries."""
    out: dict[str, tuple[int, int]] = {}
    seen = 0
    stack = [("", str(root))]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as it:
            for e in it:
                seen += 1
                if seen > MAX_FILES:
                    report.add(".", f"more than {MAX_FILES} files and folders; not a bundle "
                               "airlock wrote")
                    return None
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((prefix + e.name + "/", e.path))
                else:
                    out[prefix + e.name] = (st.st_mode, st.st_size)
    return out


def verify(root: Path, progress: Any = None,
           hashed: dict[str, tuple[str, int]] | None = None,
           omitted: set[str] | None = None) -> Report:
    """``hashed`` (relpath -> (digest, size)) skips re-hashing files whose bytes the caller
    has just hashed while writing them (unpack). ``omitted``: a delta bundle's blobs that
    its base supplies; they may be absent here (and are checked where they are)."""
    omitted = omitted or set()
    progress = progress or NullProgress()
    t0 = time.monotonic()
    report = Report(root)
    if not root.is_dir():
        report.add(str(root), "not a folder")
        return report
    try:
        entries = _entries(root, report)
    except OSError as e:
        report.add(str(getattr(e, "filename", root)), f"cannot read ({e.strerror})")
        return report
    if entries is None:
        return report
    for rel in REQUIRED:
        if rel not in entries:
            report.add(rel, "missing (not an airlock bundle, or damaged)")
    if SUMS not in entries:
        return report
    try:
        sums_raw = read_bytes(root / SUMS, LIMITS[SUMS], what=SUMS)
        listed = parse_sums(sums_raw.decode("utf-8"))
    except (SumsError, UnicodeDecodeError) as e:
        report.add(SUMS, f"malformed: {e}")
        return report
    except AirlockError as e:
        report.add(SUMS, str(e))
        return report
    report.digest = sha256_bytes(sums_raw)
    report.sums, report.listed = sums_raw, listed

    on_disk: dict[str, int] = {}
    for rel, (mode, size) in sorted(entries.items()):
        if stat.S_ISLNK(mode):
            report.add(rel, "is a symbolic link; bundles hold regular files only")
        elif not stat.S_ISREG(mode):
            report.add(rel, "is not a regular file")
        elif not excluded_from_sums(rel):
            on_disk[rel] = size
    for rel in sorted(on_disk.keys() - listed.keys()):
        report.add(rel, "present but not listed in SHA256SUMS")
    for rel in sorted(listed.keys() - on_disk.keys() - omitted):
        report.add(rel, "listed in SHA256SUMS but missing")
    for rel in sorted(omitted - listed.keys()):
        report.add(rel, "the delta omits a file SHA256SUMS does not list")

    present = sorted(listed.keys() & on_disk.keys())
    hashed = dict(hashed or {})
    total = sum(on_disk[rel] for rel in present)
    task = progress.add_task("verify", total=total)
    # JSON documents first: each read once (bounded), hashed from those bytes, parsed only
    # when they match SHA256SUMS; what they refer to is checked after every file is hashed
    structure = _Structure(root, report, listed, on_disk, omitted, hashed)
    for rel, kind in TOP_JSON.items():
        structure.load(rel, kind)
    index = structure.docs.get("index.json")
    if isinstance(index, dict):
        structure.walk_index(index)
    structure.name_from()
    present = [rel for rel in present if rel not in structure.refused]
    todo = [root / rel for rel in present if rel not in hashed]
    progress.advance(task, sum(hashed[rel][1] for rel in present if rel in hashed))
    try:
        for path, result in sha256_many(todo, lambda n: progress.advance(task, n)).items():
            hashed[path.relative_to(root).as_posix()] = result
    except OSError as e:
        report.add(str(getattr(e, "filename", "?")), f"cannot read ({e.strerror})")
        return report
    except AirlockError as e:  # a file swapped for a FIFO or a link since the walk
        report.add("?", str(e))
        return report
    for rel in present:
        digest, size = hashed[rel]
        report.files += 1
        report.bytes += size
        if digest != listed[rel]:
            report.add(rel, "content differs from SHA256SUMS (changed or damaged)")
        if rel.startswith("blobs/sha256/") and rel[len("blobs/sha256/"):] != listed[rel][7:]:
            report.add(rel, "blob name is not the digest SHA256SUMS gives it")
    report.hashed = hashed
    if report.ok:
        structure.finish()
    report.seconds = time.monotonic() - t0
    return report


class _Structure:
    """The JSON side of a bundle: its top documents and every manifest, each read once."""

    def __init__(self, root: Path, report: Report, listed: dict[str, str],
                 on_disk: dict[str, int], omitted: set[str],
                 hashed: dict[str, tuple[str, int]]) -> None:
        self.root, self.report, self.listed = root, report, listed
        self.on_disk, self.omitted, self.hashed = on_disk, omitted, hashed
        self.raw: dict[str, bytes] = {}
        self.docs: dict[str, Any] = {}
        self.problems: list[tuple[str, str]] = []  # reported when every file hashed right
        self.seen: set[str] = set()
        self.refused: set[str] = set()

    def later(self, file: str, problem: str) -> None:
        self.problems.append((file, problem))

    def load(self, rel: str, kind: str) -> Any:
        """REL's parsed JSON, or None: read once within LIMITS[KIND], hashed, and parsed
        only when those bytes are the ones SHA256SUMS lists."""
        if rel in self.docs or rel not in self.listed or rel not in self.on_disk:
            return self.docs.get(rel)
        self.docs[rel] = None
        try:
            data = read_bytes(self.root / rel, LIMITS[kind], what=rel)
        except AirlockError as e:
            self.report.add(rel, str(e))
            self.refused.add(rel)  # not read again to be hashed
            return None
        self.raw[rel] = data
        self.hashed[rel] = (sha256_bytes(data), len(data))
        if self.hashed[rel][0] != self.listed[rel]:
            return None  # reported with the other digests
        try:
            self.docs[rel] = parse_json(data, rel)
        except AirlockError as e:
            self.later(rel, str(e))
        return self.docs[rel]

    def name_from(self) -> None:
        """bundle.json's name, parsed even from bytes SHA256SUMS does not list: the trust
        layer looks up the bundle's trust state by it, to tell why a bad bundle is bad."""
        doc = self.docs.get(BUNDLE_JSON)
        if doc is None and BUNDLE_JSON in self.raw:
            try:
                doc = parse_json(self.raw[BUNDLE_JSON], BUNDLE_JSON)
            except AirlockError:
                return
        if isinstance(doc, dict) and type(doc.get("name")) is str:
            self.report.name = doc["name"]

    def blob(self, desc: Descriptor, where: str) -> str | None:
        rel = "blobs/sha256/" + desc.digest[7:]
        if rel in self.omitted:
            return None  # the base has it: checked against SHA256SUMS on the repo host
        if rel not in self.on_disk:
            self.later(where, f"refers to missing blob {desc.digest}")
            return None
        if self.on_disk[rel] != desc.size:
            self.later(rel, f"has {self.on_disk[rel]} bytes, {where} says {desc.size}")
            return None
        return rel

    def walk_index(self, index: dict[str, Any]) -> None:
        manifests = index.get("manifests", [])
        if not isinstance(manifests, list):
            self.later("index.json", "manifests must be a list")
            return
        for i, m in enumerate(manifests):
            try:
                d = descriptor(m, f"index.json manifests[{i}]")
            except AirlockError as e:
                self.later("index.json", f"bad descriptor ({e})")
                continue
            self.seen.add(d.digest)
            self.walk(d, "index.json")

    def walk(self, desc: Descriptor, where: str, depth: int = 0) -> None:
        rel = self.blob(desc, where)
        if rel is None or depth > 2:
            return
        doc = self.load(rel, "bundle-manifest")
        if doc is None:
            return
        is_index = desc.media_type in INDEX_TYPES
        try:
            if not isinstance(doc, dict):
                raise IntegrityError("not a JSON object")
            children = doc["manifests"] if is_index else [doc["config"], *doc["layers"]]
            if not isinstance(children, list):
                raise IntegrityError("its list of descriptors is not a list")
            for i, child in enumerate(children):
                d = descriptor(child, f"descriptor {i}")
                if is_index:
                    self.walk(d, f"index {desc.digest}", depth + 1)
                else:
                    self.blob(d, f"manifest {desc.digest}")
        except (AirlockError, KeyError, TypeError) as e:
            self.later(rel, f"not a valid manifest ({e})")

    def finish(self) -> None:
        """The structure's problems (reported only when every file hashed right: a damaged
        file is the one problem then), and bundle.json against index.json."""
        report = self.report
        for file, problem in self.problems:
            report.add(file, problem)
        layout = self.docs.get("oci-layout")
        if "oci-layout" in self.raw and self.docs.get("oci-layout") is not None and (
                not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0"):
            report.add("oci-layout", "imageLayoutVersion is not 1.0.0")
        index, meta = self.docs.get("index.json"), self.docs.get(BUNDLE_JSON)
        if not isinstance(index, dict) or not isinstance(meta, dict):
            for rel in ("index.json", BUNDLE_JSON):
                if rel in self.raw and not isinstance(self.docs.get(rel), dict) and \
                        not any(p["file"] == rel for p in report.problems):
                    report.add(rel, "not a JSON object")
            return
        if found := meta_problems(meta):
            for problem in found[:20]:
                report.add(BUNDLE_JSON, problem)
            return
        report.meta = meta
        listed = {a.get("digest") for a in meta.get("artifacts", []) if isinstance(a, dict)}
        for digest in sorted(listed - self.seen):
            report.add(BUNDLE_JSON, f"lists artifact {digest} that index.json does not")
        for digest in sorted(self.seen - listed):
            report.add("index.json", f"lists manifest {digest} that bundle.json does not")
