"""VSIX extensions named by id and version in an Open VSX registry.

The registry's API (``GET /api/NAMESPACE/NAME[/TARGET]/VERSION``) says where the file is
(``files.download``) and where its SHA-256 is published (``files.sha256``, a URL whose body
is the hex digest). The first build asks; the lock then pins the URL and the digest, so a
later build downloads exactly those bytes without asking again, and a registry that
changes them is refused. What the registry says is untrusted input: its answer is size-
capped, its URLs must be http(s), and the package downloaded must be the extension and
version asked for (checked by the build from the VSIX's own manifest).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import replace
from typing import Any

import requests

from installer.bundle.sources.http import (
    FetchOptions,
    describe_request_error,
    read_limited,
    session,
)
from installer.bundle.spec import ContentEntry, Marketplace, RemoteFile

ANSWER_LIMIT = 1 << 20  # an extension's metadata is a few KiB
HEX64 = re.compile(r"[0-9a-f]{64}")


def api_url(m: Marketplace) -> str:
    ns, name = m.id.split(".", 1)
    parts = [ns, name] + ([m.target] if m.target != "universal" else []) + [m.version]
    return f"{m.registry}/api/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)


def _get(url: str, opts: FetchOptions, entry: ContentEntry, what: str) -> bytes:
    try:
        with session(opts).get(url, stream=True, timeout=opts.timeout) as r:
            if r.status_code == 404:
                raise entry.at.source_error(
                    f"{entry.marketplace.id} {entry.marketplace.version}"  # type: ignore[union-attr]
                    f" ({entry.marketplace.target}) is not in {entry.marketplace.registry}",  # type: ignore[union-attr]
                    hint="check the id, the exact version and target_platform (platform-"
                         "specific extensions need one, e.g. linux-x64)")
            if r.status_code != 200:
                raise entry.at.source_error(f"{url}: the registry answered HTTP "
                                            f"{r.status_code} for {what}")
            return read_limited(r, url, ANSWER_LIMIT, opts, what)
    except requests.RequestException as e:
        raise describe_request_error(url, e) from None


def _http_url(value: Any, base: str, entry: ContentEntry, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise entry.at.source_error(f"the registry's answer has no {field}")
    url = urllib.parse.urljoin(base, value)
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise entry.at.source_error(f"the registry's {field} is not an http(s) URL: "
                                    f"{url[:200]!r}")
    return url


def resolve(entry: ContentEntry, pinned: dict[str, Any] | None, opts: FetchOptions
            ) -> ContentEntry:
    """ENTRY with its one remote file: from the lock when it pins one (no question asked),
    else from the registry's answer. A sha256 in the spec must match the registry's."""
    m = entry.marketplace
    assert m is not None
    fname = f"{m.id}-{m.version}.vsix"
    if pinned and pinned.get("url") and len(pinned.get("files", {})) == 1:
        (digest,) = pinned["files"].values()
        hexd = digest.removeprefix("sha256:")
        if m.sha256 and m.sha256 != hexd:
            raise entry.at.error(f"sha256 {m.sha256} differs from the lock's {hexd}",
                                 hint="rebuild with --update-lock to pin the spec's value")
        size = (pinned.get("sizes") or {}).get(next(iter(pinned["files"])))
        return replace(entry, remote=(RemoteFile(fname, pinned["url"], hexd, size),))
    api = api_url(m)
    try:
        meta = json.loads(_get(api, opts, entry, "the extension's metadata"))
    except ValueError:
        raise entry.at.source_error(f"{api}: the registry's answer is not JSON") from None
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict):
        raise entry.at.source_error(f"{api}: the answer has no 'files'")
    download = _http_url(files.get("download"), api, entry, "files.download")
    sha_url = _http_url(files.get("sha256"), api, entry, "files.sha256")
    published = _get(sha_url, opts, entry, "the published sha256").decode(
        "ascii", "replace").strip().split()[:1]
    if not published or not HEX64.fullmatch(published[0].lower()):
        raise entry.at.source_error(f"{sha_url}: not a SHA-256 in hex")
    sha = published[0].lower()
    if m.sha256 and m.sha256 != sha:
        raise entry.at.source_error(
            f"the registry publishes sha256 {sha} for {m.id} {m.version}, the spec pins "
            f"{m.sha256}", hint="nothing was downloaded; find out which one is right")
    return replace(entry, remote=(RemoteFile(fname, download, sha),))
