"""airlock's wheel also carries the project files a controller needs to deploy: ansible.cfg,
roles/, playbooks/, the example inventories, the bundle specs and locks and the port matrix.
They are wheel data files: pip installs them into ``PREFIX/share/airlock`` (PREFIX: the venv,
e.g. /opt/airlock), where ``installer.site.project_root()`` finds them when there is no
checkout. The list comes from ``git ls-files`` (tracked files only: never .venv, out/,
caches, __pycache__ or the lab's generated inventories/lab/hosts.yml), so build the wheel
from a git checkout. Without git it only warns: an editable install (pip install -e) needs
none of them, a checkout being its own project root (nor does setuptools' editable wheel
copy data files), and a bundle's pypi.self build refuses a wheel without them.
Everything else is in pyproject.toml.
"""

import subprocess
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
SHARE = "share/airlock"
PROJECT = ["ansible.cfg", "roles", "playbooks", "inventories", ":(glob)bundles/*.yaml",
           ":(glob)bundles/*.lock.json", ":(glob)docs/port-matrix.*",
           ":(exclude)inventories/lab/hosts.yml"]


def project_files() -> list[tuple[str, list[str]]]:
    """[(PREFIX-relative folder, [checkout-relative files])], for setuptools' data_files."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *PROJECT], cwd=HERE, check=True,
                             capture_output=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as e:
        # an editable install needs none of them; a bundle's airlock wheel does, and
        # installer.bundle.sources.packages.self_wheel() refuses one without them
        print(f"warning: `git ls-files` failed in {HERE} ({e}): this build of airlock "
              "carries no project files", file=sys.stderr)
        return []
    folders: dict[str, list[str]] = {}
    for rel in sorted(p for p in out.split("\0") if p):
        if (HERE / rel).is_file():  # a tracked file deleted in the work tree is left out
            folders.setdefault(str(Path(SHARE, rel).parent), []).append(rel)
    return sorted(folders.items())


setup(data_files=project_files())
