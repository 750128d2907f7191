"""The Git server's credentials file for nginx (bcrypt lines, one per user)."""

from __future__ import annotations

from typing import Any


def airlock_git_htpasswd(passwords: dict[str, str], existing: str = "") -> str:
    """``user:bcrypt-hash`` lines for nginx's auth_basic_user_file. A line already in the
    file is kept while it still matches its user's password, so a re-run changes nothing."""
    import bcrypt

    kept = {}
    for line in existing.splitlines():
        name, _, hashed = line.partition(":")
        pw = passwords.get(name)
        if pw is not None and hashed.startswith("$2"):
            try:
                if bcrypt.checkpw(pw.encode(), hashed.encode()):
                    kept[name] = line
            except ValueError:
                pass
    lines = [kept.get(u) or f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(12)).decode()}"
             for u, p in sorted(passwords.items())]
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"airlock_git_htpasswd": airlock_git_htpasswd}
