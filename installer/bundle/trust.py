"""Verifying a signed bundle against a pinned root, offline, with python-tuf's ngclient.

The ``Updater`` reads the bundle's ``tuf/`` folder through a fetcher that never touches a
network; it enforces signature thresholds, root chaining, expiry (freeze) and version
rollback against the trust state kept per bundle name. Then SHA256SUMS must list exactly
the signed targets, and every file must hash to its line. The trust state is updated only
when everything passed: checks run on a private copy that replaces it at the end.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, Targets, Timestamp
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from installer.bundle import keys, sshsig
from installer.bundle.meta import SUMS, TUF_DIR
from installer.bundle.sign import expected_targets
from installer.bundle.verify import Report, verify
from installer.errors import TrustError

BASE_URL = "https://bundle.airlock.invalid/tuf/"
META_NAME = re.compile(r"^(\d{1,6}\.root|timestamp|snapshot|targets)\.json$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def default_state_dir() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("airlock")) / "trust"


class BundleFetcher(FetcherInterface):
    """Serves the bundle's tuf/ folder to the Updater; anything else is 'not found'."""

    def __init__(self, tuf_dir: Path):
        self.tuf_dir = tuf_dir

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url[len(BASE_URL):] if url.startswith(BASE_URL) else ""
        path = self.tuf_dir / name
        if not META_NAME.match(name) or path.is_symlink() or not path.is_file():
            raise tuf_errors.DownloadHTTPError(f"{name or url} is not in the bundle", 404)
        return self._chunks(path)

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(64 * 1024):
                yield chunk


@dataclass
class TrustReport:
    integrity: Report
    problems: list[dict[str, str]] = field(default_factory=list)
    signed_by: list[str] = field(default_factory=list)
    threshold: int | None = None
    sshsig: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    expires: dict[str, str] = field(default_factory=dict)
    state_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.integrity.ok and not self.problems

    def add(self, file: str, problem: str) -> None:
        self.problems.append({"file": file, "problem": problem})

    def to_json(self) -> dict[str, Any]:
        doc = self.integrity.to_json()
        doc.update(ok=self.ok, signaturesChecked=True, problems=self.integrity.problems
                   + self.problems, signers=self.signed_by, threshold=self.threshold,
                   sshsig=self.sshsig, versions=self.versions, expires=self.expires,
                   stateDir=str(self.state_dir) if self.state_dir else None)
        return doc


def _reason(e: Exception, threshold: int) -> str:
    if isinstance(e, tuf_errors.DownloadHTTPError) and "timestamp.json" in str(e):
        return (f"unsigned: the bundle carries no TUF metadata (tuf/timestamp.json); found 0 "
                f"valid signatures, {threshold} needed")
    if isinstance(e, tuf_errors.UnsignedMetadataError):
        m = re.search(r"(\w+) was signed by (\d+)/(\d+) keys", str(e))
        if m:
            return (f"not enough valid signatures on {m.group(1)}: found {m.group(2)}, "
                    f"{m.group(3)} needed")
        return f"not enough valid signatures: {e}"
    if isinstance(e, tuf_errors.BadVersionNumberError):
        return (f"rollback refused: {e} (an older bundle than one already accepted, or "
                "metadata mixed from two bundles)")
    if isinstance(e, DeserializationError):
        cause = f" ({e.__cause__})" if e.__cause__ else ""
        return f"malformed TUF metadata{cause}"
    if isinstance(e, tuf_errors.ExpiredMetadataError):
        return f"expired (freeze attack or a stale bundle): {e}"
    return f"TUF verification failed: {type(e).__name__}: {e}"


def _swap_in(tmp: Path, state: Path) -> None:
    if state.exists():
        old = state.with_name(f".{state.name}.airlock-old-{os.getpid()}")
        os.rename(state, old)
        os.rename(tmp, state)
        shutil.rmtree(old)
    else:
        os.rename(tmp, state)


