"""Standard repository trees from a bundle's package mirrors, for the repo host to serve
as static files (``airlock mirror export``):

    pypi/simple/                PEP 503 HTML and PEP 691 JSON (index.html / index.json)
    pypi/files/NAME.whl         the files, each link carrying #sha256=…
    npm/NAME/index.json         packuments (versions, dependencies, dist.tarball/integrity)
    npm/NAME/-/BASE-VER.tgz     tarballs (scoped names under npm/@scope/NAME/)
    apt/dists/REL/…             Packages(.gz), Release, InRelease and Release.gpg signed with
    apt/pool/…                  the site key; apt/site-key.gpg for clients' signed-by=
    maven/GROUP/ARTIFACT/VER/…  Maven 2 layout: each file with .sha1 and .sha256 beside it,
                                maven-metadata.xml per artifact, plugin prefixes per group
    go/PATH/@v/VER.{info,mod,zip}, go/PATH/@v/list   a GOPROXY tree
    go/sumdb/NAME/…             the site's Go checksum database (installer.bundle.gosumdb)
    models/NAME/VERSION/PATH    model weights as their Hugging Face folder
    vsix/PUBLISHER.NAME-VER.vsix   extensions (never unpacked here)
    files/NAME/FILE             plain files
    nginx-http.conf             nginx map for PEP 691 negotiation (include in http {})
    nginx-locations.conf        the nginx locations that serve all of it (in server {})

Every blob is hashed while it is copied out; nothing is written where the tree will be
served until all of it is complete (built beside, renamed at the end).

With ``link=`` (used by ``bundle import`` for a bundle it has just verified) the tree holds
relative symbolic links into the bundle's ``blobs/`` instead of copies, so the repo host
stores every byte once: only the indexes, packuments and the signed Release files are new.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from installer.bundle.digest import copy_hashing, sha256_bytes
from installer.bundle.sources.packages import canonical_name
from installer.errors import IntegrityError, SourceError, UsageError
from installer.fsutil import staged_dir
from installer.system_packages import require
from installer.untrusted import (
    LIMITS,
    open_stream,
    parse_json,
    read_bytes,
    read_json,
    sha256_digest,
)

TITLE = "org.opencontainers.image.title"


MIRROR_KINDS = ("pypi", "npm", "deb", "maven", "go")
CONTENT_KINDS = ("model", "vsix", "file")


def _real(path: Path) -> Path:
    """PATH with links resolved: ``bundle import``'s view of a delta bundle is airlock's own
    links to the delta's files. What it names is then read only if it is a regular file
    (a link to /dev/zero or to a FIFO is refused, not read)."""
    return Path(os.path.realpath(path))


def _served(bundle: Path) -> tuple[dict[str, dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """The bundle's package mirrors by kind, and its models, VSIX and files in order.
    index.json and every manifest are read once, bounded; a manifest's bytes must hash to
    the digest index.json gives it, and its layers be objects with a digest."""
    index = read_json(_real(bundle / "index.json"), LIMITS["index.json"],
                      what=f"{bundle}/index.json")
    mirrors, content = {}, []
    for m in _objects(index, "manifests", "index.json"):
        ann = m.get("annotations") or {}
        kind = ann.get("dev.airlock.kind") if isinstance(ann, dict) else None
        if kind in MIRROR_KINDS or kind in CONTENT_KINDS:
            manifest = _manifest(bundle, m.get("digest"))
            if kind in MIRROR_KINDS:
                mirrors[kind] = manifest
            else:
                manifest["annotations"] = {**manifest.get("annotations", {}), **ann}
                content.append((kind, manifest))
    return mirrors, content


def _manifest(bundle: Path, digest: Any) -> dict[str, Any]:
    blob = _blob(bundle, digest)
    data = read_bytes(_real(blob), LIMITS["bundle-manifest"], what=f"manifest {digest}")
    if sha256_bytes(data) != digest:
        raise IntegrityError(f"manifest {digest}: the bundle's blob is damaged (run bundle "
                             "verify)")
    manifest = parse_json(data, f"manifest {digest}")
    for layer in _objects(manifest, "layers", f"manifest {digest}"):
        sha256_digest(layer.get("digest"), f"manifest {digest}: a layer's digest")
        if not isinstance(layer.get("annotations", {}), dict):
            raise IntegrityError(f"manifest {digest}: a layer's annotations are not an object")
    if not isinstance(manifest.get("annotations", {}), dict):
        raise IntegrityError(f"manifest {digest}: annotations are not an object")
    return manifest


def _objects(doc: Any, key: str, what: str) -> list[dict[str, Any]]:
    items = doc.get(key, []) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise IntegrityError(f"{what}: {key} must be a list of objects")
    return items


def _blob(bundle: Path, digest: Any) -> Path:
    return bundle / "blobs" / "sha256" / sha256_digest(digest, "a blob's digest")[7:]


def _safe_rel(name: str) -> str:
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in name:
        raise IntegrityError(f"refusing unsafe file name {name!r} in the bundle")
    return name


class _Out:
    """Where exported files go: copied (hashed on the way), or linked into the bundle."""

    def __init__(self, bundle: Path, root: Path, link: str | None) -> None:
        self.bundle, self.root, self.link = bundle, root, link

    def put(self, layer: dict[str, Any], dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob = _blob(self.bundle, layer["digest"])
        if self.link is not None:
            depth = len(dest.relative_to(self.root).parts) - 1
            os.symlink("../" * depth + f"{self.link}/blobs/sha256/{blob.name}", dest)
            return
        with open_stream(_real(blob)) as src, open(dest, "wb") as dst:
            digest, _ = copy_hashing(src, dst)
        if digest != layer["digest"]:
            raise IntegrityError(f"{dest.name}: the bundle's blob is damaged (run bundle verify)")


def export(bundle: Path, out: Path, *, base_url: str | None, site_key: Path | None,
           force: bool = False, link: str | None = None,
           go_sumdb: Path | None = None) -> dict[str, Any]:
    """Write the served tree of BUNDLE into OUT. ``link``: the bundle's path relative to
    OUT (e.g. ``../bundle``); files become relative links to its blobs. ``go_sumdb``: the
    site's Go checksum database folder (its key and append-only log), when BUNDLE carries
    Go modules."""
    mirrors, content = _served(bundle)
    if not mirrors and not content:
        raise UsageError(f"{bundle} carries nothing to serve (package mirrors, models, VSIX "
                         "or files)")
    if "npm" in mirrors and not base_url:
        raise UsageError("npm packuments need absolute tarball URLs: give --base-url, the URL "
                         "where the exported folder will be served (e.g. https://repo.lan/)")
    if "deb" in mirrors and not site_key:
        raise UsageError("the apt repository must be signed: give --site-key DIR",
                         hint="make one with: airlock mirror site-key DIR")
    if "go" in mirrors and not go_sumdb:
        raise UsageError("Go modules are served with the site's checksum database: give "
                         "--go-sumdb DIR", hint="make one with: airlock mirror go-sumdb DIR")
    summary: dict[str, Any] = {"path": str(out.absolute())}
    try:
        _write(bundle, out, summary, mirrors, content, base_url=base_url, site_key=site_key,
               force=force, link=link, go_sumdb=go_sumdb)
    except KeyError as e:  # what _served checked is there; an annotation is not
        raise IntegrityError(f"{bundle}: a manifest lacks {e} (not a bundle airlock built)") \
            from None
    return summary


def _write(bundle: Path, out: Path, summary: dict[str, Any], mirrors: dict[str, Any],
           content: list[tuple[str, dict[str, Any]]], *, base_url: str | None,
           site_key: Path | None, force: bool, link: str | None,
           go_sumdb: Path | None) -> None:
    with staged_dir(out, force=force) as tmp:
        put = _Out(bundle, tmp, link)
        if "pypi" in mirrors:
            summary["pypi"] = _pypi(put, mirrors["pypi"], tmp / "pypi")
        if "npm" in mirrors:
            summary["npm"] = _npm(put, mirrors["npm"], tmp / "npm",
                                  base_url.rstrip("/") + "/npm/")  # type: ignore[union-attr]
        if "deb" in mirrors:
            summary["deb"] = _apt(put, mirrors["deb"], tmp / "apt", site_key)  # type: ignore[arg-type]
        if "maven" in mirrors:
            summary["maven"] = _maven(put, mirrors["maven"], tmp / "maven")
        if "go" in mirrors:
            summary["go"] = _go(put, mirrors["go"], tmp / "go", go_sumdb)  # type: ignore[arg-type]
        if content:
            summary["content"] = _content(put, content, tmp)
        (tmp / "nginx-http.conf").write_text(NGINX_HTTP)
        (tmp / "nginx-locations.conf").write_text(NGINX_LOCATIONS)


NGINX_HTTP = """\
# Include inside http {}: PEP 691 content negotiation for the simple index.
map $http_accept $airlock_simple_index {
    default index.html;
    "~*application/vnd\\.pypi\\.simple\\.v1\\+json" index.json;
}
"""

NGINX_LOCATIONS = """\
# Include inside a server {} whose root is the exported folder (and nginx-http.conf in http {}).
location /pypi/simple/ {
    # PEP 691: JSON for clients that ask for it, PEP 503 HTML otherwise
    types { application/vnd.pypi.simple.v1+json json; text/html html; }
    try_files $uri/$airlock_simple_index $uri =404;
}
location /npm/ {
    # npm asks for /NAME and /@scope%2fNAME; nginx decodes %2f, so both map to folders
    default_type application/json;
    try_files $uri/index.json $uri =404;
}
location /apt/ { autoindex off; }
location /maven/ { default_type application/octet-stream; }
location /go/ {
    # the module proxy protocol and the checksum database: static files, plain text
    default_type text/plain;
}
"""


# --------------------------------------------------------------------------- pypi

def _pypi(put: _Out, manifest: dict[str, Any], root: Path) -> dict[str, int]:
    projects: dict[str, list[tuple[str, str]]] = {}
    for layer in manifest["layers"]:
        ann = layer["annotations"]
        fname = _safe_rel(ann[TITLE])
        if "/" in fname:
            raise IntegrityError(f"pypi file name {fname!r} has a '/'")
        put.put(layer, root / "files" / fname)
        projects.setdefault(canonical_name(ann["dev.airlock.package.name"]), []).append(
            (fname, layer["digest"][7:]))
    simple = root / "simple"
    simple.mkdir(parents=True)
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (simple / "index.html").write_text(_html("Simple index", links))
    (simple / "index.json").write_text(json.dumps(
        {"meta": {"api-version": "1.0"}, "projects": [{"name": p} for p in sorted(projects)]}))
    for project, files in projects.items():
        d = simple / project
        d.mkdir()
        body = "".join(f'<a href="../../files/{html.escape(f)}#sha256={h}">{html.escape(f)}'
                       f"</a>\n" for f, h in sorted(files))
        (d / "index.html").write_text(_html(f"Links for {project}", body))
        (d / "index.json").write_text(json.dumps({
            "meta": {"api-version": "1.0"}, "name": project,
            "files": [{"filename": f, "url": f"../../files/{f}", "hashes": {"sha256": h}}
                      for f, h in sorted(files)]}))
    return {"projects": len(projects), "files": sum(len(f) for f in projects.values())}


def _html(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" "
            f"content=\"1.0\"><title>{title}</title></head><body>\n{body}</body></html>\n")


# --------------------------------------------------------------------------- npm

MANIFEST_FIELDS = ("dependencies", "optionalDependencies", "peerDependencies",
                   "peerDependenciesMeta", "bin", "engines", "os", "cpu", "license",
                   "bundleDependencies", "directories")


NPM_MEMBERS = 100_000  # members looked at for package/package.json (npm pack puts it early)
PACKAGE_JSON = 4 << 20


def _package_json(tgz: Path) -> dict[str, Any]:
    try:
        with open_stream(_real(tgz), what=tgz.name) as raw, \
                tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for i, m in enumerate(tar):
                tar.members.clear()
                if i >= NPM_MEMBERS:
                    break
                if m.isfile() and m.name.count("/") == 1 and m.name.endswith("/package.json"):
                    if m.size > PACKAGE_JSON:
                        raise IntegrityError(f"{tgz.name}: its package.json has {m.size} "
                                             "bytes, more than the 4 MiB airlock accepts")
                    f = tar.extractfile(m)
                    pkg = parse_json(f.read(PACKAGE_JSON), f"{tgz.name}: package.json") \
                        if f else {}
                    return pkg if isinstance(pkg, dict) else {}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise IntegrityError(f"{tgz.name}: not a readable npm tarball ({e})") from None
    raise IntegrityError(f"{tgz.name}: has no package.json")


def _sha1(path: Path) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    with open_stream(_real(path), what=path.name) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _npm(put: _Out, manifest: dict[str, Any], root: Path, base: str) -> dict[str, int]:
    import semantic_version

    docs: dict[str, dict[str, Any]] = {}
    for layer in manifest["layers"]:
        ann = layer["annotations"]
        rel = _safe_rel(ann[TITLE])
        dest = root / rel
        put.put(layer, dest)
        name, version = ann["dev.airlock.package.name"], ann["dev.airlock.package.version"]
        pkg = _package_json(dest)
        if pkg.get("name") != name or pkg.get("version") != version:
            raise IntegrityError(f"{rel}: package.json says {pkg.get('name')}@"
                                 f"{pkg.get('version')}, the bundle says {name}@{version}")
        sha1 = _sha1(dest)
        entry = {k: pkg[k] for k in MANIFEST_FIELDS if k in pkg}
        entry.update(name=name, version=version,
                     dist={"tarball": base + rel, "shasum": sha1,
                           "integrity": ann["dev.airlock.npm.integrity"]})
        docs.setdefault(name, {"name": name, "versions": {}})["versions"][version] = entry
    for name, doc in docs.items():
        def key(v: str) -> Any:
            try:
                return (1, semantic_version.Version(v))
            except ValueError:
                return (0, v)
        doc["dist-tags"] = {"latest": max(doc["versions"], key=key)}
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "index.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
    return {"packages": len(docs), "files": len(manifest["layers"])}


# --------------------------------------------------------------------------- apt

def make_site_key(home: Path, name: str) -> dict[str, str]:
    """A repository signing key in a private GnuPG home (mode 0700, no passphrase: it lives
    on the repo host and signs unattended)."""
    if home.exists() and any(home.iterdir()):
        raise UsageError(f"{home} is not empty")
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    try:
        _gpg(home, "--quick-generate-key", "--passphrase", "", "--pinentry-mode", "loopback",
             f"{name} <repo-signing@airlock.invalid>", "ed25519", "sign", "3y")
        return {"home": str(home), "fingerprint": _fingerprint(home)}
    finally:
        _stop_agent(home)


def _stop_agent(home: Path) -> None:
    """gpg starts an agent for HOME that outlives it: stop that one (only that one)."""
    if shutil.which("gpgconf"):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       capture_output=True)


def _gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    require("gpg", SourceError)
    argv = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--yes", "--no-tty", *args]
    proc = subprocess.run(argv, input=stdin, capture_output=True)
    if (proc.returncode != 0 and b"failed to start agent" in proc.stderr
            and not Path(f"/run/user/{os.getuid()}").is_dir()):
        # without /run/user/UID, gpg-agent's socket goes in HOME itself, and a socket's
        # path has at most 107 bytes
        raise SourceError(f"gpg could not start its agent for {home}",
                          hint=f"its socket goes in that folder ({len(str(home))} characters "
                               "long) when /run/user/UID is missing, and a socket's path has "
                               "at most 107: choose a shorter folder")
    if proc.returncode != 0:
        raise SourceError(f"gpg {args[0]} failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc.stdout


def _fingerprint(home: Path) -> str:
    out = _gpg(home, "--with-colons", "--list-secret-keys").decode()
    fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
    if not fprs:
        raise UsageError(f"{home} holds no secret key", hint="airlock mirror site-key DIR")
    return fprs[0]


def _apt(put: _Out, manifest: dict[str, Any], root: Path, home: Path) -> dict[str, Any]:
    require("apt-ftparchive", SourceError)
    ann = manifest.get("annotations", {})
    release = ann.get("dev.airlock.deb.release", "bookworm")
    arch = ann.get("dev.airlock.deb.architecture", "amd64")
    fpr = _fingerprint(home)
    for layer in manifest["layers"]:
        fname = _safe_rel(layer["annotations"][TITLE])
        put.put(layer, root / "pool" / "main" / fname[0] / fname)
    binary = root / "dists" / release / "main" / f"binary-{arch}"
    binary.mkdir(parents=True)
    packages = subprocess.run(["apt-ftparchive", "packages", "pool"], cwd=root, check=True,
                              capture_output=True).stdout
    (binary / "Packages").write_bytes(packages)
    with gzip.GzipFile(binary / "Packages.gz", "wb", mtime=0) as gz:
        gz.write(packages)
    conf = [f"-oAPT::FTPArchive::Release::{k}={v}" for k, v in (
        ("Origin", "airlock"), ("Label", "airlock offline mirror"), ("Suite", release),
        ("Codename", release), ("Architectures", arch), ("Components", "main"))]
    rel = subprocess.run(["apt-ftparchive", *conf, "release", f"dists/{release}"], cwd=root,
                         check=True, capture_output=True).stdout
    dist = root / "dists" / release
    (dist / "Release").write_bytes(rel)
    try:
        (dist / "InRelease").write_bytes(_gpg(home, "--local-user", fpr, "--clearsign",
                                              "--digest-algo", "SHA512", stdin=rel))
        (dist / "Release.gpg").write_bytes(_gpg(home, "--local-user", fpr, "--detach-sign",
                                                "--armor", "--digest-algo", "SHA512",
                                                stdin=rel))
        (root / "site-key.gpg").write_bytes(_gpg(home, "--export", fpr))
        (root / "site-key.asc").write_bytes(_gpg(home, "--export", "--armor", fpr))
    finally:
        _stop_agent(home)
    return {"release": release, "architecture": arch, "packages": len(manifest["layers"]),
            "signedBy": fpr}




# --------------------------------------------------------------------------- maven

MAVEN_PLUGIN_GROUPS = ("org.apache.maven.plugins", "org.codehaus.mojo")
PLUGIN_XML = "META-INF/maven/plugin.xml"


def _goal_prefix(jar: Path) -> str | None:
    """A Maven plugin's goal prefix (``dependency`` for maven-dependency-plugin)."""
    from installer.untrusted_zip import BoundedZip

    try:
        with BoundedZip(_real(jar), what=jar.name, error=IntegrityError) as z:
            xml = z.read(PLUGIN_XML, 8 << 20)
    except IntegrityError:
        return None
    m = re.search(rb"<goalPrefix>\s*([A-Za-z0-9_.-]+)\s*</goalPrefix>", xml or b"")
    return m.group(1).decode() if m else None


