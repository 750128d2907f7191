"""Filter: this host's allow rules from the zones and flows data model.

The logic is airlock's own (installer.network), shared with `airlock network matrix` and
the lab's connection tests, so the document, the rules and the proof cannot drift apart.
"""

from __future__ import annotations

from typing import Any


def airlock_host_rules(host: str, zones: dict, external: dict, flows: list, groups: dict,
                       hostvars: Any, services: dict | None = None,
                       virtual: dict | None = None) -> dict[str, list[dict[str, Any]]]:
    from ansible.errors import AnsibleFilterError

    try:
        from installer.errors import AirlockError
        from installer.network import GROUPS, Inventory, host_rules, parse, router_rules
    except ImportError as e:  # pragma: no cover - airlock is installed with ansible
        raise AnsibleFilterError(f"airlock is not importable on the controller: {e}") from e
    # the platform's component groups are valid names even where an inventory has none
    names = (set(groups) | GROUPS) - {"all", "ungrouped"}
    try:
        model = parse({"network_zones": zones, "network_external": external,
                       "network_services": services or {}, "network_flows": flows,
                       "network_virtual_addresses": virtual or {}}, names,
                      "firewall_flows")
    except AirlockError as e:
        raise AnsibleFilterError(str(e)) from e
    hv = {}
    for h in groups["all"]:
        v = hostvars[h]
        if "airlock_zone" not in v or "airlock_zone_address" not in v:
            raise AnsibleFilterError(f"host {h} needs airlock_zone and airlock_zone_address")
        hv[h] = {"airlock_zone": v["airlock_zone"],
                 "airlock_zone_address": v["airlock_zone_address"]}
    # the site's service addresses (airlock_dns_servers…) as this host sees them
    variables = {svc["addresses"]: list(hostvars[host].get(svc["addresses"]) or [])
                 for svc in model.services.values()}
    # a group's shared address (the gateway pair's VIP): one address, or none
    variables.update({var: [hostvars[host][var]] if hostvars[host].get(var) else []
                      for var in model.virtual.values()})
    inv = Inventory({g: list(m) for g, m in groups.items()}, hv, variables)
    try:
        return {**host_rules(model, inv, host), "forward": router_rules(model, inv)}
    except (AirlockError, ValueError) as e:
        raise AnsibleFilterError(str(e)) from e


def airlock_vlan_interfaces(zone: str, zone_address: str, mgmt_address: str, zones: dict,
                            gateway_octet: int = 254) -> list[dict[str, Any]]:
    from ansible.errors import AnsibleFilterError

    from installer.errors import AirlockError
    from installer.network import vlan_interfaces

    try:
        return vlan_interfaces(zone, zone_address, mgmt_address, zones, int(gateway_octet))
    except AirlockError as e:
        raise AnsibleFilterError(str(e)) from e


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"airlock_host_rules": airlock_host_rules,
                "airlock_vlan_interfaces": airlock_vlan_interfaces}
