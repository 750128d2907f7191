"""The bundle's own files beside the OCI layout: ``bundle.json`` and ``SHA256SUMS``.

``SHA256SUMS`` lists every file of the bundle except itself and signature files, in
``sha256sum -c`` format, sorted by path.
"""

from __future__ import annotations

import re
from pathlib import Path

from installer.bundle.digest import sha256_file

SUMS = "SHA256SUMS"
BUNDLE_JSON = "bundle.json"
SBOM = "sbom.cdx.json"
SELF_INSTALLER = "install-airlock.py"
FORMAT = "airlock-bundle/v1"
SUMS_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


TUF_DIR = "tuf"
# A delta bundle's note of which blobs it leaves to its base. Not signed and not needed to
# be: every omitted file is still checked against the signed SHA256SUMS where it is found.
DELTA = "delta.json"


def excluded_from_sums(relpath: str) -> bool:
    """What signs SHA256SUMS cannot be listed in it: the file itself, the SSH signatures
    over it, and the TUF metadata whose targets are exactly its lines."""
    return (relpath in (SUMS, DELTA) or relpath.startswith(TUF_DIR + "/")
            or (relpath.startswith(SUMS + ".") and relpath.endswith(".sig")))


def bundle_files(root: Path) -> list[str]:
    """Every file under root as a relative POSIX path (links and others included, so that
    callers can refuse them), sorted."""
    out = []
    for p in root.rglob("*"):
        if p.is_dir() and not p.is_symlink():
            continue
        out.append(p.relative_to(root).as_posix())
    return sorted(out)


def write_sums(root: Path, known: dict[str, str]) -> None:
    """``known`` maps relpath -> digest for files already hashed (blobs); the rest are
    hashed here (they are small)."""
    lines = []
    for rel in bundle_files(root):
        if excluded_from_sums(rel):
            continue
        digest = known.get(rel) or sha256_file(root / rel)[0]
        lines.append(f"{digest[7:]}  {rel}\n")
    (root / SUMS).write_text("".join(lines))


class SumsError(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


def parse_sums(text: str) -> dict[str, str]:
    """{relpath: 'sha256:…'}; rejects malformed lines, absolute or '..' paths, duplicates."""
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        m = SUMS_LINE.match(line)
        if not m:
            raise SumsError(i, "not '<64 hex>  <path>'")
        hexd, path = m.groups()
        parts = path.split("/")
        if path.startswith("/") or ".." in parts or "" in parts or "\\" in path:
            raise SumsError(i, f"unsafe path {path!r}")
        if path in out:
            raise SumsError(i, f"{path} listed twice")
        out[path] = "sha256:" + hexd
    return out