def _maven(put: _Out, manifest: dict[str, Any], root: Path) -> dict[str, int]:
    from installer.bundle.sources.maven import metadata_xml

    created = (manifest.get("annotations") or {}).get("org.opencontainers.image.created", "")
    updated = re.sub(r"[^0-9]", "", created)[:14] or "19700101000000"
    versions: dict[tuple[str, str], set[str]] = {}
    plugins: dict[str, dict[str, str]] = {}
    for layer in manifest["layers"]:
        ann = layer["annotations"]
        rel = _safe_rel(ann[TITLE])
        parts = rel.split("/")
        if len(parts) < 4:
            raise IntegrityError(f"maven file {rel!r} is not in Maven 2 layout")
        dest = root / rel
        put.put(layer, dest)
        sha1 = ann.get("dev.airlock.maven.sha1") or _sha1(dest)
        dest.with_name(dest.name + ".sha1").write_text(sha1)
        dest.with_name(dest.name + ".sha256").write_text(layer["digest"][7:])
        group, artifact, version = ".".join(parts[:-3]), parts[-3], parts[-2]
        versions.setdefault((group, artifact), set()).add(version)
        if (group in MAVEN_PLUGIN_GROUPS and rel.endswith(".jar")
                and parts[-1] == f"{artifact}-{version}.jar"
                and (prefix := _goal_prefix(dest))):
            plugins.setdefault(group, {})[artifact] = prefix
    for (group, artifact), vs in versions.items():
        d = root / group.replace(".", "/") / artifact
        _with_sums(d / "maven-metadata.xml", metadata_xml(group, artifact, sorted(vs), updated))
    for group, prefixes in plugins.items():
        body = "".join(f"    <plugin>\n      <name>{html.escape(a)}</name>\n      <prefix>"
                       f"{html.escape(p)}</prefix>\n      <artifactId>{html.escape(a)}"
                       "</artifactId>\n    </plugin>\n" for a, p in sorted(prefixes.items()))
        _with_sums(root / group.replace(".", "/") / "maven-metadata.xml",
                   "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata>\n  <plugins>\n"
                   f"{body}  </plugins>\n</metadata>\n")
    return {"artifacts": len(versions), "files": len(manifest["layers"]),
            "plugins": sum(len(p) for p in plugins.values())}


