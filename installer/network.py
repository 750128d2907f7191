"""The network data model: zones, external sources and flows (the port matrix), resolved
against an inventory into per-host allow lists and a document for the security review.

Used by the firewall role (through its filter plugin), by the lab and by
``airlock network matrix``; one place decides what may talk to what.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from installer.errors import SpecError

PROTOS = ("tcp", "udp")
# protocols without ports the matrix may allow between hosts (VRRP: the gateway pair's
# keepalived adverts, IP protocol 112)
PORTLESS = ("vrrp",)
# the inventory groups every phase's inventory defines (one per component)
GROUPS = {"gateway", "keycloak", "ide", "completion_gpu", "chat_gpu", "llm_gateway", "repo",
          "gitlab", "nexus", "ci_runner", "logging", "monitoring", "backup", "router"}
DATA_FILE = Path("playbooks/group_vars/all/network.yml")


@dataclass(frozen=True)
class Flow:
    src: str
    dst: str
    port: int | str  # one port, a range "LOW-HIGH" (nftables syntax), "" for VRRP
    proto: str
    purpose: str

    @property
    def first_port(self) -> int:
        return int(str(self.port).split("-")[0]) if self.port != "" else 0


def _port(value: Any) -> int | str:
    """A port (1-65535) or a range "LOW-HIGH" with LOW < HIGH; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    low, sep, high = text.partition("-")
    if not (sep and low.isdigit() and high.isdigit() and 0 < int(low) < int(high) < 65536):
        raise ValueError(f"port {value!r} is neither a port nor a range LOW-HIGH")
    return f"{int(low)}-{int(high)}"


@dataclass
class Model:
    zones: dict[str, dict[str, Any]]
    external: dict[str, dict[str, Any]]
    flows: list[Flow]
    # services the site already runs (DNS, NTP): flows may go to them; their addresses are
    # the inventory variable each one names (``addresses``), e.g. airlock_dns_servers
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    # a group's shared address (a VIP its members hand over between them): the inventory
    # variable that holds it; flows to the group go to it as well as to its members
    virtual: dict[str, str] = field(default_factory=dict)


def parse(data: dict[str, Any], groups: set[str], where: str = "network data model") -> Model:
    """Check the model's shape and names; ``groups`` are the inventory's group names."""
    zones = data.get("network_zones") or {}
    external = data.get("network_external") or {}
    services = data.get("network_services") or {}
    virtual = data.get("network_virtual_addresses") or {}
    for name, var in virtual.items():
        if name not in groups or not (isinstance(var, str) and var.isidentifier()):
            raise SpecError(f"network_virtual_addresses: {name!r} must be an inventory group "
                            "and name the variable that holds its shared address "
                            "(e.g. gateway: airlock_gateway_vip)", file=where)
    for name, svc in services.items():
        var = svc.get("addresses") if isinstance(svc, dict) else None
        if not (isinstance(var, str) and var.isidentifier()):
            raise SpecError(f"service {name}: `addresses` must name the inventory variable "
                            "that lists its addresses (e.g. airlock_dns_servers)", file=where)
        if name in zones or name in external:
            raise SpecError(f"service {name}: the name is also a zone or external source",
                            file=where)
    for name, z in {**zones, **external}.items():
        try:
            ipaddress.IPv4Network(z["subnet"])
        except (KeyError, ValueError, TypeError) as e:
            raise SpecError(f"{name}: subnet missing or invalid ({e})", file=where) from None
    known = set(zones) | set(external) | set(services) | groups | {"all"}
    flows = []
    for i, f in enumerate(data.get("network_flows") or []):
        field = f"network_flows[{i}]"
        try:
            proto = str(f.get("proto", "tcp"))
            if proto in PORTLESS and f.get("port") not in (None, ""):
                raise ValueError(f"{proto} has no ports: leave port out")
            port = "" if proto in PORTLESS else _port(f["port"])
            flow = Flow(str(f["from"]), str(f["to"]), port, proto, str(f.get("purpose", "")))
        except (KeyError, ValueError, TypeError) as e:
            raise SpecError(f"needs from, to, port (and proto, purpose): {e}", file=where,
                            field=field) from None
        for end in (flow.src, flow.dst):
            if end not in known:
                raise SpecError(f"{end!r} is not a zone, external source, inventory group "
                                "or 'all'", file=where, field=field,
                                hint="known: " + ", ".join(sorted(known)))
        if flow.dst in external:
            raise SpecError(f"{flow.dst!r} is an external source; flows may not go to it",
                            file=where, field=field)
        if flow.src in services and not services[flow.src].get("client"):
            raise SpecError(f"{flow.src!r} is a site service; flows go to it, not from it",
                            file=where, field=field,
                            hint="mark the service client: true where it also connects to "
                                 "the platform (a SIEM that pulls)")
        if flow.proto in PORTLESS:
            if flow.src != flow.dst or flow.src not in groups:
                raise SpecError(f"{flow.proto} is allowed only between the members of one "
                                "group (from and to the same group)", file=where, field=field)
        elif not 0 < flow.first_port < 65536 or flow.proto not in PROTOS:
            raise SpecError(f"port {flow.port}/{flow.proto} is not a valid tcp/udp port "
                            f"(or one of {', '.join(PORTLESS)}, without a port)",
                            file=where, field=field)
        flows.append(flow)
    return Model(zones, external, flows, services, dict(virtual))


