"""The site's Go checksum database: the go.sum hashes that crossed the air gap, served by
the repo host as static files the real go command verifies (GOSUMDB on, inside).

The go command at the staging host checked every module against go.sum or sum.golang.org;
the bundle carries each .zip and .mod with its ``h1:`` hash. Inside, hosts set
``GOSUMDB=<this database's verifier key>`` and ``GOPROXY=https://REPO/go/``: the go
command then fetches ``/sumdb/NAME/supported``, ``lookup/PATH@VERSION`` and ``tile/8/...``
through the proxy, checks the tree head's Ed25519 signature against the key, the record's
inclusion in the tree, the tree's consistency with the one it saw last, and the
downloaded bytes against the record: a module replaced on the repo host is refused with
the go command's own "checksum mismatch ... SECURITY ERROR".

The same formats as sum.golang.org (golang.org/x/mod/sumdb note, tlog and tiles of height
8), written here in Python: a signed note is the text, a blank line and ``— NAME
base64(keyhash || ed25519 signature)``; records are leaves of an RFC 6962 Merkle tree.

The log is append-only across bundles (a go command that saw an earlier tree refuses a
tree that does not extend it): ``records`` in the database folder lists every record in
order, one JSON line each; a bundle adds records for module versions it is the first to
carry (or for which it carries more files), and a bundle whose hash for a version differs
from the one already recorded is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from installer.errors import IntegrityError, UsageError
from installer.fsutil import atomic_write

NAME = "sumdb.airlock.site"  # the database's name in GOSUMDB and in /sumdb/NAME/ URLs
HEIGHT = 8  # the go command reads every checksum database with tiles of height 8
KEY_FILE, RECORDS_FILE, VERIFIER_FILE = "key", "records", "verifier"
EM_DASH = "\u2014"
ED25519 = b"\x01"  # the key's algorithm byte


# --------------------------------------------------------------------------- keys and notes

def _key_hash(name: str, alg_and_pub: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + alg_and_pub).digest()[:4]


def make_key(home: Path, name: str = NAME) -> str:
    """A new database folder HOME (0700) with a signing key (0600); returns the verifier key
    hosts put in GOSUMDB."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if home.exists() and any(home.iterdir()):
        raise UsageError(f"{home} is not empty")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    seed = os.urandom(32)
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    khash = _key_hash(name, ED25519 + pub).hex()
    secret = f"PRIVATE+KEY+{name}+{khash}+{base64.b64encode(ED25519 + seed).decode()}\n"
    verifier = f"{name}+{khash}+{base64.b64encode(ED25519 + pub).decode()}"
    atomic_write(home / KEY_FILE, secret.encode(), mode=0o600)
    atomic_write(home / VERIFIER_FILE, (verifier + "\n").encode(), mode=0o644)
    atomic_write(home / RECORDS_FILE, b"", mode=0o600)
    return verifier


@dataclass(frozen=True)
class Signer:
    name: str
    khash: bytes
    seed: bytes

    @classmethod
    def load(cls, home: Path) -> Signer:
        try:
            text = (home / KEY_FILE).read_text().strip()
        except OSError as e:
            raise UsageError(f"{home}: no Go checksum database key ({e.strerror})",
                             hint="make one with: airlock mirror go-sumdb DIR") from None
        parts = text.split("+", 4)  # the base64 part may hold '+'
        try:
            raw = base64.b64decode(parts[4], validate=True)
            if parts[:2] != ["PRIVATE", "KEY"] or raw[:1] != ED25519 or len(raw) != 33:
                raise ValueError
            return cls(parts[2], bytes.fromhex(parts[3]), raw[1:])
        except (IndexError, ValueError):
            raise UsageError(f"{home / KEY_FILE}: not a Go checksum database signing key") \
                from None

    def verifier(self) -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        pub = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}+{self.khash.hex()}+{base64.b64encode(ED25519 + pub).decode()}"

    def sign(self, text: bytes) -> bytes:
        """A signed note: TEXT (ending in a newline), a blank line, the signature line."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        sig = Ed25519PrivateKey.from_private_bytes(self.seed).sign(text)
        line = f"{EM_DASH} {self.name} {base64.b64encode(self.khash + sig).decode()}\n"
        return text + b"\n" + line.encode()


# --------------------------------------------------------------------------- the tree

def record_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def levels_of(leaves: list[bytes]) -> list[list[bytes]]:
    """levels[L][i]: the hash of the complete subtree of 2**L leaves from i * 2**L."""
    levels = [leaves]
    while len(levels[-1]) >= 2:
        prev = levels[-1]
        levels.append([node_hash(prev[2 * i], prev[2 * i + 1]) for i in range(len(prev) // 2)])
    return levels


def tree_hash(leaves: list[bytes]) -> bytes:
    """RFC 6962's Merkle tree hash (the empty tree's is SHA-256 of nothing)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(tree_hash(leaves[:k]), tree_hash(leaves[k:]))


def tile_path(level: int | str, index: int, width: int) -> str:
    """tile/8/L/NNN with x-prefixed groups of three digits; .p/W when partial."""
    digits = f"{index % 1000:03d}"
    while index >= 1000:
        index //= 1000
        digits = f"x{index % 1000:03d}/{digits}"
    partial = "" if width == 1 << HEIGHT else f".p/{width}"
    return f"tile/{HEIGHT}/{level}/{digits}{partial}"


