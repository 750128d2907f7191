"""The acceptance report: one document (JSON, validated against report.schema.json, shipped
with airlock), and the same as a self-contained HTML page (latency histograms as inline
SVG, the checklist with its evidence, the verdict per go/no-go rule) and a Markdown
summary. Written all three or none: each to a temporary name first, renamed at the end.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
from pathlib import Path
from typing import Any

from installer import __version__
from installer.acceptance.criteria import (
    FAILED,
    NOT_MEASURED,
    PASSED,
    criteria_for,
    rules_for,
    verdict,
)

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
SCHEMA_ID = "airlock-acceptance/v1"
MAX_SAMPLES = 5000  # latencies kept per series in the report (the histograms' data)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (the value below which P % of the samples fall), as
    installer/lab/llmload.py computes it on the hosts."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))  # rank ceil(P/100 N)
    return s[k]


def series(values: list[float], unit: str) -> dict[str, Any]:
    vals = [float(v) for v in values][:MAX_SAMPLES]
    return {"unit": unit, "count": len(vals),
            **{f"p{p}": percentile(vals, p) for p in (50, 95, 99)}, "samples": vals}


def build(*, phase: str, results: dict[str, dict[str, Any]], site: dict[str, Any],
          load: dict[str, Any], measurements: dict[str, Any],
          now: dt.datetime | None = None) -> dict[str, Any]:
    """The report document: every criterion of PHASE with its result (absent = not
    measured), and the verdict of each go/no-go rule up to PHASE."""
    rows = []
    for c in criteria_for(phase):
        r = results.get(c.id) or {"status": NOT_MEASURED,
                                  "detail": "no check of this run measures it"}
        if r["status"] not in (PASSED, FAILED, NOT_MEASURED):
            raise ValueError(f"{c.id}: status {r['status']!r}")
        rows.append({"id": c.id, "phase": c.phase, "kind": c.kind, "title": c.title,
                     "seed": c.seed, "unit": c.unit, "minimum": c.minimum,
                     "target": c.target, "bound": c.bound(), "status": r["status"],
                     "value": r.get("value"), "target_met": r.get("target_met"),
                     "detail": r.get("detail", ""), "evidence": r.get("evidence"),
                     "source": r.get("source", "probe"), "check": r.get("check")})
    by_id = {r["id"]: r for r in rows}
    doc = {"schema": SCHEMA_ID, "airlock": __version__,
           "generated": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
           "phase": phase, "site": site, "load": load, "measurements": measurements,
           "criteria": rows, "verdicts": [verdict(rule, by_id) for rule in rules_for(phase)],
           "counts": {s: sum(1 for r in rows if r["status"] == s)
                      for s in (PASSED, FAILED, NOT_MEASURED)}}
    return doc


def validate(doc: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))


def write(doc: dict[str, Any], out: Path) -> dict[str, Path]:
    """report.json, report.html and report.md in OUT (made 0755), all or none."""
    validate(doc)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": (out / "report.json", json.dumps(doc, indent=2, sort_keys=True) + "\n"),
             "html": (out / "report.html", to_html(doc)),
             "markdown": (out / "report.md", to_markdown(doc))}
    tmps = []
    try:
        for path, text in files.values():
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmps.append((tmp, path))
        for tmp, path in tmps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
    return {k: p for k, (p, _) in files.items()}


def _value(r: dict[str, Any]) -> str:
    v = r.get("value")
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:g} {r['unit']}".strip() if isinstance(v, (int, float)) else str(v)


def _evidence(r: dict[str, Any]) -> str:
    e = r.get("evidence")
    if e is None:
        return ""
    return e if isinstance(e, str) else json.dumps(e, sort_keys=True)[:600]


def to_markdown(doc: dict[str, Any]) -> str:
    lines = [f"# Acceptance report: {doc['phase'].upper()} ({doc['generated']})", ""]
    site = doc.get("site") or {}
    if site.get("inventory"):
        lines += [f"Inventory `{site['inventory']}`"
                  + (f", release {site['release']}" if site.get("release") else ""), ""]
    for v in doc["verdicts"]:
        lines.append(f"## {v['title']} (seed 001 {v['seed']}): **{v['verdict']}**: "
                     f"{v['means']}")
        for need in v["needs"]:
            mark = "x" if need["status"] == PASSED else " "
            extra = "; ".join(need["reasons"])
            lines.append(f"- [{mark}] {need['need']} ({need['passed']}/{need['of']})"
                         + (f": {extra}" if extra else ""))
        lines.append("")
    if doc.get("load", {}).get("stand_in"):
        lines += [f"> {doc['load']['stand_in']}", ""]
    lines += ["| criterion | seed | bound | value | status |", "|---|---|---|---|---|"]
    for r in doc["criteria"]:
        lines.append(f"| {r['title']} | {r['seed']} | {r['bound']} | {_value(r)} | "
                     f"{r['status']} |")
    return "\n".join(lines) + "\n"


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.5em} table{border-collapse:collapse;width:100%;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top;font-size:.9em}
.passed{background:#d9f2d9} .failed{background:#f8d0d0} .notm{background:#eee;color:#555}
.verdict{font-size:1.2em;padding:.5em;border-radius:.3em;margin:.5em 0}
.GO{background:#2e7d32;color:#fff} .NO-GO{background:#c62828;color:#fff}
.ev{font-family:monospace;font-size:.8em;color:#444;word-break:break-all}
.note{background:#fff8e1;padding:.5em;border-left:4px solid #f9a825}
svg{background:#fafafa;border:1px solid #ddd;margin:.5em 1em .5em 0}
"""


