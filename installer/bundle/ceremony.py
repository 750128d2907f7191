"""The key ceremony: a trust root whose signers' private keys never meet.

1. Each signer makes their own key on their own machine (``new_signer``) and hands over only
   NAME.pub.
2. Someone (no secrets needed) assembles the public keys into a root draft (``propose``):

       DRAFT/root-draft.json   TUF root metadata vN, unsigned at first
       DRAFT/policy.json       expiry periods the finished trust folder gets
       DRAFT/roots/K.root.json the current chain (a rotation only), so each signer sees
                               what changes and the chain can be checked

3. The draft travels from signer to signer; each checks what it holds (``review``) and adds
   one signature with their own key and passphrase (``sign``). A signature that no longer
   matches (the draft was edited after someone signed it) stops every later step.
4. With a threshold of signatures (for a rotation: a threshold of the current root's signers
   AND of the new root's, as verifiers demand), ``finalize`` writes the trust folder
   ``bundle sign`` and ``bundle verify`` use: root.json, roots/N.root.json, policy.json,
   NAME.pub. Each signer can finalize into their own key folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Metadata, Root, RootVerificationResult, VerificationResult

from installer.bundle import keys, sshsig
from installer.bundle.keys import Policy
from installer.errors import TrustError, UsageError
from installer.fsutil import atomic_write, staged_dir

DRAFT_ROOT = "root-draft.json"
Named = Sequence[tuple[str, Path]]  # (signer name, NAME.pub file)


# --------------------------------------------------------------------------- 1. a signer's key

def new_signer(d: Path, name: str, passphrase: str) -> dict[str, Any]:
    """DIR/NAME.key (the signer's own passphrase, 0600) and DIR/NAME.pub, to hand over."""
    keys.check_names([name])
    for p in (d / f"{name}.key", d / f"{name}.pub"):
        if p.exists():
            raise UsageError(f"{p} already exists; a signer's key is made once",
                             hint="choose another folder, or rotate to a new key with "
                             "propose-root --replace")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    keys.write_signer(d, name, private, passphrase)
    pub = private.public_key()
    return {"name": name, "key": str(d / f"{name}.key"), "pub": str(d / f"{name}.pub"),
            "fingerprint": sshsig.fingerprint(pub), "keyid": keys.sslib_key(pub, name).keyid}


# --------------------------------------------------------------------------- the draft

@dataclass
class Draft:
    folder: Path
    md: Metadata[Root]
    chain: list[Metadata[Root]]  # the roots before it, oldest first; [] for root v1
    policy: Policy

    @property
    def root(self) -> Root:
        return self.md.signed

    @property
    def previous(self) -> Root | None:
        return self.chain[-1].signed if self.chain else None

    def result(self) -> RootVerificationResult:
        return self.root.get_root_verification_result(self.previous, self.md.signed_bytes,
                                                      self.md.signatures)

    def digest(self) -> str:
        """What a signer saw: sha256 of the signed part."""
        return hashlib.sha256(self.md.signed_bytes).hexdigest()


def _check_shape(root: Root, where: Path) -> None:
    """The shape ``new_root`` makes: one key set and one threshold for all four roles, every
    key an Ed25519 key with a signer name of its own. Anything else is not shown to a signer
    as if it were."""
    ref = root.roles[Root.type]
    for role in keys.ROLES:
        r = root.roles[role]
        if set(r.keyids) != set(ref.keyids) or r.threshold != ref.threshold:
            raise TrustError(f"{where}: the {role} role lists other keys or another threshold "
                             "than the root role; airlock roots list every signer for all four")
    names = [keys.key_name(root.keys[k]) for k in ref.keyids]
    try:
        keys.check_names(names)
    except UsageError as e:
        raise TrustError(f"{where}: {e}") from None
    if not 1 <= ref.threshold <= len(names):
        raise TrustError(f"{where}: threshold {ref.threshold} for {len(names)} signers")
    for k in ref.keyids:
        try:
            keys.ed25519_public(root.keys[k])  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError):
            raise TrustError(f"{where}: key {k[:16]} is not an Ed25519 key") from None


def _key_of(draft: Draft, keyid: str) -> Any:
    if keyid in draft.root.roles[Root.type].keyids:
        return draft.root.keys[keyid]
    prev = draft.previous
    if prev and keyid in prev.roles[Root.type].keyids:
        return prev.keys[keyid]
    return None


