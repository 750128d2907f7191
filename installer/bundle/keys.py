"""The trust root: python-tuf metadata plus Ed25519 signer keys.

A key folder holds:

    root.json          the newest root; what verifiers pin (copy it out of band)
    roots/N.root.json  every root version, so bundles carry the whole chain
    policy.json        expiry periods used when bundles are signed
    signer-K.key       each signer's private key: OpenSSH format, passphrase-encrypted,
                       mode 0600 (ssh-keygen -p changes the passphrase; ssh-keygen -Y sign
                       can use it)
    signer-K.pub       the matching public key, one line

Every signer key is listed for all four TUF roles (root, targets, snapshot, timestamp) with
one threshold, so T of N signers must sign each bundle, and T of the old and T of the new
signers must sign a new root (root chaining). Each key carries its signer name in root.json
(``x-airlock-name``), so names are signed too.

``init`` and ``rotate`` make every key in one folder under one passphrase: the shortcut for
labs and tests. At a real site each signer makes their own key and the root is assembled
from public keys and signed one signer at a time (``installer.bundle.ceremony``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

from installer.bundle import sshsig
from installer.errors import AirlockError, IntegrityError, TrustError, UsageError
from installer.fsutil import atomic_write
from installer.untrusted import (
    LIMITS,
    KiB,
    MiB,
    non_negative_int,
    parse_json,
    positive_int,
    read_bytes,
    read_json,
    read_text,
)

NAMESPACE = "airlock-bundle@v1"
NAME_FIELD = "x-airlock-name"
ROLES = (Root.type, "targets", "snapshot", "timestamp")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,40}$")


@dataclass
class Policy:
    root_days: int = 365
    targets_days: int = 90
    snapshot_days: int = 90
    timestamp_days: int = 30

    @classmethod
    def read(cls, d: Path) -> Policy:
        p = d / "policy.json"
        if not p.exists():
            return cls()
        doc = read_json(p, LIMITS["state"], error=TrustError)
        if not isinstance(doc, dict) or not doc.keys() <= set(asdict(cls())):
            raise TrustError(f"{p}: expected the four *_days periods only")
        for k, v in doc.items():  # days; below 1 only makes metadata that has expired
            if type(v) is not int or abs(v) > 36500:
                raise TrustError(f"{p}: {k} must be a whole number of days, got {v!r:.40}")
        return cls(**doc)

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode()

    def write(self, d: Path) -> None:
        atomic_write(d / "policy.json", self.to_bytes())


def expiry(days: int) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


# --------------------------------------------------------------------------- key files

def write_private_key(path: Path, key: Ed25519PrivateKey, passphrase: str) -> None:
    if len(passphrase) < 8:
        raise UsageError("the passphrase must have at least 8 characters")
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.BestAvailableEncryption(passphrase.encode()))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def public_line(pub: Ed25519PublicKey, name: str) -> str:
    """A NAME.pub file's one line: ``ssh-ed25519 AAAA… NAME``."""
    return sshsig.openssh_public(pub) + f" {name}\n"


def write_signer(d: Path, name: str, key: Ed25519PrivateKey, passphrase: str) -> None:
    """NAME.key (encrypted, 0600) and NAME.pub (one OpenSSH line) in the key folder; neither
    is left behind if the other cannot be written."""
    write_private_key(d / f"{name}.key", key, passphrase)
    try:
        atomic_write(d / f"{name}.pub", public_line(key.public_key(), name).encode())
    except BaseException:
        (d / f"{name}.key").unlink(missing_ok=True)
        raise