def verify_signed(bundle: Path, trust_root: Path, state_base: Path | None = None,
                  progress: Any = None,
                  hashed: dict[str, tuple[str, int]] | None = None,
                  omitted: dict[str, int] | None = None) -> TrustReport:
    """``hashed`` as in ``verify``: digests the caller computed while writing the files.
    ``omitted``: a delta's blobs left to its base (path -> length)."""
    pinned = keys.load_root(trust_root)  # a clear error if it is not a root
    report = TrustReport(verify(bundle, progress, hashed, set(omitted or {})))
    tuf = bundle / TUF_DIR
    if tuf.is_dir():
        for p in sorted(tuf.iterdir()):
            if not META_NAME.match(p.name) or p.is_symlink() or not p.is_file():
                report.add(f"{TUF_DIR}/{p.name}", "unexpected file in the TUF metadata folder")
    name = str(report.integrity.meta.get("name") or _name_from(bundle))
    if not NAME_RE.match(name):
        report.add("bundle.json", f"bundle name {name!r} is not valid")
        return report
    state_base = state_base or default_state_dir()
    state = state_base / name
    report.state_dir = state
    tmp = state_base / f".{name}.airlock-tmp-{os.getpid()}"
    try:
        state_base.mkdir(parents=True, exist_ok=True, mode=0o700)
        if tmp.exists():
            shutil.rmtree(tmp)
        if state.exists():
            shutil.copytree(state, tmp, symlinks=True)
        else:
            tmp.mkdir(mode=0o700)
    except OSError as e:
        raise TrustError(f"cannot use the trust state folder {state_base}: {e.strerror}",
                         hint="--state DIR chooses another") from None
    try:
        _tuf_checks(bundle, tmp, pinned.to_bytes(), report, omitted or {})
        if report.ok:
            _swap_in(tmp, state)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _name_from(bundle: Path) -> str:
    import json

    try:
        return str(json.loads((bundle / "bundle.json").read_bytes()).get("name", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _tuf_checks(bundle: Path, state: Path, pinned: bytes, report: TrustReport,
                omitted: dict[str, int]) -> None:
    tuf = bundle / TUF_DIR
    try:
        updater = Updater(str(state), BASE_URL, fetcher=BundleFetcher(tuf), bootstrap=pinned)
        updater.refresh()
        root = Metadata[Root].from_file(str(state / "root.json"))
        targets = Metadata[Targets].from_file(str(state / "targets.json"))
        timestamp = Metadata[Timestamp].from_file(str(state / "timestamp.json"))
    except (tuf_errors.RepositoryError, tuf_errors.DownloadError, ValueError) as e:
        # still tell what the reviewers' stock-tool path would say, against the pinned root
        pinned_root = Metadata[Root].from_bytes(pinned).signed
        report.add(f"{TUF_DIR}/", _reason(e, pinned_root.roles["targets"].threshold))
        _check_sshsig(bundle, pinned_root, pinned_root.roles["targets"].threshold, report)
        return
    r = root.signed
    result = r.get_verification_result("targets", targets.signed_bytes, targets.signatures)
    report.signed_by = sorted(keys.key_name(k) for k in result.signed.values())
    report.threshold = result.threshold
    report.versions = {"root": r.version, "targets": targets.signed.version,
                       "timestamp": timestamp.signed.version}
    report.expires = {"root": r.expires.isoformat(), "targets": targets.signed.expires.isoformat(),
                      "timestamp": timestamp.signed.expires.isoformat()}
    meta_version = report.integrity.meta.get("version")
    if meta_version is not None and targets.signed.version != meta_version:
        report.add("bundle.json", f"version {meta_version} but the trusted targets are "
                   f"version {targets.signed.version}: a different bundle with that version "
                   "was accepted before, or the metadata was mixed from two bundles")

    # SHA256SUMS must be exactly the signed target set
    if (bundle / SUMS).is_file() and report.integrity.ok:
        listed = expected_targets(bundle, omitted)
        signed = targets.signed.targets
        for path in sorted(listed.keys() - signed.keys()):
            report.add(path, "listed in SHA256SUMS but not in the signed targets")
        for path in sorted(signed.keys() - listed.keys()):
            report.add(path, "in the signed targets but not in SHA256SUMS")
        for path in sorted(listed.keys() & signed.keys()):
            a, b = listed[path], signed[path]
            if (a.length, a.hashes.get("sha256")) != (b.length, b.hashes.get("sha256")):
                report.add(path, "differs from the signed targets (length or sha256)")

    _check_sshsig(bundle, r, result.threshold, report)


def _check_sshsig(bundle: Path, r: Root, threshold: int, report: TrustReport) -> None:
    """The reviewers' path: one SSHSIG per signer over SHA256SUMS."""
    signers = keys.signers_of(r)
    sums = (bundle / SUMS).read_bytes() if (bundle / SUMS).is_file() else b""
    for p in sorted(bundle.glob(f"{SUMS}.*.sig")):
        who = p.name[len(SUMS) + 1:-len(".sig")]
        if who not in signers:
            report.add(p.name, f"signature by {who!r}, whom root v{r.version} does not list")
            continue
        try:
            sshsig.verify(p.read_text(), sums, keys.NAMESPACE, keys.ed25519_public(signers[who]))
            report.sshsig[who] = "valid"
        except (ValueError, UnicodeDecodeError) as e:
            report.sshsig[who] = f"invalid: {e}"
            report.add(p.name, f"SSH signature invalid: {e}")
    valid = sum(1 for v in report.sshsig.values() if v == "valid")
    if valid < threshold:
        report.add(f"{SUMS}.*.sig", f"{valid} valid SSH signature(s) over SHA256SUMS, "
                   f"{threshold} needed for reviewers' stock-tool check")


