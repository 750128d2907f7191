"""spec + lock -> bundle directory (OCI layout + bundle.json + SBOM + SHA256SUMS)."""

from __future__ import annotations

import errno
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.bundle import spec as spec_mod
from installer.bundle import transfer
from installer.bundle.artifacts import (
    A_PACKAGE,
    A_PACKAGE_VERSION,
    Artifact,
    StoredFile,
    build_artifact,
)
from installer.bundle.digest import sha256_bytes, workers
from installer.bundle.lock import Lock, lock_path_for, now_created, source_date_epoch
from installer.bundle.meta import BUNDLE_JSON, FORMAT, SBOM, SELF_INSTALLER, SUMS, write_sums
from installer.bundle.sbom import make_sbom
from installer.bundle.sources import images, openvsx
from installer.bundle.sources.content import Job, jobs_for
from installer.bundle.sources.golang import resolve_go
from installer.bundle.sources.http import FetchOptions, download
from installer.bundle.sources.maven import resolve_maven
from installer.bundle.sources.packages import (
    PackageFile,
    canonical_name,
    resolve_deb,
    resolve_npm,
    resolve_pypi,
)
from installer.bundle.sources.vsix import check_engine, read_vsix
from installer.bundle.spec import ContentEntry, Spec
from installer.bundle.store import Layout, canonical_json, pretty_json
from installer.console import NullProgress
from installer.errors import LockDrift, SourceError, SpecError
from installer.fsutil import disk_full, staged_dir


@dataclass
class BuildOptions:
    update_lock: bool = False
    locked: bool = False
    force: bool = False
    fetch: FetchOptions = field(default_factory=FetchOptions)


@dataclass
class BuildResult:
    path: Path
    name: str
    version: int
    digest: str  # sha256 of SHA256SUMS: names every byte of the bundle
    artifacts: int
    blobs: int
    size: int
    lock_path: Path
    lock_written: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.name, "version": self.version,
                "digest": self.digest, "artifacts": self.artifacts, "blobs": self.blobs,
                "size": self.size, "lock": str(self.lock_path),
                "lockWritten": self.lock_written, "seconds": round(self.seconds, 3)}


def build(spec_path: Path, out: Path, opts: BuildOptions, progress: Any = None) -> BuildResult:
    progress = progress or NullProgress()
    t0 = time.monotonic()
    spec = spec_mod.load(spec_path)
    lock_path = lock_path_for(spec_path)
    old_lock = Lock(lock_path) if opts.update_lock else Lock.read(lock_path)
    if opts.locked and not old_lock.existed:
        raise SpecError("no lock file, and --locked forbids writing one", file=str(lock_path))
    new_lock = Lock(lock_path)
    new_lock.created = source_date_epoch() or old_lock.created or now_created()

    transfer.reset()
    try:
        with staged_dir(out, force=opts.force) as tmp:
            store = Layout(tmp)
            try:
                artifacts = _pull_images(spec, store, old_lock, new_lock, opts, progress)
                artifacts += _collect_content(spec, store, old_lock, new_lock, opts, progress)
                artifacts += _collect_mirrors(spec, store, old_lock, new_lock, opts, progress)
            except BaseException:
                # downloads still running on other threads write nothing more here: the
                # staging folder is removed next (Ctrl-C, SIGTERM, the first failure)
                transfer.cancel()
                store.close()
                raise
            artifacts.sort(key=Artifact.sort_key)
            lock_changed = new_lock.to_json() != old_lock.to_json()
            if lock_changed and opts.locked:
                raise SpecError("the lock is out of date with the spec or its inputs, and "
                                "--locked forbids changing it", file=str(lock_path),
                                hint="build without --locked to refresh it, and review the diff")
            digest, nblobs, size = _finish(spec, store, artifacts, new_lock)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise disk_full(e, out) from None
        raise
    if lock_changed:
        new_lock.write()
    return BuildResult(out.absolute(), spec.name, spec.version, digest, len(artifacts), nblobs,
                       size, lock_path, lock_changed, time.monotonic() - t0)


# --------------------------------------------------------------------------- images