def read_public_key(path: Path) -> Ed25519PublicKey:
    """A NAME.pub file (one ``ssh-ed25519 AAAA… [comment]`` line), as handed over."""
    text = read_text(path, LIMITS["key"], what=f"{path} (a public key)", error=TrustError)
    if "PRIVATE KEY" in text:
        raise TrustError(f"{path} is a PRIVATE key: hand over only the .pub file",
                         hint="the private key never leaves its signer's machine")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    try:
        if len(lines) != 1:
            raise ValueError("not one line")
        key = serialization.load_ssh_public_key(" ".join(lines[0].split()[:2]).encode())
    except (ValueError, UnsupportedAlgorithm):
        raise TrustError(f"{path}: not an OpenSSH public key (one line "
                         "'ssh-ed25519 AAAA… NAME' expected)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise TrustError(f"{path}: not an Ed25519 key ({lines[0].split()[0]})")
    return key


def load_private_key(path: Path, passphrase: str) -> Ed25519PrivateKey:
    data = read_bytes(path, LIMITS["key"], error=TrustError)
    if path.stat().st_mode & 0o077:
        raise TrustError(f"{path}: the key file is readable by others (mode "
                        f"{path.stat().st_mode & 0o777:o})", hint=f"chmod 600 {path}")
    try:
        key = serialization.load_ssh_private_key(data, passphrase.encode())
    except ValueError as e:
        # an OpenSSH key decrypted with the wrong passphrase fails its check bytes
        if any(w in str(e).lower() for w in ("password", "decrypt", "broken checksum")):
            raise TrustError(f"{path}: wrong passphrase") from None
        raise TrustError(f"{path}: not an OpenSSH private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise TrustError(f"{path}: not an Ed25519 key")
    return key


def sslib_key(pub: Ed25519PublicKey, name: str) -> SSlibKey:
    key = SSlibKey.from_crypto(pub)
    key.unrecognized_fields[NAME_FIELD] = name
    return key


def signer_for(key: Ed25519PrivateKey, name: str) -> CryptoSigner:
    return CryptoSigner(key, sslib_key(key.public_key(), name))


def key_name(key: object) -> str:
    return str(getattr(key, "unrecognized_fields", {}).get(NAME_FIELD, "?"))


def ed25519_public(key: SSlibKey) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(key.keyval["public"]))


# --------------------------------------------------------------------------- roots

# TUF metadata read from outside, by role: bounds far above what airlock writes (a root of
# a few dozen signers is ~10 KiB; targets lists every file of the bundle)
TUF_LIMITS = {"root": 1 * MiB, "timestamp": 64 * KiB, "snapshot": 1 * MiB,
              "targets": LIMITS["tuf"]}


def check_tuf(data: bytes, what: str, *, error: Any = IntegrityError) -> Any:
    """TUF metadata bytes, parsed within the JSON bounds (no duplicate keys: python-tuf
    would keep the last one, and the signature covers its own canonical form), with every
    number python-tuf trusts checked first: it compares them with ``<=`` only, so
    ``"version": true`` would be version 1 and ``1.5`` a version. Returns the parsed doc."""
    doc = parse_json(data, what, error=error)
    signed = doc.get("signed") if isinstance(doc, dict) else None
    if not isinstance(signed, dict) or not isinstance(doc.get("signatures"), list):
        raise error(f"{what}: not TUF metadata (no signed and signatures)")
    positive_int(signed.get("version"), f"{what}: signed.version", error=error)
    for name, meta in _dict(signed.get("meta"), what, "meta", error).items():
        meta = _dict(meta, what, f"meta[{name}]", error)
        positive_int(meta.get("version"), f"{what}: meta[{name}].version", error=error)
        if "length" in meta:
            non_negative_int(meta["length"], f"{what}: meta[{name}].length", error=error)
    for name, target in _dict(signed.get("targets"), what, "targets", error).items():
        target = _dict(target, what, f"targets[{name}]", error)
        non_negative_int(target.get("length"), f"{what}: targets[{name}].length",
                         error=error)
    for name, role in _dict(signed.get("roles"), what, "roles", error).items():
        role = _dict(role, what, f"roles[{name}]", error)
        positive_int(role.get("threshold"), f"{what}: roles[{name}].threshold",
                     error=error, maximum=1000)
    return doc


def _dict(value: Any, what: str, field: str, error: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error(f"{what}: {field} must be an object")
    return value


def load_root(path: Path) -> Metadata[Root]:
    data = read_bytes(path, TUF_LIMITS["root"], error=TrustError)
    try:
        check_tuf(data, str(path), error=TrustError)
        md = Metadata[Root].from_bytes(data)
    except AirlockError as e:
        raise TrustError(f"{path}: not TUF root metadata ({e})") from None
    except Exception as e:
        raise TrustError(f"{path}: not TUF root metadata ({e})") from None
    if md.signed.type != Root.type:
        raise TrustError(f"{path}: not TUF root metadata")
    return md


def signers_of(root: Root) -> dict[str, SSlibKey]:
    """{name: key} for the keys of the targets role."""
    return {key_name(root.keys[kid]): root.keys[kid]  # type: ignore[misc]
            for kid in root.roles["targets"].keyids}


def root_files(d: Path) -> list[Path]:
    """``d/roots/N.root.json``, oldest first (none: an empty list)."""
    return sorted((p for p in (d / "roots").glob("*.root.json")
                   if p.name.split(".")[0].isdigit()), key=lambda p: int(p.name.split(".")[0]))


def root_chain(d: Path) -> list[Path]:
    roots = root_files(d)
    if not roots:
        raise TrustError(f"{d}: no roots/N.root.json; is this a key folder made by "
                        "`airlock keys init`?")
    return roots


def root_bytes(md: Metadata[Root]) -> bytes:
    return md.to_bytes(JSONSerializer(compact=False))


def write_root(d: Path, md: Metadata[Root]) -> None:
    """roots/N.root.json, then root.json (what verifiers and signers read) last."""
    data = root_bytes(md)
    (d / "roots").mkdir(exist_ok=True)
    atomic_write(d / "roots" / f"{md.signed.version}.root.json", data)
    atomic_write(d / "root.json", data)


def new_root(keys: dict[str, Ed25519PublicKey], threshold: int, version: int,
             days: int) -> Root:
    """Root vVERSION: every key listed for all four roles with one threshold."""
    if not 1 <= threshold <= len(keys):
        raise UsageError(f"threshold {threshold} must be between 1 and the number of "
                         f"signers ({len(keys)})")
    seen: dict[bytes, str] = {}
    for name, pub in keys.items():
        raw = sshsig.public_blob(pub)
        if raw in seen:
            raise UsageError(f"{seen[raw]} and {name} have the same key "
                             f"({sshsig.fingerprint(pub)}): each signer needs a key of their own")
        seen[raw] = name
    root = Root(version=version, expires=expiry(days), consistent_snapshot=False)
    for name, pub in keys.items():
        k = sslib_key(pub, name)
        for role in ROLES:
            root.add_key(k, role)
    for role in ROLES:
        root.roles[role].threshold = threshold
    return root


def check_names(names: list[str]) -> None:
    for i, n in enumerate(names):
        if not NAME_RE.match(n):
            raise UsageError(f"signer name {n!r}: use lower-case letters, digits, '.', '_', '-'")
        if n in names[:i]:
            raise UsageError(f"signer name {n!r} is given twice: signer names must be different")


def init(d: Path, signers: int, threshold: int, names: list[str] | None, passphrase: str,
         policy: Policy) -> dict:
    names = names or [f"signer-{i}" for i in range(1, signers + 1)]
    if len(names) != signers:
        raise UsageError(f"--names gives {len(names)} names for {signers} signers")
    check_names(names)
    if not 1 <= threshold <= signers:
        raise UsageError(f"threshold {threshold} must be between 1 and the number of "
                         f"signers ({signers})")
    if d.exists() and any(d.iterdir()):
        raise UsageError(f"{d} is not empty; keys init makes a new key folder")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    privs = {n: Ed25519PrivateKey.generate() for n in names}
    root = new_root({n: k.public_key() for n, k in privs.items()}, threshold, 1,
                     policy.root_days)
    md = Metadata(root)
    for n, k in privs.items():
        md.sign(signer_for(k, n), append=True)
    try:
        for n, k in privs.items():
            write_signer(d, n, k, passphrase)
        policy.write(d)
        write_root(d, md)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    return describe(d)


def describe(d: Path) -> dict:
    md = load_root(d / "root.json")
    root = md.signed
    return {"folder": str(d), "rootVersion": root.version, "expires": root.expires.isoformat(),
            "threshold": root.roles["targets"].threshold,
            "signers": {n: k.keyid for n, k in signers_of(root).items()},
            "policy": asdict(Policy.read(d))}


def rotate(d: Path, passphrase: str, *, replace: list[str], add: list[str], remove: list[str],
           threshold: int | None) -> dict:
    """Next root version: signed by a threshold of the current signers and a threshold of
    the new set. Replaced and removed keys move to ``retired/``."""
    current = load_root(d / "root.json")
    old = current.signed
    old_signers = signers_of(old)
    for n in [*replace, *remove]:
        if n not in old_signers:
            raise UsageError(f"{n} is not a signer of root v{old.version}; signers: "
                             + ", ".join(sorted(old_signers)))
    check_names(add)
    for n in add:
        if n in old_signers:
            raise UsageError(f"{n} is already a signer")
    # every current key that the passphrase opens can sign for the old root
    opened = {}
    for n in old_signers:
        p = d / f"{n}.key"
        if p.exists():
            opened[n] = load_private_key(p, passphrase)
    new_privs = {n: Ed25519PrivateKey.generate() for n in [*replace, *add]}
    keys: dict[str, Ed25519PublicKey] = {n: ed25519_public(k) for n, k in old_signers.items()
                                         if n not in remove}
    keys.update({n: k.public_key() for n, k in new_privs.items()})
    new_threshold = threshold or min(old.roles["targets"].threshold, len(keys))
    root = new_root(keys, new_threshold, old.version + 1, Policy.read(d).root_days)
    md = Metadata(root)
    # every opened current key signs (a replaced key counts for the old root only), and
    # every new key signs (for the new root)
    for n, k in [*opened.items(), *new_privs.items()]:
        md.sign(signer_for(k, n), append=True)
    result = root.get_root_verification_result(old, md.signed_bytes, md.signatures)
    if not result.verified:
        raise TrustError(f"cannot make root v{root.version}: it needs {old.roles['root'].threshold}"
                        f" signatures from the current signers and {new_threshold} from the new "
                        f"set; the keys this passphrase opens gave "
                        f"{len(result.first.signed)} and {len(result.second.signed)}")
    for n in [*replace, *remove]:
        retire(d, n, old.version)
    for n, k in new_privs.items():
        write_signer(d, n, k, passphrase)
    write_root(d, md)
    return describe(d)


def retire(d: Path, name: str, version: int) -> list[tuple[Path, Path]]:
    """Move NAME.key and NAME.pub (a key root vVERSION listed and the next one does not)
    to ``retired/NAME.vVERSION.*``; returns the moves made."""
    moves = []
    for suffix in (".key", ".pub"):
        src = d / f"{name}{suffix}"
        if src.exists():
            (d / "retired").mkdir(exist_ok=True, mode=0o700)
            dst = d / "retired" / f"{name}.v{version}{suffix}"
            os.replace(src, dst)
            moves.append((src, dst))
    return moves


def allowed_signers(d: Path) -> str:
    root = load_root(d / "root.json").signed
    return "".join(f'{n} namespaces="{NAMESPACE}" {sshsig.openssh_public(ed25519_public(k))}\n'
                   for n, k in sorted(signers_of(root).items()))
