"""The one list of Debian packages (installer/system_packages.py): what `airlock demo` checks
before its first step, installs as root on Debian or stops on naming the `apt-get install`
line, and what tests/run.sh installs with the system python3 (stdlib only)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import REPO
from installer import system_packages as sp
from installer.cli import demo as demo_mod
from installer.cli import main
from installer.errors import LabError


@pytest.fixture
def lacking(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Pretend the commands and files given are not installed (everything else is)."""
    absent: set[str] = set()
    real = sp.Need.installed
    monkeypatch.setattr(sp.Need, "installed",
                        lambda self: self.present not in absent and real(self))
    return absent


@pytest.fixture
def apt(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """apt-get's runs, recorded instead of run."""
    runs: list[list[str]] = []

    def run(cmd: list[str], **_kw: object) -> subprocess.CompletedProcess:
        runs.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(sp.subprocess, "run", run)
    return runs


def test_every_purpose_names_packages_and_how_to_see_them() -> None:
    for name, purpose in sp.PURPOSES.items():
        assert purpose.why and purpose.needs, name
        for need in purpose.needs:
            assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", need.package), need
            assert need.present.startswith(("/", "import ")) or "/" not in need.present, need


def test_each_tool_the_tests_need_is_on_the_list() -> None:
    tools = {t for f in (REPO / "tests").glob("*.py")
             for t in re.findall(r'\bneed\("([^"]+)"\)', f.read_text())}
    assert {"ssh-keygen", "skopeo", "docker-registry"} <= tools
    for tool in tools:
        assert sp.package_of(tool)


def test_run_sh_installs_every_purpose() -> None:
    """run.sh runs the whole suite, so everything on the list; an unknown name would stop it."""
    text = (REPO / "tests" / "run.sh").read_text().replace("\\\n", " ")
    line = re.search(r"python3 -m installer\.system_packages install ([^\n]+)", text)
    assert line, "run.sh does not install from installer/system_packages.py"
    assert set(line.group(1).split()) == set(sp.PURPOSES)


def test_runs_with_the_system_python_before_venv_exists() -> None:
    """-S: no site-packages, so nothing but the standard library (and the checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-S", "-m", "installer.system_packages", "missing",
                           *sp.PURPOSES], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {p for ps in sp.missing(sp.PURPOSES).values() for p in ps}
    listed = subprocess.run([sys.executable, "-S", "-m", "installer.system_packages", "list"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "codeserver-build" in listed.stdout
    bad = subprocess.run([sys.executable, "-S", "-m", "installer.system_packages", "missing",
                          "nonsense"], cwd=REPO, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown purpose nonsense" in bad.stderr


def test_missing_names_each_package_once(lacking: set[str]) -> None:
    lacking |= {"ssh-keygen", "ssh", "g++", "make", "/usr/include/krb5.h"}
    assert sp.missing(["reviewer", "lab", "codeserver-build"]) == {
        "reviewer": ["openssh-client"],
        "codeserver-build": ["build-essential", "libkrb5-dev"]}


def test_not_root_stops_with_the_apt_get_line(monkeypatch: pytest.MonkeyPatch,
                                              lacking: set[str], apt: list) -> None:
    monkeypatch.setattr(sp.os, "geteuid", lambda: 1000)
    lacking |= {"apt-ftparchive", "certutil"}
    with pytest.raises(LabError) as e:
        sp.ensure(["reviewer", "mirror", "browser"], problems=["Node 20 at /usr/bin/node"])
    assert e.value.exit_code == 8
    assert str(e.value).splitlines() == [
        "missing on this machine (cannot install here: not root):",
        f"  Debian packages for {sp.PURPOSES['mirror'].why}: apt-utils",
        f"  Debian packages for {sp.PURPOSES['browser'].why}: libnss3-tools",
        "  Node 20 at /usr/bin/node"]
    assert e.value.hint == "as root: apt-get install --no-install-recommends apt-utils " \
                           "libnss3-tools"
    assert apt == []


def test_not_debian_stops(monkeypatch: pytest.MonkeyPatch, lacking: set[str],
                          apt: list) -> None:
    lacking.add("chromium")
    lacking.add("/usr/bin/chromium")
    monkeypatch.setattr(sp.shutil, "which",
                        lambda c: None if c == "apt-get" else f"/usr/bin/{c}")
    with pytest.raises(LabError, match=r"not a Debian host \(no apt-get\)") as e:
        sp.ensure(["browser"])
    assert e.value.hint == "apt-get install --no-install-recommends chromium"
    assert apt == []


def test_root_on_debian_installs_saying_why(monkeypatch: pytest.MonkeyPatch, lacking: set[str],
                                           apt: list) -> None:
    monkeypatch.setattr(sp.os, "geteuid", lambda: 0)
    lacking |= {"dockerd", "docker", "debootstrap", "rg"}
    said: list[str] = []
    sp.ensure(["engine", "lab", "codeserver-build"], said.append)
    assert said == [
        f"installing Debian packages for {sp.PURPOSES['engine'].why}: docker.io",
        f"installing Debian packages for {sp.PURPOSES['lab'].why}: debootstrap",
        f"installing Debian packages for {sp.PURPOSES['codeserver-build'].why}: ripgrep"]
    assert apt == [["apt-get", "update", "-qq"],
                   ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io",
                    "debootstrap", "ripgrep"]]


def test_root_with_a_problem_installs_nothing(monkeypatch: pytest.MonkeyPatch,
                                              lacking: set[str], apt: list) -> None:
    monkeypatch.setattr(sp.os, "geteuid", lambda: 0)
    lacking.add("rg")
    with pytest.raises(LabError, match="Node 20") as e:
        sp.ensure(["codeserver-build"], problems=["Node 20 at /usr/bin/node"])
    assert e.value.hint == "apt-get install --no-install-recommends ripgrep"
    assert apt == []


def test_nothing_missing_does_nothing(apt: list) -> None:
    sp.ensure([p for p in sp.PURPOSES if not sp.missing([p])], problems=[])
    assert apt == []


def test_require_names_the_package(lacking: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sp.shutil, "which", lambda c: None)
    with pytest.raises(LabError, match="debootstrap is not installed") as e:
        sp.require("debootstrap")
    assert e.value.hint == "apt-get install --no-install-recommends debootstrap"


def test_what_the_demo_needs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from installer.lab import browser, codeserver, engine, keycloak, llamacpp, oauth2proxy

    monkeypatch.setattr(sp.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(codeserver, "problems", lambda: ["node"])
    monkeypatch.setattr(llamacpp, "problems", lambda: ["cmake"])
    for m in (keycloak, oauth2proxy):
        monkeypatch.setattr(m, "problems", lambda: [])
    monkeypatch.setattr(browser, "problems", lambda: ["playwright"])
    monkeypatch.setenv("AIRLOCK_CACHE", str(tmp_path))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert demo_mod.needs(True) == (["reviewer"], [])
    purposes, problems = demo_mod.needs(False)
    assert purposes == ["reviewer", "mirror", "source-mirrors", "lab", "engine", "codeserver-build",
                        "llama-build", "browser"]
    assert problems == ["root, for the lab (its container engine, debootstrap)", "node",
                        "cmake", "playwright"]
    # an engine that answers at DOCKER_HOST, and a code-server image already built
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/x.sock")
    monkeypatch.setattr(engine, "answers", lambda host: True)
    codeserver.archive_path().write_bytes(b"")
    llamacpp.archive_path().write_bytes(b"")
    monkeypatch.setattr(sp.os, "geteuid", lambda: 0)
    assert demo_mod.needs(False) == (["reviewer", "mirror", "source-mirrors", "lab", "browser"],
                                     ["playwright"])


def test_demo_stops_before_anything(monkeypatch: pytest.MonkeyPatch, lacking: set[str],
                                    apt: list, tmp_path: Path) -> None:
    """`airlock demo --no-lab` as a user, without ssh-keygen: exit 8 with the apt-get line,
    and nothing made (not the output folder, not the sample's inputs)."""
    monkeypatch.setattr(sp.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(demo_mod, "checkout_root", lambda what: pytest.fail("the demo went on"))
    lacking.add("ssh-keygen")
    result = CliRunner().invoke(main, ["demo", "--no-lab", "-o", str(tmp_path / "demo")])
    assert result.exit_code == 8, result.output
    assert "0. what this machine needs" in result.output
    assert "hint: as root: apt-get install --no-install-recommends openssh-client" in \
        " ".join(result.output.split())
    assert not (tmp_path / "demo").exists()
    assert apt == []


def test_demo_with_a_lab_up_stops_before_anything(monkeypatch: pytest.MonkeyPatch,
                                                  apt: list, tmp_path: Path) -> None:
    """Run again while its lab is up, the demo stops at step 0 (before it would remove the
    running lab's site folder in its output), saying how to go on."""
    from installer.lab.lab import LabState

    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    LabState("poc", "unix:///x.sock", None, "img", "key").save(lab_dir)
    monkeypatch.setenv("AIRLOCK_LAB_DIR", str(lab_dir))
    monkeypatch.setattr(demo_mod, "checkout_root", lambda what: pytest.fail("the demo went on"))
    work = tmp_path / "demo"
    (work / "site").mkdir(parents=True)
    result = CliRunner().invoke(main, ["demo", "-o", str(work)])
    assert result.exit_code == 8, result.output
    text = " ".join(result.output.split())
    assert "a lab (poc) is already up" in text and "airlock lab down" in text, text
    assert (work / "site").is_dir()
    assert apt == []
