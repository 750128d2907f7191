"""Shared fixtures: real tools (docker-registry, skopeo, dockerd) started once per run,
and small real inputs (docker archives, VSIX zips, model folders) made per test.

A test that needs a tool this machine lacks fails with a message saying what to install;
``tests/run.sh`` installs and starts all of them (AIRLOCK_REQUIRE_ALL=1 there).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from installer.lab import sample
from installer.lab.fixtures import ImageDef, make_docker_archive, make_vsix
from installer.system_packages import package_of

REPO = Path(__file__).resolve().parent.parent
AIRLOCK = [sys.executable, "-m", "installer.cli"]


def need(tool: str) -> str:
    """The path of a tool installer/system_packages.py lists; fails naming its package."""
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} is not installed: apt-get install {package_of(tool)} "
                    "(tests/run.sh does)", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {log.read_text()[-2000:]}", pytrace=False)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"server on port {port} did not come up: {log.read_text()[-2000:]}")


def run_airlock(*args: str, cwd: Path | None = None, env: dict | None = None,
                check: bool = False, timeout: float = 300,
                patch: str | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; PATCH (Python source) runs first when given, to make a
    library call fail in a way no input can."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    cmd = [sys.executable, "-c", f"{patch}\nfrom installer.cli import main\n"
           "main(prog_name='airlock')"] if patch else AIRLOCK
    proc = subprocess.run([*cmd, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"airlock {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


# --------------------------------------------------------------------------- inputs

BASE = {"etc/os-release": b"ID=airlock-test\n"}


def two_images(path: Path) -> Path:
    """base:1 and app:1, app built on base (one shared layer)."""
    return make_docker_archive(path, [
        ImageDef("test/base:1", [BASE]),
        ImageDef("test/app:1", [BASE, {"app/run.sh": b"#!/bin/sh\necho app\n"}]),
    ])


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """A private copy of bundles/ with the sample's generated inputs."""
    dst = tmp_path / "bundles"
    shutil.copytree(REPO / "bundles", dst, ignore=shutil.ignore_patterns("build"))
    sample.prepare(dst)
    return dst


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A spec folder with a model, a VSIX, two files and a docker archive of two images."""
    d = tmp_path / "spec"
    (d / "model" / "sub").mkdir(parents=True)
    (d / "model" / "config.json").write_text('{"model_type": "t"}\n')
    (d / "model" / "sub" / "weights.safetensors").write_bytes(os.urandom(300_000))
    (d / "model" / ".cache").mkdir()
    (d / "model" / ".cache" / "ignored").write_text("not part of the model\n")
    (d / "notes.txt").write_text("same bytes twice\n")
    (d / "notes-copy.txt").write_text("same bytes twice\n")
    make_vsix(d / "ext.vsix", "acme", "tool", "1.2.3", "^1.90.0", {"extension.js": b"//\n"})
    two_images(d / "images.tar")
    return d


def small_inputs(d: Path) -> Path:
    """FULL_SPEC's inputs in D, small: a model, notes twice, a VSIX, two images."""
    (d / "model").mkdir()
    (d / "model" / "config.json").write_text("{}\n")
    (d / "notes.txt").write_text("notes\n")
    (d / "notes-copy.txt").write_text("notes\n")
    make_vsix(d / "ext.vsix", "acme", "tool", "1.2.3", "^1.90.0")
    two_images(d / "images.tar")
    return d


def write_spec(d: Path, body: str, name: str = "test.yaml") -> Path:
    p = d / name
    p.write_text(textwrap.dedent(body).lstrip())
    return p


FULL_SPEC = """
    apiVersion: airlock/v1
    name: test
    version: 3
    phase: poc
    target: {vscode: "1.96.4"}
    images:
      - name: base
        ref: docker-archive:images.tar:test/base:1
      - name: app
        ref: docker-archive:images.tar:test/app:1
    models:
      - name: tiny
        path: model
    vsix:
      - path: ext.vsix
    files:
      - name: notes
        path: notes.txt
      - name: notes-copy
        path: notes-copy.txt
"""


