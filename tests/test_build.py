"""Building bundles from local sources: layout, dedupe, lock, reproducibility, SBOM, and
every bad input failing with one clear error and no output left behind."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import AIRLOCK, FULL_SPEC, REPO, need, run_airlock, write_spec
from installer.bundle.build import BuildOptions, build
from installer.bundle.verify import verify
from installer.errors import SourceError, SpecError, StorageError
from installer.lab.fixtures import make_vsix


def blobs(bundle: Path) -> list[Path]:
    return sorted((bundle / "blobs" / "sha256").iterdir())


def test_sample_spec_builds_with_its_committed_lock(sample_dir: Path, tmp_path: Path) -> None:
    """The embedded sample and its lock are in step: --locked passes, so README's command
    and the demo build exactly what the lock pins."""
    result = build(sample_dir / "sample.yaml", tmp_path / "b", BuildOptions(locked=True))
    assert not result.lock_written
    assert verify(result.path).ok
    lock = json.loads((REPO / "bundles" / "sample.lock.json").read_text())
    meta = json.loads((result.path / "bundle.json").read_text())
    pinned = {k.split("/", 1)[1]: v["digest"] for k, v in lock["entries"].items()
              if k.startswith("image/")}
    assert {a["name"]: a["digest"] for a in meta["artifacts"] if a["kind"] == "image"} == pinned


def test_sample_without_its_inputs_names_the_command_that_makes_them(tmp_path: Path) -> None:
    """A fresh clone has no bundles/sample/build (generated, git-ignored): the build says how
    to make it, and `airlock bundle sample-inputs` does (README's first line)."""
    bundles = tmp_path / "bundles"
    shutil.copytree(REPO / "bundles", bundles, ignore=shutil.ignore_patterns("build"))
    proc = run_airlock("bundle", "build", str(bundles / "sample.yaml"), "-o",
                       str(tmp_path / "out"))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "hint: the sample's inputs are made by: airlock bundle sample-inputs" in \
        " ".join(proc.stderr.split())
    made = json.loads(run_airlock("bundle", "sample-inputs", "--json", check=True).stdout)
    assert made == {"ok": True, "path": str(REPO / "bundles" / "sample" / "build")}
    assert (REPO / "bundles" / "sample" / "build" / "images.tar").is_file()


def test_bundle_is_an_oci_layout_that_real_tools_read(workdir: Path, tmp_path: Path) -> None:
    spec = write_spec(workdir, FULL_SPEC)
    b = build(spec, tmp_path / "b", BuildOptions()).path
    # sha256sum -c over the whole bundle
    need("sha256sum")
    proc = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=b,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = (b / "SHA256SUMS").read_text().splitlines()
    assert proc.stdout.count(": OK\n") == len(listed)
    assert len(listed) == sum(1 for p in b.rglob("*") if p.is_file()) - 1  # all but itself
    # skopeo reads every image by its ref name
    need("skopeo")
    for ref, layers in (("image.base", 1), ("image.app", 2)):
        out = subprocess.run(["skopeo", "inspect", f"oci:{b}:{ref}"], capture_output=True,
                             text=True, check=True).stdout
        info = json.loads(out)
        assert info["Architecture"] == "amd64" and len(info["Layers"]) == layers
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci:{b}:model.tiny"],
                                    capture_output=True, text=True, check=True).stdout)
    assert raw["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    titles = [layer["annotations"]["org.opencontainers.image.title"] for layer in raw["layers"]]
    assert titles == ["config.json", "sub/weights.safetensors"]  # hidden .cache left out
    assert raw["layers"][1]["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"


def test_identical_bytes_are_stored_once(workdir: Path, tmp_path: Path) -> None:
    b = build(write_spec(workdir, FULL_SPEC), tmp_path / "b", BuildOptions()).path
    meta = json.loads((b / "bundle.json").read_text())
    arts = {a["name"]: a for a in meta["artifacts"]}
    # app shares base's layer: the layer blob exists once
    base_m = json.loads((b / "blobs/sha256" / arts["base"]["digest"][7:]).read_text())
    app_m = json.loads((b / "blobs/sha256" / arts["app"]["digest"][7:]).read_text())
    assert base_m["layers"][0]["digest"] == app_m["layers"][0]["digest"]
    # notes and notes-copy have the same bytes: one blob
    assert arts["notes"]["files"][0]["digest"] == arts["notes-copy"]["files"][0]["digest"]
    referenced = set()
    for a in meta["artifacts"]:
        m = json.loads((b / "blobs/sha256" / a["digest"][7:]).read_text())
        referenced |= {a["digest"], m["config"]["digest"], *(x["digest"] for x in m["layers"])}
    assert {p.name for p in blobs(b)} == {d[7:] for d in referenced}


def test_two_builds_are_byte_identical(workdir: Path, tmp_path: Path) -> None:
    spec = write_spec(workdir, FULL_SPEC)
    first = build(spec, tmp_path / "one", BuildOptions())
    assert first.lock_written
    second = build(spec, tmp_path / "two", BuildOptions(locked=True))
    assert not second.lock_written and first.digest == second.digest
    for name in ("index.json", "bundle.json", "sbom.cdx.json", "SHA256SUMS"):
        assert (first.path / name).read_bytes() == (second.path / name).read_bytes(), name


def test_source_date_epoch_sets_created(workdir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    b = build(write_spec(workdir, FULL_SPEC), tmp_path / "b", BuildOptions()).path
    assert json.loads((b / "bundle.json").read_text())["created"] == "2023-11-14T22:13:20Z"
    lock = json.loads((workdir / "test.lock.json").read_text())
    assert lock["created"] == "2023-11-14T22:13:20Z"


def test_changed_input_is_refused_until_the_lock_is_updated(workdir: Path,
                                                            tmp_path: Path) -> None:
    spec = write_spec(workdir, FULL_SPEC)
    build(spec, tmp_path / "one", BuildOptions())
    (workdir / "model" / "config.json").write_text('{"model_type": "changed"}\n')
    with pytest.raises(SourceError, match=r"model tiny: files changed since the lock: config"):
        build(spec, tmp_path / "two", BuildOptions())
    assert not (tmp_path / "two").exists()
    r = build(spec, tmp_path / "two", BuildOptions(update_lock=True))
    assert r.lock_written


def test_locked_refuses_a_spec_change(workdir: Path, tmp_path: Path) -> None:
    spec = write_spec(workdir, FULL_SPEC)
    build(spec, tmp_path / "one", BuildOptions())
    before = (workdir / "test.lock.json").read_bytes()
    spec.write_text(spec.read_text().replace("path: notes-copy.txt", "path: ext.vsix"))
    with pytest.raises(SpecError, match="--locked forbids"):
        build(spec, tmp_path / "two", BuildOptions(locked=True))
    assert (workdir / "test.lock.json").read_bytes() == before
    assert not (tmp_path / "two").exists()


def _lock_doc() -> dict:
    return json.loads((REPO / "bundles" / "lab.lock.json").read_text())


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.update(lockVersion=True), "lockVersion must be an integer from 1"),
    (lambda d: d.update(lockVersion=1.0), "lockVersion must be an integer from 1"),
    (lambda d: d.pop("lockVersion"), "lockVersion must be an integer from 1"),
    (lambda d: d.update(created="yesterday"), "created must be a UTC time"),
    (lambda d: d.update(entries=[]), "entries must be an object"),
    (lambda d: d["entries"].update({"thing/x": {"source": "x"}}), "unknown entry"),
    (lambda d: d["entries"].update({"image/x": []}), "entries['image/x'] must be an object"),
    (lambda d: d["entries"].update({"image/x": {"digest": "sha256:" + "a" * 64}}),
     "entries['image/x'].source must be a string"),
    (lambda d: d["entries"].update({"image/x": {"source": "x", "digest": "sha256:" + "A" * 64}}),
     "entries['image/x'].digest must be sha256: and 64 lower-case hex digits"),
    (lambda d: d["entries"].update({"image/x": {"source": "x", "digest": "sha256:" + "a" * 64,
                                                "indexDigest": None}}),
     "entries['image/x'].indexDigest must be sha256:"),
    (lambda d: d["entries"].update({"file/x": {"source": "x", "files": {"/etc/x": "sha256:"
                                                                        + "a" * 64}}}),
     "'/etc/x' is not a relative path"),
    (lambda d: d["entries"].update({"model/x": {"source": "x", "files": ["a"]}}),
     "entries['model/x'].files must be an object"),
    (lambda d: d["entries"].update({"file/x": {"source": "x", "files": {
        "x": "sha256:" + "a" * 64}, "sizes": {"x": True}}}),
     "entries['file/x'].sizes['x'] must be a whole number of bytes, got True"),
    (lambda d: d["entries"].update({"file/x": {"source": "x", "files": {
        "x": "sha256:" + "a" * 64}, "sizes": {"y": 3}}}),
     "entries['file/x'].sizes['y'] names no file"),
    (lambda d: next(e for k, e in d["entries"].items() if k.startswith("pypi/"))
     ["packages"].clear(), "has no package in"),
    (lambda d: next(iter(next(e for k, e in d["entries"].items() if k.startswith("deb/"))
                         ["packages"].values())).update(version=2), ".version must be a "
                                                                    "non-empty string"),
    (lambda d: next(iter(next(e for k, e in d["entries"].items() if k.startswith("deb/"))
                         ["packages"].values())).update(self="yes"), ".self must be true"),
    (lambda d: d["entries"].update({"npm/mirror": {"source": "x", "files": {
        "a-1.tgz": "sha256:" + "a" * 64}, "packages": {"a-1.tgz": {"name": "a", "version": "1"}}}}),
     "entries['npm/mirror'].packages['a-1.tgz'].integrity must be an npm sha512-"),
])
def test_a_damaged_lock_is_refused_naming_the_field(tmp_path: Path, change, words: str
                                                    ) -> None:
    from installer.bundle.lock import Lock

    doc = _lock_doc()
    assert Lock.read(REPO / "bundles" / "lab.lock.json").entries == doc["entries"]
    change(doc)
    path = tmp_path / "t.lock.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError, match=re.escape(words)) as e:
        Lock.read(path)
    assert str(e.value).startswith(f"{path}: ") and "--update-lock" in (e.value.hint or "")


