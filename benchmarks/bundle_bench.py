#!/usr/bin/env python3
"""Bundle build and verify speed, and bundle size, against baselines run in the same process.

Not a test: it prints figures. Makes about --size-gib GiB of mixed content (model weights,
two images sharing a base layer, a VSIX, duplicated files), warms the page cache, then:

  limit      = cores x single-core hashlib.sha256 throughput (measured here, first)
  verify     = `airlock bundle verify` throughput, against the limit and `sha256sum -c`
  build      = `airlock bundle build` time, against `tar -c | zstd -T0 -3` of the same input
               and against `cp -r` then `sha256sum` of every copy on every core
  memory     = the build's peak RSS, in a process of its own (bounded whatever the sizes)
  size       = bundle size, against the sum of unique input bytes

Usage: python benchmarks/bundle_bench.py [--size-gib 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer.bundle.build import BuildOptions, build
from installer.bundle.digest import workers
from installer.bundle.verify import verify
from installer.lab.fixtures import ImageDef, make_docker_archive, make_vsix

MiB = 1 << 20


def single_core_sha256() -> float:
    buf = os.urandom(256 * MiB)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        hashlib.sha256(buf).digest()
        best = max(best, len(buf) / (time.perf_counter() - t))
    return best


def make_inputs(d: Path, total: int) -> int:
    """Returns the sum of unique input bytes."""
    weights = int(total * 0.8)
    n_w = 8
    model = d / "model"
    model.mkdir(parents=True)
    for i in range(n_w):
        with open(model / f"model-{i:05d}-of-{n_w:05d}.safetensors", "wb") as f:
            for _ in range(weights // n_w // (16 * MiB)):
                f.write(os.urandom(16 * MiB))
    for i in range(200):  # many small files
        (model / f"extra/tok-{i:03d}.json").parent.mkdir(exist_ok=True)
        (model / f"extra/tok-{i:03d}.json").write_text(f'{{"id": {i}, "text": "{"x" * 2000}"}}\n')
    layer = int(total * 0.08)
    base = {"usr/lib/base.bin": os.urandom(layer // 2) + b"\0" * (layer // 2)}
    app = {"app/app.bin": os.urandom(layer // 2)}
    make_docker_archive(d / "images.tar", [ImageDef("bench/base:1", [base]),
                                           ImageDef("bench/app:1", [base, app])])
    make_vsix(d / "ext.vsix", "bench", "ext", "1.0.0", "^1.80.0",
              {"dist/ext.js": os.urandom(4 * MiB)})
    shutil.copy(model / "model-00000-of-00008.safetensors", d / "copy-of-a-shard.bin")
    (d / "spec.yaml").write_text("""apiVersion: airlock/v1
name: bench
version: 1
phase: pilot
target: {vscode: "1.96.4"}
images:
  - {name: base, ref: "docker-archive:images.tar:bench/base:1"}
  - {name: app, ref: "docker-archive:images.tar:bench/app:1"}
models:
  - {name: shards, path: model}
vsix:
  - path: ext.vsix
files:
  - {name: duplicate-shard, path: copy-of-a-shard.bin}
