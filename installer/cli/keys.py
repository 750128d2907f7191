"""``airlock keys …``: the trust root and signer keys.

``init`` and ``rotate``: every key in one folder, one passphrase (labs and tests). The key
ceremony, for a real site: ``new-signer`` (each signer, own machine), ``propose-root`` (public
keys only), ``sign-root`` (each signer in turn), ``finalize-root``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from installer.bundle import ceremony, keys
from installer.cli import AbsolutePath, emit_json, json_option
from installer.console import esc, out
from installer.errors import UsageError
from installer.fsutil import atomic_write

CEREMONY = ("For a real site, where each signer's key must stay on its owner's machine, run "
            "the key ceremony instead: new-signer, propose-root, sign-root, finalize-root "
            "(README: Key ceremony).")

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
    """Make and rotate the trust root and signer keys.

    At a real site: the key ceremony (new-signer, propose-root, sign-root, finalize-root),
    where each signer's key stays on its owner's machine. init and rotate hold every key in
    one folder: the shortcut for labs and tests."""


def _audited(command: str, directory: Path) -> Any:
    """Key changes go into the site's audit log (AIRLOCK_SITE_DIR) like deploys do."""
    from installer.deploy.audit import audited
    from installer.site import site_dir_default

    return audited(site_dir_default(), command, keysDir=str(directory.absolute()))


def expiry_options(defaults: keys.Policy | None) -> Callable[[Any], Any]:
    """--expires-root/-targets/-snapshot/-timestamp (days). DEFAULTS None: keep the --from
    folder's policy unless given."""
    def deco(f: Any) -> Any:
        for field in reversed(dataclasses.fields(keys.Policy)):
            role = field.name[:-len("_days")]
            text = "Days a signed bundle stays acceptable." if role == "timestamp" else "Days."
            if not defaults:
                text += f" (default: the --from folder's, or {field.default})"
            f = click.option(f"--expires-{role}", field.name, type=int,
                             default=getattr(defaults, field.name) if defaults else None,
                             show_default=bool(defaults), help=text)(f)
        return f
    return deco


def _policy(base: keys.Policy, days: dict[str, int | None]) -> keys.Policy:
    return dataclasses.replace(base, **{k: v for k, v in days.items() if v is not None})


@keys_group.command("init", epilog=CEREMONY)
@click.argument("directory", type=AbsolutePath(file_okay=False))
@click.option("--signers", "n", type=click.IntRange(1, 32), required=True)
@click.option("--threshold", "t", type=click.IntRange(1, 32), required=True)
@click.option("--names", help="Comma-separated signer names (default signer-1..N).")
@expiry_options(keys.Policy())
@passphrase_env_option
@json_option
def init_cmd(directory: Path, n: int, t: int, names: str | None, passphrase_env: str | None,
             as_json: bool, **days: int) -> None:
    """Make a trust root (python-tuf) and N signer keys in DIRECTORY, all under one
    passphrase.

    The single-machine shortcut for labs and tests: one person makes and holds every
    signer's key."""
    policy = _policy(keys.Policy(), days)
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


@keys_group.command("rotate", epilog=CEREMONY)
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
    """Make the next root, signed by a threshold of the current AND the new signers, with
    the keys in DIRECTORY that one passphrase opens.

    The single-machine shortcut for labs and tests (a folder made by keys init)."""
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
    """Show the current root: version, expiry, signers, threshold; or a root draft: what it
    holds and who has signed it."""
    if (directory / ceremony.DRAFT_ROOT).exists():
        draft = ceremony.review(directory)
        if as_json:
            emit_json(draft)
        else:
            _print_draft(draft)
        return
    info = keys.describe(directory)
    if as_json:
        emit_json(info)
        return
    out.print(f"root v{info['rootVersion']}, expires {esc(info['expires'])}, threshold "
              f"{info['threshold']} of {len(info['signers'])}")
    for name, kid in info["signers"].items():
        out.print(f"  {esc(name)}  {kid[:16]}…")


# --------------------------------------------------------------------------- the key ceremony

def _named_files(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
                 ) -> list[tuple[str, Path]]:
    pairs = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{v!r}: use NAME=FILE.pub", param=param)
        pairs.append((name, Path(path)))
    return pairs


