"""HTTP for sources: one session with retries and exponential backoff, explicit timeouts,
TLS verification on by default, and downloads streamed into the blob store.

Every download is bounded three ways (issue 15: a hostile or broken server must not fill
the disk or hold the build):

- size: the expected size travels with the expected hash (spec, lock, a Packages index, an
  OCI descriptor); without one, ``FetchOptions.max_size`` applies. A ``Content-Length``
  above it is refused before a byte of the body is read, and the body is counted while it
  streams: it stops at the first byte past the bound, so the store never holds more;
- time: ``timeout`` bounds each wait for a byte (urllib3's), and a total deadline per
  download (``deadline``, or 5 minutes plus 1 s per MiB expected) bounds a server that
  drips a byte now and then; the watchdog in ``installer.bundle.transfer`` shuts the
  socket down when it passes, whatever urllib3 is blocked in;
- cancel: Ctrl-C and SIGTERM shut every live socket down the same way (``transfer.cancel``),
  so parallel downloads stop within a moment.

Retries (urllib3's, for connection errors and 429/5xx answers) stay for transient failures;
a size or hash refusal is never retried, and no retry starts past the deadline or after a
cancel (a server's ``Retry-After`` is cut to the time left).
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from installer.bundle import transfer
from installer.bundle.digest import Advance
from installer.bundle.store import DigestMismatch, Layout
from installer.errors import SourceError
from installer.untrusted import GiB, MiB, human

DEFAULT_MAX_SIZE = 64 * GiB  # a download whose size nothing states (Hugging Face: 50 GB a file)
DEADLINE_BASE = 300.0  # seconds every download may take on top of its size at MIN_RATE,
MIN_RATE = 1 * MiB  # bytes per second (8 Mbit/s): below any staging host's link
TOKEN_LIMIT = 1 * MiB  # a registry token service's answer (a JWT is a few KiB)


@dataclass(frozen=True)
class FetchOptions:
    timeout: float = 30.0  # seconds to connect and between bytes
    retries: int = 4
    backoff: float = 0.5  # 0.5, 1, 2, 4 s between tries
    deadline: float | None = None  # seconds for one whole download; None: from its size
    max_size: int = DEFAULT_MAX_SIZE  # bytes, for a download whose size nothing states

    def seconds_for(self, size: int) -> float:
        """The total time one download of SIZE bytes may take."""
        if self.deadline:
            return self.deadline
        return DEADLINE_BASE + size / MIN_RATE


# urllib3's connections attach their socket to the transfer running in their thread when
# they connect and whenever a request is sent on them (a kept-alive one too): the watchdog
# and cancel() can then shut it down. The socket itself, not the connection: http.client
# drops a connection's socket as soon as an answer says it will close the connection (the
# answer reads on through its own reference).

class _Attached:
    sock: Any

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        t = transfer.current()
        if t is not None:
            t.attach(sock)
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        t = transfer.current()
        if t is not None and self.sock is not None:
            t.attach(self.sock)  # the TLS socket, once the handshake is done
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Attached, HTTPConnection):
    pass


class _HTTPSConnection(_Attached, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class _Retry(Retry):
    """urllib3's retries, but none past the transfer's deadline or after a cancel, and the
    waits between tries cut short by both."""

    def increment(self, *args: Any, **kwargs: Any) -> Retry:
        t = transfer.current()
        if t is not None:
            t.check()
        else:
            transfer.check_cancelled()
        return super().increment(*args, **kwargs)

    def sleep(self, response: Any = None) -> None:
        seconds = None
        if self.respect_retry_after_header and response is not None:
            seconds = self.get_retry_after(response)
        if not seconds:
            seconds = self.get_backoff_time()
        t = transfer.current()
        transfer.wait(min(seconds, t.remaining() if t else DEADLINE_BASE))
        if t is not None:
            t.check()


def session(opts: FetchOptions) -> requests.Session:
    s = requests.Session()
    retry = _Retry(total=opts.retries, connect=opts.retries, read=opts.retries,
                   status=opts.retries, backoff_factor=opts.backoff,
                   status_forcelist=(429, 500, 502, 503, 504),
                   allowed_methods=frozenset({"GET", "HEAD"}), raise_on_status=False,
                   respect_retry_after_header=True)
    adapter = _Adapter(max_retries=retry, pool_maxsize=16)
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


class Body:
    """A response body read as a stream, bounded: at most LIMIT bytes (the expected SIZE
    when known), stopped at the first byte past it; a short body, a broken connection or a
    passed deadline is a ``SourceError`` naming WHAT, never a truncated success."""

    def __init__(self, raw: Any, t: transfer.Transfer, what: str, limit: int,
                 size: int | None, opts: FetchOptions, kind: str | None = None):
        self.raw, self.t, self.what = raw, t, what
        self.limit, self.size, self.opts, self.kind = limit, size, opts, kind
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        # one byte past the bound tells it is passed; never all of a large body at once
        want = min(n if n is not None and n >= 0 else 1 << 20, self.limit - self.count + 1)
        try:
            data = self.raw.read(want)
        except (transfer.Cancelled, SourceError):
            raise
        except Exception as e:  # urllib3/http.client errors while streaming
            self.t.check()  # the watchdog or a cancel shut the socket: say that
            if "timed out" in str(e).lower():
                raise SourceError(f"{self.what}: no byte came for {self.opts.timeout:.0f} s "
                                  f"after {self.count} bytes",
                                  hint="--timeout sets how long to wait for a byte") from None
            raise SourceError(f"{self.what}: the transfer broke off after {self.count} bytes "
                              f"({_root(e)})") from None
        self.count += len(data)
        self.t.received = self.count
        if self.count > self.limit:
            raise too_large(self.what, self.limit, self.size,
                            f"more than {self.limit} bytes came", self.kind)
        if not data:
            self.t.check()  # an end forced by the watchdog or a cancel is not the end
            if self.size is not None and self.count != self.size:
                raise SourceError(f"{self.what}: the server sent {self.count} bytes, "
                                  f"{self.size} were expected",
                                  hint="the file changed upstream or the transfer was cut; "
                                       "nothing was stored")
        else:
            self.t.check()
        return data


def too_large(what: str, limit: int, size: int | None, came: str,
              kind: str | None = None) -> SourceError:
    """The refusal of a body past its bound: the expected SIZE, a bound for its KIND (a
    manifest, a token), or the per-download maximum."""
    if size is not None:
        bound = f"the {size} bytes expected"
        hint = "the file changed upstream, or the server is not the one meant; nothing was stored"
    elif kind is not None:
        bound = f"the {human(limit)} airlock accepts for {kind}"
        hint = "an answer this large is not a registry's; check the server"
    else:
        bound = f"the {human(limit)} airlock accepts for one download (--max-size)"
        hint = "give the file's size beside its sha256 (size:), or raise --max-size"
    return SourceError(f"{what}: larger than {bound}: {came}; stopped", hint=hint)


def announced_length(r: Any) -> int | None:
    """The body length the server announces, when it is the body's own (not encoded)."""
    cl = r.headers.get("Content-Length", "").strip()
    enc = r.headers.get("Content-Encoding", "identity").strip().lower()
    if not (cl.isascii() and cl.isdigit()) or enc not in ("", "identity"):
        return None
    return int(cl)


