"""The source zone's roles that the lab cannot run (GitLab: no package or image of it is
reachable here) and the nexus push, checked as far as this machine honestly can: gitlab.rb
rendered by Ansible from the role's defaults and parsed by Ruby (GitLab checks
it with its own Ruby before reconfigure), the role's input checks, a whole --check run
(nothing written), the filters, and the nexus module against a stand-in that follows
Nexus's REST contract (tests/nexus_contract.py). The lab's Git server runs in
tests/test_source_zone.py."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import localplay
from conftest import need

REPO = Path(__file__).resolve().parents[1]
STAND_IN = b"not really a package\n"  # --check asks the repo host for it, never installs it
STAND_IN_SHA = hashlib.sha256(STAND_IN).hexdigest()
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
GOOD = {"gitlab_version": "18.5.1-ce.0", "gitlab_package_sha256": "a" * 64,
        "gitlab_package_url": "https://127.0.0.1:9/files/gitlab-ce/gitlab-ce_18.5.1-ce.0_amd64.deb",
        "gitlab_server_name": "gitlab.bank.test"}


def _load(path: str, name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _play(tmp_path: Path, play: str, extra: dict, *args: str) -> subprocess.CompletedProcess:
    return localplay.play(tmp_path, play, extra, *args)


def _render(tmp_path: Path, **overrides: object) -> str:
    site = tmp_path / "site"
    (site / "secrets/keycloak").mkdir(parents=True, exist_ok=True)
    (site / "secrets/keycloak/gitlab.client-secret").write_text("s3cret-from-the-site\n")
    out = tmp_path / "gitlab.rb"
    proc = _play(tmp_path, f"""
        - hosts: localhost
          gather_facts: false
          vars_files: [{REPO / 'roles/gitlab/defaults/main.yml'}]
          tasks:
            - ansible.builtin.set_fact:
                _gitlab_oidc_secret: "{{{{ lookup('ansible.builtin.file',
                  gitlab_oidc_client_secret_file) if gitlab_oidc_enabled else '' }}}}"
            - ansible.builtin.template:
                src: {REPO / 'roles/gitlab/templates/gitlab.rb.j2'}
                dest: {out}
                mode: "0600"
    """, {**GOOD, "airlock_site_dir": str(site), **overrides})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return out.read_text()


def _ruby_ok(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([need("ruby"), "-c", str(path)], capture_output=True, text=True)


def test_gitlab_rb_with_sso_parses_and_calls_nowhere(tmp_path: Path) -> None:
    text = _render(tmp_path, airlock_controls={"sso": True},
                   gitlab_oidc_issuer="https://gw1:8443/realms/airlock")
    assert _ruby_ok(tmp_path / "gitlab.rb").returncode == 0
    assert 'external_url "https://gitlab.bank.test"' in text
    for line in ("letsencrypt['enable'] = false", "gitlab_rails['usage_ping_enabled'] = false",
                 "'GITLAB_PRODUCT_USAGE_DATA_ENABLED' => 'false'", "registry['enable'] = false",
                 "gitlab_rails['omniauth_auto_sign_in_with_provider'] = 'openid_connect'",
                 'issuer: "https://gw1:8443/realms/airlock"', 'secret: "s3cret-from-the-site"',
                 "gitlab_rails['backup_keep_time'] = 604800"):
        assert line in text, line
    assert oct((tmp_path / "gitlab.rb").stat().st_mode & 0o777) == "0o600"


def test_gitlab_rb_without_sso_and_with_the_registry(tmp_path: Path) -> None:
    text = _render(tmp_path, airlock_controls={"sso": False}, gitlab_registry_enabled=True,
                   gitlab_registry_external_url="https://gitlab.bank.test:5050")
    assert _ruby_ok(tmp_path / "gitlab.rb").returncode == 0
    assert "gitlab_rails['omniauth_enabled'] = false" in text
    assert 'registry_external_url "https://gitlab.bank.test:5050"' in text
    assert "s3cret" not in text


def test_a_broken_gitlab_rb_fails_ruby_check(tmp_path: Path) -> None:
    """The validate: step can fail: a label with a quote that the template did not escape
    would break Ruby; the template escapes it (to_json), and a hand-broken file fails."""
    text = _render(tmp_path, airlock_controls={"sso": True}, gitlab_oidc_label='Bank "SSO"',
                   gitlab_oidc_issuer="https://gw1:8443/realms/airlock")
    assert _ruby_ok(tmp_path / "gitlab.rb").returncode == 0
    assert 'label: "Bank \\"SSO\\""' in text
    broken = tmp_path / "broken.rb"
    broken.write_text(text.replace("pkce: true,", "pkce: true,,"))
    assert _ruby_ok(broken).returncode != 0


ROLE_PLAY = """
    - hosts: localhost
      gather_facts: false
      roles:
        - gitlab