""")
    unique = {}
    for p in d.rglob("*"):
        if p.is_file() and p.name not in ("spec.yaml", "images.tar"):
            unique[_sha(p)] = p.stat().st_size
    unique[hashlib.sha256(b"".join(sorted(base.values()))).hexdigest()] = layer  # base once
    unique["app"] = len(app["app/app.bin"])
    return sum(unique.values())


def _sha(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(8 * MiB):
            h.update(b)
    return h.hexdigest()


def warm(paths: list[Path]) -> None:
    for root in paths:
        subprocess.run(f"find {root} -type f -exec cat {{}} + > /dev/null", shell=True,
                       check=True)


def timed(cmd: str, cwd: Path | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, cwd=cwd, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def build_in(spec: str, out: str) -> None:
    build(Path(spec), Path(out), BuildOptions())


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[float, float, Any]:
    t = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t, peak_rss_mib(), result


def fresh(fn: Callable[..., Any], *args: Any) -> tuple[float, float, Any]:
    """FN(*ARGS) in a process of its own: (seconds, peak RSS in MiB, result). The peak is
    the kernel's high-water mark of that process's own memory (VmHWM), not getrusage's
    ru_maxrss: Linux carries ru_maxrss across fork and exec, so a spawned child would
    report the parent's size at the fork (the benchmark's own buffers)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_timed, fn, *args).result()


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def write_random(path: Path, size: int) -> None:
    """SIZE incompressible bytes (model weights are) into PATH, 16 MiB at a time."""
    with open(path, "wb") as f:
        while size:
            chunk = os.urandom(min(size, 16 * MiB))
            f.write(chunk)
            size -= len(chunk)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--keep", type=Path, help="work folder to use and keep")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="airlock-bench-"))
    inputs, out = work / "inputs", work / "bundle"
    for p in (inputs, out):
        if p.exists():
            shutil.rmtree(p)
    print(f"machine: {workers()} cores; work folder {work}")

    one = single_core_sha256()
    limit = one * workers()
    print(f"hashlib.sha256, one core:   {one / 1e9:6.2f} GB/s   limit = {workers()} x that = "
          f"{limit / 1e9:.2f} GB/s")

    unique = make_inputs(inputs, int(args.size_gib * (1 << 30)))
    total_in = sum(p.stat().st_size for p in inputs.rglob("*") if p.is_file())
    print(f"inputs: {total_in / 1e9:.2f} GB on disk, {unique / 1e9:.2f} GB unique")

    warm([inputs])
    t_tar = timed(f"tar -C {inputs} -cf - . | zstd -q -T0 -3 -o {work}/baseline.tar.zst -f")
    (work / "baseline.tar.zst").unlink()
    # a plain parallel copy, then every copied file hashed on every core
    warm([inputs])
    t_cp = timed(f"cp -r {inputs} {work}/copy && find {work}/copy -type f -print0 | "
                 f"xargs -0 -P {workers()} -n 16 sha256sum > /dev/null")
    shutil.rmtree(work / "copy")
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1767225600")
    warm([inputs])
    # in a fresh process: its peak memory is the build's own
    t_build, peak, _ = fresh(build_in, str(inputs / "spec.yaml"), str(out))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())

    warm([out])
    t = time.perf_counter()
    report = verify(out)
    t_verify = time.perf_counter() - t
    assert report.ok, report.problems
    t_sum = timed("sha256sum -c --quiet SHA256SUMS", cwd=out)

    rate = report.bytes / t_verify
    print()
    print(f"verify:  {report.bytes / 1e9:.2f} GB in {t_verify:6.2f} s = {rate / 1e9:5.2f} GB/s"
          f"  -> {rate / limit:5.1%} of the limit (aim >= 80%)")
    print(f"         sha256sum -c: {t_sum:6.2f} s  -> airlock is {t_sum / t_verify:4.1f}x faster")
    print(f"build:   {t_build:6.2f} s;  tar | zstd -T0 -3: {t_tar:6.2f} s  -> "
          f"{t_build / t_tar:4.2f}x its time (aim <= 1.3x)")
    print(f"         cp, then sha256sum on {workers()} cores: {t_cp:6.2f} s  -> "
          f"{t_build / t_cp:4.2f}x its time (aim <= 1.1x)")
    print(f"memory:  the build's peak RSS {peak:.0f} MiB for {total_in / 2**20:.0f} MiB of "
          "inputs (bounded: chunks, not files, are in memory)")
    print(f"size:    bundle {size / 1e9:.3f} GB; unique inputs {unique / 1e9:.3f} GB -> "
          f"{size / unique:5.3f}x (shared layer and duplicate shard stored once)")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
