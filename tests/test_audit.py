"""The audit log's hash chain, attacked: edited, deleted, inserted, reordered and cut-off
records are each named; records also reach a real syslog socket (UDP on loopback)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from conftest import run_airlock
from installer.deploy.audit import AuditLog, audited


def _log(tmp_path: Path, n: int = 4) -> AuditLog:
    log = AuditLog(tmp_path / "site")
    for i in range(n):
        log.append("deploy", "ok", run=f"r{i}", changed=i)
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("".join(x + "\n" for x in lines))


def test_an_untouched_log_verifies_and_files_are_private(tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert log.verify() == {"ok": True, "records": 4, "path": str(log.path), "problems": []}
    assert log.path.stat().st_mode & 0o777 == 0o600
    assert (log.site / "audit.head").stat().st_mode & 0o777 == 0o600
    recs = log.records()
    assert [r["seq"] for r in recs] == [1, 2, 3, 4] and recs[0]["prev"] == "0" * 64
    assert all(r["user"] and r["host"] and r["time"] for r in recs)


@pytest.mark.parametrize("attack, where", [
    ("edit", ["line 2"]),
    ("delete", ["line 2"]),
    ("swap", ["line 2", "line 3"]),
    ("truncate", ["audit.head"]),
    ("insert", ["line 3"]),
])
def test_each_attack_is_named(tmp_path: Path, attack: str, where: list[str]) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    if attack == "edit":
        lines[1] = lines[1].replace('"changed":1', '"changed":0')
    elif attack == "delete":
        del lines[1]
    elif attack == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    elif attack == "truncate":
        lines = lines[:-1]
    elif attack == "insert":
        forged = json.loads(lines[1])
        forged["result"] = "failed"
        lines.insert(2, json.dumps(forged))
    _write(log, lines)
    result = log.verify()
    assert not result["ok"]
    assert {p["file"] for p in result["problems"]} >= set(where), result
    proc = run_airlock("audit", "verify", "--site", str(log.site))
    assert proc.returncode == 12, proc.stdout + proc.stderr
    assert where[0] in proc.stderr


def test_append_refuses_a_damaged_tail(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    with open(log.path, "a") as f:
        f.write("not json\n")
    before = log.path.read_bytes()
    with pytest.raises(Exception, match="last line is not an audit record"):
        log.append("deploy", "ok")
    assert log.path.read_bytes() == before


def test_audited_records_failures_and_reraises(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with pytest.raises(ValueError), audited(site, "import", bundlePath="/b"):
        raise ValueError("bad bytes")
    with audited(site, "import", bundlePath="/b") as rec:
        rec["bytesCopied"] = 5
    recs = AuditLog(site).records()
    assert [(r["result"], r.get("error"), r.get("bytesCopied")) for r in recs] == [
        ("failed", "bad bytes", None), ("ok", None, 5)]


def test_records_reach_syslog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        monkeypatch.setenv("AIRLOCK_SYSLOG", f"udp:127.0.0.1:{s.getsockname()[1]}")
        rec = AuditLog(tmp_path / "site").append("keys rotate", "ok", rootVersion=2)
        data = s.recv(65536).decode()
    assert rec["syslog"] is True
    assert data.startswith("<14>airlock-audit: ")  # user.info
    sent = json.loads(data.split(": ", 1)[1].rstrip("\x00"))
    assert sent["hash"] == rec["hash"] and sent["command"] == "keys rotate"


def test_a_careful_deletion_is_caught_by_the_chain(tmp_path: Path) -> None:
    """Record 2 removed, the later ones renumbered and their own hashes recomputed, the
    head rewritten to match: only the chain (each record's `prev`) still tells."""
    from installer.deploy.audit import record_hash

    log = _log(tmp_path)
    recs = [json.loads(x) for x in _lines(log)]
    del recs[1]
    for i, r in enumerate(recs, 1):
        r["seq"] = i
        r["hash"] = record_hash(r)
    _write(log, [json.dumps(r) for r in recs])
    (log.site / "audit.head").write_text(json.dumps({"records": 3, "hash": recs[-1]["hash"]}))
    result = log.verify()
    # line 3 breaks too: its `prev` is record 3's hash before it was renumbered
    assert result["problems"] == [
        {"file": f"line {n}", "problem": f"record seq {n} does not follow the record before "
                                         "it: a record was deleted, inserted or moved"}
        for n in (2, 3)]
