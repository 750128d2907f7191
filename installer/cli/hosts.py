"""``airlock hosts trust | forget``: the site's record of who each host is (its SSH host
key), which every SSH connection airlock makes is checked against."""

from __future__ import annotations

from pathlib import Path

import click

from installer.cli import emit_json, json_option
from installer.cli.deploy import (
    _inventory_file,
    _root,
    _site,
    confirm_host_key,
    inventory_option,
    site_option,
)
from installer.console import esc, out
from installer.deploy import hostkeys
from installer.deploy import inventory as inv_mod
from installer.errors import UsageError


@click.group("hosts")
def hosts_group() -> None:
    """The hosts' SSH keys in the site's known_hosts."""


def _hosts(inventory: Path, limit: str | None) -> list[inv_mod.Host]:
    inv = inv_mod.load(_inventory_file(inventory), _root())
    names = inv.hosts if not limit else [h for h in inv.hosts if h in limit.split(",")]
    if limit and len(names) != len(set(limit.split(","))):
        missing = sorted(set(limit.split(",")) - set(names))
        raise UsageError(f"not in the inventory: {', '.join(missing)}")
    return [inv.host(h) for h in names]


@hosts_group.command("trust")
@inventory_option
@click.option("--limit", help="Only these hosts (comma-separated).")
@site_option
@json_option
def trust_cmd(inventory: Path, limit: str | None, site: Path | None, as_json: bool) -> None:
    """Show each host's key and record it once you confirm it (or once it matches the
    inventory's airlock_host_key_sha256). A changed key is refused, never replaced."""
    hosts = _hosts(inventory, limit)
    result = hostkeys.ensure(hosts, _site(site), confirm=None if as_json else confirm_host_key,
                             say=(lambda m: None) if as_json else out.print)
    if as_json:
        emit_json({"ok": True, "knownHosts": str(hostkeys.path(_site(site))),
                   "hosts": result})
        return
    out.print(f"[ok]{len(result)} host key(s) known[/] in {esc(str(hostkeys.path(_site(site))))}")


@hosts_group.command("forget")
@inventory_option
@click.option("--limit", required=True, help="These hosts (comma-separated).")
@site_option
@json_option
def forget_cmd(inventory: Path, limit: str, site: Path | None, as_json: bool) -> None:
    """Drop the recorded keys of rebuilt hosts (check their new keys on their consoles,
    then `airlock hosts trust`)."""
    gone = hostkeys.forget(_site(site), _hosts(inventory, limit))
    if as_json:
        emit_json({"ok": True, "forgotten": gone})
        return
    out.print(esc(f"forgot {', '.join(gone) or 'nothing'}; next: airlock hosts trust -i "
                  f"{inventory}"))
