"""Spec validation: every bad spec gets one error with file, line, field and what was
expected; the CLI maps it to exit code 3 and writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import FULL_SPEC, run_airlock, write_spec
from installer.bundle import spec as spec_mod
from installer.errors import SpecError

HEAD = """
    apiVersion: airlock/v1
    name: t
    version: 1
    phase: poc
"""


def error_of(tmp_path: Path, body: str) -> SpecError:
    p = write_spec(tmp_path, body)
    with pytest.raises(SpecError) as e:
        spec_mod.load(p)
    return e.value


def test_full_spec_loads(workdir: Path) -> None:
    s = spec_mod.load(write_spec(workdir, FULL_SPEC))
    assert (s.name, s.version, s.phase, s.platform) == ("test", 3, "poc", "linux/amd64")
    assert [i.name for i in s.images] == ["base", "app"]
    assert s.models[0].local == workdir / "model"
    assert len(s.vsix) == 1 and len(s.files) == 2


def test_unknown_key_names_file_line_and_allowed_keys(tmp_path: Path) -> None:
    e = error_of(tmp_path, HEAD + """
    images:
      - ref: docker://r.example/a:1
        platfrom: linux/arm64
    """)
    assert e.file.endswith("test.yaml") and e.line == 8
    assert "unknown key 'platfrom'" in str(e) and "platform" in str(e)
    assert e.field == "images[0].platfrom"


@pytest.mark.parametrize("body, line, field, words", [
    ("apiVersion: airlock/v1\nname: t\nversion: one\nphase: poc\n", 3, "version", "integer"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: beta\n", 4, "phase", "poc, pilot"),
    ("apiVersion: airlock/v1\nname: t\nphase: poc\n", 1, "(top level)", "'version'"),
    ("apiVersion: airlock/v1\nname: T!\nversion: 1\nphase: poc\n", 2, "name", "lower-case"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\nfiles:\n  - name: f\n"
     "    url: https://x.example/f\n    sha256: abc\n", 8, "files[0].sha256", "64 lower-case hex"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\nname: u\n", 5, None, "duplicate"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\npypi: [requests]\n", 5, "pypi",
     "expected object"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\npypi:\n  python: ['2.7']\n"
     "  requirements: [x]\n", 6, "pypi.python[0]", "a Python version"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\ndeb:\n  packages: [nginx]\n", 5,
     "deb", "missing required key 'release'"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\npypi: {python: ['3.11']}\n", 5,
     "pypi", "give requirements"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\nfiles:\n  - name: f\n"
     "    url: https://x.example/f\n", 6, "files[0]", "needs its 'sha256'"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\nvsix:\n  - path: a.vsix\n", 5,
     "target.vscode", "VS Code version"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\nimages:\n"
     "  - ref: r.example/app\n", 6, "images[0]", "give a tag or a digest"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\nimages:\n  - ref: a:1\n"
     "    name: x\n  - ref: b:1\n    name: x\n", 8, "images[1]", "used twice"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\nmodels:\n  - name: m\n"
     "    path: m\n    url: https://x.example/m\n    sha256: " + "a" * 64 + "\n", 6, "models[0]",
     "exactly one of"),
    ("name: [unclosed\n", 2, None, "not valid YAML"),
    ("apiVersion: airlock/v1\nname: &n t\nversion: 1\nphase: poc\n", 2, None,
     "YAML anchors and aliases (&name, *name) are not accepted"),
    ("apiVersion: airlock/v1\nname: t\nversion: 1\nphase: poc\ndescription: *d\n", 5, None,
     "YAML anchors and aliases"),
    ("apiVersion: airlock/v1\nimages: [{<<: *base}]\n", 2, None, "YAML anchors and aliases"),
    ("apiVersion: airlock/v1\nname: " + "[" * 40 + "\n", 2, None,
     "YAML nested deeper than 32 levels"),
    ("apiVersion: airlock/v1\nname: t\nversion: 3.0\nphase: poc\n", 3, "version",
     "expected integer, got float 3.0"),
    ("apiVersion: airlock/v1\nname: t\nversion: yes\nphase: poc\n", 3, "version",
     "expected integer, got bool True"),
    ("apiVersion: airlock/v1\nname: t\nversion: 9007199254740993\nphase: poc\n", 3,
     "version", "a whole number from 1 to 2^53"),
    ("apiVersion: airlock/v1\nname: !!python/object:os.system id\n", 2, None,
     "could not determine a constructor for the tag"),
])
def test_bad_specs(tmp_path: Path, body: str, line: int, field: str | None, words: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(body)
    with pytest.raises(SpecError) as e:
        spec_mod.load(p)
    assert e.value.line == line, str(e.value)
    if field:
        assert e.value.field == field, str(e.value)
    assert words in str(e.value)
    assert str(p) in str(e.value)


def test_cli_reports_spec_error_with_exit_code_3_and_writes_nothing(tmp_path: Path) -> None:
    p = write_spec(tmp_path, HEAD + "    colour: blue\n")
    proc = run_airlock("bundle", "build", str(p), "-o", str(tmp_path / "out"))
    assert proc.returncode == 3
    assert f"{p}:5: colour: unknown key 'colour'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "test.lock.json").exists()


def test_debug_shows_traceback(tmp_path: Path) -> None:
    p = write_spec(tmp_path, HEAD + "    colour: blue\n")
    proc = run_airlock("--debug", "bundle", "build", str(p), "-o", str(tmp_path / "out"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_json_error_document(tmp_path: Path) -> None:
    import json

    p = write_spec(tmp_path, HEAD + "    colour: blue\n")
    proc = run_airlock("bundle", "build", str(p), "-o", str(tmp_path / "o"), "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 3 and doc["ok"] is False and doc["type"] == "SpecError"
    assert "colour" in doc["error"]


@pytest.mark.parametrize("spec", sorted((Path(__file__).parent.parent / "bundles")
                                        .glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_spec_is_valid_and_has_its_lock(spec: Path) -> None:
    s = spec_mod.load(spec)
    assert s.name == spec.stem
    assert spec.with_name(f"{spec.stem}.lock.json").is_file()


def test_a_spec_past_the_value_budget_is_refused_while_composing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec_mod, "MAX_NODES", 50)
    e = error_of(tmp_path, "apiVersion: airlock/v1\nx:\n" + "  - 1\n" * 60)
    assert "more than 50 YAML values" in str(e) and e.line == 48  # the 51st: 5 + 46 items


def test_a_spec_past_1_mib_is_refused_before_it_is_read(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    p.write_bytes(b"#" * (1 << 20) + b"\n")
    with pytest.raises(SpecError, match=r"big\.yaml: spec is larger than the 1 MiB"):
        spec_mod.load(p)


def test_a_spec_that_is_a_fifo_is_refused_and_a_link_is_followed_to_a_file(
        tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(SpecError, match=r"fifo\.yaml: spec is a FIFO"):
        spec_mod.load(tmp_path / "fifo.yaml")
    # the operator's own file: a link to it is ordinary, what it leads to must be a file
    (tmp_path / "link.yaml").symlink_to(write_spec(tmp_path, FULL_SPEC))
    assert spec_mod.load(tmp_path / "link.yaml").name == "test"
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    with pytest.raises(SpecError, match=r"zero\.yaml: spec is a device"):
        spec_mod.load(tmp_path / "zero.yaml")
