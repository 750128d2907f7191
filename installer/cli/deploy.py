"""``airlock plan | preflight | deploy | upgrade | status | audit``: the platform, phase by
phase, from the bundles imported on the repo host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from installer.cli import AbsolutePath, emit_json, json_option
from installer.console import esc, out, progress
from installer.errors import AuditError, HostError, SpecError, UsageError

inventory_option = click.option(
    "-i", "--inventory", required=True, type=AbsolutePath(),
    help="Inventory: inventories/poc, pilot, production, or lab (after `airlock lab up`).")
site_option = click.option(
    "--site", "site", type=AbsolutePath(file_okay=False),
    envvar="AIRLOCK_SITE_DIR", show_envvar=True,
    help="The controller's site folder: CA, keys, trust state, run logs, audit log.")


def _site(site: Path | None) -> Path:
    from installer.site import site_dir_default

    return site or site_dir_default()


def _root() -> Path:
    from installer.site import project_root

    return project_root()


def _inventory_file(path: Path) -> Path:
    """``inventories/poc`` and ``inventories/poc/hosts.yml`` both work."""
    return path / "hosts.yml" if path.is_dir() and (path / "hosts.yml").exists() else path


def _say(as_json: bool) -> Any:
    return (lambda msg: None) if as_json else (lambda msg: out.print(esc(msg)))


def confirm_host_key(host: Any, fp: str, key_type: str) -> bool:
    """Show a host's key and ask the operator whether it is the one on its console."""
    out.print(esc(f"{host.name} ({host.address}:{host.port}) presents {key_type} ") +
              f"[key]{esc(fp)}[/]")
    return click.confirm("  is this the key the host shows on its console "
                         "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)?", default=False,
                         err=True)


def _confirm(as_json: bool) -> Any:
    """Ask about unknown host keys only where a person is at the terminal."""
    import sys

    return None if as_json or not sys.stdin.isatty() else confirm_host_key


# --------------------------------------------------------------------------- plan

@click.command("plan")
@click.option("--phase", required=True, type=click.Choice(["poc", "pilot", "production"]))
@click.option("--users", type=click.IntRange(min=1), help="Concurrent users (default: the "
              "inventory's airlock_users, or the phase's lower bound).")
@click.option("-i", "--inventory", type=AbsolutePath(),
              help="Check this inventory against the plan.")
@json_option
def plan_cmd(phase: str, users: int | None, inventory: Path | None, as_json: bool) -> None:
    """What PHASE needs for N users (hosts, GPUs, IDE capacity), from the seeds' sizing
    tables; with -i, whether an inventory has it."""
    from installer.deploy import inventory as inv_mod
    from installer.deploy.plan import check_inventory, plan, sizing

    inv = inv_mod.load(_inventory_file(inventory), _root()) if inventory else None
    if users is None:
        declared = inv.var("airlock_users") if inv else None
        users = int(declared) if declared else int(sizing()["phases"][phase]["users"][0])
    result = plan(phase, users)
    findings = check_inventory(result, inv) if inv else []
    result["inventory"] = str(inventory) if inventory else None
    result["findings"] = findings
    result["ok"] = not findings
    if as_json:
        emit_json(result)
        if findings:
            raise SystemExit(SpecError.exit_code)
        return
    t = Table(title=f"{phase}: {users} users")
    for col in ("needed", "count", "each", "source", *(["inventory"] if inv else [])):
        t.add_column(col)
    for n in result["needs"]:
        have = ""
        if inv and "have" in n:
            colour = "ok" if n["have"] >= n["count"] else "err"
            have = f"[{colour}]{n['have']}[/]"
        t.add_row(esc(n["what"]), str(n["count"]), esc(n["each"]), esc(n["source"]),
                  *([have] if inv else []))
    out.print(t)
    for note in result["notes"]:
        out.print(f"[warn]note:[/] {esc(note)}")
    ws = result["workspace"]
    out.print(f"each user: {ws['cpus']} CPU, {ws['memory_gb']} GB RAM, {ws['disk_gb']} GB "
              "disk (seed 000 §3.1)")
    if findings:
        raise SpecError(f"{len(findings)} shortfall(s): "
                        + "; ".join(f["problem"] for f in findings),
                        file=str(inventory), hint="add hosts to those groups, or set "
                        "airlock_gpus on hosts that carry more than one GPU")


# --------------------------------------------------------------------------- preflight