"""


@pytest.mark.parametrize("override, words", [
    ({"gitlab_version": "latest"}, "gitlab_version must be"),
    ({"gitlab_package_sha256": "abc"}, "gitlab_package_sha256"),
    ({"gitlab_package_url": "http://repo1/files/x.deb"}, "https URLs"),
    ({"airlock_controls": {"sso": True}, "gitlab_oidc_issuer": ""}, "gitlab_oidc_issuer"),
])
def test_the_gitlab_role_refuses_bad_input_before_anything(tmp_path: Path, override: dict,
                                                          words: str) -> None:
    proc = _play(tmp_path, ROLE_PLAY, {**GOOD, "airlock_site_dir": str(tmp_path / "site"),
                                       **override})
    assert proc.returncode != 0
    assert words in proc.stdout and "Nothing was changed" in proc.stdout, proc.stdout[-2000:]
    assert not (tmp_path / "site").exists()  # not even a secret was made


@pytest.fixture
def package_server(tmp_path: Path):
    """The repo host's files/ over HTTPS on loopback (a throwaway CA), with a stand-in for
    the package: --check asks for it, never installs it."""
    import http.server
    import ssl
    import threading
    from functools import partial

    from conftest import ca_and_cert

    for rel in ("gitlab-ce/gitlab-ce_18.5.1-ce.0_amd64.deb",
                "gitlab-runner/gitlab-runner_18.5.0_amd64.deb",
                "gitlab-runner/gitlab-runner-helper-images_18.5.0_all.deb"):
        (tmp_path / "www/files" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "www/files" / rel).write_bytes(STAND_IN)
    ca, cert, key = ca_and_cert(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca
    finally:
        server.shutdown()
        server.server_close()


def _check_run(tmp_path: Path, ca: Path, play: str, extra: dict) -> subprocess.CompletedProcess:
    os.environ["SSL_CERT_FILE"] = str(ca)  # the site CA, as the pki role installs it
    try:
        return _play(tmp_path, play, extra, "--check")
    finally:
        del os.environ["SSL_CERT_FILE"]


def test_the_gitlab_role_in_check_mode_writes_nothing(tmp_path: Path, package_server) -> None:
    """--check on a host without GitLab: the package is looked up on the repo host and
    would be fetched and installed; nothing after it is attempted, nothing is written."""
    if Path("/etc/gitlab").exists() or Path("/opt/gitlab").exists():
        pytest.fail("this machine has GitLab: the check-mode test needs one without it")
    url, ca = package_server
    deb = "gitlab-ce_18.5.1-ce.0_amd64.deb"
    before = set(Path("/var/cache").iterdir())
    proc = _check_run(tmp_path, ca, ROLE_PLAY, {
        **GOOD, "airlock_site_dir": str(tmp_path / "site"),
        "gitlab_package_url": f"{url}/files/gitlab-ce/{deb}",
        "gitlab_package_sha256": STAND_IN_SHA})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "changed=" in proc.stdout and "failed=0" in proc.stdout
    assert "Check that the repo host serves the package" in proc.stdout
    assert "Install GitLab" in proc.stdout
    assert set(Path("/var/cache").iterdir()) == before
    assert not Path("/var/cache/airlock/gitlab-ce_18.5.1-ce.0_amd64.deb").exists()
    assert not Path("/etc/gitlab").exists()


def test_settings_are_changed_only_where_they_differ() -> None:
    diff = _load("roles/gitlab/filter_plugins/gitlab.py", "gitlab_filters").gitlab_settings_diff
    current = {"version_check_enabled": True, "gravatar_enabled": False,
               "import_sources": ["github", "git"], "signup_enabled": False}
    wanted = {"version_check_enabled": False, "gravatar_enabled": False, "import_sources": [],
              "signup_enabled": False, "a_setting_this_gitlab_lacks": False}
    assert diff(wanted, current) == {"version_check_enabled": False, "import_sources": []}
    assert diff({"import_sources": ["git", "github"]}, current) == {}


def test_git_server_credentials_keep_matching_lines_and_replace_others() -> None:
    htpasswd = _load("roles/git_server/filter_plugins/airlock_git.py",
                     "git_filters").airlock_git_htpasswd
    import bcrypt

    first = htpasswd({"alice": "a" * 32, "bob": "b" * 32})
    lines = dict(line.split(":", 1) for line in first.splitlines())
    assert bcrypt.checkpw(b"a" * 32, lines["alice"].encode())
    assert htpasswd({"alice": "a" * 32, "bob": "b" * 32}, first) == first  # a re-run: same
    changed = htpasswd({"alice": "a" * 32, "bob": "c" * 32}, first)
    new = dict(line.split(":", 1) for line in changed.splitlines())
    assert new["alice"] == lines["alice"] and new["bob"] != lines["bob"]
    assert bcrypt.checkpw(b"c" * 32, new["bob"].encode())
    assert "carol" not in htpasswd({"alice": "a" * 32}, first + "carol:$2b$12$x\n")


def test_the_roles_ship_what_their_readme_promises() -> None:
    for role in ("gitlab", "git_server"):
        specs = (REPO / f"roles/{role}/meta/argument_specs.yml").read_text()
        defaults = (REPO / f"roles/{role}/defaults/main.yml").read_text()
        for line in defaults.splitlines():
            if line and not line.startswith(("#", " ", "-")) and ":" in line:
                assert line.split(":")[0] in specs, f"{role}: {line.split(':')[0]}"


# --------------------------------------------------------------------------- ci_runner

RUNNER_PLAY = """
    - hosts: localhost
      gather_facts: false
      roles:
        - ci_runner