def _pull_images(spec: Spec, store: Layout, old: Lock, new: Lock, opts: BuildOptions,
                 progress: Any) -> list[Artifact]:
    out = []
    for entry in spec.images:
        key, source = f"image/{entry.name}", f"{entry.ref}|{entry.platform}"
        pinned = old.get(key, source) if entry.lock else None
        pulled = images.pull(entry, spec.base_dir, pinned and pinned["digest"], store,
                             opts.fetch, progress)
        if pinned and pulled.source_digest != pinned["digest"]:
            raise SourceError(f"image {entry.name} ({entry.ref}) is now "
                              f"{pulled.source_digest}, but the lock pins {pinned['digest']}",
                              hint="rebuild with --update-lock to accept the new image")
        index_digest = pulled.index_digest or (pinned or {}).get("indexDigest")
        if entry.lock:
            new.entries[key] = {"source": source, "digest": pulled.source_digest}
            if index_digest:
                new.entries[key]["indexDigest"] = index_digest
        ref = images.parse_ref(entry.ref, entry.at)
        extra = {"source": entry.ref, "platform": pulled.platform,
                 "sourceDigest": pulled.source_digest}
        if index_digest:
            extra["indexDigest"] = index_digest
        out.append(Artifact("image", entry.name, ref.version, pulled.manifest,
                            [pulled.config, *pulled.layers], extra=extra))
    return out


# --------------------------------------------------------------------------- content

def _collect_content(spec: Spec, store: Layout, old: Lock, new: Lock, opts: BuildOptions,
                     progress: Any) -> list[Artifact]:
    def key_of(e: ContentEntry) -> str:
        return f"{e.kind}/{e.name if e.kind != 'vsix' else e.source}"

    entries = [openvsx.resolve(e, old.get(key_of(e), e.source), opts.fetch)
               if e.marketplace else e for e in [*spec.models, *spec.vsix, *spec.files]]
    plan = [(entry, jobs_for(entry)) for entry in entries]
    keys = {id(e): key_of(e) for e in entries}
    # the size each download must have: the spec's, else the one the lock recorded
    sizes: dict[Job, int] = {}
    for entry, jobs in plan:
        recorded = _recorded_sizes(old.get(keys[id(entry)], entry.source), old)
        for job in jobs:
            if job.remote is not None:
                size = job.remote.size if job.remote.size is not None \
                    else recorded.get(job.relpath)
                if size is not None:
                    sizes[job] = size
    total = sum(j.local.stat().st_size for _, jobs in plan for j in jobs if j.local)
    task = progress.add_task("copy and hash", total=total or None)

    def advance(n: int) -> None:
        progress.advance(task, n)

    def run(job: Job) -> tuple[str, int]:
        if job.remote:
            return download(job.remote.url, job.remote.sha256, store, opts.fetch, advance,
                            size=sizes.get(job))
        try:
            return store.put_file(job.local, advance)  # type: ignore[arg-type]
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise
            raise SourceError(f"{job.local}: cannot read ({e.strerror})") from None

    flat = [job for _, jobs in plan for job in jobs]
    results = dict(zip(flat, transfer.parallel(run, flat, workers()), strict=True))

    artifacts = []
    vsix_ids: dict[str, int | None] = {}
    for entry, jobs in plan:
        files = [StoredFile(j.relpath, *results[j]) for j in jobs]
        source = entry.source
        key = keys[id(entry)]
        digests = {f.relpath: f.digest for f in files}
        pinned = old.get(key, source)
        if pinned and entry.local is not None and pinned["files"] != digests:
            changed = sorted(p for p in digests.keys() | pinned["files"].keys()
                             if digests.get(p) != pinned["files"].get(p))
            raise SourceError(f"{entry.kind} {entry.name or source}: files changed since the "
                              f"lock: {', '.join(changed[:5])}"
                              + (" ..." if len(changed) > 5 else ""),
                              hint="rebuild with --update-lock to accept the new content")
        new.entries[key] = {"source": source, "files": digests}
        if entry.remote and (pinned is None or "sizes" in pinned):
            # a lock written before sizes were recorded keeps its shape (--locked passes);
            # --update-lock or a new entry records them
            new.entries[key]["sizes"] = {f.relpath: f.size for f in files}
        name, version, annotations, extra = entry.name, entry.version, {}, {}
        if entry.kind == "vsix":
            label = str(entry.local or entry.remote[0].url)
            info = read_vsix(store.blob_path(files[0].digest), entry.at, label)
            check_engine(info, spec.vscode or "", entry.at, label)
            if info.id.lower() in vsix_ids:
                raise entry.at.error(f"extension {info.id} is listed twice (first at line "
                                     f"{vsix_ids[info.id.lower()]})")
            vsix_ids[info.id.lower()] = entry.at.line
            m = entry.marketplace
            if m and (info.id.lower(), info.version) != (m.id.lower(), m.version):
                raise entry.at.source_error(
                    f"{label}: the registry served {info.id} {info.version}, not {m.id} "
                    f"{m.version}", hint="the registry is wrong or not the one you meant; "
                    "nothing from it was kept in the bundle")
            if m:
                new.entries[key]["url"] = entry.remote[0].url
            name, version = info.id.lower(), info.version
            files = [StoredFile(f"{info.id}-{info.version}.vsix", files[0].digest,
                                files[0].size)]
            annotations = {"dev.airlock.vsix.id": info.id,
                           "dev.airlock.vsix.engine": info.engine}
            extra = {"id": info.id, "publisher": info.publisher, "engine": info.engine}
        art = build_artifact(store, entry.kind, name, version, files, new.created or "",
                             annotations, entry.family)
        art.extra.update(extra)
        artifacts.append(art)
    return artifacts


