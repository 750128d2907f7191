"""Verifying a signed bundle against a pinned root, offline, with python-tuf's ngclient.

The ``Updater`` reads the bundle's ``tuf/`` folder through a fetcher that never touches a
network; it enforces signature thresholds, root chaining, expiry (freeze) and version
rollback against the trust state kept per bundle name. Then SHA256SUMS must list exactly
the signed targets, and every file must hash to its line. The trust state is updated only
when everything passed: checks run on a private copy that replaces it at the end.

Every file this reads is from outside and read once, bounded, only if it is a regular file
(``installer.untrusted``): each TUF metadata file (within ``keys.TUF_LIMITS`` for its role,
its numbers checked before python-tuf sees them), the ``.sig`` files, the trust state's
files (copied into the private copy that way, never linked or copied blindly). SHA256SUMS
is the very bytes ``verify`` checked, not a second read.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, Targets, Timestamp
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

from installer.bundle import keys, sshsig
from installer.bundle.keys import TUF_LIMITS, check_tuf
from installer.bundle.meta import SUMS, TUF_DIR
from installer.bundle.sign import expected_targets
from installer.bundle.verify import Report, verify
from installer.errors import AirlockError, TrustError
from installer.fsutil import atomic_write
from installer.untrusted import LIMITS, read_bytes, read_text

BASE_URL = "https://bundle.airlock.invalid/tuf/"
META_NAME = re.compile(r"^(\d{1,6}\.root|timestamp|snapshot|targets)\.json$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# python-tuf's own caps on what it accepts per role, set to ours (its default 5 MB for
# targets is too small for a large mirror; the fetcher enforces ours either way)
CONFIG = UpdaterConfig(max_root_rotations=256, root_max_length=TUF_LIMITS["root"],
                       timestamp_max_length=TUF_LIMITS["timestamp"],
                       snapshot_max_length=TUF_LIMITS["snapshot"],
                       targets_max_length=TUF_LIMITS["targets"])
STATE_FILES = ("timestamp.json", "snapshot.json", "targets.json")
STATE_ROOT = re.compile(r"^\d{1,6}\.root\.json$")
MAX_STATE_ROOTS = 1024


def _role(name: str) -> str:
    return name[:-len(".json")].rsplit(".", 1)[-1]


def default_state_dir() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("airlock")) / "trust"


class Refused(tuf_errors.DownloadError):
    """A TUF metadata file of the bundle that airlock will not read or pass on (a link, a
    FIFO, a device, past its bound, malformed JSON, a number that is not one)."""

    def __init__(self, file: str, message: str):
        super().__init__(message)
        self.file = file


class BundleFetcher(FetcherInterface):
    """Serves the bundle's tuf/ folder to the Updater; anything else is 'not found'. Each
    file is read once, only if regular, within its role's bound, and checked (JSON bounds,
    numbers) before python-tuf parses it."""

    def __init__(self, tuf_dir: Path):
        self.tuf_dir = tuf_dir

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url[len(BASE_URL):] if url.startswith(BASE_URL) else ""
        if not META_NAME.match(name) or not os.path.lexists(self.tuf_dir / name):
            raise tuf_errors.DownloadHTTPError(f"{name or url} is not in the bundle", 404)
        what = f"{TUF_DIR}/{name}"
        try:
            data = read_bytes(self.tuf_dir / name, TUF_LIMITS[_role(name)], what=what)
            check_tuf(data, what)
        except AirlockError as e:
            raise Refused(what, str(e)) from None
        return iter([data])


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
    if isinstance(e, Refused):
        return str(e)
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
    if tuf.is_dir() and not tuf.is_symlink():
        for i, p in enumerate(sorted(tuf.iterdir())):
            if i >= MAX_STATE_ROOTS:
                report.add(f"{TUF_DIR}/", f"more than {MAX_STATE_ROOTS} files")
                break
            if not META_NAME.match(p.name) or p.is_symlink() or not p.is_file():
                report.add(f"{TUF_DIR}/{p.name}", "unexpected file in the TUF metadata folder")
    name = str(report.integrity.meta.get("name") or report.integrity.name or "")
    if not NAME_RE.match(name):
        report.add("bundle.json", f"bundle name {name!r} is not valid" if name else
                   "no readable bundle name: the trust state to check against is unknown")
        return report
    state_base = state_base or default_state_dir()
    state = state_base / name
    report.state_dir = state
    tmp = state_base / f".{name}.airlock-tmp-{os.getpid()}"
    try:
        state_base.mkdir(parents=True, exist_ok=True, mode=0o700)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(mode=0o700)
    except OSError as e:
        raise TrustError(f"cannot use the trust state folder {state_base}: {e.strerror}",
                         hint="--state DIR chooses another") from None
    try:
        _copy_state(state, tmp)
        _tuf_checks(bundle, tmp, pinned.to_bytes(), report, omitted or {})
        if report.ok:
            _swap_in(tmp, state)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _copy_state(state: Path, tmp: Path) -> None:
    """The trust state's files into TMP, each read once, bounded, only if regular, and
    checked like the bundle's; a state that is not what airlock wrote is refused (a bad
    state must not quietly become an empty one: that would undo rollback protection).
    ``root.json`` there is python-tuf's link to the newest of ``root_history/``; the
    Updater makes it again."""
    try:
        st = os.lstat(state)
    except FileNotFoundError:
        return
    except OSError as e:
        raise TrustError(f"cannot use the trust state {state}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise TrustError(f"the trust state {state} is not a folder",
                         hint="--state DIR chooses another")
    for name in STATE_FILES:
        if os.path.lexists(state / name):
            _copy_state_file(state / name, tmp / name, _role(name))
    history = state / "root_history"
    if not os.path.lexists(history):
        return
    if not stat.S_ISDIR(os.lstat(history).st_mode):
        raise TrustError(f"the trust state's {history} is not a folder")
    (tmp / "root_history").mkdir(mode=0o700)
    with os.scandir(history) as it:
        for i, e in enumerate(it):
            if i >= MAX_STATE_ROOTS:
                raise TrustError(f"{history}: more than {MAX_STATE_ROOTS} root versions")
            if STATE_ROOT.match(e.name):
                _copy_state_file(Path(e.path), tmp / "root_history" / e.name, "root")


def _copy_state_file(src: Path, dest: Path, role: str) -> None:
    data = read_bytes(src, TUF_LIMITS[role], error=TrustError)
    check_tuf(data, str(src), error=TrustError)
    atomic_write(dest, data)


def _tuf_checks(bundle: Path, state: Path, pinned: bytes, report: TrustReport,
                omitted: dict[str, int]) -> None:
    tuf = bundle / TUF_DIR
    try:
        updater = Updater(str(state), BASE_URL, fetcher=BundleFetcher(tuf), config=CONFIG,
                          bootstrap=pinned)
        updater.refresh()
        root = Metadata[Root].from_file(str(state / "root.json"))
        targets = Metadata[Targets].from_file(str(state / "targets.json"))
        timestamp = Metadata[Timestamp].from_file(str(state / "timestamp.json"))
    except (tuf_errors.RepositoryError, tuf_errors.DownloadError, ValueError) as e:
        # still tell what the reviewers' stock-tool path would say, against the pinned root
        pinned_root = Metadata[Root].from_bytes(pinned).signed
        report.add(e.file if isinstance(e, Refused) else f"{TUF_DIR}/",
                   _reason(e, pinned_root.roles["targets"].threshold))
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
    meta_version = report.integrity.meta.get("version")  # an int from 1: verify checked it
    if meta_version is not None and targets.signed.version != meta_version:
        report.add("bundle.json", f"version {meta_version} but the trusted targets are "
                   f"version {targets.signed.version}: a different bundle with that version "
                   "was accepted before, or the metadata was mixed from two bundles")

    # SHA256SUMS must be exactly the signed target set
    if report.integrity.ok:
        listed = expected_targets(report.integrity, omitted)
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
    sums = report.integrity.sums  # the bytes verify checked (empty if it could not)
    for p in sorted(bundle.glob(f"{SUMS}.*.sig")):
        who = p.name[len(SUMS) + 1:-len(".sig")]
        if who not in signers:
            report.add(p.name, f"signature by {who!r}, whom root v{r.version} does not list")
            continue
        try:
            text = read_text(p, LIMITS["signature"], what=p.name)
        except AirlockError as e:
            report.sshsig[who] = f"invalid: {e}"
            report.add(p.name, str(e))
            continue
        try:
            sshsig.verify(text, sums, keys.NAMESPACE, keys.ed25519_public(signers[who]))
            report.sshsig[who] = "valid"
        except (ValueError, UnicodeDecodeError) as e:
            report.sshsig[who] = f"invalid: {e}"
            report.add(p.name, f"SSH signature invalid: {e}")
    valid = sum(1 for v in report.sshsig.values() if v == "valid")
    if valid < threshold:
        report.add(f"{SUMS}.*.sig", f"{valid} valid SSH signature(s) over SHA256SUMS, "
                   f"{threshold} needed for reviewers' stock-tool check")


