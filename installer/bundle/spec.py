"""The bundle spec: YAML, validated against ``schema.json``, every error with file:line.

Loading keeps the line of every mapping key and sequence item, so that a schema error found
at a JSON path can be reported at the line a person edits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from installer.errors import SourceError, SpecError
from installer.untrusted import LIMITS, read_bytes

Path_t = tuple[str | int, ...]


def schema() -> dict:
    return json.loads(resources.files("installer.bundle").joinpath("schema.json").read_text())


# --------------------------------------------------------------------------- YAML with lines

# A spec is a page or two of YAML: a few hundred values, nested five levels. These bounds
# are far above that and keep a hostile spec (1 MiB at most) to a few seconds and ~100 MiB.
MAX_NODES = 100_000
MAX_DEPTH = 32


class _SpecLoader(yaml.SafeLoader):
    """A SafeLoader that refuses, while composing and so before anything is built, anchors
    and aliases (a few hundred bytes of aliases expand to gigabytes: specs use none), more
    than MAX_NODES values and collections nested deeper than MAX_DEPTH."""

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self.file, self.nodes, self.depth = file, 0, 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise SpecError("YAML anchors and aliases (&name, *name) are not accepted in a "
                            "bundle spec", file=self.file, line=line,
                            hint="write the value out where it is needed")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SpecError(f"more than {MAX_NODES} YAML values; a bundle spec has far "
                            "fewer", file=self.file, line=line)
        if not isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SpecError(f"YAML nested deeper than {MAX_DEPTH} levels; a bundle spec "
                            "nests five", file=self.file, line=line)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml_with_lines(text: str, file: str) -> tuple[Any, dict[Path_t, int]]:
    """Parse YAML into plain data plus {json path: 1-based line}. Duplicate keys are errors;
    so are anchors and aliases, and more than MAX_NODES values or MAX_DEPTH levels."""
    try:
        loader = _SpecLoader(text, file)  # its reader refuses control characters here
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise SpecError(f"not valid YAML: character {e.character:#06x} is not allowed "
                        "(control characters are not YAML text)", file=file, line=line) \
            from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise SpecError(f"not valid YAML: {getattr(e, 'problem', e)}", file=file,
                            line=mark.line + 1 if mark else None) from None
        lines: dict[Path_t, int] = {}
        if node is None:
            return None, lines
        return _convert(node, (), lines, file, loader), lines
    finally:
        loader.dispose()


def _construct(loader: yaml.SafeLoader, node: yaml.Node, file: str) -> Any:
    try:
        return loader.construct_object(node)
    except yaml.YAMLError as e:
        raise SpecError(f"not valid YAML: {getattr(e, 'problem', None) or e}", file=file,
                        line=node.start_mark.line + 1) from None


def _convert(node: yaml.Node, path: Path_t, lines: dict[Path_t, int], file: str,
             loader: yaml.SafeLoader) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise SpecError("keys must be plain scalars", file=file,
                                line=knode.start_mark.line + 1)
            key = _construct(loader, knode, file)
            if key in out:
                raise SpecError(f"duplicate key {key!r}", file=file,
                                line=knode.start_mark.line + 1)
            lines[(*path, key)] = knode.start_mark.line + 1
            out[key] = _convert(vnode, (*path, key), lines, file, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, (*path, i), lines, file, loader) for i, v in enumerate(node.value)]
    return _construct(loader, node, file)


# --------------------------------------------------------------------------- validation

def _fmt_path(path: Path_t) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_for(path: Path_t, lines: dict[Path_t, int]) -> int | None:
    for i in range(len(path), -1, -1):
        if path[:i] in lines:
            return lines[path[:i]]
    return None


def _describe(err: ValidationError) -> tuple[Path_t, str]:
    """A person's wording of one jsonschema error, and the path it is about."""
    path: Path_t = tuple(err.absolute_path)
    expected = err.schema.get("x-expected") if isinstance(err.schema, dict) else None
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        return (*path, extra[0]), (f"unknown key {extra[0]!r}; expected one of: "
                                   + ", ".join(allowed))
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return path, f"missing required key {missing!r}"
    if v == "type":
        return path, (f"expected {err.validator_value}, got "
                      f"{type(err.instance).__name__} {err.instance!r}")
    if v == "enum":
        return path, (f"expected one of {', '.join(map(str, err.validator_value))}; "
                      f"got {err.instance!r}")
    if expected:
        return path, f"expected {expected}; got {err.instance!r}"
    return path, err.message