def test_a_lock_that_links_to_a_fifo_is_refused(tmp_path: Path) -> None:
    from installer.bundle.lock import Lock

    link = tmp_path / "t.lock.json"
    link.symlink_to(REPO / "bundles" / "lab.lock.json")  # a link to a file is followed
    assert Lock.read(link).existed
    os.mkfifo(tmp_path / "fifo")
    link.unlink()
    link.symlink_to(tmp_path / "fifo")
    with pytest.raises(SpecError, match="is a FIFO"):
        Lock.read(link)
    assert not Lock.read(tmp_path / "none.lock.json").existed


def test_vsix_identity_and_engine_are_read_from_the_package(workdir: Path,
                                                            tmp_path: Path) -> None:
    b = build(write_spec(workdir, FULL_SPEC), tmp_path / "b", BuildOptions()).path
    meta = json.loads((b / "bundle.json").read_text())
    vsix = next(a for a in meta["artifacts"] if a["kind"] == "vsix")
    assert (vsix["name"], vsix["id"], vsix["version"], vsix["engine"]) == \
        ("acme.tool", "acme.tool", "1.2.3", "^1.90.0")
    assert vsix["files"][0]["path"] == "acme.tool-1.2.3.vsix"


def test_vsix_engine_outside_the_target_is_refused(workdir: Path, tmp_path: Path) -> None:
    make_vsix(workdir / "ext.vsix", "acme", "tool", "2.0.0", "^1.99.0")
    with pytest.raises(SpecError) as e:
        build(write_spec(workdir, FULL_SPEC), tmp_path / "b", BuildOptions())
    assert "acme.tool@2.0.0 needs VS Code ^1.99.0" in str(e.value)
    assert "targets VS Code 1.96.4" in str(e.value) and e.value.line == 15
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b*"))


