"""Downloads from hostile servers are refused in bounded time, memory and disk (issue 15).

A loopback server started here plays every bad server: an endless body, a body larger than
the spec's ``size:`` with and without a ``Content-Length``, a ``Content-Length`` above it, a
slow drip past the total deadline, and a registry whose manifest, token answer or blob is
larger than its bound. Each case drives the real CLI (``airlock bundle build``) in a
subprocess under a memory limit (``tests/hostile.run_bounded``) and checks the exit code,
the message (the URL and the bound), the child's own peak memory, the time it took, the
most the staging folder ever held on disk (sampled while it ran), and that nothing is left
at the output path or beside it. SIGTERM and SIGINT to a build blocked on slow downloads
stop it within a second.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import ClassVar

import pytest

from conftest import ca_and_cert, write_spec
from tests.hostile import run_bounded

SIZE = 1 << 20  # the good file: 1 MiB
GOOD = os.urandom(SIZE)
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
MEM_MIB = 1024  # address space the CLI may use (RLIMIT_AS); threads reserve stacks there
PEAK_MIB = 200  # resident memory it may reach: an endless body must not be buffered
SERVE_FOR = 60.0  # no handler writes longer than this (the test would have failed by then)
POUR_MAX = 64 << 20  # nor more than this: 64 times the size is "endless" here, and a broken
#                      guard fails the test without filling the disk


class Hostile(http.server.BaseHTTPRequestHandler):
    """One bad (or good) server per path. HTTP/1.0: a body without Content-Length ends
    when the connection closes."""

    requests: ClassVar[list[tuple[float, str]]] = []

    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:
        Hostile.requests.append((time.monotonic(), self.path))
        first = self.path.split("?")[0].strip("/").split("/")[0]
        route = getattr(self, "serve_" + first.replace("-", "_"), None)
        try:
            if route is None:
                self.head(404, length=0)
            else:
                route()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what the tests want

    def head(self, status: int = 200, length: int | None = None,
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def pour(self, total: int | None, chunk: bytes = b"x" * 65536) -> None:
        """Write TOTAL bytes (None: until the client goes, SERVE_FOR passes or POUR_MAX
        bytes went)."""
        total = POUR_MAX if total is None else total
        sent, until = 0, time.monotonic() + SERVE_FOR
        while sent < total and time.monotonic() < until:
            piece = chunk[:total - sent]
            self.wfile.write(piece)
            sent += len(piece)

    def drip(self, total: int) -> None:
        until = time.monotonic() + SERVE_FOR
        for _ in range(total):
            if time.monotonic() > until:
                return
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.5)

    # --- plain downloads
    def serve_good(self) -> None:
        self.head(length=SIZE)
        self.wfile.write(GOOD)

    def serve_endless(self) -> None:
        self.head()
        self.pour(None)

    def serve_bigger_with_length(self) -> None:
        self.head(length=SIZE + (8 << 20))
        self.pour(SIZE + (8 << 20))

    def serve_bigger_without_length(self) -> None:
        self.head()
        self.pour(SIZE + (8 << 20))

    def serve_length_above(self) -> None:
        self.head(length=10 << 30)  # announces 10 GiB, then pours for ever
        self.pour(None)

    def serve_drip(self) -> None:
        self.head(length=SIZE)
        self.drip(SIZE)

    # --- a registry: /v2/<repo>/manifests/<ref>, /v2/<repo>/blobs/<digest>, /token
    def serve_v2(self) -> None:
        parts = self.path.split("/")
        repo, kind = parts[2], parts[3]
        realm = {"token": "token", "good": "goodtoken"}.get(repo)
        if realm and self.headers.get("Authorization") != "Bearer t0k":
            scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
            self.head(401, length=0, headers={
                "WWW-Authenticate": f'Bearer realm="{scheme}://{self.headers["Host"]}/{realm}"'})
        elif repo == "good" and kind == "manifests":
            self.head(length=len(GOOD_MANIFEST), headers={"Content-Type": MT_MANIFEST})
            self.wfile.write(GOOD_MANIFEST)
        elif repo == "good" and kind == "blobs":
            self.head(length=len(CONFIG))
            self.wfile.write(CONFIG)
        elif kind == "manifests" and repo == "bigmanifest":
            self.head(length=5 << 20, headers={"Content-Type": MT_MANIFEST})
            self.pour(5 << 20)
        elif kind == "manifests" and repo == "endlessmanifest":
            self.head(headers={"Content-Type": MT_MANIFEST})
            self.pour(None, b" " * 65536)
        elif kind == "manifests":
            self.head(length=len(MANIFEST), headers={"Content-Type": MT_MANIFEST})
            self.wfile.write(MANIFEST)
        elif kind == "blobs":
            self.head()  # the config blob, endless: its descriptor says CONFIG_SIZE
            self.pour(None)
        else:
            self.head(404, length=0)

    def serve_goodtoken(self) -> None:
        body = b'{"token": "t0k"}'
        self.head(length=len(body))
        self.wfile.write(body)

    def serve_token(self) -> None:
        self.head()  # a token service that never stops answering
        self.pour(None, b'{"token": "' + b"a" * 65536)


MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG_SIZE = 100
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": MT_MANIFEST,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + "1" * 64, "size": CONFIG_SIZE},
    "layers": []}).encode()
CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()
GOOD_MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": MT_MANIFEST,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + hashlib.sha256(CONFIG).hexdigest(),
               "size": len(CONFIG)},
    "layers": []}).encode()


@contextmanager
def serving(tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """The hostile server on a free loopback port (over TLS with (cert, key)): HOST:PORT."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving() as host:
        yield host


