"""Images from a real OCI registry (Debian's docker-registry on loopback), pushed with the
real skopeo: tags, digests, platform selection from an index, the lock pinning a digest,
TLS with basic auth, and registries that refuse, time out or lack the tag."""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap
import threading
from pathlib import Path

import bcrypt
import pytest

from conftest import ca_and_cert, free_port, run_registry, skopeo_push, two_images, write_spec
from installer.bundle.build import BuildOptions, build
from installer.bundle.sources.http import FetchOptions
from installer.bundle.store import MT_OCI_INDEX, Layout, canonical_json
from installer.bundle.verify import verify
from installer.errors import SourceError
from installer.lab.fixtures import ImageDef, make_docker_archive

FAST = BuildOptions(fetch=FetchOptions(timeout=2, retries=1, backoff=0.05))


def spec_for(d: Path, ref: str, extra: str = "", platform: str = "linux/amd64") -> Path:
    return write_spec(d, f"""
        apiVersion: airlock/v1
        name: reg
        version: 1
        phase: poc
        target: {{platform: {platform}}}
        images:
          - name: app
            ref: {ref}
            tls_verify: false
    """.rstrip(" ") + textwrap.indent(textwrap.dedent(extra), " " * 8))


@pytest.fixture(scope="module")
def pushed(registry: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("push")
    two_images(d / "images.tar")
    skopeo_push(f"docker-archive:{d / 'images.tar'}:test/app:1", f"{registry}/team/app:1",
                "--dest-tls-verify=false")
    skopeo_push(f"docker-archive:{d / 'images.tar'}:test/base:1", f"{registry}/team/base:1",
                "--dest-tls-verify=false")
    return registry


def manifest_digest(registry: str, repo: str) -> str:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                          f"docker://{registry}/{repo}"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)["Digest"]


def test_pull_by_tag_then_lock_pins_the_digest(pushed: str, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, f"{pushed}/team/app:1")
    b = build(spec, tmp_path / "b", FAST).path
    assert verify(b).ok
    expected = manifest_digest(pushed, "team/app:1")
    art = json.loads((b / "bundle.json").read_text())["artifacts"][0]
    assert art["sourceDigest"] == expected
    lock = json.loads((tmp_path / "test.lock.json").read_text())
    assert lock["entries"]["image/app"]["digest"] == expected
    # skopeo reads the bundle's copy; config and layers are the registry's bytes
    out = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{b}:image.app"],
                                    capture_output=True, text=True, check=True).stdout)
    assert out["Digest"] == art["digest"] and len(out["Layers"]) == 2
    src = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                     f"docker://{pushed}/team/app:1"], capture_output=True,
                                    text=True, check=True).stdout)
    ours = json.loads((b / "blobs/sha256" / art["digest"][7:]).read_text())
    assert ours["config"]["digest"] == src["config"]["digest"]
    assert [x["digest"] for x in ours["layers"]] == [x["digest"] for x in src["layers"]]
    assert ours["annotations"]["dev.airlock.source.digest"] == expected

    # move the tag to another image: with the lock, the build still gets the pinned digest
    other = tmp_path / "other.tar"
    make_docker_archive(other, [ImageDef("x/y:1", [{"new": b"different\n"}])])
    skopeo_push(f"docker-archive:{other}", f"{pushed}/team/app:1", "--dest-tls-verify=false")
    assert manifest_digest(pushed, "team/app:1") != expected
    again = build(spec, tmp_path / "b2", BuildOptions(locked=True, fetch=FAST.fetch))
    assert json.loads((again.path / "bundle.json").read_text())["artifacts"][0][
        "sourceDigest"] == expected
    # --update-lock follows the tag to the new image
    moved = build(spec, tmp_path / "b3", BuildOptions(update_lock=True, fetch=FAST.fetch))
    assert json.loads((moved.path / "bundle.json").read_text())["artifacts"][0][
        "sourceDigest"] != expected
    # put the tag back for the other tests of this module
    skopeo_push(f"oci:{b}:image.app", f"{pushed}/team/app:1", "--dest-tls-verify=false")


