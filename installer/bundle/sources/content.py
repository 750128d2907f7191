"""Models, VSIX extensions and plain files: local paths or URLs with a sha256.

Each entry becomes a list of (relative path, source) jobs; ``build`` runs all jobs of all
entries in one thread pool so that copying and hashing use every core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from installer.bundle.spec import (
    ContentEntry,
    RemoteFile,
)


@dataclass(frozen=True)
class Job:
    relpath: str
    local: Path | None = None
    remote: RemoteFile | None = None

    @property
    def what(self) -> str:
        return str(self.local) if self.local else self.remote.url  # type: ignore[union-attr]


def jobs_for(entry: ContentEntry) -> list[Job]:
    if entry.remote:
        return [Job(r.path, remote=r) for r in entry.remote]
    assert entry.local is not None
    src = entry.local
    if entry.kind == "model":
        if not src.is_dir():
            raise entry.at.error(f"model folder {src} does not exist or is not a folder")
        return [Job(rel, local=src / rel) for rel in walk(src, entry)]
    if not src.is_file():
        raise entry.at.error(f"{src} does not exist or is not a regular file",
                             hint="paths are relative to the spec file's folder")
    return [Job(src.name, local=src)]


def walk(root: Path, entry: ContentEntry) -> list[str]:
    """Every regular file under ``root`` as a POSIX relative path, sorted. Hidden files and
    folders (.git, .cache) are left out; links to files are followed (Hugging Face caches
    are links into a blob store); anything else that is not a file is an error."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            if not p.is_file():
                raise entry.at.error(f"{p} is not a regular file (or a link to one)")
            out.append(p.relative_to(root).as_posix())
    if not out:
        raise entry.at.error(f"model folder {root} has no files")
    return sorted(out)

