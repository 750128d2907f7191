"""`airlock backup status` and `airlock restore`: the hosts' backup program
(roles/backup/files/airlock-backup) asked over SSH, the answers gathered.

The repository is the truth: the status lists what restic holds for each source (the last
snapshot and its age), beside the last run's result the timer left on the host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from installer.deploy import inventory as inv_mod
from installer.deploy.ssh import Remote, each_known_host
from installer.errors import HostError, UsageError

PROGRAM = "/usr/local/sbin/airlock-backup"
CONFIG = "backup.json"  # in the site folder, written by playbooks/backup.yml
# where the roles declare what the backups take, on each host (one JSON file per source)
SOURCES = "/etc/airlock/backup/sources.d"


def _clients(inv: inv_mod.Inventory, site: Path) -> list[str]:
    """The hosts that back up, as the last deploy of the backup host wrote them."""
    if not inv.group("backup"):
        raise UsageError(f"{inv.path}: this inventory has no backup host (group backup)",
                         hint="the pilot's and production's inventories name one (bak1); "
                              "the PoC keeps no backups")
    try:
        clients = json.loads((site / CONFIG).read_text())["clients"]
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"{site / CONFIG}: {e}",
                         hint="deploy the backup host first (site.yml or backup.yml)") from None
    return [h for h in clients if h in inv.hosts]


def status(root: Path, inventory: Path, *, site: Path,
           max_age_h: float = 26) -> dict[str, Any]:
    """Per host and source: the last snapshot, its age, the last run's result; ok only when
    every source has a snapshot younger than MAX_AGE_H hours and its last run succeeded."""
    inv = inv_mod.load(inventory, root)
    hosts = [inv.host(h) for h in _clients(inv, site)]

    def ask(r: Remote) -> dict[str, Any]:
        rc, out, err = r.run([PROGRAM, "status"], check=False)
        if rc != 0:
            raise HostError(f"{r.host.name}: airlock-backup status failed: "
                            f"{(err or out).strip()[-400:]}",
                            hint="deploy the backup hosts first (site.yml), then run again")
        return json.loads(out)

    found: dict[str, Any] = each_known_host(hosts, ask, site=site, timeout=60)
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for h in hosts:
        got = found[h.name]
        if isinstance(got, HostError):
            rows.append({"host": h.name, "reachable": False, "error": str(got)})
            problems.append(str(got))
            continue
        for s in got["sources"]:
            row = {"host": h.name, "reachable": True, **s}
            last = s.get("last_run") or {}
            if s["snapshot"] is None:
                problems.append(f"{h.name} {s['source']}: no snapshot yet")
            elif s["age_s"] > max_age_h * 3600:
                problems.append(f"{h.name} {s['source']}: the last snapshot is "
                                f"{s['age_s'] / 3600:.0f} h old")
            if last and not last.get("ok"):
                problems.append(f"{h.name} {s['source']}: the last run failed: "
                                f"{last.get('error', '')[:200]}")
            rows.append(row)
    return {"inventory": str(inventory), "backup_host": inv.group("backup")[0],
            "max_age_h": max_age_h, "ok": not problems, "problems": problems,
            "sources": rows}


def run_now(root: Path, inventory: Path, host: str, sources: list[str], *,
            site: Path) -> dict[str, Any]:
    """The host's backup now (what its timer runs), for the named sources or all."""
    inv = inv_mod.load(inventory, root)
    if host not in _clients(inv, site):
        raise UsageError(f"{host} keeps no backed-up data in {inventory} "
                         f"(the backup clients: {', '.join(_clients(inv, site))})")
    with Remote(inv.host(host), site, timeout=60) as r:
        rc, out, err = r.run([PROGRAM, "run", *sources], check=False)
    return {"host": host, "ok": rc == 0, "output": out.strip(), "error": err.strip()}


def restore(root: Path, inventory: Path, host: str, source: str, *, site: Path,
            snapshot: str = "latest", paths: tuple[str, ...] = (),
            target: str | None = None) -> dict[str, Any]:
    """Bring back PATHS (or the whole source) of HOST's SOURCE from SNAPSHOT, in place or
    under TARGET; a database source is restored whole, in place."""
    inv = inv_mod.load(inventory, root)
    if host not in _clients(inv, site):
        raise UsageError(f"{host} keeps no backed-up data in {inventory} "
                         f"(the backup clients: {', '.join(_clients(inv, site))})")
    for p in paths:
        if not p.startswith("/"):
            raise UsageError(f"--path {p}: give the absolute path the file had on {host}")
    argv = [PROGRAM, "restore", source, "--snapshot", snapshot]
    for p in paths:
        argv += ["--path", p]
    if target:
        argv += ["--target", target]
    with Remote(inv.host(host), site, timeout=60) as r:
        elsewhere = _stop_elsewhere(r, source)
        stopped: list[tuple[str, list[str]]] = []
        try:
            # what uses the data on other hosts stops first (a Keycloak cluster's other
            # members: they would keep serving what the restore replaces)
            for other, names in elsewhere:
                _docker_on(inv, site, other, "stop", names, before=f"the restore of {source}")
                stopped.append((other, names))
            rc, out, err = r.run(argv, check=False)
        finally:
            for other, names in stopped:
                _docker_on(inv, site, other, "start", names, before=None)
    if rc != 0:
        raise HostError(f"{host}: the restore of {source} failed: {err.strip()[-600:]}",
                        hint="`airlock backup status` lists each source's snapshots")
    return {**json.loads(out),
            "stoppedElsewhere": {other: names for other, names in stopped}}


def _stop_elsewhere(r: Remote, source: str) -> list[tuple[str, list[str]]]:
    """The source's declaration's stop_elsewhere: [{host, containers}] ([] without one)."""
    rc, out, _ = r.run(["cat", f"{SOURCES}/{source}.json"], check=False)
    if rc != 0:
        return []  # the host's program names an unknown source itself
    try:
        entries = json.loads(out).get("stop_elsewhere") or []
        return [(str(e["host"]), [str(c) for c in e["containers"]]) for e in entries]
    except (ValueError, AttributeError, KeyError, TypeError) as e:
        raise HostError(f"{SOURCES}/{source}.json: stop_elsewhere is not a list of "
                        f"{{host, containers}}: {e}",
                        hint="deploy that host again: its role writes the declaration") from None


def _docker_on(inv: inv_mod.Inventory, site: Path, host: str, verb: str, names: list[str],
               before: str | None) -> None:
    """docker VERB NAMES on HOST; a stop that fails stops the restore before it starts (a
    failed start is left to the operator's next deploy, which starts what should run)."""
    with Remote(inv.host(host), site, timeout=120) as o:
        rc, _, err = o.run(["docker", verb, *names], check=False)
    if rc != 0 and before:
        raise HostError(f"{host}: could not {verb} {', '.join(names)} before {before}: "
                        f"{err.strip()[-400:]}", hint="nothing was restored")
