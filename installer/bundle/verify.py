"""Check a bundle directory: the file set is exactly SHA256SUMS, every file hashes to its
line, blob names are their digests, and every manifest's references resolve with the right
sizes. Every problem is reported with the file it is about, not just the first.

Signatures and TUF metadata are checked by the trust layer on top of this.
"""

from __future__ import annotations

import json
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.bundle.digest import sha256_bytes, sha256_many, workers
from installer.bundle.meta import BUNDLE_JSON, SUMS, SumsError, excluded_from_sums, parse_sums
from installer.bundle.store import INDEX_TYPES, Descriptor
from installer.console import NullProgress

REQUIRED = ("oci-layout", "index.json", BUNDLE_JSON, SUMS)


@dataclass
class Report:
    path: Path
    problems: list[dict[str, str]] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    digest: str | None = None

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


def _read_json(root: Path, rel: str, report: Report) -> Any:
    try:
        return json.loads((root / rel).read_bytes())
    except (OSError, ValueError) as e:
        report.add(rel, f"not readable JSON ({e})")
        return None


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
    for rel in REQUIRED:
        if not (root / rel).is_file():
            report.add(rel, "missing (not an airlock bundle, or damaged)")
    if not (root / SUMS).is_file():
        return report
    try:
        sums_raw = (root / SUMS).read_bytes()
        listed = parse_sums(sums_raw.decode("utf-8"))
    except (SumsError, UnicodeDecodeError) as e:
        report.add(SUMS, f"malformed: {e}")
        return report
    report.digest = sha256_bytes(sums_raw)

    on_disk: set[str] = set()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        mode = p.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if stat.S_ISLNK(mode):
            report.add(rel, "is a symbolic link; bundles hold regular files only")
        elif not stat.S_ISREG(mode):
            report.add(rel, "is not a regular file")
        elif not excluded_from_sums(rel):
            on_disk.add(rel)
    for rel in sorted(on_disk - listed.keys()):
        report.add(rel, "present but not listed in SHA256SUMS")
    for rel in sorted(listed.keys() - on_disk - omitted):
        report.add(rel, "listed in SHA256SUMS but missing")
    for rel in sorted(omitted - listed.keys()):
        report.add(rel, "the delta omits a file SHA256SUMS does not list")

    present = sorted(listed.keys() & on_disk)
    hashed = dict(hashed or {})
    todo = [root / rel for rel in present if rel not in hashed]
    total = sum((root / rel).stat().st_size for rel in present)
    task = progress.add_task("verify", total=total)
    done = sum(hashed[rel][1] for rel in present if rel in hashed)
    progress.advance(task, done)
    try:
        for path, result in sha256_many(todo, lambda n: progress.advance(task, n)).items():
            hashed[path.relative_to(root).as_posix()] = result
    except OSError as e:
        report.add(str(getattr(e, "filename", "?")), f"cannot read ({e.strerror})")
        return report
    for rel in present:
        digest, size = hashed[rel]
        report.files += 1
        report.bytes += size
        if digest != listed[rel]:
            report.add(rel, "content differs from SHA256SUMS (changed or damaged)")
        if rel.startswith("blobs/sha256/") and rel[len("blobs/sha256/"):] != listed[rel][7:]:
            report.add(rel, "blob name is not the digest SHA256SUMS gives it")
    if report.ok:
        _check_structure(root, report, omitted)
    report.seconds = time.monotonic() - t0
    return report


def _check_structure(root: Path, report: Report, omitted: set[str]) -> None:
    layout = _read_json(root, "oci-layout", report)
    if layout is not None and (not isinstance(layout, dict)
                               or layout.get("imageLayoutVersion") != "1.0.0"):
        report.add("oci-layout", "imageLayoutVersion is not 1.0.0")
    index = _read_json(root, "index.json", report)
    meta = _read_json(root, BUNDLE_JSON, report)
    if not isinstance(index, dict) or not isinstance(meta, dict):
        return
    report.meta = meta

    def blob(desc: Descriptor, where: str) -> Path | None:
        algo, _, hexd = desc.digest.partition(":")
        p = root / "blobs" / algo / hexd
        if f"blobs/{algo}/{hexd}" in omitted:
            return None  # the base has it: checked against SHA256SUMS on the repo host
        if algo != "sha256" or not p.is_file():
            report.add(where, f"refers to missing blob {desc.digest}")
            return None
        if p.stat().st_size != desc.size:
            report.add(f"blobs/sha256/{hexd}", f"has {p.stat().st_size} bytes, {where} says "
                       f"{desc.size}")
            return None
        return p

    def walk(desc: Descriptor, where: str, depth: int = 0) -> None:
        p = blob(desc, where)
        if p is None or depth > 2:
            return
        try:
            doc = json.loads(p.read_bytes())
            children: list[dict] = doc["manifests"] if desc.media_type in INDEX_TYPES else \
                [doc["config"], *doc["layers"]]
            for child in children:
                d = Descriptor.from_json(child)
                if desc.media_type in INDEX_TYPES:
                    walk(d, f"index {desc.digest}", depth + 1)
                else:
                    blob(d, f"manifest {desc.digest}")
        except (ValueError, KeyError, TypeError) as e:
            report.add(f"blobs/sha256/{desc.digest[7:]}", f"not a valid manifest ({e})")

    seen = set()
    for m in index.get("manifests", []):
        try:
            d = Descriptor.from_json(m)
        except (KeyError, TypeError, ValueError) as e:
            report.add("index.json", f"bad descriptor ({e})")
            continue
        seen.add(d.digest)
        walk(d, "index.json")
    listed = {a.get("digest") for a in meta.get("artifacts", []) if isinstance(a, dict)}
    for digest in sorted(listed - seen):
        report.add(BUNDLE_JSON, f"lists artifact {digest} that index.json does not")
    for digest in sorted(seen - listed):
        report.add("index.json", f"lists manifest {digest} that bundle.json does not")

