"""Package mirrors: the dependency closure of Python, npm and Debian packages, resolved by
the ordinary tools, fetched and checked file by file.

- pypi: pip's own resolver (``pip install --dry-run --report``) for every target Python
  version and platform; wheels only, sdists only for names listed in ``sdists``.
- npm:  npm's own resolver (``npm install --package-lock-only``); every tarball checked
  against the lockfile's ``integrity`` (SRI sha512).
- deb:  apt with a private state folder (``apt-get install --print-uris`` with an empty
  dpkg status, so the full closure); every .deb checked against the SHA256 of the signed
  Packages index apt read.

The lock keeps names, versions, file names and hashes, never URLs: a locked build resolves
again with every version pinned, and refuses any file whose hash moved.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.bundle.spec import Located
from installer.errors import LockDrift, SourceError
from installer.site import INSTALLED, checkout_root
from installer.system_packages import require
from installer.untrusted_zip import BoundedZip


@dataclass(frozen=True)
class PackageFile:
    name: str
    version: str
    filename: str
    sha256: str  # hex
    url: str  # where to fetch it now; never written to the lock
    attrs: tuple[tuple[str, str], ...] = ()
    size: int | None = None  # bytes, where the index states it (deb); the download stops past it

    @property
    def attr(self) -> dict[str, str]:
        return dict(self.attrs)


@dataclass(frozen=True)
class MirrorEntry:
    kind: str  # pypi | npm | deb | maven | go
    at: Located
    requirements: tuple[str, ...]  # maven: coordinates; go: module@version
    python: tuple[str, ...] = ("3.11",)
    platforms: tuple[str, ...] = ("manylinux_2_36_x86_64",)
    sdists: tuple[str, ...] = ()
    include_self: bool = False
    release: str = ""
    architecture: str = "amd64"
    sources: Path | None = None
    manifests: tuple[Path, ...] = ()  # maven: pom.xml files; go: go.mod files
    # the same as the spec writes them (relative to its folder): what the lock records, so
    # that a checkout elsewhere reads the same lock (content is pinned by digest)
    manifest_names: tuple[str, ...] = ()
    goals: tuple[tuple[str, ...], ...] = ()  # maven: what to run in a scratch copy, per pom
    where: tuple[Located, ...] = ()  # each requirement's, then each manifest's, spec line

    def manifest(self, j: int) -> tuple[Path, Located]:
        """The J-th pom.xml or go.mod and its spec line (a missing file is an error there)."""
        at = self.where[len(self.requirements) + j]
        path = self.manifests[j]
        if not path.is_file():
            raise at.error(f"{path}: no such file")
        return path, at

    def parsed(self, parse: Callable[[str], Any], what: str, hint: str) -> list[Any]:
        """Each requirement through PARSE; one that does not parse (ValueError) is an error
        at its own spec line: "'TEXT' is not WHAT", with HINT."""
        out = []
        for i, text in enumerate(self.requirements):
            try:
                out.append(parse(text))
            except ValueError:
                raise self.where[i].error(f"{text!r} is not {what}", hint=hint) from None
        return out

    def blame(self, e: SourceError, index: int | None) -> SourceError:
        """E said at the spec line of requirement INDEX, or as it is when none is known."""
        return e if index is None else self.where[index].source_error(str(e))

    @property
    def source(self) -> str:
        """What the lock entry was made from: the spec entry's own text (and, for Maven and
        Go, the bytes of the poms and go.mod/go.sum files it names)."""
        if self.kind in ("maven", "go"):
            from installer.bundle.sources import golang, maven

            return (maven if self.kind == "maven" else golang).source_of(self)
        return json.dumps({"requirements": self.requirements, "python": self.python,
                           "platforms": self.platforms, "sdists": self.sdists,
                           "self": self.include_self, "release": self.release,
                           "architecture": self.architecture,
                           "sources": str(self.sources) if self.sources else None},
                          sort_keys=True)


def run(cmd: list[str], what: str, cwd: Path | None = None, env: dict | None = None,
        timeout: float = 1800) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except FileNotFoundError:
        raise SourceError(f"{what}: {cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise SourceError(f"{what}: {cmd[0]} did not finish in {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise SourceError(f"{what} failed:\n{tail}")
    return proc


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------- pypi

def _pip_report(args: list[str], what: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="airlock-pip-") as tmp:
        report = Path(tmp) / "report.json"
        run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run",
             "--ignore-installed", "--disable-pip-version-check", "--report", str(report),
             "--target", str(Path(tmp) / "target"), *args], what)
        return json.loads(report.read_text())["install"]


def _from_report(items: list[dict[str, Any]], what: str) -> list[PackageFile]:
    out = []
    for it in items:
        info = it["download_info"]
        url = info["url"]
        hashes = (info.get("archive_info") or {}).get("hashes") or {}
        if "sha256" not in hashes:
            raise SourceError(f"{what}: {url} has no sha256 in the index; refusing it")
        meta = it["metadata"]
        out.append(PackageFile(meta["name"], meta["version"], url.rsplit("/", 1)[-1].split("#")[0],
                               hashes["sha256"], url))
    return out


def self_wheel(workdir: Path) -> PackageFile:
    """airlock's own wheel, built from this checkout; it carries the project files too
    (setup.py), so an airlock installed from it can deploy."""
    root = checkout_root("pypi.self (airlock's own wheel)")
    out = workdir / "self"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH",
                                                              "1767225600")}
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--disable-pip-version-check", "-w", str(out), str(root)], "building airlock's wheel",
        env=env)
    wheel = next(out.glob("airlock-*.whl"))
    with BoundedZip(wheel, what=f"airlock's wheel {wheel.name}", error=SourceError) as whl:
        if not any(n.endswith(f".data/data/{INSTALLED.as_posix()}/ansible.cfg")
                   for n in whl.names()):
            raise SourceError("pypi.self: airlock's wheel was built without its project files "
                              "(ansible.cfg, roles, playbooks, inventories)",
                              hint="build from a git checkout with git installed: setup.py "
                                   "lists them with `git ls-files`")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    version = wheel.name.split("-")[1]
    return PackageFile("airlock", version, wheel.name, digest, wheel.as_uri(),
                       (("self", "true"),))


def self_requirements() -> list[str]:
    """What airlock needs at run time on a closed-network host (its declared dependencies:
    ansible-core and ansible-runner among them)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = [r for r in (requires("airlock") or []) if "extra ==" not in r]
    except PackageNotFoundError:
        raise SourceError("pypi.self: airlock is not installed as a distribution "
                          "(pip install -e .)") from None
    return reqs


LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def expand_platforms(tags: tuple[str, ...]) -> list[str]:
    """pip matches --platform exactly; a host with glibc 2.N also runs manylinux_2_M wheels
    for every M <= N (and their legacy aliases), so list them all."""
    out: list[str] = []
    for tag in tags:
        m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", tag)
        if not m:
            out.append(tag)
            continue
        glibc, arch = int(m.group(1)), m.group(2)
        for minor in range(glibc, 4, -1):
            out.append(f"manylinux_2_{minor}_{arch}")
            if minor in LEGACY_MANYLINUX:
                out.append(f"{LEGACY_MANYLINUX[minor]}_{arch}")
    return list(dict.fromkeys(out))


def resolve_pypi(entry: MirrorEntry, pins: dict[str, str], workdir: Path) -> list[PackageFile]:
    """``pins``: {canonical name: version} from the lock (empty: resolve freely)."""
    reqs = list(entry.requirements)
    files: list[PackageFile] = []
    if entry.include_self:
        own = self_wheel(workdir)
        files.append(own)
        reqs += self_requirements()
    constraints = workdir / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())
                                   if n != "airlock"))
    binary = [r for r in reqs if canonical_name(re.split(r"[\s<>=!~;\[]", r)[0])
              not in {canonical_name(s) for s in entry.sdists}]
    plat = [a for p in expand_platforms(entry.platforms) for a in ("--platform", p)]
    for py in entry.python:
        what = f"pypi: resolving for Python {py} ({', '.join(entry.platforms)})"
        items = _pip_report(["--only-binary=:all:", "--python-version", py,
                             "--implementation", "cp", *plat, "-c", str(constraints),
                             *binary], what)
        files += _from_report(items, what)
    if entry.sdists:
        what = "pypi: resolving sdists"
        items = _pip_report(["--no-deps", "--no-binary=:all:", "-c", str(constraints),
                             *[r for r in reqs if r not in binary]], what)
        files += _from_report(items, what)
    unique: dict[str, PackageFile] = {}
    for f in files:
        if f.filename in unique and unique[f.filename].sha256 != f.sha256:
            raise SourceError(f"pypi: two different files named {f.filename}")
        unique[f.filename] = f
    return sorted(unique.values(), key=lambda f: f.filename)


