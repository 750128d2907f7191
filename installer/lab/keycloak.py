"""The lab's Keycloak image, built from Keycloak's server distribution on Maven Central
(``org.keycloak:keycloak-quarkus-dist``), fetched with Maven's own client (checksums
strict) and checked against the SHA-256 pinned here before anything of it is used.

A site runs the upstream ``quay.io/keycloak/keycloak`` image, built once with the same
``kc.sh build`` options (Keycloak's own advice for production: an optimized server); the
``keycloak`` role starts either with ``start --optimized``. This image is the same server
on Debian 12's OpenJDK 17 (``openjdk-17-jre-headless``), packaged locally because no image
registry is reachable here. Build-time options, baked in: PostgreSQL, health and metrics on
the management port, and the ``/auth`` path the gateway serves it under.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from installer.errors import LabError
from installer.lab import localimage
from installer.lab.localimage import cache_dir

VERSION = "26.5.6"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{VERSION}:zip"
SHA256 = "490189d9dff05272432d51f71a069462eeca97f2920a694d539a1e6c26a5a347"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"  # the staging host's, for `kc.sh build`
PACKAGES = ("ca-certificates", "openjdk-17-jre-headless", "dumb-init", "curl")
BUILD_OPTIONS = ("--db=postgres", "--health-enabled=true", "--metrics-enabled=true",
                 "--http-relative-path=/auth", "--features=hostname:v2")
USER, UID, HOME = "keycloak", 1000, "/opt/keycloak"
REPOSITORY = "airlock-lab/keycloak"
RECIPE = "\n".join([VERSION, SHA256, *PACKAGES, *BUILD_OPTIONS, USER, str(UID), "v1"])


def tag() -> str:
    return localimage.recipe_tag(VERSION, RECIPE)


def reference() -> str:
    return f"{REPOSITORY}:{tag()}"


def archive_path() -> Path:
    return cache_dir() / f"keycloak-{tag()}.tar"


def problems() -> list[str]:
    """What building it needs that the staging host may lack: Maven, and Java 17 for
    ``kc.sh build`` (Debian: maven, openjdk-17-jdk-headless)."""
    found = []
    if not shutil.which("mvn"):
        found.append("Maven (mvn), to fetch Keycloak's distribution from Maven Central: "
                     "apt-get install maven")
    if not Path(JAVA_HOME, "bin/java").exists():
        found.append(f"OpenJDK 17 at {JAVA_HOME}, to run Keycloak's build step: "
                     "apt-get install openjdk-17-jre-headless")
    return found


def fetch(say=print) -> Path:  # type: ignore[no-untyped-def]
    """The distribution zip, from Maven Central through ``mvn``, checked against the pin."""
    return localimage.maven_fetch(ARTIFACT, SHA256, "keycloak", "installer/lab/keycloak.py",
                                  say)


def _server(zip_path: Path, work: Path, say) -> Path:  # type: ignore[no-untyped-def]
    """The distribution unpacked and built (``kc.sh build``) with the image's options."""
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            name = Path(info.filename)
            if name.is_absolute() or ".." in name.parts:
                raise LabError(f"Keycloak's zip has an unsafe member name {info.filename!r}")
        z.extractall(work)
    server = work / f"keycloak-{VERSION}"
    for sh in (server / "bin").glob("*.sh"):
        sh.chmod(0o755)
    say("kc.sh build " + " ".join(BUILD_OPTIONS))
    localimage.run([str(server / "bin/kc.sh"), "build", *BUILD_OPTIONS], "kc.sh build",
                   env={"JAVA_HOME": JAVA_HOME, "PATH": f"{JAVA_HOME}/bin:{localimage.PATH}"},
                   image="keycloak")
    shutil.rmtree(server / "data", ignore_errors=True)
    return server


def _config() -> dict:
    return {
        "User": f"{UID}:{UID}", "WorkingDir": HOME,
        "Env": [f"PATH={localimage.PATH}", "LANG=C.UTF-8", f"HOME={HOME}"],
        "Entrypoint": ["/usr/bin/dumb-init", "--", f"{HOME}/bin/kc.sh"],
        "Cmd": ["start", "--optimized"],
        "ExposedPorts": {"8443/tcp": {}, "9000/tcp": {}},
        "Labels": {"org.opencontainers.image.title": "keycloak",
                   "org.opencontainers.image.version": VERSION,
                   "org.opencontainers.image.source": f"maven:{ARTIFACT}",
                   "dev.airlock.lab.dist-sha256": SHA256,
                   "dev.airlock.lab.build-options": " ".join(BUILD_OPTIONS),
                   "dev.airlock.lab.stand-in": "the upstream server on Debian 12's OpenJDK 17, "
                                               "packaged locally (no image registry here)"},
    }


def link_into(build_dir: Path, say=print) -> Path:  # type: ignore[no-untyped-def]
    return localimage.link(ensure(say), build_dir, "keycloak.tar")


def ensure(say=print) -> Path:  # type: ignore[no-untyped-def]
    """The cached ``docker save`` archive of the lab's Keycloak image (built if absent)."""
    dest = archive_path()
    if dest.exists():
        return dest
    from installer import system_packages

    system_packages.ensure(["lab"], say, [
        *system_packages.root("for building the lab's Keycloak image (debootstrap)"),
        *problems()])
    say(f"building the lab's Keycloak {VERSION} image from Maven Central (about 4 minutes, "
        f"once; cached at {dest})")
    zip_path = fetch(say)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix="build-") as tmp:
        work = Path(tmp)
        server = _server(zip_path, work / "dist", say)
        root = work / "root"
        localimage.debootstrap(root, PACKAGES, say)
        localimage.add_user(root, USER, UID, HOME)
        shutil.copytree(server, root / HOME.lstrip("/"), symlinks=True, dirs_exist_ok=True)
        (root / HOME.lstrip("/") / "data").mkdir()
        for dirpath, dirnames, filenames in os.walk(root / HOME.lstrip("/")):
            for n in (dirpath, *[os.path.join(dirpath, f) for f in dirnames + filenames]):
                os.lchown(n, UID, UID)
        shutil.rmtree(work / "dist")
        localimage.pack(root, work, dest, reference(), _config(),
                        f"airlock lab: Keycloak {VERSION} from Maven Central")
    say(f"Keycloak image {reference()}: {dest.stat().st_size / 2**20:.0f} MiB")
    return dest
