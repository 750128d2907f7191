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
import shutil
from pathlib import Path
from typing import Any

from installer.bundle.digest import sha256_bytes
from installer.bundle.meta import DELTA, SUMS, excluded_from_sums, parse_sums
from installer.bundle.verify import verify
from installer.errors import IntegrityError, UsageError
from installer.fsutil import staged_dir

FORMAT = "airlock-delta/v1"


def read_delta(bundle: Path) -> dict[str, Any] | None:
    """``delta.json`` of BUNDLE, checked for shape; None for a full bundle."""
    path = bundle / DELTA
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_bytes())
        base = doc["base"]
        omitted = {str(o["path"]): int(o["size"]) for o in doc["omitted"]}
        if doc.get("format") != FORMAT or not all(
                isinstance(base.get(k), t) for k, t in
                (("name", str), ("version", int), ("sha256sums", str))):
            raise ValueError("format, base name/version/sha256sums")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{path}: not a delta description ({e})") from None
    for p in omitted:
        if not p.startswith("blobs/sha256/") or "/" in p[len("blobs/sha256/"):]:
            raise IntegrityError(f"{path}: a delta may omit blobs only, not {p!r}")
    return {"base": base, "omitted": omitted}


def make_delta(new: Path, base: Path, out: Path, *, force: bool = False) -> dict[str, Any]:
    for b in (new, base):
        if read_delta(b) is not None:
            raise UsageError(f"{b} is itself a delta; make deltas from full bundles")
        report = verify(b)
        if not report.ok:
            raise IntegrityError(f"{b} does not verify; no delta made",
                                 report.to_json()["problems"])
    new_meta = json.loads((new / "bundle.json").read_bytes())
    base_meta = json.loads((base / "bundle.json").read_bytes())
    if new_meta["name"] != base_meta["name"]:
        raise UsageError(f"{new} is bundle {new_meta['name']!r}, the base is "
                         f"{base_meta['name']!r}: a delta needs the same bundle's older version")
    if int(new_meta["version"]) <= int(base_meta["version"]):
        raise UsageError(f"{new} is v{new_meta['version']}, not newer than the base "
                         f"v{base_meta['version']}")
    new_sums = parse_sums((new / SUMS).read_text())
    base_sums = parse_sums((base / SUMS).read_text())
    omitted = {p: (new / p).stat().st_size for p, d in new_sums.items()
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
            shutil.copy2(p, dest)
            kept_bytes += dest.stat().st_size
        doc = {"format": FORMAT,
               "name": new_meta["name"], "version": new_meta["version"],
               "base": {"name": base_meta["name"], "version": base_meta["version"],
                        "sha256sums": sha256_bytes((base / SUMS).read_bytes())[7:]},
               "omitted": [{"path": p, "size": s} for p, s in sorted(omitted.items())],
               "omittedBytes": sum(omitted.values())}
        (tmp / DELTA).write_text(json.dumps(doc, indent=2) + "\n")
    return {"path": str(out), "name": new_meta["name"], "version": new_meta["version"],
            "base": doc["base"], "omittedFiles": len(omitted),
            "omittedBytes": doc["omittedBytes"], "bytes": kept_bytes}
