"""Images from a real local container engine (Debian's dockerd, started by tests/run.sh)
through the docker SDK."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import two_images, write_spec
from installer.bundle.build import BuildOptions, build
from installer.bundle.verify import verify
from installer.errors import SourceError


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> str:
    import docker
    from docker.errors import DockerException

    host = os.environ.get("DOCKER_HOST")
    try:
        client = docker.from_env(timeout=20)
        client.ping()
    except DockerException as e:
        pytest.fail(f"no container engine answers at DOCKER_HOST={host!r} ({e}); "
                    "tests/run.sh starts Debian's dockerd for the tests", pytrace=False)
    archive = two_images(tmp_path_factory.mktemp("eng") / "images.tar")
    with open(archive, "rb") as f:
        client.images.load(f.read())
    return host or ""


def spec(d: Path, ref: str) -> Path:
    return write_spec(d, f"""
        apiVersion: airlock/v1
        name: eng
        version: 1
        phase: poc
        images:
          - name: app
            ref: {ref}
    """)


def test_image_from_the_local_engine(engine: str, tmp_path: Path) -> None:
    b = build(spec(tmp_path, "docker-daemon:test/app:1"), tmp_path / "b", BuildOptions()).path
    assert verify(b).ok
    art = json.loads((b / "bundle.json").read_text())["artifacts"][0]
    out = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{b}:image.app"],
                                    capture_output=True, text=True, check=True).stdout)
    assert len(out["Layers"]) == 2 and out["Digest"] == art["digest"]
    # the engine's image ID is the config digest we stored
    import docker

    image_id = docker.from_env().images.get("test/app:1").id
    manifest = json.loads((b / "blobs/sha256" / art["digest"][7:]).read_text())
    assert manifest["config"]["digest"] == image_id
    # same image from the archive it was loaded from: same manifest (layers unchanged)
    (tmp_path / "a").mkdir()
    two_images(tmp_path / "a" / "images.tar")
    b2 = build(spec(tmp_path / "a", "docker-archive:images.tar:test/app:1"), tmp_path / "b2",
               BuildOptions()).path
    assert json.loads((b2 / "bundle.json").read_text())["artifacts"][0]["digest"] == \
        art["digest"]


def test_missing_image_in_engine(engine: str, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="the local engine has no such image"):
        build(spec(tmp_path, "docker-daemon:test/nope:1"), tmp_path / "b", BuildOptions())
    assert not (tmp_path / "b").exists()


def test_no_engine_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(SourceError, match="no container engine answers"):
        build(spec(tmp_path, "docker-daemon:test/app:1"), tmp_path / "b", BuildOptions())