def _whole(checker: Any, instance: Any) -> bool:
    """JSON Schema's "integer" as airlock means it: an int, never a bool (Python's bool is
    an int) nor a float with no fraction (jsonschema accepts 3.0)."""
    return type(instance) is int


_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _whole))


def validate(data: Any, lines: dict[Path_t, int], file: str) -> None:
    if not isinstance(data, dict):
        raise SpecError("a bundle spec must be a YAML mapping (name:, version:, phase:, ...)",
                        file=file, line=1)
    errors = list(_Validator(schema()).iter_errors(data))
    if errors:
        # One error, the first a person meets reading top to bottom.
        described = [_describe(e) for e in errors]
        path, message = min(described, key=lambda d: (_line_for(d[0], lines) or 0, len(d[0])))
        raise SpecError(message, file=file, line=_line_for(path, lines), field=_fmt_path(path))


# --------------------------------------------------------------------------- typed spec

@dataclass(frozen=True)
class Located:
    """Where an entry is in the spec, for error messages raised while building."""

    file: str
    line: int | None
    field: str

    def error(self, message: str, hint: str | None = None) -> SpecError:
        return SpecError(message, file=self.file, line=self.line, field=self.field, hint=hint)

    def source_error(self, message: str, hint: str | None = None) -> SourceError:
        """What the entry names is bad (a VSIX, an archive): exit 4, said at the entry."""
        return SourceError(str(self.error(message)), hint=hint)


@dataclass(frozen=True)
class ImageEntry:
    name: str
    ref: str
    platform: str
    tls_verify: bool
    ca_file: Path | None
    username: str | None
    password_env: str | None
    at: Located
    lock: bool = True  # false: built here in the same run; the lock does not pin it


@dataclass(frozen=True)
class RemoteFile:
    path: str
    url: str
    sha256: str
    size: int | None = None  # bytes, when the spec states it (else the lock, else a cap)


OPEN_VSX = "https://open-vsx.org"


@dataclass(frozen=True)
class Marketplace:
    """A VSIX named by its id and version in an Open VSX registry (the API code-server's
    own gallery uses): the build asks the registry where the file is and what its sha256
    is, checks the download against it and pins both in the lock."""

    id: str  # publisher.name
    version: str
    target: str  # a VS Code target platform; "universal" when the extension has one file
    registry: str
    sha256: str | None = None  # the spec's own pin, when it gives one

    @property
    def source(self) -> str:
        at = "" if self.target == "universal" else f"@{self.target}"
        return f"openvsx:{self.registry.rstrip('/')}/{self.id}@{self.version}{at}"


@dataclass(frozen=True)
class ContentEntry:
    """A model, VSIX or plain-file entry: a local path, or remote files with their sha256
    (for a VSIX, also an Open VSX id and version)."""

    kind: str
    name: str
    version: str | None
    local: Path | None
    remote: tuple[RemoteFile, ...]
    at: Located
    source: str = ""  # as written in the spec: the lock's key for this entry's inputs
    family: str | None = None
    marketplace: Marketplace | None = None


