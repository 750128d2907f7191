"""``airlock keys …``: the trust root and signer keys."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from installer.bundle import keys
from installer.cli import AbsolutePath, emit_json, json_option
from installer.console import esc, out
from installer.errors import UsageError
from installer.fsutil import atomic_write

passphrase_env_option = click.option(
    "--passphrase-env", metavar="VAR",
    help="Read the key passphrase from environment variable VAR instead of a prompt.")


def get_passphrase(env: str | None, *, confirm: bool = False) -> str:
    if env:
        value = os.environ.get(env)
        if not value:
            raise UsageError(f"--passphrase-env {env}: the variable is not set or empty")
        return value
    if not sys.stdin.isatty():
        raise UsageError("a key passphrase is needed and there is no terminal to ask on",
                         hint="use --passphrase-env VAR")
    return click.prompt("Key passphrase", hide_input=True, confirmation_prompt=confirm)


def _names(value: str | None) -> list[str] | None:
    return [n.strip() for n in value.split(",") if n.strip()] if value else None


@click.group("keys")
def keys_group() -> None:
    """Make and rotate the trust root and signer keys."""


def _audited(command: str, directory: Path) -> Any:
    """Key changes go into the site's audit log (AIRLOCK_SITE_DIR) like deploys do."""
    from installer.deploy.audit import audited
    from installer.site import site_dir_default

    return audited(site_dir_default(), command, keysDir=str(directory.absolute()))


@keys_group.command("init")
@click.argument("directory", type=AbsolutePath(file_okay=False))
@click.option("--signers", "n", type=click.IntRange(1, 32), required=True)
@click.option("--threshold", "t", type=click.IntRange(1, 32), required=True)
@click.option("--names", help="Comma-separated signer names (default signer-1..N).")
@click.option("--expires-root", default=365, show_default=True, help="Days.")
@click.option("--expires-targets", default=90, show_default=True, help="Days.")
@click.option("--expires-snapshot", default=90, show_default=True, help="Days.")
@click.option("--expires-timestamp", default=30, show_default=True,
              help="Days a signed bundle stays acceptable.")
@passphrase_env_option
@json_option
def init_cmd(directory: Path, n: int, t: int, names: str | None, expires_root: int,
             expires_targets: int, expires_snapshot: int, expires_timestamp: int,
             passphrase_env: str | None, as_json: bool) -> None:
    """Make a trust root (python-tuf) and N signer keys in DIRECTORY."""
    policy = keys.Policy(expires_root, expires_targets, expires_snapshot, expires_timestamp)
    passphrase = get_passphrase(passphrase_env, confirm=True)
    with _audited("keys init", directory) as rec:
        info = keys.init(directory, n, t, _names(names), passphrase, policy)
        rec.update(rootVersion=info["rootVersion"], signers=info["signers"], threshold=t)
    if as_json:
        emit_json(info)
        return
    out.print(f"[ok]trust root v{info['rootVersion']}[/] in {esc(directory)}: {t} of {n} signers "
              f"must sign each bundle")
    for name in info["signers"]:
        out.print(f"  {esc(directory / (name + '.key'))}  (give it to {esc(name)}; mode 0600)")
    out.print(f"  pin {esc(directory / 'root.json')} on every verifying host (copy it out of "
              "band)")


@keys_group.command("rotate")
@click.argument("directory", type=AbsolutePath(file_okay=False, exists=True))
@click.option("--replace", multiple=True, help="Give this signer a new key.")
@click.option("--add", multiple=True, help="Add a signer with this name.")
@click.option("--remove", multiple=True, help="Remove this signer.")
@click.option("--threshold", type=click.IntRange(1, 32), default=None)
@passphrase_env_option
@json_option
def rotate_cmd(directory: Path, replace: tuple[str, ...], add: tuple[str, ...],
               remove: tuple[str, ...], threshold: int | None, passphrase_env: str | None,
               as_json: bool) -> None:
    """Make the next root, signed by a threshold of the current AND the new signers."""
    passphrase = get_passphrase(passphrase_env)
    with _audited("keys rotate", directory) as rec:
        info = keys.rotate(directory, passphrase, replace=list(replace), add=list(add),
                           remove=list(remove), threshold=threshold)
        rec.update(rootVersion=info["rootVersion"], signers=info["signers"],
                   threshold=info["threshold"])
    if as_json:
        emit_json(info)
        return
    out.print(f"[ok]root v{info['rootVersion']}[/]: signers "
              + esc(", ".join(info["signers"])) + f"; threshold {info['threshold']}")
    out.print("  verifiers keep their pinned root: bundles carry the chain to this one")


@keys_group.command("allowed-signers")
@click.argument("directory", type=AbsolutePath(file_okay=False, exists=True))
@click.option("-o", "--output", type=AbsolutePath(dir_okay=False), required=True)
def allowed_signers_cmd(directory: Path, output: Path) -> None:
    """Write an OpenSSH allowed_signers file for reviewers (ssh-keygen -Y verify)."""
    atomic_write(output, keys.allowed_signers(directory).encode())
    out.print(f"[ok]wrote[/] {esc(output)} (namespace {keys.NAMESPACE})")


@keys_group.command("show")
@click.argument("directory", type=AbsolutePath(file_okay=False, exists=True))
@json_option
def show_cmd(directory: Path, as_json: bool) -> None:
    """Show the current root: version, expiry, signers, threshold."""
    info = keys.describe(directory)
    if as_json:
        emit_json(info)
        return
    out.print(f"root v{info['rootVersion']}, expires {esc(info['expires'])}, threshold "
              f"{info['threshold']} of {len(info['signers'])}")
    for name, kid in info["signers"].items():
        out.print(f"  {esc(name)}  {kid[:16]}…")
