"""``airlock bundle import``: a verified bundle onto the repo host, then served.

1. Verify on the controller (signatures against the pinned root, every file, rollback
   refused by the trust state): a bad bundle is refused before a byte leaves.
2. Export the served tree (apt signed with the site key, pip, npm, models, VSIX, files) as
   relative links into the bundle, so the host stores every byte once.
3. Copy to ``ROOT/incoming/NAME-VERSION`` over SFTP: files already there and whole are
   kept, a partial file is continued where it stopped, every file is hashed on arrival,
   and only a complete copy is renamed to ``ROOT/releases/NAME-VERSION``.
4. Run ``playbooks/import.yml``: the repo host installs its packages from the bundle,
   serves it, pushes its images; the served release switches only at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.bundle import mirror
from installer.bundle.delta import read_delta
from installer.bundle.meta import DELTA
from installer.bundle.trust import verify_signed
from installer.console import NullProgress
from installer.deploy import hostkeys, transfer
from installer.deploy import inventory as inv_mod
from installer.deploy.audit import audited
from installer.deploy.runner import run_playbook
from installer.deploy.ssh import Remote
from installer.deploy.transfer import Send
from installer.errors import HostError, IntegrityError, UsageError
from installer.fsutil import atomic_write
from installer.site import MARKER, InventoryLock, ensure_go_sumdb, ensure_site
from installer.untrusted import LIMITS, open_stream, read_json, sha256_digest

RESERVE = 64 << 20  # free space left on the host after the copy
CHUNK = 1 << 20
# What _Sync.each runs on the host, in the incoming folder, on NUL-ended names from stdin:
# whole files take their names (from NAME.part), files are removed, links are made
# (target, path).
_NAMES = ("import os, sys; os.chdir(sys.argv[1]); "
          "n = sys.stdin.buffer.read().split(b'\\0')[:-1]; ")
RENAME = _NAMES + "[os.replace(f + b'.part', f) for f in n]"
REMOVE = _NAMES + "[os.unlink(f) for f in n if os.path.lexists(f)]"
LINK = _NAMES + ("[(os.path.lexists(f) and os.unlink(f), os.symlink(t, f)) "
                 "for t, f in zip(n[::2], n[1::2])]")
# what the offline_repo role's bootstrap installs from the bundle itself (its default of
# offline_repo_bootstrap_packages; an inventory may set another list)
BOOTSTRAP = ("nginx", "docker-registry", "skopeo", "python3-cryptography")


@dataclass(frozen=True)
class Item:
    rel: str  # path inside the release folder: bundle/… or mirror/…
    size: int = 0
    sha256: str = ""
    link: str | None = None
    from_base: bool = False  # linked from the base release (a delta's) or the served one


def _sha256(path: Path) -> str:
    """A file's sha256 (hex), read in chunks, only if it is a regular file."""
    h = hashlib.sha256()
    with open_stream(path) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _items(bundle: Path, mirror_dir: Path, omitted: dict[str, int],
           sums: dict[str, str]) -> list[Item]:
    """SUMS: the lines of the SHA256SUMS that verify checked (not the file read again)."""
    items = [Item("bundle/" + rel, size, sums[rel][7:], from_base=True)
             for rel, size in sorted(omitted.items())]
    for p in sorted(bundle.rglob("*")):
        rel = p.relative_to(bundle).as_posix()
        if p.is_symlink():
            raise IntegrityError(f"{bundle}: {rel} is a link; a bundle holds files only")
        if rel == DELTA:
            continue
        if p.is_file():
            digest = sums[rel][7:] if rel in sums else _sha256(p)
            items.append(Item("bundle/" + rel, p.stat().st_size, digest))
    for p in sorted(mirror_dir.rglob("*")):
        rel = "mirror/" + p.relative_to(mirror_dir).as_posix()
        if p.is_symlink():
            items.append(Item(rel, link=os.readlink(p)))
        elif p.is_file():
            items.append(Item(rel, p.stat().st_size, _sha256(p)))
    return items