@dataclass
class Spec:
    file: Path
    raw: bytes
    name: str
    version: int
    phase: str
    description: str
    platform: str
    vscode: str | None
    code_server: str | None
    images: list[ImageEntry] = field(default_factory=list)
    models: list[ContentEntry] = field(default_factory=list)
    vsix: list[ContentEntry] = field(default_factory=list)
    files: list[ContentEntry] = field(default_factory=list)
    mirrors: list[Any] = field(default_factory=list)  # sources.packages.MirrorEntry

    @property
    def base_dir(self) -> Path:
        return self.file.parent


def load(path: str | Path) -> Spec:
    path = Path(path)
    file = str(path)

    def error(message: str, hint: str | None = None) -> SpecError:
        return SpecError(message, file=file, hint=hint)

    raw = read_bytes(path, LIMITS["spec"], what="spec", error=error,
                     follow_links=True)  # the operator's own file; its target must be regular
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text (byte {e.start})", file=file) from None
    data, lines = load_yaml_with_lines(text, file)
    validate(data, lines, file)
    base = path.parent

    def at(*p: str | int) -> Located:
        return Located(file, _line_for(p, lines), _fmt_path(p))

    target = data.get("target", {})
    spec = Spec(file=path, raw=raw, name=data["name"], version=data["version"],
                phase=data["phase"], description=data.get("description", ""),
                platform=target.get("platform", "linux/amd64"), vscode=target.get("vscode"),
                code_server=target.get("code_server"))

    for i, img in enumerate(data.get("images", [])):
        loc = at("images", i)
        spec.images.append(ImageEntry(
            name=img.get("name") or _default_image_name(img["ref"], loc),
            ref=img["ref"], platform=img.get("platform", spec.platform),
            tls_verify=img.get("tls_verify", True),
            ca_file=(base / img["ca_file"]) if "ca_file" in img else None,
            username=img.get("auth", {}).get("username"),
            password_env=img.get("auth", {}).get("password_env"), at=loc,
            lock=img.get("lock", True)))

    for kind, key in (("model", "models"), ("vsix", "vsix"), ("file", "files")):
        for i, ent in enumerate(data.get(key, [])):
            getattr(spec, key).append(_content_entry(kind, ent, base, at(key, i)))

    from installer.bundle.sources.packages import MirrorEntry  # local: avoid a cycle

    if "pypi" in data:
        p = data["pypi"]
        if not p.get("requirements") and not p.get("self"):
            raise at("pypi").error("give requirements:, or self: true")
        spec.mirrors.append(MirrorEntry(
            "pypi", at("pypi"), tuple(p.get("requirements", [])),
            python=tuple(p.get("python", ["3.11"])),
            platforms=tuple(p.get("platforms", ["manylinux_2_36_x86_64"])),
            sdists=tuple(p.get("sdists", [])), include_self=bool(p.get("self", False))))
    if "npm" in data:
        spec.mirrors.append(MirrorEntry("npm", at("npm"), tuple(data["npm"]["packages"])))
    if "deb" in data:
        d = data["deb"]
        spec.mirrors.append(MirrorEntry(
            "deb", at("deb"), tuple(d["packages"]), release=d["release"],
            architecture=d.get("architecture", "amd64"),
            sources=(base / d["sources"]) if "sources" in d else None))
    for kind, items, files in (("maven", "artifacts", "poms"), ("go", "modules", "gomods")):
        if kind in data:
            d = data[kind]
            listed = [f if isinstance(f, dict) else {"path": f} for f in d.get(files, [])]
            spec.mirrors.append(MirrorEntry(
                kind, at(kind), tuple(d.get(items, [])),
                manifests=tuple(base / f["path"] for f in listed),
                manifest_names=tuple(str(f["path"]) for f in listed),
                goals=tuple(tuple(f.get("goals", ())) for f in listed),
                where=tuple(at(kind, items, i) for i in range(len(d.get(items, []))))
                + tuple(at(kind, files, i) for i in range(len(d.get(files, []))))))
    if spec.vsix and not spec.vscode:
        raise SpecError("VSIX extensions need the VS Code version they will run on",
                        file=file, line=lines.get(("vsix",)), field="target.vscode",
                        hint="add target: {vscode: X.Y.Z} (the VS Code version that your "
                             "code-server release embeds)")
    _check_unique(spec, lines, file)
    return spec