def _cls(status: str) -> str:
    return {PASSED: "passed", FAILED: "failed"}.get(status, "notm")


def histogram_svg(title: str, s: dict[str, Any], lines: dict[str, float],
                  width: int = 460, height: int = 200, bins: int = 24) -> str:
    """An SVG histogram of S's samples, with vertical lines at P50/P95 and at LINES
    (name -> value, e.g. the seed's minimum and target)."""
    e = html.escape
    vals = s.get("samples") or []
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" ' \
           f'role="img" aria-label="{e(title)}">'
    text = f'<text x="8" y="16" font-size="13">{e(title)} ({len(vals)} samples, ' \
           f'{e(s.get("unit", ""))})</text>'
    if not vals:
        return head + text + '<text x="8" y="100" font-size="12">no samples</text></svg>'
    marks = {**{k: v for k, v in (("P50", s.get("p50")), ("P95", s.get("p95")))
                if v is not None}, **lines}
    hi = max([*vals, *marks.values()]) * 1.05 or 1.0
    left, right, top, bottom = 30, width - 10, 26, height - 24
    counts = [0] * bins
    for v in vals:
        counts[min(bins - 1, int(v / hi * bins))] += 1
    peak = max(counts)
    bw = (right - left) / bins
    parts = [head, text]
    for i, c in enumerate(counts):
        h = (bottom - top) * c / peak
        parts.append(f'<rect x="{left + i * bw:.1f}" y="{bottom - h:.1f}" '
                     f'width="{bw - 1:.1f}" height="{h:.1f}" fill="#5c8fd6"/>')
    colors = {"P50": "#333", "P95": "#000"}
    for j, (name, v) in enumerate(marks.items()):
        x = left + (right - left) * v / hi
        color = colors.get(name, "#c62828" if "min" in name else "#2e7d32")
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" '
                     f'stroke="{color}" stroke-dasharray="4 2"/>')
        parts.append(f'<text x="{x + 2:.1f}" y="{top + 12 + 12 * j}" font-size="10" '
                     f'fill="{color}">{e(name)} {v:g}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="10">0</text>'
                 f'<text x="{right - 40}" y="{height - 6}" font-size="10">{hi:.3g} '
                 f'{e(s.get("unit", ""))}</text></svg>')
    return "".join(parts)


def to_html(doc: dict[str, Any]) -> str:
    e = html.escape
    out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>airlock acceptance: {e(doc['phase'])}</title><style>{STYLE}</style>",
           "</head><body>",
           f"<h1>Acceptance report: {e(doc['phase'].upper())}</h1>",
           f"<p>Generated {e(doc['generated'])} by airlock {e(doc['airlock'])}"]
    site = doc.get("site") or {}
    if site.get("inventory"):
        out.append(f"; inventory <code>{e(str(site['inventory']))}</code>")
    if site.get("release"):
        out.append(f"; release <code>{e(str(site['release']))}</code>")
    out.append("</p>")
    for v in doc["verdicts"]:
        out.append(f"<div class='verdict {e(v['verdict'])}'>{e(v['title'])} (seed 001 "
                   f"{e(v['seed'])}): <b>{e(v['verdict'])}</b>: {e(v['means'])}</div><ul>")
        for need in v["needs"]:
            reasons = "; ".join(need["reasons"])
            out.append(f"<li class='{_cls(need['status'])}'>{e(need['need'])}: "
                       f"{need['passed']}/{need['of']} passed"
                       + (f": {e(reasons)}" if reasons else "") + "</li>")
        out.append("</ul>")
    load = doc.get("load") or {}
    if load.get("stand_in"):
        out.append(f"<p class='note'>{e(load['stand_in'])}</p>")
    m = doc.get("measurements") or {}
    if m:
        out.append("<h2>Latency</h2><div>")
        bounds = {c["id"]: c for c in doc["criteria"]}
        for key, title, cid in (("completion", "code completion", "completion_p95"),
                                ("chat_total", "chat, whole answer", "chat_p95"),
                                ("chat_first_token", "chat, first token", None),
                                ("ide_load", "IDE load", "ide_load_p95")):
            if key in m:
                c = bounds.get(cid) if cid else None
                lines = {}
                if c and c["minimum"] is not None:
                    lines["min"] = c["minimum"]
                    if c["target"] is not None:
                        lines["target"] = c["target"]
                out.append(histogram_svg(title, m[key], lines))
        out.append("</div>")
        shown = {k: v for k, v in load.items() if k != "stand_in"}
        if shown:
            out.append(f"<p>Load: {e(json.dumps(shown, sort_keys=True))}</p>")
    out.append("<h2>Criteria</h2><table><tr><th>criterion</th><th>kind</th><th>seed 001</th>"
               "<th>bound</th><th>value</th><th>status</th><th>evidence</th></tr>")
    for r in doc["criteria"]:
        detail = f"<div>{e(r['detail'])}</div>" if r.get("detail") else ""
        out.append(f"<tr class='{_cls(r['status'])}'><td>{e(r['title'])}</td>"
                   f"<td>{e(r['kind'])}</td><td>{e(r['seed'])}</td><td>{e(r['bound'])}</td>"
                   f"<td>{e(_value(r))}</td><td>{e(r['status'])}</td>"
                   f"<td>{detail}<div class='ev'>{e(_evidence(r))}</div></td></tr>")
    out.append("</table>")
    counts = doc["counts"]
    out.append(f"<p>{counts[PASSED]} passed, {counts[FAILED]} failed, "
               f"{counts[NOT_MEASURED]} not measured (never passed).</p></body></html>")
    return "\n".join(out)
