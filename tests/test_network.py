"""The zones and flows data model: clear errors for bad data, per-host rules that follow
the matrix exactly, and the committed port-matrix document kept in step with the data."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_airlock
from installer import network
from installer.errors import SpecError

DATA = yaml.safe_load((REPO / network.DATA_FILE).read_text())

INV = network.Inventory(
    {"gateway": ["gw1"], "keycloak": ["gw1"], "ide": ["ide1"], "completion_gpu": ["ai1"],
     "chat_gpu": ["ai1"], "llm_gateway": ["ai1"], "repo": ["repo1"], "gitlab": ["repo1"]},
    {"gw1": {"airlock_zone": "dmz", "airlock_zone_address": "10.0.2.10"},
     "ide1": {"airlock_zone": "ide", "airlock_zone_address": "10.0.3.10"},
     "ai1": {"airlock_zone": "ai", "airlock_zone_address": "10.0.4.10"},
     "repo1": {"airlock_zone": "backend", "airlock_zone_address": "10.0.5.10"}},
    {"airlock_dns_servers": ["10.0.1.53"], "airlock_ntp_servers": ["10.0.1.53", "10.0.1.54"]})


def model(data=None) -> network.Model:
    return network.parse(data or DATA, network.GROUPS)


def rule(proto: str, port: int, addr: str) -> tuple:
    return (proto, port, addr)


def rules(m: network.Model, host: str, chain: str) -> set[tuple]:
    return {(r["proto"], r["port"], r["address"]) for r in network.host_rules(m, INV, host)[chain]}


def test_the_committed_model_is_valid_and_has_the_seed_zones() -> None:
    m = model()
    assert {z: v["subnet"] for z, v in m.zones.items()} == {
        "mgmt": "10.0.1.0/24", "dmz": "10.0.2.0/24", "ide": "10.0.3.0/24",
        "ai": "10.0.4.0/24", "backend": "10.0.5.0/24", "audit": "10.0.6.0/24"}
    ports = {(f.src, f.dst, f.port) for f in m.flows}
    for seed_flow in [("vde", "gateway", 443), ("gateway", "keycloak", 8443),
                      ("gateway", "ide", "8100-8199"), ("llm_gateway", "completion_gpu", 8000),
                      ("ide", "llm_gateway", 4000), ("llm_gateway", "chat_gpu", 8000),
                      ("ide", "gitlab", 443), ("all", "logging", 9200)]:
        assert seed_flow in ports  # seed 000 §4.1, every row


def test_host_rules_follow_the_matrix() -> None:
    m = model()
    assert rules(m, "ai1", "input") == {
        rule("tcp", 22, "10.0.1.0/24"),
        rule("tcp", 4000, "10.0.3.0/24"), rule("tcp", 8000, "10.0.4.10")}
    assert rule("tcp", 443, "10.20.0.0/16") in rules(m, "gw1", "input")
    assert rule("tcp", "8100-8199", "10.0.3.0/24") in rules(m, "gw1", "output")
    assert rule("tcp", 80, "10.20.0.0/16") in rules(m, "gw1", "input")
    assert rules(m, "repo1", "input") >= {rule("tcp", 443, "10.0.3.0/24")}
    # the inference servers answer only the LLM gateway: not the IDE zone, not the gateway
    assert rule("tcp", 8000, "10.0.3.0/24") not in rules(m, "ai1", "input")
    assert rule("tcp", 8000, "10.0.4.10") not in rules(m, "gw1", "output")


def test_removing_a_flow_removes_its_rules_and_its_matrix_row() -> None:
    data = copy.deepcopy(DATA)
    data["network_flows"] = [f for f in data["network_flows"] if f.get("port") != 4000]
    m = model(data)
    assert rule("tcp", 4000, "10.0.3.0/24") not in rules(m, "ai1", "input")
    assert rule("tcp", 4000, "10.0.4.10") not in rules(m, "ide1", "output")
    assert "| 4000 |" not in network.matrix_markdown(m)


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["network_flows"].append({"from": "ide", "to": "nowhere", "port": 1}),
     "'nowhere' is not a zone, external source, inventory group or 'all'"),
    (lambda d: d["network_flows"].append({"from": "ide", "to": "vde", "port": 1}),
     "is an external source; flows may not go to it"),
    (lambda d: d["network_flows"].append({"from": "ide", "to": "repo", "port": 70000}),
     "not a valid tcp/udp port"),
    (lambda d: d["network_flows"].append({"from": "ide", "to": "repo", "port": "8199-8100"}),
     "neither a port nor a range"),
    (lambda d: d["network_flows"].append({"from": "ide", "to": "repo"}), "needs from, to, port"),
    (lambda d: d["network_zones"]["ide"].update(subnet="10.0.3.0/33"), "subnet missing or "
                                                                       "invalid"),
])
def test_bad_data_is_a_clear_error(mutate, words: str) -> None:
    data = copy.deepcopy(DATA)
    mutate(data)
    with pytest.raises(SpecError) as e:
        model(data)
    assert words in str(e.value)


def test_lab_rejects_overlapping_zones(tmp_path: Path) -> None:
    from installer.lab.topology import load_zones

    data = copy.deepcopy(DATA)
    data["network_zones"]["ai"]["subnet"] = "10.0.3.128/25"
    p = tmp_path / "network.yml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"zone (ide|ai): subnet .* overlaps zone (ai|ide)"):
        load_zones(p)


def test_committed_port_matrix_matches_the_data(tmp_path: Path) -> None:
    proc = run_airlock("network", "matrix", "-o", str(tmp_path), check=True)
    assert f"{len(DATA['network_flows'])} flows" in proc.stdout
    for name in ("port-matrix.md", "port-matrix.csv"):
        assert (REPO / "docs" / name).read_text() == (tmp_path / name).read_text(), \
            f"docs/{name} is stale: run airlock network matrix -o docs"


def test_vlan_interfaces_and_their_networkd_files() -> None:
    import configparser

    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    zones = DATA["network_zones"]
    vlans = network.vlan_interfaces("ide", "10.0.3.10", "10.0.1.101", zones)
    assert [(v["name"], v["vlan"], v["address"], v["prefix"]) for v in vlans] == [
        ("vlan30", 30, "10.0.3.10", 24), ("vlan10", 10, "10.0.1.101", 24)]
    assert {r["destination"] for r in vlans[0]["routes"]} == {"10.0.2.0/24", "10.0.4.0/24",
                                                              "10.0.5.0/24", "10.0.6.0/24"}
    assert all(r["gateway"] == "10.0.3.254" for r in vlans[0]["routes"])
    env = Environment(loader=FileSystemLoader(REPO / "roles/firewall/templates"),
                      undefined=StrictUndefined, keep_trailing_newline=True)
    for v in vlans:
        for tpl, sections in (("vlan.netdev.j2", {"NetDev", "VLAN"}),
                              ("vlan.network.j2", {"Match", "Network"})):
            text = env.get_template(tpl).render(item=v, ansible_managed="test")
            parser = configparser.ConfigParser(strict=False, interpolation=None)
            parser.optionxform = str  # networkd keys are case-sensitive
            parser.read_string(text)
            assert sections <= set(parser.sections()), text
        netdev = env.get_template("vlan.netdev.j2").render(item=v, ansible_managed="t")
        assert f"Id={v['vlan']}" in netdev and "Kind=vlan" in netdev
    parent = env.get_template("parent.network.j2").render(
        _firewall_vlans=vlans, firewall_vlan_parent="bond0", ansible_managed="t")
    assert "Name=bond0" in parent and "VLAN=vlan30" in parent and "VLAN=vlan10" in parent


@pytest.mark.parametrize("zone, addr, words", [
    ("ide", "10.0.4.10", "not in zone ide"),
    ("nowhere", "10.0.3.10", "'nowhere' is not in the network data model"),
])
def test_vlan_bad_data(zone: str, addr: str, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        network.vlan_interfaces(zone, addr, "10.0.1.101", DATA["network_zones"])


def test_every_host_reaches_the_sites_dns_and_ntp_and_nothing_else_outside() -> None:
    m = model()
    for host in ("gw1", "ide1", "ai1", "repo1"):
        out = rules(m, host, "output")
        assert {rule("udp", 53, "10.0.1.53"), rule("tcp", 53, "10.0.1.53"),
                rule("udp", 123, "10.0.1.53"), rule("udp", 123, "10.0.1.54")} <= out
        assert not any(r[0] == "udp" and r[2] not in ("10.0.1.53", "10.0.1.54") for r in out)
        # nobody may reach port 53 or 123 except at the site's servers
        assert not any(r[1] in (53, 123) and r[2] not in ("10.0.1.53", "10.0.1.54")
                       for r in out)
    forward = network.router_rules(m, INV)
    assert {"proto": "udp", "port": 53, "source": "10.0.3.10", "address": "10.0.1.53",
            "purpose": "name resolution (site DNS)"} in forward


def test_site_services_need_their_addresses_and_take_no_flows_from_them() -> None:
    m = model()
    bare = network.Inventory(INV.groups, INV.hostvars)
    with pytest.raises(SpecError, match="airlock_dns_servers"):
        network.host_rules(m, bare, "gw1")
    data = copy.deepcopy(DATA)
    data["network_flows"].append({"from": "dns", "to": "all", "port": 22})
    with pytest.raises(SpecError, match="site service"):
        model(data)
    data = copy.deepcopy(DATA)
    data["network_services"]["ntp"] = {"addresses": ["10.0.1.1"]}
    with pytest.raises(SpecError, match="must name the inventory variable"):
        model(data)


def test_an_optional_service_without_addresses_opens_nothing_and_with_them_only_its_flow() -> None:
    """The bank's directory is optional (a PoC's users are Keycloak's own): without
    airlock_directory_servers no rule names it; with them, Keycloak's host alone may reach
    it, on 636, and the router forwards exactly that."""
    m = model()
    ldaps = [r for r in network.host_rules(m, INV, "gw1")["output"] if r["port"] == 636]
    assert ldaps == []
    inv = network.Inventory(INV.groups, INV.hostvars,
                            {**INV.variables, "airlock_directory_servers": ["10.0.5.30"]})
    out = [(r["port"], r["address"]) for r in network.host_rules(m, inv, "gw1")["output"]]
    assert (636, "10.0.5.30") in out
    assert not any(r["port"] == 636 for h in ("ide1", "ai1", "repo1")
                   for r in network.host_rules(m, inv, h)["output"])
    assert [(r["source"], r["address"]) for r in network.router_rules(m, inv)
            if r["port"] == 636] == [("10.0.2.10", "10.0.5.30")]


def test_a_pulling_siem_reaches_the_log_store_only_and_monitoring_reaches_every_exporter() -> None:
    """The SIEM is a site service that also connects (client: true): with its addresses,
    the logging host lets it in on 9200 and nothing else does; the monitoring host reaches
    every host's node exporter; a site service not marked client still sends nothing."""
    groups = {**INV.groups, "logging": ["log1"], "monitoring": ["log1"]}
    hostvars = {**INV.hostvars, "log1": {"airlock_zone": "mgmt",
                                         "airlock_zone_address": "10.0.1.20"}}
    inv = network.Inventory(groups, hostvars, {**INV.variables,
                                               "airlock_siem_servers": ["10.30.0.5"]})
    m = model()
    siem_in = [(h, r["port"]) for h in hostvars
               for r in network.host_rules(m, inv, h)["input"] if r["address"] == "10.30.0.5"]
    assert siem_in == [("log1", 9200)]
    out = {(r["port"], r["address"]) for r in network.host_rules(m, inv, "log1")["output"]}
    assert {(9100, a["airlock_zone_address"]) for a in hostvars.values()} <= out
    data = copy.deepcopy(DATA)
    del data["network_services"]["siem"]["client"]
    with pytest.raises(SpecError, match="site service; flows go to it"):
        model(data)


