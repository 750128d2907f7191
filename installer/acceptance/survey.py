"""What no machine can measure, from a CSV the bank provides.

One row per item, a header first::

    item,value,note
    acceptance_rate,23.5,"from the week-3 survey, 5 respondents"
    satisfaction,3.9,"mean of 5 answers, 1-5 scale"
    security_approval,yes,"approved by the security team on 2027-01-15 (ref SEC-123)"

``satisfaction`` counts for the PoC's and the Pilot's row; ``satisfaction_poc`` and
``satisfaction_pilot`` set one of them. A bad file is refused naming the file, the line and
what to write instead; nothing of it is used then.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from installer.acceptance.criteria import BY_ID, FAILED, PASSED
from installer.errors import UsageError

ITEMS = {"acceptance_rate": ("acceptance_rate",),
         "satisfaction": ("satisfaction_poc", "satisfaction_pilot"),
         "satisfaction_poc": ("satisfaction_poc",),
         "satisfaction_pilot": ("satisfaction_pilot",),
         "security_approval": ("security_approval",)}
RANGES = {"acceptance_rate": (0.0, 100.0), "satisfaction": (1.0, 5.0),
          "satisfaction_poc": (1.0, 5.0), "satisfaction_pilot": (1.0, 5.0)}
YES, NO = {"yes", "approved", "true"}, {"no", "rejected", "false"}
MAX_BYTES = 1 << 20


def read(path: Path) -> dict[str, dict[str, Any]]:
    """Criterion id -> result, from the survey CSV at PATH."""
    def bad(line: int, problem: str) -> UsageError:
        return UsageError(f"{path}:{line}: {problem}",
                          hint="write `item,value,note` rows; items: " + ", ".join(ITEMS))

    try:
        if path.stat().st_size > MAX_BYTES:
            raise UsageError(f"{path}: larger than {MAX_BYTES >> 10} KiB; a survey summary "
                             "is a few lines")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise UsageError(f"{path}: cannot read the survey CSV ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text", hint="save the CSV as UTF-8") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["item", "value"]:
        raise bad(1, "the first line must be the header `item,value,note`")
    out: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < 2:
            raise bad(n, "a row needs an item and a value")
        item, value = row[0].strip(), row[1].strip()
        note = row[2].strip() if len(row) > 2 else ""
        if item not in ITEMS:
            raise bad(n, f"unknown item {item!r}")
        for cid in ITEMS[item]:
            if cid in seen:
                raise bad(n, f"{cid} is already given on line {seen[cid]}")
            seen[cid] = n
        evidence = f"{path.name}:{n}" + (f" ({note})" if note else "")
        if item == "security_approval":
            v = value.lower()
            if v not in YES | NO:
                raise bad(n, f"security_approval is {value!r}: write yes or no")
            result = {"status": PASSED if v in YES else FAILED, "value": v in YES,
                      "evidence": evidence, "source": "survey"}
            out["security_approval"] = result
            continue
        try:
            number = float(value.rstrip("%"))
        except ValueError:
            raise bad(n, f"{item} is {value!r}, not a number") from None
        low, high = RANGES[item]
        if not low <= number <= high:
            raise bad(n, f"{item} is {number:g}: it must be between {low:g} and {high:g}")
        for cid in ITEMS[item]:
            c = BY_ID[cid]
            out[cid] = {"status": c.judge(number), "value": number,
                        "target_met": c.meets_target(number), "evidence": evidence,
                        "source": "survey"}
    return out