def _recorded_sizes(pinned: dict[str, Any] | None, lock: Lock) -> dict[str, int]:
    return (pinned or {}).get("sizes") or {}  # checked when the lock was read


# --------------------------------------------------------------------------- metadata

def _artifact_json(a: Artifact) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": a.kind, "name": a.name, "version": a.version, "ref": a.ref,
                         "digest": a.manifest.digest, "mediaType": a.manifest.media_type,
                         "size": a.size}
    if a.kind == "image":
        d.update(source=a.extra["source"], sourceDigest=a.extra["sourceDigest"],
                 platform=a.extra["platform"], layers=len(a.blobs) - 1)
        if "indexDigest" in a.extra:
            d["indexDigest"] = a.extra["indexDigest"]
    else:
        d["files"] = [{"path": f.relpath, "digest": f.digest, "size": f.size} for f in a.files]
    if a.kind == "vsix":
        d.update(id=a.extra["id"], engine=a.extra["engine"])
    if "packages" in a.extra:
        for f in d["files"]:
            f.update(a.extra["packages"][f["path"]])
    return d


def _finish(spec: Spec, store: Layout, artifacts: list[Artifact], lock: Lock
            ) -> tuple[str, int, int]:
    created = lock.created or ""
    store.finish([a.index_descriptor(created) for a in artifacts])
    meta = {
        "format": FORMAT, "name": spec.name, "version": spec.version, "phase": spec.phase,
        "description": spec.description, "created": created, "platform": spec.platform,
        "target": {k: v for k, v in (("vscode", spec.vscode),
                                     ("code_server", spec.code_server)) if v},
        "specDigest": sha256_bytes(spec.raw),
        "lockDigest": sha256_bytes(canonical_json(lock.to_json())),
        "artifacts": [_artifact_json(a) for a in artifacts],
    }
    root = store.root
    if any(getattr(m, "include_self", False) for m in spec.mirrors):
        from importlib import resources

        script = resources.files("installer.bundle").joinpath("install_airlock.py").read_bytes()
        (root / SELF_INSTALLER).write_bytes(script)
        meta["selfInstaller"] = SELF_INSTALLER
    (root / BUNDLE_JSON).write_bytes(pretty_json(meta))
    content_id = sha256_bytes((root / "index.json").read_bytes())
    (root / SBOM).write_bytes(make_sbom(spec.name, spec.version, spec.phase, created,
                                        content_id, artifacts))
    blobs = list(store.blobs.iterdir())
    known = {f"blobs/sha256/{p.name}": "sha256:" + p.name for p in blobs}
    write_sums(root, known)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return sha256_bytes((root / SUMS).read_bytes()), len(blobs), size