PAIR = network.Inventory(
    {**INV.groups, "gateway": ["gw1", "gw2"], "monitoring": ["ide1"]},
    {**INV.hostvars, "gw2": {"airlock_zone": "dmz", "airlock_zone_address": "10.0.2.11"}},
    {**INV.variables, "airlock_gateway_vip": ["10.0.2.9"]})


def test_the_gateway_pair_speaks_vrrp_to_each_other_only() -> None:
    """VRRP (IP protocol 112, no port) in and out between the pair's own addresses: not to
    itself, not to the VIP, not to anyone else, and never forwarded by the router."""
    m = model()
    for me, peer in (("gw1", "10.0.2.11"), ("gw2", "10.0.2.10")):
        rules = network.host_rules(m, PAIR, me)
        for chain in ("input", "output"):
            vrrp = [r["address"] for r in rules[chain] if r["proto"] == "vrrp"]
            assert vrrp == [peer], (me, chain, vrrp)
            assert all(r["port"] == "" for r in rules[chain] if r["proto"] == "vrrp")
    assert not any(r["proto"] == "vrrp" for r in network.host_rules(m, PAIR, "ide1")["output"])
    assert not any(r["proto"] == "vrrp" for r in network.router_rules(m, PAIR))


def test_flows_to_the_gateway_reach_its_vip_too() -> None:
    m = model()
    out = {(r["port"], r["address"]) for r in network.host_rules(m, PAIR, "ide1")["output"]
           if r["port"] == 443 and r["address"].startswith("10.0.2.")}
    assert out == {(443, "10.0.2.10"), (443, "10.0.2.11"), (443, "10.0.2.9")}
    fwd = {(r["source"], r["address"]) for r in network.router_rules(m, PAIR)
           if r["port"] == 443 and r["address"] == "10.0.2.9"}
    assert ("10.0.3.10", "10.0.2.9") in fwd
    # a site with one gateway and no VIP: nothing extra
    single = network.host_rules(m, INV, "ide1")["output"]
    assert not any(r["address"] == "10.0.2.9" for r in single)


