"""Molecule's own test sequence for the roles on a lab host (molecule/default): syntax,
create (airlock lab up), converge, idempotence, check, verify (testinfra), destroy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, own_lab_turn


def test_molecule_default_scenario(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    assert shutil.which("molecule", path=str(bindir)), "pip install -e '.[test]' installs it"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
           "AIRLOCK_LAB_DIR": str(tmp_path / "lab"), "ANSIBLE_FORCE_COLOR": "0",
           "PY_COLORS": "0", "NO_COLOR": "1"}
    with own_lab_turn():  # test_lab.py's lab holds the same subnets
        proc = subprocess.run([str(bindir / "molecule"), "test"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=900)
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, out[-5000:]
    for step in ("syntax", "create", "converge", "idempotence", "check", "verify", "destroy"):
        assert re.search(rf"default (➜|>) {step}: Executed: Successful", out), (step, out[-3000:])
    assert not (tmp_path / "lab" / "state.json").exists()  # destroy removed the lab
