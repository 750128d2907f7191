"""installer.untrusted_zip: a zip from outside is believed only to be refused; every bound,
name rule and consistency check refuses the archive that breaks it, naming it."""

from __future__ import annotations

import bz2
import lzma
import struct
import zipfile
from pathlib import Path

import pytest

from installer.errors import SourceError
from installer.untrusted_zip import BoundedZip, ZipLimits
from tests.hostile_zip import Entry, deflated, stored, vsix_entries, write_zip, zeros


def refused(path: Path, words: str, limits: ZipLimits | None = None) -> str:
    with pytest.raises(SourceError) as e, BoundedZip(path, what=f"VSIX {path.name}",
                                                     limits=limits) as zf:
        zf.read("extension/package.json", 1 << 20)
        zf.verify()
    text = str(e.value)
    assert text.startswith(f"VSIX {path.name}: "), text
    assert words in text, text
    return text


def test_what_zipfile_and_real_wheels_write_is_read(tmp_path: Path) -> None:
    p = tmp_path / "w.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("pkg/big.bin", "w", force_zip64=True) as f:  # zip64 local sizes
            for _ in range(8):
                f.write(b"x" * 100_000)
        zf.writestr("pkg/__init__.py", b"")
        zf.writestr(zipfile.ZipInfo("pkg/raw.txt"), b"stored")
        zf.mkdir("pkg/data")
        zf.comment = b"PK\x05\x06 a comment that looks like an end record"
    with BoundedZip(p) as zf:
        assert zf.names() == ["pkg/big.bin", "pkg/__init__.py", "pkg/raw.txt", "pkg/data/"]
        assert zf.read("pkg/raw.txt", 10) == b"stored"
        assert zf.read("missing", 10) is None
        zf.verify()
        assert zf.total == 800_006


def test_a_crafted_vsix_is_read(tmp_path: Path) -> None:
    with BoundedZip(write_zip(tmp_path / "ok.vsix", vsix_entries(tmp_path))) as zf:
        assert b'"publisher": "acme"' in zf.read("extension/package.json", 1 << 20)
        zf.verify()


def with_vsix(tmp_path: Path, *extra: Entry) -> Path:
    return write_zip(tmp_path / "x.vsix", [*vsix_entries(tmp_path), *extra])


@pytest.mark.parametrize(("entry", "words"), [
    (stored("../../x", b"x"), "climbs out with '..'"),
    (stored("extension/../../x", b"x"), "climbs out with '..'"),
    (stored("/abs", b"x"), "is an absolute path"),
    (stored("C:/Windows/x", b"x"), "is an absolute path"),
    (stored("extension\\..\\..\\x", b"x"), "contains a backslash"),
    (stored("extension/a\x00.js", b"x"), "contains a NUL byte"),
    (stored("extension//x", b"x"), "has an empty or '.' component"),
    (stored("extension/./x", b"x"), "has an empty or '.' component"),
    (stored(b"extension/\xff", b"x"), "is not UTF-8"),
    (stored("extension/package.json", b"{}"), "'extension/package.json' appears twice"),
    (stored("Extension/Package.json", b"{}"), "as 'extension/package.json'"),
    (stored("extension/link", b"/etc/passwd", mode=0o120777), "is a symbolic link"),
    (stored("extension/fifo", b"", mode=0o010644), "is not a file or a folder"),
    (stored("extension/x", b"x", flags=0x801), "is encrypted"),
    (stored("extension/x", b"x", flags=0x841), "is encrypted"),
    (Entry("extension/x", b"zz", 99, size=2), "is encrypted"),
    (Entry("extension/x", bz2.compress(b"x" * 100), 12, size=100), "compressed with bzip2"),
    (Entry("extension/x", lzma.compress(b"x" * 100), 14, size=100), "compressed with lzma"),
    (Entry("extension/x", b"zz", 9, size=100), "compressed with deflate64"),
    (Entry("extension/x", b"zz", 93, size=100), "compressed with zstandard"),
    (Entry("extension/x", b"zz", 42, size=100), "compressed with compression method 42"),
    (stored("extension/x", b"x", extra=struct.pack("<HHB", 0x7075, 1, 1)), "a second name"),
    (stored("extension/x", b"x", local_name="extension/y"), "another name in its local"),
])
def test_hostile_members_are_refused(tmp_path: Path, entry: Entry, words: str) -> None:
    refused(with_vsix(tmp_path, entry), words)


