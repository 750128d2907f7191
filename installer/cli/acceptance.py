"""``airlock acceptance``: seed 001's go/no-go measured on the deployed site."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from installer.cli import AbsolutePath, emit_json, json_option
from installer.cli.deploy import _inventory_file, _root, _say, _site, inventory_option, site_option
from installer.console import esc, out


@click.command("acceptance")
@inventory_option
@site_option
@click.option("--phase", type=click.Choice(["poc", "pilot"]),
              help="Whose go/no-go to judge (default: the inventory's airlock_phase).")
@click.option("--users", type=click.IntRange(1, 500),
              help="Simulated concurrent users (default: the inventory's IDE users).")
@click.option("--duration", type=click.FloatRange(1, 3600), default=60, show_default=True,
              help="Seconds the load runs at most.")
@click.option("-o", "--out", "out_dir", type=AbsolutePath(file_okay=False),
              help="Report folder (default: SITE/acceptance/TIME).")
@click.option("--survey", "survey_csv", type=AbsolutePath(dir_okay=False),
              help="CSV of what no machine measures (acceptance rate, satisfaction, the "
                   "security team's approval).")
@click.option("--accounts", "accounts_file", type=AbsolutePath(dir_okay=False),
              help="Test users for the browser checks (YAML, mode 0600: [{user, password, "
                   "totp}]); the lab's are found without it.")
@click.option("--watch", is_flag=True,
              help="Record availability instead: probe every component each --interval.")
@click.option("--interval", type=click.FloatRange(5, 3600), default=60, show_default=True,
              help="With --watch: seconds between probe rounds.")
@click.option("--rounds", type=click.IntRange(min=1),
              help="With --watch: stop after this many rounds (default: until stopped).")
@json_option
def acceptance_cmd(inventory: Path, site: Path | None, phase: str | None, users: int | None,
                   duration: float, out_dir: Path | None, survey_csv: Path | None,
                   accounts_file: Path | None, watch: bool, interval: float,
                   rounds: int | None, as_json: bool) -> None:
    """Measure the PoC's and the Pilot's criteria (seed 001 §2.2, §2.4, §3.3, §7) on the
    deployed site and write the go/no-go report (HTML, JSON, Markdown). A criterion that
    nothing measured is reported as not measured, never as passed."""
    from installer.acceptance import acceptance as acc

    inventory = _inventory_file(inventory)
    if watch:
        path = acc.watch(_root(), inventory, site=_site(site), interval=interval,
                         rounds=rounds, say=_say(as_json))
        if as_json:
            emit_json({"ok": True, "samples": str(path)})
        return
    doc = acc.acceptance(_root(), inventory, site=_site(site), phase=phase, users=users,
                         duration=duration, out=out_dir, survey_csv=survey_csv,
                         accounts_file=accounts_file, say=_say(as_json))
    if as_json:
        emit_json({"ok": True, **doc})
        return
    t = Table(title=f"acceptance: {doc['phase']}")
    for col in ("criterion", "bound", "value", "status"):
        t.add_column(col)
    style = {"passed": "ok", "failed": "err"}
    for r in doc["criteria"]:
        value = "" if r["value"] is None else f"{r['value']:g} {r['unit']}".strip() \
            if isinstance(r["value"], (int, float)) and not isinstance(r["value"], bool) \
            else str(r["value"])
        st = style.get(r["status"], "warn")
        t.add_row(esc(r["title"]), esc(r["bound"]), esc(value),
                  f"[{st}]{esc(r['status'])}[/]")
    out.print(t)
    for v in doc["verdicts"]:
        st = "ok" if v["verdict"] == "GO" else "err"
        out.print(f"[{st}]{esc(v['title'])}: {v['verdict']}[/] ({esc(v['means'])})")
        for need in v["needs"]:
            if need["reasons"]:
                out.print(esc(f"  {need['need']}: " + "; ".join(need["reasons"][:4])))
    out.print(esc(f"report: {doc['files']['html']} (also {doc['files']['json']}, "
                  f"{doc['files']['markdown']})"))
