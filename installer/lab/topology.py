"""Lab topologies: which test hosts exist, in which zone, in which inventory groups.

Zones (VLAN id, subnet) come from the network data model,
``playbooks/group_vars/all/network.yml``. Every host has an address in its zone and one in
the management zone (its management NIC: SSH and Ansible arrive there, as in production).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from installer.errors import SpecError, UsageError

MGMT = "mgmt"
ROUTER_OCTET = 254
# where a topology with two gateways puts their shared address (keepalived's VIP)
GATEWAY_VIP_OCTET = 9


@dataclass(frozen=True)
class Zone:
    name: str
    vlan: int
    subnet: ipaddress.IPv4Network

    def address(self, host_octet: int) -> str:
        return str(self.subnet.network_address + host_octet)

    @property
    def gateway(self) -> str:
        """The lab engine's bridge address: the controller's address in this zone."""
        return str(self.subnet.network_address + 1)


@dataclass(frozen=True)
class LabHost:
    name: str
    zone: str
    octet: int
    groups: tuple[str, ...]
    runs_containers: bool = False
    router: bool = False  # on every zone network at .254: the lab's inter-VLAN firewall
    # the site's own DNS and NTP server (in production the bank runs them): made and
    # configured by the lab, outside the inventory, at this octet of the mgmt zone
    site_services: bool = False
    # the bank's directory (stand-in: slapd, see installer/lab/directory.py), also outside
    # the inventory: airlock reads it through Keycloak, never manages it
    directory: bool = False
    # more names the site's DNS gives this host's zone address (a service of its own)
    aliases: tuple[str, ...] = ()

    @property
    def managed(self) -> bool:
        return not (self.site_services or self.directory)


@dataclass
class Topology:
    name: str
    hosts: list[LabHost] = field(default_factory=list)


TOPOLOGIES: dict[str, Topology] = {
    # seed 001 §2 PoC: gateway (Nginx + Keycloak), one IDE host, one AI host, one repo host
    "poc": Topology("poc", [
        LabHost("gw1", "dmz", 10, ("gateway", "keycloak"), runs_containers=True),
        # seed 000 §6.1: the gateway pair (Nginx active-standby, a VIP moved by keepalived);
        # gw2 runs the gateway alone (Keycloak stays single in the lab)
        LabHost("gw2", "dmz", 11, ("gateway",), runs_containers=True),
        LabHost("ide1", "ide", 10, ("ide",), runs_containers=True),
        LabHost("ai1", "ai", 10, ("completion_gpu", "chat_gpu", "llm_gateway"),
                runs_containers=True),
        # seed 000 §6: a second inference server for the same models (LiteLLM's balancer
        # moves a request to the other when one is gone)
        LabHost("ai2", "ai", 11, ("completion_gpu", "chat_gpu"), runs_containers=True),
        # the Git server (the lab's stand-in for GitLab) answers as git on the repo host
        LabHost("repo1", "backend", 10, ("repo", "gitlab", "nexus"), runs_containers=True,
                aliases=("git",)),
        # production routes between VLANs through the site's firewall; the lab models it
        # with a host that forwards only the port matrix's flows
        LabHost("fw1", MGMT, ROUTER_OCTET, ("router",), router=True),
        # stand-in for the site's DNS (dnsmasq) and NTP (chrony) servers
        LabHost("ns1", MGMT, 53, (), site_services=True),
        # seed 000's audit/log zone: the log store (Elasticsearch) and monitoring; the lab
        # keeps its backups there too (one host less: the pilot and production have bak1)
        LabHost("log1", "audit", 10, ("logging", "monitoring", "backup"), runs_containers=True),
        # stand-in for the bank's LDAP/Active Directory (OpenLDAP), in the backend zone
        LabHost("dir1", "backend", 30, (), directory=True),
    ]),
    # one host, for role tests that need no neighbours (and the site's DNS and NTP)
    "single": Topology("single", [LabHost("node1", "backend", 20, ("lab_single",)),
                                  LabHost("ns1", MGMT, 53, (), site_services=True)]),
}


def network_file(root: Path) -> Path:
    return root / "playbooks" / "group_vars" / "all" / "network.yml"


def load_zones(path: Path) -> dict[str, Zone]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(f"cannot read the network data model ({e})", file=str(path)) from None
    zones = {}
    seen: dict[ipaddress.IPv4Network, str] = {}
    for name, z in (data or {}).get("network_zones", {}).items():
        try:
            subnet = ipaddress.IPv4Network(z["subnet"])
            vlan = int(z["vlan"])
        except (KeyError, ValueError, TypeError) as e:
            raise SpecError(f"zone {name}: needs vlan (1-4094) and subnet ({e})",
                            file=str(path)) from None
        if not 1 <= vlan <= 4094:
            raise SpecError(f"zone {name}: vlan {vlan} is outside 1-4094", file=str(path))
        for other, oname in seen.items():
            if subnet.overlaps(other):
                raise SpecError(f"zone {name}: subnet {subnet} overlaps zone {oname} "
                                f"({other})", file=str(path))
        seen[subnet] = name
        zones[name] = Zone(name, vlan, subnet)
    if MGMT not in zones:
        raise SpecError("the network data model has no mgmt zone", file=str(path))
    return zones


# scale-N: N plain hosts (benchmarks/scale_bench.py: what a deploy costs as a site grows)
SCALE_MAX = 40


def scale(n: int) -> Topology:
    """N hosts of one kind in the backend zone (no component group: the baseline every
    host gets, common and firewall) and the site's DNS and NTP stand-in."""
    if not 1 <= n <= SCALE_MAX:
        raise UsageError(f"topology scale-{n}: between 1 and {SCALE_MAX} hosts")
    return Topology(f"scale-{n}", [
        *(LabHost(f"node{k:02d}", "backend", 100 + k, ("lab_scale",)) for k in range(1, n + 1)),
        LabHost("ns1", MGMT, 53, (), site_services=True)])


def topology(name: str, zones: dict[str, Zone]) -> Topology:
    if name.startswith("scale-") and name[6:].isdigit():
        topo = scale(int(name[6:]))
    elif name not in TOPOLOGIES:
        raise UsageError(f"no topology {name!r}; there are: {', '.join(sorted(TOPOLOGIES))}"
                         f", scale-N (1 to {SCALE_MAX})")
    else:
        topo = TOPOLOGIES[name]
    for h in topo.hosts:
        if h.zone not in zones:
            raise SpecError(f"topology {name}: host {h.name} is in zone {h.zone!r}, which the "
                            "network data model does not define")
    return topo