@contextmanager
def disk_watch(root: Path) -> Iterator[dict[str, int]]:
    """The most bytes the files under ROOT held at once, sampled every 10 ms while the
    block runs (an endless body written to disk would show as it grows)."""
    seen = {"max": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total = 0
            for dirpath, _, files in os.walk(root):
                for fn in files:
                    with suppress(OSError):  # removed meanwhile
                        total += os.lstat(os.path.join(dirpath, fn)).st_size
            seen["max"] = max(seen["max"], total)
            stop.wait(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join(5)


def spec_for(d: Path, url: str, *, size: int | None = SIZE, sha: str = GOOD_SHA,
             name: str = "test.yaml") -> Path:
    size_line = f"\n            size: {size}" if size is not None else ""
    return write_spec(d, f"""
        apiVersion: airlock/v1
        name: dl
        version: 1
        phase: pilot
        files:
          - name: f
            url: {url}
            filename: f.bin
            sha256: "{sha}"{size_line}
    """, name)


def build(d: Path, spec: Path, *extra: str, **kw: object):
    out = d / "out"
    with disk_watch(d) as disk:
        r = run_bounded(["bundle", "build", str(spec), "-o", str(out), "--retries", "0",
                         *extra], mem_mib=MEM_MIB, cwd=d, **kw)  # type: ignore[arg-type]
    r.disk = disk["max"]  # type: ignore[attr-defined]
    return r


def assert_nothing_left(d: Path) -> None:
    assert not (d / "out").exists()
    assert not list(d.glob(".out*")), sorted(p.name for p in d.iterdir())
    big = [p for p in d.rglob("*") if p.is_file() and p.stat().st_size > SIZE]
    assert not big, big


@pytest.mark.parametrize(("path", "came"), [
    ("endless", "more than 1048576 bytes came"),
    ("bigger-without-length", "more than 1048576 bytes came"),
    ("bigger-with-length", f"the server announces {SIZE + (8 << 20)} bytes (Content-Length)"),
    ("length-above", f"the server announces {10 << 30} bytes (Content-Length)"),
])
def test_a_body_past_the_expected_size_stops_at_once(server: str, tmp_path: Path,
                                                     path: str, came: str) -> None:
    url = f"http://{server}/{path}"
    r = build(tmp_path, spec_for(tmp_path, url))
    assert r.rc == 4, r.output
    assert f"{url}: larger than the {SIZE} bytes expected: {came}; stopped" in r.output
    assert r.seconds < 10, r.seconds  # not the SERVE_FOR minute a server can pour
    assert r.peak_mib < PEAK_MIB, r.peak_mib
    assert r.disk <= SIZE, r.disk  # the store never held more than the size
    assert_nothing_left(tmp_path)
    print(f"{path}: refused in {r.seconds:.2f} s, peak {r.peak_mib:.0f} MiB, "
          f"disk {r.disk} bytes")


def test_without_a_size_the_per_download_maximum_applies(server: str, tmp_path: Path) -> None:
    url = f"http://{server}/endless"
    r = build(tmp_path, spec_for(tmp_path, url, size=None), "--max-size", "2M")
    assert r.rc == 4, r.output
    assert f"{url}: larger than the 2 MiB airlock accepts for one download (--max-size): " \
           f"more than {2 << 20} bytes came; stopped" in r.output
    assert r.seconds < 10 and r.peak_mib < PEAK_MIB and r.disk <= 2 << 20
    assert_nothing_left(tmp_path)


def test_a_slow_drip_is_stopped_at_the_total_deadline(server: str, tmp_path: Path) -> None:
    url = f"http://{server}/drip"
    r = build(tmp_path, spec_for(tmp_path, url), "--deadline", "2", "--timeout", "5")
    assert r.rc == 4, r.output
    assert f"{url}: did not finish within 2 s; stopped" in r.output and "--deadline" in r.output
    # the idle timeout (5 s) never fires: a byte comes every 0.5 s
    assert r.seconds < 2 + 3, r.seconds  # the start-up, the deadline, the watchdog's 0.1 s
    assert r.peak_mib < PEAK_MIB
    assert_nothing_left(tmp_path)
    print(f"drip: refused in {r.seconds:.2f} s (deadline 2 s), peak {r.peak_mib:.0f} MiB")


def test_the_size_is_recorded_in_the_lock_and_bounds_the_next_build(server: str,
                                                                    tmp_path: Path) -> None:
    good = f"http://{server}/good"
    r = build(tmp_path, spec_for(tmp_path, good, size=None))
    assert r.rc == 0, r.output
    lock = json.loads((tmp_path / "test.lock.json").read_text())
    assert lock["entries"]["file/f"]["sizes"] == {"f.bin": SIZE}
    meta = json.loads((tmp_path / "out" / "bundle.json").read_text())
    assert meta["artifacts"][0]["files"][0]["size"] == SIZE

    # the same URL and hash now pour for ever: the lock's size stops it, not --max-size
    entry = lock["entries"]["file/f"]
    endless = f"http://{server}/endless"
    entry["source"] = entry["source"].replace(good, endless)
    (tmp_path / "test.lock.json").write_text(json.dumps(lock))
    spec_for(tmp_path, endless, size=None)
    (tmp_path / "out").rename(tmp_path / "first")
    r = build(tmp_path, tmp_path / "test.yaml")
    assert r.rc == 4, r.output
    assert f"{endless}: larger than the {SIZE} bytes expected" in r.output
    assert r.disk <= 2 * SIZE + 8192  # the first bundle (SIZE and metadata) + at most SIZE


def test_a_lock_without_sizes_still_builds_locked_and_gains_them_on_update(
        server: str, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, f"http://{server}/good", size=None)
    assert build(tmp_path, spec).rc == 0
    lock_file = tmp_path / "test.lock.json"
    lock = json.loads(lock_file.read_text())
    del lock["entries"]["file/f"]["sizes"]  # as written before sizes were recorded
    lock_file.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    before = lock_file.read_bytes()
    r = build(tmp_path, spec, "--locked", "--force")
    assert r.rc == 0, r.output
    assert lock_file.read_bytes() == before
    r = build(tmp_path, spec, "--update-lock", "--force")
    assert r.rc == 0, r.output
    assert json.loads(lock_file.read_text())["entries"]["file/f"]["sizes"] == {"f.bin": SIZE}


def test_the_correct_file_is_downloaded(server: str, tmp_path: Path) -> None:
    r = build(tmp_path, spec_for(tmp_path, f"http://{server}/good"))
    assert r.rc == 0, r.output
    blob = tmp_path / "out" / "blobs" / "sha256" / GOOD_SHA
    assert blob.read_bytes() == GOOD
    assert r.peak_mib < PEAK_MIB


@pytest.mark.parametrize("bad", ["-1", '"1G"', "true"])
def test_a_size_that_is_not_a_byte_count_is_a_spec_error(tmp_path: Path, bad: str) -> None:
    spec = write_spec(tmp_path, f"""
        apiVersion: airlock/v1
        name: dl
        version: 1
        phase: pilot
        files:
          - {{name: f, url: "http://127.0.0.1:9/f", sha256: "{GOOD_SHA}", size: {bad}}}
    """)
    r = run_bounded(["bundle", "build", str(spec), "-o", str(tmp_path / "out")], cwd=tmp_path)
    assert r.rc == 3, r.output
    assert "files[0].size" in r.output
    local = write_spec(tmp_path, """
        apiVersion: airlock/v1
        name: dl
        version: 1
        phase: pilot
        files:
          - {name: f, path: test.yaml, size: 10}
    """, "local.yaml")
    r = run_bounded(["bundle", "build", str(local), "-o", str(tmp_path / "out")], cwd=tmp_path)
    assert r.rc == 3 and "'size' goes with 'url'" in r.output, r.output


# --------------------------------------------------------------------------- signals

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_build_blocked_on_downloads_within_a_second(
        server: str, tmp_path: Path, signum: int) -> None:
    # two downloads dripping at once (the build's pool has a worker for each)
    urls = [f"http://{server}/drip/{i}" for i in range(2)]
    spec = write_spec(tmp_path, f"""
        apiVersion: airlock/v1
        name: dl
        version: 1
        phase: pilot
        files:
          - {{name: a, url: "{urls[0]}", sha256: "{GOOD_SHA}", size: {SIZE}}}
          - {{name: b, url: "{urls[1]}", sha256: "{GOOD_SHA}", size: {SIZE}}}
    """)
    Hostile.requests.clear()
    after = 6.0  # seconds: the CLI starts (imports) well within this on a busy 2-core host
    start = time.monotonic()
    r = build(tmp_path, spec, signal_after=after, signum=signum)
    arrived = sorted(t - start for t, p in Hostile.requests if p.startswith("/drip"))
    assert len(arrived) >= 1 and arrived[0] < after, (arrived, r.output)
    assert r.rc == 130, r.output
    assert "interrupted; nothing half-written was kept" in r.output
    assert r.seconds < 1.0, r.seconds
    assert_nothing_left(tmp_path)
    assert not (tmp_path / "test.lock.json").exists()
    print(f"{signal.Signals(signum).name}: stopped {r.seconds:.3f} s after the signal "
          f"({len(arrived)} downloads in flight), peak {r.peak_mib:.0f} MiB")


# --------------------------------------------------------------------------- registry

def image_spec(d: Path, server: str, repo: str, tls: str = "tls_verify: false") -> Path:
    return write_spec(d, f"""
        apiVersion: airlock/v1
        name: dl
        version: 1
        phase: pilot
        images:
          - {{name: img, ref: "{server}/{repo}:1.0", {tls}}}
    """)


@pytest.mark.parametrize(("repo", "message"), [
    ("bigmanifest", f"{{server}}/bigmanifest:1.0: larger than the 4 MiB airlock accepts for a "
                    f"manifest: the server announces {5 << 20} bytes (Content-Length)"),
    ("endlessmanifest", f"{{server}}/endlessmanifest:1.0: larger than the 4 MiB airlock "
                        f"accepts for a manifest: more than {4 << 20} bytes came"),
    ("token", "token service http://{server}/token: larger than the 1 MiB airlock accepts "
              f"for a token service's answer: more than {1 << 20} bytes came"),
    ("endlessblob", "{server}/endlessblob@sha256:" + "1" * 64 + ": larger than the "
                    f"{CONFIG_SIZE} bytes expected: more than {CONFIG_SIZE} bytes came"),
])
def test_registry_answers_past_their_bounds_are_refused(server: str, tmp_path: Path,
                                                        repo: str, message: str) -> None:
    r = build(tmp_path, image_spec(tmp_path, server, repo))
    assert r.rc == 4, r.output
    assert message.format(server=server) in r.output, r.output
    assert r.seconds < 10 and r.peak_mib < PEAK_MIB, (r.seconds, r.peak_mib)
    assert r.disk <= 8 << 20
    assert_nothing_left(tmp_path)
    print(f"registry {repo}: refused in {r.seconds:.2f} s, peak {r.peak_mib:.0f} MiB")


def test_a_registry_within_its_bounds_still_pulls_with_a_token(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = ca_and_cert(certs)
    with serving((cert, key)) as host:
        r = build(tmp_path, image_spec(tmp_path, host, "good", f"ca_file: {ca}"))
    assert r.rc == 0, r.output
    config = tmp_path / "out" / "blobs" / "sha256" / hashlib.sha256(CONFIG).hexdigest()
    assert config.read_bytes() == CONFIG


def test_the_first_failure_stops_the_other_downloads_at_once(server: str,
                                                             tmp_path: Path) -> None:
    """In process: one job fails while two downloads drip; ``parallel`` raises at once and
    the dripping workers end too (their sockets are shut down), leaving no temp file."""
    from installer.bundle import transfer
    from installer.bundle.sources.http import FetchOptions, download
    from installer.bundle.store import Layout
    from installer.errors import SourceError

    store = Layout(tmp_path / "store")
    opts = FetchOptions(retries=0)

    def job(i: int) -> object:
        if i == 0:
            time.sleep(1)
            raise SourceError("the first failure")
        return download(f"http://{server}/drip/{i}", GOOD_SHA, store, opts, size=SIZE)

    def workers() -> list[threading.Thread]:
        return [t for t in threading.enumerate()
                if t.name.startswith("airlock-job-") and t.is_alive()]

    transfer.reset()
    try:
        start = time.monotonic()
        with pytest.raises(SourceError, match="the first failure"):
            transfer.parallel(job, [0, 1, 2], 3)
        assert time.monotonic() - start < 1 + 0.8
        until = time.monotonic() + 1
        while workers() and time.monotonic() < until:
            time.sleep(0.02)
        assert not workers()
        assert not list(store.tmp.iterdir())
    finally:
        transfer.reset()
