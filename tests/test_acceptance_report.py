"""`airlock acceptance`'s judgement and report, without a lab: seed 001's criteria and rules,
the survey CSV, availability from samples, and the report (schema, HTML, Markdown)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest

from installer.acceptance import availability, report, survey
from installer.acceptance.criteria import (
    BY_ID,
    CRITERIA,
    FAILED,
    NOT_MEASURED,
    PASSED,
    RULES,
    criteria_for,
    verdict,
)
from installer.errors import UsageError

T0 = dt.datetime(2027, 1, 4, tzinfo=dt.UTC)


def test_the_seeds_bounds_are_judged_the_seeds_way() -> None:
    c = BY_ID["completion_p95"]
    assert (c.minimum, c.target, c.unit) == (400, 200, "ms")
    assert c.judge(399.9) == PASSED and c.judge(400) == FAILED  # "< 400ms"
    assert c.meets_target(199) and not c.meets_target(250)
    s = BY_ID["satisfaction_poc"]
    assert s.judge(3.5) == PASSED and s.judge(3.49) == FAILED  # "3.5/5" at least
    assert BY_ID["availability"].judge(99.0) == PASSED
    assert BY_ID["chat_p95"].bound() == "< 5s (target < 3s)"
    assert len({c.id for c in CRITERIA}) == len(CRITERIA)


def test_a_pilot_report_keeps_the_pocs_rows() -> None:
    poc, pilot = criteria_for("poc"), criteria_for("pilot")
    assert {c.phase for c in poc} == {"poc"} and set(poc) < set(pilot)
    with pytest.raises(ValueError):
        criteria_for("production")


def _all(status: str) -> dict[str, dict]:
    return {c.id: {"status": status} for c in CRITERIA}


def test_go_only_when_every_need_passed_and_not_measured_is_never_passed() -> None:
    poc = next(r for r in RULES if r.phase == "poc")
    assert verdict(poc, _all(PASSED))["verdict"] == "GO"
    results = _all(PASSED)
    del results["satisfaction_poc"]  # no survey given
    v = verdict(poc, results)
    assert v["verdict"] == "NO-GO" and v["means"].startswith("another PoC")
    need = next(n for n in v["needs"] if n["need"] == "satisfaction_poc")
    assert need["status"] == NOT_MEASURED and need["reasons"] == ["satisfaction_poc: not "
                                                                  "measured"]
    # §7.1's "Continue core functions" is the checklist's Continue rows together
    results = _all(PASSED)
    results["continue_chat"] = {"status": FAILED, "detail": "no answer"}
    v = verdict(poc, results)
    core = next(n for n in v["needs"] if n["need"] == "continue_core")
    assert v["verdict"] == "NO-GO" and (core["passed"], core["of"]) == (2, 3)
    assert core["reasons"] == ["continue_chat: failed (no answer)"]
    # the Pilot's security checklist is 100 %: one probe failing is NO-GO
    pilot = next(r for r in RULES if r.phase == "pilot")
    results = _all(PASSED)
    results["dlp_blocks"] = {"status": FAILED}
    sec = next(n for n in verdict(pilot, results)["needs"] if n["need"] == "security_checklist")
    assert sec["status"] == FAILED and sec["of"] == 9 and sec["passed"] == 8


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "survey.csv"
    p.write_text(text)
    return p


def test_the_survey_csv_fills_what_no_machine_measures(tmp_path: Path) -> None:
    got = survey.read(_csv(tmp_path, "item,value,note\nacceptance_rate,23.5%,week 3\n"
                                     "satisfaction,3.8,\nsecurity_approval,Yes,SEC-1\n"))
    assert got["acceptance_rate"]["status"] == PASSED
    assert got["acceptance_rate"]["target_met"] is False  # 25 % is the target
    assert got["satisfaction_poc"]["status"] == PASSED  # >= 3.5
    assert got["satisfaction_pilot"]["status"] == FAILED  # the Pilot asks 4/5
    assert got["security_approval"]["value"] is True
    assert got["acceptance_rate"]["evidence"] == "survey.csv:2 (week 3)"


@pytest.mark.parametrize("text, message", [
    ("", ":1: the first line must be the header"),
    ("item,value\nsatisfaction,great\n", ":2: satisfaction is 'great', not a number"),
    ("item,value\nsatisfaction,7\n", ":2: satisfaction is 7: it must be between 1 and 5"),
    ("item,value\nnps,40\n", ":2: unknown item 'nps'"),
    ("item,value\nsecurity_approval,maybe\n", "write yes or no"),
    ("item,value\nsatisfaction,4\n\nsatisfaction_poc,4\n",
     ":4: satisfaction_poc is already given on line 2"),
])
def test_a_bad_survey_names_file_line_and_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        survey.read(_csv(tmp_path, text))
    assert message in str(e.value) and "survey.csv" in str(e.value)


def _sample(t: dt.datetime, interval: float = 60, **comps: bool) -> dict:
    return {"time": t.isoformat(), "interval": interval, "_t": t,
            "components": {k: {"ok": v} for k, v in comps.items()}}


def test_uptime_counts_only_observed_time() -> None:
    minute = dt.timedelta(minutes=1)
    samples = [_sample(T0 + i * minute, gw=True, llm=i % 10 != 0) for i in range(60)]
    # the watcher stopped for an hour: that hour is not observed, not up
    samples += [_sample(T0 + dt.timedelta(hours=2) + i * minute, gw=True, llm=True)
                for i in range(60)]
    end = T0 + dt.timedelta(hours=3)
    u = availability.uptime(samples, end, dt.timedelta(hours=3))
    assert u["covered_s"] == pytest.approx(2 * 3600 + 60)  # last sample's 2x interval cap
    assert u["components"]["gw"]["uptime"] == 1.0
    assert u["components"]["llm"]["uptime"] == pytest.approx(1 - 6 / 120, abs=0.01)
    assert u["components"]["llm"]["downs"] == 6
    assert u["coverage"] < availability.COVERAGE
    row = availability.criterion(u)
    assert row["status"] == NOT_MEASURED and "cover 0.08 of the 0.125 days" in row["detail"]


def test_a_week_of_samples_is_judged_against_99_percent() -> None:
    hour = dt.timedelta(hours=1)
    down = {5, 6}  # two hours of 168 down: 98.8 %
    samples = [_sample(T0 + i * hour, 3600, gw=True, ide=i not in down) for i in range(168)]
    u = availability.uptime(samples, T0 + 168 * hour)
    row = availability.criterion(u)
    assert u["coverage"] == pytest.approx(1.0)
    assert row["status"] == FAILED and row["value"] == pytest.approx(98.81, abs=0.01)
    assert row["detail"].startswith("lowest: ide 98.81 %")
    samples = [_sample(T0 + i * hour, 3600, gw=True, ide=i != 5) for i in range(168)]
    assert availability.criterion(availability.uptime(samples, T0 + 168 * hour))[
        "status"] == PASSED


def test_samples_file_problems_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "availability.jsonl"
    good = {"time": T0.isoformat(), "interval": 60, "components": {"gw": {"ok": True}}}
    p.write_text(json.dumps(good) + "\n" + json.dumps({**good, "time": "2027-01-04T00:01"})
                 + "\n")
    with pytest.raises(UsageError) as e:
        availability.load(p)
    assert f"{p}:2: not an availability sample" in str(e.value) and "time zone" in str(e.value)
    p.write_text(json.dumps(good) + "\n")
    assert len(availability.load(p)) == 1 and availability.load(tmp_path / "none") == []


def _doc(results: dict, phase: str = "poc") -> dict:
    m = {"completion": report.series([0.12, 0.15, 0.3, 0.41], "s")}
    return report.build(phase=phase, results=results, site={"inventory": "inv/hosts.yml"},
                        load={"users": 4, "duration_s": 30, "stand_in": "llama.cpp on CPU"},
                        measurements=m, now=T0)


def test_the_report_validates_and_renders_all_three_or_none(tmp_path: Path) -> None:
    results = {"completion_p95": {"status": FAILED, "value": 410.0,
                                  "detail": "<script>alert(1)</script>"}}
    doc = _doc(results)
    assert doc["counts"] == {PASSED: 0, FAILED: 1, NOT_MEASURED: len(criteria_for("poc")) - 1}
    assert doc["verdicts"][0]["verdict"] == "NO-GO"
    files = report.write(doc, tmp_path / "out")
    assert json.loads(files["json"].read_text()) == doc
    page = files["html"].read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page  # evidence is escaped
    assert page.count("<svg") == 1 and "NO-GO" in page
    assert "| code completion latency, P95 | §2.2, §2.4, §7.1 | < 400ms (target < 200ms) " \
           "| 410 ms | failed |" in files["markdown"].read_text()
    # an invalid document writes nothing
    bad = {**doc, "phase": "production"}
    with pytest.raises(jsonschema.ValidationError):
        report.write(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "report.html", "report.json", "report.md"]


def test_the_schema_refuses_a_report_that_passes_an_unknown_status() -> None:
    doc = _doc({})
    doc["criteria"][0]["status"] = "skipped"
    with pytest.raises(jsonschema.ValidationError):
        report.validate(doc)
    with pytest.raises(ValueError):
        _doc({"completion_p95": {"status": "skipped"}})


def test_percentiles_are_nearest_rank() -> None:
    s = report.series(list(range(1, 101)), "ms")
    assert (s["p50"], s["p95"], s["p99"], s["count"]) == (50, 95, 99, 100)
    assert report.series([], "ms")["p95"] is None


class _Inv:
    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = groups

    def group(self, name: str) -> list[str]:
        return self.groups.get(name, [])


def _ctx(tmp_path: Path, phase: str = "poc", **groups: list[str]):
    from installer.acceptance.run import Context

    said: list[str] = []
    ctx = Context(root=tmp_path, inventory=tmp_path / "hosts.yml", site=tmp_path / "site",
                  inv=_Inv(groups), phase=phase, users=1, duration=1.0, out=tmp_path,
                  say=said.append)
    return ctx, said


def test_checks_report_not_deployed_failed_and_broken_probes(tmp_path: Path) -> None:
    from installer.acceptance.run import Check, figure, passed, run_checks
    from installer.errors import HostError

    def broken(ctx):
        raise HostError("ide1: unreachable")

    def crashes(ctx):
        return {}["nothing"]

    checks = [
        Check("terminal", ("terminal",), ("ide",), lambda ctx: {"terminal": passed("ran")}),
        Check("git", ("git",), ("git_server",), lambda ctx: {"git": passed()}),
        Check("explorer", ("file_explorer",), ("ide",), broken),
        Check("socket", ("websocket",), ("ide",), crashes),
        Check("latency", ("completion_p95", "chat_p95"), ("llm_gateway",),
              lambda ctx: {"completion_p95": figure("completion_p95", 180.0)}),
        Check("dlp", ("dlp_blocks",), ("llm_gateway",), lambda ctx: {}, phase="pilot"),
    ]
    ctx, said = _ctx(tmp_path, ide=["ide1"], llm_gateway=["ai1"])
    got = run_checks(ctx, checks)
    assert got["terminal"]["status"] == PASSED and got["terminal"]["check"]["name"] == "terminal"
    assert got["git"] == {"status": NOT_MEASURED, "detail": "not deployed: the inventory has "
                                                            "no host in git_server"}
    assert got["file_explorer"]["status"] == FAILED
    assert got["file_explorer"]["detail"] == "ide1: unreachable"
    assert got["websocket"]["status"] == FAILED and "KeyError" in got["websocket"]["detail"]
    assert got["completion_p95"]["status"] == PASSED and got["completion_p95"]["target_met"]
    assert got["chat_p95"]["status"] == NOT_MEASURED  # the check gave no figure for it
    assert "dlp_blocks" not in got  # a Pilot check is not run for a PoC report
    assert "git: not measured (no git_server host)" in said
    doc = report.build(phase="poc", results=got, site={}, load={}, measurements={}, now=T0)
    report.validate(doc)
    ctx, _ = _ctx(tmp_path, "pilot", ide=["ide1"], llm_gateway=["ai1"])
    assert run_checks(ctx, checks)["dlp_blocks"]["status"] == NOT_MEASURED


def _tls_pair(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 it signed (openssl, as a site CA does)."""
    import subprocess

    def ssl_(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ssl_("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test site CA", "-days", "2")
    ssl_("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl_("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "srv.crt", "-days", "2", "-extfile", "ext")
    return d / "ca.crt", d / "srv.crt", d / "srv.key"


def test_watch_records_samples_and_a_component_going_down(tmp_path: Path) -> None:
    """--watch against a real HTTPS server on loopback (TLS checked against its CA): up
    while it answers below 500, down when it answers 503 or is gone."""
    import http.server
    import ssl
    import threading

    from installer.acceptance import acceptance as acc

    ca, crt, key = _tls_pair(tmp_path)
    site = tmp_path / "site"
    (site / "pki").mkdir(parents=True)
    (site / "pki" / "ca.crt").write_bytes(ca.read_bytes())
    state = {"status": 302}

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"])
            self.send_header("Location", "/auth/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}/u/alice/"
    try:
        path = acc.watch(tmp_path, tmp_path / "hosts.yml", site=site, interval=5, rounds=1,
                         say=lambda m: None, endpoints={"workbench:alice": url})
        state["status"] = 503
        acc.watch(tmp_path, tmp_path / "hosts.yml", site=site, interval=5, rounds=1,
                  say=lambda m: None, endpoints={"workbench:alice": url})
    finally:
        httpd.shutdown()
        httpd.server_close()
    acc.watch(tmp_path, tmp_path / "hosts.yml", site=site, interval=5, rounds=1,
              say=lambda m: None, endpoints={"workbench:alice": url})
    samples = availability.load(path)
    states = [s["components"]["workbench:alice"] for s in samples]
    assert [s["ok"] for s in states] == [True, False, False], states
    assert states[0]["detail"].startswith("302") and states[1]["detail"].startswith("503")
    assert "ConnectionRefused" in states[2]["detail"] or "URLError" in states[2]["detail"]
    with pytest.raises(UsageError):
        acc.watch(tmp_path, tmp_path / "hosts.yml", site=site, interval=1, rounds=1,
                  endpoints={"x": url})


def test_acceptance_writes_the_report_and_one_audit_record(tmp_path: Path) -> None:
    """The whole command on the PoC inventory with stand-in checks (the lab's real probes
    are tests/test_acceptance.py): report files, verdict, the audit record; a bad survey
    stops it before any check runs."""
    from installer.acceptance import acceptance as acc
    from installer.acceptance.run import Check, passed
    from installer.deploy.audit import AuditLog

    repo = Path(__file__).resolve().parents[1]
    ran: list[str] = []

    def ok(ctx):
        ran.append("ok")
        return {"extensions": passed("3 installed")}

    checks = [Check("extensions", ("extensions",), ("ide",), ok)]
    site = tmp_path / "site"
    bad = _csv(tmp_path, "item,value\nsatisfaction,9\n")
    with pytest.raises(UsageError):
        acc.acceptance(repo, repo / "inventories/poc/hosts.yml", site=site, survey_csv=bad,
                       checks=checks, say=lambda m: None)
    assert ran == []
    good = _csv(tmp_path, "item,value\nsatisfaction,4.1\n")
    doc = acc.acceptance(repo, repo / "inventories/poc/hosts.yml", site=site,
                         survey_csv=good, checks=checks, out=tmp_path / "r",
                         say=lambda m: None, now=T0)
    assert ran == ["ok"] and doc["phase"] == "poc"
    rows = {r["id"]: r for r in doc["criteria"]}
    assert rows["extensions"]["status"] == PASSED
    assert rows["satisfaction_poc"]["status"] == PASSED and rows["satisfaction_poc"][
        "source"] == "survey"
    assert doc["verdicts"][0]["verdict"] == "NO-GO"  # completion and Continue: not measured
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["report.html", "report.json",
                                                                  "report.md"]
    records = [json.loads(x) for x in (site / "audit.jsonl").read_text().splitlines()]
    assert records[-1]["command"] == "acceptance" and records[-1]["result"] == "ok"
    assert records[-1]["verdicts"] == {"poc": "NO-GO"}
    assert AuditLog(site).verify()["ok"]
    with pytest.raises(UsageError) as e:
        acc.acceptance(repo, repo / "inventories/poc/hosts.yml", site=site, phase="production",
                       checks=checks, say=lambda m: None)
    assert "acceptance judges the PoC and the Pilot" in str(e.value)


def test_a_totp_code_is_not_offered_twice_across_processes(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Keycloak refuses a code already used: the demo's login and a later process's (a
    test, `airlock acceptance`) share the last code through the used file."""
    import pyotp

    from installer.lab import browser

    codes = iter(["111111", "111111", "222222"])
    monkeypatch.setattr(pyotp.TOTP, "now", lambda self: next(codes))
    slept: list[float] = []
    monkeypatch.setattr(browser.time, "sleep", slept.append)
    used = tmp_path / "secrets" / "alice.totp-used"
    secret = pyotp.random_base32()
    assert browser.totp_code({"totp": secret, "used_file": str(used)}) == "111111"
    assert used.read_text() == "111111" and used.stat().st_mode & 0o777 == 0o600
    # another process: a fresh account dict, the same file
    assert browser.totp_code({"totp": secret, "used_file": str(used)}) == "222222"
    assert len(slept) == 1  # it waited for the next period once
