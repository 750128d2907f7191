"""`airlock rollback litellm` and `airlock release status`: the LLM gateway's two release
slots (blue/green, roles/litellm), asked and switched over SSH on every LLM gateway host by
the host's own program (roles/litellm/files/airlock-llm-switch), which checks the other
release answers before the front is reloaded onto it.

A deploy that changes LiteLLM (its version from the bundle, its config, its hooks) brings
the new release up in the idle slot beside the serving one and switches when it is ready;
the old one keeps running until the next release replaces it: a rollback is a switch back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from installer.deploy import inventory as inv_mod
from installer.deploy.ssh import Remote, each_known_host
from installer.errors import HostError, UsageError

PROGRAM = "/usr/local/sbin/airlock-llm-switch"
SERVICES = ("litellm",)


def _hosts(inv: inv_mod.Inventory) -> list[inv_mod.Host]:
    names = inv.group("llm_gateway")
    if not names:
        raise UsageError(f"{inv.path}: this inventory has no LLM gateway (group llm_gateway)")
    return [inv.host(h) for h in names]


def _ask(hosts: list[inv_mod.Host], site: Path, what: str) -> dict[str, Any]:
    def one(r: Remote) -> dict[str, Any]:
        rc, out, err = r.run([PROGRAM, what], check=False)
        try:
            doc = json.loads(out)
        except ValueError:
            raise HostError(f"{r.host.name}: airlock-llm-switch {what} failed ({rc}): "
                            f"{(err or out).strip()[-400:]}",
                            hint="deploy the LLM gateway first (site.yml or ai.yml)") from None
        if rc != 0:
            raise HostError(f"{r.host.name}: {doc.get('error', err.strip())}")
        return doc

    return each_known_host(hosts, one, site=site, timeout=300)


def _report(root: Path, inventory: Path, site: Path, service: str, what: str
            ) -> dict[str, Any]:
    inv = inv_mod.load(inventory, root)
    found = _ask(_hosts(inv), site, what)
    hosts = [{"host": h, "error": str(v)} if isinstance(v, HostError) else {"host": h, **v}
             for h, v in found.items()]
    return {"service": service, "ok": all("error" not in h for h in hosts), "hosts": hosts}


def status(root: Path, inventory: Path, *, site: Path) -> dict[str, Any]:
    """Each LLM gateway host's active slot and both slots' releases and health."""
    return _report(root, inventory, site, "litellm", "status")


def rollback(root: Path, inventory: Path, service: str, *, site: Path) -> dict[str, Any]:
    """Every LLM gateway host back to its previous release (its other slot)."""
    if service not in SERVICES:
        raise UsageError(f"no blue/green service {service!r}; there is: {', '.join(SERVICES)}")
    return _report(root, inventory, site, service, "previous")
