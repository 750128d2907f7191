#!/usr/bin/env python3
"""Import's copy to the repo host against the stock tools, over the same SSH link, in the
same run, on the same bytes.

Not a test: it prints figures. Makes --size-gib GiB of incompressible files (model weights
are), warms the page cache, then copies them to the inventory's repo host, each way into a
fresh folder under the repo root, --rounds times (the best round counts):

  scp        OpenSSH's scp (no compression), the same ssh options: the baseline
  rsync      rsync -e ssh --whole-file, where rsync is on both ends (else said and skipped)
  sftp       paramiko's SFTP, pipelined: what airlock import used before
  airlock    installer/deploy/transfer.py: one OpenSSH stream, each file hashed on the host
             as it lands (scp and rsync do not hash; the ratio includes that work)
  unhashed   the same with the receiver's hashing taken out (not a way airlock copies: it
             shows what hashing on arrival costs where both ends share the cores)

and prints each one's MiB/s and airlock's ratio to the best stock tool (aim: at least 0.9).
In the lab the link is a bridge between containers on this machine: the copy is CPU-bound
(encryption on both ends shares the cores), so the ratio, not the MiB/s, carries over.

Usage: python benchmarks/import_bench.py -i LAB/inventory.yml --site OUT/site
           [--size-gib 1] [--files 4] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundle_bench import write_random

from installer.deploy import inventory as inv_mod
from installer.deploy import transfer
from installer.deploy.ssh import Remote

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def make_files(d: Path, total: int, n: int) -> list[Path]:
    files = []
    for k in range(n):
        p = d / f"weights-{k:02d}.safetensors"
        write_random(p, total // n)
        files.append(p)
    for p in files:  # warm the page cache: every way reads from memory
        with open(p, "rb") as f:
            while f.read(16 * MiB):
                pass
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-i", "--inventory", type=Path, required=True)
    ap.add_argument("--site", type=Path, required=True)
    ap.add_argument("--size-gib", type=float, default=1.0)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    inv = inv_mod.load(a.inventory, ROOT)
    host = inv.first("repo")
    total = int(a.size_gib * (1 << 30)) // a.files * a.files
    ssh = transfer.ssh_argv(host, a.site)
    opts, target = ssh[1:-2], host.address  # scp and rsync take ssh's options
    work = Path(tempfile.mkdtemp(prefix="airlock-import-bench-"))
    remote_base = f"{host.repo_root}/bench-{os.getpid()}"
    results: dict[str, float] = {}
    notes: dict[str, str] = {}
    with Remote(host, a.site) as r:
        try:
            files = make_files(work, total, a.files)
            r.run(["mkdir", "-p", remote_base])
            r.run(["chown", host.user, remote_base])  # scp and rsync write as the login user
            have_rsync = (shutil.which("rsync") is not None
                          and r.run(["sh", "-c", "command -v rsync"], check=False)[0] == 0)
            if not have_rsync:
                notes["rsync"] = "not installed on both ends: skipped"

            def fresh(name: str) -> str:
                d = f"{remote_base}/{name}"
                r.run(["rm", "-rf", d])
                r.run(["mkdir", "-p", d])
                r.run(["chown", host.user, d])
                return d

            def scp() -> None:
                d = fresh("scp")
                subprocess.run(["scp", "-q", "-P", str(host.port), *_scp_opts(opts),
                                *map(str, files), f"{host.user}@{target}:{d}/"], check=True)

            def rsync() -> None:
                d = fresh("rsync")
                rsh = " ".join(shlex.quote(x) for x in ["ssh", *opts])
                subprocess.run(["rsync", "-a", "--whole-file", "-e", rsh, *map(str, files),
                                f"{target}:{d}/"], check=True)

            def sftp() -> None:
                d = fresh("sftp")
                for p in files:
                    with open(p, "rb") as src, r.sftp.open(f"{d}/{p.name}", "wb") as dst:
                        dst.set_pipelined(True)
                        while chunk := src.read(MiB):
                            dst.write(chunk)

            def airlock() -> None:
                d = fresh("airlock")
                got = transfer.send(host, a.site, d, [transfer.Send(p.name, p, 0, total // a.files)
                                                      for p in files])
                assert len(got) == len(files)

            def unhashed() -> None:
                # the same stream with the receiver's hashing taken out: what hashing on
                # arrival costs where both ends share this machine's cores
                d = fresh("unhashed")
                saved = transfer.RECEIVER
                transfer.RECEIVER = saved.replace("digest.update(view[:n])", "pass")
                assert saved != transfer.RECEIVER, "the receiver's hashing line moved"
                try:
                    transfer.send(host, a.site, d, [transfer.Send(p.name, p, 0, total // a.files)
                                                    for p in files])
                finally:
                    transfer.RECEIVER = saved

            ways = {"scp": scp, "sftp": sftp, "airlock": airlock, "unhashed": unhashed}
            if have_rsync:
                ways["rsync"] = rsync
            for _ in range(a.rounds):
                for name, fn in ways.items():
                    t = time.perf_counter()
                    fn()
                    rate = total / (time.perf_counter() - t) / MiB
                    results[name] = max(results.get(name, 0.0), rate)
        finally:
            r.run(["rm", "-rf", remote_base], check=False)
            shutil.rmtree(work, ignore_errors=True)
    best = max(v for k, v in results.items() if k in ("scp", "rsync"))
    ratio = results["airlock"] / best
    doc = {"bytes": total, "files": a.files, "rounds": a.rounds, "MiBps": results,
           "notes": notes, "airlockToBestStock": round(ratio, 3),
           "sftpToBestStock": round(results["sftp"] / best, 3),
           "unhashedToBestStock": round(results["unhashed"] / best, 3)}
    if a.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"copy of {total / MiB:.0f} MiB in {a.files} files to {host.name} "
          f"(best of {a.rounds} rounds)")
    for name in ("scp", "rsync", "sftp", "airlock", "unhashed"):
        if name in results:
            print(f"  {name:8s} {results[name]:8.1f} MiB/s   "
                  f"{results[name] / best:5.2f}x the best stock tool")
        else:
            print(f"  {name:8s} {notes.get(name, '-')}")
    print(f"airlock / best stock tool: {ratio:.2f} (aim: at least 0.9; airlock also hashes "
          "every byte on arrival)")
    return 0


def _scp_opts(opts: list[str]) -> list[str]:
    """ssh's -o options (and -i) for scp; the others (-T, -e, -p, -l) are ssh's own."""
    out, k = [], 0
    while k < len(opts):
        if opts[k] in ("-o", "-i"):
            out += opts[k:k + 2]
            k += 2
        elif opts[k] in ("-e", "-p", "-l"):
            k += 2
        else:
            k += 1
    return out


if __name__ == "__main__":
    sys.exit(main())
