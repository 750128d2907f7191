"""Maven content: artifacts by coordinates and the closure of pom.xml files, resolved by
Maven itself against the staging host's configured repositories (its settings.xml: no
repository URL is in the spec or the lock), every file checked against its published
checksum.

Maven runs with a private local repository and strict checksums (``-C``): the resolver
refuses a file whose published .sha1 disagrees, and airlock checks every file against that
.sha1 again before hashing it for the lock. What the local repository holds afterwards is
the mirror, in Maven 2 layout:

- coordinates (``group:artifact:version[:classifier][:type]``) become the dependencies of
  a generated pom, resolved with ``dependency:resolve`` (compile to test scope, transitive,
  parents and imported BOMs included);
- a pom.xml gets ``dependency:go-offline``: its dependencies, its plugins and theirs;
- with ``goals`` (``[package]``), Maven then runs them on a scratch copy of the pom's
  folder (the project is never written to; its tests run on the staging host): plugins
  that resolve more while running (surefire's JUnit provider, the plexus-utils Maven 3
  gives old plugins) come along, so the same build works inside.

The resolver's own plugin (maven-dependency-plugin, pinned below) comes along, so
``mvn org.apache.maven.plugins:maven-dependency-plugin:3.8.1:tree`` works inside (Maven
3.8's super POM pins the bare ``dependency:`` prefix to 2.8). Whatever is still missing
inside, Maven's own "could not resolve" names.

A locked build resolves again and must find the same files with the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from xml.sax.saxutils import escape

from installer.bundle.sources.packages import MirrorEntry, PackageFile
from installer.errors import SourceError
from installer.system_packages import require

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

PART = r"[A-Za-z0-9_.-]+"
COORDINATE = re.compile(rf"^(?P<g>{PART}):(?P<a>{PART}):(?P<v>[A-Za-z0-9_.+-]+)"
                        rf"(?::(?P<c>{PART})?)?(?::(?P<t>{PART}))?$")

# what a local repository holds that is Maven's bookkeeping, not repository content
BOOKKEEPING = re.compile(r"(^|/)(_remote\.repositories|resolver-status\.properties|"
                         r"_maven\.repositories|maven-metadata-[^/]*\.xml(\.sha1)?|"
                         r"[^/]*\.lastUpdated|[^/]*\.part|[^/]*\.lock)$")
CHECKSUM = re.compile(r"\.(sha1|md5|sha256|sha512|asc)$")


def parse_coordinate(text: str) -> dict[str, str]:
    m = COORDINATE.match(text)
    if not m:
        raise ValueError(text)
    return {"groupId": m["g"], "artifactId": m["a"], "version": m["v"],
            "classifier": m["c"] or "", "type": m["t"] or "jar"}


def _dependency_xml(c: dict[str, str]) -> str:
    fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in c.items()
                     if v and not (k == "type" and v == "jar"))
    return f"    <dependency>{fields}</dependency>\n"


def coordinates_pom(coordinates: list[dict[str, str]]) -> str:
    deps = "".join(_dependency_xml(c) for c in coordinates)
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<project xmlns=\"http://maven.apache.org/POM/4.0.0\">\n"
            "  <modelVersion>4.0.0</modelVersion>\n"
            "  <groupId>invalid.airlock</groupId>\n  <artifactId>maven-mirror</artifactId>\n"
            "  <version>0</version>\n  <packaging>pom</packaging>\n"
            f"  <dependencies>\n{deps}  </dependencies>\n</project>\n")


def _mvn(repo: Path, args: list[str], what: str, cwd: Path) -> None:
    mvn = require("mvn", SourceError)
    env = {k: v for k, v in os.environ.items() if k != "MAVEN_ARGS"}
    cmd = [mvn, "-B", "-C", "-ntp", "-Dstyle.color=never", f"-Dmaven.repo.local={repo}", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=3600)
    except subprocess.TimeoutExpired:
        raise SourceError(f"{what}: Maven did not finish in an hour") from None
    if proc.returncode != 0:
        raise SourceError(f"{what} failed:\n{_maven_error(proc.stdout + proc.stderr)}")


def _maven_error(text: str) -> str:
    """Maven's own reason, without its banners and help links: its [ERROR] lines."""
    lines = [re.sub(r"^(\[ERROR\]\s*)+|\s*-> \[Help \d+\]$", "", ln).strip()
             for ln in text.splitlines() if ln.startswith("[ERROR]")]
    noise = ("-> [Help", "Re-run Maven", "To see the full", "For more", "[Help")
    keep = [ln for ln in lines if ln and not ln.startswith(noise)]
    keep = keep or [ln for ln in text.strip().splitlines()[-8:]]
    return "\n".join(ln if len(ln) < 400 else ln[:400] + "…" for ln in keep[:8])


