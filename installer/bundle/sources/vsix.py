"""VSIX packages: identity and ``engines.vscode`` read from the zip without extracting it,
and the engine range checked against the VS Code version the bundle targets.

The zip is read by :class:`installer.untrusted_zip.BoundedZip`, and every member is
inflated (streamed) once, so that no VSIX the IDE hosts will unpack passes its bounds. A
VSIX that is not what it claims is a bad source (exit 4), said at its spec entry."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import semantic_version

from installer.bundle.spec import Located
from installer.errors import AirlockError
from installer.untrusted import Err, parse_json
from installer.untrusted_zip import BoundedZip

MAX_META = 1024 * 1024  # extension/package.json and extension.vsixmanifest, each
NS = "{http://schemas.microsoft.com/developer/vsx-schema/2011}"
IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SEMVER = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]{1,100})?$")


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


def read_vsix(path: Path, at: Located, label: str) -> VsixInfo:
    def error(message: str, hint: str | None = None) -> AirlockError:
        return at.source_error(message, hint=hint)

    what = f"VSIX {label}"
    with BoundedZip(path, what=what, error=error) as zf:
        pkg_raw = zf.read("extension/package.json", MAX_META)
        manifest_raw = zf.read("extension.vsixmanifest", MAX_META)
        if pkg_raw is None:
            raise error(f"{what} has no extension/package.json, so it is not a VSIX package",
                        hint="a .vsix is a zip with extension/package.json")
        zf.verify()  # the IDE hosts unpack every member: each is inflated once here
    pkg = parse_json(pkg_raw, f"{what}: extension/package.json", error=error)
    if not isinstance(pkg, dict):
        raise error(f"{what}: extension/package.json is not a JSON object")
    try:
        publisher, name, version = pkg["publisher"], pkg["name"], pkg["version"]
        engine = (pkg.get("engines") or {})["vscode"]
    except (KeyError, TypeError) as e:
        raise error(f"{what}: extension/package.json lacks {e} (publisher, name, version "
                    "and engines.vscode are required)") from None
    display = pkg.get("displayName")
    for key, value in (("publisher", publisher), ("name", name), ("version", version),
                       ("engines.vscode", engine)):
        if not isinstance(value, str):
            raise error(f"{what}: extension/package.json's {key} is not a string "
                        f"({type(value).__name__})")
    if display is not None and not isinstance(display, str):
        raise error(f"{what}: extension/package.json's displayName is not a string")
    if manifest_raw is not None:
        _check_manifest(manifest_raw, (publisher, name, version), what, error)
    for key, value in (("publisher", publisher), ("name", name)):
        if not IDENT.match(value):
            raise error(f"{what}: {key} {value[:200]!r} is not a valid extension identifier")
    if not SEMVER.match(version):
        raise error(f"{what}: version {version[:200]!r} is not a semantic version "
                    "(such as 1.2.3)")
    return VsixInfo(publisher, name, version, engine, display)


def _check_manifest(raw: bytes, ident: tuple[str, str, str], what: str, error: Err) -> None:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # UTF-16 would hide a DTD from the check below; vsce writes UTF-8
        raise error(f"{what}: extension.vsixmanifest is not UTF-8 (byte {e.start})") from None
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        raise error(f"{what}: extension.vsixmanifest carries a DTD; refused")
    try:
        found = ET.fromstring(text).find(f"{NS}Metadata/{NS}Identity")  # noqa: S314
    except ET.ParseError as e:
        raise error(f"{what}: extension.vsixmanifest is not valid XML ({e})") from None
    if found is not None:
        m = (found.get("Publisher"), found.get("Id"), found.get("Version"))
        if m != ident:
            raise error(f"{what}: extension.vsixmanifest says {m[0]}.{m[1]}@{m[2]} "
                        f"but package.json says {ident[0]}.{ident[1]}@{ident[2]}")


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
