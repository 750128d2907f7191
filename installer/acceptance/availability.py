"""Availability from data: samples of each component's health, and the uptime they show.

`airlock acceptance --watch` appends one record per probe round to
``SITE/acceptance/availability.jsonl``: ``{"time": ISO-8601, "interval": seconds,
"components": {NAME: {"ok": bool, "detail": str}}}``. A sample vouches for the time from
it to the next one, at most twice the interval it was taken at: a gap where the watcher
itself was not running is *not observed*, never counted as up. Seed 001 §3.3 asks for 99 %
over a week: the criterion is measured only when the samples cover the whole week.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from installer.acceptance.criteria import BY_ID, NOT_MEASURED
from installer.errors import UsageError

WEEK = dt.timedelta(days=7)
COVERAGE = 0.95  # of the window the samples must vouch for (restarts of the watcher)


def parse_time(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return t


def load(path: Path) -> list[dict[str, Any]]:
    """The samples in PATH, oldest first; a line that is not a sample names its line."""
    if not path.exists():
        return []
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec["_t"] = parse_time(rec["time"])
                interval = float(rec["interval"])
                comps = rec["components"]
                if interval <= 0 or not isinstance(comps, dict) or not all(
                        isinstance(v, dict) and isinstance(v.get("ok"), bool)
                        for v in comps.values()):
                    raise ValueError("interval or components are not what a sample holds")
            except (ValueError, KeyError, TypeError) as e:
                raise UsageError(f"{path}:{n}: not an availability sample ({e})",
                                 hint="move the file away to start the record again") from None
            out.append(rec)
    out.sort(key=lambda r: r["_t"])
    return out


def uptime(samples: Iterable[dict[str, Any]], end: dt.datetime,
           window: dt.timedelta = WEEK) -> dict[str, Any]:
    """Per component: seconds observed, seconds up, uptime; and the window's coverage."""
    start = end - window
    rows = [s for s in samples if s["_t"] <= end]
    comps: dict[str, dict[str, float]] = {}
    covered = 0.0
    for i, s in enumerate(rows):
        t0 = max(s["_t"], start)
        cap = s["_t"] + dt.timedelta(seconds=2 * float(s["interval"]))
        nxt = rows[i + 1]["_t"] if i + 1 < len(rows) else end
        t1 = min(nxt, cap, end)
        span = (t1 - t0).total_seconds()
        if span <= 0:
            continue
        covered += span
        for name, state in s["components"].items():
            c = comps.setdefault(name, {"observed": 0.0, "up": 0.0, "downs": 0})
            c["observed"] += span
            if state["ok"]:
                c["up"] += span
            else:
                c["downs"] += 1
    for c in comps.values():
        c["uptime"] = c["up"] / c["observed"] if c["observed"] else None
    return {"start": start.isoformat(), "end": end.isoformat(),
            "window_s": window.total_seconds(), "covered_s": covered,
            "coverage": covered / window.total_seconds(), "components": comps}


def criterion(summary: dict[str, Any]) -> dict[str, Any]:
    """Seed 001 §3.3's row: the lowest component's uptime against 99 %, measured only
    when the samples cover the week."""
    c = BY_ID["availability"]
    comps = summary["components"]
    days = summary["covered_s"] / 86400
    if not comps or summary["coverage"] < COVERAGE:
        return {"status": NOT_MEASURED, "value": None,
                "detail": f"the samples cover {days:.2f} of the "
                          f"{summary['window_s'] / 86400:g} days asked for: run "
                          "`airlock acceptance --watch` for the whole week",
                "evidence": {"coverage": summary["coverage"], "components": comps}}
    worst_name, worst = min(((n, v["uptime"]) for n, v in comps.items()),
                            key=lambda x: x[1])
    pct = 100 * worst
    return {"status": c.judge(pct), "value": round(pct, 3),
            "target_met": c.meets_target(pct),
            "detail": f"lowest: {worst_name} {pct:.2f} % over {days:.2f} days",
            "evidence": {"coverage": summary["coverage"], "components": comps}}
