"""Delta bundles: a signed bundle without the blobs its base bundle already carries.

The delta is the new bundle itself, byte for byte (its SHA256SUMS, SSH signatures and TUF
metadata unchanged, so reviewers check it as any other), minus every ``blobs/sha256/*``
file that the base lists with the same digest, plus ``delta.json`` naming the base (by
name, version and the digest of its SHA256SUMS) and what was left out. ``delta.json`` is
not signed and needs no signature: an omitted file is taken only from a base release whose
bytes are hashed against the new bundle's signed SHA256SUMS on the repo host.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from installer.bundle.digest import copy_hashing, sha256_bytes
from installer.bundle.meta import DELTA, excluded_from_sums
from installer.bundle.verify import verify
from installer.errors import AirlockError, IntegrityError, UsageError
from installer.fsutil import staged_dir
from installer.untrusted import (
    LIMITS,
    non_negative_int,
    open_stream,
    positive_int,
    read_json,
)

FORMAT = "airlock-delta/v1"


_BLOB = re.compile(r"blobs/sha256/[0-9a-f]{64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def read_delta(bundle: Path) -> dict[str, Any] | None:
    """``delta.json`` of BUNDLE, read once (bounded, a regular file) and checked for shape:
    the base's version an integer from 1, every omitted path a blob, every size an integer
    from 0; None for a full bundle."""
    path = bundle / DELTA
    if not os.path.lexists(path):
        return None
    doc = read_json(path, LIMITS["delta"])
    try:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        base = doc.get("base")
        if not isinstance(base, dict) or type(base.get("name")) is not str \
                or type(base.get("sha256sums")) is not str \
                or not _HEX64.fullmatch(base["sha256sums"]):
            raise ValueError("base needs a name and sha256sums (64 hex digits)")
        positive_int(base.get("version"), "base.version")
        entries = doc.get("omitted")
        if not isinstance(entries, list):
            raise ValueError("omitted must be a list")
        omitted: dict[str, int] = {}
        for i, o in enumerate(entries):
            if not isinstance(o, dict) or type(o.get("path")) is not str:
                raise ValueError(f"omitted[{i}] needs a path")
            if not _BLOB.fullmatch(o["path"]):
                raise IntegrityError(f"a delta may omit blobs only, not {o['path'][:200]!r}")
            omitted[o["path"]] = non_negative_int(o.get("size"), f"omitted[{i}].size")
    except (ValueError, AirlockError) as e:
        raise IntegrityError(f"{path}: not a delta description ({e})") from None
    return {"base": base, "omitted": omitted}


def make_delta(new: Path, base: Path, out: Path, *, force: bool = False) -> dict[str, Any]:
    reports = []
    for b in (new, base):
        if read_delta(b) is not None:
            raise UsageError(f"{b} is itself a delta; make deltas from full bundles")
        report = verify(b)
        if not report.ok:
            raise IntegrityError(f"{b} does not verify; no delta made",
                                 report.to_json()["problems"])
        reports.append(report)
    # what verify read once and checked: bundle.json (its version an int from 1), the
    # lines and bytes of SHA256SUMS, every file's size
    new_report, base_report = reports
    new_meta, base_meta = new_report.meta, base_report.meta
    if new_meta["name"] != base_meta["name"]:
        raise UsageError(f"{new} is bundle {new_meta['name']!r}, the base is "
                         f"{base_meta['name']!r}: a delta needs the same bundle's older version")
    if new_meta["version"] <= base_meta["version"]:
        raise UsageError(f"{new} is v{new_meta['version']}, not newer than the base "
                         f"v{base_meta['version']}")
    new_sums, base_sums = new_report.listed, base_report.listed
    omitted = {p: new_report.hashed[p][1] for p, d in new_sums.items()
               if p.startswith("blobs/sha256/") and base_sums.get(p) == d}
    kept_bytes = 0
    with staged_dir(out, force=force) as tmp:
        for p in sorted(new.rglob("*")):
            rel = p.relative_to(new).as_posix()
            if p.is_dir() or rel in omitted:
                continue
            if rel == DELTA or (not excluded_from_sums(rel) and rel not in new_sums):
                continue
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open_stream(p, what=rel) as src, open(dest, "xb") as dst:
                _, size = copy_hashing(src, dst)
            kept_bytes += size
        doc = {"format": FORMAT,
               "name": new_meta["name"], "version": new_meta["version"],
               "base": {"name": base_meta["name"], "version": base_meta["version"],
                        "sha256sums": sha256_bytes(base_report.sums)[7:]},
               "omitted": [{"path": p, "size": s} for p, s in sorted(omitted.items())],
               "omittedBytes": sum(omitted.values())}
        (tmp / DELTA).write_text(json.dumps(doc, indent=2) + "\n")
    return {"path": str(out), "name": new_meta["name"], "version": new_meta["version"],
            "base": doc["base"], "omittedFiles": len(omitted),
            "omittedBytes": doc["omittedBytes"], "bytes": kept_bytes}
