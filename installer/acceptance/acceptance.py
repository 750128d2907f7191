"""`airlock acceptance`: run the checks against a deployed inventory, judge them by seed
001's rules, write the report; and `--watch`, the availability record."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from installer.acceptance import availability, report, survey
from installer.acceptance.run import Context, run_checks
from installer.deploy import inventory as inv_mod
from installer.deploy.audit import audited
from installer.errors import UsageError
from installer.site import InventoryLock

MAX_USERS, MAX_DURATION = 500, 3600.0


def acceptance(root: Path, inventory: Path, *, site: Path, phase: str | None = None,
               users: int | None = None, duration: float = 60.0, out: Path | None = None,
               survey_csv: Path | None = None, accounts_file: Path | None = None,
               checks: Any = None,
               say: Any = print, now: dt.datetime | None = None) -> dict[str, Any]:
    """The report's document (also written to OUT); one audit record whatever happens."""
    inv = inv_mod.load(inventory, root)
    phase = phase or str(inv.var("airlock_phase", "poc"))
    if phase not in ("poc", "pilot"):
        raise UsageError(f"phase {phase!r}: acceptance judges the PoC and the Pilot (seed 001 "
                         "§7.1, §7.2)", hint="--phase poc or --phase pilot")
    users = users or len(inv.var("airlock_ide_users", []) or []) or 1
    if not 1 <= users <= MAX_USERS:
        raise UsageError(f"--users {users}: between 1 and {MAX_USERS}")
    if not 1 <= duration <= MAX_DURATION:
        raise UsageError(f"--duration {duration:g}: between 1 and {MAX_DURATION:g} seconds")
    surveyed = survey.read(survey_csv) if survey_csv else {}  # a bad CSV stops us first
    from installer.acceptance import workbench

    accounts = workbench.read_accounts(accounts_file) if accounts_file else None
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    out = out or site / "acceptance" / stamp
    fields = {"inventory": {"path": str(inventory.resolve()), "digest": inv.digest},
              "phase": phase}
    if checks is None:
        from installer.acceptance.probes import CHECKS

        checks = (workbench.CHECK, *CHECKS)
    with InventoryLock(site, inventory, "acceptance"), \
            audited(site, "acceptance", **fields) as rec:
        ctx = Context(root=root, inventory=inventory, site=site, inv=inv, phase=phase,
                      users=users, duration=duration, out=out, say=say)
        ctx.accounts = accounts if accounts is not None else workbench.lab_accounts(ctx)
        results = run_checks(ctx, checks)
        results.update(surveyed)
        watched = site / "acceptance" / "availability.jsonl"
        if phase == "pilot":
            results["availability"] = {**availability.criterion(availability.uptime(
                availability.load(watched), now or dt.datetime.now(dt.UTC))),
                "source": "watch"}
        doc = report.build(phase=phase, results=results,
                           site={"inventory": str(inventory), "digest": inv.digest,
                                 "release": _release(site)},
                           load={"users": users, "duration_s": duration,
                                 "stand_in": ctx.shared.get("stand_in")},
                           measurements=ctx.shared.get("measurements", {}), now=now)
        files = report.write(doc, out)
        rec.update(report=str(files["json"]), verdicts={v["phase"]: v["verdict"]
                                                        for v in doc["verdicts"]},
                   counts=doc["counts"])
    return {**doc, "files": {k: str(v) for k, v in files.items()}}


def _release(site: Path) -> str | None:
    """The release the last deploy recorded (from the site's run records)."""
    runs = sorted((site / "runs").glob("*.json")) if (site / "runs").is_dir() else []
    for path in reversed(runs):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        b = rec.get("bundle") or rec.get("release")
        if isinstance(b, dict) and b.get("name"):
            return f"{b['name']} v{b.get('version')}"
    return None


def health_endpoints(root: Path, inventory: Path) -> dict[str, str]:
    """Component -> URL the watcher probes: what users reach through the gateway (the
    gateway itself, Keycloak's realm, each workbench)."""
    inv = inv_mod.load(inventory, root)
    urls: dict[str, str] = {}
    if (a := inv.gateway_address()):
        urls["gateway"] = f"https://{a}/"
        if inv.group("keycloak"):
            urls["keycloak"] = f"https://{a}/auth/realms/{inv.var('keycloak_realm', 'airlock')}/"
        for u in inv.var("airlock_ide_users", []) or []:
            urls[f"workbench:{u['name']}"] = f"https://{a}/u/{u.get('route', u['name'])}/"
    return urls


def probe(url: str, ca: Path, timeout: float = 10) -> dict[str, Any]:
    """Up when the URL answers over TLS checked against the site CA with anything below
    500 (a sign-in redirect counts: the service is there and deciding)."""
    import ssl

    from installer.acceptance.probes import _NoRedirect

    tls = ssl.create_default_context(cafile=str(ca))
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=tls))
    t0 = time.monotonic()
    try:
        with opener.open(url, timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (OSError, ValueError) as e:
        return {"ok": False, "detail": f"{type(e).__name__}: {str(e)[:160]}"}
    return {"ok": status < 500, "detail": f"{status} in {time.monotonic() - t0:.2f} s"}


def watch(root: Path, inventory: Path, *, site: Path, interval: float = 60,
          rounds: int | None = None, say: Any = print,
          endpoints: dict[str, str] | None = None) -> Path:
    """Probe every component each INTERVAL seconds, appending one sample per round to
    SITE/acceptance/availability.jsonl (ROUNDS rounds, or until stopped)."""
    if not 5 <= interval <= 3600:
        raise UsageError(f"--interval {interval:g}: between 5 and 3600 seconds")
    urls = endpoints or health_endpoints(root, inventory)
    if not urls:
        raise UsageError(f"{inventory}: no gateway or repo host to watch")
    path = site / "acceptance" / "availability.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    n = 0
    while rounds is None or n < rounds:
        t0 = time.monotonic()
        sample = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "interval": interval,
                  "components": {name: probe(url, site / "pki" / "ca.crt")
                                 for name, url in urls.items()}}
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(sample, sort_keys=True) + "\n")
        down = [k for k, v in sample["components"].items() if not v["ok"]]
        say(f"{sample['time']}: {len(urls) - len(down)}/{len(urls)} up"
            + (f"; down: {', '.join(down)}" if down else ""))
        n += 1
        if rounds is None or n < rounds:
            time.sleep(max(0.0, interval - (time.monotonic() - t0)))
    return path

