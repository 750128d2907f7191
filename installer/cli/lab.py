"""``airlock lab …``: the local test hosts."""

from __future__ import annotations

import click
from rich.table import Table

from installer.cli import emit_json, json_option
from installer.console import err, esc, out
from installer.lab import lab as lab_mod
from installer.site import checkout_root


@click.group("lab")
def lab_group() -> None:
    """Make, inspect and remove the lab's test hosts (containers on this machine)."""


@lab_group.command("up")
@click.option("--topology", default="poc", show_default=True)
@json_option
def up_cmd(topology: str, as_json: bool) -> None:
    """Start the topology's hosts and write inventories/lab/hosts.yml."""
    say = (lambda m: err.print(f"[dim]{esc(m)}[/]")) if not as_json else (lambda m: None)
    state = lab_mod.up(checkout_root("airlock lab up"), topology, say)
    if as_json:
        emit_json(lab_mod.status())
        return
    out.print(f"[ok]lab up[/]: {len(state.hosts)} hosts ({esc(topology)}); inventory "
              f"{esc(state.inventory)}")
    _table(lab_mod.status())


@lab_group.command("down")
@json_option
def down_cmd(as_json: bool) -> None:
    """Remove exactly what lab up made."""
    result = lab_mod.down(checkout_root("airlock lab down"))
    if as_json:
        emit_json(result)
        return
    if not result["removed"]:
        out.print("no lab is up")
        return
    out.print(f"[ok]lab down[/]: removed {result['containers']} hosts and "
              f"{result['networks']} networks" +
              ("; stopped the engine it started" if result["engineStopped"] else ""))


@lab_group.command("status")
@json_option
def status_cmd(as_json: bool) -> None:
    """Show the lab's hosts, addresses and states."""
    st = lab_mod.status()
    if as_json:
        emit_json(st)
        return
    if not st["up"]:
        out.print("no lab is up (airlock lab up)")
        return
    _table(st)


def _table(st: dict) -> None:
    t = Table(show_edge=False, header_style="bold")
    for col in ("host", "zone", "groups", "mgmt address", "zone address", "state"):
        t.add_column(col)
    for name, h in st.get("hosts", {}).items():
        t.add_row(*map(esc, (name, h.get("zone", "?"), ", ".join(h.get("groups", [])),
                             h.get("mgmt_address", "?"), h.get("zone_address", "?"),
                             h.get("state", "?"))))
    out.print(t)
