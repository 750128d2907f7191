"""``airlock mirror …``: package repositories from a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from installer.bundle import mirror
from installer.cli import AbsolutePath, emit_json, json_option
from installer.console import esc, out


@click.group("mirror")
def mirror_group() -> None:
    """Export a bundle's pip, npm, apt, Maven and Go mirrors as repository trees."""


@mirror_group.command("export")
@click.argument("bundle", type=AbsolutePath(file_okay=False, exists=True))
@click.option("-o", "--output", "out_dir", required=True, type=AbsolutePath())
@click.option("--base-url", help="URL where the exported folder is served (npm tarball URLs).")
@click.option("--site-key", type=AbsolutePath(file_okay=False, exists=True),
              help="GnuPG home with the site's repository signing key (apt).")
@click.option("--go-sumdb", type=AbsolutePath(file_okay=False, exists=True),
              help="The site's Go checksum database folder (Go modules): its key and log.")
@click.option("--force", is_flag=True, help="Replace the output folder.")
@json_option
def export_cmd(bundle: Path, out_dir: Path, base_url: str | None, site_key: Path | None,
               go_sumdb: Path | None, force: bool, as_json: bool) -> None:
    """Write PEP 503/691, npm registry, signed apt, Maven 2 and GOPROXY trees for BUNDLE
    into a folder."""
    summary = mirror.export(bundle, out_dir, base_url=base_url, site_key=site_key, force=force,
                            go_sumdb=go_sumdb)
    if as_json:
        emit_json(summary)
        return
    out.print(f"[ok]exported[/] to {esc(summary['path'])}")
    for kind in mirror.MIRROR_KINDS:
        if kind in summary:
            out.print(f"  {kind}: {esc(summary[kind])}")
    out.print("  serve it with nginx: see nginx-locations.conf in that folder")


@mirror_group.command("site-key")
@click.argument("home", type=AbsolutePath(file_okay=False))
@click.option("--name", default="airlock site repository", show_default=True)
@json_option
def site_key_cmd(home: Path, name: str, as_json: bool) -> None:
    """Make the site's apt repository signing key in a private GnuPG home."""
    info = mirror.make_site_key(home, name)
    if as_json:
        emit_json(info)
        return
    out.print(f"[ok]site key[/] {info['fingerprint']} in {esc(home)} (mode 0700; keep it on the "
              "repo host)")


@mirror_group.command("go-sumdb")
@click.argument("home", type=AbsolutePath(file_okay=False))
@json_option
def go_sumdb_cmd(home: Path, as_json: bool) -> None:
    """Make the site's Go checksum database (a signing key and an empty log) in HOME."""
    from installer.bundle import gosumdb

    verifier = gosumdb.make_key(home)
    if as_json:
        emit_json({"home": str(home), "verifier": verifier})
        return
    out.print(f"[ok]Go checksum database[/] in {esc(home)} (mode 0700): hosts set "
              f"GOSUMDB={esc(verifier)}")
