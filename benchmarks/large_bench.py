#!/usr/bin/env python3
"""A model-weight bundle of --size-gib (20 by default) through every stage it meets on its
way across the air gap, each against a stock baseline run in the same process on the same
bytes, with the stage's peak memory.

Not a test: it prints figures. Generates the weights (incompressible, as real ones are; no
download), then:

  build    `airlock bundle build`  vs  cp -r of the inputs, then sha256sum on every core
  verify   `airlock bundle verify` vs  sha256sum of every file on every core
  pack     `airlock bundle pack --split`  vs  tar -c | split -b (same part size)
  unpack   `airlock bundle unpack` (hashes as it writes, then verifies)  vs  cat | tar -x
  import   import's copy to the inventory's repo host (one OpenSSH stream, hashed on
           arrival)  vs  scp of the same files  (only with -i and --site: a lab is up)

Each airlock stage runs in a fresh process: its peak is the kernel's high-water mark of
that process's memory (VmHWM), which must not grow with the bundle. Stages delete what the
next does not need, so the work folder needs about twice --size-gib free (checked first);
the repo host needs --size-gib free for the import stage.

Usage: python benchmarks/large_bench.py [--size-gib 20] [--shard-gib 2] [--part-size 4G]
           [--work DIR] [-i LAB/inventory.yml --site OUT/site] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundle_bench import build_in, fresh, timed, write_random

from installer.bundle.digest import workers

MiB, GiB = 1 << 20, 1 << 30


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def make_weights(d: Path, total: int, shard: int) -> None:
    model = d / "model"
    model.mkdir(parents=True)
    n = max(1, -(-total // shard))
    left = total
    for i in range(n):
        size = min(shard, left)
        write_random(model / f"model-{i + 1:05d}-of-{n:05d}.safetensors", size)
        left -= min(shard, left)
    (model / "config.json").write_text('{"architectures": ["BenchForCausalLM"]}\n')
    (d / "spec.yaml").write_text("apiVersion: airlock/v1\nname: weights\nversion: 1\n"
                                 "phase: pilot\nmodels:\n  - {name: weights, path: model}\n")


def _drop(*paths: Path) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


# --- the airlock stages, each run in a fresh process by fresh() -------------------------

def _verify(bundle: str) -> int:
    from installer.bundle.verify import verify

    report = verify(Path(bundle))
    if not report.ok:
        raise SystemExit(f"verify failed: {report.problems[:3]}")
    return report.bytes


def _pack(bundle: str, out: str, part: int) -> None:
    from installer.bundle.pack import pack

    pack(Path(bundle), Path(out), zstd=False, level=3, split=part, force=True)


def _unpack(index: str, out: str) -> None:
    from installer.bundle.pack import unpack

    unpack(Path(index), Path(out), force=True)


def files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())


def parallel_sha256sum(d: Path) -> str:
    return (f"find {d} -type f -print0 | xargs -0 -P {workers()} -n 4 sha256sum "
            "> /dev/null")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=20.0)
    ap.add_argument("--shard-gib", type=float, default=2.0, help="size of one weight file")
    ap.add_argument("--part-size", default="4G", help="pack's --split (K, M, G)")
    ap.add_argument("--work", type=Path, help="work folder (default: a new one in /tmp)")
    ap.add_argument("-i", "--inventory", type=Path, help="the lab's inventory (import stage)")
    ap.add_argument("--site", type=Path, help="the lab's site folder (import stage)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from installer.bundle.pack import parse_size

    total = int(a.size_gib * GiB)
    part = parse_size(a.part_size)
    work = a.work or Path(tempfile.mkdtemp(prefix="airlock-large-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    need = int(total * 2.1) + GiB
    if _free(work) < need:
        print(f"{work}: {_free(work) / GiB:.1f} GiB free, the benchmark needs about "
              f"{need / GiB:.1f} GiB (twice --size-gib): use a smaller --size-gib or "
              "another --work", file=sys.stderr)
        return 2
    say: Callable[[str], None] = (lambda s: print(s, file=sys.stderr)) if a.json else print
    inputs, bundle, parts, unpacked = (work / "inputs", work / "bundle", work / "parts",
                                       work / "unpacked")
    rows: list[dict[str, Any]] = []

    def row(stage: str, nbytes: int, secs: float, base: str, base_secs: float,
            peak: float | None) -> None:
        r = {"stage": stage, "bytes": nbytes, "seconds": round(secs, 2),
             "MiBps": round(nbytes / secs / MiB, 1), "baseline": base,
             "baselineSeconds": round(base_secs, 2),
             "ratio": round(secs / base_secs, 3),
             "peakMiB": round(peak, 1) if peak is not None else None}
        rows.append(r)
        say(f"  {stage:7s} {r['MiBps']:7.1f} MiB/s  {secs:7.1f} s   {base}: "
            f"{base_secs:7.1f} s  -> {r['ratio']:.2f}x its time"
            + (f"   peak {peak:.0f} MiB" if peak is not None else ""))

    try:
        say(f"machine: {workers()} cores; {total / GiB:.1f} GiB of weights in "
            f"{a.shard_gib:g} GiB files; work folder {work}")
        t = time.perf_counter()
        make_weights(inputs, total, int(a.shard_gib * GiB))
        say(f"  made the weights in {time.perf_counter() - t:.0f} s")
        os.environ.setdefault("SOURCE_DATE_EPOCH", "1767225600")

        base = timed(f"cp -r {inputs} {work}/copy && " + parallel_sha256sum(work / "copy"))
        _drop(work / "copy")
        secs, peak, _ = fresh(build_in, str(inputs / "spec.yaml"), str(bundle))
        row("build", total, secs, f"cp, then sha256sum on {workers()} cores", base, peak)
        _drop(inputs)

        size = sum(p.stat().st_size for p in files_under(bundle))
        base = timed(parallel_sha256sum(bundle))
        secs, peak, checked = fresh(_verify, str(bundle))
        row("verify", checked, secs, f"sha256sum on {workers()} cores", base, peak)

        (work / "baseline-parts").mkdir()
        base = timed(f"tar -C {bundle} -cf - . | split -b {part} - "
                  f"{work}/baseline-parts/bundle.tar.part")
        _drop(work / "baseline-parts")
        parts.mkdir()
        secs, peak, _ = fresh(_pack, str(bundle), str(parts / "bundle.tar"), part)
        n_parts = len(list(parts.glob("bundle.tar.part*")))
        row("pack", size, secs, "tar -c | split -b", base, peak)
        _drop(bundle)

        (work / "baseline-unpacked").mkdir()
        base = timed(f"cat {parts}/bundle.tar.part* | tar -C {work}/baseline-unpacked -xf -")
        _drop(work / "baseline-unpacked")
        secs, peak, _ = fresh(_unpack, str(parts / "bundle.tar.parts.json"), str(unpacked))
        row("unpack", size, secs, "cat | tar -x", base, peak)
        _drop(parts)

        if a.inventory and a.site:
            row(*import_stage(unpacked, a.inventory, a.site, size, say))
        else:
            say("  import  not run: give -i INVENTORY --site SITE of a lab that is up")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            for p in (inputs, bundle, parts, unpacked, work / "copy",
                      work / "baseline-parts", work / "baseline-unpacked"):
                _drop(p)
    doc = {"bytes": total, "shardBytes": int(a.shard_gib * GiB), "partBytes": part,
           "parts": n_parts, "cores": workers(), "stages": rows}
    if a.json:
        print(json.dumps(doc, indent=2))
    return 0


def import_stage(unpacked: Path, inventory: Path, site: Path, size: int,
                 say: Callable[[str], None]) -> tuple[Any, ...]:
    """scp of the bundle's files to a scratch folder under the repo host's root, then
    import's own copy of them to another: (row arguments)."""
    from import_bench import _scp_opts

    from installer.deploy import inventory as inv_mod
    from installer.deploy import transfer
    from installer.deploy.ssh import Remote

    root = Path(__file__).resolve().parent.parent
    host = inv_mod.load(inventory, root).first("repo")
    files = files_under(unpacked)
    ssh = transfer.ssh_argv(host, site)
    remote_base = f"{host.repo_root}/large-bench-{os.getpid()}"
    with Remote(host, site) as r:
        r.run(["mkdir", "-p", host.repo_root])
        _, out, _ = r.run(["df", "--output=avail", "-B1", host.repo_root])
        if int(out.split()[-1]) < size + GiB:
            raise SystemExit(f"{host.name}:{host.repo_root} has not {size / GiB:.1f} GiB "
                             "free for the import stage")
        try:
            r.run(["mkdir", "-p", f"{remote_base}/scp"])
            r.run(["chown", host.user, f"{remote_base}/scp"])
            t = time.perf_counter()
            subprocess.run(["scp", "-q", "-r", "-P", str(host.port), *_scp_opts(ssh[1:-2]),
                            str(unpacked), f"{host.user}@{host.address}:{remote_base}/scp/"],
                           check=True)
            base = time.perf_counter() - t
            r.run(["rm", "-rf", f"{remote_base}/scp"])
            sends = [transfer.Send(str(p.relative_to(unpacked)), p, 0, p.stat().st_size)
                     for p in files]
            # the receiver writes into folders that exist (import makes them first)
            r.run(["mkdir", "-p", *sorted({str(Path(f"{remote_base}/airlock") / s.rel).rsplit(
                "/", 1)[0] for s in sends})])
            t = time.perf_counter()
            got = transfer.send(host, site, f"{remote_base}/airlock", sends)
            secs = time.perf_counter() - t
            if len(got) != len(files):
                raise SystemExit(f"import's copy answered for {len(got)} of {len(files)}")
        finally:
            r.run(["rm", "-rf", remote_base], check=False)
    say(f"  (import: {len(files)} files to {host.name}; airlock hashes each on arrival, "
        "scp does not)")
    return ("import", size, secs, "scp", base, None)


if __name__ == "__main__":
    sys.exit(main())
