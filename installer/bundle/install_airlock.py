#!/usr/bin/env python3
"""Install airlock from this bundle on a host with no network (Python 3.11+ standard library
only; nothing from outside the bundle is used).

    python3 install-airlock.py /opt/airlock      # then /opt/airlock/bin/airlock --version

Check the bundle first (README, "For security reviewers"): this script is one of the files
SHA256SUMS lists and the signers signed. It trusts nothing else: index.json must match its
line in SHA256SUMS, the pypi mirror's manifest and every wheel their OCI digests. Each wheel
is copied while it is hashed into a private folder beside the target, and
``pip install --isolated --no-index --find-links`` installs airlock into a new venv there.

airlock's wheel carries the project files it deploys with (ansible.cfg, roles/, playbooks/,
the example inventories, the bundle specs and locks, the port matrix): pip puts them in
TARGET/share/airlock, where airlock finds them. The target must be new or empty; on any
failure nothing is left in it.
"""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable
from pathlib import Path

TITLE = "org.opencontainers.image.title"
PROJECT = Path("share", "airlock")  # under the venv: installer.site.project_root() looks here


class Refused(Exception):
    pass


MAX_SUMS = 64 << 20  # SHA256SUMS, index.json and a manifest: as airlock itself bounds them
MAX_JSON = 64 << 20


def open_regular(path: Path) -> int:
    """A descriptor for PATH only if it is a regular file: a link is never followed, and a
    FIFO or a device is refused at once instead of blocking or reading for ever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise Refused(f"{path.name}: cannot read it ({e.strerror}); not installing") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused(f"{path.name}: not a regular file; not installing")
    os.set_blocking(fd, True)
    return fd


def checked(path: Path, digest: str, sink: Callable[[bytes], object],
            limit: int | None = None) -> None:
    """Feed PATH's bytes to SINK; refuse them unless they hash to DIGEST ('sha256:…'), or
    past LIMIT bytes."""
    h = hashlib.sha256()
    size = 0
    with os.fdopen(open_regular(path), "rb") as src:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            size += len(chunk)
            if limit is not None and size > limit:
                raise Refused(f"{path.name}: damaged (more than its {limit} bytes); not installing")
            h.update(chunk)
            sink(chunk)
    if "sha256:" + h.hexdigest() != digest:
        raise Refused(f"{path.name}: damaged (sha256 mismatch); not installing")


def read_checked(path: Path, digest: str) -> dict:
    data = bytearray()
    checked(path, digest, data.extend, MAX_JSON)
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise Refused(f"{path.name}: not valid JSON ({e}); not installing") from None
    if not isinstance(doc, dict):
        raise Refused(f"{path.name}: not a JSON object; not installing")
    return doc


def wheels(bundle: Path, into: Path) -> None:
    """Copy the pypi mirror's files into INTO, each checked against its digest."""
    sums = {}
    with os.fdopen(open_regular(bundle / "SHA256SUMS"), "rb") as f:
        raw = f.read(MAX_SUMS + 1)
    if len(raw) > MAX_SUMS:
        raise Refused(f"SHA256SUMS: larger than {MAX_SUMS} bytes; not installing")
    for line in raw.decode("utf-8", "replace").splitlines():
        hexd, _, rel = line.partition("  ")
        sums[rel] = "sha256:" + hexd
    if "index.json" not in sums:
        raise Refused("SHA256SUMS does not list index.json")
    index = read_checked(bundle / "index.json", sums["index.json"])
    blobs = bundle / "blobs" / "sha256"
    try:
        entry = next((m for m in index["manifests"]
                      if m.get("annotations", {}).get("dev.airlock.kind") == "pypi"), None)
        if entry is None:
            raise Refused("this bundle has no pypi mirror")
        manifest = read_checked(blobs / entry["digest"][7:], entry["digest"])
        layers = [(ly["annotations"][TITLE], ly["digest"], ly["size"])
                  for ly in manifest["layers"]]
    except (KeyError, TypeError, AttributeError) as e:
        raise Refused(f"index.json or the pypi manifest is malformed ({e!r}); not installing") \
            from None
    for name, digest, size in layers:
        if not isinstance(name, str) or "/" in name or "\0" in name or name.startswith("."):
            raise Refused(f"refusing file name {name!r}")
        if type(size) is not int or size < 0:
            raise Refused(f"{name}: size {size!r} is not a whole number of bytes")
        with open(into / name, "xb") as f:
            checked(blobs / str(digest)[7:], str(digest), f.write, size)


def clear(target: Path, keep: bool) -> None:
    """Remove what was installed: TARGET itself, or only its content when it was there."""
    if not keep:
        shutil.rmtree(target, ignore_errors=True)
        return
    for p in target.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink()


def install(bundle: Path, target: Path) -> None:
    existed = target.exists()
    if existed and (not target.is_dir() or any(target.iterdir())):
        raise Refused(f"{target} exists and is not empty; install into a new folder "
                      f"(e.g. {target}-new) or remove it first")
    if not target.parent.is_dir():
        raise Refused(f"{target.parent} does not exist")
    done = False
    with tempfile.TemporaryDirectory(prefix=".airlock-wheels-", dir=target.parent) as tmp:
        try:
            wheels(bundle, Path(tmp))
            venv.create(target, with_pip=True)
            # -I: the caller's PYTHONPATH or user site must not satisfy (and so skip) airlock
            pip = [str(target / "bin" / "python"), "-I", "-m", "pip", "install", "--isolated",
                   "--no-index", "--no-cache-dir", "--disable-pip-version-check",
                   "--find-links", tmp, "airlock"]
            if subprocess.call(pip) != 0:
                raise Refused("pip could not install airlock from the bundle")
            if not (target / PROJECT / "ansible.cfg").is_file():
                raise Refused(f"airlock's wheel carries no project files ({PROJECT}); "
                              "build the bundle again with this airlock")
            done = True
        finally:
            if not done:
                clear(target, keep=existed)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    target = Path(sys.argv[1]).absolute()
    try:
        install(Path(__file__).resolve().parent, target)
    except (Refused, OSError) as e:
        why = str(e)
    except (KeyError, TypeError, ValueError) as e:
        why = f"index.json or the pypi manifest is malformed ({e!r})"
    else:
        print(f"installed {target / 'bin' / 'airlock'}; its roles, playbooks and example "
              f"inventories: {target / PROJECT}")
        return 0
    print(f"{why}\nnothing was installed in {target}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