def _entry_for(message: str, entry: MirrorEntry) -> int | None:
    """Which coordinate of the spec Maven's message is about (by group:artifact)."""
    for i, text in enumerate(entry.requirements):
        try:
            c = parse_coordinate(text)
        except ValueError:
            continue
        if f"{c['groupId']}:{c['artifactId']}:" in message:
            return i
    return None


def resolve_maven(entry: MirrorEntry, pins: dict[str, str], workdir: Path) -> list[PackageFile]:
    """Everything Maven fetched for the entry's coordinates and poms; ``pins`` is unused:
    coordinates and poms name exact versions, and the lock comparison checks the rest."""
    del pins
    repo = workdir / "m2"
    repo.mkdir(parents=True, exist_ok=True)
    if entry.requirements:
        coords = entry.parsed(parse_coordinate, "a Maven coordinate",
                              "write group:artifact:version, optionally :classifier and "
                              ":type, with an exact version")
        pom_dir = workdir / "coordinates"
        pom_dir.mkdir()
        (pom_dir / "pom.xml").write_text(coordinates_pom(coords))
        try:
            _mvn(repo, ["-f", str(pom_dir / "pom.xml"), f"{DEPENDENCY_PLUGIN}:resolve"],
                 "resolving the coordinates with Maven", pom_dir)
        except SourceError as e:
            raise entry.blame(e, _entry_for(str(e), entry)) from None
    for j in range(len(entry.manifests)):
        pom, at = entry.manifest(j)
        # go-offline reads the project; it writes nothing into it
        try:
            _mvn(repo, ["-f", str(pom.absolute()), f"{DEPENDENCY_PLUGIN}:go-offline"],
                 f"resolving {pom}'s dependencies and plugins with Maven", workdir)
            goals = entry.goals[j] if j < len(entry.goals) else ()
            if goals:  # the build itself, in a copy: what plugins resolve while running
                copy = workdir / f"project-{j}"
                shutil.copytree(pom.parent, copy, symlinks=True,
                                ignore=shutil.ignore_patterns("target", ".git"))
                _mvn(repo, ["-f", str(copy / pom.name), *goals],
                     f"running {' '.join(goals)} on a copy of {pom.parent}", copy)
        except SourceError as e:
            raise at.source_error(str(e)) from None
    return local_repository_files(repo)


def _read_sha1(path: Path) -> str | None:
    sidecar = path.with_name(path.name + ".sha1")
    try:
        text = sidecar.read_text(errors="replace")[:200].strip()
    except OSError:
        return None
    m = re.match(r"^([0-9a-fA-F]{40})\b", text)
    return m.group(1).lower() if m else None


def local_repository_files(repo: Path) -> list[PackageFile]:
    """The repository content of a local repository Maven filled, each file checked against
    the .sha1 Maven downloaded beside it (and verified with -C)."""
    out = []
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if not path.is_file() or path.is_symlink() or BOOKKEEPING.search(rel) \
                or CHECKSUM.search(rel):
            continue
        parts = rel.split("/")
        if len(parts) < 4:
            raise SourceError(f"maven: {rel} is not in Maven 2 layout")
        group, artifact, version = ".".join(parts[:-3]), parts[-3], parts[-2]
        published = _read_sha1(path)
        if published is None:
            raise SourceError(f"maven: {group}:{artifact}:{version}: {parts[-1]} has no "
                              "published SHA-1 beside it; refusing it",
                              hint="the repository serves no .sha1 for it: airlock carries "
                                   "only files it could check")
        sha1, sha256 = hashlib.sha1(usedforsecurity=False), hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                sha1.update(chunk)
                sha256.update(chunk)
        if sha1.hexdigest() != published:
            raise SourceError(f"maven: {rel}: SHA-1 {sha1.hexdigest()} differs from the "
                              f"published {published}; refusing it")
        out.append(PackageFile(f"{group}:{artifact}", version, rel, sha256.hexdigest(),
                               path.as_uri(), (("sha1", published),)))
    if not out:
        raise SourceError("maven: Maven resolved nothing")
    return out


