"""install-airlock.py (standard library only, inside every bundle with `pypi: {self: true}`)
reads the bundle it sits in as outside data: SHA256SUMS, index.json and the manifest only
when they are regular files and within bounds; a FIFO does not hang it, a link is not
followed, and nothing is installed. (The whole offline install: tests/test_offline_install.)"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "installer" / "bundle" / "install_airlock.py"


def bundle_with(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    b.mkdir()
    shutil.copy(SCRIPT, b / "install-airlock.py")
    return b


def run(b: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(b / "install-airlock.py"),
                           str(tmp_path / "target")], capture_output=True, text=True,
                          timeout=30)


def sums_for(b: Path, name: str, data: bytes) -> None:
    (b / name).write_bytes(data)
    (b / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")


@pytest.mark.parametrize("make", [
    lambda b: os.mkfifo(b / "SHA256SUMS"),
    lambda b: (b / "SHA256SUMS").symlink_to("/dev/zero"),
])
def test_sums_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, make) -> None:
    b = bundle_with(tmp_path)
    make(b)
    proc = run(b, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "SHA256SUMS:" in proc.stderr and "not installing" in proc.stderr, proc.stderr
    assert not (tmp_path / "target").exists()


def test_index_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    b = bundle_with(tmp_path)
    (b / "SHA256SUMS").write_text(f"{'0' * 64}  index.json\n")
    os.mkfifo(b / "index.json")
    proc = run(b, tmp_path)
    assert proc.returncode == 1 and "index.json: not a regular file" in proc.stderr, \
        proc.stderr


@pytest.mark.parametrize(("data", "words"), [
    (b"[1, 2]", "index.json: not a JSON object"),
    (b"{not json", "index.json: not valid JSON"),
    (b'{"manifests": 3}', "index.json or the pypi manifest is malformed"),
])
def test_malformed_index_is_refused_in_words(tmp_path: Path, data: bytes, words: str) -> None:
    b = bundle_with(tmp_path)
    sums_for(b, "index.json", data)
    proc = run(b, tmp_path)
    assert proc.returncode == 1 and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "target").exists()
