"""Seed 001's acceptance criteria as data, and the go/no-go rules that read them.

PoC (§2.2 success criteria, §2.4 checklist, §7.1 go/no-go) and Pilot (§3.3 completion
criteria, §7.2 go/no-go). Each criterion is measured by a check of `airlock acceptance`,
filled from the bank's survey CSV (what no machine can measure), or left *not measured*:
a criterion not measured is never passed, so a rule that needs it says NO-GO and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASSED, FAILED, NOT_MEASURED = "passed", "failed", "not measured"
STATUSES = (PASSED, FAILED, NOT_MEASURED)
KINDS = ("functional", "performance", "security", "availability", "survey")


@dataclass(frozen=True)
class Criterion:
    id: str
    phase: str  # poc | pilot
    kind: str  # one of KINDS
    title: str
    seed: str  # where seed 001 asks for it
    unit: str = ""  # for a figure: ms, s, %, /5
    minimum: float | None = None  # the seed's minimum (a figure passes when it meets it)
    target: float | None = None  # the seed's target (reported, never needed to pass)
    lower_is_better: bool = True

    def judge(self, value: float) -> str:
        if self.minimum is None:
            raise ValueError(f"{self.id} has no minimum to judge a figure against")
        ok = value < self.minimum if self.lower_is_better else value >= self.minimum
        return PASSED if ok else FAILED

    def meets_target(self, value: float) -> bool | None:
        if self.target is None:
            return None
        return value < self.target if self.lower_is_better else value >= self.target

    def bound(self) -> str:
        """The seed's minimum and target, as the report prints them."""
        if self.minimum is None:
            return ""
        op = "<" if self.lower_is_better else "≥"
        text = f"{op} {_num(self.minimum)}{self.unit}"
        if self.target is not None:
            text += f" (target {op} {_num(self.target)}{self.unit})"
        return text


def _num(x: float) -> str:
    return f"{x:g}"


CRITERIA: tuple[Criterion, ...] = (
    # PoC, functional (§2.4 기능 검증 / 호환성 검증)
    Criterion("workbench_loads", "poc", "functional",
              "code-server opens in the browser (signed in through the gateway)", "§2.4"),
    Criterion("terminal", "poc", "functional", "the terminal opens and runs a command",
              "§2.4"),
    Criterion("file_explorer", "poc", "functional",
              "the file explorer lists a folder and saves a file", "§2.4"),
    Criterion("websocket", "poc", "functional",
              "the WebSocket through the proxy stays up across a reconnect", "§2.4"),
    Criterion("extensions", "poc", "functional",
              "the extensions the inventory names are installed in each workbench", "§2.4"),
    Criterion("continue_chat", "poc", "functional",
              "Continue answers a chat question (its CLI, the user's config and key)",
              "§2.1, §2.4"),
    Criterion("continue_completion", "poc", "functional",
              "code completion answers on the endpoint the workbench uses", "§2.4"),
    Criterion("git", "poc", "functional",
              "Git clone, commit and push from a workbench to the source zone", "§2.4"),
    # PoC, performance (§2.2, §2.4 성능 검증)
    Criterion("completion_p95", "poc", "performance", "code completion latency, P95",
              "§2.2, §2.4, §7.1", "ms", 400, 200),
    Criterion("chat_p95", "poc", "performance", "chat response time, P95", "§2.2, §2.4",
              "s", 5, 3),
    Criterion("ide_load_p95", "poc", "performance", "IDE load time, P95", "§2.4", "s", 10),
    Criterion("error_rate", "poc", "performance",
              "requests that failed under the simulated users' load", "(airlock)", "%", 1),
    # PoC, from the bank's survey (§2.2)
    Criterion("acceptance_rate", "poc", "survey", "completion acceptance rate (survey)",
              "§2.2", "%", 15, 25, lower_is_better=False),
    Criterion("satisfaction_poc", "poc", "survey", "user satisfaction (survey)",
              "§2.2, §7.1", "/5", 3.5, 4, lower_is_better=False),
    # Pilot, security checklist (§3.3 보안 통제: 체크리스트 100%)
    Criterion("unauthenticated_refused", "pilot", "security",
              "a request without a session is refused", "§3.3"),
    Criterion("other_workbench_refused", "pilot", "security",
              "a user cannot open another user's workbench", "§3.3"),
    Criterion("mfa_demanded", "pilot", "security",
              "sign-in demands the second factor (TOTP)", "§3.3"),
    Criterion("tls_only_strong", "pilot", "security",
              "TLS 1.2+ only, the site CA's certificate, HSTS present", "§3.3"),
    Criterion("extension_whitelist", "pilot", "security",
              "an extension off the whitelist is refused", "§3.3"),
    Criterion("dlp_blocks", "pilot", "security",
              "a prompt carrying a resident registration number is blocked", "§3.3"),
    Criterion("rate_limited", "pilot", "security",
              "a user over their rate limit is throttled (429)", "§3.3"),
    Criterion("egress_refused", "pilot", "security",
              "each zone's traffic to an address outside the site is refused", "§3.3"),
    Criterion("audit_chain", "pilot", "security", "the audit chain verifies", "§3.3"),
    # Pilot, availability (§3.3 안정성, §7.2)
    Criterion("availability", "pilot", "availability",
              "availability of every component over a week", "§3.3, §7.2", "%", 99,
              lower_is_better=False),
    # Pilot, from people (§3.3, §7.2)
    Criterion("satisfaction_pilot", "pilot", "survey", "user satisfaction (survey)", "§3.3",
              "/5", 4, lower_is_better=False),
    Criterion("security_approval", "pilot", "survey",
              "the security team's approval (recorded in the survey CSV)", "§7.2"),
)
BY_ID = {c.id: c for c in CRITERIA}


