"""Debian packages the lab needs on the staging host (the code-server build, the browser):
installed when missing if this is a Debian host and we are root, else a clear error."""

from __future__ import annotations

import os
import shutil
import subprocess

from installer.lab.engine import LabError


def ensure(packages: list[str], why: str, say=print) -> None:  # type: ignore[no-untyped-def]
    if not packages:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise LabError(f"{why} needs Debian packages that are not installed: "
                       + ", ".join(packages), hint="apt-get install " + " ".join(packages))
    say(f"installing Debian packages for {why}: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode:
            raise LabError(f"{' '.join(cmd[:2])} failed:\n{(r.stdout + r.stderr)[-1500:]}",
                           hint="apt-get install " + " ".join(packages))
