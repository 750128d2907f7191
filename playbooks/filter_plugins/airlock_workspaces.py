"""Filter: who gets a workspace, and on which port, when the list comes from the directory.

Members of the workspace group (through Keycloak) get a workbench. Entries of the
inventory's airlock_ide_users pin a member's port, route or host; everyone else gets the
port they had before (kept on the controller, so a workbench never moves when others come
and go) or the lowest free one of the range. Names from the directory must be safe
identifiers: they become container names, paths and URL routes.
"""

from __future__ import annotations

import re
from typing import Any

SAFE = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")


def airlock_workspaces(pinned: list[dict[str, Any]], members: list[str],
                       known_ports: dict[str, int] | None, port_range: list[int]
                       ) -> list[dict[str, Any]]:
    from ansible.errors import AnsibleFilterError

    bad = [m for m in members if not SAFE.match(str(m))]
    if bad:
        raise AnsibleFilterError(
            f"the directory's workspace group has members whose names are not safe "
            f"identifiers: {', '.join(map(repr, bad))} (a lower-case letter, then up to 30 "
            "lower-case letters, digits, '-' or '_'); rename them in the directory or take "
            "them out of the group. No workspace was changed.")
    by_name = {str(u["name"]): u for u in pinned or []}
    known = {str(k): int(v) for k, v in (known_ports or {}).items()}
    first, last = int(port_range[0]), int(port_range[1])
    used = {int(u["port"]) for u in by_name.values() if "port" in u}
    out = []
    for name in sorted(set(members)):
        if name in by_name and "port" in by_name[name]:
            out.append(dict(by_name[name]))
            continue
        port = known.get(name)
        if port is None or port in used or not first <= port <= last:
            free = [p for p in range(first, last + 1)
                    if p not in used and p not in known.values()]
            if not free:
                raise AnsibleFilterError(
                    f"no free workbench port left in {first}-{last} for {name!r}: widen "
                    "code_server_port_range (and the firewall's gateway -> ide flow)")
            port = free[0]
        used.add(port)
        out.append({**by_name.get(name, {}), "name": name, "port": port})
    return out


def airlock_workspace_ports(users: list[dict[str, Any]], known: dict[str, int] | None
                            ) -> dict[str, int]:
    """The ports to remember: everyone's before, updated with today's."""
    return {**{str(k): int(v) for k, v in (known or {}).items()},
            **{str(u["name"]): int(u["port"]) for u in users}}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"airlock_workspaces": airlock_workspaces,
                "airlock_workspace_ports": airlock_workspace_ports}