def _delta_view(bundle: Path, view: Path, omitted: dict[str, int], sync: _Sync,
                sums: dict[str, str]) -> None:
    """The full bundle as the mirror export reads it: links to the delta's files, plus the
    few base blobs the package indexes are made from (manifests, .deb, wheels, npm
    tarballs), fetched back from the base release and checked. Model weights and image
    layers stay on the host. SUMS: the checked lines of SHA256SUMS; index.json and the
    manifests are read bounded, only if regular files, their digests checked."""
    view.mkdir()
    for p in sorted(bundle.rglob("*")):
        rel = p.relative_to(bundle).as_posix()
        if p.is_file() and rel != DELTA:
            (view / rel).parent.mkdir(parents=True, exist_ok=True)
            (view / rel).symlink_to(p)

    def need(digest: Any) -> Path:
        """The blob (the delta's own file, or the base's fetched back and checked)."""
        rel = "blobs/sha256/" + sha256_digest(digest, "a descriptor's digest")[7:]
        if rel not in omitted:
            return bundle / rel
        if not (view / rel).exists():
            sync.fetch_from_base(rel, view / rel, sums[rel][7:])
        return view / rel

    index = read_json(bundle / "index.json", LIMITS["index.json"])
    for m in _list(index, "manifests"):
        kind = (m.get("annotations") or {}).get("dev.airlock.kind")
        if kind in mirror.MIRROR_KINDS or kind in mirror.CONTENT_KINDS:
            manifest = read_json(need(m.get("digest")), LIMITS["bundle-manifest"])
            if kind in mirror.MIRROR_KINDS:
                for layer in _list(manifest, "layers"):
                    need(layer.get("digest"))


def _list(doc: Any, key: str) -> list[dict[str, Any]]:
    """DOC[KEY] as a list of objects, or an IntegrityError (a bundle's JSON, checked)."""
    items = doc.get(key, []) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise IntegrityError(f"{key} must be a list of objects")
    return items


def _local(bundle: Path, stage: Path, item: Item) -> Path:
    top, _, rest = item.rel.partition("/")
    return (bundle if top == "bundle" else stage / "mirror") / rest


