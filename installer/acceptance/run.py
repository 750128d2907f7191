"""Running the acceptance checks against a deployed inventory.

A check measures one or more criteria (ids of criteria.py) and needs hosts in some
inventory groups. A check whose groups have no host is *not measured* ("not deployed"),
never skipped silently; a check that raises is *failed*, with the error as its detail;
each check's seconds are kept as evidence. The run is one audit record (command
``acceptance``) whatever its outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.acceptance.criteria import BY_ID, FAILED, NOT_MEASURED, PASSED, STATUSES
from installer.errors import AirlockError


@dataclass
class Context:
    """What every check may use: the inventory (loaded), the site folder, the run's
    bounds, where evidence goes, and how to say progress."""
    root: Path
    inventory: Path
    site: Path
    inv: Any  # installer.deploy.inventory.Inventory
    phase: str
    users: int
    duration: float
    out: Path
    say: Callable[[str], object] = print
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)  # what one check leaves the next


Result = dict[str, Any]


@dataclass(frozen=True)
class Check:
    name: str
    criteria: tuple[str, ...]
    needs: tuple[str, ...]  # inventory groups that must each have a host
    run: Callable[[Context], dict[str, Result]]
    phase: str = "poc"  # the earliest phase whose report has it

    def __post_init__(self) -> None:
        unknown = [c for c in self.criteria if c not in BY_ID]
        if unknown:
            raise ValueError(f"check {self.name}: unknown criteria {unknown}")


def run_checks(ctx: Context, checks: Iterable[Check]) -> dict[str, Result]:
    """Criterion id -> result for every criterion the CHECKS measure."""
    order = ("poc", "pilot")
    results: dict[str, Result] = {}
    for check in checks:
        if order.index(check.phase) > order.index(ctx.phase):
            continue
        missing = [g for g in check.needs if not ctx.inv.group(g)]
        if missing:
            for cid in check.criteria:
                results[cid] = {"status": NOT_MEASURED,
                                "detail": "not deployed: the inventory has no host in "
                                          + ", ".join(missing)}
            ctx.say(f"{check.name}: not measured (no {', '.join(missing)} host)")
            continue
        ctx.say(f"{check.name} ...")
        t0 = time.monotonic()
        try:
            got = check.run(ctx)
        except AirlockError as e:
            got = {cid: {"status": FAILED, "detail": str(e)} for cid in check.criteria}
        except Exception as e:  # a probe that breaks is a row that failed, with why
            got = {cid: {"status": FAILED, "detail": f"{type(e).__name__}: {e}"}
                   for cid in check.criteria}
        seconds = round(time.monotonic() - t0, 2)
        for cid in check.criteria:
            r = dict(got.get(cid) or {"status": NOT_MEASURED,
                                      "detail": f"{check.name} did not report it"})
            if r.get("status") not in STATUSES:
                raise ValueError(f"check {check.name} gave {cid} status {r.get('status')!r}")
            r.setdefault("detail", "")
            r["check"] = {"name": check.name, "seconds": seconds}
            results[cid] = r
        ctx.say(f"{check.name}: " + ", ".join(f"{cid} {results[cid]['status']}"
                                              for cid in check.criteria))
    return results


def passed(detail: str = "", **evidence: Any) -> Result:
    return {"status": PASSED, "detail": detail, "evidence": evidence or None}


def failed(detail: str, **evidence: Any) -> Result:
    return {"status": FAILED, "detail": detail, "evidence": evidence or None}


def figure(cid: str, value: float | None, detail: str = "", **evidence: Any) -> Result:
    """A measured figure judged against the criterion's minimum; None = not measured."""
    if value is None:
        return {"status": NOT_MEASURED, "detail": detail or "no successful sample",
                "evidence": evidence or None}
    c = BY_ID[cid]
    return {"status": c.judge(value), "value": round(value, 3),
            "target_met": c.meets_target(value), "detail": detail,
            "evidence": evidence or None}
