"""``airlock demo``: the main job end to end on the embedded sample.

Today: make the sample's inputs, build the bundle from ``bundles/sample.yaml`` with its lock
(``--locked``: the committed lock must match byte for byte), verify it, inspect it, pack it
into parts and unpack them again. Later releases add signing, the lab and the deploy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from installer.bundle.build import BuildOptions, build
from installer.bundle.pack import pack, unpack
from installer.bundle.verify import verify
from installer.console import out, progress
from installer.errors import IntegrityError
from installer.lab import sample


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "bundles" / "sample.yaml").is_file():
            return parent
    raise click.ClickException("bundles/sample.yaml not found: run airlock demo from a "
                               "checkout of the airlock repository")


@click.command()
@click.option("-o", "--output", "work", type=click.Path(path_type=Path), default=Path("out/demo"),
              show_default=True, help="Folder for the demo's bundle and packed parts.")
def demo(work: Path) -> None:
    """Build, verify, inspect, pack and unpack the embedded sample bundle."""
    root = repo_root()
    spec = root / "bundles" / "sample.yaml"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    out.rule("[key]1. sample inputs")
    built = sample.prepare(root / "bundles")
    out.print(f"made {built} (docker archive, VSIX, model folder) from bundles/sample/src")

    out.rule("[key]2. build")
    with progress() as bar:
        result = build(spec, work / "bundle", BuildOptions(locked=True), bar)
    out.print(f"[ok]built[/] {result.name} v{result.version}: {result.artifacts} artifacts, "
              f"{result.blobs} blobs, digest {result.digest} (reproducible: lock unchanged)")

    out.rule("[key]3. verify")
    with progress() as bar:
        report = verify(result.path, bar)
    if not report.ok:
        raise IntegrityError("the fresh bundle does not verify", report.problems)
    out.print(f"[ok]verified[/] {report.files} files, every sha256 matches SHA256SUMS")

    out.rule("[key]4. inspect")
    from installer.cli.bundle import inspect_cmd

    inspect_cmd.callback(result.path, False)  # type: ignore[misc]

    out.rule("[key]5. pack into parts and unpack")
    with progress() as bar:
        packed = pack(result.path, work / "sample.tar.zst", zstd=True, level=3,
                      split=4096, force=False, progress=bar)
    out.print(f"packed into {len(packed['parts'])} parts of at most 4 KiB, index "
              f"{packed['index']}")
    with progress() as bar:
        unpacked = unpack(work / "sample.tar.zst.part001", work / "unpacked", force=False,
                          progress=bar)
    out.print(f"[ok]unpacked[/] and verified {unpacked['files']} files -> {unpacked['path']}")

    out.rule("[key]what to look at")
    out.print(f"  bundle:   {result.path}")
    out.print(f"  image:    skopeo inspect oci:{result.path}:image.hello")
    out.print(f"  check it: cd {result.path} && sha256sum -c SHA256SUMS")
    out.print(f"  SBOM:     {result.path / 'sbom.cdx.json'}")
