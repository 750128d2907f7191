"""VSIX extensions named by their Open VSX id and version: a local server that speaks
Open VSX's API (the registry itself cannot be reached here: a stand-in for open-vsx.org,
with the same paths and answers) gives the build the file and its published sha256; the
lock pins both, later builds fetch exactly those bytes without asking the registry, and a
registry that lies about the hash, the file or the extension is refused with nothing kept.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from installer.bundle.build import BuildOptions, build
from installer.errors import SourceError, SpecError
from installer.lab.fixtures import make_vsix
from tests.conftest import write_spec


class Registry:
    """Open VSX's API, as far as a build uses it: /api/NS/NAME[/TARGET]/VERSION answers
    JSON whose files.download and files.sha256 are URLs; every request is counted."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.answers: dict[str, dict] = {}
        self.hits: list[str] = []
        reg = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                reg.hits.append(self.path)
                if self.path in reg.answers:
                    body = json.dumps(reg.answers[self.path]).encode()
                elif self.path in reg.files:
                    body = reg.files[self.path]
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def publish(self, vsix: bytes, ns: str = "Continue", name: str = "continue",
                version: str = "2.0.0", target: str | None = "linux-x64",
                sha256: str | None = None) -> None:
        at = f"@{target}" if target else ""
        file = f"/files/{ns}.{name}-{version}{at}.vsix"
        self.files[file] = vsix
        self.files[file + ".sha256"] = (sha256 or hashlib.sha256(vsix).hexdigest()).encode() \
            + b"  " + file.rsplit("/", 1)[1].encode() + b"\n"
        api = f"/api/{ns}/{name}/" + (f"{target}/" if target else "") + version
        self.answers[api] = {"namespace": ns, "name": name, "version": version,
                             "targetPlatform": target or "universal",
                             "files": {"download": self.url + file,
                                       "sha256": self.url + file + ".sha256"}}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def registry_vsx() -> Iterator[Registry]:
    r = Registry()
    yield r
    r.close()


def vsix_bytes(tmp: Path, publisher: str = "Continue", name: str = "continue",
               version: str = "2.0.0", engine: str = "^1.70.0") -> bytes:
    return make_vsix(tmp / f"{publisher}-{name}-{version}.vsix", publisher, name, version,
                     engine).read_bytes()


HEAD = """
    apiVersion: airlock/v1
    name: ext
    version: 1
    phase: poc
    target: {vscode: "1.100.3"}
    vsix:
"""


def spec_for(d: Path, reg: Registry, extra: str = "") -> Path:
    d.mkdir(exist_ok=True)
    return write_spec(d, HEAD + f"""
          - marketplace: Continue.continue
            version: 2.0.0
            target_platform: linux-x64
            registry: {reg.url}
        {extra}""")


