"""The embedded sample bundle's generated inputs.

``bundles/sample/src`` holds the readable sources; this module turns them, byte for byte
the same every time, into what a real staging host would have: a ``docker save`` archive
with two images sharing a base layer, a VSIX package and a model folder with safetensors
weights. They land in ``bundles/sample/build`` (ignored by git); ``bundles/sample.lock.json``
pins their digests, so any drift in this generator fails the build.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from installer.lab.fixtures import ImageDef, make_docker_archive, make_vsix, safetensors

VSCODE = "1.96.4"


def _weights() -> bytes:
    def tensor(n: int, seed: int) -> bytes:
        return struct.pack(f"<{n}f", *((i * 7 + seed) % 13 / 13.0 for i in range(n)))

    return safetensors({"embed.weight": ((16, 8), tensor(128, 1)),
                        "lm_head.weight": ((16, 8), tensor(128, 2))})


def prepare(bundles_dir: Path) -> Path:
    """Write ``bundles/sample/build`` from ``bundles/sample/src``; returns the build folder."""
    src = bundles_dir / "sample" / "src"
    out = bundles_dir / "sample" / "build"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    def read_tree(d: Path) -> dict[str, bytes]:
        return {p.relative_to(d).as_posix(): p.read_bytes()
                for p in sorted(d.rglob("*")) if p.is_file()}

    base = {"etc/os-release": (src / "image/base/os-release").read_bytes()}
    hello = {"usr/local/bin/hello.sh": (src / "image/hello/hello.sh").read_bytes()}
    make_docker_archive(out / "images.tar", [
        ImageDef("sample/base:1.0", [base], labels={"org.opencontainers.image.title": "base"}),
        ImageDef("sample/hello:1.0", [base, hello], cmd=("/usr/local/bin/hello.sh",),
                 labels={"org.opencontainers.image.title": "hello"}),
    ])
    make_vsix(out / "airlock-sample.hello-0.1.0.vsix", "airlock-sample", "hello", "0.1.0",
              "^1.90.0", read_tree(src / "vsix"), display_name="airlock sample")
    # a second extension, carried by the lab bundle but on no whitelist
    make_vsix(out / "airlock-sample.unlisted-0.1.0.vsix", "airlock-sample", "unlisted", "0.1.0",
              "^1.90.0", read_tree(src / "vsix"), display_name="airlock sample (not whitelisted)")
    model = out / "model"
    shutil.copytree(src / "model", model)
    (model / "model.safetensors").write_bytes(_weights())
    return out
