"""Zip archives from outside (VSIX extensions, wheels), read in bounded memory and time.

Python's ``zipfile`` trusts what an archive says about itself: ``ZipFile.read`` inflates a
member in one call sized by the header's claim, and stops at that claim without noticing a
stream that goes on. This reader believes a header only to *refuse*, never to accept:

- the file is opened by :func:`installer.untrusted.open_regular` (a regular file, no link);
- the end record is found exactly (its comment reaches the end of the file), the central
  directory sits right before it, and both its member count and its size are bounded
  before any member is looked at;
- members are stored or deflate only (what vsce, yazl and every wheel builder write);
  others are refused by name, and so are encrypted members;
- names are relative, use ``/``, carry no ``..``, empty or ``.`` component, no NUL and no
  backslash; no name appears twice, even differing only in case (a Windows or macOS IDE host
  would unpack both to one file); no member carries a second name (the Info-ZIP Unicode
  Path field, which some unpackers prefer), a symbolic link or a device;
- each local header agrees with the central directory, and no member's data overlaps
  another's (the overlap is how a 40 KB file inflates to terabytes);
- the sizes the directory claims add up to at most ``total`` bytes and at most ``ratio``
  times the archive's size (past ``ratio_floor``);
- a member is inflated in chunks of at most ``CHUNK`` bytes; it is refused the moment it
  inflates past its claimed size, and at its end unless the size, the CRC-32 and the end of
  the deflate stream all match. :meth:`BoundedZip.verify` does this for every member, so
  no member an IDE host or pip will unpack is larger than the bounds checked here.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from installer.errors import AirlockError, SourceError
from installer.untrusted import Err, GiB, KiB, MiB, human, open_regular

STORED, DEFLATED = 0, 8
METHODS = {0: "stored", 1: "shrink", 6: "implode", 8: "deflate", 9: "deflate64",
           12: "bzip2", 14: "lzma", 19: "IBM LZ77", 93: "zstandard", 95: "xz", 96: "jpeg",
           97: "wavpack", 98: "ppmd", 99: "AES encryption"}
CHUNK = 256 * KiB

_EOCD = struct.Struct("<4s4H2LH")              # end of central directory, 22 bytes
_LOCATOR = struct.Struct("<4sLQL")             # zip64 end locator, 20 bytes
_EOCD64 = struct.Struct("<4sQ2H2L4Q")          # zip64 end record, 56 bytes
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")     # central directory entry, 46 bytes
_LOCAL = struct.Struct("<4s2B4HL2L2H")         # local file header, 30 bytes
_MAX16, _MAX32 = 0xFFFF, 0xFFFFFFFF


@dataclass(frozen=True)
class ZipLimits:
    """Bounds for one archive. The largest real VSIX unpack to 100-200 MiB in 5 000-20 000
    files at 3-10:1 (JavaScript, maps, a few binaries); wheels of airlock's size are far
    smaller. Each bound is several times that, and small enough for a 2-core staging host."""

    members: int = 65_535        # what a zip without zip64 can list; 3x the largest VSIX
    directory: int = 32 * MiB    # central directory bytes (65 535 names of ~450 bytes)
    total: int = 1 * GiB         # all members' uncompressed sizes together
    ratio: int = 200             # uncompressed : archive, for the whole archive ...
    ratio_floor: int = 16 * MiB  # ... once it unpacks to more than this


@dataclass(frozen=True)
class Member:
    name: str
    method: int
    flags: int
    crc: int
    compressed: int
    size: int          # as the central directory claims: checked while inflating
    header: int        # offset of the local header
    data: int = 0      # offset of the data (after the local header)


class BoundedZip:
    """A zip archive opened for reading within ``limits``; see the module's docstring.
    Every refusal is ``error(f"{what}: ...")``."""

    def __init__(self, path: Path | str, *, what: str | None = None,
                 error: Err = SourceError, limits: ZipLimits | None = None,
                 follow_links: bool = False):
        self.what = what or str(path)
        self.error = error
        self.limits = limits or ZipLimits()
        self._fd = open_regular(path, what=self.what, error=error, follow_links=follow_links)
        try:
            self.size = os.fstat(self._fd).st_size
            self.members = self._read_directory()
        except BaseException:
            os.close(self._fd)
            raise

    # ------------------------------------------------------------------ public

    def __enter__(self) -> BoundedZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def names(self) -> list[str]:
        return list(self.members)

    @property
    def total(self) -> int:
        """The uncompressed size of all members (as claimed, and so far verified)."""
        return sum(m.size for m in self.members.values())

    def read(self, name: str, limit: int) -> bytes | None:
        """Member NAME, at most LIMIT bytes uncompressed; None when there is no such member."""
        m = self.members.get(name)
        if m is None:
            return None
        if m.size > limit:
            raise self._refuse(f"{name} is {m.size} bytes uncompressed, more than the "
                               f"{human(limit)} airlock reads of it")
        return b"".join(self._inflate(m))

    def stream(self, name: str) -> Iterator[bytes]:
        """Member NAME's bytes in chunks, checked as verify() checks them (KeyError: none)."""
        return self._inflate(self.members[name])

    def verify(self) -> None:
        """Inflate every member, streamed, checking its size, its CRC-32 and its end."""
        for m in self.members.values():
            for _ in self._inflate(m):
                pass

    # ------------------------------------------------------------------ internals

    def _refuse(self, problem: str, hint: str | None = None) -> AirlockError:
        return self.error(f"{self.what}: {problem}", hint=hint)

    def _broken(self, problem: str) -> AirlockError:
        return self._refuse(f"not a valid zip archive ({problem})")

    def _pread(self, n: int, at: int) -> bytes:
        data = os.pread(self._fd, n, at)
        if len(data) != n:
            raise self._broken("truncated")
        return data

    def _end_record(self) -> tuple[int, int, int]:
        """(member count, directory size, directory offset), checked against the file."""
        if self.size < _EOCD.size:
            raise self._broken("too short to be a zip")
        span = min(self.size, _EOCD.size + _MAX16)
        base = self.size - span
        tail = self._pread(span, base)
        pos = tail.rfind(b"PK\x05\x06", 0, span - _EOCD.size + 4)
        while pos >= 0:  # the record whose comment ends exactly at the end of the file
            rec = _EOCD.unpack_from(tail, pos)
            if pos + _EOCD.size + rec[7] == span:
                break
            pos = tail.rfind(b"PK\x05\x06", 0, pos + 3)
        if pos < 0:
            raise self._broken("no end of central directory record")
        _, disk, cd_disk, n_disk, count, cd_size, cd_offset, _ = rec
        end = base + pos  # where the central directory must end
        if end >= _LOCATOR.size and \
                self._pread(4, end - _LOCATOR.size) == b"PK\x06\x07":
            _, disk64, at64, disks = _LOCATOR.unpack(self._pread(_LOCATOR.size,
                                                                 end - _LOCATOR.size))
            if disk64 != 0 or disks != 1 or at64 + _EOCD64.size > end - _LOCATOR.size:
                raise self._broken("bad zip64 end locator")
            (sig, _, _, _, disk, cd_disk, n_disk, count, cd_size,
             cd_offset) = _EOCD64.unpack(self._pread(_EOCD64.size, at64))
            if sig != b"PK\x06\x06":
                raise self._broken("bad zip64 end record")
            end = at64
        if disk != 0 or cd_disk != 0 or n_disk != count:
            raise self._refuse("is a multi-disk (split) zip; airlock reads single archives")
        if count > self.limits.members:
            raise self._refuse(f"lists {count} members, more than the "
                               f"{self.limits.members} airlock accepts in one archive")
        if cd_size > self.limits.directory:
            raise self._refuse(f"has a {cd_size}-byte central directory, more than the "
                               f"{human(self.limits.directory)} airlock accepts")
        if cd_offset + cd_size != end:
            raise self._broken("the central directory is not where the end record says")
        return count, cd_size, cd_offset

    def _read_directory(self) -> dict[str, Member]:
        count, cd_size, cd_offset = self._end_record()
        cd = self._pread(cd_size, cd_offset)
        members: dict[str, Member] = {}
        folded: dict[str, str] = {}
        p = 0
        for _ in range(count):
            if p + _CENTRAL.size > cd_size:
                raise self._broken("the central directory is shorter than its member count")
            (sig, _, system, _, _, flags, method, _, _, crc, csize, usize, n, m, k, disk, _,
             attr, offset) = _CENTRAL.unpack_from(cd, p)
            raw = cd[p + _CENTRAL.size:p + _CENTRAL.size + n]
            extra = cd[p + _CENTRAL.size + n:p + _CENTRAL.size + n + m]
            p += _CENTRAL.size + n + m + k
            if sig != b"PK\x01\x02" or p > cd_size:
                raise self._broken("bad central directory entry")
            name = self._name(raw, flags)
            fields = self._extra(extra, name)
            usize, csize, offset, disk = self._zip64(fields.get(1, b""), name, usize, csize,
                                                     offset, disk)
            if disk != 0:
                raise self._refuse("is a multi-disk (split) zip; airlock reads single "
                                   "archives")
            self._check_member(name, flags, method, system, attr, csize, usize)
            key = name.rstrip("/").casefold()
            if key in folded:
                same = "" if folded[key] == name else f" (as {folded[key]!r})"
                raise self._refuse(f"the member {name!r} appears twice{same}; names that "
                                   "differ only in case count as one, since an IDE host on "
                                   "Windows or macOS unpacks them to one file")
            folded[key] = name
            members[name] = Member(name, method, flags, crc, csize, usize, offset)
        if p != cd_size:
            raise self._broken("the central directory is longer than its member count")
        self._check_totals(members.values())
        return self._locate(members, cd_offset)

    def _name(self, raw: bytes, flags: int) -> str:
        try:
            name = raw.decode("utf-8") if flags & 0x800 else raw.decode("cp437")
        except UnicodeDecodeError:
            raise self._refuse(f"a member name is not UTF-8 ({raw[:80]!r})") from None
        shown = repr(name[:200])
        if not name:
            raise self._refuse("a member has an empty name")
        if "\x00" in name:
            raise self._refuse(f"the member name {shown} contains a NUL byte")
        if "\\" in name:
            raise self._refuse(f"the member name {shown} contains a backslash (a path "
                               "separator on Windows)")
        if name.startswith("/") or re.match(r"[A-Za-z]:", name):
            raise self._refuse(f"the member name {shown} is an absolute path")
        parts = (name[:-1] if name.endswith("/") else name).split("/")
        if ".." in parts:
            raise self._refuse(f"the member name {shown} climbs out with '..'")
        if "" in parts or "." in parts:
            raise self._refuse(f"the member name {shown} has an empty or '.' component")
        return name

    def _extra(self, extra: bytes, name: str) -> dict[int, bytes]:
        fields: dict[int, bytes] = {}
        q = 0
        while q + 4 <= len(extra):
            ident, size = struct.unpack_from("<HH", extra, q)
            body = extra[q + 4:q + 4 + size]
            if len(body) != size:
                raise self._broken(f"the extra field of {name!r} is cut short")
            if ident == 0x7075:
                raise self._refuse(f"the member {name!r} carries a second name (an Info-ZIP "
                                   "Unicode Path field), which some unpackers use instead")
            fields.setdefault(ident, body)
            q += 4 + size
        return fields

    def _zip64(self, body: bytes, name: str, *values: int) -> tuple[int, int, int, int]:
        """The zip64 extra field's 8-byte values stand in for the saturated 32-bit ones
        (uncompressed, compressed, offset), then a 4-byte disk number."""
        out, q = list(values), 0
        for i, (value, width) in enumerate(zip(values, (8, 8, 8, 4), strict=True)):
            if value != (_MAX16 if i == 3 else _MAX32):
                continue
            if q + width > len(body):
                raise self._broken(f"{name!r} lacks its zip64 sizes")
            out[i] = int.from_bytes(body[q:q + width], "little")
            q += width
        return out[0], out[1], out[2], out[3]

    def _check_member(self, name: str, flags: int, method: int, system: int, attr: int,
                      csize: int, usize: int) -> None:
        if flags & 0x41 or method == 99:
            raise self._refuse(f"the member {name!r} is encrypted")
        if method not in (STORED, DEFLATED):
            label = METHODS.get(method, f"compression method {method}")
            raise self._refuse(f"the member {name!r} is compressed with {label}; airlock "
                               "reads only stored and deflate members (what VSIX and wheel "
                               "builders write)")
        if method == STORED and csize != usize:
            raise self._broken(f"the stored member {name!r} claims {csize} bytes stored "
                               f"and {usize} unpacked")
        mode = attr >> 16 if system == 3 else 0  # 3: unix; its mode is in the high bits
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise self._refuse(f"the member {name!r} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise self._refuse(f"the member {name!r} is not a file or a folder "
                               f"(mode {mode:o})")
        if name.endswith("/") and usize:
            raise self._broken(f"the folder {name!r} has content")

    def _check_totals(self, members: Iterable[Member]) -> None:
        total = sum(m.size for m in members)
        lim = self.limits
        if total > lim.total:
            raise self._refuse(f"its members add up to {total} bytes uncompressed, more "
                               f"than the {human(lim.total)} airlock accepts for one archive",
                               hint="a real extension or wheel is far smaller; this looks "
                                    "like a zip bomb")
        if total > lim.ratio_floor and total > lim.ratio * self.size:
            raise self._refuse(f"it unpacks to {total} bytes from {self.size}, more than "
                               f"the {lim.ratio}:1 compression ratio airlock accepts for "
                               f"an archive that unpacks past {human(lim.ratio_floor)}",
                               hint="a real extension or wheel compresses far less; this "
                                    "looks like a zip bomb")

    def _locate(self, members: dict[str, Member], cd_offset: int) -> dict[str, Member]:
        """Read every local header: it must agree with the directory, and the members' data
        must lie one after another before the directory, none overlapping another."""
        out: dict[str, Member] = {}
        for m in members.values():
            if m.header + _LOCAL.size > cd_offset:
                raise self._broken(f"{m.name!r} starts past the central directory")
            (sig, _, _, flags, method, _, _, crc, csize, usize, n,
             k) = _LOCAL.unpack(self._pread(_LOCAL.size, m.header))
            if sig != b"PK\x03\x04":
                raise self._broken(f"no local header where the directory puts {m.name!r}")
            head = self._pread(n + k, m.header + _LOCAL.size)
            raw = m.name.encode("utf-8" if m.flags & 0x800 else "cp437")
            if head[:n] != raw:
                raise self._refuse(f"the member {m.name!r} has another name in its local "
                                   f"header ({head[:n][:200]!r})")
            fields = self._extra(head[n:], m.name)
            if method != m.method or (flags ^ m.flags) & 0x41:
                raise self._refuse(f"the local header of {m.name!r} disagrees with the "
                                   "central directory (method or encryption)")
            if not flags & 0x08:  # no data descriptor: the local header has the sizes too
                if _MAX32 in (usize, csize):
                    z = fields.get(1, b"")
                    if len(z) < 16:
                        raise self._broken(f"{m.name!r} lacks its local zip64 sizes")
                    usize, csize = struct.unpack_from("<QQ", z)
                if (crc, csize, usize) != (m.crc, m.compressed, m.size):
                    raise self._refuse(f"the local header of {m.name!r} disagrees with the "
                                       "central directory (sizes or CRC)")
            data = m.header + _LOCAL.size + n + k
            if data + m.compressed > cd_offset:
                raise self._broken(f"the data of {m.name!r} runs into the central directory")
            out[m.name] = Member(m.name, m.method, m.flags, m.crc, m.compressed, m.size,
                                 m.header, data)
        spans = sorted((m.header, m.data + m.compressed, m.name) for m in out.values())
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                raise self._refuse(f"the members {first!r} and {second!r} overlap (a "
                                   "zip bomb's trick)")
        return out

    def _inflate(self, m: Member) -> Iterator[bytes]:
        """M's content in chunks of at most CHUNK bytes, refused past its claimed size or
        when its size, CRC-32 or stream end do not match."""
        left, at, got, crc = m.compressed, m.data, 0, 0
        d = zlib.decompressobj(-15) if m.method == DEFLATED else None
        while True:
            if d is not None and d.unconsumed_tail:
                data = d.unconsumed_tail
            elif left:
                data = self._pread(min(CHUNK, left), at)
                at += len(data)
                left -= len(data)
            else:
                data = b""
            if d is None:
                out = data
            else:
                try:
                    out = d.decompress(data, CHUNK)
                except zlib.error as e:
                    raise self._broken(f"{m.name!r}: {e}") from None
            got += len(out)
            if got > m.size:
                raise self._refuse(f"the member {m.name!r} inflates to more than the "
                                   f"{m.size} bytes its header claims",
                                   hint="the archive lies about its sizes; it is damaged "
                                        "or made to exhaust memory")
            crc = zlib.crc32(out, crc)
            if out:
                yield out
            if d is None and not left:
                break
            if d is not None and (d.eof or (not data and not out)):
                break
        if d is not None and (not d.eof or left or d.unused_data or d.unconsumed_tail):
            raise self._broken(f"the deflate stream of {m.name!r} does not end where its "
                               "compressed size says")
        if got != m.size or crc != m.crc:
            raise self._broken(f"{m.name!r} is {got} bytes with CRC-32 {crc:08x}; its "
                               f"header says {m.size} bytes, {m.crc:08x}")