# --------------------------------------------------------------------------- mirrors

def _pins(kind: str, locked: dict[str, Any]) -> Any:
    pkgs = locked.get("packages", {})
    if kind == "npm":
        return {f: {**p, "sha256": locked["files"][f]} for f, p in pkgs.items()}
    versions: dict[str, set[str]] = {}
    for p in pkgs.values():
        if p.get("self"):
            continue
        name = canonical_name(p["name"]) if kind == "pypi" else p["name"]
        versions.setdefault(name, set()).add(p["version"])
    return {n: next(iter(v)) for n, v in versions.items() if len(v) == 1}


def _collect_mirrors(spec: Spec, store: Layout, old: Lock, new: Lock, opts: BuildOptions,
                     progress: Any) -> list[Artifact]:
    resolvers = {"pypi": resolve_pypi, "npm": resolve_npm, "deb": resolve_deb,
                 "maven": resolve_maven, "go": resolve_go}
    artifacts = []
    for entry in spec.mirrors:
        key = f"{entry.kind}/mirror"
        locked = old.get(key, entry.source) or {}
        task = progress.add_task(f"resolve {entry.kind}", total=None)
        with tempfile.TemporaryDirectory(prefix="airlock-resolve-") as work:
            files = resolvers[entry.kind](entry, _pins(entry.kind, locked), Path(work))
            progress.update(task, total=1, completed=1)
            if locked:
                _compare_with_lock(entry.kind, files, locked)
            dl = progress.add_task(f"fetch {entry.kind} ({len(files)} files)", total=None)

            def fetch(f: PackageFile, task: int = dl) -> tuple[str, int]:
                return download(f.url, f.sha256 or None, store, opts.fetch,
                                lambda n: progress.advance(task, n),
                                sri=f.attr.get("integrity"), size=f.size)

            stored = transfer.parallel(fetch, files, min(8, 2 * workers()))
        new_files, packages, layer_files = {}, {}, []
        for f, (digest, size) in zip(files, stored, strict=True):
            info = {"name": f.name, "version": f.version,
                    **{k: v for k, v in f.attrs if k != "self"}}
            if f.attr.get("self"):
                info["self"] = True
            else:
                new_files[f.filename] = digest
            packages[f.filename] = info
            ann = {A_PACKAGE: f.name, A_PACKAGE_VERSION: f.version}
            if "integrity" in f.attr:
                ann["dev.airlock.npm.integrity"] = f.attr["integrity"]
            if "architecture" in f.attr:
                ann["dev.airlock.deb.architecture"] = f.attr["architecture"]
            if "h1" in f.attr:  # a Go module's .zip or .mod: its go.sum hash
                ann["dev.airlock.go.h1"] = f.attr["h1"]
            if "sha1" in f.attr:  # a Maven file's published SHA-1, served beside it
                ann["dev.airlock.maven.sha1"] = f.attr["sha1"]
            layer_files.append(StoredFile(f.filename, digest, size, ann))
        new.entries[key] = {"source": entry.source, "files": new_files, "packages": packages}
        ann = {"dev.airlock.deb.release": entry.release,
               "dev.airlock.deb.architecture": entry.architecture} if entry.kind == "deb" else {}
        art = build_artifact(store, entry.kind, entry.kind, None, layer_files,
                             new.created or "", ann)
        art.extra["packages"] = packages
        artifacts.append(art)
    return artifacts


def _compare_with_lock(kind: str, files: list[PackageFile], locked: dict[str, Any]) -> None:
    got = {f.filename: f.sha256 for f in files if not f.attr.get("self")}
    want = {fn: d[7:] for fn, d in locked["files"].items()}
    if kind == "npm" or got == want:
        return
    changed = sorted(fn for fn in got.keys() | want.keys() if got.get(fn) != want.get(fn))
    raise LockDrift(f"{kind}: the resolved files differ from the lock: "
                    + ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else ""),
                    hint="an index now serves other files for pinned versions, or a pin "
                         "vanished; rebuild with --update-lock to accept and review the diff")