def _with_sums(path: Path, text: str) -> None:
    """A generated file and its .sha1 and .sha256, as a Maven repository serves them."""
    data = text.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.with_name(path.name + ".sha1").write_text(
        hashlib.sha1(data, usedforsecurity=False).hexdigest())
    path.with_name(path.name + ".sha256").write_text(hashlib.sha256(data).hexdigest())


# --------------------------------------------------------------------------- go

GO_FILE = re.compile(r"^(?P<path>.+)/@v/(?P<version>[^/]+)\.(?P<ext>info|mod|zip)$")
PSEUDO = re.compile(r"(^|[-.])(0|[0-9]{14})-[0-9a-f]{12}(\+incompatible)?$")


def _go(put: _Out, manifest: dict[str, Any], root: Path, sumdb: Path) -> dict[str, Any]:
    """The GOPROXY tree, and the site's checksum database with this bundle's hashes added."""
    from installer.bundle import gosumdb

    signer = gosumdb.Signer.load(sumdb)
    hashes: dict[tuple[str, str], dict[str, str]] = {}
    listed: dict[str, set[str]] = {}
    for layer in manifest["layers"]:
        ann = layer["annotations"]
        rel = _safe_rel(ann[TITLE])
        m = GO_FILE.match(rel)
        if not m:
            raise IntegrityError(f"go file {rel!r} is not in the module proxy's layout")
        put.put(layer, root / rel)
        key = (ann["dev.airlock.package.name"], ann["dev.airlock.package.version"])
        if m["ext"] in ("zip", "mod"):
            h1 = ann.get("dev.airlock.go.h1")
            if not h1:
                raise IntegrityError(f"go file {rel!r} has no h1 hash in the bundle")
            hashes.setdefault(key, {})[m["ext"]] = h1
        if m["ext"] == "info" and not PSEUDO.search(key[1]):
            listed.setdefault(m["path"], set()).add(key[1])
    for path, versions in listed.items():
        (root / path / "@v" / "list").write_text("".join(v + "\n" for v in sorted(versions)))
    records = []
    for (module, version), h in hashes.items():
        if "mod" not in h:
            raise IntegrityError(f"{module}@{version}: the bundle carries its zip without "
                                 "its go.mod")
        records.append(gosumdb.Record(module, version, h.get("zip"), h["mod"]))
    log, added = gosumdb.append(sumdb, records)
    for rel, data in gosumdb.static_files(log, signer).items():
        dest = root / "sumdb" / signer.name / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return {"modules": len(listed), "files": len(manifest["layers"]),
            "sumdb": {"name": signer.name, "verifier": signer.verifier(),
                      "records": len(log), "added": added}}


# --------------------------------------------------------------------------- content

def _content(put: _Out, content: list[tuple[str, dict[str, Any]]], root: Path) -> dict[str, int]:
    counts = {"models": 0, "vsix": 0, "files": 0}
    for kind, manifest in content:
        ann = manifest["annotations"]
        name = _safe_rel(ann["dev.airlock.name"])
        if kind == "model":
            base = root / "models" / name / _safe_rel(ann.get("org.opencontainers.image.version",
                                                               "latest"))
            counts["models"] += 1
        elif kind == "vsix":
            base = root / "vsix"
            counts["vsix"] += 1
        else:
            base = root / "files" / name
            counts["files"] += 1
        for layer in manifest["layers"]:
            put.put(layer, base / _safe_rel(layer["annotations"][TITLE]))
    return counts
