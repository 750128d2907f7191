"""``airlock deploy`` and ``airlock status``: site.yml with a lock, records and a way back.

- One deploy per inventory at a time: an exclusive ``flock`` in the site folder, keyed by
  the inventory's real path; the kernel drops it when the process ends, however it ends.
- Every run is written down twice: ``SITE/runs/IDENT.json`` (stats per host, the tasks
  that changed, failures) and the hash-chained audit log (a ``started`` record before, the
  result after, so a run killed outright still shows).
- Ctrl-C or SIGTERM stops ansible-playbook cleanly (ansible-runner's cancel); every role is
  idempotent, so running the same command again resumes.
"""

from __future__ import annotations

import json
import posixpath
import signal
import time
from pathlib import Path
from typing import Any

from installer.deploy import hostkeys
from installer.deploy import inventory as inv_mod
from installer.deploy.audit import AuditLog
from installer.deploy.runner import RunResult, run_playbook
from installer.deploy.ssh import Remote, each_known_host
from installer.errors import DeployError, HostError, UsageError
from installer.site import MARKER, InventoryLock

PHASES = ("poc", "pilot", "production")
DEPLOYED = "/etc/airlock/deployment.json"


class Canceled(DeployError):
    exit_code = 130


class _StopOnSignal:
    """While a playbook runs, Ctrl-C and SIGTERM ask ansible-runner to stop it."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signum

    def __enter__(self) -> _StopOnSignal:
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def served_release(inv: inv_mod.Inventory, site: Path) -> dict[str, Any] | None:
    """What the repo host serves now (the import marker of ``ROOT/current``), or None."""
    repo = inv.first("repo")
    with Remote(repo, site) as r:
        rc, out, _ = r.run(["cat", posixpath.join(repo.repo_root, "current", MARKER)],
                           check=False)
    try:
        doc = json.loads(out) if rc == 0 else None
    except ValueError:
        doc = None
    return doc if isinstance(doc, dict) else None


def check_phase(inv: inv_mod.Inventory, phase: str | None) -> str:
    declared = inv.var("airlock_phase")
    if declared not in PHASES:
        raise UsageError(f"{inv.path}: airlock_phase is {declared!r}; group_vars/all must set "
                         f"it to one of {', '.join(PHASES)}")
    if phase and phase != declared:
        raise UsageError(f"{inv.path} is a {declared} inventory, not {phase}",
                         hint=f"use the {phase} inventory (inventories/{phase}) or drop --phase")
    return str(declared)


def _save_run(site: Path, run: RunResult, extra: dict[str, Any]) -> Path:
    runs = site / "runs"
    runs.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = runs / f"{run.ident}.json"
    doc = {**extra, **run.to_json(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def deploy(root: Path, inventory: Path, *, site: Path, phase: str | None = None,
           check: bool = False, tags: str | None = None, limit: str | None = None,
           live: bool | None = None, say: Any = print, command: str = "deploy",
           playbook: str = "site.yml", audit_extra: dict[str, Any] | None = None,
           confirm: hostkeys.Confirm | None = None,
           extravars: dict[str, Any] | None = None) -> dict[str, Any]:
    inv = inv_mod.load(inventory, root)
    declared = check_phase(inv, phase)
    audit = AuditLog(site)
    with InventoryLock(site, inventory, command):
        # every host's SSH key checked before Ansible connects (a changed one is refused
        # here, by name, with both fingerprints)
        hostkeys.ensure([inv.host(h) for h in inv.hosts], site, confirm=confirm, say=say)
        served = served_release(inv, site)
        if served is None:
            repo = inv.first("repo")
            raise DeployError(f"{repo.name} serves nothing yet ({repo.repo_root}/current is "
                              "missing): the hosts would have nowhere to install from",
                              hint="airlock bundle import BUNDLE -i INVENTORY --trust ROOT")
        fields = {"phase": declared, "inventory": {"path": str(inventory.resolve()),
                                                   "digest": inv.digest},
                  "bundle": {k: served.get(k) for k in ("name", "version", "sha256sums")},
                  "check": check, "tags": tags, "limit": limit, **(audit_extra or {})}
        if extravars:
            fields["extravars"] = extravars
        audit.append(command, "started", **fields)
        say(f"{command}: {served.get('name')} v{served.get('version')} to "
            f"{len(inv.hosts)} host(s) of {inventory} ({declared})" + (" [check]" if check
                                                                        else ""))
        with _StopOnSignal() as stop:
            run = run_playbook(root, playbook, inventory, site=site, check=check,
                               tags=tags, limit=limit, extravars=extravars,
                               title=command, live=live, raise_on_failure=False, cancel=stop)
        result = ("ok" if run.ok else "canceled" if run.status == "canceled" or stop.signal
                  else "failed")
        record_path = _save_run(site, run, {"command": command, "result": result, **fields})
        audit.append(command, result, run=run.ident, seconds=round(run.seconds, 1),
                     changed=run.changed, stats=run.stats, failures=run.failures[:5],
                     record=str(record_path), **fields)
    again = f"airlock {command} -i {inventory}" + (f" --limit {limit}" if limit else "")
    if result == "canceled":
        raise Canceled(f"{command} stopped by signal {stop.signal} after {run.seconds:.0f} s; "
                       f"the log is {run.log}",
                       hint=f"run it again to finish (every role is idempotent): {again}")
    if result == "failed":
        if run.failures:
            f = run.failures[0]
            what = f"task '{f['task']}' failed on {f['host']}: {f['message'][:600]}"
            hosts = sorted({x["host"] for x in run.failures})
            resume = (f"fix it on {', '.join(hosts)}, then run again ({again}), or only "
                      f"there: airlock {command} -i {inventory} --limit {','.join(hosts)}")
        else:
            what = f"ansible-playbook ended with {run.status} (rc {run.rc})"
            resume = f"fix the cause, then run again: {again}"
        raise DeployError(f"{command}: {what}", hint=f"{resume}; full log: {run.log}")
    return {"ok": True, "command": command, "phase": declared, "check": check,
            "release": fields["bundle"], "record": str(record_path), "run": run.to_json()}


# --------------------------------------------------------------------------- status

def _last_runs(site: Path, inventory: Path) -> list[dict[str, Any]]:
    """This inventory's run records, newest first."""
    inv_path = str(inventory.resolve())
    out = []
    for p in sorted((site / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime,
                    reverse=True):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if (doc.get("inventory") or {}).get("path") == inv_path:
            out.append(doc)
    return out


def status(root: Path, inventory: Path, *, site: Path) -> dict[str, Any]:
    inv = inv_mod.load(inventory, root)
    hosts = [inv.host(h) for h in inv.hosts]

    def read(r: Remote) -> dict[str, Any] | None:
        rc, out, _ = r.run(["cat", DEPLOYED], check=False)
        try:
            return json.loads(out) if rc == 0 else None
        except ValueError:
            return None

    found: dict[str, Any] = each_known_host(hosts, read, site=site)
    try:
        served = served_release(inv, site)
    except HostError:
        served = None
    runs = [r for r in _last_runs(site, inventory) if not r.get("check")]
    rows = []
    for h in hosts:
        got = found[h.name]
        row: dict[str, Any] = {"host": h.name, "groups": inv.groups_of(h.name)}
        if isinstance(got, HostError):
            row.update(reachable=False, error=str(got))
        else:
            row.update(reachable=True, deployed=got,
                       current=bool(got and served
                                    and got.get("sha256sums") == served.get("sha256sums")))
        last = next((r for r in runs if h.name in (r.get("stats") or {})), None)
        if last:
            row["lastRun"] = {"ident": last.get("ident"), "finished": last.get("finished"),
                              "command": last.get("command"), "result": last.get("result"),
                              "changed": last["stats"][h.name].get("changed", 0)}
        change = next((r for r in runs if (r.get("changedTasks") or {}).get(h.name)), None)
        if change:
            row["lastChange"] = {"ident": change.get("ident"),
                                 "finished": change.get("finished"),
                                 "tasks": change["changedTasks"][h.name]}
        rows.append(row)
    return {"inventory": str(inventory), "phase": inv.var("airlock_phase"), "served": served,
            "hosts": rows}