def test_a_zip_that_is_not_a_vsix_is_refused(workdir: Path, tmp_path: Path) -> None:
    (workdir / "ext.vsix").write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(SourceError, match="not a valid zip archive"):
        build(write_spec(workdir, FULL_SPEC), tmp_path / "b", BuildOptions())


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong-layer", "gzip", "missing"])
def test_corrupt_docker_archive_is_refused(workdir: Path, tmp_path: Path, damage: str) -> None:
    archive = workdir / "images.tar"
    data = archive.read_bytes()
    if damage == "truncate":
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        archive.write_bytes(os.urandom(4096))
    elif damage == "gzip":
        import gzip

        archive.write_bytes(gzip.compress(data))
    elif damage == "missing":
        archive.unlink()
    else:  # flip a byte inside the first layer's content: its diff_id no longer matches
        i = data.index(b"ID=airlock-test")
        archive.write_bytes(data[:i] + b"X" + data[i + 1:])
    with pytest.raises(SourceError) as e:
        build(write_spec(workdir, FULL_SPEC), tmp_path / "b", BuildOptions())
    assert "images.tar" in str(e.value)
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.airlock-tmp-*"))


def test_platform_mismatch_is_refused(workdir: Path, tmp_path: Path) -> None:
    spec = write_spec(workdir, FULL_SPEC.replace('target: {vscode: "1.96.4"}',
                                                 'target: {vscode: "1.96.4", '
                                                 'platform: linux/arm64}'))
    with pytest.raises(SourceError, match="image is linux/amd64, the spec wants linux/arm64"):
        build(spec, tmp_path / "b", BuildOptions())


