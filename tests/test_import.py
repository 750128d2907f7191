"""The closed network served from the bundle (README's main command, then attacks on it).

One lab, shared with tests/test_deploy.py (conftest's `demo`), made by `airlock demo`
itself: it builds and signs the lab bundle, brings up the PoC lab, runs preflight, imports
the bundle to repo1 and deploys the PoC (site.yml). Then, from one
host of each zone, apt, pip and docker install from repo1 over TLS (certificates checked),
and nothing else answers. Re-import changes nothing; a tampered bundle, a too-small disk
and an unreachable host are refused before anything reaches the repo host; a copy left
half-done resumes; an upgrade lands beside the served release; a downgrade is refused.
Needs the network for the lab bundle's Debian packages and wheel (PyPI, Debian).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, free_port, lab_bundle, run_airlock
from conftest import lab_ssh as ssh

ZONE_HOSTS = {"dmz": "gw1", "ide": "ide1", "ai": "ai1", "backend": "repo1"}
ALL_HOSTS = ("gw1", "ide1", "ai1", "repo1")


def do_import(demo: dict, bundle: Path, *args: str) -> tuple[int, dict, str]:
    proc = run_airlock("bundle", "import", str(bundle), "-i", str(demo["inventory"]),
                       "--trust", str(demo["trust"]), "--site", str(demo["site"]), "--json",
                       *args, timeout=900)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = {}
    return proc.returncode, doc, proc.stdout + proc.stderr


def repo_tree(demo: dict) -> str:
    """Everything under the repo host's airlock folder: names, sizes and link targets."""
    return ssh(demo, "repo1", "cd /srv/airlock && find releases incoming current -maxdepth 3 "
                              "-printf '%p %s %l\\n' 2>/dev/null | sort").stdout


def served(demo: dict) -> dict:
    r = ssh(demo, "ide1", "python3 -c \"import urllib.request;print(urllib.request.urlopen("
                          "'https://repo1/release.json').read().decode())\"")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_demo_runs_end_to_end_to_a_served_bundle(demo) -> None:
    for step in ("8. the lab bundle", "9. lab up", "10. preflight", "11. import to the repo host",
                 "12. deploy the PoC", "13. status", "what the lab serves"):
        assert step in demo["out"], step
    assert "https://repo1/" in demo["out"] and "repo1:5000" in demo["out"]
    assert served(demo)["name"] == "lab"


@pytest.mark.parametrize("zone", sorted(ZONE_HOSTS))
def test_each_zone_installs_from_the_repo_host_only(demo, zone: str) -> None:
    host = ZONE_HOSTS[zone]
    sources = ssh(demo, host, "test ! -e /etc/apt/sources.list && ls -A /etc/apt/sources.list.d")
    assert sources.returncode == 0 and sources.stdout.split() == ["airlock.sources"], sources
    apt = ssh(demo, host, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv "
                          "&& dpkg -s python3-venv | grep -q 'Status: install ok installed'")
    assert apt.returncode == 0, apt.stdout[-2000:] + apt.stderr[-2000:]
    pip = ssh(demo, host, "rm -rf /tmp/v && python3 -m venv /tmp/v && /tmp/v/bin/pip install "
                          "--no-cache-dir idna && /tmp/v/bin/python -c 'import idna'")
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    # the bytes pulled are the bundle's: the digest docker records is the bundle's digest
    index = json.loads((demo["bundle"] / "index.json").read_text())
    digest = next(m["digest"] for m in index["manifests"]
                  if m["annotations"].get("dev.airlock.name") == "hello")
    pull = ssh(demo, host, "docker pull -q repo1:5000/hello:1.0 && docker image inspect "
                           "--format '{{json .RepoDigests}}' repo1:5000/hello:1.0")
    assert pull.returncode == 0, pull.stderr
    assert f"repo1:5000/hello@{digest}" in pull.stdout


def test_tls_is_checked_and_nothing_else_answers(demo) -> None:
    # a client that does not trust the site CA is refused by the certificate check
    r = ssh(demo, "ai1", "python3 -c \"import ssl,urllib.request;urllib.request.urlopen("
                         "'https://repo1/release.json', context=ssl.create_default_context("
                         "cafile='/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt'))\"")
    assert r.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in r.stderr, r.stderr
    script = ("import socket,sys\n"
              "for h in sys.argv[1:]:\n"
              "  for p in (443, 5000, 80, 8080):\n"
              "    try:\n"
              "      socket.create_connection((h, p), timeout=1).close(); print(h, p, 'open')\n"
              "    except OSError: print(h, p, 'closed')\n")
    for host in ALL_HOSTS:
        others = [h for h in ALL_HOSTS if h != host]
        r = ssh(demo, host, f"python3 -c {shlex.quote(script)} " + " ".join(others))
        got = {tuple(line.split()[:2]): line.split()[2] for line in r.stdout.splitlines()}
        for (h, p), state in got.items():
            expected = "open" if h == "repo1" and p in ("443", "5000") else "closed"
            assert state == expected, (host, h, p, state)
        assert len(got) == len(others) * 4