def load(path: Path, groups: set[str]) -> Model:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(f"cannot read ({e})", file=str(path)) from None
    return parse(data, groups, str(path))


class Inventory:
    """What the model needs from an inventory: groups, each host's zone and address, and
    the addresses of the site's services (variable name -> addresses)."""

    def __init__(self, groups: dict[str, list[str]], hostvars: dict[str, dict[str, Any]],
                 variables: dict[str, list[str]] | None = None):
        self.groups = groups
        self.hostvars = hostvars
        self.variables = variables or {}

    def hosts_of(self, name: str, model: Model) -> list[str]:
        if name == "all":
            return sorted(self.hostvars)
        if name in model.zones:
            return sorted(h for h, v in self.hostvars.items() if v.get("airlock_zone") == name)
        if name in model.services:
            return []  # the site runs them; no managed host is one
        return sorted(self.groups.get(name, []))

    def addresses_of(self, name: str, model: Model, destination: bool = False) -> list[str]:
        """Zone and external names stand for their subnets; groups for host addresses (and,
        as a DESTINATION, the group's shared address: traffic comes from its members' own)."""
        if name in model.zones:
            return [model.zones[name]["subnet"]]
        if name in model.external:
            return [model.external[name]["subnet"]]
        if name in model.services:
            var = model.services[name]["addresses"]
            found = self.variables.get(var)
            if not found and model.services[name].get("optional"):
                return []  # a service this site does not use (no directory): no flow to it
            if not found:
                raise SpecError(f"flows go to the site's {name} service, but the inventory "
                                f"gives no addresses for it ({var})",
                                hint=f"set {var} in the inventory's group_vars/all")
            return [str(ipaddress.ip_address(a)) for a in found]
        found = [self.hostvars[h]["airlock_zone_address"] for h in self.hosts_of(name, model)]
        # the group's shared address (held by one of its members), where the site has one
        if destination and found and name in model.virtual:
            found += [str(ipaddress.ip_address(a))
                      for a in self.variables.get(model.virtual[name]) or []]
        return found


def host_rules(model: Model, inv: Inventory, host: str) -> dict[str, list[dict[str, Any]]]:
    """{'input': [...], 'output': [...]} allow rules for one host, sorted and merged."""
    rules: dict[str, set[tuple]] = {"input": set(), "output": set()}
    own = {inv.hostvars[host]["airlock_zone_address"]} if host in inv.hostvars else set()
    for f in model.flows:
        # a flow within a group is to and from the other members, not this host itself;
        # VRRP (between the pair) not to the group's shared address either
        skip: set[str] = set()
        if f.src == f.dst:
            skip = set(own)
            if f.proto in PORTLESS:
                members = {inv.hostvars[h]["airlock_zone_address"]
                           for h in inv.hosts_of(f.src, model)}
                skip |= set(inv.addresses_of(f.dst, model, destination=True)) - members
        if host in inv.hosts_of(f.dst, model):
            for addr in inv.addresses_of(f.src, model):
                if addr not in skip:
                    rules["input"].add((f.proto, f.port, addr, f.purpose))
        if host in inv.hosts_of(f.src, model):
            for addr in inv.addresses_of(f.dst, model, destination=True):
                if addr not in skip:
                    rules["output"].add((f.proto, f.port, addr, f.purpose))
    return {k: [{"proto": p, "port": port, "address": a, "purpose": why}
                for p, port, a, why in sorted(v, key=_order)] for k, v in rules.items()}


