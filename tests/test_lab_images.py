"""The lab's locally built images (installer/lab/localimage.py and the builders that use
it): Keycloak's distribution is refused when its bytes are not the pinned ones; a one-layer
image archive is a real `docker save` archive that the bundle's image source reads. The
builds themselves run in `airlock demo` (test_identity, test_ide)."""

from __future__ import annotations

import json
import tarfile

import pytest

from installer.errors import LabError
from installer.lab import keycloak, localimage


def test_keycloak_zip_not_matching_the_pin_is_refused_and_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOCK_CACHE", str(tmp_path))
    z = (tmp_path / "maven/org/keycloak/keycloak-quarkus-dist" / keycloak.VERSION
         / f"keycloak-quarkus-dist-{keycloak.VERSION}.zip")
    z.parent.mkdir(parents=True)
    z.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: not Keycloak
    with pytest.raises(LabError, match=r"not the pinned 490189d9"):
        keycloak.fetch(say=lambda m: None)
    assert not z.exists()


def test_the_recipe_names_the_tag() -> None:
    assert keycloak.tag().startswith(keycloak.VERSION + "-")
    assert localimage.recipe_tag("1", "a") != localimage.recipe_tag("1", "b")


def test_one_layer_archive_is_a_docker_save_archive(tmp_path) -> None:
    from installer.bundle.sources.images import convert_docker_archive  # the bundle's reader
    from installer.bundle.store import Layout
    from installer.console import NullProgress

    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/hello").write_text("#!/bin/sh\necho hi\n")
    dest = tmp_path / "img.tar"
    localimage.pack(root, tmp_path, dest, "airlock-lab/t:1", {"User": "1:1"}, "test")
    assert not root.exists()
    with tarfile.open(dest) as t:
        manifest = json.load(t.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["airlock-lab/t:1"]
        config = json.load(t.extractfile(manifest[0]["Config"]))
    assert config["config"]["User"] == "1:1" and config["config"]["Env"][0].startswith("PATH=")
    pulled = convert_docker_archive(dest, None, "linux/amd64", Layout(tmp_path / "layout"),
                                    "t", NullProgress())
    assert pulled.manifest.digest.startswith("sha256:")