def test_import_again_changes_nothing(demo) -> None:
    before = repo_tree(demo)
    rc, doc, out = do_import(demo, demo["bundle"])
    assert rc == 0, out[-3000:]
    assert doc["filesCopied"] == 0 and doc["bytesCopied"] == 0
    assert doc["run"]["changed"] == 0, doc["run"]["stats"]
    assert repo_tree(demo) == before


def test_tampered_bundle_refused_before_a_byte_reaches_the_host(demo, tmp_path: Path) -> None:
    bad = tmp_path / "lab-bundle"
    shutil.copytree(demo["bundle"], bad)
    index = json.loads((bad / "index.json").read_text())
    model = next(m for m in index["manifests"] if m["annotations"]["dev.airlock.kind"] == "model")
    layer = json.loads((bad / "blobs/sha256" / model["digest"][7:]).read_text())["layers"][0]
    blob = bad / "blobs/sha256" / layer["digest"][7:]
    data = bytearray(blob.read_bytes())
    data[0] ^= 1
    blob.write_bytes(bytes(data))
    before = repo_tree(demo)
    rc, doc, out = do_import(demo, bad)
    assert rc == 5, out[-2000:]
    assert "nothing was sent" in doc["error"]
    assert any(p["file"] == f"blobs/sha256/{layer['digest'][7:]}" for p in doc["problems"])
    assert repo_tree(demo) == before


def test_too_small_disk_refused_before_copying(demo) -> None:
    r = ssh(demo, "repo1", "mkdir -p /mnt/small && mount -t tmpfs -o size=8m tmpfs /mnt/small")
    assert r.returncode == 0, r.stderr
    try:
        rc, doc, out = do_import(demo, demo["bundle"], "--repo-root", "/mnt/small/airlock")
        assert rc == 9, out[-2000:]
        assert "repo1" in doc["error"] and "MiB free" in doc["error"]
        assert ssh(demo, "repo1", "ls -A /mnt/small").stdout.strip() == ""
    finally:
        ssh(demo, "repo1", "umount /mnt/small")