def test_pull_by_digest(pushed: str, tmp_path: Path) -> None:
    digest = manifest_digest(pushed, "team/base:1")
    b = build(spec_for(tmp_path, f"{pushed}/team/base@{digest}"), tmp_path / "b", FAST).path
    meta = json.loads((b / "bundle.json").read_text())
    assert meta["artifacts"][0]["sourceDigest"] == digest


def test_shared_layers_across_registry_images_stored_once(pushed: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, f"""
        apiVersion: airlock/v1
        name: reg
        version: 1
        phase: poc
        images:
          - {{name: base, ref: "{pushed}/team/base:1", tls_verify: false}}
          - {{name: app, ref: "{pushed}/team/app:1", tls_verify: false}}
    """)
    b = build(spec, tmp_path / "b", FAST).path
    arts = json.loads((b / "bundle.json").read_text())["artifacts"]
    mans = [json.loads((b / "blobs/sha256" / a["digest"][7:]).read_text()) for a in arts]
    base_layers = [x["digest"] for x in mans[0]["layers"]]
    app_layers = [x["digest"] for x in mans[1]["layers"]]
    assert base_layers[0] == app_layers[0] and len(set(base_layers + app_layers)) == 2
    referenced = {d for a, m in zip(arts, mans, strict=True)
                  for d in (a["digest"], m["config"]["digest"],
                            *(x["digest"] for x in m["layers"]))}
    assert {p.name for p in (b / "blobs/sha256").iterdir()} == {d[7:] for d in referenced}


def test_missing_tag_is_a_clear_error(pushed: str, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"team/app:nope: not found in the registry"):
        build(spec_for(tmp_path, f"{pushed}/team/app:nope"), tmp_path / "b", FAST)
    assert not (tmp_path / "b").exists()


def test_platform_is_selected_from_a_multi_arch_index(registry: str, tmp_path: Path) -> None:
    # an OCI layout holding an index of two platforms, pushed with skopeo --all
    archive = make_docker_archive(tmp_path / "multi.tar", [
        ImageDef("m/m:amd64", [{"arch": b"amd64\n"}], arch="amd64"),
        ImageDef("m/m:arm64", [{"arch": b"arm64\n"}], arch="arm64"),
    ])
    from installer.bundle.sources.images import convert_docker_archive
    from installer.console import NullProgress

    layout = Layout(tmp_path / "layout")
    descs = []
    for tag, plat in (("m/m:amd64", {"os": "linux", "architecture": "amd64"}),
                      ("m/m:arm64", {"os": "linux", "architecture": "arm64", "variant": "v8"})):
        pulled = convert_docker_archive(archive, tag, f"linux/{plat['architecture']}", layout,
                                        "t", NullProgress())
        descs.append({**pulled.manifest.to_json(), "platform": plat})
    idx_digest, idx_size = layout.put_bytes(canonical_json(
        {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": descs}))
    (layout.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": MT_OCI_INDEX, "digest": idx_digest, "size": idx_size,
        "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    skopeo_push(f"oci:{layout.root}:multi", f"{registry}/team/multi:1", "--all",
                "--dest-tls-verify=false")

    b = build(spec_for(tmp_path, f"{registry}/team/multi:1", platform="linux/arm64"),
              tmp_path / "b", FAST).path
    art = json.loads((b / "bundle.json").read_text())["artifacts"][0]
    raw_index = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                f"docker://{registry}/team/multi:1"], capture_output=True,
                               check=True).stdout
    arm = next(m for m in json.loads(raw_index)["manifests"]
               if m["platform"]["architecture"] == "arm64")
    assert art["platform"] == "linux/arm64" and art["sourceDigest"] == arm["digest"]
    import hashlib

    assert art["indexDigest"] == "sha256:" + hashlib.sha256(raw_index).hexdigest()
    # the same index straight from the layout works too (oci: source)
    (tmp_path / "s2").mkdir()
    b2 = build(spec_for(tmp_path / "s2", f"oci:{layout.root}:multi"), tmp_path / "b2", FAST)
    assert json.loads((b2.path / "bundle.json").read_text())["artifacts"][0]["digest"] == \
        descs[0]["digest"]
    with pytest.raises(SourceError, match="no linux/s390x image in its index; it has "
                                          "linux/amd64, linux/arm64/v8"):
        build(spec_for(tmp_path, f"{registry}/team/multi:1", platform="linux/s390x"),
              tmp_path / "b3", BuildOptions(update_lock=True, fetch=FAST.fetch))


def test_refused_connection_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    with pytest.raises(SourceError) as e:
        build(spec_for(tmp_path, f"127.0.0.1:{port}/team/app:1"), tmp_path / "b", FAST)
    assert "cannot connect" in str(e.value) and e.value.hint


def test_registry_that_never_answers_times_out(tmp_path: Path) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])  # accept, then say nothing
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        with pytest.raises(SourceError, match="timed out"):
            build(spec_for(tmp_path, f"127.0.0.1:{srv.getsockname()[1]}/team/app:1"),
                  tmp_path / "b", BuildOptions(fetch=FetchOptions(timeout=0.5, retries=1,
                                                                  backoff=0.01)))
        assert len(held) >= 2  # it tried again before giving up
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- TLS + basic auth

