"""Data-loss prevention rules for prompts on their way to a model.

Pure Python, no LiteLLM import: the LiteLLM guardrail (airlock_litellm.py) calls it, the
role's checks compile the site's rules with it before anything changes, and the tests use
it directly. A rule is a regular expression, an optional check that a match must pass
(a resident registration number's check digit, a card number's Luhn sum) and an action:
``block`` (the request is refused) or ``mask`` (the match is replaced by ``[MASKED:rule]``).
Findings name the rule and where, never the text that matched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("block", "mask")
LOADED: set[str] = set()  # rules files a running guardrail has loaded (one module for all)


def rrn_valid(text: str) -> bool:
    """A Korean resident registration number (YYMMDD-SNNNNNC) with a real birth date and
    a check digit that adds up: weights 2..9,2..5 over the first twelve digits, check
    digit (11 - sum mod 11) mod 10."""
    digits = [int(c) for c in text if c.isdigit()]
    if len(digits) != 13:
        return False
    month, day = digits[2] * 10 + digits[3], digits[4] * 10 + digits[5]
    if not (1 <= month <= 12 and 1 <= day <= 31) or digits[6] not in range(1, 9):
        return False
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    total = sum(d * w for d, w in zip(digits, weights, strict=False))
    return (11 - total % 11) % 10 == digits[12]


def luhn_valid(text: str) -> bool:
    """A payment card number: 13 to 19 digits whose Luhn sum is a multiple of ten."""
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


CHECKS: dict[str, Callable[[str], bool]] = {"rrn": rrn_valid, "luhn": luhn_valid}

# The rules every site gets unless it sets its own list. Patterns keep to what the
# rule names: a bare run of digits is not an account number, so the bank rule wants the
# banks' own hyphenated layouts, and a card number starts as the card networks' do
# (2221-2720, 3, 4, 5, 6; 9 for Korean domestic cards), so a timestamp is not one.
DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "kr_resident_registration_number", "action": "block", "check": "rrn",
     "pattern": r"(?<!\d)\d{6}[- ]?[1-8]\d{6}(?!\d)"},
    {"name": "payment_card_number", "action": "block", "check": "luhn",
     "pattern": r"(?<![\d-])(?=[3-69]|2[2-7])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}"
                r"|\d{4}([ -])\d{6}\2\d{4,5})(?![\d-])"},
    {"name": "kr_bank_account_number", "action": "mask",
     "pattern": r"(?<![\d-])(?:\d{6}-\d{2}-\d{6}|\d{3}-\d{3}-\d{6}|\d{4}-\d{3}-\d{6}"
                r"|\d{3}-\d{6}-\d{5}|\d{3}-\d{4}-\d{4}-\d{2}|\d{3}-\d{6}-\d{2}-\d{3}"
                r"|\d{3}-\d{2}-\d{6}-\d)(?![\d-])"},
    {"name": "private_key", "action": "block",
     "pattern": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"},
    {"name": "cloud_access_key", "action": "block",
     "pattern": r"\b(?:(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}"
                r"|gh[pousr]_[A-Za-z0-9]{36}|glpat-[A-Za-z0-9_-]{20,}"
                r"|xox[abprs]-[A-Za-z0-9-]{10,})\b"
                r"|AccountKey=[A-Za-z0-9+/]{86}=="},
    {"name": "connection_string_password", "action": "mask",
     "pattern": r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@]+:(?P<secret>[^\s@/]+)@"
                r"|(?i:\b(?:password|pwd)\s*=\s*)(?P<secret2>[^;\s\"']+)"},
]


class RuleError(ValueError):
    """A rule that cannot be used, naming it and saying what to change."""


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    regex: re.Pattern[str]
    check: Callable[[str], bool] | None = None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the rule fires: the named group ``secret*`` when the pattern has one
        (mask the password, not the whole URL), else the whole match."""
        out = []
        for m in self.regex.finditer(text):
            if self.check and not self.check(m.group(0)):
                continue
            groups = [g for g in m.re.groupindex if g.startswith("secret") and m.group(g)]
            out.append(m.span(groups[0]) if groups else m.span())
        return out


@dataclass
class Verdict:
    """What the rules did to one request: the rules that fired (name -> action, count),
    and whether the request is refused."""
    fired: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def blocked(self) -> list[str]:
        return sorted(n for n, f in self.fired.items() if f["action"] == "block")

    @property
    def masked(self) -> list[str]:
        return sorted(n for n, f in self.fired.items() if f["action"] == "mask")