def test_unreachable_repo_host_is_named(demo, tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(f"all:\n  children:\n    repo:\n      hosts:\n        repo9:\n"
                   f"          ansible_host: 127.0.0.1\n          ansible_port: {free_port()}\n")
    proc = run_airlock("bundle", "import", str(demo["bundle"]), "-i", str(inv), "--trust",
                       str(demo["trust"]), "--site", str(demo["site"]), "--json")
    assert proc.returncode == 9, proc.stdout + proc.stderr
    assert "repo9" in json.loads(proc.stdout)["error"] and "unreachable" in proc.stdout


def test_interrupted_copy_resumes_and_upgrade_lands_beside(demo) -> None:
    # lab v2: the sample's content plus 3 MiB of notes (test_deploy.py makes its delta on
    # this bundle and these notes)
    notes = demo["dir"] / "release-notes.bin"
    notes.write_bytes(bytes(range(256)) * (3 * 4096))
    v2 = lab_bundle(demo, 2, {"notes": notes}, demo["dir"] / "v2", ("signer-1", "signer-2"))
    # (conftest's lab_v2 makes the same bundle for a module run on its own)
    blobs = sorted((v2 / "blobs/sha256").iterdir())
    v1 = {p.name for p in (demo["bundle"] / "blobs/sha256").iterdir()}
    big = max((p for p in blobs if p.name not in v1), key=lambda p: p.stat().st_size)
    small = next(p for p in blobs if p != big)
    assert big.stat().st_size >= 3 << 20
    # what an interrupted copy leaves: half of a blob, one blob whole, one file damaged
    inc = "/srv/airlock/incoming/lab-2/bundle"
    half = big.read_bytes()[: big.stat().st_size // 2]
    assert ssh(demo, "repo1", f"mkdir -p {inc}/blobs/sha256").returncode == 0
    assert ssh(demo, "repo1", f"cat > {inc}/blobs/sha256/{big.name}.part",
               data=half).returncode == 0
    assert ssh(demo, "repo1", f"cat > {inc}/blobs/sha256/{small.name}",
               data=small.read_bytes()).returncode == 0
    assert ssh(demo, "repo1", f"printf x > {inc}/bundle.json").returncode == 0
    assert served(demo)["version"] == 1  # nothing half-imported is served
    # the blobs v1 has too (every image and the model) are linked from the served release
    # on the host, not sent again; one of them damaged there (same size) is sent after all
    shared = [p for p in blobs if p.name in v1 and p != small]
    bad = min(shared, key=lambda p: p.stat().st_size)
    served_bad = f"/srv/airlock/releases/lab-1/bundle/blobs/sha256/{bad.name}"
    assert ssh(demo, "repo1", f"cat > {served_bad}",
               data=b"x" * bad.stat().st_size).returncode == 0
    try:
        rc, doc, out = do_import(demo, v2)
    finally:
        assert ssh(demo, "repo1", f"cat > {served_bad}", data=bad.read_bytes()).returncode == 0
    assert rc == 0, out[-3000:]
    mirror = demo["site"] / "imports" / "lab-2" / "mirror"
    total = sum(p.stat().st_size for p in v2.rglob("*") if p.is_file()) + sum(
        p.stat().st_size for p in mirror.rglob("*") if p.is_file() and not p.is_symlink())
    reused = sum(p.stat().st_size for p in shared if p != bad)
    assert reused > 1 << 30 and doc["filesFromServed"] == len(shared), doc
    # the half already there, the whole blob and the served ones were not sent again
    assert doc["bytesCopied"] == total - len(half) - small.stat().st_size - reused, doc
    check = ssh(demo, "repo1", "cd /srv/airlock/releases/lab-2/bundle && sha256sum -c --quiet "
                               "SHA256SUMS && test ! -e /srv/airlock/incoming/lab-2")
    assert check.returncode == 0, check.stdout + check.stderr
    assert served(demo)["version"] == 2
    assert "releases/lab-1" in ssh(demo, "repo1", "ls -d /srv/airlock/releases/*").stdout


def test_older_bundle_refused_after_the_upgrade(demo, tmp_path: Path) -> None:
    if served(demo)["version"] != 2:
        pytest.fail("needs the upgrade of the previous test")
    before = repo_tree(demo)
    rc, doc, out = do_import(demo, demo["bundle"])
    assert rc == 5 and "rollback" in out, out[-2000:]
    # and the repo host refuses it too, for a controller whose trust state never saw v2
    rc, doc, out = do_import(demo, demo["bundle"], "--site", str(tmp_path / "other-site"))
    assert rc == 9 and "downgrade refused" in doc["error"], out[-2000:]
    assert repo_tree(demo) == before


def test_pki_role_refuses_a_bad_ca(tmp_path: Path) -> None:
    """An imported CA that is not a CA, is expired, or whose key does not match: the role
    stops with a message that says which, before anything is trusted anywhere."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def cert(ca: bool, days: int, key: ec.EllipticCurvePrivateKey) -> bytes:
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank CA")])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=400))
             .not_valid_after(now + datetime.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    cases = {"leaf": (cert(False, 100, key), "is not a CA certificate"),
             "expired": (cert(True, -1, key), "expired on"),
             "mismatch": (cert(True, 100, other), "is not the private key of"),
             "good": (cert(True, 100, key), None)}
    play = tmp_path / "ca.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.builtin.include_role: {name: pki, tasks_from: ca}\n")
    for case, (pem, message) in cases.items():
        (tmp_path / f"{case}.crt").write_bytes(pem)
        ca_dir = tmp_path / f"site-{case}"
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), str(play),
             "-e", f"pki_ca_dir={ca_dir}",
             "-e", f"pki_ca_import_cert={tmp_path / f'{case}.crt'}",
             "-e", f"pki_ca_import_key={tmp_path / 'ca.key'}"],
            capture_output=True, text=True, cwd=REPO,
            env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                 "ANSIBLE_ROLES_PATH": str(REPO / "roles")})
        if message is None:
            assert proc.returncode == 0, proc.stdout[-2000:]
            assert (ca_dir / "ca.crt").read_bytes() == pem
            assert (ca_dir / "ca.key").stat().st_mode & 0o777 == 0o600
            assert (ca_dir.stat().st_mode & 0o777) == 0o700
        else:
            assert proc.returncode != 0 and message in proc.stdout, (case, proc.stdout[-2000:])