def load_draft(d: Path) -> Draft:
    """The draft, checked: its shape, its chain, and every signature on it."""
    path = d / DRAFT_ROOT
    if not path.is_file():
        raise TrustError(f"{d}: not a root draft (no {DRAFT_ROOT})",
                         hint="`airlock keys propose-root` makes one")
    md = keys.load_root(path)
    _check_shape(md.signed, path)
    chain = [keys.load_root(p) for p in keys.root_files(d)]
    want = list(range(1, md.signed.version))
    if [m.signed.version for m in chain] != want:
        raise TrustError(f"{d}: root v{md.signed.version} needs roots/1..{len(want)}.root.json "
                         "beside it (the chain it follows); found "
                         + (", ".join(f"v{m.signed.version}" for m in chain) or "none"))
    for prev, nxt in pairwise(chain):
        if not nxt.signed.get_root_verification_result(prev.signed, nxt.signed_bytes,
                                                       nxt.signatures).verified:
            raise TrustError(f"{d}/roots/{nxt.signed.version}.root.json is not signed by a "
                             f"threshold of root v{prev.signed.version}'s signers")
    draft = Draft(d, md, chain, Policy.read(d))
    stale = []
    for keyid, sig in md.signatures.items():
        key = _key_of(draft, keyid)
        if key is None:
            stale.append(f"key {keyid[:16]} (listed by neither root)")
            continue
        try:
            key.verify_signature(sig, md.signed_bytes)
        except Exception:
            stale.append(f"{keys.key_name(key)} ({sshsig.fingerprint(keys.ed25519_public(key))})")
    if stale:
        raise TrustError(f"{path}: the draft was changed after it was signed: the signatures "
                         f"of {', '.join(stale)} no longer match it; refusing to use it",
                         hint="get the draft back as it was signed, or propose it again and "
                         "collect every signature anew")
    return draft


def _people(root: Root, signed: set[str]) -> list[dict[str, Any]]:
    return [{"name": n, "fingerprint": sshsig.fingerprint(keys.ed25519_public(k)),
             "keyid": k.keyid, "signed": k.keyid in signed}
            for n, k in keys.signers_of(root).items()]


def _needed(res: VerificationResult) -> dict[str, Any]:
    return {"threshold": res.threshold, "signed": len(res.signed), "missing": res.missing,
            "from": sorted(keys.key_name(k) for k in res.unsigned.values())}


def review(d: Path, draft: Draft | None = None) -> dict[str, Any]:
    """What a signer checks before signing: version, expiry, threshold, each signer's name
    and key fingerprint, what changes from the current root, who has signed."""
    draft = draft or load_draft(d)
    root, prev = draft.root, draft.previous
    signed = set(draft.md.signatures)
    res = draft.result()
    info: dict[str, Any] = {
        "draft": str(d), "rootVersion": root.version, "expires": root.expires.isoformat(),
        "threshold": root.roles[Root.type].threshold, "signers": _people(root, signed),
        "needed": {f"v{root.version}": _needed(res.second)},
        "complete": res.verified, "digest": draft.digest(), "policy": asdict(draft.policy),
        "previous": None}
    if prev:
        old, new = keys.signers_of(prev), keys.signers_of(root)
        info["previous"] = {"rootVersion": prev.version,
                            "threshold": prev.roles[Root.type].threshold,
                            "signers": _people(prev, signed)}
        info["needed"][f"v{prev.version}"] = _needed(res.first)
        info["changes"] = {
            "added": sorted(new.keys() - old.keys()),
            "removed": sorted(old.keys() - new.keys()),
            "replaced": sorted(n for n in old.keys() & new.keys()
                               if old[n].keyid != new[n].keyid),
            "threshold": [prev.roles[Root.type].threshold, root.roles[Root.type].threshold]}
    return info


def shortfall(info: dict[str, Any]) -> str:
    """'1 more from the v1 signers (any of: bob, carol)' for each set still short."""
    parts = [f"{n['missing']} more from the {v} signers (any of: {', '.join(n['from'])})"
             for v, n in info["needed"].items() if n["missing"]]
    return "; ".join(parts)


# --------------------------------------------------------------------------- 2. propose

def _read_pubs(pairs: Named) -> dict[str, Ed25519PublicKey]:
    keys.check_names([n for n, _ in pairs])
    return {n: keys.read_public_key(p) for n, p in pairs}



