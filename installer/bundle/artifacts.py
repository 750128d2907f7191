"""OCI artifact manifests for non-image content: one layer per file, its relative path in
the title annotation. Models follow the CNCF ModelPack media types."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from installer.bundle.store import (
    A_CREATED,
    A_KIND,
    A_NAME,
    A_REF,
    A_TITLE,
    A_VERSION,
    MT_EMPTY,
    MT_OCI_MANIFEST,
    Descriptor,
    Layout,
    canonical_json,
)

KIND_ORDER = {"image": 0, "model": 1, "vsix": 2, "file": 3, "pypi": 4, "npm": 5, "deb": 6,
              "maven": 7, "go": 8}

# CNCF ModelPack (modelpack/model-spec) media types and annotations.
MP_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MP_CONFIG = "application/vnd.cncf.model.config.v1+json"
MP_WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
MP_WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
MP_DOC = "application/vnd.cncf.model.doc.v1.raw"
MP_FILEPATH = "org.cncf.model.filepath"
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".gguf", ".pt", ".pth", ".onnx", ".h5", ".msgpack",
                   ".ckpt", ".npz", ".tflite"}

VSIX_ARTIFACT = "application/vnd.airlock.vsix.v1"
VSIX_LAYER = "application/vnd.airlock.vsix.v1+zip"
FILE_ARTIFACT = "application/vnd.airlock.file.v1"
FILE_LAYER = "application/octet-stream"
MIRROR_ARTIFACT = "application/vnd.airlock.mirror.{kind}.v1"
MIRROR_LAYER = {"pypi": "application/vnd.airlock.pypi.file.v1",
                "npm": "application/vnd.airlock.npm.tarball.v1+gzip",
                "deb": "application/vnd.debian.binary-package",
                "maven": "application/vnd.airlock.maven.file.v1",
                "go": "application/vnd.airlock.go.file.v1"}
A_PACKAGE = "dev.airlock.package.name"
A_PACKAGE_VERSION = "dev.airlock.package.version"

EMPTY_JSON = b"{}"


@dataclass
class StoredFile:
    relpath: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class Artifact:
    """One entry of the bundle: an image or an artifact, with what bundle.json and the SBOM
    say about it."""

    kind: str
    name: str
    version: str | None
    manifest: Descriptor
    blobs: list[Descriptor]  # config + layers (what the manifest points at)
    files: list[StoredFile] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.kind}.{self.name}"

    @property
    def size(self) -> int:
        return self.manifest.size + sum(b.size for b in self.blobs)

    def index_descriptor(self, created: str) -> Descriptor:
        ann = {A_REF: self.ref, A_KIND: self.kind, A_NAME: self.name, A_CREATED: created}
        if self.version:
            ann[A_VERSION] = self.version
        return Descriptor(self.manifest.media_type, self.manifest.digest, self.manifest.size,
                          ann, artifact_type=self.extra.get("artifactType"))

    def sort_key(self) -> tuple[int, str]:
        return KIND_ORDER[self.kind], self.name


def model_layer_type(relpath: str) -> str:
    p = PurePosixPath(relpath)
    if p.suffix.lower() in WEIGHT_SUFFIXES:
        return MP_WEIGHT
    stem = p.name.upper()
    if p.suffix.lower() in (".md", ".txt", ".rst") or stem.startswith(("README", "LICENSE")):
        return MP_DOC
    return MP_WEIGHT_CONFIG


def build_artifact(store: Layout, kind: str, name: str, version: str | None,
                   files: list[StoredFile], created: str,
                   annotations: dict[str, str] | None = None,
                   family: str | None = None) -> Artifact:
    files = sorted(files, key=lambda f: f.relpath)
    layers = []
    for f in files:
        ann = {A_TITLE: f.relpath, **f.annotations}
        if kind == "model":
            mt = model_layer_type(f.relpath)
            ann[MP_FILEPATH] = f.relpath
        elif kind in MIRROR_LAYER:
            mt = MIRROR_LAYER[kind]
        else:
            mt = VSIX_LAYER if kind == "vsix" else FILE_LAYER
        layers.append(Descriptor(mt, f.digest, f.size, ann))
    if kind == "model":
        artifact_type = MP_ARTIFACT
        descriptor: dict[str, Any] = {"name": name, "createdAt": created}
        if version:
            descriptor["version"] = version
        if family:
            descriptor["family"] = family
        fmt = next((PurePosixPath(f.relpath).suffix[1:] for f in files
                    if model_layer_type(f.relpath) == MP_WEIGHT), "")
        config_doc = {"descriptor": descriptor, "config": {"format": fmt} if fmt else {},
                      "modelfs": {"type": "layers", "diffIds": [f.digest for f in files]}}
        cdigest, csize = store.put_bytes(canonical_json(config_doc))
        config = Descriptor(MP_CONFIG, cdigest, csize)
    else:
        artifact_type = {"vsix": VSIX_ARTIFACT, "file": FILE_ARTIFACT}.get(
            kind, MIRROR_ARTIFACT.format(kind=kind))
        cdigest, csize = store.put_bytes(EMPTY_JSON)
        config = Descriptor(MT_EMPTY, cdigest, csize)
    ann = {A_CREATED: created, A_TITLE: name, **(annotations or {})}
    if version:
        ann[A_VERSION] = version
    doc = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "artifactType": artifact_type,
           "config": config.to_json(), "layers": [d.to_json() for d in layers],
           "annotations": ann}
    mdigest, msize = store.put_bytes(canonical_json(doc))
    return Artifact(kind, name, version, Descriptor(MT_OCI_MANIFEST, mdigest, msize),
                    [config, *layers], files, {"artifactType": artifact_type})
