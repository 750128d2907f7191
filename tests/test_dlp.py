"""The DLP rules the LiteLLM guardrail applies to every prompt: each built-in rule fires on
what it names and not on look-alikes, masks keep the rest of the text, a site's bad rule
is refused naming it, and what the verdict records never carries the secret."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FILES = REPO / "roles" / "litellm" / "files"
_spec = importlib.util.spec_from_file_location("airlock_dlp", FILES / "airlock_dlp.py")
dlp = importlib.util.module_from_spec(_spec)
sys.modules["airlock_dlp"] = dlp
_spec.loader.exec_module(dlp)
RULES = dlp.compile_rules(dlp.DEFAULT_RULES)
RRN_OK = "900101-1234568"  # check digit 8: (11 - 124 mod 11) mod 10


def fired(text: str) -> dict:
    return dlp.apply(text, RULES)[1].fired


@pytest.mark.parametrize("text, rule", [
    ("my number is 900101-1234568, help", "kr_resident_registration_number"),
    ("주민번호 9001011234568 입니다", "kr_resident_registration_number"),
    ("card 4111 1111 1111 1111 exp 12/29", "payment_card_number"),
    ("card=5500-0000-0000-0004", "payment_card_number"),
    ("KB 123456-12-123456 로 보내줘", "kr_bank_account_number"),
    ("신한 110-123-456789", "kr_bank_account_number"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=", "private_key"),
    ("-----BEGIN RSA PRIVATE KEY-----", "private_key"),
    ("-----BEGIN PRIVATE KEY-----", "private_key"),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "cloud_access_key"),
    ("token ghp_" + "a1B2" * 9, "cloud_access_key"),
    ("url = 'postgresql://app:S3cr3t!@db1:5432/app'", "connection_string_password"),
    ("Server=db1;User Id=app;Password=S3cr3t!;", "connection_string_password"),
])
def test_each_rule_fires_on_what_it_names(text: str, rule: str) -> None:
    assert set(fired(text)) == {rule}, fired(text)


@pytest.mark.parametrize("text", [
    "900101-1234567",          # check digit wrong
    "901301-1234568",          # month 13
    "900101-9234568",          # gender/century digit 9
    "4111 1111 1111 1112",     # Luhn fails
    "0000 0000 0000 0000",     # all one digit
    "call 010-1234-5678 or 02-123-4567",
    "released 2026-12-03 at 11:43:12, build 20261203114312",
    "-----BEGIN PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----",
    "AKIA short",
    "https://gitlab.bank.example/group/project.git",
    "postgresql://app@db1/app",
    "for i in range(1234567890): pass",
])
def test_look_alikes_pass(text: str) -> None:
    assert fired(text) == {}, fired(text)


def test_mask_replaces_only_the_secret_and_keeps_the_rest() -> None:
    text = "connect with postgresql://app:S3cr3t!@db1/app and account 110-123-456789."
    out, verdict = dlp.apply(text, RULES)
    assert out == ("connect with postgresql://app:[MASKED:connection_string_password]@db1"
                   "/app and account [MASKED:kr_bank_account_number].")
    assert verdict.masked == ["connection_string_password", "kr_bank_account_number"]
    assert verdict.blocked == []
    assert "S3cr3t" not in json.dumps(verdict.fired)


def test_a_chat_request_is_scanned_in_every_message_and_part() -> None:
    request = {"model": "chat", "messages": [
        {"role": "system", "content": "You help with code."},
        {"role": "user", "content": [
            {"type": "text", "text": "why does Password=hunter2; fail"},
            {"type": "image_url", "image_url": {"url": "data:,x"}}]},
        {"role": "user", "content": "and 900101-1234568?"}]}
    out, verdict = dlp.apply(request["messages"], RULES)
    assert verdict.blocked == ["kr_resident_registration_number"]
    assert verdict.masked == ["connection_string_password"]
    assert out[1]["content"][0]["text"] == ("why does Password=[MASKED:connection_string_"
                                            "password]; fail")
    assert out[1]["content"][1] == request["messages"][1]["content"][1]
    assert out[0] == request["messages"][0]
    counts = {n: f["count"] for n, f in verdict.fired.items()}
    assert counts == {"kr_resident_registration_number": 1, "connection_string_password": 1}
    assert "hunter2" not in json.dumps(verdict.fired) and "1234568" not in json.dumps(
        verdict.fired)


@pytest.mark.parametrize("rules, says", [
    ([{"name": "x", "pattern": "(", "action": "block"}], "x): pattern does not compile"),
    ([{"name": "x", "pattern": "a*", "action": "block"}], "matches the empty string"),
    ([{"name": "x", "pattern": "a", "action": "drop"}], "action 'drop' must be one of"),
    ([{"name": "x", "pattern": "a", "action": "mask", "check": "crc"}], "check 'crc'"),
    ([{"name": "Bad Name", "pattern": "a", "action": "mask"}], "[0]: name 'Bad Name'"),
    ([{"name": "x", "pattern": "a", "action": "mask"},
      {"name": "x", "pattern": "b", "action": "mask"}], "[1] (x): a second rule"),
    ([{"name": "x", "pattern": "a", "action": "mask", "severity": 3}], "unknown key(s) "
                                                                         "severity"),
    (["a"], "[0]: a rule is a mapping"),
])
def test_a_bad_rule_is_refused_naming_it(rules: list, says: str) -> None:
    with pytest.raises(dlp.RuleError) as e:
        dlp.compile_rules(rules)
    assert says in str(e.value)


def test_the_rules_file_check_names_the_file_and_the_rule(tmp_path: Path) -> None:
    good = tmp_path / "dlp.json"
    good.write_text(json.dumps(dlp.DEFAULT_RULES))
    r = subprocess.run([sys.executable, str(FILES / "airlock_dlp.py"), str(good)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and f"{len(dlp.DEFAULT_RULES)} DLP rules compile" in r.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "card", "pattern": "[0-9", "action": "block"}]))
    r = subprocess.run([sys.executable, str(FILES / "airlock_dlp.py"), str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and f"{bad}[0] (card): pattern does not compile" in r.stderr


def test_a_policy_keeps_turns_off_and_retunes_the_built_in_rules() -> None:
    rules = dlp.policy_rules({"disable": ["kr_bank_account_number"],
                              "actions": {"kr_resident_registration_number": "mask"},
                              "rules": [{"name": "project_codename", "pattern": "Falcon-\\d+",
                                         "action": "block"}]})
    names = [r["name"] for r in rules]
    assert "kr_bank_account_number" not in names and names[-1] == "project_codename"
    compiled = dlp.compile_rules(rules)
    out, verdict = dlp.apply(f"RRN {RRN_OK} of Falcon-7 owner", compiled)
    assert verdict.masked == ["kr_resident_registration_number"]
    assert verdict.blocked == ["project_codename"]
    assert out == "RRN [MASKED:kr_resident_registration_number] of Falcon-7 owner"
    assert dlp.policy_rules({"builtin": False}) == []


@pytest.mark.parametrize("policy, says", [
    ({"disable": ["no_such_rule"]}, "disable: 'no_such_rule' is not a built-in rule"),
    ({"actions": {"pan": "mask"}}, "actions: 'pan' is not a built-in rule"),
    ({"builtin": False, "actions": {"private_key": "mask"}}, "(builtin is false)"),
    ({"rule": []}, "unknown key(s) rule"),
])
def test_a_bad_policy_is_refused_naming_the_key(policy: dict, says: str) -> None:
    with pytest.raises(dlp.RuleError) as e:
        dlp.policy_rules(policy)
    assert says in str(e.value)