@pytest.mark.parametrize(("flow", "message"), [
    ({"from": "gateway", "to": "gateway", "proto": "vrrp", "port": 112}, "has no ports"),
    ({"from": "gateway", "to": "keycloak", "proto": "vrrp"}, "between the members of one group"),
    ({"from": "dmz", "to": "dmz", "proto": "vrrp"}, "between the members of one group"),
    ({"from": "gateway", "to": "gateway", "proto": "ah"}, "needs from, to, port"),
])
def test_bad_portless_flows_are_refused(flow, message) -> None:
    data = copy.deepcopy(DATA)
    data["network_flows"].append(flow)
    with pytest.raises(SpecError, match=message):
        model(data)


def test_a_virtual_address_must_belong_to_a_group() -> None:
    data = copy.deepcopy(DATA)
    data["network_virtual_addresses"] = {"nosuchgroup": "airlock_gateway_vip"}
    with pytest.raises(SpecError, match="must be an inventory group"):
        model(data)


def test_the_vip_is_a_destination_never_a_source() -> None:
    m = model()
    ins = network.host_rules(m, PAIR, "ide1")["input"]
    assert not any(r["address"] == "10.0.2.9" for r in ins), ins
    assert not any(r["source"] == "10.0.2.9" for r in network.router_rules(m, PAIR))


