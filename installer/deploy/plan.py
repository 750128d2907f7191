"""``airlock plan``: what a phase needs for N users, from the seeds' sizing tables
(``sizing.yaml``), and whether an inventory has it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from installer.deploy.inventory import Inventory
from installer.errors import UsageError

SIZING = Path(__file__).with_name("sizing.yaml")
GPU_GROUPS = {"completion": "completion_gpu", "chat": "chat_gpu"}


def sizing() -> dict[str, Any]:
    return yaml.safe_load(SIZING.read_text())


def _gpus_for(users: int, table: list[dict[str, Any]], kind: str) -> tuple[int, str]:
    for row in table:
        if users <= row["users"]:
            return int(row[kind]), f"{row['source']} ({row['users']} users)"
    last = table[-1]
    return (math.ceil(users * last[kind] / last["users"]),
            f"{last['source']}, in proportion above {last['users']} users")


def plan(phase: str, users: int) -> dict[str, Any]:
    s = sizing()
    if phase not in s["phases"]:
        raise UsageError(f"no phase {phase!r}; there are: {', '.join(s['phases'])}")
    if users < 1:
        raise UsageError("--users must be at least 1")
    p = s["phases"][phase]
    lo, hi = p["users"]
    notes = []
    if not lo <= users <= hi:
        notes.append(f"{phase} is sized for {lo}-{hi} users (seed 001); {users} is outside")
    needs: list[dict[str, Any]] = []
    for kind, group in GPU_GROUPS.items():
        by_users, source = _gpus_for(users, s["gpus"], kind)
        count = max(by_users, p[f"{kind}_gpus"])
        if count > by_users:
            source = f"seed 001 §5.1 ({phase} minimum)"
        needs.append({"what": f"{kind} GPUs", "group": group, "count": count,
                      "each": f"{s['gpu_memory_gb'][kind]} GB GPU memory", "source": source})
    ide = s["ide"]
    pods = math.ceil(users / ide["users_per_pod"])
    lim = ide["user_limits"]
    needs.append({"what": "IDE vCPUs", "group": "ide", "count": pods * ide["vcpus_per_pod"],
                  "each": f"{ide['vcpus_per_pod']} vCPU per {ide['users_per_pod']} users",
                  "source": "seed 001 §4.3"})
    needs.append({"what": "IDE memory (GB)", "group": "ide", "count": users * lim["memory_gb"],
                  "each": f"{lim['memory_gb']} GB limit per user", "source": "seed 000 §3.1"})
    needs.append({"what": "IDE home storage (GB)", "group": "ide",
                  "count": users * ide["storage_gb_per_user"],
                  "each": f"{ide['storage_gb_per_user']} GB NVMe per user",
                  "source": "seed 001 §1.2"})
    needs.append({"what": "general servers", "group": None, "count": p["general_hosts"],
                  "each": "gateway, Keycloak, IDE, LiteLLM, repo, GitLab, Nexus",
                  "source": "seed 001 §5.1"})
    for g in p.get("ha_groups", []):
        needs.append({"what": f"{g} hosts (HA)", "group": g, "count": 2, "each": "a pair",
                      "source": "seed 000 §6.1"})
    return {"phase": phase, "users": users, "needs": needs, "notes": notes,
            "workspace": lim}


def check_inventory(result: dict[str, Any], inv: Inventory) -> list[dict[str, Any]]:
    """Compare the plan with what INVENTORY declares. Hosts say how many GPUs they carry
    with ``airlock_gpus`` (default 1 in a GPU group); CPU and memory are preflight's job."""
    gpu_hosts = set(inv.group("completion_gpu")) | set(inv.group("chat_gpu"))
    findings = []
    for need in result["needs"]:
        group, what = need["group"], need["what"]
        if what.endswith("GPUs"):
            have = sum(int(inv.host(h).vars.get("airlock_gpus", 1)) for h in inv.group(group))
        elif what == "general servers":
            have = len([h for h in inv.hosts if h not in gpu_hosts
                        and "router" not in inv.groups_of(h)])
        elif what.endswith("(HA)"):
            have = len(inv.group(group))
        else:
            continue  # capacity: measured by preflight on the hosts themselves
        need["have"] = have
        if have < need["count"]:
            where = f" in group {group}" if group else ""
            findings.append({"what": what, "need": need["count"], "have": have,
                             "problem": f"{what}: {need['count']} needed, the inventory has "
                                        f"{have}{where}"})
    findings += _pair_vips(inv)
    declared = inv.var("airlock_users")
    if declared is not None and int(declared) < result["users"]:
        findings.append({"what": "users", "need": result["users"], "have": int(declared),
                         "problem": f"the inventory is sized for {declared} users "
                                    "(airlock_users)"})
    return findings


# The pairs that share users through a VIP (keepalived): group, its variable, one member's
# name, several members' name.
PAIRS = (("gateway", "airlock_gateway_vip", "gateway", "gateways"),
         ("llm_gateway", "airlock_llm_vip", "LLM gateway", "LLM gateways"))


def _pair_vips(inv: Inventory) -> list[dict[str, Any]]:
    """Each pair needs its VIP (keepalived's): an address of its zone that no host has,
    unset where the group has one host. A host holds one pair's VIP at most (keepalived
    runs one VRRP instance per host here)."""
    findings: list[dict[str, Any]] = []
    paired: dict[str, str] = {}
    for group, var, member, members in PAIRS:
        problem = _pair_vip(inv, group, var, members)
        if problem:
            findings.append({"what": f"{member} VIP ({var})", "need": 1, "have": 0,
                             "problem": problem})
        hosts = inv.group(group)
        if len(hosts) < 2:
            continue
        for h in hosts:
            if h in paired:
                findings.append({
                    "what": f"{member} pair ({group})", "need": 1, "have": 2,
                    "problem": f"{h} is in both the {paired[h]} pair and the {members} pair: "
                               "a host holds one pair's VIP; give each pair hosts of its own"})
            paired.setdefault(h, members)
    return findings


def _pair_vip(inv: Inventory, group: str, var: str, members: str) -> str | None:
    import ipaddress

    hosts = inv.group(group)
    vip = inv.var(var)
    if len(hosts) < 2:
        return None
    if not vip:
        return (f"{len(hosts)} {members} share users only through a VIP: set {var} (an "
                "unused address of their zone) in group_vars/all")
    try:
        address = ipaddress.ip_address(str(vip))
    except ValueError:
        return f"{var} {vip!r} is not an IPv4 address"
    zone = inv.host(hosts[0]).vars.get("airlock_zone")
    subnet = _zone_subnet(str(zone))
    taken = {h: inv.host(h).vars.get("airlock_zone_address") for h in inv.hosts}
    if subnet and address not in ipaddress.ip_network(subnet):
        return f"{var} {vip} is outside the {members}' zone {zone} ({subnet})"
    users = [h for h, a in taken.items() if a == str(address)]
    if users:
        return f"{var} {vip} is {users[0]}'s own address"
    return None


def _zone_subnet(zone: str) -> str | None:
    """ZONE's subnet in the project's network data model (None where it cannot be read)."""
    import yaml

    from installer.network import DATA_FILE
    from installer.site import project_root

    try:
        data = yaml.safe_load((project_root() / DATA_FILE).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    return ((data.get("network_zones") or {}).get(zone) or {}).get("subnet")