def compile_rules(rules: Iterable[dict[str, Any]], where: str = "litellm_dlp_rules"
                  ) -> list[Rule]:
    """Check and compile the site's rules; a bad one raises RuleError naming it."""
    out: list[Rule] = []
    seen: set[str] = set()
    for i, r in enumerate(rules):
        label = f"{where}[{i}]"
        if not isinstance(r, dict):
            raise RuleError(f"{label}: a rule is a mapping with name, pattern and action")
        name = r.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
            raise RuleError(f"{label}: name {name!r} must be lower-case letters, digits "
                            "and _ (it is written to the audit trail)")
        label = f"{where}[{i}] ({name})"
        if name in seen:
            raise RuleError(f"{label}: a second rule with this name")
        seen.add(name)
        unknown = set(r) - {"name", "pattern", "action", "check", "description"}
        if unknown:
            raise RuleError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}")
        action = r.get("action")
        if action not in ACTIONS:
            raise RuleError(f"{label}: action {action!r} must be one of {', '.join(ACTIONS)}")
        check = r.get("check")
        if check is not None and check not in CHECKS:
            raise RuleError(f"{label}: check {check!r} must be one of "
                            f"{', '.join(sorted(CHECKS))} (or left out)")
        pattern = r.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise RuleError(f"{label}: pattern must be a non-empty regular expression")
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise RuleError(f"{label}: pattern does not compile: {e}") from None
        if regex.search(""):
            raise RuleError(f"{label}: pattern matches the empty string, so it would "
                            "fire on every request")
        out.append(Rule(name, action, regex, CHECKS[check] if check else None))
    return out


def _apply_text(text: str, rules: list[Rule], verdict: Verdict) -> str:
    spans: list[tuple[int, int, Rule]] = []
    for rule in rules:
        for start, end in rule.spans(text):
            f = verdict.fired.setdefault(rule.name, {"action": rule.action, "count": 0})
            f["count"] += 1
            if rule.action == "mask":
                spans.append((start, end, rule))
    # mask from the end so earlier offsets stay right; overlapping spans: first wins
    spans.sort(key=lambda s: (s[0], -s[1]))
    kept: list[tuple[int, int, Rule]] = []
    for s in spans:
        if not kept or s[0] >= kept[-1][1]:
            kept.append(s)
    for start, end, rule in reversed(kept):
        text = text[:start] + f"[MASKED:{rule.name}]" + text[end:]
    return text


def apply(payload: Any, rules: list[Rule], verdict: Verdict | None = None
          ) -> tuple[Any, Verdict]:
    """Run the rules over every string in a request's text (chat messages, their content
    parts, a completion prompt or a list of prompts): returns the payload with masks put
    in, and the verdict. Keys are left alone; only values are text a model reads."""
    verdict = verdict if verdict is not None else Verdict()
    if isinstance(payload, str):
        return _apply_text(payload, rules, verdict), verdict
    if isinstance(payload, list):
        return [apply(x, rules, verdict)[0] for x in payload], verdict
    if isinstance(payload, dict):
        return {k: apply(v, rules, verdict)[0] if k in ("content", "text") or
                isinstance(v, list | dict) else v
                for k, v in payload.items()}, verdict
    return payload, verdict


def policy_rules(policy: dict[str, Any], where: str = "litellm_dlp") -> list[dict[str, Any]]:
    """The rules a site's policy asks for: the built-in ones (unless ``builtin`` is false)
    less those named in ``disable``, each with its action from ``actions`` where the site
    sets one, then the site's own ``rules``. Unknown names are refused, not ignored."""
    unknown = set(policy) - {"builtin", "disable", "actions", "rules"}
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (expected "
                        "builtin, disable, actions, rules)")
    builtin = {r["name"]: r for r in DEFAULT_RULES} if policy.get("builtin", True) else {}
    for key in ("disable", "actions"):
        for name in policy.get(key) or []:
            if name not in builtin:
                raise RuleError(f"{where}.{key}: {name!r} is not a built-in rule"
                                + (" (builtin is false)" if not policy.get("builtin", True)
                                   else f"; they are {', '.join(builtin)}"))
    out = [{**r, "action": (policy.get("actions") or {}).get(n, r["action"])}
           for n, r in builtin.items() if n not in (policy.get("disable") or [])]
    return out + list(policy.get("rules") or [])


def load_rules(path: str) -> list[Rule]:
    """The rules file the role renders: JSON, a policy (see ``policy_rules``) or a plain
    list of rules."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, dict):
        data = policy_rules(data, where=path)
    return compile_rules(data, where=path)


if __name__ == "__main__":  # the role's check: python3 airlock_dlp.py RULES.json
    import sys
    try:
        n = len(load_rules(sys.argv[1]))
    except (OSError, ValueError) as e:
        sys.exit(f"DLP rules: {e}")
    print(f"{n} DLP rules compile")