# --------------------------------------------------------------------------- real services

@contextmanager
def run_registry(d: Path, auth: dict | None = None, tls: dict | None = None) -> Iterator[str]:
    """Debian's docker-registry (distribution) on a free loopback port; yields HOST:PORT and
    stops the process it started."""
    binary = need("docker-registry")
    port = free_port()
    config: dict = {"version": 0.1, "log": {"level": "warn"},
                    "storage": {"filesystem": {"rootdirectory": str(d / "data")},
                                "delete": {"enabled": True}},
                    "http": {"addr": f"127.0.0.1:{port}", **({"tls": tls} if tls else {})}}
    if auth:
        config["auth"] = auth
    (d / "config.yml").write_text(yaml.safe_dump(config))
    log = d / "log"
    with open(log, "w") as lf:
        proc = subprocess.Popen([binary, "serve", str(d / "config.yml")], stdout=lf,
                                stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, log)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def ca_and_cert(d: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key) PEMs."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airlock test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    (d / "key.pem").chmod(0o600)
    return d / "ca.pem", d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain-HTTP registry shared by the whole run."""
    with run_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


def skopeo_push(source: str, dest: str, *extra: str) -> None:
    need("skopeo")
    subprocess.run(["skopeo", "copy", "--quiet", "--insecure-policy", *extra, source,
                    f"docker://{dest}"], check=True, capture_output=True, timeout=120)


# --------------------------------------------------------------------------- measured figures

FIGURES = REPO / "out" / "test-artifacts" / "figures.jsonl"


def report_figure(topic: str, text: str, **values: Any) -> None:
    """A figure the lab measured (failover times, failed requests, restore times): printed
    for the run's log and kept, one JSON line each, in out/test-artifacts/figures.jsonl."""
    import json

    print(f"\n{text}")
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "topic": topic, "text": text, **values}, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- the shared lab

DEMO_PASS = "demo-test-passphrase"
# Modules that use the one lab `airlock demo` makes, in the order they must run (the
# deploy tests build on the upgrade the import tests leave behind).
# test_source_zone first: the Maven repository and GOPROXY tree it builds from are the
# demo's release's (the smaller lab releases the later modules import carry no packages)
# test_ha early: its LiteLLM release is installed from the lab bundle the demo served
# (test_import and test_deploy serve small releases after it, without the pip mirror)
SHARED_LAB_MODULES = ("test_source_zone.py", "test_ha.py", "test_import.py", "test_deploy.py",
                      "test_ide.py", "test_ai.py", "test_identity.py",
                      "test_offline_install.py", "test_acceptance.py", "test_logging.py",
                      "test_backups.py")
_shared: dict = {}


def pytest_collection_modifyitems(items: list) -> None:
    """Run the shared lab's modules one after the other (and before test_lab.py, which
    makes a lab of its own on the same subnets); mark them `lab`: tests/run.sh runs them
    first, alone, and the rest (test_lab.py with them) in parallel after the shared lab is
    down."""
    def key(item) -> int:
        name = Path(str(item.fspath)).name
        return SHARED_LAB_MODULES.index(name) if name in SHARED_LAB_MODULES else len(
            SHARED_LAB_MODULES)
    items.sort(key=key)  # stable: order inside each module is kept
    for item in items:
        if Path(str(item.fspath)).name in SHARED_LAB_MODULES:
            item.add_marker(pytest.mark.lab)