# --------------------------------------------------------------------------- npm

def npm_registry() -> str:
    npm = require("npm", SourceError)
    reg = run([npm, "config", "get", "registry"], "npm: reading the configured registry")
    return reg.stdout.strip().rstrip("/") + "/"


def npm_filename(name: str, version: str) -> str:
    """The registry's own tarball path: NAME/-/BASENAME-VERSION.tgz (scoped names too)."""
    return f"{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"


NPM_CPU = {"amd64": "x64", "arm64": "arm64", "armhf": "arm", "i386": "ia32"}


def npm_fits(info: dict[str, Any], architecture: str) -> bool:
    """Whether a package-lock entry can install on Linux/ARCHITECTURE with glibc: its os,
    cpu and libc lists (names, or !names to exclude). Optional packages built for other
    platforms (sharp's darwin/win32/musl binaries) are not carried."""
    want = {"os": "linux", "cpu": NPM_CPU.get(architecture, architecture), "libc": "glibc"}
    for field, value in want.items():
        listed = info.get(field)
        if not listed:
            continue
        listed = [listed] if isinstance(listed, str) else list(listed)
        if f"!{value}" in listed:
            return False
        positive = [x for x in listed if not str(x).startswith("!")]
        if positive and value not in positive:
            return False
    return True


def resolve_npm(entry: MirrorEntry, locked: dict[str, dict[str, str]],
                workdir: Path) -> list[PackageFile]:
    """``locked``: {filename: {name, version, integrity, sha256}}; when given, the closure
    is not resolved again: the same files are fetched from the configured registry."""
    registry = npm_registry()
    if locked:
        return sorted((PackageFile(v["name"], v["version"], f, v["sha256"][7:],
                                   registry + f, (("integrity", v["integrity"]),))
                       for f, v in locked.items()), key=lambda f: f.filename)
    d = workdir / "npm"
    d.mkdir(parents=True, exist_ok=True)
    deps = {}
    for spec in entry.requirements:
        at = spec.rfind("@")
        name, rng = (spec[:at], spec[at + 1:]) if at > 0 else (spec, "*")
        deps[name] = rng or "*"
    (d / "package.json").write_text(json.dumps({"name": "airlock-npm-mirror", "version":
                                                "0.0.0", "private": True,
                                                "dependencies": deps}, indent=2))
    run(["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund",
         "--loglevel=error"], "npm: resolving the dependency closure", cwd=d)
    lock = json.loads((d / "package-lock.json").read_text())
    out: dict[str, PackageFile] = {}
    for path, info in lock.get("packages", {}).items():
        # bundled dependencies come inside their parent's tarball (npm's own, for one)
        if (not path or info.get("link") or info.get("inBundle") or info.get("bundled")
                or "version" not in info):
            continue
        if info.get("optional") and not npm_fits(info, entry.architecture or "amd64"):
            continue
        name = info.get("name") or path.rsplit("node_modules/", 1)[-1]
        integrity = (info.get("integrity") or "").split()
        if not integrity or not integrity[0].startswith("sha512-"):
            raise SourceError(f"npm: {name}@{info['version']} has no sha512 integrity value; "
                              "refusing it")
        filename = npm_filename(name, info["version"])
        # npm may leave "resolved" out of the lockfile; the registry layout is standard
        out[filename] = PackageFile(name, info["version"], filename, "", registry + filename,
                                    (("integrity", integrity[0]),))
    return sorted(out.values(), key=lambda f: f.filename)


# --------------------------------------------------------------------------- deb

# the hash field is absent for some archives (debian-security prints none)
APT_URI = re.compile(r"^'(?P<uri>[^']+)' (?P<file>\S+) (?P<size>\d+)(?: \S+)?$")


