"""Go module content: modules by path@version and the closure of go.mod files, fetched by
the go command itself from the staging host's configured GOPROXY, verified by it against
go.sum and the checksum database (GOSUMDB must be on; GONOSUMDB, GOPRIVATE, GONOSUMCHECK
and GOINSECURE are cleared for the run).

The go command runs with a private module cache; what its download cache holds afterwards
(``cache/download/ESCAPED_PATH/@v/VERSION.{info,mod,zip}``) is the mirror, already in
GOPROXY layout. Every .zip and .mod is hashed again here (the go.sum ``h1:`` hash) and the
zip's hash compared with the one the go command recorded; the lock keeps each file's
sha256 and h1, and the repo host serves them with a checksum database signed by the site
(``installer.bundle.gosumdb``), so hosts inside keep verification on.

- modules: a scratch module requires them all, and ``go mod download all`` there fetches
  each module, its dependencies' zips and the go.mod files of the whole module graph;
- a go.mod (with the go.sum beside it, when there is one): copied to a scratch folder and
  ``go mod download all`` there; a go.sum line that disagrees stops it.

A locked build resolves again and must find the same files with the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from installer.bundle.sources.packages import MirrorEntry, PackageFile, run
from installer.errors import SourceError
from installer.system_packages import require
from installer.untrusted_zip import BoundedZip, ZipLimits

MODULE = re.compile(r"^(?P<path>[A-Za-z0-9][A-Za-z0-9._~/-]*[A-Za-z0-9_~-])@"
                    r"(?P<version>v[0-9]+\.[0-9]+\.[0-9]+(?:[-+][A-Za-z0-9.+-]+)?)$")
FILE = re.compile(r"^(?P<path>.+)/@v/(?P<version>[^/]+)\.(?P<ext>info|mod|zip)$")
CLEARED = ("GONOSUMDB", "GONOSUMCHECK", "GONOSUMDB", "GOPRIVATE", "GOINSECURE",
           "GONOPROXY", "GOFLAGS", "GOWORK")


def parse_module(text: str) -> tuple[str, str]:
    m = MODULE.match(text)
    if not m:
        raise ValueError(text)
    return m["path"], m["version"]


def escape_path(path: str) -> str:
    """The module proxy's case escaping: an upper-case letter becomes '!' and its lower."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), path)


def unescape_path(path: str) -> str:
    if re.search(r"[A-Z]|![^a-z]|!$", path):
        raise ValueError(path)
    return re.sub(r"!([a-z])", lambda m: m.group(1).upper(), path)


def hash1(files: list[tuple[str, str]]) -> str:
    """go.sum's h1 of (name, SHA-256 hex) pairs: the SHA-256 of the "SHA256HEX  NAME" lines
    sorted by name (golang.org/x/mod/sumdb/dirhash.Hash1)."""
    summary = "".join(f"{digest}  {name}\n" for name, digest in sorted(files))
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def mod_hash(data: bytes) -> str:
    return hash1([("go.mod", hashlib.sha256(data).hexdigest())])


ZIP_LIMIT = 500 << 20  # the module proxy's own limit on a module zip


def zip_hash(path: Path, what: str) -> str:
    files = []
    with BoundedZip(path, what=what, error=SourceError,
                    limits=ZipLimits(total=ZIP_LIMIT)) as z:
        for name in z.names():
            if "\n" in name:
                raise SourceError(f"{what}: a file name holds a newline; refusing it")
            h = hashlib.sha256()
            for chunk in z.stream(name):
                h.update(chunk)
            files.append((name, h.hexdigest()))
    return hash1(files)


def _go_env(go: str) -> dict[str, str]:
    proc = run([go, "env", "-json"], "go: reading the go command's settings")
    return json.loads(proc.stdout)


def _environment(go: str, workdir: Path) -> dict[str, str]:
    settings = _go_env(go)
    if settings.get("GOSUMDB", "") == "off":
        raise SourceError("go: the checksum database is off on this staging host (GOSUMDB=off)",
                          hint="airlock carries only modules the go command verified: unset "
                               "GOSUMDB (or set it to sum.golang.org) for the build")
    if settings.get("GOPROXY", "") in ("", "off"):
        raise SourceError("go: GOPROXY is off on this staging host",
                          hint="set GOPROXY to the proxy modules come from")
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(GOMODCACHE=str(workdir / "gomod"), GOPATH=str(workdir / "gopath"),
               GOFLAGS="-modcacherw", GOTOOLCHAIN="local", GOWORK="off",
               GOPROXY=settings["GOPROXY"], GOSUMDB=settings.get("GOSUMDB") or "sum.golang.org",
               **{k: "" for k in CLEARED if k not in ("GOFLAGS", "GOWORK")})
    return env


def _go(go: str, args: list[str], what: str, cwd: Path, env: dict[str, str]) -> str:
    """Run the go command; its whole message on failure (a checksum mismatch's first
    lines name the module, the SECURITY ERROR text follows)."""
    try:
        proc = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=3600)
    except subprocess.TimeoutExpired:
        raise SourceError(f"{what}: the go command did not finish in an hour") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        text = "\n".join(ln for ln in lines[:14] if not ln.startswith("go: downloading "))
        raise SourceError(f"{what} failed:\n{text}")
    return proc.stdout


