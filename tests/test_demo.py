"""README's main command, its first half: `airlock demo --no-lab` on the embedded sample
(the lab half, import to the repo host, is tests/test_import.py, which runs the whole demo)."""

from __future__ import annotations

from pathlib import Path

from conftest import REPO, run_airlock
from installer.bundle.verify import verify


def test_demo_end_to_end(tmp_path: Path) -> None:
    proc = run_airlock("demo", "--no-lab", "-o", str(tmp_path / "demo"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for step in ("0. what this machine needs", "1. sample inputs", "2. build",
                 "3. keys and signatures",
                 "4. verify against the pinned root", "5. as a reviewer", "6. inspect",
                 "7. pack into parts and unpack", "what to look at"):
        assert step in proc.stdout
    assert "reproducible: lock unchanged" in proc.stdout
    assert proc.stdout.count('Good "airlock-bundle@v1" signature') == 2
    assert verify(tmp_path / "demo" / "bundle").ok
    assert verify(tmp_path / "demo" / "unpacked").ok
    parts = sorted((tmp_path / "demo").glob("sample.tar.zst.part[0-9]*"))
    assert len(parts) >= 2
    assert (REPO / "bundles" / "sample.lock.json").is_file()
