"""The keepalived role's configuration, rendered by Ansible from the role's own template
and checked by Debian's keepalived (`keepalived -t`, unpacked from its package): what the
gateway pair's hosts would run, and production's LLM gateway pair (rendered with ai.yml's
own settings and the project's group_vars). The VIP's move itself is the lab's
(test_ha.py, the gateway pair)."""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import localplay
from debtools import env as deb_env
from debtools import root as deb_root

ROLE = localplay.REPO / "roles" / "keepalived"
PACKAGES = ("keepalived", "libnl-3-200", "libnl-genl-3-200", "libsnmp40", "libsensors5",
            "libpci3", "libwrap0")


@pytest.fixture(scope="module")
def keepalived() -> tuple[Path, dict]:
    folder = deb_root(*PACKAGES)
    return folder / "usr" / "sbin" / "keepalived", deb_env(folder)


def _interface() -> str:
    """A real interface of this machine (keepalived -t looks the configured one up)."""
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = [x.split(": ")[1].split("@")[0] for x in out.splitlines()]
    return next(n for n in names if n != "lo")


def _render(tmp_path: Path, password: str = "", **overrides: object) -> Path:
    out = tmp_path / "keepalived.conf"
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    if password:
        (secrets / "vrrp.password").write_text(password + "\n")
    extra = {"keepalived_vip": "10.0.2.9/24", "keepalived_src_ip": "10.0.2.10",
             "keepalived_peers": ["10.0.2.11"], "keepalived_priority": 150,
             "keepalived_secrets_dir": str(secrets), **overrides}
    return localplay.render(tmp_path, "keepalived", "keepalived.conf.j2", out, extra, f"""\
                _keepalived_interface: {_interface()}
                _keepalived_pass: >-
                  {{{{ lookup('ansible.builtin.password', keepalived_secrets_dir
                  ~ '/vrrp.password', length=8, chars=['ascii_letters', 'digits']) }}}}
""")


def _check(keepalived: tuple[Path, dict], conf: Path) -> subprocess.CompletedProcess:
    """keepalived -t on CONF as this machine has it: the check script's user and file are
    the role's own on a gateway (made before the configuration is written); here root
    and /bin/true stand in for them, everything else is checked as written."""
    binary, env = keepalived
    here = conf.with_name("here.conf")
    here.write_text(re.sub(r"script /usr/local/sbin/airlock-check-\S+", "script /bin/true",
                           conf.read_text().replace("script_user keepalived_script",
                                                    "script_user root")))
    return subprocess.run([str(binary), "-t", "-f", str(here)], capture_output=True,
                          text=True, env=env, timeout=60)


def test_the_pairs_configuration_passes_keepalived_t(tmp_path: Path, keepalived) -> None:
    conf = _render(tmp_path)
    r = _check(keepalived, conf)
    assert r.returncode == 0, r.stdout + r.stderr
    text = conf.read_text()
    assert "unicast_src_ip 10.0.2.10" in text and "10.0.2.11" in text
    assert "auth_type PASS" in text and "10.0.2.9/24 dev" in text and "nopreempt" in text
    # the password was made once, 8 characters (VRRPv2's limit), and is kept
    made = (tmp_path / "secrets" / "vrrp.password").read_text().strip()
    assert len(made) == 8 and f"auth_pass {made}" in text
    assert oct((tmp_path / "secrets" / "vrrp.password").stat().st_mode & 0o777) == "0o600"


def test_a_password_keepalived_would_cut_is_refused(tmp_path: Path, keepalived) -> None:
    """A site's own password longer than VRRPv2 takes: keepalived -t fails (the role's
    validate: nothing is written)."""
    conf = _render(tmp_path, password="longer-than-eight")
    r = _check(keepalived, conf)
    assert r.returncode != 0 and "Truncating auth_pass" in r.stdout + r.stderr


@pytest.mark.parametrize("override, words", [
    ({"keepalived_vip": "10.0.2.9"}, "keepalived_vip (an address/prefix"),
    ({"keepalived_peers": []}, "keepalived_peers"),
    ({"keepalived_vip": "10.0.2.11/24"}, "that no host has"),
    ({"keepalived_priority": 255}, "keepalived_priority 1-254"),
])
def test_bad_vip_input_is_refused_before_anything(tmp_path: Path, override: dict,
                                                  words: str) -> None:
    extra = {"keepalived_vip": "10.0.2.9/24", "keepalived_src_ip": "10.0.2.10",
             "keepalived_peers": ["10.0.2.11"], "keepalived_secrets_dir": str(tmp_path),
             **override}
    proc = localplay.play(tmp_path, f"""
        - hosts: localhost
          gather_facts: false
          vars_files: [{ROLE / 'defaults/main.yml'}]
          tasks:
            - ansible.builtin.include_tasks: {ROLE / 'tasks/main.yml'}
        """, extra)
    assert proc.returncode != 0 and words in proc.stdout, proc.stdout[-2000:]
    assert "Install keepalived" not in proc.stdout  # stopped at the check


def _keepalived_vars(playbook: str) -> dict:
    """The settings PLAYBOOK gives the keepalived role (ai.yml: the LLM gateways; ide.yml:
    the gateways)."""
    import yaml

    plays = yaml.safe_load((localplay.REPO / "playbooks" / playbook).read_text())
    for play in plays:
        for task in play.get("post_tasks", []) + play.get("tasks", []):
            if (task.get("ansible.builtin.include_role") or {}).get("name") == "keepalived":
                return task["vars"]
    raise AssertionError(f"playbooks/{playbook} gives no host keepalived")


