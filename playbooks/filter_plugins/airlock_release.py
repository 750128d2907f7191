"""Filter for the playbooks: what images the served release carries, by name."""

from __future__ import annotations

from typing import Any


def airlock_release_images(index: dict[str, Any]) -> dict[str, str]:
    """Image name -> manifest digest, from a release's OCI index (bundle/index.json)."""
    images = {}
    for m in (index or {}).get("manifests", []):
        ann = m.get("annotations") or {}
        if ann.get("dev.airlock.kind") == "image" and ann.get("dev.airlock.name"):
            images[str(ann["dev.airlock.name"])] = str(m["digest"])
    return images


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"airlock_release_images": airlock_release_images}
