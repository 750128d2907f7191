"""``airlock network …``: the zones and flows data model."""

from __future__ import annotations

from pathlib import Path

import click

from installer import network
from installer.cli import AbsolutePath, emit_json, json_option
from installer.console import esc, out
from installer.fsutil import atomic_write
from installer.site import project_root


@click.group("network")
def network_group() -> None:
    """The zones and the port matrix."""


@network_group.command("matrix")
@click.option("-o", "--output", "out_dir", type=AbsolutePath(file_okay=False),
              help="Write port-matrix.md and port-matrix.csv into this folder (e.g. docs).")
@json_option
def matrix_cmd(out_dir: Path | None, as_json: bool) -> None:
    """Check the data model and print (or write) the port matrix for the security review."""
    model = network.load(project_root() / network.DATA_FILE, network.GROUPS)
    if as_json:
        emit_json({"zones": model.zones, "external": model.external,
                   "flows": [f.__dict__ for f in model.flows]})
        return
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / "port-matrix.md", network.matrix_markdown(model).encode())
        atomic_write(out_dir / "port-matrix.csv", network.matrix_csv(model).encode())
        out.print(f"[ok]wrote[/] {esc(out_dir / 'port-matrix.md')} and port-matrix.csv "
                  f"({len(model.flows)} flows)")
        return
    out.print(network.matrix_markdown(model), markup=False)