def propose(out: Path, *, threshold: int | None, policy: Policy | None, signers: Named = (),
            base: Path | None = None, replace: Named = (), add: Named = (),
            remove: Sequence[str] = (), force: bool = False) -> dict[str, Any]:
    """An unsigned root draft in OUT, from public keys only: root v1 from SIGNERS, or the
    next root after BASE's (a trust folder) with signers replaced, added, removed."""
    chain: list[Path] = []
    if base is None:
        if replace or add or remove:
            raise UsageError("--replace, --add and --remove change an existing root: "
                             "give its trust folder with --from")
        if not signers:
            raise UsageError("name each signer: --signer NAME=FILE.pub")
        if threshold is None:
            raise UsageError("a new root needs --threshold")
        pubs = _read_pubs(signers)
        version, policy = 1, policy or Policy()
    else:
        if signers:
            raise UsageError("--signer makes a new root; to change the root in --from use "
                             "--replace, --add and --remove")
        chain = keys.root_chain(base)
        current = keys.load_root(base / "root.json").signed
        if int(chain[-1].name.split(".")[0]) != current.version:
            raise TrustError(f"{base}: root.json is v{current.version} but roots/ ends with "
                             f"{chain[-1].name}")
        old = keys.signers_of(current)
        keys.check_names([*(n for n, _ in replace), *(n for n, _ in add), *remove])
        for n in [*(n for n, _ in replace), *remove]:
            if n not in old:
                raise UsageError(f"{n} is not a signer of root v{current.version}; signers: "
                                 + ", ".join(sorted(old)))
        for n, _ in add:
            if n in old:
                raise UsageError(f"{n} is already a signer of root v{current.version}; "
                                 f"--replace {n}=FILE.pub gives them a new key")
        fresh = _read_pubs([*replace, *add])
        for n, _ in replace:
            if keys.sslib_key(fresh[n], n).keyid == old[n].keyid:
                raise UsageError(f"--replace {n}: that is the key {n} already has")
        pubs = {n: fresh.get(n) or keys.ed25519_public(k)
                for n, k in old.items() if n not in remove}
        pubs.update({n: fresh[n] for n, _ in add})
        if threshold is None:
            threshold = min(current.roles[Root.type].threshold, len(pubs))
        version, policy = current.version + 1, policy or Policy.read(base)
    root = keys.new_root(pubs, threshold, version, policy.root_days)
    with staged_dir(out, force=force) as tmp:
        atomic_write(tmp / DRAFT_ROOT, keys.root_bytes(Metadata(root)))
        policy.write(tmp)
        if chain:
            (tmp / "roots").mkdir()
            for p in chain:
                atomic_write(tmp / "roots" / p.name, p.read_bytes())
    return review(out)


# --------------------------------------------------------------------------- 3. sign

def _signer_name(draft: Draft, pub: Ed25519PublicKey, key_file: Path) -> str:
    key = _key_of(draft, keys.sslib_key(pub, "").keyid)
    if key is None:
        prev = f" or of root v{draft.previous.version}" if draft.previous else ""
        listed = set(keys.signers_of(draft.root))
        listed |= set(keys.signers_of(draft.previous)) if draft.previous else set()
        raise TrustError(f"{key_file}: key {sshsig.fingerprint(pub)} is not a signer of the "
                         f"draft's root v{draft.root.version}{prev}; refusing to sign",
                         hint="the draft lists: " + ", ".join(sorted(listed)))
    return keys.key_name(key)


def _check_follows(draft: Draft, trust_dir: Path) -> None:
    """A signer who already holds a root (root.json in their key folder) signs only a draft
    that follows it."""
    mine = trust_dir / "root.json"
    if not mine.is_file():
        return
    local = keys.load_root(mine)
    v = local.signed.version
    if local.signed_bytes == draft.md.signed_bytes:
        return  # finalised already: signing again changes nothing
    if v >= draft.root.version:
        raise TrustError(f"{mine} holds root v{v}; this draft is another root "
                         f"v{draft.root.version}, which cannot follow it",
                         hint="propose the next root from the current trust folder")
    if draft.chain[v - 1].signed_bytes != local.signed_bytes:
        raise TrustError(f"the draft's roots/{v}.root.json is not the root v{v} in {mine}: "
                         "it does not follow your trust root; refusing to sign")


def _as_signer(d: Path, private: Ed25519PrivateKey, key_file: Path) -> tuple[Draft, str]:
    draft = load_draft(d)
    name = _signer_name(draft, private.public_key(), key_file)
    _check_follows(draft, key_file.parent)
    return draft, name


def preview(d: Path, private: Ed25519PrivateKey, key_file: Path) -> dict[str, Any]:
    """``review`` plus who is about to sign; refuses a key the draft does not list."""
    draft, name = _as_signer(d, private, key_file)
    pub = private.public_key()
    info = review(d, draft)
    info.update(signer=name, fingerprint=sshsig.fingerprint(pub),
                alreadySigned=keys.sslib_key(pub, name).keyid in draft.md.signatures)
    return info


