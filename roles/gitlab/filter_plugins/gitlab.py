"""Filters for the gitlab role: which application settings differ from what GitLab has."""

from __future__ import annotations

from typing import Any


def gitlab_settings_diff(wanted: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The entries of WANTED whose value GitLab does not have (lists compared as sets; a
    setting this GitLab does not know is left out: it would be refused, or mean nothing)."""
    out = {}
    for key, value in wanted.items():
        if key not in current:
            continue
        have = current[key]
        if isinstance(value, list) and isinstance(have, list):
            if sorted(map(str, value)) == sorted(map(str, have)):
                continue
        elif have == value:
            continue
        out[key] = value
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gitlab_settings_diff": gitlab_settings_diff}