def _print_draft(info: dict[str, Any], you: str | None = None) -> None:
    v = info["rootVersion"]
    out.print(f"[key]root v{v}[/] (draft {esc(str(info['draft']))})")
    out.print(f"  expires {info['expires']}; threshold {info['threshold']} of "
              f"{len(info['signers'])}: for every bundle, and for the root after this one")
    sets = [(f"v{v}", info["signers"])]
    prev = info["previous"]
    if prev:
        ch = info["changes"]
        what = [f"{k} {', '.join(ch[k])}" for k in ("added", "replaced", "removed") if ch[k]]
        if ch["threshold"][0] != ch["threshold"][1]:
            what.append("threshold {} -> {}".format(*ch["threshold"]))
        out.print(f"  follows root v{prev['rootVersion']} (threshold {prev['threshold']} of "
                  f"{len(prev['signers'])}): {'; '.join(what) or 'no change but the expiry'}")
        sets.append((f"v{prev['rootVersion']}", prev["signers"]))
    for label, people in sets:
        need = info["needed"][label]
        out.print(f"  signers of {label}: {need['threshold']} must sign, {need['signed']} "
                  "did")
        for person in people:
            mark = "[ok]signed[/]" if person["signed"] else "[dim]not yet[/]"
            me = "  [key]<- you[/]" if person["name"] == you else ""
            out.print(f"    {esc(person['name']):<16} {person['fingerprint']}  {mark}{me}")


@keys_group.command("new-signer")
@click.argument("name")
@click.option("-o", "--output", type=AbsolutePath(file_okay=False),
              required=True, help="This signer's own key folder (made 0700 if new).")
@passphrase_env_option
@json_option
def new_signer_cmd(name: str, output: Path, passphrase_env: str | None, as_json: bool) -> None:
    """Key ceremony, step 1, on the signer's own machine: make NAME.key (encrypted with
    the signer's own passphrase, mode 0600) and NAME.pub in OUTPUT. Hand over NAME.pub
    only."""
    passphrase = get_passphrase(passphrase_env, confirm=True)
    with _audited("keys new-signer", output) as rec:
        info = ceremony.new_signer(output, name, passphrase)
        rec.update(signer=name, fingerprint=info["fingerprint"])
    if as_json:
        emit_json(info)
        return
    out.print(f"[ok]signer key[/] {esc(str(info['key']))} (mode 0600; it never leaves this "
              "machine)")
    out.print(f"  hand over {esc(str(info['pub']))} only; its fingerprint: {info['fingerprint']}")
    out.print("  (ssh-keygen -l -f NAME.pub shows the same; tell it to the others by another "
              "channel)")


@keys_group.command("propose-root")
@click.option("-o", "--output", type=AbsolutePath(file_okay=False),
              required=True, help="The draft folder to create.")
@click.option("--signer", "signers", multiple=True, callback=_named_files,
              metavar="NAME=FILE.pub", help="A signer of a new root v1 and their public key.")
@click.option("--threshold", type=click.IntRange(1, 32), default=None,
              help="Signatures needed (for a rotation: default the current one).")
@click.option("--from", "base", type=AbsolutePath(file_okay=False, exists=True),
              help="Rotation: the trust folder whose root the draft follows.")
@click.option("--replace", multiple=True, callback=_named_files, metavar="NAME=FILE.pub",
              help="Rotation: give this signer a new key.")
@click.option("--add", multiple=True, callback=_named_files, metavar="NAME=FILE.pub",
              help="Rotation: add a signer.")
@click.option("--remove", multiple=True, metavar="NAME", help="Rotation: remove a signer.")
@expiry_options(None)
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists (its signatures "
              "are lost).")
@json_option
def propose_root_cmd(output: Path, signers: list[tuple[str, Path]], threshold: int | None,
                     base: Path | None, replace: list[tuple[str, Path]],
                     add: list[tuple[str, Path]], remove: tuple[str, ...], force: bool,
                     as_json: bool, **days: int | None) -> None:
    """Key ceremony, step 2, on any machine (no secrets): write an unsigned root draft from
    public keys only, root v1 from --signer, or with --from the next root of that trust
    folder. Carry the draft to each signer in turn for sign-root."""
    policy = None
    if any(v is not None for v in days.values()):
        policy = _policy(keys.Policy.read(base) if base else keys.Policy(), days)
    with _audited("keys propose-root", output) as rec:
        info = ceremony.propose(output, threshold=threshold, policy=policy, signers=signers,
                                base=base, replace=replace, add=add, remove=list(remove),
                                force=force)
        rec.update(rootVersion=info["rootVersion"], threshold=info["threshold"],
                   signers={p["name"]: p["fingerprint"] for p in info["signers"]},
                   digest=info["digest"])
    if as_json:
        emit_json(info)
        return
    _print_draft(info)
    out.print(f"[ok]draft[/] {esc(str(output))}: carry it to each signer; each runs "
              f"`airlock keys sign-root {output.name} --key THEIR_FOLDER/NAME.key`")


