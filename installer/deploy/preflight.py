"""``airlock preflight``: every host checked over SSH (paramiko, all at once) against what
its roles need at this phase, before anything is changed.

What each host must have comes from the inventory (``airlock_preflight_requirements`` by
group, the largest figure of the host's groups wins; ``airlock_preflight_ports`` by group),
so phases and sites set it as data. One read-only shell probe per host; nothing is written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from installer.deploy import hostkeys
from installer.deploy import inventory as inv_mod
from installer.deploy.ssh import Remote, each_host
from installer.errors import HostError

GIB = 1 << 30
SUPPORTED_OS = {"debian": ("12",)}
NVIDIA = "0x10de"

PROBE = r"""
. /etc/os-release 2>/dev/null; echo "os=${ID:-unknown} ${VERSION_ID:-?}"
echo "pretty=${PRETTY_NAME:-unknown}"
echo "cpus=$(nproc 2>/dev/null || echo 0)"
echo "mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
for p in "$@"; do
  q="$p"; while [ ! -d "$q" ]; do q=$(dirname "$q"); done
  echo "df=$p	$(df -Pk "$q" | awk 'NR==2 {print $4}')	$q"
done
for d in /sys/bus/pci/devices/*; do
  [ -r "$d/vendor" ] || continue
  case "$(cat "$d/class")" in 0x0300*|0x0302*) echo "pci=$(cat "$d/vendor")";; esac
done
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits 2>/dev/null |
    sed 's/^/gpu=/'
fi
cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk 'NR>1 && $4=="0A" {print "listen="$2}'
if [ -f /etc/airlock/deployment.json ]; then echo deployed=yes; else echo deployed=no; fi
if [ -n "$AIRLOCK_SERVED" ]; then
  if [ -e "$AIRLOCK_SERVED" ]; then echo serving=yes; else echo serving=no; fi
fi
if [ -n "$AIRLOCK_REPO" ]; then
  if command -v bash >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1; then
    e=$(timeout 5 bash -c "exec 3<>/dev/tcp/$AIRLOCK_REPO/443" 2>&1); c=$?
    if [ $c = 0 ]; then r=open
    elif [ $c = 124 ]; then r=timeout
    else case "$e" in *refused*) r=refused;; *) r=unresolved;; esac; fi
  else r=unknown; fi
  echo "repo=$r"
fi
"""


def parse_probe(text: str) -> dict[str, Any]:
    facts: dict[str, Any] = {"df": {}, "pci": [], "gpus": [], "listen": set()}
    for line in text.splitlines():
        key, _, val = line.partition("=")
        if key == "df":
            path, free_kb, where = [*val.split("\t"), "", ""][:3]
            facts["df"][path] = {"free": int(free_kb or 0) * 1024, "mount": where}
        elif key == "pci":
            facts["pci"].append(val.strip())
        elif key == "gpu":
            name, _, mem = val.rpartition(",")
            try:
                facts["gpus"].append({"name": name.strip(), "memory_gb": int(mem) / 1024})
            except ValueError:
                facts["gpus"].append({"name": val.strip(), "memory_gb": 0.0})
        elif key == "listen":
            facts["listen"].add(int(val.rpartition(":")[2], 16))
        elif key in ("cpus", "mem_kb"):
            facts[key] = int(val or 0)
        elif key:
            facts[key] = val
    return facts


def requirements(inv: inv_mod.Inventory, host: str) -> dict[str, Any]:
    """The largest figure of every group HOST is in; disks per path."""
    vars_ = inv.hostvars.get(host, {})
    table = vars_.get("airlock_preflight_requirements") or {}
    need: dict[str, Any] = {"cpus": 0, "memory_gb": 0, "gpus": 0, "gpu_memory_gb": 0,
                            "disks": {}, "ports": set()}
    groups = ["all", *inv.groups_of(host)]
    for g in groups:
        r = table.get(g) or {}
        for k in ("cpus", "memory_gb", "gpus", "gpu_memory_gb"):
            need[k] = max(need[k], r.get(k, 0))
        if "disk_gb" in r:
            path = str(r.get("path", "/"))
            need["disks"][path] = max(need["disks"].get(path, 0), r["disk_gb"])
        need["ports"].update((vars_.get("airlock_preflight_ports") or {}).get(g, []))
    if not vars_.get("airlock_preflight_gpu_required", True):
        need["gpus"] = need["gpu_memory_gb"] = 0
    return need


def check_host(name: str, facts: dict[str, Any], need: dict[str, Any], *,
               clock_offset: float, max_offset: float, extra_disk: dict[str, int],
               repo_serving: bool = False) -> list[str]:
    """What is wrong with one host, each as a sentence that says what to do."""
    problems = []
    os_id, _, version = str(facts.get("os", "unknown ?")).partition(" ")
    if version not in SUPPORTED_OS.get(os_id, ()):
        problems.append(f"runs {facts.get('pretty')}; the bundles carry packages for "
                        + ", ".join(f"{k} {'/'.join(v)}" for k, v in SUPPORTED_OS.items())
                        + ": reinstall it with a supported release")
    if facts.get("cpus", 0) < need["cpus"]:
        problems.append(f"{facts.get('cpus')} CPUs, its roles need {need['cpus']}: give it "
                        "more cores")
    mem = facts.get("mem_kb", 0) * 1024 / GIB
    if mem < need["memory_gb"] * 0.95:  # firmware keeps a little of the installed RAM
        problems.append(f"{mem:.1f} GiB RAM, its roles need {need['memory_gb']} GiB: add "
                        "memory")
    for path, gb in need["disks"].items():
        got = facts["df"].get(path, {}).get("free", 0)
        want = gb * GIB + extra_disk.get(path, 0)
        if got < want:
            mount = facts["df"].get(path, {}).get("mount", path)
            problems.append(f"{got / GIB:.1f} GiB free at {path} (on {mount}), "
                            f"{want / GIB:.1f} GiB needed: free space or grow that disk")
    if need["gpus"]:
        found = len(facts["gpus"]) or facts["pci"].count(NVIDIA)
        if found < need["gpus"]:
            problems.append(f"{found} NVIDIA GPU(s) found (PCI and nvidia-smi), "
                            f"{need['gpus']} needed for its GPU groups: fit the GPU or move "
                            "the host out of completion_gpu/chat_gpu")
        small = [g for g in facts["gpus"] if g["memory_gb"] < need["gpu_memory_gb"] * 0.95]
        if facts["gpus"] and small:
            problems.append(f"GPU {small[0]['name']} has {small[0]['memory_gb']:.0f} GB, "
                            f"{need['gpu_memory_gb']} GB needed for its model")
    if abs(clock_offset) > max_offset:
        problems.append(f"clock is {clock_offset:+.1f} s off the controller's (max "
                        f"{max_offset} s): fix NTP (TLS, Kerberos and the audit trail need "
                        "agreeing clocks)")
    busy = sorted(p for p in need["ports"] if p in facts["listen"])
    if busy and facts.get("deployed") != "yes":
        problems.append(f"port(s) {', '.join(map(str, busy))} already in use by something "
                        "else (never deployed here): stop that service or move the role")
    repo = facts.get("repo")
    if repo in ("timeout", "unresolved") or (repo == "refused" and repo_serving):
        why = {"timeout": "no answer (a route or firewall drops it)",
               "unresolved": "its name does not resolve (DNS or /etc/hosts)",
               "refused": "connection refused although it serves a release"}[str(repo)]
        problems.append(f"cannot reach the repo host on 443: {why}")
    return problems


def _bundle_bytes(bundle: Path | None) -> int:
    if bundle is None:
        return 0
    return sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())


def preflight(root: Path, inventory: Path, *, site: Path, bundle: Path | None = None,
              limit: list[str] | None = None, confirm: hostkeys.Confirm | None = None,
              say: Any = print) -> dict[str, Any]:
    inv = inv_mod.load(inventory, root)
    names = [h for h in inv.hosts if not limit or h in limit]
    repo = inv.group("repo")
    repo_name = repo[0] if repo else ""
    repo_root = inv.host(repo_name).repo_root if repo_name else ""
    need_bundle = _bundle_bytes(bundle)
    needs = {h: requirements(inv, h) for h in names}
    if repo_name in needs and need_bundle:  # the bundle lands on the repo host's disk
        d = needs[repo_name]["disks"]
        d.setdefault(repo_root, 0)

    def probe(r: Remote) -> dict[str, Any]:
        paths = sorted(needs[r.name]["disks"])
        t0 = time.time()
        _, out, _ = r.run(["date", "+%s.%N"])
        t1 = time.time()
        offset = float(out.strip() or 0) - (t0 + t1) / 2
        # the router (the inter-VLAN firewall) forwards flows; it installs nothing itself
        asks_repo = repo_name and r.name != repo_name and "router" not in inv.groups_of(r.name)
        script = (f"AIRLOCK_REPO={repo_name}\n" if asks_repo
                  else f"AIRLOCK_SERVED={repo_root}/current\n" if r.name == repo_name
                  else "") + PROBE
        _, text, _ = r.run(["sh", "-c", script, "airlock-preflight", *paths])
        return {"facts": parse_probe(text), "offset": offset}

    asked = names + ([repo_name] if repo_name and repo_name not in names else [])
    # first contact: every host's key checked (and recorded where vouched for)
    keys = hostkeys.check([inv.host(h) for h in asked], site, confirm=confirm, say=say)
    results: dict[str, Any] = {h: e for h, e in keys.items() if isinstance(e, HostError)}
    results.update(each_host([inv.host(h) for h in asked if h not in results], probe,
                             site=site))
    got_repo = results.get(repo_name)
    serving = isinstance(got_repo, dict) and got_repo["facts"].get("serving") == "yes"
    rows, failed = [], []
    for h in names:
        got = results[h]
        if isinstance(got, HostError):
            rows.append({"host": h, "reachable": False, "problems": [str(got)]})
            failed.append(h)
            continue
        f = got["facts"]
        max_off = float(inv.hostvars[h].get("airlock_preflight_max_clock_offset_s", 2))
        extra = {repo_root: need_bundle} if h == repo_name and need_bundle else {}
        problems = check_host(h, f, needs[h], clock_offset=got["offset"],
                              max_offset=max_off, extra_disk=extra, repo_serving=serving)
        if problems:
            failed.append(h)
        rows.append({
            "host": h, "reachable": True, "groups": inv.groups_of(h), "os": f.get("os"),
            "osName": f.get("pretty"),
            "cpus": f.get("cpus"), "memoryGiB": round(f.get("mem_kb", 0) * 1024 / GIB, 1),
            "freeGiB": {p: round(v["free"] / GIB, 1) for p, v in f["df"].items()},
            "gpus": f["gpus"] or [{"pci": v} for v in f["pci"] if v == NVIDIA],
            "clockOffsetS": round(got["offset"], 2), "deployed": f.get("deployed") == "yes",
            "repo": f.get("repo", ("serving" if serving else "not serving yet")
                          if h == repo_name else "?"),
            "need": {**{k: v for k, v in needs[h].items() if k != "ports"},
                     "ports": sorted(needs[h]["ports"])},
            "problems": problems})
    return {"ok": not failed, "inventory": str(inventory), "failed": failed,
            "bundleBytes": need_bundle, "hosts": rows}
