"""Filter for the IDE playbooks: the gateway's routes from the IDE users."""

from __future__ import annotations

from typing import Any


def airlock_ide_routes(users: list[dict[str, Any]], hostvars: Any,
                       ide_hosts: list[str]) -> list[dict[str, str]]:
    """Each user's route at the gateway and the code-server it leads to."""
    routes = []
    for u in users:
        host = u.get("host") or (ide_hosts[0] if ide_hosts else None)
        if host is None or host not in hostvars:
            continue  # the code_server checks name this mistake before anything runs
        routes.append({"route": str(u.get("route", u["name"])), "user": str(u["name"]),
                       "upstream": f"http://{hostvars[host]['airlock_zone_address']}:{u['port']}"})
    return routes


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"airlock_ide_routes": airlock_ide_routes}