def manifests_digest(paths: tuple[Path, ...]) -> list[str]:
    """What the lock keys an entry's poms or go.mod files on: their bytes."""
    out = []
    for p in paths:
        try:
            out.append(hashlib.sha256(p.read_bytes()).hexdigest())
        except OSError:
            out.append("missing")
    return out


def metadata_xml(group: str, artifact: str, versions: list[str], updated: str) -> str:
    """maven-metadata.xml of one group:artifact (versions in Maven's order)."""
    ordered = sorted(versions, key=maven_version_key)
    release = [v for v in ordered if not v.endswith("-SNAPSHOT")]
    body = "".join(f"      <version>{escape(v)}</version>\n" for v in ordered)
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata>\n"
            f"  <groupId>{escape(group)}</groupId>\n  <artifactId>{escape(artifact)}"
            "</artifactId>\n  <versioning>\n"
            f"    <latest>{escape(ordered[-1])}</latest>\n"
            + (f"    <release>{escape(release[-1])}</release>\n" if release else "")
            + f"    <versions>\n{body}    </versions>\n"
            f"    <lastUpdated>{updated}</lastUpdated>\n  </versioning>\n</metadata>\n")


QUALIFIERS = {"alpha": 1, "a": 1, "beta": 2, "b": 2, "milestone": 3, "m": 3, "rc": 4,
              "cr": 4, "snapshot": 5, "ga": 6, "final": 6, "release": 6, "sp": 7}


def maven_version_key(version: str) -> tuple:
    """An approximation of Maven's ComparableVersion, good for ordering real releases: the
    leading numbers (trailing zeros dropped) as numbers, then the qualifier by rank
    (alpha < beta < milestone < rc < snapshot < release < sp < others), then the rest."""
    tokens = re.findall(r"\d+|[A-Za-z]+", version.lower())
    numbers = []
    while tokens and tokens[0].isdigit():
        numbers.append(int(tokens.pop(0)))
    while numbers and numbers[-1] == 0:
        numbers.pop()
    rank = QUALIFIERS.get(tokens[0], 8) if tokens else 6
    rest = tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in tokens[1 if tokens
                                                                                  else 0:])
    return (tuple(numbers), rank, tokens[0] if tokens and rank == 8 else "", rest)


def settings_xml(url: str) -> str:
    """A settings.xml for hosts inside: one mirror takes every repository, and a profile
    makes every download fail on a checksum mismatch (Maven's default only warns)."""
    repo = (f"      <id>central</id>\n      <url>{escape(url)}</url>\n"
            "      <releases><checksumPolicy>fail</checksumPolicy></releases>\n"
            "      <snapshots><enabled>false</enabled></snapshots>\n")
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<settings>\n  <mirrors>\n"
            "    <mirror>\n      <id>airlock</id>\n      <mirrorOf>*</mirrorOf>\n"
            f"      <url>{escape(url)}</url>\n    </mirror>\n  </mirrors>\n"
            "  <profiles>\n    <profile>\n      <id>airlock</id>\n"
            f"      <repositories>\n    <repository>\n{repo}    </repository>\n"
            "      </repositories>\n"
            f"      <pluginRepositories>\n    <pluginRepository>\n{repo}"
            "    </pluginRepository>\n      </pluginRepositories>\n"
            "    </profile>\n  </profiles>\n"
            "  <activeProfiles><activeProfile>airlock</activeProfile></activeProfiles>\n"
            "</settings>\n")


def source_of(entry: MirrorEntry) -> str:
    return json.dumps({"coordinates": entry.requirements,
                       "poms": list(entry.manifest_names or map(str, entry.manifests)),
                       "goals": entry.goals,
                       "pomDigests": manifests_digest(entry.manifests),
                       "plugin": DEPENDENCY_PLUGIN}, sort_keys=True)