@keys_group.command("sign-root")
@click.argument("draft", type=AbsolutePath(file_okay=False, exists=True))
@click.option("--key", "key_file", required=True,
              type=AbsolutePath(dir_okay=False, exists=True),
              help="Your own NAME.key (made by new-signer).")
@click.option("--yes", is_flag=True, help="Sign without asking (after checking the draft "
              "with `airlock keys show DRAFT`).")
@passphrase_env_option
@json_option
def sign_root_cmd(draft: Path, key_file: Path, yes: bool, passphrase_env: str | None,
                  as_json: bool) -> None:
    """Key ceremony, step 3, on each signer's own machine in turn: show what the draft
    holds (version, expiry, threshold, each signer's name and key fingerprint, what changes),
    then add your signature to it. Signing twice changes nothing."""
    passphrase = get_passphrase(passphrase_env)
    with _audited("keys sign-root", draft) as rec:
        private = keys.load_private_key(key_file, passphrase)
        seen = ceremony.preview(draft, private, key_file)
        rec.update(rootVersion=seen["rootVersion"], signer=seen["signer"],
                   fingerprint=seen["fingerprint"], digest=seen["digest"])
        if not (yes or as_json or seen["alreadySigned"]):
            _print_draft(seen, you=seen["signer"])
            out.print("Check each name and fingerprint with its owner (they read theirs "
                      "with `ssh-keygen -l -f NAME.pub`), and the threshold and expiry.")
            if not sys.stdin.isatty():
                raise UsageError("sign-root asks before signing and there is no terminal "
                                 "to ask on", hint="check the draft, then add --yes")
            if not click.confirm(f"Sign root v{seen['rootVersion']} as {seen['signer']}?",
                                 default=False):
                raise UsageError("not signed: you declined; the draft is unchanged")
        info = ceremony.sign(draft, private, key_file, seen=seen["digest"])
        rec.update(added=info["added"], complete=info["complete"])
    if as_json:
        emit_json(info)
        return
    did = "signed" if info["added"] else "already signed"
    out.print(f"[ok]{did}[/] root v{info['rootVersion']} as {esc(str(info['signer']))} "
              f"({info['fingerprint']})")
    if info["complete"]:
        out.print("  enough signatures: `airlock keys finalize-root DRAFT -o TRUST_FOLDER`")
    else:
        out.print(f"  still needed: {ceremony.shortfall(info)}; carry the draft on")


@keys_group.command("finalize-root")
@click.argument("draft", type=AbsolutePath(file_okay=False, exists=True))
@click.option("-o", "--output", type=AbsolutePath(file_okay=False),
              required=True, help="The trust folder: new, the one the draft was proposed "
              "from, or a signer's own key folder.")
@json_option
def finalize_root_cmd(draft: Path, output: Path, as_json: bool) -> None:
    """Key ceremony, step 4: check the draft's signatures (a threshold of its signers and,
    for a rotation, of the current root's) and write root.json, roots/N.root.json,
    policy.json and the signers' NAME.pub into OUTPUT."""
    with _audited("keys finalize-root", output) as rec:
        info = ceremony.finalize(draft, output)
        rec.update(rootVersion=info["rootVersion"], threshold=info["threshold"],
                   signers={p["name"]: p["fingerprint"] for p in info["signers"]},
                   signedBy=sorted(p["name"] for p in info["signers"] if p["signed"]),
                   digest=info["digest"])
    if as_json:
        emit_json(info)
        return
    out.print(f"[ok]root v{info['rootVersion']}[/] in {esc(str(output))}: threshold "
              f"{info['threshold']} "
              f"of {len(info['signers'])} ({', '.join(p['name'] for p in info['signers'])})")
    if info["retired"]:
        out.print(f"  retired: {', '.join(info['retired'])} (moved to "
                  f"{esc(str(output / 'retired'))})")
    out.print(f"  pin {esc(str(output / 'root.json'))} on every verifying host (a rotation: "
              "bundles carry the chain, keep the old pin)")