class _Sync:
    def __init__(self, remote: Remote, repo_root: str, release: str, site: Path) -> None:
        self.r, self.root, self.release, self.site = remote, repo_root, release, site
        self.final = posixpath.join(repo_root, "releases", release)
        self.incoming = posixpath.join(repo_root, "incoming", release)
        self.base: str | None = None  # a delta's base release folder on the host
        self.reusing = False  # base is the served release, for a full bundle's blobs

    def use_base(self, delta: dict[str, Any], name: str) -> None:
        """A delta's base must be on the host, complete, and the very bundle it names."""
        b = delta["base"]
        if b["name"] != name:
            raise IntegrityError(f"the delta's base is bundle {b['name']!r}, not {name!r}")
        base = posixpath.join(self.root, "releases", f"{b['name']}-{b['version']}")
        rc, out, _ = self.r.run(["cat", posixpath.join(base, MARKER)], check=False)
        try:
            marker = json.loads(out) if rc == 0 else {}
        except ValueError:
            marker = {}
        if marker.get("sha256sums") != b["sha256sums"]:
            found = ("is not there" if rc != 0 else
                     f"is another bundle (SHA256SUMS {str(marker.get('sha256sums'))[:12]}…)")
            raise HostError(f"{self.r.name}: this delta needs its base {b['name']} "
                            f"v{b['version']} (SHA256SUMS {b['sha256sums'][:12]}…) in "
                            f"{base}, which {found}",
                            hint="import the base bundle first, or carry the full bundle")
        self.base = base

    def fetch_from_base(self, rel: str, dest: Path, digest: str) -> None:
        """One of the base's files, back to the controller, checked against DIGEST."""
        assert self.base is not None
        part = dest.with_name(dest.name + ".part")
        self.r.sftp.get(posixpath.join(self.base, "bundle", rel), str(part))
        if _sha256(part) != digest:
            part.unlink()
            raise IntegrityError(f"{self.r.name}: {self.base}/bundle/{rel} differs from the "
                                 "signed SHA256SUMS of the new bundle",
                                 hint="the base release on the host was changed: investigate")
        os.replace(part, dest)

    def sh(self, script: str, *args: str, stdin: bytes | None = None, check: bool = True
           ) -> str:
        return self.r.run(["sh", "-ec", script, "airlock", *args], stdin=stdin, check=check)[1]

    def served(self) -> dict[str, Any] | None:
        rc, out, _ = self.r.run(["cat", posixpath.join(self.root, "current/bundle/bundle.json")],
                                check=False)
        try:
            return json.loads(out) if rc == 0 else None
        except ValueError:
            return None

    def each(self, script: str, base: str, names: list[str]) -> None:
        """SCRIPT (python3, in BASE) on NAMES, given on its stdin ended by NUL bytes: one
        command for thousands of files, not a round trip each."""
        if names:
            self.r.run(["python3", "-c", script, base],
                       stdin=b"".join(n.encode() + b"\0" for n in names))

    def exists(self, path: str) -> bool:
        return self.r.run(["test", "-e", path], check=False)[0] == 0

    def listing(self, base: str) -> tuple[dict[str, int], dict[str, str]]:
        """Regular files (path -> size) and links (path -> target) under BASE."""
        out = self.sh('[ -d "$1" ] || exit 0; cd "$1"; find . -type f -printf "f\\t%s\\t%P\\0";'
                      ' find . -type l -printf "l\\t%l\\t%P\\0"', base)
        files, links = {}, {}
        for rec in out.split("\0"):
            if rec:
                kind, val, rel = rec.split("\t", 2)
                if kind == "f":
                    files[rel] = int(val)
                else:
                    links[rel] = val
        return files, links

    def hashes(self, base: str, rels: list[str]) -> dict[str, str]:
        if not rels:
            return {}
        out = self.sh('cd "$1"; xargs -0 sha256sum --', base,
                      stdin=b"\0".join(r.encode() for r in rels))
        got = {}
        for line in out.splitlines():
            digest, _, name = line.partition("  ")
            got[name] = digest
        return got

    def free(self) -> int:
        out = self.sh('p="$1"; while [ ! -d "$p" ]; do p=$(dirname "$p"); done; '
                      'df -P -B1 "$p" | awk "NR==2 {print \\$4}"', self.root)
        return int(out.strip() or 0)


def _bootstrap_check(sync: _Sync, repo: inv_mod.Host, mirror_dir: Path, name: str) -> None:
    """A repo host that lacks its own packages installs them from the bundle: refuse,
    before anything changes, a bundle that does not carry the ones it lacks."""
    wanted = list(repo.vars.get("offline_repo_bootstrap_packages", BOOTSTRAP))
    out = sync.sh('for p in "$@"; do dpkg-query -W -f=\'${Status}\\n\' "$p" 2>/dev/null '
                  '| grep -q "install ok installed" || echo "$p"; done', *wanted)
    lacking = out.split()
    if not lacking:
        return
    carried = set()
    for index in (mirror_dir / "apt").rglob("Packages"):
        carried |= {line.split(":", 1)[1].strip() for line in index.read_text().splitlines()
                    if line.startswith("Package:")}
    absent = [p for p in lacking if p not in carried]
    if absent:
        raise HostError(f"{sync.r.name} does not have {', '.join(lacking)} yet, and bundle "
                        f"{name} does not carry {', '.join(absent)}: the repo host could not "
                        "serve it (nothing was copied)",
                        hint="import first a bundle that carries the repo host's own "
                             "packages (bundles/poc.yaml or bundles/lab.yaml do: their deb "
                             f"list has {', '.join(wanted)})")


