"""Filter: the hardening settings sshd's effective configuration does not have.

``sshd -T`` prints one ``key value`` line per setting (keys in lower case). The role
compares each of its settings with it in one pass here, instead of one templated
condition per setting: the same answer, every overridden setting named at once.
"""

from __future__ import annotations

from typing import Any


def common_sshd_overridden(lines: list[str], settings: dict[str, Any],
                           aliases: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Each of SETTINGS (sshd_config spelling) whose effective value in LINES differs:
    ``{"key", "want", "have"}``; ALIASES maps a value to the spelling sshd -T prints."""
    effective: dict[str, str] = {}
    for line in lines:
        key, _, value = str(line).strip().partition(" ")
        effective.setdefault(key.lower(), value.strip())  # sshd keeps the first value
    aliases = aliases or {}
    out = []
    for key, value in settings.items():
        want = str(aliases.get(str(value), value)).lower()
        have = effective.get(str(key).lower(), "(unset)")
        if have.lower() != want:
            out.append({"key": str(key), "want": str(value), "have": have})
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"common_sshd_overridden": common_sshd_overridden}
