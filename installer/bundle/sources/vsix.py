"""VSIX packages: identity and ``engines.vscode`` read from the zip without extracting it,
and the engine range checked against the VS Code version the bundle targets."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import semantic_version

from installer.bundle.spec import Located

MAX_META = 1024 * 1024
NS = "{http://schemas.microsoft.com/developer/vsx-schema/2011}"


@dataclass(frozen=True)
class VsixInfo:
    publisher: str
    name: str
    version: str
    engine: str
    display_name: str | None = None

    @property
    def id(self) -> str:
        return f"{self.publisher}.{self.name}"


def _read(zf: zipfile.ZipFile, name: str) -> bytes | None:
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    if info.file_size > MAX_META:
        raise ValueError(f"{name} is larger than {MAX_META} bytes")
    return zf.read(info)


def read_vsix(path: Path, at: Located, label: str) -> VsixInfo:
    try:
        with zipfile.ZipFile(path) as zf:
            pkg_raw = _read(zf, "extension/package.json")
            manifest_raw = _read(zf, "extension.vsixmanifest")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise at.error(f"{label} is not a valid VSIX package ({e})",
                       hint="a .vsix is a zip with extension/package.json") from None
    if pkg_raw is None:
        raise at.error(f"{label} has no extension/package.json, so it is not a VSIX package")
    try:
        pkg = json.loads(pkg_raw)
        publisher, name, version = pkg["publisher"], pkg["name"], pkg["version"]
        engine = (pkg.get("engines") or {})["vscode"]
    except (ValueError, KeyError, TypeError) as e:
        raise at.error(f"{label}: extension/package.json lacks {e} (publisher, name, version "
                       "and engines.vscode are required)") from None
    if manifest_raw is not None:
        if b"<!DOCTYPE" in manifest_raw or b"<!ENTITY" in manifest_raw:
            raise at.error(f"{label}: extension.vsixmanifest carries a DTD; refused")
        try:
            ident = ET.fromstring(manifest_raw).find(f"{NS}Metadata/{NS}Identity")  # noqa: S314
        except ET.ParseError as e:
            raise at.error(f"{label}: extension.vsixmanifest is not valid XML ({e})") from None
        if ident is not None:
            m = (ident.get("Publisher"), ident.get("Id"), ident.get("Version"))
            if m != (publisher, name, version):
                raise at.error(f"{label}: extension.vsixmanifest says {m[0]}.{m[1]}@{m[2]} "
                               f"but package.json says {publisher}.{name}@{version}")
    for what, value in (("publisher", publisher), ("name", name)):
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", str(value)):
            raise at.error(f"{label}: {what} {value!r} is not a valid extension identifier")
    return VsixInfo(str(publisher), str(name), str(version), str(engine),
                    pkg.get("displayName"))


def engine_allows(engine: str, vscode: str) -> bool:
    """npm-style range as VS Code reads it: '^1.80.0', '>=1.60.0', '*', '1.x'."""
    engine = engine.strip()
    if engine in ("*", ""):
        return True
    # VS Code ignores a pre-release tag on the engine (e.g. ^1.90.0-insider).
    cleaned = re.sub(r"(\d+\.\d+\.\d+)-[0-9A-Za-z.-]+", r"\1", engine)
    spec = semantic_version.NpmSpec(cleaned)
    return semantic_version.Version(vscode) in spec


def check_engine(info: VsixInfo, vscode: str, at: Located, label: str) -> None:
    try:
        ok = engine_allows(info.engine, vscode)
    except ValueError:
        raise at.error(f"{label}: engines.vscode {info.engine!r} is not a version range "
                       "airlock understands") from None
    if not ok:
        raise at.error(f"{info.id}@{info.version} needs VS Code {info.engine}, but this "
                       f"bundle targets VS Code {vscode}",
                       hint="pick a version of the extension built for this VS Code, or "
                            "change target.vscode")
