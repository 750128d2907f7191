"""The bundle on disk: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256``).

Blobs are written to a private temporary file while being hashed, then renamed to their
digest; a blob already present is not written twice (dedupe by content). Every JSON
document this module writes is canonical (sorted keys, no spaces) so that the same inputs
give byte-identical output.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from installer.bundle import transfer
from installer.bundle.digest import Advance, copy_hashing, hex_of, sha256_bytes, sha256_file
from installer.errors import SourceError
from installer.untrusted import SHA256, non_negative_int

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

INDEX_TYPES = {MT_OCI_INDEX, MT_DOCKER_LIST}
MANIFEST_TYPES = {MT_OCI_MANIFEST, MT_DOCKER_MANIFEST}

A_TITLE = "org.opencontainers.image.title"
A_REF = "org.opencontainers.image.ref.name"
A_CREATED = "org.opencontainers.image.created"
A_VERSION = "org.opencontainers.image.version"
A_KIND = "dev.airlock.kind"
A_NAME = "dev.airlock.name"
A_SOURCE_DIGEST = "dev.airlock.source.digest"


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pretty_json(obj: Any) -> bytes:
    """Human-readable but still deterministic, for files people open (bundle.json)."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                             "size": self.size}
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        if self.platform:
            d["platform"] = self.platform
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @classmethod
    def from_json(cls, d: Any, what: str = "a descriptor") -> Descriptor:
        """A descriptor read from outside (a registry's or an image archive's manifest):
        each field checked for type, the size a whole number (a string or `true` is not)."""
        if not isinstance(d, dict):
            raise SourceError(f"{what} is not an object")
        size = non_negative_int(d.get("size"), f"{what}: size", error=SourceError)
        digest, media_type = d.get("digest"), d.get("mediaType")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise SourceError(f"{what}: digest {str(digest)[:80]!r} is not sha256: and 64 "
                              "lower-case hex digits")
        annotations, platform = d.get("annotations", {}), d.get("platform")
        if not isinstance(media_type, str) or not isinstance(annotations, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()) \
                or not (platform is None or isinstance(platform, dict)):
            raise SourceError(f"{what}: mediaType, annotations or platform has the wrong type")
        artifact_type = d.get("artifactType")
        return cls(media_type, digest, size, dict(annotations),
                   artifact_type if isinstance(artifact_type, str) else None, platform)


class Layout:
    """Writes blobs into ``root/blobs/sha256``. Safe to call from many threads.

    ``close()`` (a build failing or interrupted, before its staging folder is removed)
    makes every later write refuse, under the lock that creating and committing a file
    take: a worker that has not noticed the cancel yet cannot add a file to a folder being
    removed (a file it is still writing is unlinked with the folder)."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp = root / ".incoming"
        self.tmp.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """No file is created or committed here from now on."""
        with self._lock:
            self._closed = True

    def _check(self) -> None:
        # only this store's own closing counts: the process-wide cancel flag stays set
        # after a failed build (for its abandoned workers) and must not refuse the writes
        # of a later, unrelated store in the same process
        if self._closed:
            raise transfer.Cancelled

    def _mkstemp(self) -> tuple[int, str]:
        with self._lock:
            self._check()
            return tempfile.mkstemp(dir=self.tmp)

    def blob_path(self, digest: str) -> Path:
        return self.blobs / hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        digest = sha256_bytes(data)
        if not self.has(digest):
            fd, tmp = self._mkstemp()
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self._commit(Path(tmp), digest)
        return digest, len(data)

    def put_stream(self, src: BinaryIO, expected: str | None = None,
                   advance: Advance | None = None, limit: int | None = None,
                   sri: str | None = None) -> tuple[str, int]:
        """Copy a stream in while hashing it. A digest other than ``expected`` (sha256) or
        an SRI value (``sha512-BASE64``) it does not match raises ``DigestMismatch`` and
        nothing is stored."""
        sri_hash = None
        if sri:
            algo, _, b64 = sri.partition("-")
            sri_hash = hashlib.new(algo)
        fd, tmp = self._mkstemp()
        try:
            with os.fdopen(fd, "wb") as f:
                digest, size = copy_hashing(src, f, advance, limit,
                                            [sri_hash] if sri_hash else None, self._check)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # gone already when the folder was removed
            raise
        if expected and digest != expected:
            os.unlink(tmp)
            raise DigestMismatch(expected, digest)
        if sri_hash is not None and sri_hash.digest() != base64.b64decode(b64):
            os.unlink(tmp)
            raise DigestMismatch(sri or "", f"{algo}-"
                                 + base64.b64encode(sri_hash.digest()).decode())
        self._commit(Path(tmp), digest)
        return digest, size

    def put_file(self, path: Path, advance: Advance | None = None) -> tuple[str, int]:
        """A local file in: copied by the kernel (copy_file_range: shared extents where the
        file system can, an in-kernel copy elsewhere; no byte through Python), then the
        copy hashed, so the digest is of the bytes stored. Where the kernel cannot copy
        between the two, one pass: read, hash, write."""
        fd, tmp = self._mkstemp()
        try:
            with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                copied = _kernel_copy(src.fileno(), dst.fileno(), self._check)
                if not copied:
                    digest, size = copy_hashing(src, dst, advance, check=self._check)
            if copied:
                digest, size = sha256_file(Path(tmp), advance)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # gone already when the folder was removed
            raise
        self._commit(Path(tmp), digest)
        return digest, size

    def put_json(self, obj: Any) -> tuple[str, int]:
        return self.put_bytes(canonical_json(obj))

    def _commit(self, tmp: Path, digest: str) -> None:
        with self._lock:
            try:
                self._check()
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            os.chmod(tmp, 0o644)
            final = self.blob_path(digest)
            if final.exists():
                tmp.unlink()  # identical bytes are stored once
            else:
                os.replace(tmp, final)

    def finish(self, manifests: list[Descriptor]) -> None:
        """Write ``oci-layout`` and ``index.json`` and drop the private incoming folder."""
        (self.root / "oci-layout").write_bytes(canonical_json(OCI_LAYOUT))
        index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                 "manifests": [m.to_json() for m in manifests]}
        (self.root / "index.json").write_bytes(canonical_json(index))
        for leftover in self.tmp.iterdir():
            leftover.unlink()
        self.tmp.rmdir()


# errors of copy_file_range's first call that mean "not between these two": copy by hand
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}


def _kernel_copy(src: int, dst: int, check: Any) -> bool:
    """SRC's bytes to DST by copy_file_range, CHECK before each step (a cancelled build
    stops); False, with nothing written, where the kernel cannot copy between them."""
    step = 64 << 20
    first = True
    while True:
        check()
        try:
            n = os.copy_file_range(src, dst, step)
        except OSError as e:
            if first and e.errno in _NO_KERNEL_COPY:
                return False
            raise
        if n == 0:
            return True
        first = False


class DigestMismatch(Exception):
    def __init__(self, expected: str, actual: str):
        super().__init__(f"expected {expected}, got {actual}")
        self.expected, self.actual = expected, actual
