"""Production's pairs (seed 000 §6) as the roles make them of the phase inventories,
rendered by the real ansible-playbook with the project's group_vars. Keycloak
active-active: the two members form one cluster on their zone addresses and share the
first's database over TLS; the pilot's single server is standalone, its database on
loopback. The lab runs one Keycloak (memory), so the pair is proven here, not started.
The LLM gateway pair's VIP: tests/test_keepalived_config.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from localplay import REPO, play_phase

IMAGE = "repo.airlock.site:5000/keycloak@sha256:" + "a" * 64

PLAY = """
- hosts: keycloak
  gather_facts: false
  any_errors_fatal: true  # as site.yml's checks: one member's bad input stops them all
  tasks:
    - name: The role's own checks, and its defaults and vars for what follows
      ansible.builtin.include_role:
        name: keycloak
        tasks_from: validate.yml
        public: true
    - name: keycloak.conf as the role writes it, checked as the role checks it
      ansible.builtin.template:
        src: {repo}/roles/keycloak/templates/keycloak.conf.j2
        dest: "{out}/{{{{ inventory_hostname }}}}.conf"
        mode: "0600"
        validate: python3 {repo}/roles/keycloak/files/keycloak_conf_check.py %s
    - name: What decides the member's part
      ansible.builtin.copy:
        dest: "{out}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
        content: >-
          {{{{ {{'first': _keycloak_first, 'cluster': _keycloak_cluster,
               'clients': _keycloak_db_remote_clients, 'backup': _keycloak_backup_source,
               'names': airlock_keycloak_cert_names}} | to_json }}}}

- hosts: gateway[0]
  gather_facts: false
  tasks:
    - name: The gateway's view of Keycloak
      ansible.builtin.copy:
        dest: "{out}/gateway.json"
        mode: "0600"
        content: >-
          {{{{ {{'servers': nginx_gateway_keycloak_servers,
               'tls_name': nginx_gateway_keycloak_tls_name}} | to_json }}}}
"""


def _render(tmp_path: Path, phase: str, extra: dict | None = None):
    out = tmp_path / "out"
    out.mkdir()
    proc = play_phase(tmp_path, PLAY.format(repo=REPO, out=out), phase, {
        "keycloak_image": IMAGE, "airlock_site_dir": str(tmp_path / "site"), **(extra or {})})
    return proc, out


def _conf(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#"))


def test_production_pair_is_one_cluster_sharing_the_first_members_database(tmp_path) -> None:
    proc, out = _render(tmp_path, "production")
    assert proc.returncode == 0, proc.stdout[-3000:]
    kc1, kc2 = _conf(out / "kc1.conf"), _conf(out / "kc2.conf")
    # each member's cluster traffic on its own zone address (not the management one)
    assert kc1["cache-embedded-network-bind-address"] == "10.0.2.12"
    assert kc2["cache-embedded-network-bind-address"] == "10.0.2.13"
    assert kc1["cache-embedded-network-bind-port"] == kc2["cache-embedded-network-bind-port"] \
        == "7800"
    # one database: the first member's, on loopback for itself, over checked TLS for the other
    assert kc1["db-url"] == "jdbc:postgresql://127.0.0.1:5432/keycloak"
    assert kc2["db-url"] == ("jdbc:postgresql://10.0.2.12:5432/keycloak?sslmode=verify-full"
                             "&sslrootcert=/etc/keycloak/tls/ca.crt")
    assert kc1["db-password"] == kc2["db-password"] and len(kc1["db-password"]) == 32
    # the same public name and the same trusted proxies: either member may answer any request
    for key in ("hostname", "proxy-trusted-addresses", "https-port"):
        assert kc1[key] == kc2[key], key
    one, two = (json.loads((out / f"{h}.json").read_text()) for h in ("kc1", "kc2"))
    # a restore of the database stops Keycloak on the other member too (airlock restore)
    assert one.pop("backup") == {"name": "keycloak-db", "postgres": "keycloak",
                                 "restart_containers": ["keycloak"],
                                 "stop_elsewhere": [{"host": "kc2", "containers": ["keycloak"]}]}
    assert one == {"first": True, "cluster": True, "clients": ["10.0.2.13"],
                   "names": ["kc1", "keycloak"]}
    assert two["first"] is False and two["names"] == ["kc2", "keycloak"]
    # the gateway balances both members and checks the shared name on either's certificate
    gw = json.loads((out / "gateway.json").read_text())
    assert gw == {"servers": ["10.0.2.12:8443", "10.0.2.13:8443"], "tls_name": "keycloak"}


def test_a_single_server_stays_standalone(tmp_path) -> None:
    proc, out = _render(tmp_path, "pilot")
    assert proc.returncode == 0, proc.stdout[-3000:]
    conf = (out / "kc1.conf").read_text()
    assert "cache-embedded" not in conf
    assert _conf(out / "kc1.conf")["db-url"] == "jdbc:postgresql://127.0.0.1:5432/keycloak"
    assert json.loads((out / "kc1.json").read_text()) == {
        "first": True, "cluster": False, "clients": [], "names": ["kc1"],
        "backup": {"name": "keycloak-db", "postgres": "keycloak",
                   "restart_containers": ["keycloak"]}}
    gw = json.loads((out / "gateway.json").read_text())
    assert gw["servers"] == ["10.0.2.11:8443"] and gw["tls_name"] == "kc1"


@pytest.mark.parametrize("extra,words", [
    ({"keycloak_cluster_address": "kc-net"}, "keycloak_cluster_address must be this member's"),
    ({"keycloak_db_host": ""}, "keycloak_db_host must be the address of kc1"),
    ({"keycloak_cluster_hosts": ["kc1", "kc1", "kc2"]}, "lists a member twice"),
    ({"keycloak_cluster_hosts": ["kc1", "kc3"]}, "kc2 is not in keycloak_cluster_hosts"),
])
def test_a_bad_cluster_is_refused_before_anything_is_written(tmp_path, extra, words) -> None:
    proc, out = _render(tmp_path, "production", extra)
    assert proc.returncode != 0
    assert re.search(re.escape(words), proc.stdout), proc.stdout[-3000:]
    assert not list(out.glob("*.conf"))  # the checks run before any file is written
