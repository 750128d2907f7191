"""The controller's own places, in one module: where airlock's project files are (roles,
playbooks, inventories, bundle specs: the checkout, or PREFIX/share/airlock for an airlock
installed from its wheel, e.g. by a bundle's install-airlock.py), the site folder (CA, apt
signing key, trust state, known hosts, run records, audit log), the per-inventory lock, and
the import marker a repo host keeps beside each release.

Every path is made absolute here, before anything uses it: a relative path handed to
Ansible would be resolved against the playbooks folder, not where the operator typed it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from installer.errors import BusyError, UsageError

# beside every release on the repo host: name, version and SHA256SUMS digest
MARKER = ".airlock-import.json"
# an installed airlock's project files, under its venv (the wheel's data files: setup.py)
INSTALLED = Path("share", "airlock")


def checkout() -> Path | None:
    """The airlock checkout this package runs from: a parent folder with pyproject.toml,
    bundles/sample.yaml and roles/; None for an installed airlock."""
    for parent in Path(__file__).resolve().parents:
        if ((parent / "pyproject.toml").is_file() and (parent / "roles").is_dir()
                and (parent / "bundles" / "sample.yaml").is_file()):
            return parent
    return None


def installed_project() -> Path:
    """Where an installed airlock's project files are: its wheel's data files, which pip puts
    in PREFIX/share/airlock (PREFIX: the venv, e.g. /opt/airlock from install-airlock.py)."""
    return Path(sys.prefix).absolute() / INSTALLED


def project_root() -> Path:
    """The folder with ansible.cfg, roles/, playbooks/, inventories/ and bundles/: the
    checkout airlock runs from, else the copy an installed airlock carries
    (``installed_project()``)."""
    root = checkout()
    if root:
        return root
    root = installed_project()
    if (root / "ansible.cfg").is_file() and (root / "roles").is_dir():
        return root
    raise UsageError(f"airlock's project files (ansible.cfg, roles, playbooks) were not found "
                     f"in a checkout or in {root}",
                     hint="run airlock from a checkout of the airlock repository, or from "
                          "an install made by install-airlock.py")


def checkout_root(what: str) -> Path:
    """The checkout, for WHAT only a checkout has (the sample bundle's sources, the lab,
    airlock's own wheel); an installed airlock says so."""
    root = checkout()
    if root is None:
        raise UsageError(f"{what} needs a checkout of the airlock repository; this airlock is "
                         f"installed in {sys.prefix}",
                         hint="an installed airlock runs plan, preflight, bundle import, "
                              "deploy, status, audit and network with the project files in "
                              f"{installed_project()}")
    return root


def site_dir_default() -> Path:
    """AIRLOCK_SITE_DIR, or the user's state folder; always absolute."""
    env = os.environ.get("AIRLOCK_SITE_DIR")
    if env:
        return Path(env).absolute()
    from platformdirs import user_state_dir

    return (Path(user_state_dir("airlock")) / "site").absolute()


def ensure_site(site: Path, say: Any = print) -> Path:
    """The controller's site folder (0700) with the apt signing key; returns its GnuPG home."""
    from installer.bundle import mirror

    site.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(site, 0o700)
    home = site / "apt-key"
    if not home.is_dir() or not any(home.iterdir()):
        info = mirror.make_site_key(home, "airlock site repository")
        say(f"made the site's apt signing key {info['fingerprint']} in {home}")
    return home


def ensure_go_sumdb(site: Path, say: Any = print) -> Path:
    """The site's Go checksum database folder (its signing key and append-only log)."""
    from installer.bundle import gosumdb

    home = site / "go-sumdb"
    if not (home / gosumdb.KEY_FILE).is_file():
        verifier = gosumdb.make_key(home)
        say(f"made the site's Go checksum database {verifier} in {home}")
    return home


class InventoryLock:
    """An exclusive, non-blocking lock on one inventory, with who holds it."""

    def __init__(self, site: Path, inventory: Path, command: str) -> None:
        key = hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:16]
        self.path = site / "locks" / f"{key}.lock"
        self.inventory, self.command = inventory, command
        self.fd: int | None = None

    def __enter__(self) -> InventoryLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.read(fd, 4096) or b"{}")
            except ValueError:
                holder = {}
            os.close(fd)
            raise BusyError(
                f"{self.inventory}: `airlock {holder.get('command', '?')}` is already running "
                f"against this inventory (pid {holder.get('pid', '?')}, "
                f"{holder.get('user', '?')}@{holder.get('host', '?')}, since "
                f"{holder.get('since', '?')})",
                hint="wait for it to end; two runs at once would fight over the same hosts") \
                from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"command": self.command, "pid": os.getpid(),
                                 "user": os.environ.get("USER", str(os.getuid())),
                                 "host": socket.gethostname(),
                                 "inventory": str(self.inventory.resolve()),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None
