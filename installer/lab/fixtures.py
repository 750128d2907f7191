"""Deterministic builders for real input formats: ``docker save`` archives, VSIX packages
and Hugging Face model folders. Same arguments -> same bytes, so lock files stay valid.

Used by the embedded sample bundle, the tests and the benchmark; none of this needs a
network or a container engine.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

EPOCH = 1767225600  # 2026-01-01T00:00:00Z, fixed so that outputs are reproducible
ZIP_TIME = (2026, 1, 1, 0, 0, 0)

Files = Mapping[str, bytes]


def layer_tar(files: Files) -> bytes:
    """An uncompressed, reproducible layer tarball; folders are implied by paths."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs = sorted({"/".join(p.split("/")[:i]) for p in files
                       for i in range(1, p.count("/") + 1)})
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tar.addfile(ti)
        for path in sorted(files):
            data = files[path]
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode, ti.mtime = len(data), 0o755 if path.endswith(".sh") else 0o644, EPOCH
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class ImageDef:
    tag: str  # repo:tag
    layers: Sequence[Files]
    arch: str = "amd64"
    labels: dict[str, str] = field(default_factory=dict)
    cmd: Sequence[str] = ("/bin/sh",)


def make_docker_archive(path: Path, images: Sequence[ImageDef]) -> Path:
    """A ``docker save``-format tarball holding ``images`` (shared layers stored once)."""
    members: dict[str, bytes] = {}
    manifest = []
    for img in images:
        tars = [layer_tar(files) for files in img.layers]
        diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
        for t, d in zip(tars, diff_ids, strict=True):
            members[f"{d[7:]}/layer.tar"] = t
            members[f"{d[7:]}/VERSION"] = b"1.0"
        config = {
            "architecture": img.arch, "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Cmd": list(img.cmd), "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                       "Labels": dict(img.labels)},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2026-01-01T00:00:00Z", "created_by": f"airlock layer {i}"}
                        for i in range(len(tars))],
        }
        raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        cname = hashlib.sha256(raw).hexdigest() + ".json"
        members[cname] = raw
        manifest.append({"Config": cname, "RepoTags": [img.tag],
                         "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids]})
    members["manifest.json"] = json.dumps(manifest, separators=(",", ":")).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(members, key=lambda n: (n == "manifest.json", n)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(members[name]), 0o644, EPOCH
            tar.addfile(ti, io.BytesIO(members[name]))
    return path


CONTENT_TYPES = b"""<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension=".json" ContentType="application/json"/>
<Default Extension=".js" ContentType="application/javascript"/>
<Default Extension=".md" ContentType="text/markdown"/>
<Default Extension=".vsixmanifest" ContentType="text/xml"/>
</Types>
"""


def make_vsix(path: Path, publisher: str, name: str, version: str, engine: str,
              files: Files | None = None, display_name: str | None = None) -> Path:
    """A VSIX package laid out as ``vsce package`` does (manifest, package.json, code)."""
    pkg = {"name": name, "publisher": publisher, "version": version,
           "displayName": display_name or name, "engines": {"vscode": engine},
           "main": "./extension.js", "activationEvents": ["onStartupFinished"],
           "license": "Apache-2.0"}
    manifest = f"""<?xml version="1.0" encoding="utf-8"?>
<PackageManifest Version="2.0.0" xmlns="http://schemas.microsoft.com/developer/vsx-schema/2011">
  <Metadata>
    <Identity Language="en-US" Id="{name}" Version="{version}" Publisher="{publisher}"/>
    <DisplayName>{display_name or name}</DisplayName>
    <Properties><Property Id="Microsoft.VisualStudio.Code.Engine" Value="{engine}"/></Properties>
  </Metadata>
  <Installation><InstallationTarget Id="Microsoft.VisualStudio.Code"/></Installation>
  <Dependencies/>
  <Assets>
    <Asset Type="Microsoft.VisualStudio.Code.Manifest" Path="extension/package.json"/>
  </Assets>
</PackageManifest>
""".encode()
    entries = {"[Content_Types].xml": CONTENT_TYPES, "extension.vsixmanifest": manifest,
               "extension/package.json": json.dumps(pkg, indent=2).encode()}
    for rel, data in (files or {}).items():
        entries[f"extension/{rel}"] = data
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in sorted(entries):
            zi = zipfile.ZipInfo(rel, ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, entries[rel])
    return path


def safetensors(tensors: Mapping[str, tuple[Sequence[int], bytes]]) -> bytes:
    """A real safetensors file of float32 tensors: {name: (shape, raw little-endian bytes)}."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for tname in sorted(tensors):
        shape, data = tensors[tname]
        header[tname] = {"dtype": "F32", "shape": list(shape),
                         "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(tensors[t][1] for t in sorted(tensors))


def make_model_folder(path: Path, files: Files) -> Path:
    for rel, data in files.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return path
