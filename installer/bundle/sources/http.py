"""HTTP for sources: one session with retries and exponential backoff, explicit timeouts,
TLS verification on by default, and downloads streamed into the blob store."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from installer.bundle.digest import Advance
from installer.bundle.store import DigestMismatch, Layout
from installer.errors import SourceError


@dataclass(frozen=True)
class FetchOptions:
    timeout: float = 30.0  # seconds to connect and between bytes
    retries: int = 4
    backoff: float = 0.5  # 0.5, 1, 2, 4 s between tries


def session(opts: FetchOptions) -> requests.Session:
    s = requests.Session()
    retry = Retry(total=opts.retries, connect=opts.retries, read=opts.retries,
                  status=opts.retries, backoff_factor=opts.backoff,
                  status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=frozenset({"GET", "HEAD"}), raise_on_status=False,
                  respect_retry_after_header=True)
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    s.headers["User-Agent"] = "airlock"
    s.trust_env = False  # no proxies or netrc picked up behind the operator's back
    s.verify = system_ca()
    return s


SYSTEM_CAS = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def system_ca() -> str | bool:
    """The host's CA store (what apt, pip and npm trust here), not certifi's copy: a
    staging host behind a bank's TLS-inspecting proxy trusts that proxy's CA there."""
    for path in SYSTEM_CAS:
        if os.path.isfile(path):
            return path
    return True


def describe_request_error(what: str, e: requests.RequestException) -> SourceError:
    if isinstance(e, requests.exceptions.SSLError):
        return SourceError(f"{what}: TLS verification failed ({_root(e)})",
                           hint="give the registry's CA with ca_file:, or fix its certificate")
    if isinstance(e, requests.exceptions.Timeout | requests.exceptions.ReadTimeout):
        return SourceError(f"{what}: timed out after retries ({_root(e)})",
                           hint="check that the server answers; --timeout and --retries tune this")
    if isinstance(e, requests.exceptions.ConnectionError):
        return SourceError(f"{what}: cannot connect ({_root(e)})",
                           hint="check the host and port, and that the server is running")
    return SourceError(f"{what}: {_root(e)}")


def _root(e: BaseException) -> str:
    while e.__context__ is not None and e.__context__ is not e:
        e = e.__context__
    text = str(e)
    return text if len(text) < 300 else text[:300] + "..."


def download(url: str, sha256: str | None, store: Layout, opts: FetchOptions,
             advance: Advance | None = None, sri: str | None = None) -> tuple[str, int]:
    """Stream ``url`` into the store; the bytes must hash to ``sha256`` (hex) and/or match
    the SRI value ``sri`` (npm's ``sha512-…`` integrity)."""
    expected = "sha256:" + sha256 if sha256 else None
    if expected and store.has(expected):
        return expected, store.blob_path(expected).stat().st_size
    parsed = urllib.parse.urlparse(url)
    try:
        if parsed.scheme == "file":
            path = Path(urllib.parse.unquote(parsed.path))
            try:
                with open(path, "rb") as f:
                    return store.put_stream(f, expected, advance, sri=sri)
            except OSError as e:
                raise SourceError(f"{url}: cannot read ({e.strerror})") from None
        with session(opts).get(url, stream=True, timeout=opts.timeout) as r:
            if r.status_code != 200:
                raise SourceError(f"{url}: server answered HTTP {r.status_code}")
            r.raw.decode_content = True
            return store.put_stream(r.raw, expected, advance, sri=sri)
    except DigestMismatch as e:
        what = "integrity" if e.expected.startswith("sha512") else "sha256"
        raise SourceError(f"{url}: {what} differs from what was expected: expected "
                          f"{e.expected.removeprefix('sha256:')}, downloaded "
                          f"{e.actual.removeprefix('sha256:')}",
                          hint="the file changed upstream or the copy is damaged; "
                               "nothing was stored") from None
    except requests.RequestException as e:
        raise describe_request_error(url, e) from None


def env_secret(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SourceError(f"{what}: environment variable {name} is not set",
                          hint=f"export {name}=... before building")
    return value