@contextmanager
def own_lab_turn() -> Iterator[None]:
    """Held while a test brings up a lab of its own (test_lab.py, molecule's): two labs on
    this machine's subnets at once clash (the second is refused), and the parallel workers
    may each take one. A lock file every worker sees; the kernel drops it if one dies."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "airlock-own-lab.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def pytest_runtest_teardown(item, nextitem) -> None:
    """The shared lab goes down as soon as the last of its modules is done, so the tests
    after it (test_lab.py's subnet clash, its own lab) find the subnets free."""
    def shared(it) -> bool:
        return it is not None and Path(str(it.fspath)).name in SHARED_LAB_MODULES
    if shared(item) and not shared(nextitem):
        shared_lab_down()


@pytest.fixture(scope="session", autouse=True)
def _quiet_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Commands that write the audit log (keys init…) write it into a per-run site folder,
    and records go to syslog only where a test asks for it."""
    env = {"AIRLOCK_SITE_DIR": str(tmp_path_factory.mktemp("site")), "AIRLOCK_SYSLOG": "none"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    _restore(old)


def _restore(old: dict) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def shared_lab_down() -> None:
    """Take the shared lab down now (test_lab.py needs the subnets); idempotent."""
    if _shared.pop("up", False):
        run_airlock("lab", "down")
        _restore(_shared.pop("env", {}))


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """README's main command, run once: build, sign, lab up, preflight, import, deploy,
    status. The lab stays up for the modules in SHARED_LAB_MODULES."""
    import json

    reuse = os.environ.get("AIRLOCK_TEST_DEMO")
    if reuse:
        # a developer's shortcut: the lab an `airlock demo -o DIR/out` with
        # AIRLOCK_LAB_DIR=DIR/lab left up (its output in DIR/log); never taken down here
        yield _reused_demo(Path(reuse))
        return
    for tool in ("debootstrap", "gpg", "ssh", "apt-ftparchive", "dockerd"):
        need(tool)
    d = tmp_path_factory.mktemp("demo")
    env = {"AIRLOCK_LAB_DIR": str(d / "lab"), "DEMO_PASS": DEMO_PASS}
    _shared["env"] = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _shared["up"] = True
    try:
        proc = run_airlock("demo", "-o", str(d / "demo"), "--passphrase-env", "DEMO_PASS",
                           timeout=3000)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        state = json.loads((d / "lab" / "state.json").read_text())
        yield {"dir": d, "work": d / "demo", "out": proc.stdout, "state": state,
               "inventory": Path(state["inventory"]), "key": state["key"],
               "bundle": d / "demo" / "lab-bundle", "trust": d / "demo" / "keys" / "root.json",
               "site": d / "demo" / "site"}
    finally:
        shared_lab_down()


def _reused_demo(d: Path) -> dict:
    import json

    state = json.loads((d / "lab" / "state.json").read_text())
    os.environ["AIRLOCK_LAB_DIR"] = str(d / "lab")
    log = d / "log"
    return {"dir": d, "work": d / "out", "out": log.read_text() if log.exists() else "",
            "state": state, "inventory": Path(state["inventory"]), "key": state["key"],
            "bundle": d / "out" / "lab-bundle", "trust": d / "out" / "keys" / "root.json",
            "site": d / "out" / "site"}


def lab_bundle(demo: dict, version: int, files: dict[str, Path], out: Path,
               signers: tuple[str, str]) -> Path:
    """lab vVERSION into OUT: the sample's image, readme and VSIX files, the images the demo
    built (code-server, Keycloak, oauth2-proxy, the llama.cpp stand-in, Elasticsearch) and
    the model it serves, plus FILES (name -> path); no packages, so it builds offline.
    Signed by two of the demo's signers."""
    sample = REPO / "bundles" / "sample"
    extra = "".join(f"  - {{name: {n}, path: {p}}}\n" for n, p in files.items())
    spec = out.with_name(out.name + ".yaml")
    spec.write_text(f"""apiVersion: airlock/v1
name: lab
version: {version}
phase: lab
target: {{platform: linux/amd64, vscode: "1.100.3", code_server: "4.100.3"}}
images:
  - {{name: hello, ref: "docker-archive:{sample}/build/images.tar:sample/hello:1.0"}}
  - {{name: code-server, ref: "docker-archive:{sample}/build/code-server.tar", lock: false}}
  - {{name: keycloak, ref: "docker-archive:{sample}/build/keycloak.tar", lock: false}}
  - {{name: oauth2-proxy, ref: "docker-archive:{sample}/build/oauth2-proxy.tar", lock: false}}
  - {{name: llama-cpp-server, ref: "docker-archive:{sample}/build/llama-cpp-server.tar",
     lock: false}}
  - {{name: elasticsearch, ref: "docker-archive:{sample}/build/elasticsearch.tar", lock: false}}
models:
  - {{name: smollm2, version: "0.1.2", family: llama, path: {sample}/build/smollm2}}
vsix:
  - {{path: {sample}/build/airlock-sample.hello-0.1.0.vsix}}
  - {{path: {sample}/build/airlock-sample.unlisted-0.1.0.vsix}}
files:
  - {{name: offline-readme, path: {sample}/src/files/OFFLINE-README.txt}}
{extra}""")
    run_airlock("bundle", "build", str(spec), "-o", str(out), "--force", check=True)
    for s in signers:
        run_airlock("bundle", "sign", str(out), "--key", str(demo["work"] / "keys" / f"{s}.key"),
                    "--passphrase-env", "DEMO_PASS", check=True)
    return out


def lab_v2(demo: dict) -> Path:
    """lab v2 (the sample's content plus 3 MiB of notes), served by the repo host.
    test_import lands it through an interrupted copy; a module run on its own (pytest
    tests/test_deploy.py) gets it imported here."""
    import json

    v2 = demo["dir"] / "v2"
    notes = demo["dir"] / "release-notes.bin"
    if not (v2 / "bundle.json").exists():
        notes.write_bytes(bytes(range(256)) * (3 * 4096))
        lab_bundle(demo, 2, {"notes": notes}, v2, ("signer-1", "signer-2"))
    served = lab_ssh(demo, "repo1", "cat /srv/airlock/current/.airlock-import.json")
    if json.loads(served.stdout)["version"] < 2:
        run_airlock("bundle", "import", str(v2), "-i", str(demo["inventory"]), "--trust",
                    str(demo["trust"]), "--site", str(demo["site"]), "--json", check=True,
                    timeout=900)
    return v2


def lab_ssh(demo: dict, host: str, command: str, timeout: float = 300,
            data: bytes | None = None, root: bool = True) -> subprocess.CompletedProcess:
    """Run COMMAND on a lab host over its management address (real OpenSSH), as the
    airlock user, through sudo unless ROOT is False; host keys checked against the site's
    known_hosts, which airlock filled."""
    import shlex

    addr = demo["state"]["hosts"][host]["mgmt_address"]
    if root:
        command = "sudo -n sh -c " + shlex.quote(command)
    return subprocess.run(["ssh", "-i", demo["key"], "-o", "StrictHostKeyChecking=yes",
                           "-o", f"UserKnownHostsFile={demo['site'] / 'known_hosts'}",
                           "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", f"airlock@{addr}",
                           command],
                          capture_output=True, text=data is None, timeout=timeout, input=data)


class Nginx:
    def __init__(self, root: Path, port: int, work: Path):
        binary = need("nginx")
        work.mkdir(parents=True, exist_ok=True)
        (work / "logs").mkdir(exist_ok=True)
        conf = work / "nginx.conf"
        conf.write_text(textwrap.dedent(f"""
            user root;
            worker_processes 1;
            error_log {work}/logs/error.log warn;
            pid {work}/nginx.pid;
            events {{ worker_connections 64; }}
            http {{
                include /etc/nginx/mime.types;
                access_log {work}/logs/access.log;
                client_body_temp_path {work}/body;
                proxy_temp_path {work}/proxy;
                fastcgi_temp_path {work}/fastcgi;
                uwsgi_temp_path {work}/uwsgi;
                scgi_temp_path {work}/scgi;
                include {root}/nginx-http.conf;
                server {{
                    listen 127.0.0.1:{port};
                    root {root};
                    include {root}/nginx-locations.conf;
                }}
            }}
        """))
        subprocess.run([binary, "-t", "-c", str(conf), "-p", str(work)], check=True,
                       capture_output=True)
        log = work / "logs" / "stdout"
        with open(log, "w") as lf:
            self.proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(work), "-g",
                                          "daemon off;"], stdout=lf, stderr=subprocess.STDOUT)
        wait_port(port, self.proc, log)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
