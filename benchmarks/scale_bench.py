#!/usr/bin/env python3
"""What a deploy costs as the site grows: the lab brought up with 5, 10 and 20 plain hosts
(the `scale-N` topology: systemd containers in one zone, the site's DNS and NTP stand-in
beside them), and on each size, in this process:

  preflight  `airlock preflight` (every host asked in parallel: disks, memory, clock)
  first      the baseline every host gets, as airlock runs it (Mitogen): playbooks
             common.yml (site CA, DNS, NTP, journald, sshd hardening, kernel settings)
             and firewall.yml (the zone firewall from the port matrix); no repo host, so
             no package sources (common_repo_manage: false, as the role tests run it)
  no-op      the same again: it must change nothing

and prints each one's seconds, seconds per host, and the shape of the curve: each size's
time against the smallest size's, beside the ratio of their host counts (1.0 per host
added would be linear; less is the fixed cost shared; more would be a cost that grows with
the site). Needs no lab up (it brings up and removes its own) and about 60 MiB of memory
per host.

Usage: python benchmarks/scale_bench.py [--hosts 5,10,20] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer.deploy.preflight import preflight
from installer.deploy.runner import run_playbook
from installer.lab import lab as lab_mod

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ("common.yml", "firewall.yml")


def deploy(inventory: Path, site: Path) -> tuple[float, int]:
    """The baseline playbooks once: (seconds, tasks changed)."""
    seconds, changed = 0.0, 0
    for playbook in BASELINE:
        r = run_playbook(ROOT, playbook, inventory, site=site, live=False,
                         extravars={"common_repo_manage": False})
        seconds += r.seconds
        changed += r.changed
    return seconds, changed


def one_size(n: int, work: Path, say: Any) -> dict[str, Any]:
    t = time.monotonic()
    state = lab_mod.up(ROOT, f"scale-{n}", say=lambda *_: None)
    up = time.monotonic() - t
    try:
        inventory = Path(state.inventory)
        site = work / f"site-{n}"
        t = time.monotonic()
        pre = preflight(ROOT, inventory, site=site, say=lambda *_: None)
        pre_s = time.monotonic() - t
        first_s, first_changed = deploy(inventory, site)
        noop_s, noop_changed = deploy(inventory, site)
    finally:
        lab_mod.down(ROOT, quiet=True)
    hosts = n + 1  # and ns1, which the inventory does not manage
    row = {"hosts": n, "labUpSeconds": round(up, 1), "preflightSeconds": round(pre_s, 2),
           "preflightOk": bool(pre.get("ok")), "firstSeconds": round(first_s, 1),
           "firstChanged": first_changed, "noopSeconds": round(noop_s, 1),
           "noopChanged": noop_changed, "containers": hosts}
    say(f"  {n:3d} hosts: preflight {pre_s:5.1f} s; first deploy {first_s:6.1f} s "
        f"({first_s / n:5.2f} s/host, {first_changed} changes); no-op {noop_s:6.1f} s "
        f"({noop_s / n:5.2f} s/host, {noop_changed} changes)")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="5,10,20", help="lab sizes, comma-separated")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    try:
        sizes = sorted({int(x) for x in a.hosts.split(",") if x.strip()})
    except ValueError:
        ap.error(f"--hosts {a.hosts!r}: expected sizes such as 5,10,20")
    if not sizes:
        ap.error("--hosts: give at least one size")
    say = (lambda s: print(s, file=sys.stderr)) if a.json else print
    lab_mod.refuse_if_up("this benchmark brings up its own lab: airlock lab down first")
    work = Path(tempfile.mkdtemp(prefix="airlock-scale-bench-"))
    rows = []
    try:
        say(f"the baseline ({', '.join(BASELINE)}) on {', '.join(map(str, sizes))} hosts")
        for n in sizes:
            rows.append(one_size(n, work, say))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    small = rows[0]
    for r in rows:
        grow = r["hosts"] / small["hosts"]
        r["firstGrowth"] = round(r["firstSeconds"] / small["firstSeconds"], 2)
        r["noopGrowth"] = round(r["noopSeconds"] / small["noopSeconds"], 2)
        r["hostGrowth"] = round(grow, 2)
    if a.json:
        print(json.dumps({"playbooks": list(BASELINE), "sizes": rows}, indent=2))
        return 0
    print("shape: time against the smallest size, beside the host count's ratio")
    for r in rows:
        print(f"  {r['hosts']:3d} hosts: x{r['hostGrowth']:<5} hosts -> first x"
              f"{r['firstGrowth']:<5} no-op x{r['noopGrowth']:<5} preflight "
              f"{r['preflightSeconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
