"""The lab's Elasticsearch image, built from Elasticsearch's own distribution on Maven
Central (``org.elasticsearch.distribution.integ-test-zip:elasticsearch``), fetched with
Maven's own client (checksums strict) and checked against the SHA-256 pinned here.

A site runs the upstream ``docker.elastic.co/elasticsearch/elasticsearch`` image of the same
version; the ``audit_logging`` role drives either the same way: its configuration, file-realm
users and roles, and TLS material mounted under ``/usr/share/elasticsearch/config``, data
under ``/usr/share/elasticsearch/data``, user 1000. This image is the same server on Debian
12's OpenJDK 17, packaged locally because no image registry is reachable here. What differs
from the upstream image: the integration-test distribution carries only the modules
``x-pack-core``, ``x-pack-security``, ``transport-netty4`` and ``apm`` (no ILM, no
``analysis-common``: users and roles live in files, not in the ``.security`` index, and
retention deletes whole daily indices by name, which the role does on both).
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

VERSION = "8.19.21"
ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{VERSION}:zip"
SHA256 = "215d5f3dbf0609a149f6218a9e47b6ae2df34ebbff3c5754e35f15a5e5393c8a"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
PACKAGES = ("ca-certificates", "openjdk-17-jre-headless", "dumb-init", "curl")
USER, UID, HOME = "elasticsearch", 1000, "/usr/share/elasticsearch"
REPOSITORY = "airlock-lab/elasticsearch"
RECIPE = "\n".join([VERSION, SHA256, *PACKAGES, USER, str(UID), HOME, "v1"])


def tag() -> str:
    return localimage.recipe_tag(VERSION, RECIPE)


def reference() -> str:
    return f"{REPOSITORY}:{tag()}"


def archive_path() -> Path:
    return cache_dir() / f"elasticsearch-{tag()}.tar"


def problems() -> list[str]:
    """What building it needs that the staging host may lack: Maven."""
    if shutil.which("mvn"):
        return []
    return ["Maven (mvn), to fetch Elasticsearch's distribution from Maven Central: "
            "apt-get install maven"]


def fetch(say=print) -> Path:  # type: ignore[no-untyped-def]
    """The distribution zip, from Maven Central through ``mvn``, checked against the pin."""
    return localimage.maven_fetch(ARTIFACT, SHA256, "elasticsearch",
                                  "installer/lab/elasticsearch.py", say)


def _server(zip_path: Path, work: Path) -> Path:
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            name = Path(info.filename)
            if name.is_absolute() or ".." in name.parts:
                raise LabError(f"Elasticsearch's zip has an unsafe member name "
                               f"{info.filename!r}")
        z.extractall(work)
    server = work / f"elasticsearch-{VERSION}"
    for f in (server / "bin").glob("*"):
        f.chmod(0o755)
    return server


def _config() -> dict:
    return {
        "User": f"{UID}:0", "WorkingDir": HOME,
        "Env": [f"PATH={localimage.PATH}", "LANG=C.UTF-8", f"ES_JAVA_HOME={JAVA_HOME}",
                "ES_PATH_CONF=/usr/share/elasticsearch/config"],
        "Entrypoint": ["/usr/bin/dumb-init", "--", f"{HOME}/bin/elasticsearch"],
        "ExposedPorts": {"9200/tcp": {}},
        "Labels": {"org.opencontainers.image.title": "elasticsearch",
                   "org.opencontainers.image.version": VERSION,
                   "org.opencontainers.image.source": f"maven:{ARTIFACT}",
                   "dev.airlock.lab.dist-sha256": SHA256,
                   "dev.airlock.lab.stand-in": "the upstream server (integration-test "
                                               "distribution: no ILM, no analysis-common) on "
                                               "Debian 12's OpenJDK 17, packaged locally (no "
                                               "image registry here)"},
    }


def link_into(build_dir: Path, say=print) -> Path:  # type: ignore[no-untyped-def]
    return localimage.link(ensure(say), build_dir, "elasticsearch.tar")


def ensure(say=print) -> Path:  # type: ignore[no-untyped-def]
    """The cached ``docker save`` archive of the lab's Elasticsearch image (built if
    absent)."""
    dest = archive_path()
    if dest.exists():
        return dest
    from installer import system_packages

    system_packages.ensure(["lab"], say, [
        *system_packages.root("for building the lab's Elasticsearch image (debootstrap)"),
        *problems()])
    say(f"building the lab's Elasticsearch {VERSION} image from Maven Central (about 3 "
        f"minutes, once; cached at {dest})")
    zip_path = fetch(say)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix="build-") as tmp:
        work = Path(tmp)
        server = _server(zip_path, work / "dist")
        root = work / "root"
        localimage.debootstrap(root, PACKAGES, say)
        localimage.add_user(root, USER, UID, HOME)
        shutil.copytree(server, root / HOME.lstrip("/"), symlinks=True, dirs_exist_ok=True)
        for d in ("data", "logs", "config/certs"):
            (root / HOME.lstrip("/") / d).mkdir(parents=True, exist_ok=True)
        # as upstream: the server's user owns data, logs and config (the keystore is
        # made there at the first start); the rest is root's
        for d in ("data", "logs", "config"):
            for dirpath, dirnames, filenames in os.walk(root / HOME.lstrip("/") / d):
                for n in (dirpath, *[os.path.join(dirpath, f) for f in dirnames + filenames]):
                    os.lchown(n, UID, 0)
        shutil.rmtree(work / "dist")
        localimage.pack(root, work, dest, reference(), _config(),
                        f"airlock lab: Elasticsearch {VERSION} from Maven Central")
    say(f"Elasticsearch image {reference()}: {dest.stat().st_size / 2**20:.0f} MiB")
    return dest
