"""The audit log: every command that changes something appends one JSON record.

``SITE/audit.jsonl`` (mode 0600), one record per line. Each record carries ``prev``, the
hash of the record before it (64 zeros for the first), and ``hash``, the SHA-256 of its own
canonical JSON without ``hash``. ``SITE/audit.head`` keeps the count and the last hash, so
cutting records off the end is found too. Editing a record breaks its hash; deleting,
inserting or reordering breaks the chain. Someone who rewrites the whole chain and the head
can only be caught by a copy kept elsewhere: every record also goes to syslog, and to the
site's log store where it has one (``installer/deploy/auditstore.py``: ``airlock audit
verify --against-store`` compares the two).

Syslog target: ``AIRLOCK_SYSLOG`` = ``/dev/log`` (the default where it exists), another
socket path, ``udp:HOST:PORT``, ``tcp:HOST:PORT``, or ``none``.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import logging
import logging.handlers
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from installer.errors import AuditError, StorageError

LOG = "audit.jsonl"
HEAD = "audit.head"
GENESIS = "0" * 64
SYSLOG_TAG = "airlock-audit"


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})
                          ).hexdigest()


def who() -> str:
    user = getpass.getuser()
    sudo = os.environ.get("SUDO_USER")
    return f"{user} (sudo from {sudo})" if sudo and sudo != user else user


def _syslog_handler() -> logging.Handler | None:
    target = os.environ.get("AIRLOCK_SYSLOG", "/dev/log")
    if target == "none":
        return None
    try:
        if target.startswith(("udp:", "tcp:")):
            proto, host, port = target.split(":", 2)
            kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
            return logging.handlers.SysLogHandler((host, int(port)), socktype=kind)
        if not os.path.exists(target):
            return None
        return logging.handlers.SysLogHandler(target)
    except (OSError, ValueError):
        return None


def _to_syslog(record: dict[str, Any]) -> bool:
    handler = _syslog_handler()
    if handler is None:
        return False
    handler.ident = f"{SYSLOG_TAG}: "
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.emit(logging.LogRecord("airlock.audit", logging.INFO, __file__, 0,
                                       _canonical(record).decode(), None, None))
        return True
    finally:
        handler.close()


class AuditLog:
    def __init__(self, site: Path) -> None:
        self.site = site
        self.path = site / LOG
        self.head_path = site / HEAD

    def append(self, command: str, result: str, **fields: Any) -> dict[str, Any]:
        """Append one record (under a lock, fsynced) and send it to syslog."""
        self.site.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise StorageError(f"cannot write the audit log {self.path}: {e.strerror}") from None
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            lines = f.read().splitlines()
            prev, seq = GENESIS, 0
            if lines:
                try:
                    last = json.loads(lines[-1])
                    prev, seq = str(last["hash"]), int(last["seq"])
                except (ValueError, KeyError, TypeError):
                    raise AuditError(f"{self.path}: its last line is not an audit record; "
                                     "nothing was appended", hint="airlock audit verify"
                                     ) from None
            record: dict[str, Any] = {
                "seq": seq + 1, "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "user": who(), "host": socket.getfqdn(), "pid": os.getpid(),
                "command": command, "argv": sys.argv[1:], "result": result, **fields,
                "prev": prev}
            record["hash"] = record_hash(record)
            f.write(_canonical(record) + b"\n")
            f.flush()
            os.fsync(f.fileno())
            head = json.dumps({"records": seq + 1, "hash": record["hash"]}).encode()
            tmp = self.head_path.with_name(HEAD + ".tmp")
            tmp.write_bytes(head)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.head_path)
        record["syslog"] = _to_syslog(record)
        from installer.deploy import auditstore

        # the site's log store, where it has one: this record and any the store missed
        record["store"] = auditstore.ship(self.site, self.records())
        return record

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def verify(self) -> dict[str, Any]:
        """Every problem in the chain; raises nothing (the CLI decides)."""
        problems: list[dict[str, str]] = []
        if not self.path.exists():
            return {"ok": True, "records": 0, "path": str(self.path), "problems": []}
        lines = self.path.read_bytes().splitlines()
        prev, count = GENESIS, 0
        for n, line in enumerate(lines, 1):
            where = f"line {n}"
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError
            except ValueError:
                problems.append({"file": where, "problem": "not a JSON record (edited or "
                                 "damaged)"})
                prev = ""
                continue
            count += 1
            if rec.get("hash") != record_hash(rec):
                problems.append({"file": where, "problem": f"record seq {rec.get('seq')} was "
                                 "edited: its hash does not match its content"})
            if rec.get("prev") != prev:
                problems.append({"file": where, "problem": f"record seq {rec.get('seq')} does "
                                 "not follow the record before it: a record was deleted, "
                                 "inserted or moved"})
            if rec.get("seq") != count:
                problems.append({"file": where, "problem": f"seq {rec.get('seq')} where "
                                 f"{count} was expected"})
            prev = str(rec.get("hash"))
        try:
            head = json.loads(self.head_path.read_bytes())
        except (OSError, ValueError):
            head = None
        if head is None:
            if lines:
                problems.append({"file": HEAD, "problem": "missing or unreadable"})
        elif head.get("records") != count or head.get("hash") != prev:
            problems.append({"file": HEAD, "problem": f"the log should end at record "
                             f"{head.get('records')} ({str(head.get('hash'))[:12]}…): "
                             "records were cut off the end or the last one was replaced"})
        return {"ok": not problems, "records": count, "path": str(self.path),
                "problems": problems}


def digest_json(data: Any) -> str:
    return "sha256:" + hashlib.sha256(_canonical(data)).hexdigest()


@contextmanager
def audited(site: Path, command: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Append one record when the block ends: ``ok`` with what it put in the yielded dict,
    or ``failed`` with the error (``canceled`` on Ctrl-C), which is then raised on."""
    extra: dict[str, Any] = {}
    try:
        yield extra
    except KeyboardInterrupt:
        AuditLog(site).append(command, "canceled", **fields, **extra)
        raise
    except Exception as e:
        AuditLog(site).append(command, "failed", error=str(e)[:1000],
                              errorType=type(e).__name__, **fields, **extra)
        raise
    AuditLog(site).append(command, "ok", **fields, **extra)
