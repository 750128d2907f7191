"""Zip archives written byte by byte, so that a test can make one lie: sizes the data does
not have, names a tidy writer would refuse, members that overlap, methods and flags nobody
producing a VSIX uses. ``zipfile`` cannot write most of these."""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from installer.lab.fixtures import make_vsix


@dataclass
class Entry:
    name: str | bytes
    data: bytes = b""                # the bytes stored (already compressed for method 8)
    method: int = 0
    size: int | None = None          # claimed uncompressed size (default: len(content))
    crc: int | None = None           # claimed CRC-32 (default: of content)
    content: bytes | None = None     # the real uncompressed bytes, for the defaults
    flags: int = 0x800               # UTF-8 names
    extra: bytes = b""
    mode: int = 0o100644
    csize: int | None = None         # claimed compressed size (default: len(data))
    local_name: str | bytes | None = None  # another name in the local header


def stored(name: str | bytes, content: bytes, **kw: object) -> Entry:
    return Entry(name, content, 0, content=content, **kw)  # type: ignore[arg-type]


def deflated(name: str | bytes, content: bytes, **kw: object) -> Entry:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Entry(name, c.compress(content) + c.flush(), 8, content=content,
                 **kw)  # type: ignore[arg-type]


def zeros(name: str, mib: int, **kw: object) -> Entry:
    """MIB MiB of zeros in about MIB KiB: one fully flushed block, repeated (a block after
    a full flush refers to nothing before it), then an empty final block."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    crc, mb = 0, bytes(1 << 20)
    for _ in range(mib):
        crc = zlib.crc32(mb, crc)
    fields = {"size": mib << 20, "crc": crc, **kw}
    return Entry(name, block * mib + b"\x03\x00", 8, **fields)  # type: ignore[arg-type]


def _b(name: str | bytes) -> bytes:
    return name.encode() if isinstance(name, str) else name


def write_zip(path: Path, entries: list[Entry]) -> Path:
    """ENTRIES as a zip at PATH, zip64 end records when there are more than 65 535."""
    out = bytearray()
    central = bytearray()
    for e in entries:
        content = e.content if e.content is not None else b""
        size = e.size if e.size is not None else len(content)
        crc = e.crc if e.crc is not None else zlib.crc32(content)
        csize = e.csize if e.csize is not None else len(e.data)
        name, local = _b(e.name), _b(e.local_name if e.local_name is not None else e.name)
        offset = len(out)
        out += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, e.flags, e.method, 0, 0x21,
                           crc, csize, size, len(local), len(e.extra)) + local + e.extra
        out += e.data
        central += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, e.flags,
                               e.method, 0, 0x21, crc, csize, size, len(name), len(e.extra),
                               0, 0, 0, e.mode << 16, offset) + name + e.extra
    cd_offset, n = len(out), len(entries)
    out += central
    if n > 0xFFFF:
        z64 = len(out)
        out += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(central),
                           cd_offset)
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, z64, 1)
        n = 0xFFFF
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), cd_offset, 0)
    path.write_bytes(bytes(out))
    return path


def vsix_entries(tmp: Path) -> list[Entry]:
    """A real small VSIX's members (acme.tool 1.2.3 for VS Code ^1.90.0), deflated."""
    real = make_vsix(tmp / "real.vsix", "acme", "tool", "1.2.3", "^1.90.0")
    with zipfile.ZipFile(real) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    real.unlink()
    return [deflated(name, data) for name, data in members]