def _check_release_on_host(sync: _Sync, items: list[Item]) -> None:
    """A release already complete on the host must be byte-identical to this bundle."""
    files = [i for i in items if i.link is None and i.rel.startswith("bundle/")]
    have, _ = sync.listing(sync.final)
    missing = [i.rel for i in files if i.rel not in have]
    got = sync.hashes(sync.final, [i.rel for i in files if i.rel in have])
    bad = [i.rel for i in files if i.rel in have and got.get(i.rel) != i.sha256]
    if missing or bad:
        problems = ([{"file": m, "problem": "missing on the repo host"} for m in missing]
                    + [{"file": b, "problem": "differs on the repo host"} for b in bad])
        raise IntegrityError(f"{sync.r.name}: {sync.final} is not this bundle any more "
                             "(changed on the host)", problems,
                             hint="investigate the host; then move that folder away and "
                                  "import again")


def _copy(sync: _Sync, bundle: Path, stage: Path, items: list[Item], progress: Any
          ) -> dict[str, int]:
    inc = sync.incoming
    have, links = sync.listing(inc)
    files = [i for i in items if i.link is None]
    sized = [i for i in files if have.get(i.rel) == i.size]
    got = sync.hashes(inc, [i.rel for i in sized])
    keep = {i.rel for i in sized if got.get(i.rel) == i.sha256}
    todo = [i for i in files if i.rel not in keep]
    if sync.base is None:  # a full bundle: blobs the served release holds are linked
        todo = _reuse_served(sync, todo)
    # a partial copy of a bundle file (named by its content) is continued where it stopped,
    # and hashed whole when it is done; generated mirror files are always copied again
    partial = {i.rel: p if i.rel.startswith("bundle/")
               and (p := have.get(i.rel + ".part", 0)) <= i.size else 0 for i in todo}
    need = sum(i.size - partial[i.rel] for i in todo if not i.from_base)
    free = sync.free()
    if need + RESERVE > free:
        raise HostError(f"{sync.r.name}: {sync.root} has {free / 2**20:.0f} MiB free; the bundle "
                        f"needs {need / 2**20:.0f} MiB more (plus {RESERVE >> 20} MiB reserve)",
                        hint="free space there, or import to a bigger disk with --repo-root")
    dirs = sorted({posixpath.dirname(posixpath.join(inc, i.rel)) for i in items})
    sync.sh('umask 022; for d in "$@"; do mkdir -p -- "$d"; done', *dirs)
    task = progress.add_task(f"copy to {sync.r.name}", total=need)
    linked = [i for i in todo if i.from_base]
    if linked and sync.base is None:
        raise HostError("internal: files to link with no base release chosen")
    if linked:  # hard links into the base release (a copy across file systems)
        sync.sh('b="$1"; i="$2"; shift 2; for r in "$@"; do '
                'ln -f "$b/$r" "$i/$r.part" 2>/dev/null || cp -f "$b/$r" "$i/$r.part"; done',
                sync.base or "", inc, *(i.rel for i in linked))
    sends = [Send(i.rel, _local(bundle, stage, i), partial[i.rel], i.size) for i in todo
             if not i.from_base]
    stale = [i.rel for i in todo if not i.from_base and not partial[i.rel] and i.rel in have]
    sync.each(REMOVE, inc, stale)  # whole files that are not this bundle's: replaced
    # one OpenSSH stream; each file is hashed on the host as it lands (no second read)
    arrived = _stream(sync, sends, lambda n: progress.advance(task, n))
    copied = sum(f.size - f.start for f in sends)
    arrived.update(sync.hashes(inc, [i.rel + ".part" for i in linked]))
    if sync.reusing:  # a served blob that is not what its name says is sent after all
        # (from 0: the receiver replaces the link, it never writes through it)
        resend = [Send(i.rel, _local(bundle, stage, i), 0, i.size) for i in linked
                  if arrived.get(i.rel + ".part") != i.sha256]
        arrived.update(_stream(sync, resend, lambda n: progress.advance(task, n)))
        copied += sum(f.size for f in resend)
    # whole files take their names, damaged ones are dropped (one command for all)
    whole = [i.rel for i in todo if arrived.get(i.rel + ".part") == i.sha256]
    damaged = [i.rel for i in todo if arrived.get(i.rel + ".part") != i.sha256]
    sync.each(RENAME, inc, whole)
    sync.each(REMOVE, inc, [d + ".part" for d in damaged])
    if damaged:
        raise IntegrityError(f"{sync.r.name}: {len(damaged)} file(s) arrived damaged",
                             [{"file": d, "problem": "hash differs after the copy"}
                              for d in damaged], hint="run the import again: it copies them again")
    new_links = [i for i in items if i.link is not None and links.get(i.rel) != i.link]
    if new_links:  # relative links into the bundle (one command for all)
        sync.each(LINK, inc, [x for i in new_links for x in (str(i.link), i.rel)])
    made = len(new_links)
    return {"filesCopied": len(todo) - len(linked), "filesKept": len(keep),
            "filesFromBase": 0 if sync.reusing else len(linked),
            "filesFromServed": len(linked) if sync.reusing else 0,
            "bytesCopied": copied, "linksMade": made}