def test_the_registry_is_asked_once_and_the_lock_pins_url_and_sha256(
        registry_vsx: Registry, tmp_path: Path) -> None:
    data = vsix_bytes(tmp_path)
    registry_vsx.publish(data)
    spec = spec_for(tmp_path / "w", registry_vsx)
    b = build(spec, tmp_path / "b1", BuildOptions()).path
    meta = json.loads((b / "bundle.json").read_text())
    (art,) = [a for a in meta["artifacts"] if a["kind"] == "vsix"]
    assert (art["id"], art["version"]) == ("Continue.continue", "2.0.0")
    assert art["files"][0]["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    lock = json.loads(spec.with_suffix(".lock.json").read_text())
    (key,) = [k for k in lock["entries"] if k.startswith("vsix/")]
    entry = lock["entries"][key]
    assert key == f"vsix/openvsx:{registry_vsx.url}/Continue.continue@2.0.0@linux-x64"
    assert entry["url"] == registry_vsx.url + "/files/Continue.continue-2.0.0@linux-x64.vsix"
    assert list(entry["files"].values()) == ["sha256:" + hashlib.sha256(data).hexdigest()]
    assert registry_vsx.hits[0] == "/api/Continue/continue/linux-x64/2.0.0"

    # the next build, locked: only the pinned file is fetched, the API is not asked
    registry_vsx.hits.clear()
    build(spec, tmp_path / "b2", BuildOptions(locked=True))
    assert registry_vsx.hits == ["/files/Continue.continue-2.0.0@linux-x64.vsix"]


def test_changed_bytes_behind_a_pinned_url_are_refused(registry_vsx: Registry,
                                                       tmp_path: Path) -> None:
    registry_vsx.publish(vsix_bytes(tmp_path))
    spec = spec_for(tmp_path / "w", registry_vsx)
    build(spec, tmp_path / "b1", BuildOptions())
    other = vsix_bytes(tmp_path, engine="^1.71.0")
    registry_vsx.publish(other)  # same URL, same version, different bytes (and hash)
    with pytest.raises(SourceError, match=r"sha256 differs from what was expected|"
                                          r"larger than the \d+ bytes expected"):
        build(spec, tmp_path / "b2", BuildOptions(locked=True))
    assert not (tmp_path / "b2").exists()


def test_a_download_that_is_not_the_published_hash_is_refused(registry_vsx: Registry,
                                                               tmp_path: Path) -> None:
    registry_vsx.publish(vsix_bytes(tmp_path), sha256="ab" * 32)
    spec = spec_for(tmp_path / "w", registry_vsx)
    with pytest.raises(SourceError, match="expected abab"):
        build(spec, tmp_path / "b", BuildOptions())
    assert not (tmp_path / "b").exists() and not spec.with_suffix(".lock.json").exists()


def test_a_registry_serving_another_extension_is_refused(registry_vsx: Registry,
                                                         tmp_path: Path) -> None:
    registry_vsx.publish(vsix_bytes(tmp_path, publisher="Evil", name="continue"))
    with pytest.raises(SourceError, match=r"served Evil\.continue 2\.0\.0, not Continue\.continue"):
        build(spec_for(tmp_path / "w", registry_vsx), tmp_path / "b", BuildOptions())
    assert not (tmp_path / "b").exists()


def test_a_spec_pin_that_differs_from_the_registry_stops_before_downloading(
        registry_vsx: Registry, tmp_path: Path) -> None:
    registry_vsx.publish(vsix_bytes(tmp_path))
    spec = spec_for(tmp_path / "w", registry_vsx, extra="    sha256: " + "cd" * 32)
    with pytest.raises(SourceError, match="the spec pins cdcd"):
        build(spec, tmp_path / "b", BuildOptions())
    assert not any(h.endswith(".vsix") for h in registry_vsx.hits)


def test_an_unknown_version_names_the_entry(registry_vsx: Registry, tmp_path: Path) -> None:
    registry_vsx.publish(vsix_bytes(tmp_path), version="1.9.0")
    spec = spec_for(tmp_path / "w", registry_vsx)
    with pytest.raises(SourceError) as e:
        build(spec, tmp_path / "b", BuildOptions())
    line = 1 + next(i for i, x in enumerate(spec.read_text().splitlines())
                    if "marketplace:" in x)
    assert f"{spec}:{line}: vsix[0]: Continue.continue 2.0.0 (linux-x64) is not in " \
        f"{registry_vsx.url}" in str(e.value), str(e.value)


@pytest.mark.parametrize("answer, says", [
    ({"files": {"download": "file:///etc/passwd", "sha256": "/x.sha256"}},
     r"files\.download is not an http\(s\) URL"),
    ({"files": {}}, "has no files.download"),
    ({"name": "continue"}, "the answer has no 'files'"),
])
def test_a_hostile_registry_answer_is_refused(registry_vsx: Registry, tmp_path: Path,
                                              answer: dict, says: str) -> None:
    registry_vsx.answers["/api/Continue/continue/linux-x64/2.0.0"] = answer
    with pytest.raises(SourceError, match=says):
        build(spec_for(tmp_path / "w", registry_vsx), tmp_path / "b", BuildOptions())
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("entry, says", [
    ("- marketplace: Continue.continue", "needs the exact 'version'"),
    ("- {marketplace: Continue.continue, version: 2.0.0, path: x.vsix}", "not several"),
    ("- {path: x.vsix, version: 2.0.0}", "'version' goes with 'marketplace'"),
    ("- {marketplace: continue, version: 2.0.0}", "publisher.name"),
    ("- {marketplace: Continue.continue, version: 2.0.0, target_platform: linux}",
     "expected one of universal, linux-x64"),
])
def test_bad_marketplace_entries_are_refused_at_their_line(tmp_path: Path, entry: str,
                                                           says: str) -> None:
    spec = write_spec(tmp_path, HEAD + f"""
          {entry}
        """)
    with pytest.raises(SpecError) as e:
        build(spec, tmp_path / "b", BuildOptions())
    assert says in str(e.value) and e.value.line in (7, 8), (str(e.value), e.value.line)
