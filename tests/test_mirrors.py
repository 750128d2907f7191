"""Package mirrors end to end with the real clients: the bundle's pypi, npm and deb content
is resolved by pip, npm and apt, exported as repository trees, served by a real nginx on
loopback with the shipped nginx-locations.conf, and installed by pip, npm and apt-get
(inside a debootstrap chroot whose only source is the mirror, signatures checked). Tampered
files are refused by the clients. airlock installs itself from a bundle in a network
namespace with no route out.

Needs the package registries (PyPI, npm, Debian) at build time, as a staging host has."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Nginx, free_port, need, write_spec
from installer.bundle import mirror
from installer.bundle.build import BuildOptions, build
from installer.bundle.verify import verify
from installer.errors import SourceError

SPEC = """
    apiVersion: airlock/v1
    name: mirrors
    version: 1
    phase: poc
    pypi:
      requirements: [requests]
      python: ["3.11"]
      self: true
    npm:
      packages: ["is-odd@3"]
    deb:
      release: bookworm
      packages: [hello]
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("mirror-spec")
    b = build(write_spec(d, SPEC), d / "bundle", BuildOptions()).path
    assert verify(b).ok
    return b


@pytest.fixture(scope="module")
def site_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("gpg")
    home = tmp_path_factory.mktemp("sitekey") / "gnupg"
    mirror.make_site_key(home, "airlock test site")
    return home


@pytest.fixture
def served(bundle: Path, site_key: Path, tmp_path: Path):
    port = free_port()
    out = tmp_path / "export"
    mirror.export(bundle, out, base_url=f"http://127.0.0.1:{port}/", site_key=site_key)
    server = Nginx(out, port, tmp_path / "nginx")
    yield out, server.url
    server.stop()


def test_bundle_lists_mirrors_with_purls(bundle: Path) -> None:
    meta = json.loads((bundle / "bundle.json").read_text())
    kinds = {a["kind"]: a for a in meta["artifacts"]}
    assert set(kinds) == {"pypi", "npm", "deb"}
    pypi = {f["name"].lower() for f in kinds["pypi"]["files"]}
    assert {"requests", "urllib3", "idna", "airlock", "ansible-core", "ansible-runner"} <= pypi
    assert {f["name"] for f in kinds["npm"]["files"]} == {"is-odd", "is-number"}
    assert "hello" in {f["name"] for f in kinds["deb"]["files"]}
    assert "libc6" in {f["name"] for f in kinds["deb"]["files"]}  # the full closure
    sbom = json.loads((bundle / "sbom.cdx.json").read_text())
    purls = {c["purl"].split("@")[0] for comp in sbom["components"]
             for c in comp.get("components", []) if "purl" in c}
    assert {"pkg:pypi/requests", "pkg:npm/is-odd", "pkg:deb/debian/hello"} <= purls
    assert (bundle / "install-airlock.py").is_file()


def test_lock_pins_names_versions_hashes_and_no_urls(bundle: Path) -> None:
    lock = json.loads((bundle.parent / "test.lock.json").read_text())
    text = json.dumps(lock)
    assert "http" not in text
    deb = lock["entries"]["deb/mirror"]
    hello = next(f for f, p in deb["packages"].items() if p["name"] == "hello")
    assert deb["files"][hello].startswith("sha256:")


