"""What the lab's locally built images share: the cache, a debootstrapped Debian root, one
reproducible layer, and the ``docker save`` archive the lab bundle reads with
``docker-archive:``.

No image registry is reachable from the staging host here, so the lab packages the real
software itself from the registries that are (code-server from npm, Keycloak from Maven
Central, oauth2-proxy from the Go module proxy). Each image is one layer (the lab's engines
store images with ``vfs``, which copies every layer in full) and is cached under a tag that
names its recipe, so a test run builds it at most once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from installer.bundle.digest import sha256_file
from installer.errors import LabError

EPOCH = 1767225600  # 2026-01-01T00:00:00Z: layers and archives are reproducible
CREATED = "2026-01-01T00:00:00Z"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
Say = Callable[[str], Any]


def cache_dir() -> Path:
    base = os.environ.get("AIRLOCK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "airlock")
    return Path(base).absolute()


def recipe_tag(version: str, recipe: str) -> str:
    return f"{version}-{hashlib.sha256(recipe.encode()).hexdigest()[:10]}"


def run(cmd: Sequence[str], what: str, cwd: Path | None = None,
        env: dict[str, str] | None = None, image: str = "image") -> str:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode:
        raise LabError(f"{image} image: {what} failed (exit {proc.returncode}):\n"
                       + (proc.stdout + proc.stderr)[-2500:])
    return proc.stdout


def debootstrap(root: Path, packages: Sequence[str], say: Say) -> None:
    """Debian 12 (minbase) with PACKAGES at ROOT, caches and documentation removed. The
    root of one package set is kept in the cache (a tar) and unpacked for the next image
    that asks for the same set (Keycloak's and Elasticsearch's: a JRE, once per run)."""
    key = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:16]
    cached = cache_dir() / "roots" / f"bookworm-{key}.tar"
    if cached.exists():
        say(f"Debian 12 with {', '.join(packages)}: from the cache ({cached.name})")
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(cached)],
                       check=True)
        return
    say("debootstrap the image's Debian 12: " + ", ".join(packages))
    proc = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(packages),
                           "bookworm", str(root)], capture_output=True, text=True)
    if proc.returncode:
        raise LabError("debootstrap failed:\n" + (proc.stdout + proc.stderr)[-2000:],
                       hint="it needs the Debian package mirror the staging host uses")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    for d in ("var/log", "usr/share/doc", "usr/share/man", "usr/share/info"):
        shutil.rmtree(root / d, ignore_errors=True)
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/machine-id").write_text("")
    cached.parent.mkdir(parents=True, exist_ok=True)
    part = cached.with_name(cached.name + ".part")
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cpf", str(part), "."],
                   check=True)
    os.replace(part, cached)


def add_user(root: Path, name: str, uid: int, home: str, login: str = "/usr/sbin/nologin") -> None:
    """An unprivileged user of its own (UID:UID), with HOME made and owned by it."""
    passwd, group = root / "etc/passwd", root / "etc/group"
    passwd.parent.mkdir(parents=True, exist_ok=True)
    with open(passwd, "a") as f:
        f.write(f"{name}:x:{uid}:{uid}:{name}:{home}:{login}\n")
    with open(group, "a") as f:
        f.write(f"{name}:x:{uid}:\n")
    h = root / home.lstrip("/")
    h.mkdir(parents=True, exist_ok=True)
    os.chown(h, uid, uid)


def layer(root: Path, out: Path) -> str:
    """A reproducible tar of ``root``; returns its sha256 (the layer's diff id)."""
    subprocess.run(["tar", "-C", str(root), "--sort=name", f"--mtime=@{EPOCH}", "--numeric-owner",
                    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                    "--format=posix", "-cf", str(out), "."], check=True)
    return _hex_sha256(out)


def archive(layer_tar: Path, diff_id: str, dest: Path, reference: str,
            config: dict[str, Any], history: str) -> None:
    """A ``docker save`` archive of one image with one layer (streamed, never in memory);
    CONFIG is the image's run configuration (User, Env, Entrypoint, Labels...)."""
    image = {
        "architecture": "amd64", "os": "linux", "created": CREATED,
        "config": {"Env": [f"PATH={PATH}"], **config},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": CREATED, "created_by": history}],
    }
    raw = json.dumps(image, sort_keys=True, separators=(",", ":")).encode()
    cname = hashlib.sha256(raw).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cname, "RepoTags": [reference],
                            "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    tmp = dest.with_name(dest.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, EPOCH
            tar.addfile(ti, io.BytesIO(data))
        add(f"{diff_id}/VERSION", b"1.0")
        ti = tar.gettarinfo(str(layer_tar), arcname=f"{diff_id}/layer.tar")
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        ti.mtime = EPOCH
        with open(layer_tar, "rb") as f:
            tar.addfile(ti, f)
        add(cname, raw)
        add("manifest.json", manifest)
    os.replace(tmp, dest)


def pack(root: Path, work: Path, dest: Path, reference: str, config: dict[str, Any],
         history: str) -> None:
    """ROOT as the one layer of an image archived at DEST (ROOT is removed on the way)."""
    tar = work / "layer.tar"
    diff_id = layer(root, tar)
    shutil.rmtree(root)
    archive(tar, diff_id, dest, reference, config, history)
    tar.unlink()


def _hex_sha256(path: Path) -> str:
    """PATH's SHA-256 as bare hex (the bundle's own chunked reader)."""
    return sha256_file(path)[0].removeprefix("sha256:")


def maven_fetch(artifact: str, sha256: str, image: str, pin_in: str,
                say: Say = print) -> Path:
    """ARTIFACT (group:artifact:version:type) from Maven Central through ``mvn`` (strict
    checksums, a repository of the cache's own), its SHA-256 checked against the pin."""
    group, name, version, kind = artifact.split(":")
    repo = cache_dir() / "maven"
    path = repo / group.replace(".", "/") / name / version / f"{name}-{version}.{kind}"
    if not path.exists():
        say(f"mvn dependency:get {artifact} (Maven Central, strict checksums)")
        run(["mvn", "-B", "-q", "--strict-checksums", f"-Dmaven.repo.local={repo}",
             "dependency:get", f"-Dartifact={artifact}", "-Dtransitive=false"],
            "mvn dependency:get", image=image)
    got = _hex_sha256(path)
    if got != sha256:
        path.unlink()
        raise LabError(f"{artifact} from Maven Central has sha256 {got}, not the pinned "
                       f"{sha256}; the file was removed",
                       hint=f"if it was re-published, review the change and update the pin "
                            f"in {pin_in}")
    return path


def link(archive_path: Path, build_dir: Path, name: str) -> Path:
    """``build_dir/NAME`` -> the cached archive: where ``bundles/lab.yaml`` reads it."""
    dest = build_dir / name
    build_dir.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    dest.symlink_to(archive_path)
    return dest
