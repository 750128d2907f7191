"""Hostile bundle folders and packed media, run through the real CLI under a memory limit.

A real small bundle is built and signed once; each test copies it (and a trust state that
has accepted it) and makes one file hostile: a FIFO (with and without a writer), a link to
/dev/zero, a 200 MB file (sparse: the size alone must refuse it), JSON nested 100 000 deep,
JSON with a duplicate key or ``"version": true``. Packed media get a part index naming
part 1 000 000 000, 600 000 parts, negative or boolean sizes, a part that is a FIFO, a tar
of 200 000 members, a member ``../x``, a 32 MiB pax header. Every run must exit with the
integrity code (5; 7 for a trust state), name the file and the bound or kind, stay under
PEAK_MIB of memory (RLIMIT_AS MEM_MIB: a reader that trusts a size fails with MemoryError
instead), end in bounded time (a hang is a test failure after TIMEOUT), leave the trust
state byte-identical and write nothing outside its staging folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from conftest import FULL_SPEC, write_spec
from installer.bundle import keys
from installer.bundle.build import BuildOptions, build
from installer.bundle.pack import pack
from installer.bundle.sign import sign_bundle
from installer.bundle.trust import verify_signed
from tests.hostile import Bounded, run_bounded

PASS = "correct horse battery"
MEM_MIB = 768      # RLIMIT_AS of each run: python, tuf, cryptography, rich load ~500 MiB of it
PEAK_MIB = 250     # resident peak allowed; a good verify --trust peaks at ~75 MiB
SLACK_S = 5.0      # a hostile run may take this much longer than the good run of its command
TIMEOUT = 60.0     # past this, run_bounded fails the test: the run hung
BIG = 200 * 1000 * 1000


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A signed bundle (2 of 3 signers), its root, and a trust state that accepted it."""
    from conftest import small_inputs

    base = tmp_path_factory.mktemp("golden")
    keydir = base / "keys"
    keys.init(keydir, 3, 2, None, PASS, keys.Policy())
    (base / "inputs").mkdir()
    inputs = small_inputs(base / "inputs")
    spec = write_spec(inputs, FULL_SPEC.replace("version: 3", "version: 1"))
    b = build(spec, base / "bundle", BuildOptions(force=True)).path
    for s in ("signer-1", "signer-2"):
        sign_bundle(b, keydir / f"{s}.key", PASS)
    state = base / "state"
    assert verify_signed(b, keydir / "root.json", state).ok
    pack(b, base / "b.tar", zstd=False, level=3, split=16 * 1024, force=False)
    assert (base / "b.tar.part003").exists()
    return {"bundle": b, "root": keydir / "root.json", "state": state,
            "media": base}


@pytest.fixture(scope="module")
def good_seconds(golden: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, float]:
    """How long each command takes on the good bundle here and now (a loaded machine
    starts Python slowly): a hostile run is allowed that plus SLACK_S."""
    d = tmp_path_factory.mktemp("timing")
    b = d / "b"
    shutil.copytree(golden["bundle"], b)
    shutil.copytree(golden["state"], d / "state", symlinks=True)
    out = {}
    for cmd, args in commands(b, golden["root"], d / "state").items():
        r = run_bounded(args, mem_mib=MEM_MIB, timeout=TIMEOUT)
        assert r.rc == 0, r.output
        out[cmd] = r.seconds
    r = run_bounded(["bundle", "unpack", str(golden["media"] / "b.tar.parts.json"),
                     "-o", str(d / "u")], mem_mib=MEM_MIB, timeout=TIMEOUT)
    assert r.rc == 0, r.output
    out["unpack"] = r.seconds
    return out


