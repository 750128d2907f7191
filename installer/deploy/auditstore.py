"""airlock's audit records in the site's log store, and the store's copy checked against
the local chain.

Where the site has a log store (the ``audit_logging`` role wrote ``SITE/logging.json``:
its URL and index prefix; the appending account's password is in
``SITE/secrets/logging``), every record is sent to ``PREFIX-audit-YYYY.MM.DD`` as one
document whose id is the record's own hash, with the chain's head at that record (its
``seq`` and hash): a record sent twice is refused as a duplicate, never stored twice, and
the appending account can add but never overwrite. Records the store could not take
(down, unreachable) are sent with the next command: ``SITE/audit.shipped`` remembers how
far the store has them.

``airlock audit verify --against-store`` reads the store's copy (as the role's admin
account, which may read) and names every difference: a record missing from the store, a
record whose stored body differs from the local one (edited in the store, or the local
one rewritten with its hash), a record in the store that the local chain does not have.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.errors import StorageError

CONFIG = "logging.json"
SHIPPED = "audit.shipped"
APPENDER, READER = "airlock-shipper", "airlock-admin"
PAGE = 500


@dataclass(frozen=True)
class Store:
    url: str
    prefix: str
    ca_file: Path
    secrets: Path

    @classmethod
    def of(cls, site: Path) -> Store | None:
        """The site's store, or None where the site has none (no logging.json)."""
        path = site / CONFIG
        try:
            conf = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise StorageError(f"{path}: not the log store's settings ({e})",
                               hint="deploy the logging host again (site.yml writes it)"
                               ) from None
        url = str(conf.get("url", ""))
        if not url.startswith("https://"):
            raise StorageError(f"{path}: the store's url {url!r} is not https://",
                               hint="deploy the logging host again (site.yml writes it)")
        return cls(url=url.rstrip("/"), prefix=str(conf.get("prefix", "airlock")),
                   ca_file=site / "pki" / "ca.crt", secrets=site / "secrets" / "logging")

    def _call(self, account: str, method: str, path: str, body: bytes | None = None,
              ctype: str = "application/json", timeout: float = 30) -> tuple[int, Any]:
        try:
            password = (self.secrets / f"{account}.password").read_text().strip()
        except OSError as e:
            raise StorageError(f"the log store's {account} password is not in "
                               f"{self.secrets} ({e.strerror})") from None
        auth = base64.b64encode(f"{account}:{password}".encode()).decode()
        # https only (checked in Store.of)
        headers = {"Authorization": f"Basic {auth}", "Content-Type": ctype}
        req = urllib.request.Request(self.url + path, data=body,  # noqa: S310
                                     method=method, headers=headers)
        tls = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(req, context=tls, timeout=timeout) as r:  # noqa: S310
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.load(e)
            except ValueError:
                return e.code, None

    def index(self, record: dict[str, Any]) -> str:
        day = str(record.get("time", ""))[:10].replace("-", ".") or "0000.00.00"
        return f"{self.prefix}-audit-{day}"


def document(record: dict[str, Any]) -> dict[str, Any]:
    """The store's document for one audit record: searchable fields, and the record's own
    canonical JSON (what the check compares)."""
    from installer.deploy.audit import _canonical

    return {"@timestamp": record.get("time"), "host": record.get("host"),
            "user": record.get("user"), "program": "airlock",
            "message": f"airlock {record.get('command')}: {record.get('result')}",
            "event": {"kind": "airlock", "action": record.get("command"),
                      "outcome": record.get("result")},
            "airlock": {"record": record.get("hash"), "previous": record.get("prev"),
                        "chain_head": f"{record.get('seq')}:{record.get('hash')}",
                        "action": record.get("command"),
                        "body": _canonical(record).decode()}}


