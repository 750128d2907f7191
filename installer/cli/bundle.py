"""``airlock bundle …``: build, inspect, verify, pack, unpack."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from installer.bundle.build import BuildOptions, build
from installer.bundle.sources.http import FetchOptions
from installer.cli import AbsolutePath, emit_json, json_option
from installer.console import esc, out, progress
from installer.errors import IntegrityError, SourceError


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@click.group()
def bundle() -> None:
    """Build, check and carry offline bundles."""


@bundle.command("build")
@click.argument("spec", type=AbsolutePath(dir_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=AbsolutePath(),
              help="Bundle folder to create (built beside it, renamed at the end).")
@click.option("--update-lock", is_flag=True, help="Resolve every input again and rewrite the lock.")
@click.option("--locked", is_flag=True, help="Fail if the lock would change (CI, rebuilds).")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@click.option("--timeout", default=30.0, show_default=True,
              help="Network timeout, seconds: to connect, and for each byte to come.")
@click.option("--deadline", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Most time one download may take in all "
              "[default: 5 min plus 1 s per MiB expected].")
@click.option("--max-size", "max_size", default="64G", show_default=True, metavar="SIZE",
              help="Largest download whose size neither the spec, the lock nor an index "
                   "states (e.g. 700M, 64G).")
@click.option("--retries", default=4, show_default=True, help="Retries for network requests.")
@json_option
def build_cmd(spec: Path, out_dir: Path, update_lock: bool, locked: bool, force: bool,
              timeout: float, deadline: float | None, max_size: str, retries: int,
              as_json: bool) -> None:
    """Build a bundle from SPEC (a bundles/*.yaml file) and its lock file."""
    opts = BuildOptions(update_lock=update_lock, locked=locked, force=force,
                        fetch=FetchOptions(timeout=timeout, retries=retries, deadline=deadline,
                                           max_size=_size_option("--max-size", max_size)))
    with progress(not as_json) as bar:
        try:
            result = build(spec, out_dir, opts, bar)
        except SourceError as e:
            if not e.hint and "sample/build/" in str(e) \
                    and not (spec.parent / "sample" / "build").is_dir():
                e.hint = "the sample's inputs are made by: airlock bundle sample-inputs"
            raise
    if as_json:
        emit_json({"ok": True, **result.to_json()})
        return
    out.print(f"[ok]built[/] {esc(result.name)} v{result.version} -> {esc(result.path)}")
    out.print(f"  {result.artifacts} artifacts, {result.blobs} blobs, {human(result.size)} "
              f"in {result.seconds:.1f} s")
    out.print(f"  digest {result.digest}")
    if result.lock_written:
        out.print(f"  [warn]lock written[/] {esc(result.lock_path)} (review and commit it)")


def _size_option(name: str, text: str) -> int:
    import re

    from installer.bundle.pack import UNITS

    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", text.upper().replace("IB", "B"))
    if not m or int(m.group(1)) == 0:
        raise click.BadParameter(f"{text!r}: expected a size such as 700M, 64G or 1048576",
                                 param_hint=name)
    return int(m.group(1)) * UNITS[m.group(2)]


@bundle.command("sample-inputs")
@json_option
def sample_inputs_cmd(as_json: bool) -> None:
    """Make the embedded sample's inputs: bundles/sample/build (a docker archive, VSIX
    files, a model folder) from bundles/sample/src, the same bytes every time (its lock
    pins them). `airlock demo` makes them too."""
    from installer.lab import sample
    from installer.site import project_root

    built = sample.prepare(project_root() / "bundles")
    if as_json:
        emit_json({"ok": True, "path": str(built)})
        return
    out.print(f"made {built} (docker archive, VSIX, model folder) from bundles/sample/src")


@bundle.command("verify")
@click.argument("directory", type=AbsolutePath(file_okay=False))
@click.option("--trust", "trust_root", type=AbsolutePath(dir_okay=False),
              envvar="AIRLOCK_TRUST_ROOT", show_envvar=True,
              help="Pinned root.json: check TUF signatures, thresholds, expiry, rollback.")
@click.option("--state", "state_dir", type=AbsolutePath(file_okay=False),
              help="Trust state folder (highest versions accepted); default in the user's "
                   "state dir.")
@json_option
def verify_cmd(directory: Path, trust_root: Path | None, state_dir: Path | None,
               as_json: bool) -> None:
    """Check DIRECTORY: file set, every digest, SHA256SUMS, manifests; with --trust also
    the signatures against a pinned root, refusing rollback and expired bundles."""
    from installer.bundle.delta import read_delta
    from installer.bundle.trust import verify_signed
    from installer.bundle.verify import verify

    delta = read_delta(directory) if directory.is_dir() else None
    omitted = delta["omitted"] if delta else {}
    with progress(not as_json) as bar:
        if trust_root:
            trusted = verify_signed(directory, trust_root, state_dir, bar, omitted=omitted)
            report, ok, doc = trusted.integrity, trusted.ok, trusted.to_json()
            problems = doc["problems"]
        else:
            report = verify(directory, bar, omitted=set(omitted))
            ok, doc, problems = report.ok, report.to_json(), report.problems
            doc["signaturesChecked"] = False
    if delta:
        doc["delta"] = {"base": delta["base"], "omittedFiles": len(omitted),
                        "omittedBytes": sum(omitted.values())}
    if as_json:
        emit_json(doc)
        if not ok:
            raise SystemExit(IntegrityError.exit_code)
        return
    if not ok:
        raise IntegrityError(f"{directory}: {len(problems)} problem(s); the bundle must not be "
                             "used", problems,
                             hint="do not use it: copy it again from the original media, or "
                                  "ask the staging team for a newer bundle signed by enough "
                                  "signers")
    rate = report.bytes / report.seconds / 1e9 if report.seconds else 0
    out.print(f"[ok]verified[/] {esc(report.meta.get('name'))} v{report.meta.get('version')}: "
              f"{report.files} files, {human(report.bytes)}, every digest matches "
              f"({report.seconds:.2f} s, {rate:.2f} GB/s)")
    out.print(f"  digest {report.digest}")
    if delta:
        b = delta["base"]
        out.print(f"  [warn]delta[/]: {len(omitted)} blobs ({human(sum(omitted.values()))}) "
                  f"are left to the base {esc(b['name'])} v{b['version']}; they are checked "
                  "against this SHA256SUMS where the base is (bundle import)")
    if trust_root:
        out.print(f"  [ok]signed[/] by {esc(', '.join(doc['signers']))} "
                  f"(threshold {doc['threshold']}); root v{doc['versions']['root']}; "
                  f"timestamp expires {esc(doc['expires']['timestamp'])}")
    else:
        out.print("  [warn]signatures NOT checked[/]: give --trust ROOT_JSON (or "
                  "AIRLOCK_TRUST_ROOT) to check who signed it")


@bundle.command("sign")
@click.argument("directory", type=AbsolutePath(file_okay=False, exists=True))
@click.option("--key", "key_file", required=True,
              type=AbsolutePath(dir_okay=False, exists=True))
@click.option("--trust-dir", type=AbsolutePath(file_okay=False, exists=True),
              help="Key folder with root.json and roots/ (default: the key's folder).")
@click.option("--passphrase-env", metavar="VAR",
              help="Read the key passphrase from environment variable VAR.")
@json_option
def sign_cmd(directory: Path, key_file: Path, trust_dir: Path | None,
             passphrase_env: str | None, as_json: bool) -> None:
    """Add one signer's signature (TUF metadata + SSHSIG over SHA256SUMS) to a bundle."""
    from installer.bundle.sign import sign_bundle
    from installer.cli.keys import get_passphrase

    passphrase = get_passphrase(passphrase_env)
    with progress(not as_json) as bar:
        result = sign_bundle(directory, key_file, passphrase, trust_dir, bar)
    if as_json:
        emit_json(result)
        return
    state = "[ok]complete[/]" if result["complete"] else "[warn]needs more signatures[/]"
    out.print(f"[ok]signed[/] {esc(directory)} as {esc(result['signer'])}: "
              f"{len(result['signed'])} of {result['threshold']} needed "
              f"({esc(', '.join(result['signed']))}) - {state}")


@bundle.command("inspect")
@click.argument("directory", type=AbsolutePath(file_okay=False))
@json_option
def inspect_cmd(directory: Path, as_json: bool) -> None:
    """Show what a bundle holds (reads bundle.json; `verify` checks the bytes)."""
    from installer.bundle.inspect import load_meta

    meta = load_meta(directory)  # bounded, and its fields' types checked
    if as_json:
        emit_json(meta)
        return
    out.print(f"[key]{esc(meta['name'])}[/] version {meta['version']} · phase "
              f"{esc(meta.get('phase', '?'))} · created {esc(meta.get('created', '?'))} · "
              f"{esc(meta.get('platform', '?'))}")
    if meta.get("description"):
        out.print(f"  {esc(meta['description'])}")
    table = Table(show_edge=False, header_style="bold")
    for col in ("kind", "name", "version", "size", "digest", "detail"):
        table.add_column(col, no_wrap=col in ("digest", "size"))
    for a in meta["artifacts"]:
        if a["kind"] == "image":
            detail = f"{a.get('platform', '?')}, {a.get('layers', '?')} layers"
        elif a["kind"] == "vsix":
            detail = f"engine {a.get('engine', '?')}"
        else:
            detail = f"{len(a.get('files', []))} file(s)"
        table.add_row(*map(esc, (a["kind"], a["name"], str(a.get("version") or "-"),
                                human(a["size"]), a["digest"][7:19], detail)))
    out.print(table)
    out.print(f"  spec {esc(meta.get('specDigest', '?'))}\n"
              f"  lock {esc(meta.get('lockDigest', '?'))}")
    sigs = sorted(p.name[len("SHA256SUMS."):-len(".sig")]
                  for p in directory.glob("SHA256SUMS.*.sig"))
    if sigs:
        out.print(f"  signatures present (unchecked here): {esc(', '.join(sigs))}; "
                  "check them with verify --trust")
    else:
        out.print("  [warn]unsigned[/]: airlock bundle sign adds signatures")


@bundle.command("pack")
@click.argument("directory", type=AbsolutePath(file_okay=False))
@click.option("-o", "--output", "out_file", required=True, type=AbsolutePath())
@click.option("--zstd", "use_zstd", is_flag=True, help="Compress with zstd (all cores).")
@click.option("--level", default=3, show_default=True, help="zstd level.")
@click.option("--split", "split", default=None, metavar="SIZE",
              help="Split into parts of SIZE (e.g. 4G, 700M) with a part index.")
@click.option("--force", is_flag=True, help="Replace existing output files.")
@json_option
def pack_cmd(directory: Path, out_file: Path, use_zstd: bool, level: int, split: str | None,
             force: bool, as_json: bool) -> None:
    """Pack a bundle folder into one tar (optionally zstd) or numbered parts."""
    from installer.bundle.pack import pack, parse_size

    size = parse_size(split) if split else None
    with progress(not as_json) as bar:
        result = pack(directory, out_file, zstd=use_zstd, level=level, split=size,
                      force=force, progress=bar)
    if as_json:
        emit_json({"ok": True, **result})
        return
    out.print(f"[ok]packed[/] {esc(directory)} -> {len(result['parts'])} file(s), "
              f"{human(result['size'])}")
    for p in result["parts"]:
        out.print(f"  {esc(p['name'])}  {human(p['size'])}  sha256:{p['sha256']}")
    if result.get("index"):
        out.print(f"  part index {esc(result['index'])}")


@bundle.command("unpack")
@click.argument("source", type=AbsolutePath(dir_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=AbsolutePath())
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@click.option("--trust", "trust_root", type=AbsolutePath(dir_okay=False),
              envvar="AIRLOCK_TRUST_ROOT", show_envvar=True,
              help="Pinned root.json: also check signatures before the folder appears.")
@click.option("--state", "state_dir", type=AbsolutePath(file_okay=False),
              help="Trust state folder (with --trust).")
@json_option
def unpack_cmd(source: Path, out_dir: Path, force: bool, trust_root: Path | None,
               state_dir: Path | None, as_json: bool) -> None:
    """Unpack a packed bundle (a file, the first part, or the part index) into a folder,
    checking every part and every file; nothing is left behind if anything is wrong."""
    from installer.bundle.pack import unpack

    with progress(not as_json) as bar:
        result = unpack(source, out_dir, force=force, progress=bar, trust_root=trust_root,
                        state_dir=state_dir)
    if as_json:
        emit_json({"ok": True, **result})
        return
    out.print(f"[ok]unpacked[/] {esc(result['name'])} v{result['version']} -> "
              f"{esc(result['path'])} "
              f"({result['files']} files verified"
              + (", signatures checked)" if result["signaturesChecked"] else
                 "; signatures NOT checked: add --trust ROOT_JSON)"))




@bundle.command("delta")
@click.argument("new", type=AbsolutePath(file_okay=False, exists=True))
@click.option("--base", required=True,
              type=AbsolutePath(file_okay=False, exists=True),
              help="The older version of the same bundle, already imported on the site.")
@click.option("-o", "--output", required=True, type=AbsolutePath(),
              help="Folder to write the delta into.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@json_option
def delta_cmd(new: Path, base: Path, output: Path, force: bool, as_json: bool) -> None:
    """Write NEW (a signed bundle) without the blobs BASE already carries: what an
    upgrade needs to carry across the air gap. Signatures stay NEW's own."""
    from installer.bundle.delta import make_delta

    result = make_delta(new, base, output, force=force)
    if as_json:
        emit_json(result)
        return
    out.print(f"[ok]delta[/] {esc(result['name'])} v{result['version']} on "
              f"v{result['base']['version']}: {human(result['bytes'])} to carry, "
              f"{result['omittedFiles']} blobs ({human(result['omittedBytes'])}) left to the "
              f"base -> {esc(output)}")


@bundle.command("import")
@click.argument("directory", type=AbsolutePath(file_okay=False, exists=True))
@click.option("-i", "--inventory", required=True, type=AbsolutePath(),
              help="Inventory whose `repo` group names the repo host.")
@click.option("--trust", "trust_root", required=True,
              type=AbsolutePath(dir_okay=False, exists=True),
              envvar="AIRLOCK_TRUST_ROOT", show_envvar=True,
              help="Pinned root.json the bundle's signatures are checked against.")
@click.option("--site", "site", type=AbsolutePath(file_okay=False),
              envvar="AIRLOCK_SITE_DIR", show_envvar=True,
              help="The controller's site folder: CA, apt signing key, trust state, logs "
                   "(default: the user state folder).")
@click.option("--repo-root", help="Folder on the repo host (default offline_repo_root or "
                                  "/srv/airlock).")
@json_option
def import_cmd(directory: Path, inventory: Path, trust_root: Path, site: Path | None,
               repo_root: str | None, as_json: bool) -> None:
    """Verify DIRECTORY, copy it to the repo host (resumable, hashed on arrival) and serve
    it there: registry, apt, pip, npm, models, VSIX and files over TLS."""
    from installer.cli.deploy import _confirm
    from installer.deploy.importer import import_bundle
    from installer.site import project_root, site_dir_default

    def say(msg: str) -> None:
        if not as_json:
            out.print(esc(msg))

    with progress(not as_json) as bar:
        result = import_bundle(project_root(), directory, inventory, trust_root=trust_root,
                               site=site or site_dir_default(), repo_root=repo_root,
                               progress=bar, say=say, live=None if not as_json else False,
                               confirm=_confirm(as_json))
    if as_json:
        emit_json(result)
        return
    out.print(f"[ok]imported[/] {esc(result['release'])} ({result['digest'][:19]}…) on "
              f"{esc(result['repoHost'])}: {result['filesCopied']} files copied "
              f"({human(result['bytesCopied'])}), {result['filesKept']} already there, "
              f"{result['filesFromServed']} linked from the served release; "
              f"{result['run']['changed']} changes in {result['seconds']} s")
    out.print(f"  packages and files: {esc(result['url'])}   images: {esc(result['registry'])}")
