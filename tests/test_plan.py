"""`airlock plan` against the seeds' sizing tables, and the phase inventories against it."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, run_airlock
from installer.deploy import inventory as inv_mod
from installer.deploy.deploy import check_phase
from installer.deploy.plan import plan
from installer.errors import UsageError


def _needs(phase: str, users: int) -> dict[str, int]:
    return {n["what"]: n["count"] for n in plan(phase, users)["needs"]}


@pytest.mark.parametrize("users, gpus", [(20, 1), (50, 2), (100, 3), (200, 5), (400, 10)])
def test_gpus_follow_the_seed_tables(users: int, gpus: int) -> None:
    n = _needs("production" if users >= 50 else "pilot", users)
    want = max(gpus, 3 if users >= 50 else 2)  # never below the phase's minimum (§5.1)
    assert n["completion GPUs"] == n["chat GPUs"] == want


def test_ide_capacity_from_the_tables() -> None:
    n = _needs("production", 50)  # seed 001 §4.3: 4 vCPU x 10 pods for 50 users
    assert n["IDE vCPUs"] == 40 and n["IDE memory (GB)"] == 200
    assert n["IDE home storage (GB)"] == 1000
    assert n["gateway hosts (HA)"] == 2


@pytest.mark.parametrize("phase", ["poc", "pilot", "production"])
def test_each_phase_inventory_meets_its_plan(phase: str) -> None:
    proc = run_airlock("plan", "--phase", phase, "-i", f"inventories/{phase}", "--json",
                       cwd=REPO)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["ok"] and doc["findings"] == [], proc.stdout
    inv = inv_mod.load(REPO / "inventories" / phase / "hosts.yml", REPO)
    assert check_phase(inv, phase) == phase
    ctl = inv.var("airlock_controls")
    assert ctl["sso"] == ctl["mfa"] == (phase != "poc") and ctl["ha"] == (phase == "production")


def test_a_short_inventory_is_named() -> None:
    proc = run_airlock("plan", "--phase", "production", "--users", "200", "-i",
                       "inventories/production", "--json", cwd=REPO)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 3 and not doc["ok"]
    assert {f["what"] for f in doc["findings"]} == {"completion GPUs", "chat GPUs", "users"}
    assert "5 needed, the inventory has 3 in group chat_gpu" in json.dumps(doc["findings"])


def test_wrong_phase_for_the_inventory() -> None:
    inv = inv_mod.load(REPO / "inventories" / "pilot" / "hosts.yml", REPO)
    with pytest.raises(UsageError, match="is a pilot inventory, not poc"):
        check_phase(inv, "poc")


def test_an_unparsable_inventory_is_an_error_not_an_empty_one(tmp_path) -> None:
    bad = tmp_path / "hosts.yml"
    bad.write_text("all:\n  hosts: [\n")
    proc = run_airlock("plan", "--phase", "poc", "-i", str(bad), cwd=REPO)
    assert proc.returncode == 3, proc.stderr
    assert f"{bad}: ansible-inventory cannot read it" in proc.stderr
    assert "YAML parsing failed" in proc.stderr and "shortfall" not in proc.stderr


@pytest.mark.parametrize("var, vip, says", [
    ("airlock_gateway_vip", None, "share users only through a VIP: set airlock_gateway_vip"),
    ("airlock_gateway_vip", "10.0.3.9", "outside the gateways' zone dmz (10.0.2.0/24)"),
    ("airlock_gateway_vip", "10.0.2.11", "is gw2's own address"),
    ("airlock_gateway_vip", "gateway", "is not an IPv4 address"),
    ("airlock_llm_vip", None, "2 LLM gateways share users only through a VIP: set airlock_llm_vip"),
    ("airlock_llm_vip", "10.0.2.9", "outside the LLM gateways' zone ai (10.0.4.0/24)"),
    ("airlock_llm_vip", "10.0.4.25", "is llm2's own address"),
])
def test_a_pair_needs_a_good_vip(tmp_path, var, vip, says) -> None:
    import shutil

    import yaml

    copy = tmp_path / "production"
    shutil.copytree(REPO / "inventories" / "production", copy)
    site = copy / "group_vars" / "all" / "site.yml"
    data = yaml.safe_load(site.read_text())
    data.pop(var)
    if vip:
        data[var] = vip
    site.write_text(yaml.safe_dump(data))
    proc = run_airlock("plan", "--phase", "production", "-i", str(copy), "--json", cwd=REPO)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 3 and not doc["ok"], proc.stdout
    what = {"airlock_gateway_vip": "gateway VIP (airlock_gateway_vip)",
            "airlock_llm_vip": "LLM gateway VIP (airlock_llm_vip)"}[var]
    assert [f["what"] for f in doc["findings"]] == [what]
    assert says in doc["findings"][0]["problem"], doc["findings"]


def test_a_host_in_two_pairs_is_refused(tmp_path) -> None:
    """keepalived holds one VIP per host here: a gateway that is also an LLM gateway of a
    pair is named before anything is deployed."""
    import shutil

    copy = tmp_path / "production"
    shutil.copytree(REPO / "inventories" / "production", copy)
    hosts = copy / "hosts.yml"
    text = hosts.read_text()
    assert "    llm_gateway:\n      hosts:\n        llm1:\n" in text
    hosts.write_text(text.replace("    llm_gateway:\n      hosts:\n        llm1:\n",
                                  "    llm_gateway:\n      hosts:\n        gw2:\n        llm1:\n"))
    proc = run_airlock("plan", "--phase", "production", "-i", str(copy), "--json", cwd=REPO)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 3 and not doc["ok"], proc.stdout
    pair = [f for f in doc["findings"] if f["what"] == "LLM gateway pair (llm_gateway)"]
    assert len(pair) == 1, doc["findings"]
    assert "gw2 is in both the gateways pair and the LLM gateways pair" in pair[0]["problem"]