LLM_PAIR = network.Inventory(
    {**INV.groups, "llm_gateway": ["ai1", "ai2"], "keycloak": ["gw1", "kc2"]},
    {**INV.hostvars, "ai2": {"airlock_zone": "ai", "airlock_zone_address": "10.0.4.11"},
     "kc2": {"airlock_zone": "dmz", "airlock_zone_address": "10.0.2.13"}},
    {**INV.variables, "airlock_llm_vip": ["10.0.4.9"]})


def test_the_llm_pair_speaks_vrrp_to_each_other_and_workbenches_reach_its_vip() -> None:
    m = model()
    for me, peer in (("ai1", "10.0.4.11"), ("ai2", "10.0.4.10")):
        rules = network.host_rules(m, LLM_PAIR, me)
        assert [r["address"] for r in rules["input"] if r["proto"] == "vrrp"] == [peer]
    out = {r["address"] for r in network.host_rules(m, LLM_PAIR, "ide1")["output"]
           if r["port"] == 4000}
    assert out == {"10.0.4.10", "10.0.4.11", "10.0.4.9"}
    assert ("10.0.3.0/24", "10.0.4.9") in {(r["source"], r["address"])
                                         for r in network.router_rules(m, LLM_PAIR)
                                         if r["port"] == 4000}


def test_keycloak_members_reach_each_others_database_and_cluster_ports_only() -> None:
    m = model()
    got = {(r["port"], r["address"]) for r in network.host_rules(m, LLM_PAIR, "kc2")["output"]
           if r["address"] == "10.0.2.10"}
    assert {(5432, "10.0.2.10"), (7800, "10.0.2.10"), (57800, "10.0.2.10")} <= got
    into_kc2 = {(r["port"], r["address"]) for r in network.host_rules(m, LLM_PAIR, "kc2")["input"]
                if r["port"] in (5432, 7800, 57800)}
    assert into_kc2 == {(p, "10.0.2.10") for p in (5432, 7800, 57800)}
    # nobody else: an IDE host may not reach the database or the cluster
    ide_out = {r["port"] for r in network.host_rules(m, LLM_PAIR, "ide1")["output"]}
    assert not ide_out & {5432, 7800, 57800}