def print_preflight(result: dict[str, Any]) -> None:
    t = Table(title=f"preflight {esc(result['inventory'])}")
    for col in ("host", "OS", "CPUs", "RAM GiB", "min free GiB", "GPUs", "clock s", "repo",
                "result"):
        t.add_column(col)
    for h in result["hosts"]:
        if not h["reachable"]:
            t.add_row(esc(h["host"]), *[""] * 7, "[err]unreachable[/]")
            continue
        free = str(min(h["freeGiB"].values(), default=""))
        t.add_row(esc(h["host"]), esc(h["os"]), str(h["cpus"]), str(h["memoryGiB"]), free,
                  str(len(h["gpus"])), f"{h['clockOffsetS']:+.2f}", esc(h["repo"]),
                  "[err]fix[/]" if h["problems"] else "[ok]ok[/]")
    out.print(t)


@click.command("preflight")
@inventory_option
@click.option("--bundle", type=AbsolutePath(file_okay=False, exists=True),
              help="Also check the repo host has room for this bundle.")
@click.option("--limit", help="Only these hosts (comma-separated).")
@site_option
@json_option
def preflight_cmd(inventory: Path, bundle: Path | None, limit: str | None,
                  site: Path | None, as_json: bool) -> None:
    """Check every host over SSH before changing anything: reachable, OS, CPU, RAM, disk,
    GPUs, clock, ports, the repo host. Exit 9 naming what to fix where."""
    from installer.deploy.preflight import preflight

    inventory = _inventory_file(inventory)
    result = preflight(_root(), inventory, site=_site(site), bundle=bundle,
                       limit=limit.split(",") if limit else None, confirm=_confirm(as_json),
                       say=_say(as_json))
    if as_json:
        emit_json(result)
        if not result["ok"]:
            raise SystemExit(HostError.exit_code)
        return
    print_preflight(result)
    if not result["ok"]:
        problems = [f"{h['host']}: {p}" for h in result["hosts"] for p in h["problems"]]
        for p in problems:
            out.print(f"  [err]✗[/] {esc(p)}", soft_wrap=True)
        raise HostError(f"preflight failed on {', '.join(result['failed'])}: {problems[0]}",
                        hint="fix what is listed, then run preflight again")
    out.print(f"[ok]preflight passed[/] on {len(result['hosts'])} host(s)")


# --------------------------------------------------------------------------- deploy

def print_run(result: dict[str, Any]) -> None:
    run = result["run"]
    t = Table(title=f"{result['command']} {esc(result['release']['name'])} "
                    f"v{result['release']['version']} ({esc(result['phase'])})")
    for col in ("host", "ok", "changed", "failed", "unreachable", "skipped"):
        t.add_column(col)
    for host, s in run["stats"].items():
        t.add_row(esc(host), str(s["ok"]), f"[warn]{s['changed']}[/]" if s["changed"] else "0",
                  str(s["failures"]), str(s["dark"]), str(s["skipped"]))
    out.print(t)
    verdict = ("[ok]converged, nothing changed[/]" if run["changed"] == 0 else
               f"[warn]{run['changed']} change(s)[/]")
    out.print(f"{verdict} in {run['seconds']} s; log {esc(run['log'])}")


@click.command("deploy")
@inventory_option
@click.option("--phase", type=click.Choice(["poc", "pilot", "production"]),
              help="Refuse unless the inventory is for this phase.")
@click.option("--check", is_flag=True, help="Dry run: show what would change (--check --diff).")
@click.option("--tags", help="Only tasks with these tags (comma-separated).")
@click.option("--limit", help="Only these hosts or groups (Ansible pattern).")
@click.option("--replace-trusted-ca", is_flag=True,
              help="Make every host trust the controller's site CA (SITE/pki/ca.crt) even "
                   "where it trusts another one now: to repair a site whose trust was "
                   "damaged, or after replacing the CA on purpose. Audited.")
@site_option
@json_option
def deploy_cmd(inventory: Path, phase: str | None, check: bool, tags: str | None,
               limit: str | None, replace_trusted_ca: bool, site: Path | None,
               as_json: bool) -> None:
    """Run playbooks/site.yml against INVENTORY from what the repo host serves: one run at
    a time per inventory, a live view, the log kept, an audit record."""
    from installer.deploy.deploy import deploy

    result = deploy(_root(), _inventory_file(inventory), site=_site(site), phase=phase,
                    check=check, tags=tags, limit=limit, live=False if as_json else None,
                    say=_say(as_json), confirm=_confirm(as_json),
                    extravars={"pki_ca_replace_trust": True} if replace_trusted_ca else None)
    if as_json:
        emit_json(result)
    else:
        print_run(result)


