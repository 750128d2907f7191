"""The lab's oauth2-proxy image, built from the Go module
``github.com/oauth2-proxy/oauth2-proxy/v7`` with the staging host's Go toolchain (the Go
module proxy serves it; ``go install`` checks every module against the checksum database).

A site runs the upstream ``quay.io/oauth2-proxy/oauth2-proxy`` image; this one is the same
program, packaged locally because no image registry is reachable here: one static binary,
run as an unprivileged user, nothing else in the image (the site CA is mounted).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from installer.lab import localimage
from installer.lab.localimage import cache_dir

VERSION = "v7.15.6"
MODULE = "github.com/oauth2-proxy/oauth2-proxy/v7"
LDFLAGS = f"-s -w -X {MODULE}/pkg/version.VERSION={VERSION}"
USER, UID = "nonroot", 65532
REPOSITORY = "airlock-lab/oauth2-proxy"
RECIPE = "\n".join([VERSION, MODULE, LDFLAGS, "CGO_ENABLED=0", "-trimpath", USER, str(UID), "v1"])


def tag() -> str:
    return localimage.recipe_tag(VERSION.lstrip("v"), RECIPE)


def reference() -> str:
    return f"{REPOSITORY}:{tag()}"


def archive_path() -> Path:
    return cache_dir() / f"oauth2-proxy-{tag()}.tar"


def problems() -> list[str]:
    if shutil.which("go"):
        return []
    return ["the Go toolchain (go on PATH, 1.24 or newer), to build oauth2-proxy from the Go "
            "module proxy"]


def _config() -> dict:
    return {
        "User": f"{UID}:{UID}", "WorkingDir": "/",
        "Entrypoint": ["/usr/bin/oauth2-proxy"],
        "ExposedPorts": {"4180/tcp": {}},
        "Labels": {"org.opencontainers.image.title": "oauth2-proxy",
                   "org.opencontainers.image.version": VERSION,
                   "org.opencontainers.image.source": f"go:{MODULE}@{VERSION}",
                   "dev.airlock.lab.stand-in": "the upstream program, built locally from its "
                                               "Go module (no image registry here)"},
    }


def link_into(build_dir: Path, say=print) -> Path:  # type: ignore[no-untyped-def]
    return localimage.link(ensure(say), build_dir, "oauth2-proxy.tar")


def ensure(say=print) -> Path:  # type: ignore[no-untyped-def]
    """The cached ``docker save`` archive of the lab's oauth2-proxy image (built if absent)."""
    dest = archive_path()
    if dest.exists():
        return dest
    from installer import system_packages

    system_packages.ensure([], say, problems())
    say(f"building the lab's oauth2-proxy {VERSION} from the Go module proxy (about 2 "
        f"minutes, once; cached at {dest})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    gocache = cache_dir() / "go"
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix="build-") as tmp:
        work = Path(tmp)
        root = work / "root"
        (root / "usr/bin").mkdir(parents=True)
        localimage.run(["go", "install", "-trimpath", f"-ldflags={LDFLAGS}", f"{MODULE}@{VERSION}"],
                       "go install", cwd=work, image="oauth2-proxy",
                       env={"CGO_ENABLED": "0", "GOBIN": str(root / "usr/bin"),
                            "GOPATH": str(gocache / "path"), "GOMODCACHE": str(gocache / "mod"),
                            "GOCACHE": str(gocache / "build"), "GOFLAGS": "-modcacherw"})
        localimage.add_user(root, USER, UID, "/home/nonroot")
        (root / "tmp").mkdir(mode=0o1777)
        (root / "tmp").chmod(0o1777)
        localimage.pack(root, work, dest, reference(), _config(),
                        f"airlock lab: oauth2-proxy {VERSION} from the Go module proxy")
    say(f"oauth2-proxy image {reference()}: {dest.stat().st_size / 2**20:.0f} MiB")
    return dest