def open_body(r: Any, t: transfer.Transfer, what: str, limit: int, size: int | None,
              opts: FetchOptions, *, decode: bool = True, kind: str | None = None) -> Body:
    """R's body bounded as ``Body`` does, after refusing a ``Content-Length`` above LIMIT
    before reading a byte of it."""
    announced = announced_length(r)
    if announced is not None and announced > limit:
        raise too_large(what, limit, size, f"the server announces {announced} bytes "
                                           "(Content-Length)", kind)
    if announced is not None and opts.deadline is None:
        t.shorten(opts.seconds_for(announced))
    r.raw.decode_content = decode
    return Body(r.raw, t, what, limit, size, opts, kind)


def read_limited(r: Any, what: str, limit: int, opts: FetchOptions, kind: str) -> bytes:
    """All of R's body (KIND: a manifest, a token service's answer), refused past LIMIT
    bytes, under the transfer running in this thread (or one of its own)."""
    t = transfer.current()
    if t is None:
        with transfer.transfer(what, opts.seconds_for(limit)):
            return read_limited(r, what, limit, opts, kind)
    body = open_body(r, t, what, limit, None, opts, kind=kind)
    parts = []
    while chunk := body.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def download(url: str, sha256: str | None, store: Layout, opts: FetchOptions,
             advance: Advance | None = None, sri: str | None = None,
             size: int | None = None) -> tuple[str, int]:
    """Stream ``url`` into the store; the bytes must hash to ``sha256`` (hex) and/or match
    the SRI value ``sri`` (npm's ``sha512-…`` integrity), and be ``size`` bytes when that is
    known (else at most ``opts.max_size``)."""
    expected = "sha256:" + sha256 if sha256 else None
    if expected and store.has(expected):
        return expected, store.blob_path(expected).stat().st_size
    limit = size if size is not None else opts.max_size
    parsed = urllib.parse.urlparse(url)
    try:
        if parsed.scheme == "file":
            path = Path(urllib.parse.unquote(parsed.path))
            try:
                with open(path, "rb") as f:
                    if size is not None and os.fstat(f.fileno()).st_size != size:
                        raise SourceError(f"{url}: {os.fstat(f.fileno()).st_size} bytes, "
                                          f"{size} were expected")
                    return store.put_stream(f, expected, advance, limit=limit, sri=sri)
            except OSError as e:
                raise SourceError(f"{url}: cannot read ({e.strerror})") from None
            except OverflowError:
                raise too_large(url, limit, size, "it grew while being read") from None
        with transfer.transfer(url, opts.seconds_for(limit)) as t, \
                session(opts).get(url, stream=True, timeout=opts.timeout,
                                  headers={"Accept-Encoding": "identity"}) as r:
            if r.status_code != 200:
                raise SourceError(f"{url}: server answered HTTP {r.status_code}")
            body: BinaryIO = open_body(r, t, url, limit, size, opts)  # type: ignore[assignment]
            return store.put_stream(body, expected, advance, sri=sri)
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
