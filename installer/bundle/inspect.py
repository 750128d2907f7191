"""Reading a bundle's description (``bundle.json``) with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from installer.bundle.meta import BUNDLE_JSON, FORMAT
from installer.errors import IntegrityError


def load_meta(root: Path) -> dict[str, Any]:
    path = root / BUNDLE_JSON
    try:
        meta = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise IntegrityError(f"{root} is not an airlock bundle (no {BUNDLE_JSON})") from None
    except (OSError, ValueError) as e:
        raise IntegrityError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise IntegrityError(f"{path}: format is not {FORMAT}",
                             hint="made by another tool or a newer airlock")
    return meta
