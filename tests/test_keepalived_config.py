"""The keepalived role's configuration, rendered by Ansible from the role's own template
and checked by Debian's keepalived (`keepalived -t`, unpacked from its package): what the
gateway pair's hosts would run. The VIP's move itself is the lab's (test_ha.py)."""

from __future__ import annotations

import subprocess
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
    here.write_text(conf.read_text()
                    .replace("script_user keepalived_script", "script_user root")
                    .replace("script /usr/local/sbin/airlock-check-nginx", "script /bin/true"))
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