def _stream(sync: _Sync, sends: list[Send], advance: Any) -> dict[str, str]:
    """SENDS to the incoming folder's REL.part files; {REL.part: sha256 as it landed}."""
    got = transfer.send(sync.r.host, sync.site, sync.incoming, sends, advance)
    return {rel + ".part": digest for rel, digest in got.items()}


def _reuse_served(sync: _Sync, todo: list[Item]) -> list[Item]:
    """A full bundle's blobs (files named by their content) that the served release holds
    at the same size are hard-linked from it on the host instead of sent again: a new
    release of a 2 GiB site mostly repeats the last one. Each is hashed on arrival like
    every copied file, and one that is not what its name says is sent after all."""
    served = sync.sh('[ -d "$1" ] && readlink -f "$1" || true',
                     posixpath.join(sync.root, "current")).strip()
    if not served or served == sync.final:
        return todo
    have, _ = sync.listing(posixpath.join(served, "bundle", "blobs"))
    out = []
    for i in todo:
        rel = i.rel.removeprefix("bundle/blobs/")
        if rel != i.rel and have.get(rel) == i.size and i.size:
            out.append(dataclasses.replace(i, from_base=True))
        else:
            out.append(i)
    if any(i.from_base for i in out):
        sync.base, sync.reusing = served, True
    return out


def import_bundle(root: Path, bundle: Path, inventory: Path, *, trust_root: Path,
                  site: Path, repo_root: str | None = None, progress: Any = None,
                  say: Any = print, live: bool | None = None, command: str = "import",
                  confirm: hostkeys.Confirm | None = None) -> dict[str, Any]:
    """Under the inventory's lock, with one audit record whatever the outcome."""
    inv = inv_mod.load(inventory, root)  # a bad inventory fails before anything else
    site.mkdir(parents=True, exist_ok=True, mode=0o700)
    fields = {"bundlePath": str(bundle.absolute()),
              "inventory": {"path": str(inventory.resolve()), "digest": inv.digest}}
    with InventoryLock(site, inventory, command), audited(site, command, **fields) as rec:
        doc = _import(root, bundle.absolute(), inventory, inv, trust_root=trust_root,
                      site=site, repo_root=repo_root, progress=progress or NullProgress(),
                      say=say, live=live, confirm=confirm)
        rec.update(bundle={"name": doc["name"], "version": doc["version"],
                           "sha256sums": doc["digest"][7:]},
                   bytesCopied=doc["bytesCopied"], filesCopied=doc["filesCopied"],
                   run=doc["run"]["ident"], changed=doc["run"]["changed"])
    return doc