@pytest.fixture
def case(golden: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    b = tmp_path / "b"
    shutil.copytree(golden["bundle"], b)
    shutil.copytree(golden["state"], tmp_path / "state", symlinks=True)
    return {"bundle": b, "root": golden["root"], "state": tmp_path / "state", "tmp": tmp_path}


@pytest.fixture
def writers() -> Iterator[list[subprocess.Popen]]:
    """Endless writers into FIFOs, stopped at the end of the test."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def commands(b: Path, root: Path, state: Path) -> dict[str, list[str]]:
    return {"verify": ["bundle", "verify", str(b)],
            "trust": ["bundle", "verify", str(b), "--trust", str(root), "--state", str(state)],
            "inspect": ["bundle", "inspect", str(b)]}


# --------------------------------------------------------------------------- helpers

def tree(d: Path) -> dict[str, tuple]:
    """Every path under D with its kind, size and content digest (links not followed)."""
    out: dict[str, tuple] = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        if p.is_symlink():
            out[str(p.relative_to(d))] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p.relative_to(d))] = ("file", st.st_size, hashlib.sha256(
                p.read_bytes()).hexdigest() if st.st_size < 50_000_000 else st.st_mtime_ns)
        else:
            out[str(p.relative_to(d))] = ("other", st.st_mode)
    return out


def make_hostile(path: Path, how: str, writers: list[subprocess.Popen]) -> None:
    """Replace PATH (or make it) so that a careless reader hangs or runs out of memory."""
    original = path.read_bytes() if path.is_file() and not path.is_symlink() else b"{}"
    if path.exists() or path.is_symlink():
        path.unlink()
    if how in ("fifo", "fifo-writer"):
        os.mkfifo(path)
        if how == "fifo-writer":  # an endless writer: a reader that does not refuse hangs
            writers.append(subprocess.Popen(["sh", "-c", f"exec cat /dev/zero > '{path}'"]))
    elif how == "dev-zero":
        path.symlink_to("/dev/zero")
    elif how == "big":
        with open(path, "wb") as f:
            f.truncate(BIG)  # sparse: costs no disk, reads as 200 MB of zeros
    elif how == "deep":
        path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    elif how == "dup":
        doc = json.loads(original)
        key = next(iter(doc))
        path.write_bytes(b"{" + json.dumps(key).encode() + b": 1, " + original.lstrip()[1:])
    elif how == "version-true":
        doc = json.loads(original)
        doc.get("signed", doc)["version"] = True
        path.write_text(json.dumps(doc))
    else:
        raise AssertionError(how)


def resum(b: Path) -> None:
    """SHA256SUMS recomputed for the files as they are now (what someone who edits a bundle
    would do): the readers must refuse the content itself, not only its hash."""
    lines = []
    for line in (b / "SHA256SUMS").read_text().splitlines():
        rel = line.split("  ", 1)[1]
        p = b / rel
        h = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() \
            and p.stat().st_size < BIG else line[:64]
        lines.append(f"{h}  {rel}\n")
    (b / "SHA256SUMS").write_text("".join(lines))


def replace_manifest(b: Path, data: bytes) -> str:
    """The first artifact's manifest replaced by DATA under its own digest, index.json and
    bundle.json pointing at it, SHA256SUMS recomputed: it passes every hash, so only the
    JSON reader stands between DATA and the process."""
    meta = json.loads((b / "bundle.json").read_text())
    old = meta["artifacts"][0]["digest"]
    new = "sha256:" + hashlib.sha256(data).hexdigest()
    (b / "blobs/sha256" / old[7:]).unlink()
    (b / "blobs/sha256" / new[7:]).write_bytes(data)
    index = json.loads((b / "index.json").read_text())
    for m in index["manifests"]:
        if m["digest"] == old:
            m["digest"], m["size"] = new, len(data)
    (b / "index.json").write_text(json.dumps(index))
    meta["artifacts"][0]["digest"] = new
    (b / "bundle.json").write_text(json.dumps(meta))
    text = (b / "SHA256SUMS").read_text().replace(f"{old[7:]}  blobs/sha256/{old[7:]}",
                                                  f"{new[7:]}  blobs/sha256/{new[7:]}")
    (b / "SHA256SUMS").write_text("".join(sorted(text.splitlines(keepends=True),
                                                 key=lambda s: s[66:])))
    resum(b)
    return f"blobs/sha256/{new[7:]}"


def refused(r: Bounded, cmd: str, good: dict[str, float], *words: str, rc: int = 5) -> None:
    assert r.rc == rc, f"exit {r.rc}, expected {rc}:\n{r.output[-3000:]}"
    text = " ".join(r.output.split())  # rich wraps long lines
    for w in words:
        assert w in text, f"{w!r} not in:\n{r.output[-3000:]}"
    assert "internal error" not in text and "Traceback" not in r.output
    assert r.peak_mib < PEAK_MIB, f"peak {r.peak_mib:.0f} MiB"
    assert r.seconds < good[cmd] + SLACK_S, f"{r.seconds:.1f} s (good run {good[cmd]:.1f} s)"
    FIGURES.append((cmd, words[0] if words else "", round(r.peak_mib), round(r.seconds, 2)))


FIGURES: list[tuple] = []


def run(c: dict[str, Path], cmd: str) -> Bounded:
    return run_bounded(commands(c["bundle"], c["root"], c["state"])[cmd], mem_mib=MEM_MIB,
                       timeout=TIMEOUT)


def check_untouched(c: dict[str, Path], before: dict, state_before: dict) -> None:
    assert tree(c["state"]) == state_before, "the trust state changed"
    after = {k: v for k, v in tree(c["tmp"]).items() if not k.startswith("state")}
    assert after == before, "something was written outside the staging folder"


# --------------------------------------------------------------------------- the bundle's files

WHAT = {  # a hostile file -> what the refusal must name (besides the file)
    "fifo": "is a FIFO", "fifo-writer": "is a FIFO", "dev-zero": "is a symbolic link",
    "big": "larger than the", "deep": "nested deeper than 64 levels",
    "dup": "appears twice in one object", "version-true": "must be an integer from 1",
}

# (file, how it is made hostile, the commands that must refuse it, what they must say)
CASES = [
    *[("SHA256SUMS", how, ("verify", "trust"), WHAT[how])
      for how in ("fifo", "fifo-writer", "dev-zero", "big")],
    *[("bundle.json", how, ("verify", "trust", "inspect"), WHAT[how])
      for how in ("fifo", "dev-zero", "big", "deep", "dup", "version-true")],
    *[("index.json", how, ("verify", "trust"), WHAT[how])
      for how in ("fifo", "dev-zero", "big", "deep", "dup")],
    *[("tuf/timestamp.json", how, ("trust",), WHAT[how])
      for how in ("fifo", "fifo-writer", "dev-zero", "big", "dup", "version-true")],
    # 100 000-deep JSON is 200 KB: past timestamp's 64 KiB, within targets' 64 MiB
    ("tuf/timestamp.json", "deep", ("trust",), "larger than the 64 KiB"),
    *[("tuf/targets.json", how, ("trust",), WHAT[how])
      for how in ("dev-zero", "deep", "dup", "version-true")],
    *[("SHA256SUMS.signer-1.sig", how, ("trust",), WHAT[how])
      for how in ("fifo", "fifo-writer", "dev-zero", "big")],
]
# what verify says of a file that is not a regular file (it never opens it)
NOT_OPENED = {"fifo": "is not a regular file", "fifo-writer": "is not a regular file",
              "dev-zero": "is a symbolic link"}


@pytest.mark.parametrize("rel, how, cmds, words", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_hostile_file_is_refused_in_bounded_memory_and_time(
        case: dict[str, Path], good_seconds: dict[str, float], writers: list, rel: str,
        how: str, cmds: tuple[str, ...], words: str) -> None:
    b = case["bundle"]
    if rel == "tuf/targets.json":
        # a state that accepted this version already holds its targets and python-tuf
        # rightly reads the trusted copy, not the bundle's: a first verify reads it
        shutil.rmtree(case["state"])
        case["state"].mkdir()
    make_hostile(b / rel, how, writers)
    if how in ("deep", "dup", "version-true") and not rel.startswith("tuf/"):
        resum(b)  # so that the JSON reader, not the hash, is what refuses it
    before = {k: v for k, v in tree(case["tmp"]).items() if not k.startswith("state")}
    state_before = tree(case["state"])
    for cmd in cmds:
        r = run(case, cmd)
        said = NOT_OPENED.get(how, words) if cmd in ("verify", "trust") \
            and not rel.startswith(("tuf/", "SHA256SUMS.")) else words
        if rel == "SHA256SUMS" and how in NOT_OPENED:
            said = words  # the one file verify opens to learn the rest
        refused(r, cmd, good_seconds, said, rel.split("/")[-1])
        check_untouched(case, before, state_before)


@pytest.mark.parametrize("how", ["deep", "dup"])
def test_hostile_manifest_that_passes_every_hash_is_refused_by_the_reader(
        case: dict[str, Path], good_seconds: dict[str, float], how: str) -> None:
    data = b"[" * 100_000 + b"]" * 100_000 if how == "deep" else \
        b'{"schemaVersion": 2, "layers": [], "config": {}, "layers": []}'
    rel = replace_manifest(case["bundle"], data)
    for cmd in ("verify", "trust"):
        r = run(case, cmd)
        refused(r, cmd, good_seconds, WHAT[how], rel)


@pytest.mark.parametrize("how", ["fifo", "fifo-writer", "dev-zero", "big"])
def test_hostile_manifest_blob(case: dict[str, Path], good_seconds: dict[str, float],
                               writers: list, how: str) -> None:
    meta = json.loads((case["bundle"] / "bundle.json").read_text())
    rel = "blobs/sha256/" + meta["artifacts"][0]["digest"][7:]
    make_hostile(case["bundle"] / rel, how, writers)
    said = NOT_OPENED.get(how, "content differs from SHA256SUMS")  # big: streamed, hashed
    for cmd in ("verify", "trust"):
        refused(run(case, cmd), cmd, good_seconds, said, rel)


@pytest.mark.parametrize("how", ["fifo", "fifo-writer", "dev-zero"])
def test_hostile_layer_blob_never_makes_verify_hang(
        case: dict[str, Path], good_seconds: dict[str, float], writers: list,
        how: str) -> None:
    meta = json.loads((case["bundle"] / "bundle.json").read_text())
    model = next(a for a in meta["artifacts"] if a["kind"] == "vsix")
    rel = "blobs/sha256/" + model["files"][0]["digest"][7:]
    make_hostile(case["bundle"] / rel, how, writers)
    state_before = tree(case["state"])
    for cmd in ("verify", "trust"):
        refused(run(case, cmd), cmd, good_seconds, NOT_OPENED[how], rel)
    assert tree(case["state"]) == state_before


@pytest.mark.parametrize("how", ["fifo", "dev-zero", "version-true"])
def test_hostile_trust_state_is_refused_and_left_as_it_was(
        case: dict[str, Path], good_seconds: dict[str, float], writers: list,
        how: str) -> None:
    """The trust state is read like the bundle: a state that is not what airlock wrote is
    refused (exit 7), never silently replaced (that would undo rollback protection)."""
    make_hostile(case["state"] / "test" / "timestamp.json", how, writers)
    before = tree(case["state"])
    r = run(case, "trust")
    refused(r, "trust", good_seconds, WHAT[how], "timestamp.json", rc=7)
    assert tree(case["state"]) == before


# --------------------------------------------------------------------------- packed media

def media(golden: dict[str, Path], tmp_path: Path) -> Path:
    m = tmp_path / "media"
    m.mkdir()
    for p in golden["media"].glob("b.tar*"):
        shutil.copy(p, m / p.name)
    return m


def unpack(source: Path, out: Path) -> Bounded:
    return run_bounded(["bundle", "unpack", str(source), "-o", str(out)], mem_mib=MEM_MIB,
                       timeout=TIMEOUT)


def nothing_left(tmp_path: Path, out: Path) -> None:
    """No output, no staging folder left beside it, nothing escaped (a member ../x)."""
    assert not out.exists()
    if out.parent.exists():
        assert [p.name for p in out.parent.iterdir() if ".airlock-tmp-" in p.name] == []
    assert not (tmp_path / "x").exists() and not (out.parent.parent / "x").exists()


def edit_index(m: Path, fn) -> Path:
    index = m / "b.tar.parts.json"
    doc = json.loads(index.read_text())
    fn(doc)
    index.write_text(json.dumps(doc))
    return index


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["parts"].__setitem__(0, {**d["parts"][0], "name": "b.tar.part1000000000"}),
     "part 1 must be named 'b.tar.part001'"),
    (lambda d: d["parts"].__setitem__(0, {**d["parts"][0], "size": -1}),
     "part 1: size must be an integer from 0"),
    (lambda d: d["parts"].__setitem__(0, {**d["parts"][0], "size": True}),
     "part 1: size must be an integer from 0"),
    (lambda d: d["parts"].__setitem__(0, {**d["parts"][0], "name": "../x.part001"}),
     "unsafe part name"),
    (lambda d: d["bundle"].__setitem__("version", True), "bundle.version must be an integer"),
    (lambda d: d["parts"].extend(
        {"name": f"b.tar.part{i:03d}", "size": 1, "sha256": "0" * 64}
        for i in range(len(d["parts"]) + 1, 100_010)),
     "larger than the 4 MiB"),
])
def test_hostile_part_index(golden: dict[str, Path], good_seconds: dict[str, float],
                            tmp_path: Path, edit, words: str) -> None:
    m = media(golden, tmp_path)
    index = edit_index(m, edit)
    r = unpack(index, tmp_path / "out" / "u")
    refused(r, "unpack", good_seconds, words, "b.tar.parts.json")
    nothing_left(tmp_path, tmp_path / "out" / "u")
    assert not (tmp_path / "out" / ".u.airlock-parts.json").exists()


def test_part_index_naming_more_parts_than_any_bundle_has_is_refused_by_count(
        golden: dict[str, Path], good_seconds: dict[str, float], tmp_path: Path) -> None:
    """Within the size bound, a list of more parts than any bundle has (each entry short)."""
    m = media(golden, tmp_path)
    doc = {"format": "airlock-parts/v1", "parts": [{}] * 600_000}
    (m / "b.tar.parts.json").write_text(json.dumps(doc, separators=(",", ":")))
    r = unpack(m / "b.tar.parts.json", tmp_path / "u")
    refused(r, "unpack", good_seconds, "parts must list 1 to 100000 parts")
    nothing_left(tmp_path, tmp_path / "u")


@pytest.mark.parametrize("how", ["fifo", "fifo-writer", "dev-zero"])
def test_hostile_part_index_file_and_part(golden: dict[str, Path],
                                          good_seconds: dict[str, float], tmp_path: Path,
                                          writers: list, how: str) -> None:
    m = media(golden, tmp_path)
    make_hostile(m / "b.tar.part002", how, writers)
    kind = "is a symbolic link" if how == "dev-zero" else "is not a regular file"
    r = unpack(m / "b.tar.part001", tmp_path / "u")
    refused(r, "unpack", good_seconds, "b.tar.part002: " + kind)
    nothing_left(tmp_path, tmp_path / "u")
    make_hostile(m / "b.tar.parts.json", how, writers)
    r = unpack(m / "b.tar.part001", tmp_path / "u")
    refused(r, "unpack", good_seconds, WHAT[how], "b.tar.parts.json")
    nothing_left(tmp_path, tmp_path / "u")


@pytest.mark.parametrize("how", ["fifo", "dev-zero"])
def test_hostile_single_archive(golden: dict[str, Path], good_seconds: dict[str, float],
                                tmp_path: Path, writers: list, how: str) -> None:
    make_hostile(tmp_path / "b.tar", how, writers)
    r = unpack(tmp_path / "b.tar", tmp_path / "u")
    refused(r, "unpack", good_seconds, WHAT[how], "b.tar")
    nothing_left(tmp_path, tmp_path / "u")


def _zstd_tar(path: Path, members: Iterator[tuple[tarfile.TarInfo, bytes]],
              fmt: int = tarfile.GNU_FORMAT) -> Path:
    """A tar of MEMBERS, zstd-compressed into PATH (small on disk, large as a stream)."""
    plain = path.with_suffix(".plain")
    with tarfile.open(plain, mode="w", format=fmt) as tar:  # a file: tarfile's stream
        for info, data in members:                           # mode copies its buffer
            info.size = len(data)                            # per block (quadratic)
            tar.addfile(info, io.BytesIO(data))
    with open(plain, "rb") as src, open(path, "wb") as dst:
        zstandard.ZstdCompressor(level=1).copy_stream(src, dst)
    plain.unlink()
    return path


def _many(n: int, first: list[tuple[str, bytes]]) -> Iterator[tuple[tarfile.TarInfo, bytes]]:
    for name, data in first:
        yield tarfile.TarInfo(name), data
    for i in range(n):
        yield tarfile.TarInfo(f"blobs/sha256/{i:064x}"), b""


@pytest.mark.parametrize("name, members, words", [
    ("no-sums", lambda b: _many(200_000, []),
     "no SHA256SUMS among its first 16 members"),
    ("sums-then-many", lambda b: _many(200_000, [("SHA256SUMS",
                                                   (b / "SHA256SUMS").read_bytes())]),
     "is not listed in SHA256SUMS"),
    ("dotdot", lambda b: iter([(tarfile.TarInfo("../x"), b"x")]), "unsafe path"),
    ("pax-bomb", lambda b: iter([(_pax("a" * (32 << 20)), b"x")]),
     "an extended header of"),
])
def test_hostile_tar_stream(golden: dict[str, Path], good_seconds: dict[str, float],
                            tmp_path: Path, name: str, members, words: str) -> None:
    fmt = tarfile.PAX_FORMAT if name == "pax-bomb" else tarfile.GNU_FORMAT
    archive = _zstd_tar(tmp_path / "evil.tar.zst", members(golden["bundle"]), fmt)
    r = unpack(archive, tmp_path / "out" / "u")
    refused(r, "unpack", good_seconds, words, "evil.tar.zst")
    nothing_left(tmp_path, tmp_path / "out" / "u")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def _pax(value: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo("oci-layout")
    info.pax_headers = {"comment": value}
    return info


# --------------------------------------------------------------------------- delta.json

@pytest.mark.parametrize("how, words", [("fifo", "is a FIFO"),
                                        ("version-true", "base.version must be an integer"),
                                        ("big", "larger than the 64 MiB")])
def test_hostile_delta_description(case: dict[str, Path], good_seconds: dict[str, float],
                                   writers: list, how: str, words: str) -> None:
    p = case["bundle"] / "delta.json"
    p.write_text(json.dumps({"format": "airlock-delta/v1",
                             "base": {"name": "test", "version": 1, "sha256sums": "0" * 64},
                             "omitted": []}))
    if how == "version-true":
        doc = json.loads(p.read_text())
        doc["base"]["version"] = True
        p.write_text(json.dumps(doc))
    else:
        make_hostile(p, how, writers)
    for cmd in ("verify", "trust"):
        refused(run(case, cmd), cmd, good_seconds, words, "delta.json")


def test_figures(request: pytest.FixtureRequest) -> None:
    """Not a check: the peak and the time of each refusal above, for the record (-s)."""
    for cmd, what, peak, seconds in FIGURES:
        print(f"{cmd:8} {peak:4} MiB {seconds:6.2f} s  {what}")
