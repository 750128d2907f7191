"""Debian's own programs for checking configuration, taken from their packages without
installing them (no service started, nothing of the machine changed): ``apt-get download``
into the cache, ``dpkg-deb -x`` into a folder of their own. The tests check what the roles
write with the tools the hosts run (promtool, amtool, the blackbox exporter, rsyslogd).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from installer.errors import LabError
from installer.lab.localimage import cache_dir


def root(*packages: str) -> Path:
    """A folder with PACKAGES unpacked (their files at their installed paths, under it);
    made once per set of packages and the versions apt offers today."""
    versions = []
    for p in packages:
        proc = subprocess.run(["apt-cache", "policy", p], capture_output=True, text=True)
        cand = next((line.split(":", 1)[1].strip() for line in proc.stdout.splitlines()
                     if line.strip().startswith("Candidate:")), "")
        if proc.returncode or not cand or cand == "(none)":
            raise LabError(f"Debian's {p} is not available to apt here",
                           hint="apt-get update, with a Debian bookworm mirror configured")
        versions.append(f"{p}_{cand}")
    dest = cache_dir() / "debtools" / "+".join(v.replace(":", "%") for v in versions)
    if (dest / ".done").exists():
        return dest
    debs = dest.with_name(dest.name + ".debs")
    debs.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["apt-get", "download", *[v.replace("_", "=", 1) for v in versions]],
                          cwd=debs, capture_output=True, text=True)
    if proc.returncode:
        raise LabError(f"apt-get download {' '.join(packages)} failed: "
                       f"{(proc.stdout + proc.stderr).strip()[-500:]}")
    dest.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    (dest / ".done").write_text("\n".join(versions) + "\n")
    return dest


def env(folder: Path) -> dict[str, str]:
    """The environment that runs FOLDER's programs with FOLDER's libraries first."""
    libs = [str(folder / d) for d in ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")]
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(
        [*libs, os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(":")}