@click.command("upgrade")
@click.option("--bundle", "bundle_dir", required=True,
              type=AbsolutePath(file_okay=False, exists=True),
              help="The newer bundle (full, or a delta on what the repo host has).")
@inventory_option
@click.option("--trust", "trust_root", required=True,
              type=AbsolutePath(dir_okay=False, exists=True),
              envvar="AIRLOCK_TRUST_ROOT", show_envvar=True,
              help="Pinned root.json the bundle's signatures are checked against.")
@click.option("--limit", help="Deploy only to these hosts or groups (Ansible pattern): a "
                              "staged rollout; `airlock status` shows the others as old.")
@site_option
@json_option
def upgrade_cmd(bundle_dir: Path, inventory: Path, trust_root: Path, limit: str | None,
                site: Path | None, as_json: bool) -> None:
    """Import a newer bundle (a delta is accepted when its base is on the repo host; an
    older version is refused), then deploy it (to every host, or to --limit's)."""
    from installer.deploy.deploy import deploy
    from installer.deploy.importer import import_bundle

    inventory = _inventory_file(inventory)
    with progress(not as_json) as bar:
        imported = import_bundle(_root(), bundle_dir, inventory, trust_root=trust_root,
                                 site=_site(site), progress=bar, say=_say(as_json),
                                 live=False if as_json else None, command="upgrade import",
                                 confirm=_confirm(as_json))
    result = deploy(_root(), inventory, site=_site(site), limit=limit,
                    live=False if as_json else None, say=_say(as_json), command="upgrade",
                    confirm=_confirm(as_json))
    result["import"] = imported
    if as_json:
        emit_json(result)
        return
    out.print(f"[ok]imported[/] {esc(imported['release'])}: {imported['filesCopied']} files "
              f"copied ({imported['bytesCopied']} bytes), "
              f"{imported['filesFromBase'] + imported['filesFromServed']} linked on the host "
              "from the base or served release")
    print_run(result)


def print_status(result: dict[str, Any]) -> None:
    served = result["served"]
    out.print(f"repo host serves: {esc(served['name'])} v{served['version']}" if served else
              "[warn]the repo host serves nothing (or is unreachable)[/]")
    t = Table(title=f"status {esc(result['inventory'])} ({esc(result['phase'])})")
    for col in ("host", "groups", "deployed", "last run", "changed last"):
        t.add_column(col)
    for h in result["hosts"]:
        if not h["reachable"]:
            t.add_row(esc(h["host"]), esc(",".join(h["groups"])), "[err]unreachable[/]", "", "")
            continue
        d = h.get("deployed")
        dep = (f"{esc(d['name'])} v{d['version']}" + ("" if h["current"] else " [warn](old)[/]")
               if d else "[warn]never[/]")
        last = h.get("lastRun")
        lr = esc(f"{last['finished']} {last['result']} ({last['changed']} changed)") if last else ""
        ch = h.get("lastChange")
        tasks = ""
        if ch:
            names = list(dict.fromkeys(ch["tasks"]))
            tasks = esc(f"{ch['finished']}: " + "; ".join(names[:3])) + (
                f" (+{len(names) - 3})" if len(names) > 3 else "")
        t.add_row(esc(h["host"]), esc(",".join(h["groups"])), dep, lr, tasks)
    out.print(t)


@click.command("status")
@inventory_option
@site_option
@json_option
def status_cmd(inventory: Path, site: Path | None, as_json: bool) -> None:
    """Per host: the release deployed there, whether it is the one served, and what the
    last run changed."""
    from installer.deploy.deploy import status

    result = status(_root(), _inventory_file(inventory), site=_site(site))
    if as_json:
        emit_json(result)
        return
    print_status(result)


# --------------------------------------------------------------------------- audit

@click.group("audit")
def audit_group() -> None:
    """The hash-chained record of every command that changed something."""


@audit_group.command("verify")
@click.option("--against-store", is_flag=True,
              help="Also compare every record with the site's log store's copy.")