def test_pip_installs_with_dependencies_from_the_mirror(served, tmp_path: Path) -> None:
    _, url = served
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(venv / "bin/pip"), "install", "--isolated", "--no-cache-dir",
                           "--index-url", f"{url}/pypi/simple/", "requests"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = subprocess.run([str(venv / "bin/python"), "-c",
                          "import requests, urllib3, idna; print(requests.__version__)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip()
    # PEP 691: JSON when asked for
    import urllib.request

    req = urllib.request.Request(f"{url}/pypi/simple/requests/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    doc = json.loads(urllib.request.urlopen(req, timeout=10).read())
    assert doc["name"] == "requests" and doc["files"][0]["hashes"]["sha256"]


def test_pip_refuses_a_tampered_wheel(served, tmp_path: Path) -> None:
    out, url = served
    wheel = next((out / "pypi/files").glob("idna-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[-100] ^= 0xFF
    wheel.write_bytes(bytes(data))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(venv / "bin/pip"), "install", "--isolated", "--no-cache-dir",
                           "--index-url", f"{url}/pypi/simple/", "idna"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "DO NOT MATCH THE HASHES" in proc.stdout + proc.stderr


def _npm(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    need("npm")
    env = {**os.environ, "npm_config_userconfig": str(tmp_path / "npmrc"),
           "npm_config_cache": str(tmp_path / "npm-cache"), "npm_config_audit": "false",
           "npm_config_fund": "false", "npm_config_update_notifier": "false",
           # a loopback mirror: a refusal is final (npm would retry a bad tarball for 2 min)
           "npm_config_fetch_retries": "0"}
    (tmp_path / "npmrc").write_text("")
    return subprocess.run(["npm", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_npm_installs_with_dependencies_from_the_mirror(served, tmp_path: Path) -> None:
    _, url = served
    app = tmp_path / "app"
    app.mkdir()
    proc = _npm(["install", "--registry", f"{url}/npm/", "is-odd@3"], app, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (app / "node_modules/is-odd/package.json").is_file()
    assert (app / "node_modules/is-number/package.json").is_file()
    node = subprocess.run(["node", "-e", "console.log(require('is-odd')(3))"], cwd=app,
                          capture_output=True, text=True, check=True)
    assert node.stdout.strip() == "true"


def test_npm_refuses_a_tampered_tarball(served, tmp_path: Path) -> None:
    out, url = served
    tgz = out / "npm/is-number/-/is-number-6.0.0.tgz"
    data = bytearray(tgz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tgz.write_bytes(bytes(data))
    app = tmp_path / "app"
    app.mkdir()
    proc = _npm(["install", "--registry", f"{url}/npm/", "is-odd@3"], app, tmp_path)
    assert proc.returncode != 0
    assert "integrity" in (proc.stdout + proc.stderr).lower()


# --------------------------------------------------------------------------- apt

@pytest.fixture(scope="module")
def chroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal Debian 12 made by debootstrap (from the staging host's Debian mirror)."""
    need("debootstrap")
    root = tmp_path_factory.mktemp("chroot") / "root"
    proc = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(root)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"debootstrap failed: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return root


def _apt_in(chroot: Path, out: Path, url: str) -> Path:
    """Point the chroot's apt at the mirror only, with the site key as signed-by."""
    for p in (chroot / "etc/apt/sources.list", *(chroot / "etc/apt/sources.list.d").glob("*")):
        p.unlink(missing_ok=True)
    shutil.rmtree(chroot / "var/lib/apt/lists", ignore_errors=True)
    for cached in (chroot / "var/cache/apt/archives").glob("*.deb"):
        cached.unlink()  # every test downloads from the mirror it is given
    (chroot / "var/lib/apt/lists/partial").mkdir(parents=True)
    (chroot / "etc/apt/keyrings").mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "apt/site-key.gpg", chroot / "etc/apt/keyrings/airlock-site.gpg")
    (chroot / "etc/apt/sources.list.d/airlock.sources").write_text(
        f"Types: deb\nURIs: {url}/apt\nSuites: bookworm\nComponents: main\n"
        "Signed-By: /etc/apt/keyrings/airlock-site.gpg\n")
    return chroot


def _chroot(root: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
           "LC_ALL": "C"}
    return subprocess.run(["chroot", str(root), *cmd], env=env, capture_output=True, text=True,
                          timeout=300)


def test_apt_installs_from_the_signed_mirror(served, chroot: Path) -> None:
    out, url = served
    root = _apt_in(chroot, out, url)
    sources = (root / "etc/apt/sources.list.d/airlock.sources").read_text()
    assert "trusted" not in sources and "Signed-By:" in sources
    upd = _chroot(root, "apt-get", "update")
    assert upd.returncode == 0, upd.stdout + upd.stderr
    assert "NO_PUBKEY" not in upd.stderr
    inst = _chroot(root, "apt-get", "install", "-y", "--no-install-recommends", "hello")
    assert inst.returncode == 0, inst.stdout + inst.stderr
    assert _chroot(root, "hello").stdout.strip() == "Hello, world!"
    _chroot(root, "apt-get", "remove", "-y", "hello")


def test_apt_refuses_a_tampered_packages_index(served, chroot: Path) -> None:
    out, url = served
    packages = out / "apt/dists/bookworm/main/binary-amd64/Packages"
    packages.write_text(packages.read_text().replace("Package: hello", "Package: hellO"))
    (packages.parent / "Packages.gz").unlink()
    root = _apt_in(chroot, out, url)
    upd = _chroot(root, "apt-get", "update")
    assert upd.returncode != 0 or "Hash Sum mismatch" in upd.stderr or \
        "size" in upd.stderr.lower(), upd.stdout + upd.stderr
    assert _chroot(root, "apt-get", "install", "-y", "hello").returncode != 0


def test_apt_refuses_a_release_signed_by_another_key(served, chroot: Path,
                                                     tmp_path: Path) -> None:
    out, url = served
    other = tmp_path / "other-key"
    mirror.make_site_key(other, "not the site")
    root = _apt_in(chroot, out, url)
    # the client's signed-by keyring holds another key than the one that signed the mirror
    keyring = root / "etc/apt/keyrings/airlock-site.gpg"
    keyring.unlink()
    subprocess.run(["gpg", "--homedir", str(other), "--batch", "--export", "--output",
                    str(keyring)], check=True)
    upd = _chroot(root, "apt-get", "update")
    assert "NO_PUBKEY" in upd.stderr or "not signed" in upd.stderr, upd.stderr
    assert _chroot(root, "apt-get", "install", "-y", "hello").returncode != 0


def test_apt_refuses_a_tampered_deb(served, chroot: Path) -> None:
    out, url = served
    deb = next((out / "apt/pool").rglob("hello_*.deb"))
    data = bytearray(deb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    deb.write_bytes(bytes(data))
    root = _apt_in(chroot, out, url)
    assert _chroot(root, "apt-get", "update").returncode == 0
    inst = _chroot(root, "apt-get", "install", "-y", "hello")
    assert inst.returncode != 0
    assert "Hash Sum mismatch" in inst.stdout + inst.stderr


# --------------------------------------------------------------------------- self-install

def test_airlock_installs_itself_with_no_network(bundle: Path, tmp_path: Path) -> None:
    need("unshare")
    venv = tmp_path / "airlock-venv"
    probe = subprocess.run(["unshare", "--net", "python3", "-c",
                            "import socket; socket.create_connection(('1.1.1.1', 53), 2)"],
                           capture_output=True, text=True)
    assert probe.returncode != 0  # really no route out
    proc = subprocess.run(["unshare", "--net", "python3", str(bundle / "install-airlock.py"),
                           str(venv)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    version = subprocess.run(["unshare", "--net", str(venv / "bin/airlock"), "--version"],
                             capture_output=True, text=True)
    assert version.returncode == 0 and "airlock, version" in version.stdout
    ansible = subprocess.run(["unshare", "--net", str(venv / "bin/ansible-playbook"),
                              "--version"], capture_output=True, text=True)
    assert ansible.returncode == 0, ansible.stderr


def test_sdists_only_where_asked_and_pinned_rebuild(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """
        apiVersion: airlock/v1
        name: sd
        version: 1
        phase: poc
        pypi:
          requirements: [six, idna]
          sdists: [six]
    """)
    b = build(spec, tmp_path / "b", BuildOptions()).path
    files = [f["path"] for a in json.loads((b / "bundle.json").read_text())["artifacts"]
             for f in a["files"]]
    assert any(f.startswith("six-") and f.endswith(".tar.gz") for f in files), files
    assert any(f.startswith("idna-") and f.endswith(".whl") for f in files), files
    assert not any(f.startswith("six-") and f.endswith(".whl") for f in files)
    again = build(spec, tmp_path / "b2", BuildOptions(locked=True))
    assert (b / "SHA256SUMS").read_bytes() == (again.path / "SHA256SUMS").read_bytes()


def test_unknown_package_is_a_clear_error(tmp_path: Path) -> None:
    from installer.errors import SourceError

    spec = write_spec(tmp_path, """
        apiVersion: airlock/v1
        name: bad
        version: 1
        phase: poc
        deb:
          release: bookworm
          packages: [no-such-package-airlock-test]
    """)
    with pytest.raises(SourceError, match="no-such-package-airlock-test"):
        build(spec, tmp_path / "b", BuildOptions())
    assert not (tmp_path / "b").exists()


def test_a_pinned_version_debian_no_longer_serves_is_lock_drift(tmp_path: Path) -> None:
    """Debian replaces a package with its update (nginx deb12u11 -> u12): a build with the
    old lock says so as LockDrift (the demo then resolves again); --update-lock takes the
    new version."""
    from installer.errors import LockDrift

    spec = write_spec(tmp_path, """
        apiVersion: airlock/v1
        name: drift
        version: 1
        phase: poc
        deb:
          release: bookworm
          packages: [hello]
    """)
    build(spec, tmp_path / "b", BuildOptions())
    lock_file = tmp_path / "test.lock.json"
    lock = json.loads(lock_file.read_text())
    for p in lock["entries"]["deb/mirror"]["packages"].values():
        if p["name"] == "hello":
            p["version"] = "0.0-airlock-replaced"
    lock_file.write_text(json.dumps(lock))
    with pytest.raises(LockDrift, match=r"hello 0\.0-airlock-replaced"):
        build(spec, tmp_path / "b2", BuildOptions())
    assert not (tmp_path / "b2").exists()
    again = build(spec, tmp_path / "b3", BuildOptions(update_lock=True))
    assert again.lock_written
    assert "0.0-airlock-replaced" not in lock_file.read_text()


def test_a_site_key_folder_too_long_for_gpgs_socket_is_said_plainly(tmp_path: Path) -> None:
    """Where /run/user/UID is missing (root on CI, a container), gpg-agent's socket goes in
    the key's own folder, and a socket's path has at most 107 bytes: the error says so."""
    if Path(f"/run/user/{os.getuid()}").is_dir():  # (gpg puts its sockets there)
        made = mirror.make_site_key(tmp_path / ("k" * 120), "airlock test site")
        assert len(made["fingerprint"]) == 40
        return
    home = tmp_path / ("k" * (110 - len(str(tmp_path))))
    with pytest.raises(SourceError) as e:
        mirror.make_site_key(home, "airlock test site")
    assert "could not start its agent" in str(e.value) and "shorter folder" in e.value.hint