def sign(d: Path, private: Ed25519PrivateKey, key_file: Path,
         seen: str | None = None) -> dict[str, Any]:
    """Add this key's signature (once: signing again changes nothing). ``seen``: the digest
    the signer reviewed; the draft must still be that."""
    draft, name = _as_signer(d, private, key_file)
    if seen and draft.digest() != seen:
        raise TrustError(f"{d}: the draft changed while it was being reviewed; nothing signed")
    signer = keys.signer_for(private, name)
    added = signer.public_key.keyid not in draft.md.signatures
    if added:
        draft.md.sign(signer, append=True)
        atomic_write(d / DRAFT_ROOT, keys.root_bytes(draft.md))
    info = review(d, draft)
    info.update(signer=name, fingerprint=sshsig.fingerprint(private.public_key()), added=added)
    return info


# --------------------------------------------------------------------------- 4. finalize

class _Changes:
    """What finalize wrote or moved, undone if a later step fails (nothing half-written)."""

    def __init__(self) -> None:
        self.undo: list[tuple[Path, bytes | Path | None]] = []

    def before(self, path: Path) -> None:
        self.undo.append((path, path.read_bytes() if path.exists() else None))

    def write(self, path: Path, data: bytes) -> None:
        self.before(path)
        atomic_write(path, data)

    def moved(self, moves: list[tuple[Path, Path]]) -> None:
        self.undo.extend((src, dst) for src, dst in moves)

    def rollback(self) -> None:
        for path, before in reversed(self.undo):
            if isinstance(before, Path):
                before.replace(path)
            elif before is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, before)


def _holds(path: Path, key: SSlibKey | Any) -> bool:
    return bool(keys.sslib_key(keys.read_public_key(path), "").keyid == key.keyid)


def finalize(d: Path, out: Path) -> dict[str, Any]:
    """Write the signed root into the trust folder OUT (new, a signer's key folder, or the
    trust folder the draft was proposed from): root.json, roots/N.root.json, policy.json and
    NAME.pub for each signer; the files of keys the root no longer lists move to retired/."""
    draft = load_draft(d)
    info = review(d, draft)
    root = draft.root
    if not info["complete"]:
        raise TrustError(f"root v{root.version} is not signed by enough signers yet: it needs "
                         + shortfall(info),
                         hint="each of them runs: airlock keys sign-root DRAFT --key NAME.key")
    if root.is_expired():
        raise TrustError(f"root v{root.version} expired on {root.expires.isoformat()}",
                         hint="propose it again")
    if (out / "root.json").is_file():
        held = keys.load_root(out / "root.json")
        v = held.signed.version
        same = v == root.version and held.signed_bytes == draft.md.signed_bytes
        follows = v == root.version - 1 and held.signed_bytes == draft.chain[-1].signed_bytes
        if not (same or follows):
            raise TrustError(f"{out} holds root v{v}, and this draft (root v{root.version}) "
                             "does not follow it",
                             hint="finalize into a new folder, or into the trust folder the "
                             "draft was proposed from")
    for m in [*draft.chain, draft.md]:
        p = out / "roots" / f"{m.signed.version}.root.json"
        if p.is_file() and keys.load_root(p).signed_bytes != m.signed_bytes:
            raise TrustError(f"{p} is another root v{m.signed.version} than the draft's",
                             hint="finalize into another folder")
    new = keys.signers_of(root)
    old = keys.signers_of(draft.previous) if draft.previous else {}
    going = [n for n, k in old.items() if (out / f"{n}.pub").exists()
             and _holds(out / f"{n}.pub", k) and (n not in new or new[n].keyid != k.keyid)]
    for n, k in new.items():
        p = out / f"{n}.pub"
        if p.exists() and n not in going and not _holds(p, k):
            raise TrustError(f"{p} holds another key than root v{root.version} lists for {n} "
                             f"({sshsig.fingerprint(keys.ed25519_public(k))})",
                             hint="finalize into another folder")
    out.mkdir(parents=True, exist_ok=True)
    changes = _Changes()
    try:
        for n in going:
            changes.moved(keys.retire(out, n, root.version - 1))
        for n, k in new.items():
            if not (out / f"{n}.pub").exists():
                changes.write(out / f"{n}.pub", keys.public_line(keys.ed25519_public(k), n)
                              .encode())
        changes.write(out / "policy.json", draft.policy.to_bytes())
        (out / "roots").mkdir(exist_ok=True)
        for m in draft.chain:
            if not (out / "roots" / f"{m.signed.version}.root.json").exists():
                changes.write(out / "roots" / f"{m.signed.version}.root.json",
                              keys.root_bytes(m))
        changes.before(out / "roots" / f"{root.version}.root.json")
        changes.before(out / "root.json")
        keys.write_root(out, draft.md)
    except BaseException:
        changes.rollback()
        raise
    info.update(folder=str(out), retired=going)
    return info