@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("tlsreg")
    ca, cert, key = ca_and_cert(d)
    pw = bcrypt.hashpw(b"s3cret-pass", bcrypt.gensalt(rounds=4)).decode()
    (d / "htpasswd").write_text(f"stager:{pw}\n")
    with run_registry(d, auth={"htpasswd": {"realm": "airlock-test",
                                            "path": str(d / "htpasswd")}},
                      tls={"certificate": str(cert), "key": str(key)}) as host:
        img = two_images(d / "images.tar")
        certs = d / "certs"
        certs.mkdir()
        (certs / "ca.crt").write_bytes(ca.read_bytes())
        skopeo_push(f"docker-archive:{img}:test/app:1", f"{host}/secure/app:1",
                    "--dest-cert-dir", str(certs), "--dest-creds", "stager:s3cret-pass")
        yield host, ca


def tls_spec(d: Path, host: str, extra: str) -> Path:
    return write_spec(d, f"""
        apiVersion: airlock/v1
        name: reg
        version: 1
        phase: poc
        images:
          - name: app
            ref: {host}/secure/app:1
    """.rstrip(" ") + textwrap.indent(textwrap.dedent(extra), " " * 12))


def test_tls_registry_with_basic_auth(tls_registry, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    host, ca = tls_registry
    monkeypatch.setenv("REG_PASSWORD", "s3cret-pass")
    spec = tls_spec(tmp_path, host, f"""
        ca_file: {ca}
        auth: {{username: stager, password_env: REG_PASSWORD}}
    """)
    b = build(spec, tmp_path / "b", FAST).path
    assert verify(b).ok
    assert "s3cret" not in (b / "bundle.json").read_text()
    assert "s3cret" not in (tmp_path / "test.lock.json").read_text()


def test_tls_registry_without_credentials_is_refused(tls_registry, tmp_path: Path) -> None:
    host, ca = tls_registry
    with pytest.raises(SourceError, match="needs credentials"):
        build(tls_spec(tmp_path, host, f"ca_file: {ca}\n"), tmp_path / "b", FAST)


def test_tls_registry_with_wrong_password(tls_registry, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    host, ca = tls_registry
    monkeypatch.setenv("REG_PASSWORD", "wrong")
    spec = tls_spec(tmp_path, host, f"""
        ca_file: {ca}
        auth: {{username: stager, password_env: REG_PASSWORD}}
    """)
    with pytest.raises(SourceError, match="refused access"):
        build(spec, tmp_path / "b", FAST)


def test_unknown_ca_fails_tls_verification(tls_registry, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    host, _ = tls_registry
    monkeypatch.setenv("REG_PASSWORD", "s3cret-pass")
    spec = tls_spec(tmp_path, host, "auth: {username: stager, password_env: REG_PASSWORD}\n")
    with pytest.raises(SourceError, match="TLS verification failed"):
        build(spec, tmp_path / "b", FAST)


def test_missing_password_variable(tls_registry, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    host, ca = tls_registry
    monkeypatch.delenv("REG_PASSWORD", raising=False)
    spec = tls_spec(tmp_path, host, f"""
        ca_file: {ca}
        auth: {{username: stager, password_env: REG_PASSWORD}}
    """)
    with pytest.raises(SourceError, match="environment variable REG_PASSWORD is not set"):
        build(spec, tmp_path / "b", FAST)
