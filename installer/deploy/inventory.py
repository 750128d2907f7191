"""Inventories as Ansible reads them: ``ansible-inventory --list`` resolves groups,
children and group_vars exactly as the playbooks will, so airlock never re-implements it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.errors import SpecError, UsageError


def tool(name: str) -> str:
    """An Ansible command from the same environment as airlock itself."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def ansible_env(root: Path) -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


@dataclass
class Host:
    name: str
    vars: dict[str, Any]

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host", self.name))

    @property
    def port(self) -> int:
        return int(self.vars.get("ansible_port", 22))

    @property
    def user(self) -> str:
        return str(self.vars.get("ansible_user", "root"))

    @property
    def key_file(self) -> str | None:
        k = self.vars.get("ansible_ssh_private_key_file")
        return os.path.expanduser(str(k)) if k else None

    @property
    def repo_root(self) -> str:
        """Where a repo host keeps its releases (the offline_repo role's default)."""
        return str(self.vars.get("offline_repo_root", "/srv/airlock"))

    @property
    def become(self) -> bool:
        """Whether commands go through sudo: the inventory logs in as another user than
        root and says ``ansible_become``, as Ansible would read it."""
        value = self.vars.get("ansible_become", False)
        on = value if isinstance(value, bool) else str(value).lower() in ("true", "yes", "1")
        return on and self.user != "root"


class Inventory:
    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self._data = data
        self.hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})

    def group(self, name: str) -> list[str]:
        seen: list[str] = []

        def walk(g: str) -> None:
            node = self._data.get(g, {})
            for h in node.get("hosts", []):
                if h not in seen:
                    seen.append(h)
            for c in node.get("children", []):
                walk(c)
        walk(name)
        return seen

    def host(self, name: str) -> Host:
        return Host(name, self.hostvars.get(name, {}))

    @property
    def hosts(self) -> list[str]:
        return self.group("all")

    @property
    def digest(self) -> str:
        """What Ansible sees (hosts, groups, every variable), hashed: two runs with the same
        digest ran against the same inventory."""
        from installer.deploy.audit import digest_json

        return digest_json(self._data)

    def var(self, name: str, default: Any = None) -> Any:
        """A variable every host shares (group_vars/all), read from the first host."""
        hosts = self.hosts
        return self.hostvars.get(hosts[0], {}).get(name, default) if hosts else default

    def gateway_address(self) -> str | None:
        """Where users reach the gateway (as playbooks' airlock_gateway_url): the first
        gateway's public name, else the pair's VIP, else its zone address."""
        hosts = self.group("gateway")
        if not hosts:
            return None
        gw = self.host(hosts[0])
        return str(gw.vars.get("airlock_public_name") or gw.vars.get("airlock_gateway_vip")
                   or gw.vars.get("airlock_zone_address") or gw.address)

    def groups_of(self, host: str) -> list[str]:
        return sorted(g for g in self._data if g not in ("_meta", "all", "ungrouped")
                      and host in self.group(g))

    def first(self, group: str) -> Host:
        members = self.group(group)
        if not members:
            raise SpecError(f"the inventory has no host in the `{group}` group",
                            file=str(self.path), hint=f"add one under {group}: hosts:")
        return self.host(members[0])


def load(path: Path, root: Path) -> Inventory:
    if not path.exists():
        raise UsageError(f"inventory {path} does not exist",
                         hint="airlock lab up writes inventories/lab/hosts.yml")
    # a file Ansible cannot parse is an error here, not a warning and an empty inventory
    env = {**ansible_env(root), "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True"}
    proc = subprocess.run([tool("ansible-inventory"), "-i", str(path), "--list"],
                          capture_output=True, text=True, env=env, cwd=root)
    if proc.returncode != 0:
        text = proc.stderr.strip()  # the first plugin's reason first, the verdict last
        if len(text) > 1200:
            text = text[:900] + " … " + text[-250:]
        raise SpecError(f"ansible-inventory cannot read it: {text}", file=str(path))
    return Inventory(path, json.loads(proc.stdout))