def _render_pair(tmp_path: Path, playbook: str = "ai.yml", group: str = "llm_gateway",
                 **role_defaults: object) -> Path:
    """keepalived.conf and the check for production's pair in GROUP, as PLAYBOOK asks."""
    import yaml

    out = tmp_path / "out"
    out.mkdir()
    task_vars = yaml.safe_dump({**_keepalived_vars(playbook),
                                "_keepalived_interface": _interface(),
                                "_keepalived_pass": "{{ lookup('ansible.builtin.password', "
                                "keepalived_secrets_dir ~ '/vrrp.password', length=8) }}"})
    task_vars = "\n".join("        " + line for line in task_vars.splitlines())
    proc = localplay.play_phase(tmp_path, f"""
- hosts: {group}
  gather_facts: false
  vars_files: [{ROLE / 'defaults/main.yml'}]
  tasks:
    - ansible.builtin.template:
        src: "{ROLE / 'templates'}/{{{{ item }}}}.j2"
        dest: "{out}/{{{{ inventory_hostname }}}}.{{{{ item }}}}"
        mode: "0600"
      loop: [keepalived.conf, check-nginx]
      vars:
{task_vars}
    - ansible.builtin.copy:
        dest: "{out}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
        content: "{{{{ {{'vip': litellm_vip | default(''), 'url': airlock_llm_url}} | to_json }}}}"
""", "production", {"airlock_site_dir": str(tmp_path / "site"), **role_defaults})
    assert proc.returncode == 0, proc.stdout[-3000:]
    return out


def test_the_llm_gateway_pair_has_its_own_vip_and_a_strict_check(tmp_path: Path,
                                                                    keepalived) -> None:
    out = _render_pair(tmp_path)
    one, two = ((out / f"{h}.keepalived.conf").read_text() for h in ("llm1", "llm2"))
    for conf in ("llm1", "llm2"):
        r = _check(keepalived, out / f"{conf}.keepalived.conf")
        assert r.returncode == 0, r.stdout + r.stderr
    # its own instance, router id and check, beside (never instead of) the gateway pair's
    assert "vrrp_instance airlock_llm_gateway {" in one and "virtual_router_id 52" in one
    assert "script /usr/local/sbin/airlock-check-litellm" in one and "airlock_nginx" not in one
    assert "10.0.4.9/24 dev" in one and "unicast_src_ip 10.0.4.24" in one
    assert "unicast_src_ip 10.0.4.25" in two and "priority 150" in one and "priority 140" in two
    # a front answering an error for a dead LiteLLM gives the VIP up (only a 2xx is up)
    check = (out / "llm1.check-nginx").read_text()
    assert "health/liveliness" in check and "it answered, but not healthy" in check
    # workbenches reach LiteLLM at the VIP; each front listens on it too
    for host in ("llm1", "llm2"):
        assert json.loads((out / f"{host}.json").read_text()) == {
            "vip": "10.0.4.9", "url": "http://10.0.4.9:4000/v1"}


class _Status(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_llm_check_fails_on_an_error_status_the_gateways_does_not(tmp_path: Path) -> None:
    """The check scripts run for real against a local server answering 200, then 502 (a
    front whose LiteLLM is down), then nothing."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/health/liveliness"
    scripts = {}
    for strict in (True, False):
        out = tmp_path / f"check-{strict}"
        localplay.render(tmp_path, "keepalived", "check-nginx.j2", out, {
            "keepalived_check_url": url, "keepalived_check_any_answer": not strict})
        scripts[strict] = out

    def run(strict: bool) -> int:
        return subprocess.run([sys.executable, str(scripts[strict])], timeout=30).returncode

    try:
        server.status = 200  # type: ignore[attr-defined]
        assert (run(True), run(False)) == (0, 0)
        server.status = 502  # type: ignore[attr-defined]
        assert (run(True), run(False)) == (1, 0)
    finally:
        server.shutdown()
        server.server_close()
    assert (run(True), run(False)) == (1, 1)  # nothing answers


def test_the_gateway_pair_takes_its_peers_and_priorities_from_the_group(tmp_path: Path,
                                                                       keepalived) -> None:
    """ide.yml names the members only: each gateway speaks from its own zone address to
    the other's, the inventory's first is preferred."""
    out = _render_pair(tmp_path, "ide.yml", "gateway", nginx_gateway_https_port=443)
    one, two = ((out / f"{h}.keepalived.conf").read_text() for h in ("gw1", "gw2"))
    for h in ("gw1", "gw2"):
        r = _check(keepalived, out / f"{h}.keepalived.conf")
        assert r.returncode == 0, r.stdout + r.stderr
    assert "vrrp_instance airlock_gateway {" in one and "virtual_router_id 51" in one
    assert "priority 150" in one and "priority 140" in two
    assert "unicast_src_ip 10.0.2.10" in one and "unicast_src_ip 10.0.2.11" in two
    assert one.split("unicast_peer")[1].split("}")[0].split() == ["{", "10.0.2.11"]
    assert two.split("unicast_peer")[1].split("}")[0].split() == ["{", "10.0.2.10"]
    assert "10.0.2.9/24 dev" in one
