"""airlock's wheel also carries the project files a controller needs to deploy: ansible.cfg,
roles/, playbooks/, the example inventories, the bundle specs and locks and the port matrix.
They are wheel data files: pip installs them into ``PREFIX/share/airlock`` (PREFIX: the venv,
e.g. /opt/airlock), where ``installer.site.project_root()`` finds them when there is no
checkout. The list comes from ``git ls-files`` (tracked files only: never .venv, out/,
caches, __pycache__ or the lab's generated inventories/lab/hosts.yml), so build the wheel
from a git checkout. An editable install (pip install -e) copies none of them: a checkout
is its own project root. Everything else is in pyproject.toml.
"""

import subprocess
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
        raise SystemExit(f"airlock's wheel takes its project files from `git ls-files`, "
                         f"which failed in {HERE} ({e}); build it from a git checkout") from None
    folders: dict[str, list[str]] = {}
    for rel in sorted(p for p in out.split("\0") if p):
        if (HERE / rel).is_file():  # a tracked file deleted in the work tree is left out
            folders.setdefault(str(Path(SHARE, rel).parent), []).append(rel)
    return sorted(folders.items())


setup(data_files=project_files())
