"""The lock file beside a spec (``NAME.lock.json``): every resolved digest, and the
``created`` time that makes builds reproducible.

An entry is reused only while the spec entry it came from is unchanged (same source);
otherwise it is resolved again. ``--locked`` refuses any change; ``--update-lock`` starts
from nothing.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from installer.errors import SpecError
from installer.fsutil import atomic_write
from installer.untrusted import LIMITS, Err, positive_int, read_json

LOCK_VERSION = 1
CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
CONTENT, MIRRORS = {"image", "model", "vsix", "file"}, {"pypi", "npm", "deb", "maven", "go"}


def lock_path_for(spec_path: Path) -> Path:
    return spec_path.with_name(spec_path.name.rsplit(".", 1)[0] + ".lock.json")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def source_date_epoch() -> str | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return None
    try:
        return rfc3339(int(value))
    except ValueError:
        raise SpecError(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds") from None


@dataclass
class Lock:
    path: Path
    created: str | None = None
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # "kind/name" -> data
    existed: bool = False

    @classmethod
    def read(cls, path: Path) -> Lock:
        """The lock at PATH (none there: an empty one), read within ``LIMITS["lock"]`` and
        checked field by field: a damaged or hand-edited lock is a spec error (exit 3)."""
        if not os.path.lexists(path):
            return cls(path)
        file = str(path)

        def error(message: str, hint: str | None = None) -> SpecError:
            return SpecError(message, file=file,
                             hint=hint or "rebuild with --update-lock to write a new one")

        data = read_json(path, LIMITS["lock"], what="lock file", error=error,
                         follow_links=True)  # the operator's own file
        if not isinstance(data, dict):
            raise error("lock file is damaged (not a JSON object)")
        version = positive_int(data.get("lockVersion"), "lockVersion", error=error)
        if version != LOCK_VERSION:
            raise error(f"lock version {version!r} is not {LOCK_VERSION}",
                        hint="rebuild with --update-lock")
        created = data.get("created")
        if not isinstance(created, str) or not CREATED.fullmatch(created):
            raise error(f"created must be a UTC time such as 2026-01-01T00:00:00Z, got "
                        f"{_show(created)}")
        entries = data.get("entries")
        if not isinstance(entries, dict):
            raise error(f"entries must be an object, got {_show(entries)}")
        for key, entry in entries.items():
            _check_entry(key, entry, error)
        return cls(path, created, dict(entries), existed=True)

    def get(self, key: str, source: str) -> dict[str, Any] | None:
        entry = self.entries.get(key)
        return entry if entry and entry.get("source") == source else None

    def to_json(self) -> dict[str, Any]:
        return {"lockVersion": LOCK_VERSION, "created": self.created,
                "entries": dict(sorted(self.entries.items()))}

    def write(self) -> None:
        atomic_write(self.path, (json.dumps(self.to_json(), indent=2, sort_keys=True)
                                 + "\n").encode())


def now_created() -> str:
    return source_date_epoch() or rfc3339(time.time())


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _check_entry(key: str, entry: Any, error: Err) -> None:
    """One entry as the build reads it: the fields of its kind, each of its type."""
    kind = key.split("/", 1)[0]
    where = f"entries[{_show(key)}]"
    if "/" not in key or kind not in CONTENT | MIRRORS:
        raise error(f"{where}: unknown entry (expected image/, model/, vsix/, file/, "
                    "pypi/, npm/, deb/, maven/ or go/)")
    if not isinstance(entry, dict):
        raise error(f"{where} must be an object, got {_show(entry)}")
    if not isinstance(entry.get("source"), str):
        raise error(f"{where}.source must be a string, got {_show(entry.get('source'))}")
    if kind == "image":
        for field_ in ("digest", "indexDigest"):
            if field_ in entry or field_ == "digest":
                _digest(entry.get(field_), f"{where}.{field_}", error)
        return
    files = entry.get("files")
    if not isinstance(files, dict):
        raise error(f"{where}.files must be an object, got {_show(files)}")
    for name, digest in files.items():
        _relpath(name, f"{where}.files", error)
        _digest(digest, f"{where}.files[{_show(name)}]", error)
    sizes = entry.get("sizes", {})  # downloads' sizes, recorded on their first build
    if not isinstance(sizes, dict):
        raise error(f"{where}.sizes must be an object, got {_show(sizes)}")
    for name, size in sizes.items():
        if name not in files:
            raise error(f"{where}.sizes[{_show(name)}] names no file in {where}.files")
        if type(size) is not int or size < 0:
            raise error(f"{where}.sizes[{_show(name)}] must be a whole number of bytes, "
                        f"got {_show(size)}")
    url = entry.get("url")  # where a marketplace VSIX was found: fetched again from there
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://",
                                                                            "https://"))):
        raise error(f"{where}.url must be an http(s) URL, got {_show(url)}")
    if kind in CONTENT:
        return
    packages = entry.get("packages")
    if not isinstance(packages, dict):
        raise error(f"{where}.packages must be an object, got {_show(packages)}")
    for name, info in packages.items():
        at = f"{where}.packages[{_show(name)}]"
        _relpath(name, f"{where}.packages", error)
        if not isinstance(info, dict):
            raise error(f"{at} must be an object, got {_show(info)}")
        for field_ in ("name", "version"):
            if not isinstance(info.get(field_), str) or not info[field_]:
                raise error(f"{at}.{field_} must be a non-empty string, got "
                            f"{_show(info.get(field_))}")
        for field_ in ("integrity", "architecture", "h1", "sha1"):
            if field_ in info and not isinstance(info[field_], str):
                raise error(f"{at}.{field_} must be a string, got {_show(info[field_])}")
        if kind == "npm" and not str(info.get("integrity", "")).startswith("sha512-"):
            raise error(f"{at}.integrity must be an npm sha512- integrity value, got "
                        f"{_show(info.get('integrity'))}")
        if info.get("self", False) is not True and "self" in info:
            raise error(f"{at}.self must be true when present, got {_show(info['self'])}")
        if not info.get("self") and name not in files:
            raise error(f"{at} has no digest in {where}.files")
    if missing := sorted(set(files) - set(packages)):
        raise error(f"{where}.files[{_show(missing[0])}] has no package in {where}.packages")


def _digest(value: Any, what: str, error: Err) -> None:
    if not isinstance(value, str) or not DIGEST.fullmatch(value):
        raise error(f"{what} must be sha256: and 64 lower-case hex digits, got {_show(value)}")


def _relpath(name: str, what: str, error: Err) -> None:
    parts = name.split("/")
    if not name or "\x00" in name or name.startswith("/") or ".." in parts:
        raise error(f"{what}: {_show(name)} is not a relative path without '..'")
