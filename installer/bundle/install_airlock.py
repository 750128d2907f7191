#!/usr/bin/env python3
"""Install airlock from this bundle on a host with no network (Python 3.11+ standard library
only; nothing from outside the bundle is used).

    python3 install-airlock.py /opt/airlock      # then /opt/airlock/bin/airlock --version

Check the bundle first (README, "For security reviewers"): this script is one of the files
SHA256SUMS lists and the signers signed. It finds the bundle's pypi mirror in index.json,
checks every wheel's sha256 against its OCI digest, links them under their file names in a
private folder, and runs ``pip install --isolated --no-index --find-links`` into a new venv.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

TITLE = "org.opencontainers.image.title"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    target = Path(sys.argv[1]).absolute()
    bundle = Path(__file__).resolve().parent
    blobs = bundle / "blobs" / "sha256"
    index = json.loads((bundle / "index.json").read_text())
    entry = next((m for m in index["manifests"]
                  if m.get("annotations", {}).get("dev.airlock.kind") == "pypi"), None)
    if entry is None:
        print("this bundle has no pypi mirror", file=sys.stderr)
        return 1
    manifest = json.loads((blobs / entry["digest"].split(":")[1]).read_text())
    with tempfile.TemporaryDirectory(prefix="airlock-wheels-") as tmp:
        for layer in manifest["layers"]:
            name = layer["annotations"][TITLE]
            if "/" in name or name.startswith("."):
                print(f"refusing file name {name!r}", file=sys.stderr)
                return 1
            blob = blobs / layer["digest"].split(":")[1]
            h = hashlib.sha256()
            with open(blob, "rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(chunk)
            if "sha256:" + h.hexdigest() != layer["digest"]:
                print(f"{name}: damaged (sha256 mismatch); not installing", file=sys.stderr)
                return 1
            os.symlink(blob, Path(tmp) / name)
        venv.create(target, with_pip=True, clear=False)
        pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--isolated",
               "--no-index", "--disable-pip-version-check", "--find-links", tmp, "airlock"]
        return subprocess.call(pip)


if __name__ == "__main__":
    sys.exit(main())