def _apt_dirs(entry: MirrorEntry, workdir: Path) -> list[str]:
    d = workdir / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "etc/apt.conf.d",
                "etc/preferences.d", "etc/sources.list.d"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "status").write_text("")
    if entry.sources:
        shutil.copy(entry.sources, d / "etc" / "sources.list.d" / "airlock.sources")
        sources = [f"-oDir::Etc::sourcelist={d / 'etc' / 'none.list'}",
                   f"-oDir::Etc::sourceparts={d / 'etc' / 'sources.list.d'}"]
    else:
        sources = []  # the staging host's own sources for its release
    return [f"-oDir::State::Lists={d / 'lists'}", f"-oDir::State::status={d / 'status'}",
            f"-oDir::Cache={d / 'cache'}", f"-oDir::Cache::archives={d / 'cache' / 'archives'}",
            f"-oAPT::Architecture={entry.architecture}",
            f"-oAPT::Architectures={entry.architecture}",
            f"-oDir::Etc::Parts={d / 'etc' / 'apt.conf.d'}",
            f"-oDir::Etc::preferencesparts={d / 'etc' / 'preferences.d'}",
            "-oDebug::NoLocking=1", "-oAPT::Install-Recommends=0", *sources]


def host_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return ""


def resolve_deb(entry: MirrorEntry, pins: dict[str, str], workdir: Path) -> list[PackageFile]:
    """``pins``: {package: version} from the lock."""
    if not entry.sources and entry.release != host_release():
        raise entry.at.error(f"release {entry.release!r} is not this staging host's "
                             f"({host_release() or 'unknown'})",
                             hint="give sources: a deb822 .sources file for that release")
    opts = _apt_dirs(entry, workdir)
    run(["apt-get", *opts, "-qq", "update"], f"deb: apt-get update for {entry.release}")
    wanted = [f"{p}={pins[p]}" if p in pins else p for p in entry.requirements]
    extra = [f"{n}={v}" for n, v in sorted(pins.items()) if n not in entry.requirements]
    try:
        proc = run(["apt-get", *opts, "-qq", "--print-uris", "-y", "install", *wanted, *extra],
                   "deb: resolving the dependency closure")
    except SourceError as e:
        gone = re.findall(r"Version '([^']+)' for '([^']+)' was not found", str(e))
        if gone and pins:
            raise LockDrift(
                "deb: the archive no longer serves versions the lock pins: "
                + ", ".join(f"{name} {version}" for version, name in gone[:6])
                + (" ..." if len(gone) > 6 else ""),
                hint="Debian replaces a package when it publishes its update; rebuild with "
                     "--update-lock to take the new versions, and review the lock's diff") \
                from None
        raise
    uris, names = {}, []
    for line in proc.stdout.splitlines():
        m = APT_URI.match(line.strip())
        if line.startswith("'") and not m:
            raise SourceError(f"deb: cannot read apt's download line {line.strip()!r}")
        if m:
            # the URI's file is the pool name; apt's own file name keeps the epoch (%3a)
            uris[urllib.parse.unquote(m.group("uri").rsplit("/", 1)[-1])] = m.group("uri")
            name, version, _arch = urllib.parse.unquote(m.group("file"))[:-4].split("_")
            names.append(f"{name}={version}")
    if not uris:
        raise SourceError("deb: apt resolved no packages to download")
    # the SHA256 and version of each file, from the signed Packages index apt verified
    show = run(["apt-cache", *opts, "show", *names], "deb: reading the Packages index")
    out = []
    for stanza in show.stdout.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", stanza, re.M))
        basename = fields.get("Filename", "").rsplit("/", 1)[-1]
        if basename not in uris or not re.fullmatch(r"[0-9a-f]{64}", fields.get("SHA256", "")):
            continue
        size = fields.get("Size", "").strip()
        out.append(PackageFile(fields["Package"], fields["Version"], basename,
                               fields["SHA256"], uris.pop(basename),
                               (("architecture", fields.get("Architecture", "")),),
                               int(size) if re.fullmatch(r"[0-9]{1,16}", size) else None))
    if uris:
        raise SourceError("deb: no SHA256 in the Packages index for " + ", ".join(sorted(uris)))
    have = {f.name for f in out}
    for p in entry.requirements:  # a real package asked for must be in the closure
        name = p.split("=")[0]
        if name not in have and subprocess.run(
                ["apt-cache", *opts, "show", name], capture_output=True).returncode == 0:
            raise SourceError(f"deb: apt's dependency closure lacks {name}, which was asked for")
    return sorted(out, key=lambda f: f.filename)
