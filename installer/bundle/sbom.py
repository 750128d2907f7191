"""CycloneDX 1.6 SBOM of a bundle, made with cyclonedx-python-lib.

Every artifact is a component with its manifest digest; image layers, model files and
plain files are nested components with their own SHA-256. Serial number and timestamp are
derived from the bundle, so the same inputs give the same SBOM bytes.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from installer import __version__
from installer.bundle.artifacts import Artifact

TYPES = {"image": ComponentType.CONTAINER, "model": ComponentType.MACHINE_LEARNING_MODEL,
         "vsix": ComponentType.APPLICATION, "file": ComponentType.FILE,
         "pypi": ComponentType.DATA, "npm": ComponentType.DATA, "deb": ComponentType.DATA,
         "maven": ComponentType.DATA, "go": ComponentType.DATA}


def package_purl(kind: str, info: dict[str, str]) -> PackageURL:
    if kind == "npm":
        scope, _, name = info["name"].rpartition("/")
        return PackageURL(type="npm", namespace=scope or None, name=name,
                          version=info["version"])
    if kind == "deb":
        return PackageURL(type="deb", namespace="debian", name=info["name"],
                          version=info["version"],
                          qualifiers={"arch": info["architecture"]}
                          if info.get("architecture") else None)
    if kind == "maven":  # name is group:artifact
        group, _, artifact = info["name"].partition(":")
        return PackageURL(type="maven", namespace=group, name=artifact, version=info["version"])
    if kind == "go":  # name is the module path
        namespace, _, name = info["name"].rpartition("/")
        return PackageURL(type="golang", namespace=namespace or None, name=name,
                          version=info["version"])
    return PackageURL(type="pypi", name=info["name"].lower().replace("_", "-"),
                      version=info["version"])


def _sha(digest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=digest.split(":", 1)[1])]


def _purl(a: Artifact) -> PackageURL | None:
    if a.kind == "image":
        return PackageURL(type="oci", name=a.name, version=a.manifest.digest,
                          qualifiers={"repository_url": a.extra["source"]}
                          if a.extra.get("source") else None)
    return None


def make_sbom(name: str, version: int, phase: str, created: str, content_id: str,
              artifacts: list[Artifact]) -> bytes:
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"airlock:{name}:{content_id}"))
    bom.metadata.timestamp = datetime.fromisoformat(created.replace("Z", "+00:00"))
    bom.metadata.component = Component(
        name=name, version=str(version), type=ComponentType.DATA, bom_ref=f"bundle:{name}",
        properties=[Property(name="airlock:phase", value=phase),
                    Property(name="airlock:generator", value=f"airlock {__version__}")])
    for a in artifacts:
        comp = Component(name=a.name, version=a.version, type=TYPES[a.kind],
                         bom_ref=a.ref, hashes=_sha(a.manifest.digest), purl=_purl(a),
                         group=a.extra.get("publisher"),
                         properties=[Property(name="airlock:kind", value=a.kind),
                                     Property(name="airlock:manifest", value=a.manifest.digest)])
        if a.kind == "image":
            comp.properties.add(Property(name="airlock:platform", value=a.extra["platform"]))
            for i, layer in enumerate(a.blobs[1:]):
                comp.components.add(Component(
                    name=f"layer-{i:03d}", type=ComponentType.FILE,
                    bom_ref=f"{a.ref}/layer-{i:03d}",
                    hashes=_sha(layer.digest),
                    properties=[Property(name="airlock:mediaType", value=layer.media_type),
                                Property(name="airlock:size", value=str(layer.size))]))
        elif "packages" in a.extra:
            for f in a.files:
                info = a.extra["packages"][f.relpath]
                comp.components.add(Component(
                    name=info["name"], version=info["version"], type=ComponentType.LIBRARY,
                    bom_ref=f"{a.ref}/{f.relpath}", hashes=_sha(f.digest),
                    purl=package_purl(a.kind, info),
                    properties=[Property(name="airlock:file", value=f.relpath),
                                Property(name="airlock:size", value=str(f.size))]))
        else:
            for f in a.files:
                comp.components.add(Component(
                    name=f.relpath, type=ComponentType.FILE, bom_ref=f"{a.ref}/{f.relpath}",
                    hashes=_sha(f.digest),
                    properties=[Property(name="airlock:size", value=str(f.size))]))
        bom.components.add(comp)
    bom.register_dependency(bom.metadata.component, list(bom.components))
    return (JsonV1Dot6(bom).output_as_string(indent=2) + "\n").encode()