def tiles_for(size: int) -> list[tuple[int, int, int]]:
    """(level, index, width) of every tile of a tree of SIZE records (tlog.NewTiles)."""
    out, level = [], 0
    while size >> (HEIGHT * level):
        count = size >> (HEIGHT * level)
        out += [(level, n, 1 << HEIGHT) for n in range(count >> HEIGHT)]
        if width := count & ((1 << HEIGHT) - 1):
            out.append((level, count >> HEIGHT, width))
        level += 1
    return out


# --------------------------------------------------------------------------- records

def escape(text: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), text)


@dataclass(frozen=True)
class Record:
    path: str
    version: str
    zip_h1: str | None
    mod_h1: str

    def text(self) -> bytes:
        lines = ([f"{self.path} {self.version} {self.zip_h1}\n"] if self.zip_h1 else []) \
            + [f"{self.path} {self.version}/go.mod {self.mod_h1}\n"]
        return "".join(lines).encode()

    def to_json(self) -> str:
        return json.dumps({"path": self.path, "version": self.version, "zip": self.zip_h1,
                           "mod": self.mod_h1}, sort_keys=True)


H1 = re.compile(r"^h1:[A-Za-z0-9+/]{43}=$")
MODULE_TEXT = re.compile(r"^[^\s\x00-\x1f]+$")


def _check(rec: Record, where: str) -> Record:
    if not (MODULE_TEXT.match(rec.path) and MODULE_TEXT.match(rec.version)
            and H1.match(rec.mod_h1) and (rec.zip_h1 is None or H1.match(rec.zip_h1))):
        raise IntegrityError(f"{where}: not a Go module record ({rec.to_json()[:200]})")
    return rec


def read_log(home: Path) -> list[Record]:
    try:
        lines = (home / RECORDS_FILE).read_text().splitlines()
    except OSError as e:
        raise UsageError(f"{home}: no Go checksum database records ({e.strerror})",
                         hint="make the database with: airlock mirror go-sumdb DIR") from None
    out = []
    for n, line in enumerate(lines, 1):
        try:
            d = json.loads(line)
            rec = Record(d["path"], d["version"], d["zip"], d["mod"])
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"{home / RECORDS_FILE}:{n}: not a record") from None
        out.append(_check(rec, f"{home / RECORDS_FILE}:{n}"))
    return out


def append(home: Path, wanted: list[Record]) -> tuple[list[Record], int]:
    """The log with WANTED added where it adds something; refuses any hash that differs
    from one already recorded. Written atomically; returns (log, records added)."""
    log = read_log(home)
    latest: dict[tuple[str, str], Record] = {}
    for rec in log:
        latest[(rec.path, rec.version)] = rec
    added = []
    for rec in sorted(wanted, key=lambda r: (r.path, r.version)):
        _check(rec, "the bundle")
        old = latest.get((rec.path, rec.version))
        if old is not None:
            if old.mod_h1 != rec.mod_h1 or (old.zip_h1 and rec.zip_h1
                                            and old.zip_h1 != rec.zip_h1):
                raise IntegrityError(
                    f"{rec.path}@{rec.version}: the bundle's hash differs from the one this "
                    f"site's Go checksum database already recorded ({old.to_json()}); "
                    "refusing it",
                    hint="a module version's content never changes: the bundle or the "
                         "staging host's proxy served other bytes; investigate before "
                         "importing")
            if old.zip_h1 or not rec.zip_h1:
                continue
        latest[(rec.path, rec.version)] = rec
        added.append(rec)
    if added:
        text = "".join(r.to_json() + "\n" for r in [*log, *added])
        atomic_write(home / RECORDS_FILE, text.encode(), mode=0o600)
    return [*log, *added], len(added)


def static_files(log: list[Record], signer: Signer) -> dict[str, bytes]:
    """Every file of the database for a proxy to serve under sumdb/NAME/: supported, latest
    (the signed tree head), lookup/PATH@VERSION (the version's newest record, with the
    signed tree head), and the hash tiles (data tiles too, for auditors)."""
    texts = [r.text() for r in log]
    leaves = [record_hash(t) for t in texts]
    head = (f"go.sum database tree\n{len(leaves)}\n"
            f"{base64.b64encode(tree_hash(leaves)).decode()}\n").encode()
    signed = signer.sign(head)
    files = {"supported": b"", "latest": signed}
    for rid, rec in enumerate(log):  # a later record of a version replaces the earlier
        files[f"lookup/{escape(rec.path)}@{escape(rec.version)}"] = \
            f"{rid}\n".encode() + texts[rid] + b"\n" + signed
    levels = levels_of(leaves)
    for level, index, width in tiles_for(len(leaves)):
        start = index << HEIGHT
        files[tile_path(level, index, width)] = \
            b"".join(levels[HEIGHT * level][start:start + width])
        if level == 0:
            files[tile_path("data", index, width)] = \
                b"".join(t + b"\n" for t in texts[start:start + width])
    return files