@dataclass(frozen=True)
class Rule:
    phase: str
    seed: str
    title: str
    needs: tuple[str, ...]  # criterion ids, or "security:*" for every security criterion
    then: str  # what GO means
    otherwise: str  # what NO-GO means
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)


RULES: tuple[Rule, ...] = (
    Rule("poc", "§7.1", "PoC go/no-go",
         ("completion_p95", "continue_core", "satisfaction_poc"),
         "go on to Phase 2 (Pilot)", "another PoC round, or review the project",
         # §7.1's "Continue 핵심 기능 동작": the PoC checklist's Continue items
         {"continue_core": ("extensions", "continue_chat", "continue_completion")}),
    Rule("pilot", "§7.2", "Pilot go/no-go",
         ("security_checklist", "availability", "security_approval"),
         "go on to Phase 3 (Production)", "extend the stabilisation period",
         {"security_checklist": tuple(c.id for c in CRITERIA if c.kind == "security")}),
)


def criteria_for(phase: str) -> list[Criterion]:
    """What the report measures for PHASE: a Pilot report keeps the PoC's rows too (the
    Pilot is judged on top of a PoC that passed)."""
    order = ("poc", "pilot")
    if phase not in order:
        raise ValueError(f"unknown phase {phase!r}: poc or pilot")
    upto = order[: order.index(phase) + 1]
    return [c for c in CRITERIA if c.phase in upto]


def rules_for(phase: str) -> list[Rule]:
    order = ("poc", "pilot")
    upto = order[: order.index(phase) + 1]
    return [r for r in RULES if r.phase in upto]


def verdict(rule: Rule, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """GO when every criterion the rule needs passed; otherwise NO-GO, with each reason
    (a failed figure with its value, or what was not measured)."""
    items = []
    for need in rule.needs:
        members = rule.groups.get(need, (need,))
        got = [(m, results.get(m, {"status": NOT_MEASURED})) for m in members]
        statuses = {r["status"] for _, r in got}
        status = (FAILED if FAILED in statuses else NOT_MEASURED if NOT_MEASURED in statuses
                  else PASSED)
        passed = sum(1 for _, r in got if r["status"] == PASSED)
        reasons = [f"{m}: {r['status']}" + (f" ({r['detail']})" if r.get("detail") else "")
                   for m, r in got if r["status"] != PASSED]
        items.append({"need": need, "status": status, "passed": passed, "of": len(got),
                      "reasons": reasons})
    go = all(i["status"] == PASSED for i in items)
    return {"phase": rule.phase, "seed": rule.seed, "title": rule.title,
            "verdict": "GO" if go else "NO-GO", "means": rule.then if go else rule.otherwise,
            "needs": items}