def _content_entry(kind: str, ent: dict, base: Path, loc: Located) -> ContentEntry:
    if kind == "vsix" and "marketplace" in ent:
        return _marketplace_entry(ent, loc)
    if kind == "vsix":
        for key in ("version", "target_platform", "registry"):
            if key in ent:
                raise loc.error(f"'{key}' goes with 'marketplace' (a local or URL VSIX says "
                                "its own version)")
    has_path, has_url, has_files = "path" in ent, "url" in ent, "files" in ent
    if has_path + has_url + has_files != 1:
        local = "folder" if kind == "model" else "file"
        files = ", or 'files'" if kind == "model" else ""
        raise loc.error(f"give exactly one of 'path' (a local {local}), 'url' with 'sha256'{files}")
    if has_url and "sha256" not in ent:
        raise loc.error("a 'url' needs its 'sha256', so the download can be checked")
    if "sha256" in ent and not has_url:
        raise loc.error("'sha256' goes with 'url' (local files are hashed and pinned in the lock)")
    if "size" in ent and not has_url:
        raise loc.error("'size' goes with 'url': the size in bytes a download must have")
    remote: tuple[RemoteFile, ...] = ()
    if has_url:
        fname = ent.get("filename") or ent["url"].rstrip("/").rsplit("/", 1)[-1] or kind
        remote = (RemoteFile(fname, ent["url"], ent["sha256"], _size(ent)),)
    elif has_files:
        remote = tuple(RemoteFile(f["path"], f["url"], f["sha256"], _size(f))
                       for f in ent["files"])
    name = ent.get("name")
    if kind == "vsix":
        name = None  # read from the package itself
    return ContentEntry(kind=kind, name=name or "", version=ent.get("version"),
                        local=(base / ent["path"]) if has_path else None, remote=remote,
                        at=loc, family=ent.get("family"),
                        source=ent["path"] if has_path else
                        " ".join(f"{r.path}={r.url}#{r.sha256}" for r in remote))


def _marketplace_entry(ent: dict, loc: Located) -> ContentEntry:
    if "path" in ent or "url" in ent:
        raise loc.error("give one of 'path', 'url' with 'sha256', or 'marketplace' with "
                        "'version', not several")
    if "version" not in ent:
        raise loc.error(f"'marketplace: {ent['marketplace']}' needs the exact 'version' to "
                        "bundle (the lock then pins its sha256)")
    if "size" in ent:
        raise loc.error("'size' goes with 'url' (the registry states a marketplace VSIX's)")
    m = Marketplace(ent["marketplace"], ent["version"], ent.get("target_platform", "universal"),
                    ent.get("registry", OPEN_VSX).rstrip("/"), ent.get("sha256"))
    return ContentEntry(kind="vsix", name="", version=m.version, local=None, remote=(),
                        at=loc, source=m.source, marketplace=m)


def _size(ent: dict) -> int | None:
    # the schema took a whole number: YAML's 1e9 or 1000.0 arrive as a float
    return int(ent["size"]) if "size" in ent else None


def _default_image_name(ref: str, loc: Located) -> str:
    from installer.bundle.sources.images import parse_ref  # local: avoid import cycle

    name = parse_ref(ref, loc).default_name()
    return name


def _check_unique(spec: Spec, lines: dict[Path_t, int], file: str) -> None:
    for key in ("images", "models", "files"):
        seen: dict[str, Located] = {}
        for ent in getattr(spec, key):
            if ent.name in seen:
                raise ent.at.error(f"name {ent.name!r} is used twice in {key} "
                                   f"(first at line {seen[ent.name].line})")
            seen[ent.name] = ent.at