@site_option
@json_option
def audit_verify(against_store: bool, site: Path | None, as_json: bool) -> None:
    """Check the chain: an edited, inserted, reordered or deleted record is named; with
    --against-store, a record that differs from (or is missing in) the store's copy too."""
    from installer.deploy.audit import AuditLog

    result = AuditLog(_site(site)).verify()
    if against_store:
        result = _against_store(_site(site), result)
    if as_json:
        emit_json(result)
        if not result["ok"]:
            raise SystemExit(AuditError.exit_code)
        return
    if not result["ok"]:
        raise AuditError(f"{result['path']}: the audit log was tampered with "
                         f"({len(result['problems'])} problem(s))", result["problems"],
                         hint="compare with the copy in syslog / the SIEM")
    out.print(f"[ok]audit log intact[/]: {result['records']} records, chain and head "
              f"match ({esc(result['path'])})")


def _against_store(site: Path, result: dict) -> dict:
    import json as _json

    from installer.deploy import auditstore
    from installer.deploy.audit import AuditLog

    store = auditstore.Store.of(site)
    if store is None:
        raise UsageError(f"{site / auditstore.CONFIG} is missing: this site has no log store",
                         hint="deploy the logging hosts first (site.yml), or verify without "
                              "--against-store")
    log = AuditLog(site)
    auditstore.ship(site, log.records())  # what the store missed, first
    try:
        shipped = int(_json.loads((site / auditstore.SHIPPED).read_text())["seq"])
    except (OSError, ValueError, KeyError, TypeError):
        shipped = 0
    in_store = auditstore.stored(store)
    problems = auditstore.compare(log.records(), in_store, shipped)
    return {**result, "ok": result["ok"] and not problems, "store": store.url,
            "stored": len(in_store), "problems": result["problems"] + problems}


@audit_group.command("show")
@click.option("-n", "count", default=20, show_default=True, help="How many, newest last.")
@site_option
@json_option
def audit_show(count: int, site: Path | None, as_json: bool) -> None:
    """The last records: when, who, from where, what, with which bundle, result."""
    from installer.deploy.audit import AuditLog

    records = AuditLog(_site(site)).records()[-count:]
    if as_json:
        emit_json(records)
        return
    t = Table()
    for col in ("seq", "time", "user@host", "command", "bundle", "result"):
        t.add_column(col)
    for r in records:
        b = r.get("bundle") or {}
        t.add_row(*map(esc, (r.get("seq"), r.get("time"), f"{r.get('user')}@{r.get('host')}",
                             r.get("command"), f"{b.get('name', '')} v{b.get('version', '')}"
                             if b else "", r.get("result"))))
    out.print(t)


# --------------------------------------------------------------------------- backups

@click.group("backup")
def backup_group() -> None:
    """The hosts' backups (restic to the backup host): their state, a run now."""


@backup_group.command("status")
@inventory_option
@site_option
@click.option("--max-age", "max_age_h", type=click.FloatRange(min=1), default=26,
              show_default=True, help="Hours after which a source's last snapshot is too old.")
@json_option
def backup_status_cmd(inventory: Path, site: Path | None, max_age_h: float,
                      as_json: bool) -> None:
    """Per host and source: the last good snapshot, its age, the last run's result. Exit
    status 1 when a source has no snapshot, one older than --max-age, or a failed run."""
    from installer.deploy import backup

    result = backup.status(_root(), _inventory_file(inventory), site=_site(site),
                           max_age_h=max_age_h)
    if as_json:
        emit_json(result)
    else:
        t = Table(title=f"backups to {result['backup_host']}")
        for c in ("host", "source", "kind", "snapshots", "last snapshot", "age", "last run"):
            t.add_column(c)
        for r in result["sources"]:
            if not r["reachable"]:
                t.add_row(esc(r["host"]), "", "", "", "", "", f"[bad]{esc(r['error'])}[/]")
                continue
            last = r.get("last_run") or {}
            run = ("" if not last else "[ok]ok[/]" if last.get("ok")
                   else f"[bad]failed: {esc(last.get('error', '')[:80])}[/]")
            age = "" if r["age_s"] is None else f"{r['age_s'] / 3600:.1f} h"
            t.add_row(esc(r["host"]), esc(r["source"]), r["kind"], str(r["snapshots"]),
                      esc((r["snapshot"] or "none")[:8]) + (f" {esc(r['time'][:19])}"
                                                            if r["time"] else ""),
                      age, run)
        out.print(t)
        for p in result["problems"]:
            out.print(f"[bad]{esc(p)}[/]")
    if not result["ok"]:
        raise SystemExit(1)


