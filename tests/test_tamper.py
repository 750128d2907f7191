"""Attacks on a built bundle and on packed media: every one is caught, names the file, and
leaves nothing behind. The stock tool (sha256sum -c) is checked against the same damage."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import FULL_SPEC, need, run_airlock, write_spec
from installer.bundle.build import BuildOptions, build
from installer.bundle.pack import pack, unpack
from installer.bundle.verify import verify
from installer.errors import IntegrityError, StorageError


@pytest.fixture
def bundle(workdir: Path, tmp_path: Path) -> Path:
    return build(write_spec(workdir, FULL_SPEC), tmp_path / "b", BuildOptions()).path


def a_layer_blob(b: Path) -> Path:
    meta = json.loads((b / "bundle.json").read_text())
    model = next(a for a in meta["artifacts"] if a["kind"] == "model")
    return b / "blobs/sha256" / model["files"][1]["digest"][7:]


def problems(b: Path) -> dict[str, str]:
    report = verify(b)
    assert not report.ok
    return {p["file"]: p["problem"] for p in report.problems}


def sha256sum_fails(b: Path) -> bool:
    need("sha256sum")
    return subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=b,
                          capture_output=True).returncode != 0


def test_clean_bundle_verifies(bundle: Path) -> None:
    report = verify(bundle)
    assert report.ok and report.files > 10 and report.digest
    assert not sha256sum_fails(bundle)


def test_flipped_byte_in_a_blob(bundle: Path) -> None:
    blob = a_layer_blob(bundle)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    rel = f"blobs/sha256/{blob.name}"
    assert problems(bundle) == {rel: "content differs from SHA256SUMS (changed or damaged)"}
    assert sha256sum_fails(bundle)
    proc = run_airlock("bundle", "verify", str(bundle))
    assert proc.returncode == 5 and rel in proc.stderr
    doc = json.loads(run_airlock("bundle", "verify", str(bundle), "--json").stdout)
    assert doc["ok"] is False and doc["problems"][0]["file"] == rel


def test_deleted_blob(bundle: Path) -> None:
    blob = a_layer_blob(bundle)
    blob.unlink()
    assert problems(bundle) == {f"blobs/sha256/{blob.name}": "listed in SHA256SUMS but missing"}
    assert sha256sum_fails(bundle)


def test_added_unlisted_file(bundle: Path) -> None:
    (bundle / "blobs/sha256" / ("0" * 64)).write_bytes(b"smuggled")
    (bundle / "extra.sh").write_text("echo hi\n")
    found = problems(bundle)
    assert found == {f"blobs/sha256/{'0' * 64}": "present but not listed in SHA256SUMS",
                     "extra.sh": "present but not listed in SHA256SUMS"}


def test_symlink_in_bundle(bundle: Path) -> None:
    (bundle / "link").symlink_to("/etc/passwd")
    assert problems(bundle)["link"].startswith("is a symbolic link")


def test_edited_bundle_json_with_recomputed_sums_fails_structure(bundle: Path) -> None:
    """Someone who edits bundle.json and recomputes SHA256SUMS passes the hash check (only
    signatures, in the trust layer, stop that), but an artifact list that no longer matches
    index.json is still caught."""
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["artifacts"][0]["digest"] = "sha256:" + "1" * 64
    (bundle / "bundle.json").write_text(json.dumps(meta))
    import hashlib

    lines = []
    for line in (bundle / "SHA256SUMS").read_text().splitlines():
        h, path = line.split("  ", 1)
        if path == "bundle.json":
            h = hashlib.sha256((bundle / path).read_bytes()).hexdigest()
        lines.append(f"{h}  {path}\n")
    (bundle / "SHA256SUMS").write_text("".join(lines))
    found = problems(bundle)
    assert "bundle.json" in found and "index.json" in found


def test_malformed_sha256sums(bundle: Path) -> None:
    (bundle / "SHA256SUMS").write_text("nonsense\n")
    assert problems(bundle) == {"SHA256SUMS": "malformed: line 1: not '<64 hex>  <path>'"}


def test_traversal_path_in_sha256sums(bundle: Path) -> None:
    (bundle / "SHA256SUMS").write_text(f"{'a' * 64}  ../outside\n")
    assert "unsafe path" in problems(bundle)["SHA256SUMS"]


# --------------------------------------------------------------------------- pack / unpack

@pytest.mark.parametrize("zstd", [False, True])
def test_pack_unpack_round_trip(bundle: Path, tmp_path: Path, zstd: bool) -> None:
    name = "b.tar.zst" if zstd else "b.tar"
    r = pack(bundle, tmp_path / name, zstd=zstd, level=3, split=None, force=False)
    assert len(r["parts"]) == 1 and (tmp_path / name).exists()
    head = (tmp_path / name).read_bytes()[:4]
    assert (head == b"\x28\xb5\x2f\xfd") == zstd
    out = unpack(tmp_path / name, tmp_path / "u", force=False)
    assert out["files"] == verify(bundle).files
    assert (tmp_path / "u/SHA256SUMS").read_bytes() == (bundle / "SHA256SUMS").read_bytes()
    need("sha256sum")
    assert not sha256sum_fails(tmp_path / "u")


def test_pack_is_reproducible(bundle: Path, tmp_path: Path) -> None:
    a = pack(bundle, tmp_path / "a.tar.zst", zstd=True, level=3, split=None, force=False)
    b = pack(bundle, tmp_path / "b.tar.zst", zstd=True, level=3, split=None, force=False)
    assert a["sha256"] == b["sha256"]
    with _open_tar(tmp_path / "a.tar.zst") as tar:
        for m in tar:
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")


def _open_tar(path: Path) -> tarfile.TarFile:
    import zstandard

    with open(path, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    return tarfile.open(fileobj=io.BytesIO(data))


@pytest.fixture
def parts(bundle: Path, tmp_path: Path) -> tuple[Path, dict]:
    media = tmp_path / "media"
    r = pack(bundle, media / "b.tar.zst", zstd=True, level=3, split=64 * 1024, force=False)
    assert len(r["parts"]) >= 4, r
    return media, r


def test_split_parts_round_trip_from_first_part_or_index(parts, tmp_path: Path) -> None:
    media, r = parts
    index = json.loads((media / "b.tar.zst.parts.json").read_text())
    assert [p["name"] for p in index["parts"]] == [f"b.tar.zst.part{i:03d}"
                                                   for i in range(1, len(r["parts"]) + 1)]
    assert all(p["size"] == 64 * 1024 for p in index["parts"][:-1])
    unpack(media / "b.tar.zst.part001", tmp_path / "u1", force=False)
    unpack(media / "b.tar.zst.parts.json", tmp_path / "u2", force=False)
    assert verify(tmp_path / "u1").ok and verify(tmp_path / "u2").ok


@pytest.mark.parametrize("damage, words", [
    ("delete", "missing"),
    ("truncate", "truncated or wrong file"),
    ("flip", "damaged copy"),
])
def test_bad_part_is_named_and_a_rerun_resumes(parts, tmp_path: Path, damage: str,
                                               words: str) -> None:
    media, _ = parts
    victim = media / "b.tar.zst.part003"
    good = victim.read_bytes()
    if damage == "delete":
        victim.unlink()
    elif damage == "truncate":
        victim.write_bytes(good[:1000])
    else:
        victim.write_bytes(good[:10] + bytes([good[10] ^ 0xFF]) + good[11:])
    with pytest.raises(IntegrityError) as e:
        unpack(media / "b.tar.zst.part001", tmp_path / "u", force=False)
    assert e.value.problems == [{"file": "b.tar.zst.part003",
                                 "problem": e.value.problems[0]["problem"]}]
    assert words in e.value.problems[0]["problem"]
    assert not (tmp_path / "u").exists()
    state = json.loads((tmp_path / ".u.airlock-parts.json").read_text())
    assert "b.tar.zst.part001" in state and "b.tar.zst.part003" not in state
    # replace the bad part; the re-run re-reads only what it has not checked yet
    victim.write_bytes(good)
    out = unpack(media / "b.tar.zst.part001", tmp_path / "u", force=False)
    assert out["parts"] >= 4 and verify(tmp_path / "u").ok
    assert not (tmp_path / ".u.airlock-parts.json").exists()


def test_cli_unpack_names_the_bad_part(parts, tmp_path: Path) -> None:
    media, _ = parts
    (media / "b.tar.zst.part002").unlink()
    proc = run_airlock("bundle", "unpack", str(media / "b.tar.zst.part001"), "-o",
                       str(tmp_path / "u"))
    assert proc.returncode == 5 and "b.tar.zst.part002: missing" in proc.stderr


def test_truncated_single_archive(bundle: Path, tmp_path: Path) -> None:
    pack(bundle, tmp_path / "b.tar", zstd=False, level=3, split=None, force=False)
    data = (tmp_path / "b.tar").read_bytes()
    (tmp_path / "b.tar").write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="truncated or damaged"):
        unpack(tmp_path / "b.tar", tmp_path / "u", force=False)
    assert not (tmp_path / "u").exists() and not list(tmp_path.glob(".u.*"))


def _evil_tar(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as tar:
        ok = tarfile.TarInfo("oci-layout")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, link
    return m


@pytest.mark.parametrize("member, words", [
    (_member("../escape"), "unsafe path"),
    (_member("blobs/../../escape"), "unsafe path"),
    (_member("/tmp/airlock-abs-escape"), "unsafe path"),
    (_member("blobs/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    (_member("blobs/hard", tarfile.LNKTYPE, "oci-layout"), "is a link"),
    (_member("dev", tarfile.CHRTYPE), "special file"),
    (_member("fifo", tarfile.FIFOTYPE), "special file"),
    (_member("oci-layout"), "appears twice"),
])
def test_malicious_archives_are_refused_and_nothing_is_written(tmp_path: Path, member,
                                                                words: str) -> None:
    evil = _evil_tar(tmp_path / "evil.tar", member)
    with pytest.raises(IntegrityError, match=words):
        unpack(evil, tmp_path / "x" / "u", force=False)
    assert not (tmp_path / "escape").exists()
    assert not Path("/tmp/airlock-abs-escape").exists()
    assert list((tmp_path / "x").iterdir()) == []


def test_archive_that_is_not_a_bundle_is_refused(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        m = tarfile.TarInfo("hello.txt")
        m.size = 2
        tar.addfile(m, io.BytesIO(b"hi"))
    with pytest.raises(IntegrityError, match="does not verify") as e:
        unpack(tmp_path / "t.tar", tmp_path / "u", force=False)
    assert {"file": "SHA256SUMS", "problem": "missing (not an airlock bundle, or damaged)"} \
        in e.value.problems
    assert not (tmp_path / "u").exists()


def test_unpack_onto_existing_folder_needs_force(bundle: Path, tmp_path: Path) -> None:
    pack(bundle, tmp_path / "b.tar", zstd=False, level=3, split=None, force=False)
    (tmp_path / "u").mkdir()
    with pytest.raises(StorageError, match="already exists"):
        unpack(tmp_path / "b.tar", tmp_path / "u", force=False)
    unpack(tmp_path / "b.tar", tmp_path / "u", force=True)
    assert verify(tmp_path / "u").ok


def test_pack_refuses_existing_outputs_without_force(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "b.tar").write_text("precious")
    with pytest.raises(StorageError, match="already exists"):
        pack(bundle, tmp_path / "b.tar", zstd=False, level=3, split=None, force=False)
    assert (tmp_path / "b.tar").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_split_size_is_validated(bundle: Path, tmp_path: Path) -> None:
    proc = run_airlock("bundle", "pack", str(bundle), "-o", str(tmp_path / "x"), "--split", "lots")
    assert proc.returncode == 2 and "expected a size such as 700M" in proc.stderr
    assert not (tmp_path / "x").exists()