def router_rules(model: Model, inv: Inventory) -> list[dict[str, Any]]:
    """What the inter-zone firewall forwards: every flow, address to address (VRRP stays
    on its segment: never forwarded)."""
    out = set()
    for f in model.flows:
        if f.proto in PORTLESS:
            continue
        for s in inv.addresses_of(f.src, model):
            for d in inv.addresses_of(f.dst, model, destination=True):
                if s != d:
                    out.add((f.proto, f.port, s, d, f.purpose))
    return [{"proto": p, "port": port, "source": s, "address": d, "purpose": why}
            for p, port, s, d, why in sorted(out, key=_order)]


def _order(rule: tuple) -> tuple:
    """Sort key for rules whose ports are numbers or ranges."""
    return tuple(str(x) if i == 1 else x for i, x in enumerate(rule))


def matrix_rows(model: Model) -> list[list[str]]:
    rows = []
    for f in model.flows:
        rows.append([f.src, _zone_hint(f.src, model), f.dst, _zone_hint(f.dst, model),
                     str(f.port) or "-", f.proto, f.purpose])
    return rows


def _zone_hint(name: str, model: Model) -> str:
    if name in model.zones:
        return f"zone {name} ({model.zones[name]['subnet']}, VLAN {model.zones[name]['vlan']})"
    if name in model.external:
        return f"external ({model.external[name]['subnet']})"
    if name in model.services:
        return f"site service (addresses: {model.services[name]['addresses']})"
    return "every host" if name == "all" else f"group {name}"


HEADER = ["from", "from (what)", "to", "to (what)", "port", "protocol", "purpose"]


def matrix_markdown(model: Model) -> str:
    out = ["# Port matrix", "",
           "Generated by `airlock network matrix` from "
           "`playbooks/group_vars/all/network.yml`; do not edit by hand. Every host's "
           "nftables rules and the lab's connection tests come from the same data.", "",
           "## Zones", "", "| zone | VLAN | subnet | purpose |", "|---|---|---|---|"]
    for name, z in model.zones.items():
        out.append(f"| {name} | {z['vlan']} | {z['subnet']} | {z.get('purpose', '')} |")
    for name, z in model.external.items():
        out.append(f"| {name} (external) | - | {z['subnet']} | {z.get('purpose', '')} |")
    if model.services:
        out += ["", "## Site services", "", "The site's own servers every host needs; their "
                "addresses are inventory variables.", "", "| service | addresses | purpose |",
                "|---|---|---|"]
        for name, svc in model.services.items():
            out.append(f"| {name} | `{svc['addresses']}` | {svc.get('purpose', '')} |")
    if model.virtual:
        out += ["", "## Shared addresses", "", "A group's virtual address, held by one of its "
                "members at a time; flows to the group are allowed to it too.", "",
                "| group | address (inventory variable) |", "|---|---|"]
        out += [f"| {g} | `{var}` |" for g, var in model.virtual.items()]
    out += ["", "## Allowed flows", "",
            "Default deny in and out on every host; replies to allowed connections are "
            "allowed; nothing else.", "", "| " + " | ".join(HEADER) + " |",
            "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(r) + " |" for r in matrix_rows(model)]
    return "\n".join(out) + "\n"


def matrix_csv(model: Model) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(matrix_rows(model))
    return buf.getvalue()


def vlan_interfaces(zone: str, zone_address: str, mgmt_address: str,
                    zones: dict[str, dict[str, Any]], gateway_octet: int = 254
                    ) -> list[dict[str, Any]]:
    """The VLAN interfaces a host on a trunk needs: its zone's and the management zone's,
    each with its address, and routes to the other zones through the zone's gateway (the
    inter-VLAN firewall). Raises SpecError for data a kernel would refuse."""
    out = []
    for name, address in ((zone, zone_address), ("mgmt", mgmt_address)):
        if out and name == zone:
            continue
        if name not in zones:
            raise SpecError(f"zone {name!r} is not in the network data model")
        z = zones[name]
        vlan = int(z["vlan"])
        if not 1 <= vlan <= 4094:
            raise SpecError(f"zone {name}: VLAN id {vlan} is outside 1-4094")
        net = ipaddress.IPv4Network(z["subnet"])
        if ipaddress.IPv4Address(address) not in net:
            raise SpecError(f"address {address} is not in zone {name} ({net})")
        routes = []
        if name == zone and name != "mgmt":
            gw = str(net.network_address + gateway_octet)
            routes = [{"destination": other["subnet"], "gateway": gw}
                      for oname, other in sorted(zones.items()) if oname not in (name, "mgmt")]
        iface = f"vlan{vlan}"
        if len(iface) > 15:
            raise SpecError(f"interface name {iface} is longer than 15 characters")
        out.append({"name": iface, "zone": name, "vlan": vlan, "address": address,
                    "prefix": net.prefixlen, "routes": routes})
    return out
