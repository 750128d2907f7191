"""Signing a built bundle: TUF metadata (targets = exactly the lines of SHA256SUMS) and one
SSHSIG signature per signer over SHA256SUMS, for reviewers with stock tools.

Signers sign one after another, each on their own machine with their own key: the first
creates ``tuf/targets.json``, ``snapshot.json`` and ``timestamp.json`` (versions = the
bundle's version, expiries from the key folder's policy); later signers only add their
signatures, so earlier ones stay valid. The whole root chain travels in ``tuf/N.root.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from installer.bundle import keys, sshsig
from installer.bundle.meta import SUMS, TUF_DIR
from installer.bundle.verify import Report, verify
from installer.errors import AirlockError, IntegrityError, TrustError
from installer.fsutil import atomic_write
from installer.untrusted import read_bytes

SERIALIZER = JSONSerializer(compact=False)


def expected_targets(report: Report, sizes: dict[str, int] | None = None
                     ) -> dict[str, TargetFile]:
    """The TUF target set a verified bundle's SHA256SUMS stands for: each listed file, its
    length (as verify hashed it) and sha256. ``sizes``: lengths of files a delta bundle
    leaves to its base."""
    sizes = sizes or {}
    return {path: TargetFile(sizes[path] if path in sizes else report.hashed[path][1],
                             {"sha256": digest[7:]}, path)
            for path, digest in report.listed.items()}


def same_targets(a: dict[str, TargetFile], b: dict[str, TargetFile]) -> bool:
    return {p: (t.length, t.hashes) for p, t in a.items()} == \
        {p: (t.length, t.hashes) for p, t in b.items()}


def sign_bundle(bundle: Path, key_file: Path, passphrase: str,
                trust_dir: Path | None = None, progress: Any = None) -> dict[str, Any]:
    trust_dir = trust_dir or key_file.parent
    chain = keys.root_chain(trust_dir)
    root = keys.load_root(trust_dir / "root.json").signed
    private = keys.load_private_key(key_file, passphrase)
    keyid = keys.sslib_key(private.public_key(), "").keyid
    by_id = {k.keyid: n for n, k in keys.signers_of(root).items()}
    if keyid not in by_id:
        raise TrustError(f"{key_file} is not a signer of root v{root.version} in {trust_dir}",
                         hint="signers: " + ", ".join(sorted(by_id.values())))
    name = by_id[keyid]

    report = verify(bundle, progress)
    if not report.ok:
        raise IntegrityError(f"{bundle}: refusing to sign a bundle that does not verify",
                             report.problems)
    version = report.meta["version"]  # an int from 1: verify checked bundle.json
    policy = keys.Policy.read(trust_dir)
    want = expected_targets(report)

    tuf = bundle / TUF_DIR
    if os.path.lexists(tuf / "targets.json"):
        try:
            targets = Metadata[Targets].from_bytes(_tuf_bytes(tuf, "targets"))
            snapshot = Metadata[Snapshot].from_bytes(_tuf_bytes(tuf, "snapshot"))
            timestamp = Metadata[Timestamp].from_bytes(_tuf_bytes(tuf, "timestamp"))
        except AirlockError:
            raise
        except Exception as e:
            raise IntegrityError(f"{tuf}: existing TUF metadata is damaged ({e})") from None
        if not same_targets(targets.signed.targets, want) or targets.signed.version != version:
            raise IntegrityError(f"{bundle}: SHA256SUMS or bundle.json changed after the first "
                                 "signature; earlier signatures would not cover it",
                                 hint="rebuild the bundle and collect every signature again")
    else:
        targets = Metadata(Targets(version=version, expires=keys.expiry(policy.targets_days),
                                   targets=want))
        snapshot = Metadata(Snapshot(version=version,
                                     expires=keys.expiry(policy.snapshot_days),
                                     meta={"targets.json": MetaFile(version=version)}))
        timestamp = Metadata(Timestamp(version=version,
                                       expires=keys.expiry(policy.timestamp_days),
                                       snapshot_meta=MetaFile(version=version)))
    signer = keys.signer_for(private, name)
    for md in (targets, snapshot, timestamp):
        md.sign(signer, append=True)

    tuf.mkdir(exist_ok=True)
    for p in chain:
        if not os.path.lexists(tuf / p.name):
            atomic_write(tuf / p.name, read_bytes(p, keys.TUF_LIMITS["root"], error=TrustError))
    for role, md in (("targets", targets), ("snapshot", snapshot), ("timestamp", timestamp)):
        atomic_write(tuf / f"{role}.json", md.to_bytes(SERIALIZER))
    atomic_write(bundle / f"{SUMS}.{name}.sig",
                 sshsig.sign(private, report.sums, keys.NAMESPACE).encode())
    result = root.get_verification_result("targets", targets.signed_bytes, targets.signatures)
    return {"signer": name, "keyid": keyid, "bundle": str(bundle), "version": version,
            "signed": sorted(keys.key_name(k) for k in result.signed.values()),
            "threshold": result.threshold, "complete": result.verified,
            "expires": timestamp.signed.expires.isoformat()}


def _tuf_bytes(tuf: Path, role: str) -> bytes:
    """A role's metadata already in the bundle (earlier signers'), read once, bounded, its
    numbers checked: python-tuf would take ``"version": true`` for 1."""
    what = f"{TUF_DIR}/{role}.json"
    data = read_bytes(tuf / f"{role}.json", keys.TUF_LIMITS[role], what=what)
    keys.check_tuf(data, what)
    return data