def _import(root: Path, bundle: Path, inventory: Path, inv: inv_mod.Inventory, *,
            trust_root: Path, site: Path, repo_root: str | None, progress: Any, say: Any,
            live: bool | None, confirm: hostkeys.Confirm | None) -> dict[str, Any]:
    t0 = time.monotonic()
    repo = inv.first("repo")
    delta = read_delta(bundle)
    omitted: dict[str, int] = delta["omitted"] if delta else {}
    report = verify_signed(bundle, trust_root, site / "trust", progress, omitted=omitted)
    if not report.ok:
        raise IntegrityError(f"refusing to import {bundle}: it does not verify (nothing was "
                             "sent to the repo host)", report.to_json()["problems"])
    meta = report.integrity.meta
    release = f"{meta['name']}-{meta['version']}"
    digest = str(report.integrity.digest)[7:]  # of the very SHA256SUMS bytes verify checked
    home = ensure_site(site, say)
    repo_root = repo_root or repo.repo_root
    if not posixpath.isabs(repo_root):
        raise UsageError(f"--repo-root {repo_root!r} must be an absolute path")
    server = str(repo.vars.get("offline_repo_server_name", repo.name))
    stage = site / "imports" / release
    stage.mkdir(parents=True, exist_ok=True)
    view = stage / "bundle"
    if view.is_symlink() or view.is_file():
        view.unlink()
    elif view.is_dir():
        shutil.rmtree(view)
    hostkeys.ensure([repo], site, confirm=confirm, say=say)
    with Remote(repo, site) as r:
        sync = _Sync(r, repo_root, release, site)
        served = sync.served()
        if (served and served.get("name") == meta["name"]
                and int(served.get("version", 0)) > int(meta["version"])):
            raise HostError(f"{repo.name} serves {meta['name']} v{served['version']}; "
                            f"v{meta['version']} is older: downgrade refused",
                            hint="import a newer bundle")
        if delta:
            sync.use_base(delta, meta["name"])
            _delta_view(bundle, view, omitted, sync, report.integrity.listed)
        else:
            view.symlink_to(bundle)
        exported = mirror.export(view, stage / "mirror", base_url=f"https://{server}/",
                                 site_key=home, force=True, link="../bundle",
                                 go_sumdb=ensure_go_sumdb(site, say))
        pub = stage / "mirror" / "apt" / "site-key.gpg"
        if pub.exists():  # the common role gives it to every host for apt's signed-by
            atomic_write(site / "apt-site-key.gpg", pub.read_bytes())
        _bootstrap_check(sync, repo, stage / "mirror", meta["name"])
        items = _items(bundle, stage / "mirror", omitted, report.integrity.listed)
        say(f"copying {release} to {repo.name}:{repo_root}"
            + (f" (delta on {delta['base']['version']}: {len(omitted)} blobs from the base)"
               if delta else ""))
        if sync.exists(sync.final):
            _check_release_on_host(sync, items)
            copy = {"filesCopied": 0, "filesKept": len(items), "filesFromBase": 0,
                    "filesFromServed": 0, "bytesCopied": 0, "linksMade": 0}
        else:
            copy = _copy(sync, bundle, stage, items, progress)
            marker = json.dumps({"name": meta["name"], "version": meta["version"],
                                 "sha256sums": digest}, sort_keys=True).encode()
            sync.sh('cd "$1"; cat > .airlock-import.json.tmp; mv .airlock-import.json.tmp '
                    + shlex.quote(MARKER) + '; mkdir -p "$2"; mv -T "$1" "$3"',
                    sync.incoming, posixpath.dirname(sync.final), sync.final, stdin=marker)
    say(f"serving {release} from {repo.name}")
    run = run_playbook(root, "import.yml", inventory, site=site,
                       extravars={"offline_repo_release": release,
                                  "offline_repo_root": repo_root},
                       title=f"import {release}", live=live)
    return {"ok": True, "release": release, "name": meta["name"], "version": meta["version"],
            "digest": f"sha256:{digest}",
            "repoHost": repo.name, "repoRoot": repo_root, "url": f"https://{server}/",
            "registry": f"{server}:{repo.vars.get('offline_repo_registry_port', 5000)}",
            "signedBy": report.signed_by, "served": exported, **copy,
            "seconds": round(time.monotonic() - t0, 1), "run": run.to_json()}
