"""The lock file beside a spec (``NAME.lock.json``): every resolved digest, and the
``created`` time that makes builds reproducible.

An entry is reused only while the spec entry it came from is unchanged (same source);
otherwise it is resolved again. ``--locked`` refuses any change; ``--update-lock`` starts
from nothing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from installer.errors import SpecError
from installer.fsutil import atomic_write

LOCK_VERSION = 1


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
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
            if data.get("lockVersion") != LOCK_VERSION:
                raise SpecError(f"lock version {data.get('lockVersion')!r} is not "
                                f"{LOCK_VERSION}", file=str(path),
                                hint="rebuild with --update-lock")
            return cls(path, data["created"], dict(data["entries"]), existed=True)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SpecError(f"lock file is damaged ({e})", file=str(path),
                            hint="rebuild with --update-lock to write a new one") from None

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
