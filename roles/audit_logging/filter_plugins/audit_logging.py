"""The store's file-realm users file, and the role's input checks."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

USER = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def audit_logging_users_file(passwords: dict[str, str], existing: str = "") -> str:
    """Elasticsearch's file-realm ``users`` file: ``name:bcrypt`` lines ($2a$, the prefix
    it reads). A line already there is kept while it still matches its user's password,
    so a second run changes nothing."""
    import bcrypt

    kept = {}
    for line in existing.splitlines():
        name, _, hashed = line.partition(":")
        pw = passwords.get(name)
        if pw is not None and hashed.startswith("$2a$"):
            try:
                if bcrypt.checkpw(pw.encode(), hashed.encode()):
                    kept[name] = line
            except ValueError:
                pass
    return "".join(
        (kept.get(u) or f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(10, b'2a')).decode()}")
        + "\n" for u, p in sorted(passwords.items()))


def audit_logging_problems(store_url: Any, readers: Any, files: Any, siem: Any,
                           buffer_mb: Any, retention_days: Any) -> list[str]:
    """Everything wrong with the role's input, one sentence each."""
    out: list[str] = []
    parts = urlsplit(str(store_url or ""))
    if parts.scheme != "https" or not parts.hostname:
        out.append(f"audit_logging_store_url {store_url!r} must be https://HOST:PORT (the "
                   "store is reached over TLS only)")
    if not isinstance(readers, list) or any(
            not isinstance(r, str) or not USER.match(r) for r in readers):
        out.append("audit_logging_siem_readers must be a list of user names (lower-case "
                   "letters, digits, '._-')")
    elif set(readers) & {"airlock-admin", "airlock-shipper", "airlock-retention"}:
        out.append("audit_logging_siem_readers may not use airlock's own account names")
    if not isinstance(files, list):
        out.append("audit_logging_files must be a list of {path, tag}")
    else:
        for i, f in enumerate(files):
            if not isinstance(f, dict) or not str(f.get("path", "")).startswith("/"):
                out.append(f"audit_logging_files[{i}] needs an absolute path")
            elif not re.match(r"^[A-Za-z0-9_.-]{1,32}$", str(f.get("tag", ""))):
                out.append(f"audit_logging_files[{i}] ({f.get('path')}): tag must be 1-32 "
                           "letters, digits, '._-'")
    if siem and (not isinstance(siem, dict) or not siem.get("host")
                 or not str(siem.get("port", "")).isdigit()):
        out.append("audit_logging_siem_syslog must be {host, port} (syslog over TLS)")
    for name, value, low in (("audit_logging_buffer_mb", buffer_mb, 16),
                             ("audit_logging_retention_days", retention_days, 1)):
        try:
            ok = int(value) >= low
        except (TypeError, ValueError):
            ok = False
        if not ok:
            out.append(f"{name} must be a whole number of at least {low}, not {value!r}")
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"audit_logging_users_file": audit_logging_users_file,
                "audit_logging_problems": audit_logging_problems}
