"""The lab's code-server image, built from code-server's npm package (no image registry is
reachable from the staging host here, so the upstream ``codercom/code-server`` image
cannot be pulled; the role targets any code-server image, this one included).

What it takes (LAB.md, checked by hand): Debian's build tools and the headers of the
libraries code-server's native modules bind to; ``npm install --ignore-scripts`` of the
package and of VS Code's own modules; each native module rebuilt against the staging
host's Node 20 headers; Debian's ``rg`` in place of the ripgrep download.

**Stand-in, said plainly:** Debian 12 carries Node 18 and code-server 4.96 needs Node 20,
so the image carries the staging host's own ``/usr/bin/node`` binary (a self-contained
build that links only libc and libstdc++). A site builds this image from its own Node 20.

The image is one layer (the lab's engines store images with ``vfs``, which copies every
layer in full), written as a ``docker save`` archive the bundle reads with
``docker-archive:``; it is cached by a tag that names its recipe, so a test run builds it
once (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from installer.errors import LabError
from installer.lab import localimage
from installer.lab.localimage import cache_dir

VERSION = "4.100.3"  # VS Code 1.100.3 (bundles/lab.yaml's target); Node 20
NODE = "/usr/bin/node"
# runtime libraries of the native modules, git for the workbench, tini-like init: dumb-init
PACKAGES = ("ca-certificates", "libkrb5-3", "libsecret-1-0", "libxkbfile1", "libx11-6",
            "libstdc++6", "git", "procps", "dumb-init", "openssh-client", "less", "locales",
            # the bank's developers build Java and Go in their workbench (from the repo host)
            "openjdk-17-jdk-headless", "maven", "golang-go")
USER = "coder"
UID = 1000
HOME = "/home/coder"
REPOSITORY = "airlock-lab/code-server"
RECIPE = "\n".join([VERSION, *PACKAGES, USER, str(UID), "v1"])


def tag() -> str:
    return f"{VERSION}-{hashlib.sha256(RECIPE.encode()).hexdigest()[:10]}"


def reference() -> str:
    return f"{REPOSITORY}:{tag()}"


def archive_path() -> Path:
    return cache_dir() / f"code-server-{tag()}.tar"


def problems() -> list[str]:
    """What the build needs that no Debian package gives (the packages it needs are the
    list's "codeserver-build"): Node 20 at /usr/bin/node. It needs root too."""
    try:
        v = subprocess.run([NODE, "--version"], capture_output=True, text=True,
                           check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        v = "missing"
    if v.startswith("v20."):
        return []
    return [f"Node 20 at {NODE}, for building the lab's code-server image (it is {v}; Debian "
            f"12 has Node 18): code-server {VERSION} needs it, install it on the staging host"]


def _run(cmd: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode:
        raise LabError(f"code-server image: {what} failed (exit {proc.returncode}):\n"
                       + (proc.stdout + proc.stderr)[-2500:])


def _npm_tree(work: Path, say) -> Path:  # type: ignore[no-untyped-def]
    """code-server and its modules, native ones built here; returns the package root."""
    env = {"npm_config_unsafe_perm": "true", "npm_config_nodedir": "/usr",
           "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false"}
    say(f"npm install code-server@{VERSION} (no install scripts)")
    (work / "package.json").write_text('{"name": "airlock-code-server", "private": true}\n')
    _run(["npm", "install", "--ignore-scripts", "--no-save", f"code-server@{VERSION}"], work,
         "npm install code-server", env)
    _run(["npm", "rebuild", "argon2"], work, "npm rebuild argon2", env)
    pkg = work / "node_modules" / "code-server"
    vscode = pkg / "lib" / "vscode"
    say("npm install VS Code's modules, and build the native ones against Node 20")
    _run(["npm", "install", "--omit=dev", "--ignore-scripts"], vscode, "npm install (vscode)",
         env)
    rg = vscode / "node_modules/@vscode/ripgrep/bin/rg"
    rg.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("rg") or "/usr/bin/rg", rg)
    modules = vscode / "node_modules"
    native = sorted({p.parent for p in modules.glob("*/binding.gyp")}
                    | {p.parent for p in modules.glob("@*/*/binding.gyp")})
    gyp = Path("/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js")
    for m in native:
        name = m.relative_to(modules).as_posix()
        if name == "node-pty":
            # its install script runs `npx node-gyp`, which it does not need and cannot get
            _run([NODE, str(gyp), "rebuild", "--nodedir=/usr"], m, "node-gyp rebuild node-pty",
                 env)
        else:
            _run(["npm", "rebuild", name], vscode, f"npm rebuild {name}", env)
    asar = vscode / "node_modules.asar"
    if not asar.exists():
        asar.symlink_to("node_modules")
    _run(["npm", "install", "--omit=dev", "--ignore-scripts"], vscode / "extensions",
         "npm install (built-in extensions)", env)
    return work


def _prune(tree: Path) -> None:
    """What the running server never reads: source maps, and native modules' build
    intermediates (only build/Release/*.node is loaded)."""
    def remove(p: Path) -> None:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink()

    for p in list(tree.rglob("*.map")):
        p.unlink()
    for d in list(tree.rglob("build")):
        if not (d.is_dir() and (d.parent / "binding.gyp").exists()):
            continue
        release = d / "Release"
        for sub in list(d.iterdir()):
            if sub != release:
                remove(sub)
        if release.is_dir():
            for sub in list(release.iterdir()):
                if not sub.name.endswith(".node"):
                    remove(sub)


def _rootfs(root: Path, tree: Path, say) -> None:  # type: ignore[no-untyped-def]
    localimage.debootstrap(root, PACKAGES, say)
    shutil.copy2(NODE, root / "usr/bin/node")
    shutil.copytree(tree / "node_modules", root / "usr/lib/code-server/node_modules",
                    symlinks=True)
    entry = root / "usr/bin/code-server"
    entry.write_text("#!/bin/sh\nexec /usr/bin/node "
                     "/usr/lib/code-server/node_modules/code-server/out/node/entry.js \"$@\"\n")
    entry.chmod(0o755)
    localimage.add_user(root, USER, UID, HOME, login="/bin/bash")
    (root / "etc/locale.gen").write_text("en_US.UTF-8 UTF-8\n")


def _config(version: str) -> dict:
    return {
        "User": f"{UID}:{UID}", "WorkingDir": HOME,
        "Env": [f"PATH={localimage.PATH}", f"HOME={HOME}", "LANG=C.UTF-8", "SHELL=/bin/bash"],
        "Entrypoint": ["/usr/bin/dumb-init", "--", "/usr/bin/code-server"],
        "Cmd": ["--bind-addr", "0.0.0.0:8080", "--auth", "none", HOME],
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {"org.opencontainers.image.title": "code-server",
                   "org.opencontainers.image.version": version,
                   "org.opencontainers.image.source": "npm:code-server@" + version,
                   "dev.airlock.lab.stand-in": "node binary copied from the staging host"},
    }


def link_into(build_dir: Path, say=print) -> Path:  # type: ignore[no-untyped-def]
    """``build_dir/code-server.tar`` -> the cached archive (built first if absent): where
    ``bundles/lab.yaml`` reads it."""
    return localimage.link(ensure(say), build_dir, "code-server.tar")


def ensure(say=print) -> Path:  # type: ignore[no-untyped-def]
    """The cached ``docker save`` archive of the lab's code-server image (built if absent)."""
    dest = archive_path()
    if dest.exists():
        return dest
    from installer import system_packages

    system_packages.ensure(["codeserver-build"], say, [
        *system_packages.root("for building the lab's code-server image (debootstrap)"),
        *problems()])
    say(f"building the lab's code-server {VERSION} image from npm (about 5 minutes, once; "
        f"cached at {dest})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix="build-") as tmp:
        work = Path(tmp)
        (work / "npm").mkdir()
        tree = _npm_tree(work / "npm", say)
        _prune(tree)
        root = work / "root"
        _rootfs(root, tree, say)
        shutil.rmtree(work / "npm")
        localimage.pack(root, work, dest, reference(), _config(VERSION),
                        f"airlock lab: code-server {VERSION} from npm")
    say(f"code-server image {reference()}: {dest.stat().st_size / 2**20:.0f} MiB")
    return dest