def _item_for(message: str, entry: MirrorEntry) -> int | None:
    for i, text in enumerate(entry.requirements):
        if text in message:
            return i
    paths = [text.split("@")[0] for text in entry.requirements]
    for i, path in enumerate(paths):
        if path + "@" in message or f"{path}:" in message:
            return i
    return None


def _gosum_line(gosum: Path, message: str) -> int | None:
    """The go.sum line the go command's checksum mismatch is about."""
    m = (re.search(r"verifying (\S+?)@(\S+?)(/go\.mod)?: checksum mismatch", message)
         or re.search(r"(\S+?)@(\S+?): verifying (go\.mod)?(?:module)?: checksum mismatch",
                      message))
    if not m or not gosum.is_file():
        return None
    want = f"{m[1]} {m[2]}{'/go.mod' if m[3] else ''} "
    for n, line in enumerate(gosum.read_text(errors="replace").splitlines(), 1):
        if line.startswith(want):
            return n
    return None


def resolve_go(entry: MirrorEntry, pins: dict[str, str], workdir: Path) -> list[PackageFile]:
    """Everything the go command fetched for the entry; ``pins`` is unused: modules name
    exact versions and go.mod files pin theirs, and the lock comparison checks the rest."""
    del pins
    go = require("go", SourceError)
    env = _environment(go, workdir)
    if entry.requirements:
        modules = entry.parsed(parse_module, "a module path@version",
                               "write the module path and an exact semantic version, e.g. "
                               "golang.org/x/text@v0.14.0")
        scratch = workdir / "modules"
        scratch.mkdir()
        # required as written (no `go get`: it looks up newer versions, and the lock would
        # then change with every release upstream)
        requires = "".join(f"\t{p} {v}\n" for p, v in modules)
        (scratch / "go.mod").write_text("module airlock.invalid/mirror\n\ngo 1.21\n\n"
                                        f"require (\n{requires})\n")
        try:
            _go(go, ["mod", "download", "all"], "go: fetching the modules and their closure",
                scratch, env)
        except SourceError as e:
            raise entry.blame(e, _item_for(str(e), entry)) from None
    for j in range(len(entry.manifests)):
        gomod, at = entry.manifest(j)
        scratch = workdir / f"gomod-{j}"
        scratch.mkdir()
        shutil.copyfile(gomod, scratch / "go.mod")  # never changed in place
        gosum = gomod.with_name("go.sum")
        if gosum.is_file():
            shutil.copyfile(gosum, scratch / "go.sum")
        try:
            _go(go, ["mod", "download", "all"], f"go: fetching {gomod}'s module graph",
                scratch, env)
        except SourceError as e:
            line = _gosum_line(gosum, str(e))
            if line is not None:
                raise SourceError(f"{gosum}:{line}: {e}",
                                  hint=f"{at.file}:{at.line}: {at.field} names it; the module "
                                       "proxy serves other bytes than go.sum recorded") from None
            raise at.source_error(str(e)) from None
    return download_cache_files(workdir / "gomod" / "cache" / "download")


def download_cache_files(root: Path) -> list[PackageFile]:
    """The .info, .mod and .zip files of a module download cache, each .mod and .zip with its
    h1 hash (a zip's checked against the .ziphash the go command recorded)."""
    out = []
    if not root.is_dir():
        raise SourceError("go: the go command fetched nothing")
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("sumdb/") or not path.is_file() or path.is_symlink():
            continue
        m = FILE.match(rel)
        if not m:
            continue  # list, .lock, .ziphash, .partial: the go command's bookkeeping
        try:
            module, version = unescape_path(m["path"]), unescape_path(m["version"])
        except ValueError:
            raise SourceError(f"go: {rel} is not in the module proxy's escaped layout") \
                from None
        data_hash = hashlib.sha256()
        attrs: tuple[tuple[str, str], ...] = ()
        if m["ext"] == "zip":
            h1 = zip_hash(path, f"{module}@{version}")
            recorded = path.with_suffix(".ziphash")
            if recorded.is_file() and recorded.read_text().strip() != h1:
                raise SourceError(f"go: {module}@{version}: the zip hashes to {h1}, the go "
                                  f"command recorded {recorded.read_text().strip()}")
            attrs = (("h1", h1),)
        elif m["ext"] == "mod":
            attrs = (("h1", mod_hash(path.read_bytes())),)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                data_hash.update(chunk)
        out.append(PackageFile(module, version, rel, data_hash.hexdigest(), path.as_uri(),
                               attrs))
    if not any(f.filename.endswith(".mod") for f in out):
        raise SourceError("go: the go command fetched no module")
    return out


def source_of(entry: MirrorEntry) -> str:
    from installer.bundle.sources.maven import manifests_digest

    sums = tuple(p.with_name("go.sum") for p in entry.manifests)
    return json.dumps({"modules": entry.requirements,
                       "gomods": list(entry.manifest_names or map(str, entry.manifests)),
                       "gomodDigests": manifests_digest(entry.manifests),
                       "gosumDigests": manifests_digest(sums)}, sort_keys=True)