def test_existing_output_needs_force(workdir: Path, tmp_path: Path) -> None:
    spec = write_spec(workdir, FULL_SPEC)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep").write_text("x")
    with pytest.raises(StorageError, match="already exists"):
        build(spec, tmp_path / "b", BuildOptions())
    assert (tmp_path / "b" / "keep").exists()
    build(spec, tmp_path / "b", BuildOptions(force=True))
    assert not (tmp_path / "b" / "keep").exists() and (tmp_path / "b" / "index.json").exists()


# --------------------------------------------------------------------------- URL sources

class _Server:
    def __init__(self, root: Path, delay: float = 0.0):
        handler = functools.partial(_SlowHandler, directory=str(root))
        _SlowHandler.delay = delay
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    delay = 0.0

    def log_message(self, *args: object) -> None:
        pass

    def copyfile(self, source, outputfile) -> None:  # type: ignore[override]
        while chunk := source.read(64 * 1024):
            outputfile.write(chunk)
            time.sleep(self.delay)


@pytest.fixture
def web(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    server = _Server(root)
    yield root, f"http://127.0.0.1:{server.port}"
    server.close()


def _sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_url_sources_are_downloaded_and_checked(web, tmp_path: Path) -> None:
    root, base = web
    (root / "model.gguf").write_bytes(os.urandom(100_000))
    (root / "tool.txt").write_text("tool\n")
    spec = write_spec(tmp_path, f"""
        apiVersion: airlock/v1
        name: web
        version: 1
        phase: pilot
        models:
          - name: m
            url: {base}/model.gguf
            sha256: {_sha(root / 'model.gguf')}
        files:
          - name: tool
            url: {base}/tool.txt
            sha256: {_sha(root / 'tool.txt')}
            filename: bin/tool.txt
    """)
    b = build(spec, tmp_path / "b", BuildOptions()).path
    meta = json.loads((b / "bundle.json").read_text())
    assert [f["path"] for a in meta["artifacts"] for f in a["files"]] == ["model.gguf",
                                                                          "bin/tool.txt"]
    assert verify(b).ok


def test_url_with_wrong_sha256_is_refused_and_nothing_is_kept(web, tmp_path: Path) -> None:
    root, base = web
    (root / "f.bin").write_bytes(b"real content")
    spec = write_spec(tmp_path, f"""
        apiVersion: airlock/v1
        name: web
        version: 1
        phase: pilot
        files:
          - name: f
            url: {base}/f.bin
            sha256: "{'0' * 64}"
    """)
    with pytest.raises(SourceError) as e:
        build(spec, tmp_path / "b", BuildOptions())
    assert f"{base}/f.bin: sha256 differs from what was expected" in str(e.value)
    assert _sha(root / "f.bin") in str(e.value)
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))


def test_url_that_404s_is_a_clear_error(web, tmp_path: Path) -> None:
    _, base = web
    spec = write_spec(tmp_path, f"""
        apiVersion: airlock/v1
        name: web
        version: 1
        phase: pilot
        files:
          - {{name: f, url: "{base}/missing", sha256: "{'0' * 64}"}}
    """)
    with pytest.raises(SourceError, match="HTTP 404"):
        build(spec, tmp_path / "b", BuildOptions())


# --------------------------------------------------------------------------- interruption, disk

