"""OpenSSH signatures (PROTOCOL.sshsig) with Ed25519 keys, made and checked with
``cryptography`` so that ``ssh-keygen -Y verify`` accepts them byte for byte.

    signed data = "SSHSIG" || string(namespace) || string("") || string("sha512")
                  || string(SHA-512(message))
    blob        = "SSHSIG" || uint32(1) || string(public key) || string(namespace)
                  || string("") || string("sha512") || string(signature)
"""

from __future__ import annotations

import base64
import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAGIC = b"SSHSIG"
HASH = b"sha512"
KEYTYPE = b"ssh-ed25519"
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"


def _string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise ValueError("truncated signature")
    (n,) = struct.unpack(">I", buf[pos:pos + 4])
    if pos + 4 + n > len(buf):
        raise ValueError("truncated signature")
    return buf[pos + 4:pos + 4 + n], pos + 4 + n


def public_blob(key: Ed25519PublicKey) -> bytes:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _string(KEYTYPE) + _string(raw)


def openssh_public(key: Ed25519PublicKey) -> str:
    """``ssh-ed25519 AAAA…`` as in authorized_keys and allowed_signers."""
    return "ssh-ed25519 " + base64.b64encode(public_blob(key)).decode()


def fingerprint(key: Ed25519PublicKey) -> str:
    """``SHA256:…`` as ``ssh-keygen -l -f NAME.pub`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(public_blob(key)).digest()
                                        ).decode().rstrip("=")


def _signed_data(message: bytes, namespace: str) -> bytes:
    return (MAGIC + _string(namespace.encode()) + _string(b"") + _string(HASH)
            + _string(hashlib.sha512(message).digest()))


def sign(key: Ed25519PrivateKey, message: bytes, namespace: str) -> str:
    sig = key.sign(_signed_data(message, namespace))
    blob = (MAGIC + struct.pack(">I", 1) + _string(public_blob(key.public_key()))
            + _string(namespace.encode()) + _string(b"") + _string(HASH)
            + _string(_string(KEYTYPE) + _string(sig)))
    b64 = base64.b64encode(blob).decode()
    lines = [b64[i:i + 70] for i in range(0, len(b64), 70)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def verify(armored: str, message: bytes, namespace: str, key: Ed25519PublicKey) -> None:
    """Raises ValueError with the reason unless ``armored`` is ``key``'s signature of
    ``message`` in ``namespace``."""
    text = armored.strip()
    if not text.startswith(BEGIN) or not text.endswith(END):
        raise ValueError("not an armored SSH signature")
    try:
        blob = base64.b64decode("".join(text[len(BEGIN):-len(END)].split()), validate=True)
    except ValueError:
        raise ValueError("signature is not valid base64") from None
    if not blob.startswith(MAGIC) or blob[6:10] != struct.pack(">I", 1):
        raise ValueError("not an SSHSIG version 1 signature")
    pub, pos = _read_string(blob, 10)
    ns, pos = _read_string(blob, pos)
    _reserved, pos = _read_string(blob, pos)
    hash_alg, pos = _read_string(blob, pos)
    sigblob, pos = _read_string(blob, pos)
    if pos != len(blob):
        raise ValueError("trailing bytes after the signature")
    if pub != public_blob(key):
        raise ValueError("signed by another key")
    if ns != namespace.encode():
        raise ValueError(f"namespace is {ns.decode(errors='replace')!r}, not {namespace!r}")
    if hash_alg != HASH:
        raise ValueError(f"hash algorithm {hash_alg!r} is not sha512")
    kt, p2 = _read_string(sigblob, 0)
    raw, p2 = _read_string(sigblob, p2)
    if kt != KEYTYPE or p2 != len(sigblob):
        raise ValueError("not an ssh-ed25519 signature")
    try:
        key.verify(raw, _signed_data(message, namespace))
    except InvalidSignature:
        raise ValueError("signature does not match the message") from None
