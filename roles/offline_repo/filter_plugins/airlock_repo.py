"""Filters for the repo host: a bundle's images from its OCI index, and the registry's
htpasswd line."""

from __future__ import annotations

from typing import Any


def airlock_bundle_images(index: dict[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """The images of a bundle: the OCI ref to copy from, and the repository and tag to
    push to (the bundle's image name, and its version or a digest-derived tag)."""
    images = []
    for m in index.get("manifests", []):
        ann = m.get("annotations") or {}
        if ann.get("dev.airlock.kind") != "image":
            continue
        digest = m["digest"]
        tag = ann.get("org.opencontainers.image.version") or "sha256-" + digest[7:19]
        images.append({"ref": ann["org.opencontainers.image.ref.name"],
                       "repository": prefix + ann["dev.airlock.name"], "tag": tag,
                       "digest": digest})
    return images


def airlock_htpasswd(password: str, user: str, existing: str = "") -> str:
    """``user:bcrypt-hash`` for nginx's auth_basic_user_file. The line already in the file
    is kept while it still matches the password, so a re-run changes nothing."""
    import bcrypt

    pw = password.encode()
    for line in existing.splitlines():
        name, _, hashed = line.partition(":")
        if name == user and hashed.startswith("$2"):
            try:
                if bcrypt.checkpw(pw, hashed.encode()):
                    return line
            except ValueError:
                pass
    return f"{user}:{bcrypt.hashpw(pw, bcrypt.gensalt(12)).decode()}"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"airlock_bundle_images": airlock_bundle_images,
                "airlock_htpasswd": airlock_htpasswd}
