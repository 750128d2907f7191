"""Reading a bundle's description (``bundle.json``) with clear errors.

``bundle.json`` comes with the bundle, from outside: it is read once, bounded, and its
fields are checked for type where they are read (a version is an integer from 1, a size an
integer from 0, a digest ``sha256:`` and 64 hex digits; ``true`` is not a version).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from installer.bundle.meta import BUNDLE_JSON, FORMAT
from installer.errors import AirlockError, IntegrityError
from installer.untrusted import (
    LIMITS,
    non_negative_int,
    positive_int,
    read_json,
    sha256_digest,
)

_TEXT = ("description", "created", "phase", "platform")


def meta_problems(meta: Any) -> list[str]:
    """What is wrong with the shape of a parsed ``bundle.json`` (empty: nothing)."""
    if not isinstance(meta, dict):
        return ["not a JSON object"]
    if meta.get("format") != FORMAT:
        return [f"format is not {FORMAT}"]
    found: list[str] = []

    def check(fn: Any, value: Any, what: str) -> None:
        try:
            fn(value, what)
        except AirlockError as e:
            found.append(str(e))

    if type(meta.get("name")) is not str or not meta["name"]:
        found.append("name must be a non-empty string")
    check(positive_int, meta.get("version"), "version")
    for key in _TEXT:
        if key in meta and type(meta[key]) is not str:
            found.append(f"{key} must be a string")
    for key in ("specDigest", "lockDigest"):
        if key in meta:
            check(sha256_digest, meta[key], key)
    artifacts = meta.get("artifacts")
    if not isinstance(artifacts, list):
        return [*found, "artifacts must be a list"]
    for i, a in enumerate(artifacts):
        where = f"artifacts[{i}]"
        if not isinstance(a, dict):
            found.append(f"{where} must be an object")
            continue
        for key in ("kind", "name"):
            if type(a.get(key)) is not str:
                found.append(f"{where}.{key} must be a string")
        check(sha256_digest, a.get("digest"), f"{where}.digest")
        check(non_negative_int, a.get("size"), f"{where}.size")
        if "layers" in a:
            check(non_negative_int, a["layers"], f"{where}.layers")
        for key in ("platform", "engine"):
            if key in a and type(a[key]) is not str:
                found.append(f"{where}.{key} must be a string")
        files = a.get("files", [])
        if not isinstance(files, list):
            found.append(f"{where}.files must be a list")
            continue
        for j, f in enumerate(files):
            if not isinstance(f, dict) or type(f.get("path")) is not str:
                found.append(f"{where}.files[{j}] must be an object with a path")
                continue
            check(sha256_digest, f.get("digest"), f"{where}.files[{j}].digest")
            check(non_negative_int, f.get("size"), f"{where}.files[{j}].size")
        if len(found) > 20:
            break
    return found


def load_meta(root: Path) -> dict[str, Any]:
    path = root / BUNDLE_JSON
    if not path.exists() and not path.is_symlink():
        raise IntegrityError(f"{root} is not an airlock bundle (no {BUNDLE_JSON})")
    meta = read_json(path, LIMITS[BUNDLE_JSON])
    if isinstance(meta, dict) and meta.get("format") != FORMAT:
        raise IntegrityError(f"{path}: format is not {FORMAT}",
                             hint="made by another tool or a newer airlock")
    if found := meta_problems(meta):
        raise IntegrityError(f"{path}: " + "; ".join(found[:5]))
    return meta
