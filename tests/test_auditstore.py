"""The store's copy of airlock's audit chain compared with the local chain (the logic;
tests/test_logging.py proves it against the lab's Elasticsearch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from installer.deploy import auditstore
from installer.deploy.audit import AuditLog


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    monkeypatch.setenv("AIRLOCK_SYSLOG", "none")
    log = AuditLog(tmp_path / "site")
    for i in range(4):
        log.append("deploy", "ok", n=i)
    return log.records()


def _store(records: list[dict]) -> dict[str, dict]:
    return {r["hash"]: {**auditstore.document(r), "_index": "airlock-audit-x"} for r in records}


def test_an_intact_copy_has_no_problems(chain: list[dict]) -> None:
    assert auditstore.compare(chain, _store(chain)) == []


def test_a_record_edited_in_the_store_is_named(chain: list[dict]) -> None:
    store = _store(chain)
    doc = store[chain[1]["hash"]]
    body = json.loads(doc["airlock"]["body"])
    body["result"] = "failed"
    doc["airlock"]["body"] = json.dumps(body, sort_keys=True, separators=(",", ":"))
    problems = auditstore.compare(chain, store)
    assert len(problems) == 1 and "record seq 2" in problems[0]["problem"]
    assert "differs" in problems[0]["problem"]


def test_a_record_rewritten_locally_is_named_on_both_sides(chain: list[dict]) -> None:
    store = _store(chain)
    forged = [dict(r) for r in chain]
    forged[2]["result"] = "canceled"
    from installer.deploy.audit import record_hash

    forged[2]["hash"] = record_hash(forged[2])  # rewritten with a new hash
    problems = [p["problem"] for p in auditstore.compare(forged, store)]
    assert any("record seq 3" in p and "not in the store" in p for p in problems)
    assert any(f"3:{chain[2]['hash'][:10]}" in p for p in problems)


def test_a_record_deleted_from_the_store_is_named(chain: list[dict]) -> None:
    store = _store(chain)
    del store[chain[0]["hash"]]
    problems = auditstore.compare(chain, store)
    assert [p["problem"][:12] for p in problems] == ["record seq 1"]


def test_records_not_yet_shipped_are_not_problems(chain: list[dict]) -> None:
    store = _store(chain[:2])
    assert auditstore.compare(chain, store, shipped_seq=2) == []
    assert len(auditstore.compare(chain, store)) == 2  # said shipped, but missing


def test_a_site_without_a_store_ships_nothing(chain: list[dict], tmp_path: Path) -> None:
    assert auditstore.ship(tmp_path / "site", chain)["shipped"] == 0


def test_a_store_url_that_is_not_https_is_refused(tmp_path: Path) -> None:
    (tmp_path / auditstore.CONFIG).write_text(json.dumps({"url": "http://log1:9200"}))
    from installer.errors import StorageError

    with pytest.raises(StorageError, match="not https"):
        auditstore.Store.of(tmp_path)
