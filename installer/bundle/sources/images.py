"""Container images from four sources, copied into the bundle as OCI images.

- ``[docker://]HOST/REPO:TAG[@sha256:…]``: an OCI registry over the distribution API (TLS,
  basic and bearer-token auth, retries with backoff); manifests are kept byte for byte, so
  the digest a registry shows is the digest in the bundle.
- ``docker-daemon:REPO:TAG``: a local container engine through the docker SDK (``docker
  save``), converted like an archive.
- ``oci:DIR[:REF]``: an OCI image layout, copied byte for byte.
- ``docker-archive:FILE[:REPO:TAG]``: a ``docker save`` tarball, converted to an OCI image
  manifest with its layers unchanged (so layer digests equal their diff_ids).

Every blob is streamed and checked against its digest while it is copied.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

from installer.bundle import transfer
from installer.bundle.digest import DIGEST_RE, Advance, sha256_bytes
from installer.bundle.pack import BoundedTarInfo, HeaderRefused
from installer.bundle.sources.http import (
    TOKEN_LIMIT,
    FetchOptions,
    _root,
    describe_request_error,
    env_secret,
    open_body,
    read_limited,
    session,
)
from installer.bundle.spec import ImageEntry, Located
from installer.bundle.store import (
    A_REF,
    A_SOURCE_DIGEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MT_DOCKER_CONFIG,
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
    MT_OCI_CONFIG,
    MT_OCI_INDEX,
    MT_OCI_LAYER,
    MT_OCI_LAYER_GZIP,
    MT_OCI_LAYER_ZSTD,
    MT_OCI_MANIFEST,
    Descriptor,
    DigestMismatch,
    Layout,
    canonical_json,
)
from installer.errors import SourceError
from installer.untrusted import (
    LIMITS,
    open_stream,
    parse_json,
    read_bytes,
    read_json,
    sha256_digest,
)

ACCEPT = ", ".join([MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST])
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
MAX_ARCHIVE_MEMBERS = 100_000  # docker save: a few per layer (a 127-layer image: ~400)


# --------------------------------------------------------------------------- references

@dataclass(frozen=True)
class ImageRef:
    transport: str  # docker | docker-daemon | oci | docker-archive
    host: str = ""
    repository: str = ""
    tag: str | None = None
    digest: str | None = None
    path: str = ""  # oci / docker-archive
    ref: str | None = None  # oci ref name, or repo:tag inside an archive

    def default_name(self) -> str:
        if self.transport in ("docker", "docker-daemon"):
            base = self.repository.rsplit("/", 1)[-1]
        elif self.ref:
            base = self.ref.split(":")[0].rsplit("/", 1)[-1]
        else:
            base = Path(self.path).name.split(".")[0]
        return re.sub(r"[^a-z0-9._-]", "-", base.lower()) or "image"

    @property
    def version(self) -> str | None:
        if self.tag:
            return self.tag
        if self.ref and ":" in self.ref:
            return self.ref.rsplit(":", 1)[1]
        return self.ref if self.transport == "oci" else None


def parse_ref(text: str, at: Located) -> ImageRef:
    def bad(why: str) -> Exception:
        return at.error(f"image reference {text!r}: {why}")

    if text.startswith("oci:"):
        rest = text[4:]
        has_ref = re.search(r":[A-Za-z0-9._-]+$", rest)
        path, _, ref = rest.rpartition(":") if has_ref else (rest, "", "")
        if not path:
            raise bad("expected oci:DIR[:REF]")
        return ImageRef("oci", path=path, ref=ref or None)
    if text.startswith("docker-archive:"):
        path, _, ref = text[len("docker-archive:"):].partition(":")
        if not path:
            raise bad("expected docker-archive:FILE[:REPO:TAG]")
        return ImageRef("docker-archive", path=path, ref=ref or None)
    transport = "docker"
    if text.startswith("docker-daemon:"):
        transport, text_ = "docker-daemon", text[len("docker-daemon:"):]
    else:
        text_ = text.removeprefix("docker://")
    name, _, digest = text_.partition("@")
    if digest and not DIGEST_RE.match(digest):
        raise bad("the digest must be sha256: and 64 lower-case hex digits")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not TAG_RE.match(tag):
            raise bad(f"{tag!r} is not a valid tag")
    if transport == "docker-daemon":
        if not tag and not digest:
            tag = "latest"
        return ImageRef(transport, repository=name, tag=tag, digest=digest or None)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repo = first, rest
    else:
        host, repo = "docker.io", name if "/" in name else f"library/{name}"
    if not REPO_RE.match(repo):
        raise bad(f"{repo!r} is not a valid repository name (lower case, '/'-separated)")
    if not tag and not digest:
        raise bad("give a tag or a digest (an implicit 'latest' is not reproducible)")
    return ImageRef("docker", host=host, repository=repo, tag=tag, digest=digest or None)


# --------------------------------------------------------------------------- result

@dataclass
class PulledImage:
    manifest: Descriptor  # as stored in the bundle: always an OCI image manifest
    config: Descriptor
    layers: list[Descriptor]
    platform: str
    source_digest: str  # the manifest's digest at the source (what the lock pins)
    index_digest: str | None = None


# Docker schema 2 -> OCI: same config and layer bytes, only the media types change.
DOCKER_TO_OCI = {
    MT_DOCKER_CONFIG: MT_OCI_CONFIG,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": MT_OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": MT_OCI_LAYER,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}


def _as_oci(desc: Descriptor) -> Descriptor:
    mt = DOCKER_TO_OCI.get(desc.media_type, desc.media_type)
    return Descriptor(mt, desc.digest, desc.size, desc.annotations, desc.artifact_type,
                      desc.platform)


def platform_of(p: dict[str, Any]) -> str:
    s = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return s + (f"/{p['variant']}" if p.get("variant") else "")


def _platform_matches(have: dict[str, Any], want: str) -> bool:
    os_, arch, *variant = want.split("/")
    if have.get("os") != os_ or have.get("architecture") != arch:
        return False
    if variant:
        hv = have.get("variant") or ("v8" if arch == "arm64" else None)
        return hv == variant[0]
    return True


# --------------------------------------------------------------------------- generic copy

BlobOpener = Callable[[Descriptor], Any]  # context manager yielding a binary stream


def _copy_blob(store: Layout, desc: Descriptor, opener: BlobOpener, what: str,
               advance: Advance | None) -> None:
    if store.has(desc.digest):
        if advance:
            advance(desc.size)
        return
    try:
        with opener(desc) as stream:
            _, size = store.put_stream(stream, desc.digest, advance, limit=desc.size)
    except DigestMismatch as e:
        raise SourceError(f"{what}: blob {desc.digest} is damaged (its bytes hash to "
                          f"{e.actual})") from None
    except OverflowError:
        raise SourceError(f"{what}: blob {desc.digest} is larger than its descriptor says "
                          f"({desc.size} bytes)") from None
    if size != desc.size:
        raise SourceError(f"{what}: blob {desc.digest} has {size} bytes, its descriptor "
                          f"says {desc.size}")


def _select_platform(index: dict, want: str, what: str) -> Descriptor:
    found = []
    for m in index.get("manifests", []):
        p = m.get("platform") or {}
        found.append(platform_of(p))
        if _platform_matches(p, want) and m.get("mediaType") in MANIFEST_TYPES:
            return Descriptor.from_json(m, f"{what}: an index entry")
    raise SourceError(f"{what}: no {want} image in its index; it has "
                      + (", ".join(sorted(set(found))) or "no platform entries"),
                      hint="set platform: on the image entry, or target.platform")


def _parse_json(data: bytes, what: str) -> dict:
    try:
        obj = json.loads(data)
    except ValueError:
        raise SourceError(f"{what}: manifest is not valid JSON") from None
    if not isinstance(obj, dict):
        raise SourceError(f"{what}: manifest is not a JSON object")
    return obj


def _copy_manifest_tree(store: Layout, raw: bytes, media_type: str, want: str,
                        fetch_manifest: Callable[[str], tuple[bytes, str]],
                        opener: BlobOpener, what: str, progress: Any,
                        index_digest: str | None = None) -> PulledImage:
    doc = _parse_json(raw, what)
    media_type = doc.get("mediaType") or media_type
    if media_type in INDEX_TYPES or "manifests" in doc:
        chosen = _select_platform(doc, want, what)
        sub_raw, sub_type = fetch_manifest(chosen.digest)
        if sha256_bytes(sub_raw) != chosen.digest:
            raise SourceError(f"{what}: manifest {chosen.digest} does not match its digest")
        return _copy_manifest_tree(store, sub_raw, sub_type or chosen.media_type, want,
                                   fetch_manifest, opener, what, progress,
                                   index_digest=sha256_bytes(raw))
    if doc.get("schemaVersion") != 2 or "config" not in doc or "layers" not in doc:
        raise SourceError(f"{what}: unsupported manifest (schema 1 or not an image)",
                          hint="re-push the image with a current tool (schema 2 / OCI)")
    if not isinstance(doc["layers"], list):
        raise SourceError(f"{what}: the manifest's layers are not a list")
    config = Descriptor.from_json(doc["config"], f"{what}: the manifest's config")
    layers = [Descriptor.from_json(d, f"{what}: layer {i + 1}")
              for i, d in enumerate(doc["layers"])]
    total = config.size + sum(d.size for d in layers)
    task = progress.add_task(f"pull {what}", total=total)

    def adv(n: int) -> None:
        progress.advance(task, n)

    _copy_blob(store, config, opener, what, adv)
    conf = _parse_json(read_bytes(store.blob_path(config.digest), LIMITS["manifest"],
                                  what=f"{what} config", error=SourceError), what + " config")
    have = {"os": conf.get("os"), "architecture": conf.get("architecture"),
            "variant": conf.get("variant")}
    if not _platform_matches(have, want):
        raise SourceError(f"{what}: image is {platform_of(have)}, the spec wants {want}",
                          hint="set platform: on the image entry if that is intended")
    for layer in layers:
        _copy_blob(store, layer, opener, what, adv)
    source_digest = sha256_bytes(raw)
    if media_type == MT_DOCKER_MANIFEST:
        # OCI layout readers (skopeo, oras) look for OCI manifests; keep the source digest
        # in an annotation and in bundle.json so provenance is not lost.
        config, layers = _as_oci(config), [_as_oci(d) for d in layers]
        oci = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "config": config.to_json(),
               "layers": [d.to_json() for d in layers],
               "annotations": {A_SOURCE_DIGEST: source_digest}}
        raw, media_type = canonical_json(oci), MT_OCI_MANIFEST
    digest, size = store.put_bytes(raw)
    return PulledImage(Descriptor(media_type, digest, size), config, layers,
                       platform_of(have), source_digest, index_digest)


# --------------------------------------------------------------------------- registry

class Registry:
    """Just enough of the OCI distribution API to pull: manifests and blobs, with auth."""

    def __init__(self, host: str, *, tls_verify: bool = True, ca_file: Path | None = None,
                 username: str | None = None, password: str | None = None,
                 opts: FetchOptions | None = None):
        self.host = "registry-1.docker.io" if host == "docker.io" else host
        self.opts = opts = opts or FetchOptions()
        self.http = session(opts)
        self.http.verify = str(ca_file) if ca_file else tls_verify
        self.creds = (username, password) if username else None
        self.tls_verify = tls_verify
        self.scheme = "https"
        self._token: dict[str, str] = {}

    def _url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{path}"

    def request(self, path: str, repo: str, *, headers: dict[str, str] | None = None,
                stream: bool = False) -> requests.Response:
        """GET ``/v2/PATH``, authenticating on a 401: once when no token is cached, and once
        more when a cached token is refused (it expired mid-pull); a 401 after that is an
        error."""
        headers = dict(headers or {})
        if repo in self._token:
            headers["Authorization"] = self._token[repo]
        try:
            r = self._get(path, headers, stream)
        except requests.exceptions.SSLError as e:
            if self.tls_verify or self.scheme == "http":
                raise
            if self.creds:
                raise self._cleartext(f"TLS failed ({_root(e)}); plain HTTP would carry the "
                                      "credentials in auth: in clear text") from None
            self.scheme = "http"  # tls_verify: false also allows plain HTTP, like skopeo
            r = self._get(path, headers, stream)
        if r.status_code == 401:
            r.close()
            expired = self._token.pop(repo, None) is not None
            self._token[repo] = self._authorize(r.headers.get("WWW-Authenticate", ""), repo)
            headers["Authorization"] = self._token[repo]
            r = self._get(path, headers, stream)
            if r.status_code == 401:
                r.close()
                when = "to a new token too, after the cached one expired" if expired else \
                    "after authenticating"
                raise SourceError(f"registry {self.host}: {path}: the registry refused access "
                                  f"(HTTP 401) {when}",
                                  hint="check the credentials in auth: and that they may pull "
                                       f"{repo}")
        return r

    def _get(self, path: str, headers: dict[str, str], stream: bool) -> requests.Response:
        if "Authorization" in headers and self.scheme != "https":
            raise self._cleartext("it asks for authentication over plain HTTP")
        return self.http.get(self._url(path), headers=headers, stream=stream,
                             timeout=self.opts.timeout)

    def _cleartext(self, why: str) -> SourceError:
        """Credentials and tokens never travel over plain HTTP."""
        return SourceError(f"registry {self.host}: {why}; airlock never sends credentials or "
                           "tokens unencrypted",
                           hint="serve the registry and its token service over HTTPS (ca_file: "
                                "for a private CA, tls_verify: false for an unverified "
                                "certificate), or remove auth: if it needs none")

    def _authorize(self, challenge: str, repo: str) -> str:
        scheme, _, params = challenge.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if scheme.lower() == "basic":
            if not self.creds:
                raise SourceError(f"registry {self.host} needs credentials",
                                  hint="add auth: {username: ..., password_env: VAR}")
            return requests.auth._basic_auth_str(*self.creds)
        if scheme.lower() == "bearer" and "realm" in fields:
            if self.creds and not fields["realm"].lower().startswith("https://"):
                raise self._cleartext(f"its token service {fields['realm']} is not HTTPS")
            query = {"scope": f"repository:{repo}:pull"}
            if "service" in fields:
                query["service"] = fields["service"]
            service = f"token service {fields['realm']}"
            try:
                with self.http.get(fields["realm"], params=query, auth=self.creds,
                                   timeout=self.opts.timeout, stream=True) as r:
                    if r.status_code != 200:
                        raise SourceError(f"registry {self.host}: token service refused "
                                          f"(HTTP {r.status_code})",
                                          hint="check the username and password for this "
                                               "registry")
                    raw = read_limited(r, service, TOKEN_LIMIT, self.opts,
                                       "a token service's answer")
            except requests.RequestException as e:
                raise describe_request_error(service, e) from None
            body = parse_json(raw, service, error=SourceError)
            token = body.get("token") or body.get("access_token") \
                if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise SourceError(f"registry {self.host}: token service gave no token")
            return f"Bearer {token}"
        raise SourceError(f"registry {self.host}: unsupported auth challenge {challenge!r}")

    def manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        what = f"{self.host}/{repo}:{reference}" if not reference.startswith("sha256:") \
            else f"{self.host}/{repo}@{reference}"
        limit = LIMITS["manifest"]
        try:
            with transfer.transfer(what, self.opts.seconds_for(limit)), \
                    self.request(f"{repo}/manifests/{reference}", repo,
                                 headers={"Accept": ACCEPT}, stream=True) as r:
                if r.status_code == 404:
                    raise SourceError(f"{what}: not found in the registry "
                                      f"(no such tag, digest or repository)")
                if r.status_code in (401, 403):
                    raise SourceError(f"{what}: the registry refused access "
                                      f"(HTTP {r.status_code})",
                                      hint="check the credentials in auth:")
                if r.status_code != 200:
                    raise SourceError(f"{what}: the registry answered HTTP {r.status_code}")
                data = read_limited(r, what, limit, self.opts, "a manifest")
                media_type = r.headers.get("Content-Type", "").split(";")[0]
        except requests.RequestException as e:
            raise describe_request_error(what, e) from None
        if reference.startswith("sha256:") and sha256_bytes(data) != reference:
            raise SourceError(f"{what}: the registry served a manifest with another digest")
        return data, media_type

    @contextmanager
    def blob(self, repo: str, desc: Descriptor) -> Iterator[IO[bytes]]:
        what = f"{self.host}/{repo}@{desc.digest}"
        try:
            with transfer.transfer(what, self.opts.seconds_for(desc.size)) as t, \
                    self.request(f"{repo}/blobs/{desc.digest}", repo, stream=True) as r:
                if r.status_code != 200:
                    raise SourceError(f"{what}: the registry answered HTTP {r.status_code}")
                # the descriptor's size bounds the body: stopped at the first byte past it
                yield open_body(r, t, what, desc.size, desc.size, self.opts, decode=False)
        except requests.RequestException as e:
            raise describe_request_error(what, e) from None
        except Exception as e:  # urllib3 errors while streaming
            if type(e).__module__.startswith("urllib3"):
                raise SourceError(f"{what}: transfer failed ({_root(e)})") from None
            raise


def _pull_registry(ref: ImageRef, entry: ImageEntry, pinned: str | None, store: Layout,
                   opts: FetchOptions, progress: Any) -> PulledImage:
    password = env_secret(entry.password_env, f"image {entry.name}") \
        if entry.password_env else None
    reg = Registry(ref.host, tls_verify=entry.tls_verify, ca_file=entry.ca_file,
                   username=entry.username, password=password, opts=opts)
    reference = pinned or ref.digest or ref.tag or "latest"
    raw, mt = reg.manifest(ref.repository, reference)
    what = f"{ref.host}/{ref.repository}"
    return _copy_manifest_tree(store, raw, mt, entry.platform,
                               lambda d: reg.manifest(ref.repository, d),
                               lambda d: reg.blob(ref.repository, d), what, progress,
                               index_digest=None)


# --------------------------------------------------------------------------- OCI layout

def _pull_oci(ref: ImageRef, entry: ImageEntry, base: Path, store: Layout,
              progress: Any) -> PulledImage:
    """An OCI layout folder: index.json and manifests read once, bounded, only if regular
    files; digests checked before they become paths; blobs streamed from regular files."""
    root = (base / ref.path)
    what = f"oci:{ref.path}" + (f":{ref.ref}" if ref.ref else "")
    if not os.path.lexists(root / "index.json"):
        raise SourceError(f"{what}: not a readable OCI layout (no index.json)")
    index = read_json(root / "index.json", LIMITS["index.json"], what=f"{what}: index.json",
                      error=SourceError)
    entries = index.get("manifests", []) if isinstance(index, dict) else None
    if not isinstance(entries, list) or not all(isinstance(m, dict) for m in entries):
        raise SourceError(f"{what}: index.json: manifests must be a list of objects")
    if ref.ref:
        entries = [m for m in entries
                   if (m.get("annotations") or {}).get(A_REF) == ref.ref]
    if len(entries) != 1:
        raise SourceError(f"{what}: found {len(entries)} matching manifests, expected 1",
                          hint="name the image: oci:DIR:REF")

    def blob_path(digest: Any) -> Path:
        return root / "blobs" / "sha256" / sha256_digest(digest, f"{what}: a digest",
                                                         error=SourceError)[7:]

    def fetch(digest: str) -> tuple[bytes, str]:
        path = blob_path(digest)
        if not os.path.lexists(path):
            raise SourceError(f"{what}: missing blob {digest}")
        return read_bytes(path, LIMITS["manifest"], what=f"{what}: manifest {digest}",
                          error=SourceError), ""

    @contextmanager
    def opener(d: Descriptor) -> Iterator[IO[bytes]]:
        path = blob_path(d.digest)
        if not os.path.lexists(path):
            raise SourceError(f"{what}: missing blob {d.digest}")
        with open_stream(path, what=f"{what}: blob {d.digest}", error=SourceError) as f:
            yield f

    try:
        top = Descriptor.from_json(entries[0])
    except (KeyError, TypeError, ValueError) as e:
        raise SourceError(f"{what}: index.json: a bad descriptor ({e})") from None
    raw, _ = fetch(top.digest)
    if sha256_bytes(raw) != top.digest:
        raise SourceError(f"{what}: manifest {top.digest} is damaged")
    return _copy_manifest_tree(store, raw, top.media_type, entry.platform, fetch, opener,
                               what, progress)


# --------------------------------------------------------------------------- docker archive

def _layer_media_type(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return MT_OCI_LAYER_GZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return MT_OCI_LAYER_ZSTD
    return MT_OCI_LAYER


def convert_docker_archive(path: Path, wanted: str | None, platform: str, store: Layout,
                           what: str, progress: Any) -> PulledImage:
    """A ``docker save`` tarball -> OCI manifest + config + layers (layer bytes unchanged)."""
    # a regular file, opened once; the operator's own input, so a link to it is followed
    # (the lab links bundles/sample/build/code-server.tar to its cache)
    raw = open_stream(path, what=what, error=SourceError, follow_links=True)
    with raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic[:2] == b"\x1f\x8b" or magic == b"\x28\xb5\x2f\xfd":
            raise SourceError(f"{what}: the archive is compressed",
                              hint="decompress it first (gunzip / unzstd): layers are read "
                                   "by random access, which a compressed stream does not "
                                   "allow")
        try:
            tar = tarfile.open(fileobj=raw, mode="r:",  # noqa: SIM115 - closed below
                               tarinfo=BoundedTarInfo)
        except (OSError, tarfile.TarError, HeaderRefused) as e:
            raise SourceError(f"{what}: not a readable tar archive ({e})",
                              hint="the archive is corrupt or not made by docker save") \
                from None
        with tar:
            return _convert(tar, wanted, platform, store, what, progress)


def _convert(tar: tarfile.TarFile, wanted: str | None, platform: str, store: Layout,
             what: str, progress: Any) -> PulledImage:
    try:
        members: dict[str, tarfile.TarInfo] = {}
        for i, m in enumerate(tar):  # headers only; bounded in count
            if i >= MAX_ARCHIVE_MEMBERS:
                raise SourceError(f"{what}: more than {MAX_ARCHIVE_MEMBERS} members; not "
                                  "an archive docker save wrote")
            members[m.name] = m

        def member_bytes(name: str, cap: int = LIMITS["manifest"]) -> bytes:
            m = members[name]
            if not m.isfile() or m.size > cap:
                raise SourceError(f"{what}: {name} is not a small regular file")
            f = tar.extractfile(m)
            assert f is not None
            return f.read(cap)

        manifest = parse_json(member_bytes("manifest.json"), f"{what}: manifest.json",
                              error=SourceError)
        if not isinstance(manifest, list) or not all(
                isinstance(m, dict) and type(m.get("Config")) is str
                and isinstance(m.get("Layers"), list)
                and all(type(x) is str for x in m["Layers"]) for m in manifest):
            raise SourceError(f"{what}: manifest.json is not docker save's list of "
                              "images (Config, Layers)")
        if wanted:
            chosen = [m for m in manifest if wanted in (m.get("RepoTags") or [])]
        else:
            chosen = manifest
        if len(chosen) != 1:
            tags = sorted(t for m in manifest for t in (m.get("RepoTags") or []))
            raise SourceError(f"{what}: {len(chosen)} images match; the archive has "
                              + (", ".join(tags) or "untagged images"),
                              hint="name one: docker-archive:FILE:REPO:TAG")
        entry = chosen[0]
        config_raw = member_bytes(entry["Config"])
        config = parse_json(config_raw, f"{what}: {entry['Config']}", error=SourceError)
        if not isinstance(config, dict):
            raise SourceError(f"{what}: {entry['Config']} is not a JSON object")
        have = {"os": config.get("os"), "architecture": config.get("architecture"),
                "variant": config.get("variant")}
        if not _platform_matches(have, platform):
            raise SourceError(f"{what}: image is {platform_of(have)}, the spec wants "
                              f"{platform}")
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(entry["Layers"]):
            raise SourceError(f"{what}: config lists {len(diff_ids)} layers, the archive "
                              f"{len(entry['Layers'])}")
        layer_members = [members[name] for name in entry["Layers"]]
        task = progress.add_task(f"convert {what}",
                                 total=sum(m.size for m in layer_members))
        layers = []
        for m, diff_id in zip(layer_members, diff_ids, strict=True):
            f = tar.extractfile(m)
            if f is None:
                raise SourceError(f"{what}: layer {m.name} is not a regular file")
            head = f.read(4)
            f.seek(0)
            digest, size = store.put_stream(f, advance=lambda n: progress.advance(task, n))
            mt = _layer_media_type(head)
            if mt == MT_OCI_LAYER and digest != diff_id:
                raise SourceError(f"{what}: layer {m.name} hashes to {digest}, its config "
                                  f"says {diff_id}", hint="the archive is damaged")
            layers.append(Descriptor(mt, digest, size))
    except KeyError as e:
        raise SourceError(f"{what}: archive lacks {e}",
                          hint="the archive is corrupt or not made by docker save") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, HeaderRefused) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise SourceError(f"{what}: archive is truncated or corrupt ({e})") from None
    cdigest, csize = store.put_bytes(config_raw)
    cdesc = Descriptor(MT_OCI_CONFIG, cdigest, csize)
    doc = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "config": cdesc.to_json(),
           "layers": [d.to_json() for d in layers]}
    mdigest, msize = store.put_bytes(canonical_json(doc))
    return PulledImage(Descriptor(MT_OCI_MANIFEST, mdigest, msize), cdesc, layers,
                       platform_of(have), mdigest)


# --------------------------------------------------------------------------- local engine

def _pull_daemon(ref: ImageRef, entry: ImageEntry, store: Layout, progress: Any) -> PulledImage:
    import docker  # the SDK is only needed for this source
    from docker.errors import DockerException, ImageNotFound

    name = ref.repository + (f":{ref.tag}" if ref.tag else "") + \
        (f"@{ref.digest}" if ref.digest else "")
    what = f"docker-daemon:{name}"
    try:
        client = docker.from_env(timeout=120)
        image = client.images.get(name)
    except ImageNotFound:
        raise SourceError(f"{what}: the local engine has no such image",
                          hint="docker load or docker pull it first") from None
    except DockerException as e:
        raise SourceError(f"{what}: no container engine answers ({_root(e)})",
                          hint="start the engine, or point DOCKER_HOST at it") from None
    with tempfile.NamedTemporaryFile(dir=store.tmp, suffix=".tar") as tmp:
        try:
            for chunk in image.save(named=True, chunk_size=4 * 1024 * 1024):
                tmp.write(chunk)
        except DockerException as e:
            raise SourceError(f"{what}: docker save failed ({_root(e)})") from None
        tmp.flush()
        wanted = f"{ref.repository}:{ref.tag}" if ref.tag else None
        return convert_docker_archive(Path(tmp.name), wanted, entry.platform, store, what,
                                      progress)


# --------------------------------------------------------------------------- entry point

def pull(entry: ImageEntry, base: Path, pinned: str | None, store: Layout, opts: FetchOptions,
         progress: Any) -> PulledImage:
    """Copy one spec image into ``store``. ``pinned`` (from the lock) is the platform
    manifest digest to fetch instead of resolving the tag again."""
    ref = parse_ref(entry.ref, entry.at)
    if ref.transport == "docker":
        return _pull_registry(ref, entry, pinned, store, opts, progress)
    if ref.transport == "oci":
        return _pull_oci(ref, entry, base, store, progress)
    if ref.transport == "docker-archive":
        return convert_docker_archive(base / ref.path, ref.ref, entry.platform, store,
                                      f"docker-archive:{ref.path}", progress)
    return _pull_daemon(ref, entry, store, progress)