def ship(site: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Send the records the store does not have yet (after SITE/audit.shipped); returns
    {shipped, duplicates, pending, error}. Never raises for an unreachable store: the
    records wait for the next command."""
    store = Store.of(site)
    if store is None:
        return {"shipped": 0, "duplicates": 0, "pending": 0, "error": None}
    marker = site / SHIPPED
    try:
        done = int(json.loads(marker.read_text())["seq"])
    except (OSError, ValueError, KeyError, TypeError):
        done = 0
    todo = [r for r in records if int(r.get("seq", 0)) > done]
    shipped = duplicates = 0
    error = None
    for i in range(0, len(todo), PAGE):
        batch = todo[i:i + PAGE]
        lines = []
        for r in batch:
            lines.append(json.dumps({"create": {"_index": store.index(r), "_id": r["hash"]}}))
            lines.append(json.dumps(document(r), ensure_ascii=False))
        try:
            status, reply = store._call(APPENDER, "POST", "/_bulk",
                                        ("\n".join(lines) + "\n").encode(),
                                        "application/x-ndjson", timeout=10)
        except (OSError, StorageError) as e:
            error = str(e)
            break
        if status != 200 or not isinstance(reply, dict):
            error = f"the store answered {status}"
            break
        failed = []
        for item in reply.get("items", []):
            got = item.get("create", {})
            if got.get("status") == 201:
                shipped += 1
            elif got.get("status") == 409:
                duplicates += 1
            else:
                failed.append(got)
        if failed:
            error = f"the store refused {len(failed)} record(s): {failed[0].get('error')}"
            break
        last = batch[-1]
        tmp = marker.with_name(SHIPPED + ".tmp")
        tmp.write_text(json.dumps({"seq": last["seq"], "hash": last["hash"]}))
        os.chmod(tmp, 0o600)
        os.replace(tmp, marker)
    return {"shipped": shipped, "duplicates": duplicates,
            "pending": len(todo) - shipped - duplicates, "error": error}


def stored(store: Store) -> dict[str, dict[str, Any]]:
    """Every airlock record in the store: its id -> its document (read in pages, oldest
    first)."""
    out: dict[str, dict[str, Any]] = {}
    after: list[Any] | None = None
    while True:
        # (Elasticsearch 8 does not sort by _id: the record's hash, a keyword, breaks ties)
        query: dict[str, Any] = {"size": PAGE,
                                 "sort": [{"@timestamp": "asc"}, {"airlock.record": "asc"}],
                                 "query": {"term": {"event.kind": "airlock"}}}
        if after:
            query["search_after"] = after
        status, reply = store._call(READER, "POST", f"/{store.prefix}-audit-*/_search",
                                    json.dumps(query).encode())
        if status != 200 or not isinstance(reply, dict):
            raise StorageError(f"the log store at {store.url} answered {status} to a search "
                               f"of {store.prefix}-audit-*")
        hits = reply.get("hits", {}).get("hits", [])
        for h in hits:
            out[h["_id"]] = {**h.get("_source", {}), "_index": h.get("_index")}
        if len(hits) < PAGE:
            return out
        after = hits[-1]["sort"]


def compare(records: list[dict[str, Any]], in_store: dict[str, dict[str, Any]],
            shipped_seq: int | None = None) -> list[dict[str, str]]:
    """Every difference between the local chain and the store's copy, one problem each.
    Local records after SHIPPED_SEQ may not have reached the store yet: said, not failed."""
    from installer.deploy.audit import _canonical

    problems: list[dict[str, str]] = []
    local_ids = set()
    for r in records:
        rid = str(r.get("hash"))
        local_ids.add(rid)
        doc = in_store.get(rid)
        where = f"record seq {r.get('seq')} ({rid[:12]}…)"
        if doc is None:
            if shipped_seq is not None and int(r.get("seq", 0)) > shipped_seq:
                continue
            problems.append({"file": "store", "problem": f"{where} is not in the store "
                             "(deleted there, or the local record was rewritten)"})
            continue
        body = (doc.get("airlock") or {}).get("body")
        if body != _canonical(r).decode():
            problems.append({"file": f"store {doc.get('_index')}", "problem":
                             f"{where} differs between the store and the local chain "
                             "(edited in one of them)"})
    for rid, doc in sorted(in_store.items(), key=lambda kv: str(kv[1].get("@timestamp"))):
        if rid not in local_ids:
            head = (doc.get("airlock") or {}).get("chain_head", "?")
            problems.append({"file": f"store {doc.get('_index')}", "problem":
                             f"the store has record {head[:20]}… that the local chain does "
                             "not (deleted or rewritten locally)"})
    return problems
