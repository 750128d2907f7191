"""Hostile VSIX files, specs and locks, built for real and given to the real CLI under a
memory limit: each is refused with its exit code, naming the file and the bound, in
bounded memory and time, and nothing is left at the output path.

Run with ``-s`` to see what each refusal took (the child's own peak RSS and wall time)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from installer.lab.fixtures import make_vsix
from tests.hostile import run_bounded
from tests.hostile_zip import Entry, deflated, stored, vsix_entries, write_zip, zeros

MEM_MIB = 768      # the child's address-space limit
PEAK_MIB = 200     # what a refusal may take at most (the CLI alone takes ~65, the worst
                   # case here ~125: a 600 KiB spec composed up to its 100 000th value)
SECONDS = 60       # wall time, on a loaded 2-core machine

SPEC = """\
    apiVersion: airlock/v1
    name: hostile
    version: 1
    phase: poc
    target: {vscode: "1.96.4"}
"""


def build_refused(tmp_path: Path, spec: Path, rc: int, *words: str) -> str:
    out = tmp_path / "out"
    r = run_bounded(["bundle", "build", str(spec), "-o", str(out)], mem_mib=MEM_MIB,
                    timeout=SECONDS * 2)
    print(f"\n  {tmp_path.name}: rc {r.rc}, peak {r.peak_mib:.0f} MiB, {r.seconds:.2f} s")
    text = " ".join(r.output.split())
    assert r.rc == rc, r.output
    assert "Traceback" not in text and "internal error" not in text, r.output
    for w in words:
        assert w in text, r.output
    assert r.peak_mib < PEAK_MIB, f"peak {r.peak_mib:.0f} MiB"
    assert r.seconds < SECONDS, f"{r.seconds:.1f} s"
    assert not out.exists()
    assert not list(tmp_path.glob(".out*")), list(tmp_path.glob(".out*"))
    assert not spec.with_name(spec.stem + ".lock.json").exists() or rc == 3
    return text


# --------------------------------------------------------------------------- VSIX (exit 4)

def _bomb(tmp: Path) -> list[Entry]:
    """2.2 GB of zeros in ~2.2 MB, headers honest: refused on the claim, nothing inflated."""
    return [*vsix_entries(tmp), zeros("extension/bomb.bin", 2200)]


def _liar(tmp: Path) -> list[Entry]:
    """package.json says 100 bytes and inflates to 50 MB."""
    rest = [e for e in vsix_entries(tmp) if e.name != "extension/package.json"]
    return [*rest, zeros("extension/package.json", 50, size=100)]


def _liar_elsewhere(tmp: Path) -> list[Entry]:
    """A member airlock does not read says 100 bytes and inflates to 50 MB (an IDE host
    unpacks it): caught by inflating every member."""
    return [*vsix_entries(tmp), zeros("extension/dist/extension.js", 50, size=100)]


def _ratio(tmp: Path) -> list[Entry]:
    """900 MiB from ~900 KiB, under the total bound: the ratio refuses it."""
    return [*vsix_entries(tmp), zeros("extension/data.bin", 900)]


def _overlap(tmp: Path) -> list[Entry]:
    a = deflated("extension/a.js", b"a" * 1000)
    b = deflated("extension/b.js", b"b" * 1000)
    a.csize = len(a.data) + 30 + len("extension/b.js") + len(b.data)
    return [*vsix_entries(tmp), a, b]


def _many(tmp: Path) -> list[Entry]:
    return [*vsix_entries(tmp), *(stored(f"extension/f{i}", b"") for i in range(100_000))]


def _bzip2(tmp: Path) -> list[Entry]:
    import bz2

    return [*vsix_entries(tmp), Entry("extension/x.js", bz2.compress(b"x" * 1000), 12,
                                      content=b"x" * 1000)]


def _lzma(tmp: Path) -> list[Entry]:
    import lzma

    return [*vsix_entries(tmp), Entry("extension/x.js", lzma.compress(b"x" * 1000), 14,
                                      content=b"x" * 1000)]


def _dtd(tmp: Path) -> list[Entry]:
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
              '<PackageManifest>&lol2;</PackageManifest>')
    rest = [e for e in vsix_entries(tmp) if e.name != "extension.vsixmanifest"]
    return [*rest, deflated("extension.vsixmanifest", laughs.encode())]


def _dtd_utf16(tmp: Path) -> list[Entry]:
    manifest = next(e for e in _dtd(tmp) if e.name == "extension.vsixmanifest").content
    text = manifest.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
    rest = [e for e in vsix_entries(tmp) if e.name != "extension.vsixmanifest"]
    return [*rest, deflated("extension.vsixmanifest", text.encode("utf-16"))]


HOSTILE_VSIX = {
    "bomb": (_bomb, ["its members add up to 23068", "more than the 1 GiB airlock accepts for "
                               "one archive"]),
    "ratio": (_ratio, ["more than the 200:1 compression ratio"]),
    "liar-package-json": (_liar, ["'extension/package.json' inflates to more than the 100 "
                                  "bytes its header claims"]),
    "liar-elsewhere": (_liar_elsewhere, ["'extension/dist/extension.js' inflates to more "
                                         "than the 100 bytes its header claims"]),
    "overlap": (_overlap, ["'extension/a.js' and 'extension/b.js' overlap"]),
    "many-members": (_many, ["lists 100003 members, more than the 65535 airlock accepts"]),
    "dotdot": (lambda t: [*vsix_entries(t), stored("../../x", b"x")], ["climbs out"]),
    "absolute": (lambda t: [*vsix_entries(t), stored("/abs", b"x")], ["an absolute path"]),
    "backslash": (lambda t: [*vsix_entries(t), stored("extension\\..\\..\\x", b"x")],
                  ["contains a backslash"]),
    "duplicate": (lambda t: [*vsix_entries(t), deflated("extension/package.json", b"{}")],
                  ["'extension/package.json' appears twice"]),
    "nul": (lambda t: [*vsix_entries(t), stored("extension/a\x00b", b"x")], ["a NUL byte"]),
    "encrypted": (lambda t: [*vsix_entries(t), stored("extension/x", b"x", flags=0x801)],
                  ["is encrypted"]),
    "bzip2": (_bzip2, ["compressed with bzip2", "only stored and deflate"]),
    "lzma": (_lzma, ["compressed with lzma", "only stored and deflate"]),
    "dtd": (_dtd, ["extension.vsixmanifest carries a DTD"]),
    "dtd-utf16": (_dtd_utf16, ["extension.vsixmanifest is not UTF-8"]),
}


@pytest.mark.parametrize("case", list(HOSTILE_VSIX))
def test_hostile_vsix_is_refused_in_bounded_memory_and_time(tmp_path: Path, case: str
                                                            ) -> None:
    make, words = HOSTILE_VSIX[case]
    d = tmp_path / case
    d.mkdir()
    vsix = write_zip(d / "ext.vsix", make(d))
    spec = d / "hostile.yaml"
    spec.write_text(textwrap.dedent(SPEC) + "vsix:\n  - path: ext.vsix\n")
    build_refused(d, spec, 4, f"{spec}:7: vsix[0]: VSIX {vsix}", *words)
    if case == "bomb":
        assert vsix.stat().st_size < 3 << 20


def test_the_same_spec_with_a_real_vsix_builds(tmp_path: Path) -> None:
    """The control: the spec and the CLI of the tests above, with a VSIX that is fine."""
    make_vsix(tmp_path / "ext.vsix", "acme", "tool", "1.2.3", "^1.90.0",
              {"extension.js": b"//" * 100_000})
    spec = tmp_path / "hostile.yaml"
    spec.write_text(textwrap.dedent(SPEC) + "vsix:\n  - path: ext.vsix\n")
    r = run_bounded(["bundle", "build", str(spec), "-o", str(tmp_path / "out")],
                    mem_mib=MEM_MIB, timeout=SECONDS * 2)
    print(f"\n  real VSIX: rc {r.rc}, peak {r.peak_mib:.0f} MiB, {r.seconds:.2f} s")
    assert r.rc == 0, r.output
    assert (tmp_path / "out" / "bundle.json").is_file()


# --------------------------------------------------------------------------- specs (exit 3)

LAUGHS = "".join(
    f'l{i}: &l{i} [{", ".join([f"*l{i - 1}"] * 10)}]\n' for i in range(1, 10))


HOSTILE_SPECS = {
    # 9 levels of 10 aliases: 10^9 values once expanded, from 600 bytes
    "billion-laughs": ("apiVersion: airlock/v1\nl0: &l0 lol\n" + LAUGHS,
                       [":2: YAML anchors and aliases (&name, *name) are not accepted"]),
    "alias-only": ("apiVersion: airlock/v1\nname: *x\n", [":2: YAML anchors and aliases"]),
    "nested-flow": ("apiVersion: airlock/v1\nname: " + "[" * 100_000 + "\n",
                    [":2: YAML nested deeper than 32 levels"]),
    "nested-block": ("apiVersion: airlock/v1\nname:\n" + "".join(
        " " * i + "-\n" for i in range(1, 200)), [":34: YAML nested deeper than 32 levels"]),
    "many-values": ("apiVersion: airlock/v1\nx: [" + "1," * 300_000 + "1]\n",
                    [":2: more than 100000 YAML values"]),
    # the most a spec may hold, composed, converted and validated: bounded by the budget
    "just-under-the-budget": ("apiVersion: airlock/v1\nx: [" + "1," * 99_990 + "1]\n",
                              [":1: (top level): missing required key 'name'"]),
    "over-1-MiB": ("apiVersion: airlock/v1\n" + "#" * (1 << 20) + "\n",
                   ["spec is larger than the 1 MiB airlock accepts for it (1048600 bytes)"]),
    "python-tag": ("apiVersion: airlock/v1\nname: !!python/object:os.system id\n",
                   [":2: not valid YAML: could not determine a constructor"]),
    "float-version": ("apiVersion: airlock/v1\nname: t\nversion: 3.0\nphase: poc\n",
                      [":3: version: expected integer, got float 3.0"]),
    "bool-version": ("apiVersion: airlock/v1\nname: t\nversion: true\nphase: poc\n",
                     [":3: version: expected integer, got bool True"]),
}


@pytest.mark.parametrize("case", list(HOSTILE_SPECS))
def test_hostile_spec_is_refused_in_bounded_memory_and_time(tmp_path: Path, case: str
                                                            ) -> None:
    body, words = HOSTILE_SPECS[case]
    d = tmp_path / case
    d.mkdir()
    spec = d / "hostile.yaml"
    spec.write_text(body)
    build_refused(d, spec, 3, *(f"{spec}{w}" if w.startswith(":") else w
                                       for w in words))


# --------------------------------------------------------------------------- locks (exit 3)

def _lock(**change: object) -> str:
    doc = {"lockVersion": 1, "created": "2026-01-01T00:00:00Z",
           "entries": {"file/notes": {"source": "notes.txt", "files": {
               "notes.txt": "sha256:" + "a" * 64}}}}
    doc.update(change)
    return json.dumps(doc)


HOSTILE_LOCKS = {
    "version-true": (_lock(lockVersion=True), "lockVersion must be an integer from 1"),
    "version-string": (_lock(lockVersion="1"), "lockVersion must be an integer from 1"),
    "version-2": (_lock(lockVersion=2), "lock version 2 is not 1"),
    "bogus-digest": (_lock(entries={"file/notes": {"source": "notes.txt", "files": {
        "notes.txt": "sha256:abc"}}}), "entries['file/notes'].files['notes.txt'] must be "
                                        "sha256: and 64 lower-case hex digits, got 'sha256:abc'"),
    "image-digest": (_lock(entries={"image/a": {"source": "x", "digest": 7}}),
                     "entries['image/a'].digest must be sha256:"),
    "created": (_lock(created=0), "created must be a UTC time"),
    "nested": ('{"lockVersion": 1, "entries": ' + "[" * 100_000 + "]" * 100_000 + "}",
               "lock file: JSON nested deeper than 64 levels"),
    "duplicate-key": ('{"lockVersion": 1, "lockVersion": 1}', "appears twice"),
    "npm-traversal": (_lock(entries={"npm/mirror": {"source": "x", "files": {
        "../../etc/x.tgz": "sha256:" + "a" * 64}, "packages": {}}}),
        "'../../etc/x.tgz' is not a relative path without '..'"),
}


@pytest.mark.parametrize("case", list(HOSTILE_LOCKS))
def test_hostile_lock_is_refused_in_bounded_memory_and_time(tmp_path: Path, case: str
                                                            ) -> None:
    body, words = HOSTILE_LOCKS[case]
    d = tmp_path / f"lock-{case}"
    d.mkdir()
    (d / "notes.txt").write_text("notes\n")
    spec = d / "hostile.yaml"
    spec.write_text(textwrap.dedent(SPEC) + "files:\n  - name: notes\n    path: notes.txt\n")
    lock = d / "hostile.lock.json"
    lock.write_text(body)
    build_refused(d, spec, 3, f"{lock}: ", words, "--update-lock")
    assert lock.read_text() == body