def test_interrupted_build_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    server = _Server(root, delay=0.05)  # about 3 s to serve
    try:
        spec = write_spec(tmp_path, f"""
            apiVersion: airlock/v1
            name: slow
            version: 1
            phase: pilot
            files:
              - {{name: big, url: "http://127.0.0.1:{server.port}/big.bin",
                  sha256: "{_sha(root / 'big.bin')}"}}
        """)
        for sig in (signal.SIGTERM, signal.SIGINT):
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            proc = subprocess.Popen([*AIRLOCK, "bundle", "build",
                                     str(spec), "-o", str(tmp_path / "out")], env=env,
                                    stderr=subprocess.PIPE, text=True,
                                    # Ctrl-C as at a terminal, however this run was started
                                    preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                     signal.SIG_DFL))
            deadline = time.monotonic() + 30
            while not list(tmp_path.glob(".out.airlock-tmp-*/.incoming/*")):
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.05)
            proc.send_signal(sig)
            assert proc.wait(30) == 130
            assert "interrupted" in proc.stderr.read()
            assert not (tmp_path / "out").exists()
            assert not list(tmp_path.glob(".out.*")), list(tmp_path.iterdir())
            assert not (tmp_path / "test.lock.json").exists()
        # SIGKILL cannot be caught: the staging folder stays, and the next build removes it
        proc = subprocess.Popen([*AIRLOCK, "bundle", "build", str(spec),
                                 "-o", str(tmp_path / "out")],
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        while not list(tmp_path.glob(".out.airlock-tmp-*/.incoming/*")):
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        assert list(tmp_path.glob(".out.airlock-tmp-*")) and not (tmp_path / "out").exists()
        _SlowHandler.delay = 0
        build(spec, tmp_path / "out", BuildOptions())
        assert not list(tmp_path.glob(".out.airlock-tmp-*"))
    finally:
        server.close()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 2 MiB filesystem (tmpfs), so writes hit ENOSPC for real."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs (root needed): {proc.stderr}", pytrace=False)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_full_disk_is_a_clear_error_and_leaves_nothing(workdir: Path, small_disk: Path) -> None:
    (workdir / "model" / "big.safetensors").write_bytes(os.urandom(3 * 1024 * 1024))
    with pytest.raises(StorageError) as e:
        build(write_spec(workdir, FULL_SPEC), small_disk / "b", BuildOptions())
    assert "no space left" in str(e.value)
    assert list(small_disk.iterdir()) == []


def test_cli_build_json_and_inspect(workdir: Path, tmp_path: Path) -> None:
    spec = write_spec(workdir, FULL_SPEC)
    proc = run_airlock("bundle", "build", str(spec), "-o", str(tmp_path / "b"), "--json",
                       check=True)
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["artifacts"] == 6 and doc["digest"].startswith("sha256:")
    meta = json.loads(run_airlock("bundle", "inspect", str(tmp_path / "b"), "--json",
                                  check=True).stdout)
    assert [a["kind"] for a in meta["artifacts"]] == ["image", "image", "model", "vsix",
                                                      "file", "file"]
    human = run_airlock("bundle", "inspect", str(tmp_path / "b"), check=True).stdout
    assert "acme.tool" in human and "test" in human


def test_sbom_is_valid_cyclonedx_1_6_listing_every_artifact(workdir: Path,
                                                           tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    b = build(write_spec(workdir, FULL_SPEC), tmp_path / "b", BuildOptions()).path
    text = (b / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    sbom = json.loads(text)
    assert sbom["specVersion"] == "1.6"
    comps = {c["bom-ref"]: c for c in sbom["components"]}
    assert set(comps) == {"image.base", "image.app", "model.tiny", "vsix.acme.tool",
                          "file.notes", "file.notes-copy"}
    assert comps["model.tiny"]["type"] == "machine-learning-model"
    assert len(comps["image.app"]["components"]) == 2  # its layers
    weights = next(c for c in comps["model.tiny"]["components"]
                   if c["name"] == "sub/weights.safetensors")
    assert weights["hashes"][0]["content"] == _sha(workdir / "model/sub/weights.safetensors")


def test_copy_of_bundle_dir_tree_is_not_shared_with_sources(workdir: Path,
                                                            tmp_path: Path) -> None:
    """Blobs are copies: changing a source after the build does not change the bundle."""
    b = build(write_spec(workdir, FULL_SPEC), tmp_path / "b", BuildOptions()).path
    (workdir / "notes.txt").write_text("changed later\n")
    shutil.rmtree(workdir / "model")
    assert verify(b).ok


def test_a_docker_archive_input_may_be_a_link_to_a_file_not_to_a_fifo(tmp_path: Path) -> None:
    """The operator's own inputs: a link to the archive is followed (the lab links its
    cached code-server archive into bundles/sample/build); a link to a FIFO is refused at
    once instead of blocking the build."""
    from conftest import two_images

    two_images(tmp_path / "cache.tar")
    (tmp_path / "images.tar").symlink_to(tmp_path / "cache.tar")
    spec = write_spec(tmp_path, """
        apiVersion: airlock/v1
        name: t
        version: 1
        phase: poc
        images:
          - {name: base, ref: "docker-archive:images.tar:test/base:1"}
    """)
    assert build(spec, tmp_path / "out", BuildOptions()).artifacts == 1
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "images.tar").unlink()
    (tmp_path / "images.tar").symlink_to(tmp_path / "fifo")
    with pytest.raises(SourceError, match="is a FIFO"):
        build(spec, tmp_path / "out2", BuildOptions(update_lock=True))
    assert not (tmp_path / "out2").exists()