def test_a_member_that_inflates_past_its_claim_is_refused(tmp_path: Path) -> None:
    liar = zeros("extension/x.js", 50, size=100)
    refused(with_vsix(tmp_path, liar), "'extension/x.js' inflates to more than the 100 bytes")


def test_package_json_that_lies_about_its_size_is_refused(tmp_path: Path) -> None:
    entries = [e for e in vsix_entries(tmp_path) if e.name != "extension/package.json"]
    liar = zeros("extension/package.json", 50, size=100)
    refused(write_zip(tmp_path / "x.vsix", [*entries, liar]), "inflates to more than the 100")


@pytest.mark.parametrize(("entry", "words"), [
    (deflated("extension/x", b"abc" * 100, crc=1), "its header says 300 bytes, 00000001"),
    (deflated("extension/x", b"abc" * 100, size=301), "is 300 bytes"),
    (Entry("extension/x", b"\x00\x01", 8, size=1), "not a valid zip archive"),
    (Entry("extension/x", deflated("x", b"abc").data + b"junk", 8, content=b"abc"),
     "does not end where its compressed size says"),
    (stored("extension/x", b"abc", size=4), "claims 3 bytes stored and 4 unpacked"),
    (stored("extension/dir/", b"abc"), "the folder 'extension/dir/' has content"),
])
def test_members_that_do_not_match_their_header_are_refused(tmp_path: Path, entry: Entry,
                                                            words: str) -> None:
    refused(with_vsix(tmp_path, entry), words)


def test_overlapping_members_are_refused(tmp_path: Path) -> None:
    """The first member's compressed size covers the second's header and data."""
    a = deflated("extension/a.js", b"a" * 1000)
    b = deflated("extension/b.js", b"b" * 1000)
    a.csize = len(a.data) + 30 + len("extension/b.js") + len(b.data)
    refused(with_vsix(tmp_path, a, b), "'extension/a.js' and 'extension/b.js' overlap")


def test_the_claimed_total_is_bounded_before_anything_is_inflated(tmp_path: Path) -> None:
    p = with_vsix(tmp_path, zeros("extension/z", 40))
    refused(p, "add up to 41", ZipLimits(total=32 << 20))
    with BoundedZip(p, limits=ZipLimits(total=64 << 20, ratio=2000)) as zf:
        zf.verify()


def test_the_compression_ratio_is_bounded_past_its_floor(tmp_path: Path) -> None:
    p = with_vsix(tmp_path, zeros("extension/z", 40))  # ~1000:1
    refused(p, "more than the 200:1 compression ratio")
    with BoundedZip(p, limits=ZipLimits(ratio_floor=64 << 20)) as zf:
        zf.verify()


def test_the_member_count_is_bounded_from_the_end_record(tmp_path: Path) -> None:
    many = [stored(f"extension/{i}", b"") for i in range(20)]
    refused(with_vsix(tmp_path, *many), "lists 23 members, more than the 22",
            ZipLimits(members=22))


def test_the_directory_size_is_bounded(tmp_path: Path) -> None:
    refused(with_vsix(tmp_path, stored("extension/" + "a" * 2000, b"")),
            "central directory, more than the 2 KiB", ZipLimits(directory=2048))


def test_read_refuses_a_member_past_its_limit_before_inflating(tmp_path: Path) -> None:
    p = with_vsix(tmp_path, zeros("extension/big.json", 3))
    with BoundedZip(p) as zf, pytest.raises(SourceError, match="3145728 bytes uncompressed, "
                                            "more than the 1 MiB airlock reads of it"):
        zf.read("extension/big.json", 1 << 20)


@pytest.mark.parametrize(("damage", "words"), [
    (lambda b: b[:-1], "no end of central directory record"),
    (lambda b: b[:30], "no end of central directory record"),
    (lambda b: b"", "too short"),
    (lambda b: b"junk" + b, "not where the end record says"),
    (lambda b: b[:-22] + struct.pack("<4s4H2LH", b"PK\x05\x06", 1, 0, 3, 3,
                                     *struct.unpack_from("<2L", b, len(b) - 10), 0),
     "multi-disk"),
])
def test_damaged_archives_are_refused(tmp_path: Path, damage, words: str) -> None:
    p = with_vsix(tmp_path)
    p.write_bytes(damage(p.read_bytes()))
    refused(p, words)


def test_a_symbolic_link_to_an_archive_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "link.vsix"
    link.symlink_to(with_vsix(tmp_path))
    with pytest.raises(SourceError, match="is a symbolic link"):
        BoundedZip(link)
