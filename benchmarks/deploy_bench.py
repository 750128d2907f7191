#!/usr/bin/env python3
"""A deploy that changes nothing, against the first deploy of the same lab, in one process.

Not a test: it prints figures. Builds and signs the lab bundle (the lab's images are cached
by recipe), brings up a fresh lab (--topology, PoC by default), imports the bundle, then
deploys the phase twice with `airlock deploy`'s own code: the first run converges fresh
hosts (the baseline), the second changes nothing. Prints both times, their ratio (aim: at
most 0.25), the second run's changes (idempotence: 0) and where its time went (the slowest
tasks, from Ansible's own event stream).

It needs the lab (the container engine at DOCKER_HOST and the subnets free): a lab already
up is refused, never taken down. Its lab goes down at the end unless --keep-lab.

Usage: python benchmarks/deploy_bench.py [--topology poc] [--work DIR] [--keep-lab]
           [--top 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent


def slowest_tasks(artifacts: Path, top: int) -> list[tuple[float, str]]:
    """(seconds, play/task) of a run, from the job events ansible-runner kept: a task's
    time is from its start to the next task's (or the play's end)."""
    starts: list[tuple[datetime, str]] = []
    end = None
    for f in sorted((artifacts / "job_events").glob("*.json"),
                    key=lambda p: int(p.name.split("-", 1)[0])):
        ev = json.loads(f.read_text())
        when = datetime.fromisoformat(ev["created"])
        if ev["event"] == "playbook_on_task_start":
            data = ev["event_data"]
            starts.append((when, f"{data.get('play', '')}: {data.get('task', '')}"))
        end = when
    spent: dict[str, float] = defaultdict(float)
    for (t, name), (t_next, _) in zip(starts, [*starts[1:], (end, "")], strict=True):
        spent[name] += (t_next - t).total_seconds()
    return sorted(((s, n) for n, s in spent.items()), reverse=True)[:top]


def main() -> int:
    from installer.bundle import keys
    from installer.cli.demo import build_lab_bundle
    from installer.deploy.deploy import deploy
    from installer.deploy.importer import import_bundle
    from installer.deploy.preflight import preflight
    from installer.lab import lab

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--topology", default="poc")
    ap.add_argument("--work", type=Path, help="work folder (kept); default a new temporary one")
    ap.add_argument("--keep-lab", action="store_true")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    say = (lambda m: None) if a.json else (lambda m: print(f"  {m}", flush=True))
    lab.refuse_if_up("this benchmark brings up a lab of its own: `airlock lab down` first")
    work = a.work or Path(tempfile.mkdtemp(prefix="airlock-deploy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    passphrase = secrets.token_urlsafe(24)
    kd = work / "keys"
    if kd.exists():
        shutil.rmtree(kd)
    keys.init(kd, 3, 2, None, passphrase, keys.Policy())
    built = build_lab_bundle(ROOT, work / "lab-bundle", kd, passphrase)
    state = lab.up(ROOT, a.topology, say=say)
    try:
        site, inventory = work / "site", Path(state.inventory)
        pf = preflight(ROOT, inventory, site=site, bundle=built.path, say=say)
        if not pf["ok"]:
            raise SystemExit(f"preflight failed: {pf['failed']}")
        import_bundle(ROOT, built.path, inventory, trust_root=kd / "root.json", site=site,
                      say=say)
        runs = [deploy(ROOT, inventory, site=site, phase=a.topology, say=say, live=False)["run"]
                for _ in range(2)]
    finally:
        if not a.keep_lab:
            lab.down(ROOT)
    first, again = runs
    changed = sum(h["changed"] for h in again["stats"].values())
    log = Path(again["log"]).parent
    doc = {"topology": a.topology, "hosts": len(first["stats"]),
           "firstSeconds": first["seconds"], "noopSeconds": again["seconds"],
           "ratio": round(again["seconds"] / first["seconds"], 3),
           "firstChanges": sum(h["changed"] for h in first["stats"].values()),
           "noopChanges": changed,
           "slowestNoopTasks": [{"seconds": round(s, 1), "task": n}
                                for s, n in slowest_tasks(log, a.top)]}
    if a.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"lab {a.topology}, {doc['hosts']} hosts")
    print(f"  first deploy:         {first['seconds']:7.1f} s  ({doc['firstChanges']} changes)")
    print(f"  deploy again (no-op): {again['seconds']:7.1f} s  ({changed} changes)")
    print(f"  ratio: {doc['ratio']:.2f} (aim: at most 0.25)")
    print(f"  where the no-op run's time went (the {a.top} slowest tasks):")
    for t in doc["slowestNoopTasks"]:
        print(f"    {t['seconds']:6.1f} s  {t['task']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