@backup_group.command("run")
@inventory_option
@site_option
@click.argument("host")
@click.argument("sources", nargs=-1)
@json_option
def backup_run_cmd(inventory: Path, site: Path | None, host: str, sources: tuple[str, ...],
                   as_json: bool) -> None:
    """Back up HOST now (what its timer runs nightly): SOURCES, or all of them."""
    from installer.deploy import backup

    result = backup.run_now(_root(), _inventory_file(inventory), host, list(sources),
                            site=_site(site))
    if as_json:
        emit_json(result)
    else:
        out.print(esc(result["output"]) or "(nothing to back up)")
        if result["error"]:
            out.print(f"[bad]{esc(result['error'])}[/]")
    if not result["ok"]:
        raise SystemExit(1)


@click.command("restore")
@inventory_option
@site_option
@click.argument("host")
@click.argument("source")
@click.option("--snapshot", default="latest", show_default=True,
              help="Which snapshot (its id or the start of it; `airlock backup status`).")
@click.option("--path", "paths", multiple=True,
              help="Only this file or folder (its absolute path on HOST); repeatable. "
                   "Default: the whole source.")
@click.option("--target", help="Restore under this folder on HOST instead of in place.")
@json_option
def restore_cmd(inventory: Path, site: Path | None, host: str, source: str, snapshot: str,
                paths: tuple[str, ...], target: str | None, as_json: bool) -> None:
    """Bring back HOST's SOURCE from a backup: a user's file (--path), a whole home, or a
    database (restored whole, in place; its service is stopped meanwhile). Audited."""
    from installer.deploy import backup
    from installer.deploy.audit import AuditLog

    site_dir = _site(site)
    log = AuditLog(site_dir)
    try:
        result = backup.restore(_root(), _inventory_file(inventory), host, source,
                                site=site_dir, snapshot=snapshot, paths=paths, target=target)
    except HostError as e:
        log.append("restore", "failed", host=host, source=source, snapshot=snapshot,
                   paths=list(paths), error=str(e)[:500])
        raise
    log.append("restore", "ok", host=host, source=source, snapshot=result["snapshot"],
               paths=list(paths), target=target, seconds=result["seconds"],
               stopped_elsewhere=result["stoppedElsewhere"])
    if as_json:
        emit_json(result)
        return
    out.print(f"[ok]restored[/] {esc(result['restored'])} on {esc(host)} from snapshot "
              f"{esc(result['snapshot'][:8])} in {result['seconds']} s")
    for other, names in result["stoppedElsewhere"].items():
        out.print(f"  stopped meanwhile and started again on {esc(other)}: "
                  f"{esc(', '.join(names))}")


@click.command("rollback")
@inventory_option
@site_option
@click.argument("service", type=click.Choice(["litellm"]))
@click.option("--status", "show", is_flag=True,
              help="Only show each host's active release and the one kept beside it.")
@json_option
def rollback_cmd(inventory: Path, site: Path | None, service: str, show: bool,
                 as_json: bool) -> None:
    """Switch SERVICE back to its previous release on every host that runs it (blue/green:
    the old release was kept running beside the new one; it is checked ready before the
    front is reloaded onto it, and no request is refused meanwhile). Audited."""
    from installer.deploy import bluegreen
    from installer.deploy.audit import AuditLog

    site_dir = _site(site)
    if show:
        result = bluegreen.status(_root(), _inventory_file(inventory), site=site_dir)
    else:
        result = bluegreen.rollback(_root(), _inventory_file(inventory), service,
                                    site=site_dir)
        AuditLog(site_dir).append("rollback", "ok" if result["ok"] else "failed",
                                  service=service, hosts=result["hosts"])
    if as_json:
        emit_json(result)
    else:
        for h in result["hosts"]:
            if "error" in h:
                out.print(f"[bad]{esc(h['host'])}: {esc(h['error'])}[/]")
            elif show:
                slots = ", ".join(f"{s} ({'ready' if v['ready'] else 'not ready'}, release "
                                  f"{v['release'][:12] or 'none'})"
                                  for s, v in h["slots"].items())
                out.print(f"{esc(h['host'])}: serving {esc(h['active'] or 'nothing')}; "
                          f"{esc(slots)}")
            else:
                out.print(f"[ok]{esc(h['host'])}[/]: {esc(service)} now serves the "
                          f"{esc(h['active'])} release ({esc(h['release'][:12])}), was "
                          f"{esc(h['previous'])}")
    if not result["ok"]:
        raise SystemExit(1)