"""
RUNNER = {"ci_runner_version": "18.5.0", "ci_runner_package_sha256": STAND_IN_SHA,
          "ci_runner_helper_package_sha256": STAND_IN_SHA,
          "ci_runner_gitlab_url": "https://gitlab.bank.test",
          "ci_runner_registry": "repo1:5000", "airlock_repo_url": "https://repo1"}


def test_runner_config_toml_pins_images_to_the_repo_host(tmp_path: Path) -> None:
    import tomllib

    site = tmp_path / "site"
    (site / "go-sumdb").mkdir(parents=True)
    (site / "go-sumdb/verifier").write_text("sumdb.airlock.site+01234567+AAAA\n")
    out = tmp_path / "config.toml"
    proc = _play(tmp_path, f"""
        - hosts: localhost
          gather_facts: false
          vars_files: [{REPO / 'roles/ci_runner/defaults/main.yml'}]
          vars: {{_ci_runner_token: glrt-test-token}}
          tasks:
            - ansible.builtin.template:
                src: {REPO / 'roles/ci_runner/templates/config.toml.j2'}
                dest: {out}
                mode: "0600"
    """, {**RUNNER, "airlock_site_dir": str(site)})
    assert proc.returncode == 0, proc.stdout[-3000:]
    conf = tomllib.loads(out.read_text())
    runner = conf["runners"][0]
    assert runner["url"] == "https://gitlab.bank.test" and runner["token"] == "glrt-test-token"
    assert runner["executor"] == "docker" and "session_server" not in conf
    docker = runner["docker"]
    assert docker["allowed_images"] == ["repo1:5000/**"] == docker["allowed_services"]
    assert docker["privileged"] is False and docker["pull_policy"] == ["if-not-present"]
    assert docker["helper_image"] == "repo1:5000/gitlab-runner-helper:x86_64-v18.5.0"
    env = dict(e.split("=", 1) for e in runner["environment"])
    assert env["GOPROXY"] == "https://repo1/go/"
    assert env["GOSUMDB"] == "sumdb.airlock.site+01234567+AAAA"
    assert env["PIP_INDEX_URL"] == "https://repo1/pypi/simple/"
    assert env["MAVEN_ARGS"] == "-gs /etc/airlock/build/maven-settings.xml"


@pytest.mark.parametrize("override, words", [
    ({"ci_runner_version": "latest"}, "ci_runner_version must be"),
    ({"ci_runner_gitlab_url": "http://gitlab"}, "https"),
    ({"ci_runner_allowed_images": []}, "ci_runner_allowed_images"),
])
def test_the_runner_role_refuses_bad_input_before_anything(tmp_path: Path, override: dict,
                                                          words: str) -> None:
    proc = _play(tmp_path, RUNNER_PLAY, {**RUNNER, "airlock_site_dir": str(tmp_path / "site"),
                                         **override})
    assert proc.returncode != 0
    assert words in proc.stdout and "Nothing was" in proc.stdout, proc.stdout[-2000:]


def test_the_runner_role_in_check_mode_writes_nothing(tmp_path: Path, package_server) -> None:
    if Path("/etc/gitlab-runner").exists():
        pytest.fail("this machine has a GitLab Runner: the check-mode test needs one without")
    url, ca = package_server
    site = tmp_path / "site"
    before = set(Path("/var/cache").iterdir())
    proc = _check_run(tmp_path, ca, RUNNER_PLAY, {
        **RUNNER, "airlock_site_dir": str(site), "airlock_repo_url": url,
        "ci_runner_site_ca": str(ca)})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "failed=0" in proc.stdout
    assert set(Path("/var/cache").iterdir()) == before
    assert not Path("/etc/gitlab-runner").exists() and not Path("/etc/airlock/build").exists()
    assert not (site / "secrets").exists()  # no runner was created in --check


# --------------------------------------------------------------------------- nexus

KEYPAIR = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n(test)\n-----END PGP PRIVATE KEY BLOCK-----\n"


def _tgz(name: str, version: str) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = json.dumps({"name": name, "version": version}).encode()
        info = tarfile.TarInfo("package/package.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _mirror(root: Path) -> Path:
    """A served release's mirror/ as `airlock mirror export` writes it (small files)."""
    m = root / "mirror"
    lib = m / "maven/org/example/lib/1.0"
    lib.mkdir(parents=True)
    for f, data in (("lib-1.0.jar", b"jar"), ("lib-1.0.pom", b"<project/>"),
                    ("lib-1.0-sources.jar", b"sources")):
        (lib / f).write_bytes(data)
        (lib / (f + ".sha1")).write_text(hashlib.sha1(data, usedforsecurity=False).hexdigest())
    (m / "maven/org/example/lib/maven-metadata.xml").write_text("<metadata/>")
    parent = m / "maven/org/example/parent/3"
    parent.mkdir(parents=True)
    (parent / "parent-3.pom").write_bytes(b"<project>parent</project>")
    (m / "pypi/files").mkdir(parents=True)
    (m / "pypi/files/example_pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (m / "npm/is-odd/-").mkdir(parents=True)
    (m / "npm/is-odd/-/is-odd-3.0.1.tgz").write_bytes(_tgz("is-odd", "3.0.1"))
    (m / "npm/@scope/thing/-").mkdir(parents=True)
    (m / "npm/@scope/thing/-/thing-1.2.0.tgz").write_bytes(_tgz("@scope/thing", "1.2.0"))
    (m / "npm/is-odd/index.json").write_text("{}")
    (m / "apt/pool/main/h").mkdir(parents=True)
    (m / "apt/pool/main/h/hello_2.10-3_amd64.deb").write_bytes(b"deb")
    return m


@pytest.fixture
def nexus(tmp_path: Path):
    import ssl

    from nexus_contract import State, serve

    from conftest import ca_and_cert

    d = tmp_path / "tls"
    d.mkdir()
    ca, cert, key = ca_and_cert(d)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    state = State("airlock", "nexus-pass")
    server, url = serve(state, ctx)
    try:
        yield state, url, ca
    finally:
        server.shutdown()
        server.server_close()


def _push(tmp_path: Path, base: str, ca: Path, *args: str, **params: object):
    mirror = tmp_path / "release" / "mirror"
    if not mirror.exists():
        _mirror(tmp_path / "release")
    p = {"url": base, "username": "airlock", "password": "nexus-pass", "ca_path": str(ca),
         "mirror": str(mirror), "apt_keypair": KEYPAIR,
         "repositories": {"maven": "m2", "pypi": "py", "npm": "js", "apt": "deb"}, **params}
    (tmp_path / "params.json").write_text(json.dumps(p))
    proc = _play(tmp_path, f"""
        - hosts: localhost
          gather_facts: false
          tasks:
            - airlock_nexus: "{{{{ lookup('ansible.builtin.file', '{tmp_path / 'params.json'}')
                | from_json }}}}"
              register: pushed
            - ansible.builtin.copy:
                content: "{{{{ pushed | to_json }}}}"
                dest: {tmp_path / 'result.json'}
                mode: "0600"
              check_mode: false
    """, {}, *args)
    result = json.loads((tmp_path / "result.json").read_text()) if proc.returncode == 0 else {}
    return proc, result


@pytest.fixture(autouse=False)
def library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANSIBLE_LIBRARY", str(REPO / "roles/nexus/library"))


def test_nexus_push_makes_repositories_uploads_everything_then_nothing(
        tmp_path: Path, nexus, library) -> None:
    state, url, ca = nexus
    proc, first = _push(tmp_path, url, ca)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert first["changed"] and sorted(first["created"]) == ["deb", "js", "m2", "py"]
    assert first["formats"]["maven"] == {"uploaded": 4, "held": 0}
    assert first["formats"]["npm"] == {"uploaded": 2, "held": 0}
    held = state.assets
    assert set(held["m2"]) == {"org/example/lib/1.0/lib-1.0.jar",
                               "org/example/lib/1.0/lib-1.0.pom",
                               "org/example/lib/1.0/lib-1.0-sources.jar",
                               "org/example/parent/3/parent-3.pom"}
    assert held["m2"]["org/example/lib/1.0/lib-1.0-sources.jar"] == b"sources"  # raw bytes
    assert set(held["js"]) == {"is-odd/-/is-odd-3.0.1.tgz", "@scope/thing/-/thing-1.2.0.tgz"}
    assert set(held["py"]) == {"packages/example-pkg/1.0/example_pkg-1.0-py3-none-any.whl"}
    assert set(held["deb"]) == {"pool/h/hello/hello_2.10-3_amd64.deb"}
    assert state.repos["m2"]["maven"] == {"versionPolicy": "RELEASE", "layoutPolicy": "STRICT"}
    uploads = sum(1 for c in state.calls if c == ("POST", "/service/rest/v1/components"))
    assert uploads == 2 + 1 + 2 + 1  # one request per component
    state.calls.clear()
    proc, again = _push(tmp_path, url, ca)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert not again["changed"] and again["formats"]["maven"] == {"uploaded": 0, "held": 4}
    assert not [c for c in state.calls if c[0] in ("POST", "PUT")]


def test_nexus_push_in_check_mode_changes_nothing(tmp_path: Path, nexus, library) -> None:
    state, url, ca = nexus
    proc, result = _push(tmp_path, url, ca, "--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["changed"] and sorted(result["created"]) == ["deb", "js", "m2", "py"]
    assert result["formats"]["pypi"] == {"uploaded": 1, "held": 0}
    assert state.repos == {} and not [c for c in state.calls if c[0] in ("POST", "PUT")]


def test_nexus_settings_drift_is_put_back_whole(tmp_path: Path, nexus, library) -> None:
    state, url, ca = nexus
    assert _push(tmp_path, url, ca)[0].returncode == 0
    state.repos["deb"]["storage"]["writePolicy"] = "allow"  # someone changed it by hand
    state.repos["deb"]["aptSigning"] = {"keypair": "", "passphrase": None}
    proc, result = _push(tmp_path, url, ca)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["updated"] == ["deb"]
    assert state.repos["deb"]["storage"]["writePolicy"] == "ALLOW_ONCE"
    assert state.repos["deb"]["aptSigning"]["keypair"] == KEYPAIR  # resent: a PUT replaces


@pytest.mark.parametrize("change, words", [
    ({"url": "http://nexus.bank.test"}, "url must be https"),
    ({"apt_keypair": ""}, "apt_keypair"),
    ({"repositories": {"cargo": "rust"}}, "unknown format"),
    ({"password": "wrong"}, "HTTP 401"),
])
def test_nexus_push_refuses_bad_input_and_changes_nothing(tmp_path: Path, nexus, library,
                                                         change: dict, words: str) -> None:
    state, url, ca = nexus
    proc, _ = _push(tmp_path, url, ca, **change)
    assert proc.returncode != 0 and words in proc.stdout, proc.stdout[-2000:]
    assert "nexus-pass" not in proc.stdout  # never logged
    assert state.repos == {}


def test_a_read_only_nexus_is_refused_before_anything(tmp_path: Path, nexus, library) -> None:
    state, url, ca = nexus
    state.writable = False
    proc, _ = _push(tmp_path, url, ca)
    assert proc.returncode != 0 and "HTTP 503" in proc.stdout
    assert [c for c in state.calls if c[0] != "GET"] == [] and state.repos == {}


def test_a_workbenchs_git_credentials_are_what_gits_own_store_reads_and_writes(
        tmp_path: Path) -> None:
    """The code_server role's .git-credentials, rendered by Ansible from the role's own task:
    git's credential store finds the password in it, and storing it again (as every push
    does) leaves the file byte for byte as the role wrote it (else the next deploy would
    change it)."""
    import yaml

    tasks = yaml.safe_load((REPO / "roles/code_server/tasks/homes.yml").read_text())
    task = next(t for t in tasks if t["name"].startswith("Give each user their Git credent"))
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "alice.password").write_text("S3cretPassw0rdOfThirtyTwoLetters\n")
    creds = tmp_path / "home" / ".git-credentials"
    creds.parent.mkdir()
    proc = _play(tmp_path, """
        - hosts: localhost
          gather_facts: false
          tasks:
            - ansible.builtin.copy:
                content: "{{ _content }}"
                dest: "{{ _dest }}"
                mode: "0600"
              vars:
                item: {name: alice}
        """, {"_content": task["ansible.builtin.copy"]["content"], "_dest": str(creds),
              "code_server_git_url": "https://git.bank.test",
              "code_server_git_secrets_dir": str(secrets_dir)})
    assert proc.returncode == 0, proc.stdout[-2000:]
    written = creds.read_bytes()
    assert written == b"https://alice:S3cretPassw0rdOfThirtyTwoLetters@git.bank.test\n"
    git = ["git", "-c", f"credential.helper=store --file={creds}"]
    ask = "protocol=https\nhost=git.bank.test\n\n"
    fill = subprocess.run([*git, "credential", "fill"], input=ask, capture_output=True,
                          text=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    assert fill.returncode == 0 and "password=S3cretPassw0rdOfThirtyTwoLetters" in fill.stdout
    subprocess.run([*git, "credential", "approve"], input=fill.stdout, text=True, check=True)
    assert creds.read_bytes() == written
