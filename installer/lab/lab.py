"""``airlock lab up | down | status``: the project's own test hosts as containers.

``up`` finds or starts an engine, builds (once) the base image, makes one internal bridge
network per zone with the address plan of the network data model, starts each host with
systemd as PID 1 (flags from LAB.md; hosts that run containers get what docker-in-docker
needs), installs a fresh SSH key for the unprivileged ``airlock`` user (root logins are
refused, as on a site), starts the stand-in for the site's DNS and NTP server (``ns1``:
dnsmasq with every host's name and nothing else, chrony serving time), reads each host's
SSH host key through the engine (a channel SSH does not depend on) and pins it, waits for
SSH on every host's management address, and writes ``inventories/lab/hosts.yml``.
Everything it makes carries the label ``dev.airlock.lab`` and is recorded in the lab's
state file; ``down`` removes exactly that, by id, and stops the engine only if ``up``
started it. A failure half-way removes what was made so far.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from installer.errors import LabError
from installer.fsutil import atomic_write
from installer.lab import directory, image
from installer.lab import engine as engine_mod
from installer.lab.engine import Engine
from installer.lab.image import UID, USER
from installer.lab.topology import (
    GATEWAY_VIP_OCTET,
    MGMT,
    ROUTER_OCTET,
    Topology,
    Zone,
    load_zones,
    network_file,
    topology,
)

LABEL = "dev.airlock.lab"
DOMAIN = "lab.airlock.test"
SYSTEMD_FLAGS: dict[str, Any] = {
    "cap_add": ["SYS_ADMIN", "NET_ADMIN"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "tmpfs": {"/run": "", "/run/lock": ""},
    "volumes": {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
}
# LAB.md: --privileged fails here; ALL minus SYS_RESOURCE runs dockerd inside
CONTAINER_HOST_CAPS = {"cap_add": ["ALL"], "cap_drop": ["SYS_RESOURCE"]}


def state_dir() -> Path:
    env = os.environ.get("AIRLOCK_LAB_DIR")
    if env:
        return Path(env).absolute()
    from platformdirs import user_state_dir

    return Path(user_state_dir("airlock")) / "lab"


@dataclass
class LabState:
    topology: str
    engine_host: str
    engine_started_pid: int | None
    image: str
    key: str
    networks: dict[str, str] = field(default_factory=dict)  # zone -> network id
    containers: dict[str, str] = field(default_factory=dict)  # host -> container id
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    inventory: str = ""
    # what an inventory needs to federate the lab's directory (installer.lab.directory)
    directory: dict[str, str] = field(default_factory=dict)
    # the gateway pair's shared address (keepalived's VIP), where the topology has two
    gateway_vip: str = ""

    def save(self, d: Path) -> None:
        atomic_write(d / "state.json", (json.dumps(asdict(self), indent=2) + "\n").encode(),
                     mode=0o600)

    @classmethod
    def load(cls, d: Path) -> LabState | None:
        p = d / "state.json"
        if not p.exists():
            return None
        return cls(**json.loads(p.read_text()))


def _key(d: Path) -> tuple[Path, str]:
    path = d / "id_ed25519"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.OpenSSH,
                                      serialization.NoEncryption()))
    key = serialization.load_ssh_private_key(path.read_bytes(), None)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH).decode()
    return path, pub + " airlock-lab\n"


def _authorized_keys_tar(pub: str) -> bytes:
    """The airlock user's ~/.ssh/authorized_keys, owned by that user."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        d = tarfile.TarInfo(f"home/{USER}/.ssh")
        d.type, d.mode, d.uid, d.gid = tarfile.DIRTYPE, 0o700, UID, UID
        tar.addfile(d)
        f = tarfile.TarInfo(f"home/{USER}/.ssh/authorized_keys")
        f.size, f.mode, f.uid, f.gid = len(pub), 0o600, UID, UID
        tar.addfile(f, io.BytesIO(pub.encode()))
    return buf.getvalue()


def fingerprint(public_line: str) -> str:
    """``SHA256:…`` of an OpenSSH public key line, as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _host_key(container: Any, deadline: float) -> str:
    """The host's ed25519 public key, read through the engine once sshd has made it."""
    while time.monotonic() < deadline:
        r = container.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
        if r.exit_code == 0 and r.output.startswith(b"ssh-ed25519 "):
            return " ".join(r.output.decode().split()[:2])
        time.sleep(0.5)
    raise LabError(f"{container.name}: sshd made no host key",
                   hint=f"docker exec {container.name} journalctl -u ssh")


def _wait_ssh(address: str, key: Path, known_hosts: Path, deadline: float) -> None:
    import paramiko

    pkey = paramiko.Ed25519Key.from_private_key_file(str(key))
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, 22), timeout=2):
                pass
            client = paramiko.SSHClient()
            client.load_host_keys(str(known_hosts))  # pinned from the engine's channel
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(address, username=USER, pkey=pkey, timeout=5,
                           allow_agent=False, look_for_keys=False)
            _, out, _ = client.exec_command("systemctl is-system-running --wait || true",
                                            timeout=60)
            out.read()
            client.close()
            return
        except paramiko.BadHostKeyException:
            raise
        except (OSError, paramiko.SSHException) as e:
            last = e
            time.sleep(1)
    raise LabError(f"no SSH on {address} after waiting ({last})",
                   hint="see the host's journal: docker exec HOST journalctl -u ssh")


def _mgmt_octet(index: int) -> int:
    return 100 + index


def _route_via_router(container: Any, zone: str, zones: dict[str, Zone],
                      used: dict[str, Zone]) -> None:
    """Other zones are reached through the router's address in this host's zone, as a
    production host reaches them through its VLAN's gateway."""
    via = zones[zone].address(ROUTER_OCTET)
    for other in sorted(used):
        if other in (zone, MGMT):
            continue
        r = container.exec_run(["ip", "route", "replace", str(zones[other].subnet), "via", via])
        if r.exit_code != 0:
            raise LabError(f"cannot route {other} via {via}: {r.output.decode().strip()}")


def refuse_if_up(hint: str) -> None:
    """A lab is up (its state file says so): refuse to start another over it."""
    d = state_dir()
    old = LabState.load(d)
    if old:
        raise LabError(f"a lab ({old.topology}) is already up; state in {d / 'state.json'}",
                       hint=hint)


INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")


def check_inotify(hosts: int, limit_file: Path = INOTIFY_LIMIT) -> None:
    """systemd in each host holds inotify instances (about 7, all under root's limit):
    past the limit the last hosts boot without sshd, which showed as 'sshd made no host
    key' on the 20th of 21 hosts at Linux's default 128. Refused before anything starts."""
    try:
        limit = int(limit_file.read_text())
    except (OSError, ValueError):
        return
    need = 7 * hosts + 16
    if limit < need:
        raise LabError(f"{hosts} lab hosts need about {need} inotify instances (systemd in "
                       f"each); this machine allows {limit} (fs.inotify.max_user_instances)",
                       hint=f"as root: sysctl -w fs.inotify.max_user_instances="
                            f"{max(512, need)}, then run again")


def up(root: Path, topo_name: str = "poc", say=print) -> LabState:  # type: ignore[no-untyped-def]
    from docker.errors import APIError

    zones = load_zones(network_file(root))
    topo = topology(topo_name, zones)
    check_inotify(len(topo.hosts))
    d = state_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    refuse_if_up("airlock lab down first")
    eng = engine_mod.find_or_start(d, say)
    img = image.ensure(eng, d / "image-work", say)
    key, pub = _key(d)
    state = LabState(topo_name, eng.host, eng.started_pid, img, str(key))
    state.save(d)  # from here on, down can undo whatever was made
    client = eng.client()
    try:
        used = {z: zones[z] for z in {MGMT, *(h.zone for h in topo.hosts)}}
        for name, zone in sorted(used.items()):
            _check_subnet_free(client, zone)
            try:
                net = client.networks.create(
                    f"airlock-lab-{name}", driver="bridge", internal=True,
                    ipam=_ipam(zone), labels={LABEL: topo_name, "dev.airlock.zone": name})
            except APIError as e:
                raise LabError(f"cannot make the {name} network {zone.subnet}: "
                               f"{e.explanation}") from None
            state.networks[name] = net.id
            state.save(d)
        for i, h in enumerate(topo.hosts):
            mgmt_ip = zones[MGMT].address(ROUTER_OCTET if h.router else h.octet
                                          if h.zone == MGMT else _mgmt_octet(i))
            zone_ip = zones[h.zone].address(h.octet)
            flags = dict(SYSTEMD_FLAGS)
            if h.runs_containers:
                flags = {**flags, **CONTAINER_HOST_CAPS}
            if h.router:
                flags = {**flags, "sysctls": {"net.ipv4.ip_forward": "1"}}
            if "ide" in h.groups:
                # code_server's homes are loop-mounted ext4 images: the kernel's loop
                # devices (block major 7) and their control node
                flags = {**flags, "devices": ["/dev/loop-control:/dev/loop-control:rwm"],
                         "device_cgroup_rules": ["b 7:* rmw"]}
            c = client.containers.create(
                img, name=f"airlock-lab-{h.name}", hostname=h.name, detach=True,
                labels={LABEL: topo_name, "dev.airlock.host": h.name},
                stop_signal="SIGRTMIN+3",  # systemd's clean shutdown
                network=f"airlock-lab-{MGMT}", **flags)
            state.containers[h.name] = c.id
            state.save(d)
            client.api.disconnect_container_from_network(c.id, state.networks[MGMT])
            client.api.connect_container_to_network(c.id, state.networks[MGMT],
                                                    ipv4_address=mgmt_ip)
            attach = [z for z in used if z != MGMT] if h.router else \
                ([h.zone] if h.zone != MGMT else [])
            for z in sorted(attach):
                client.api.connect_container_to_network(
                    c.id, state.networks[z],
                    ipv4_address=zones[z].address(ROUTER_OCTET) if h.router else zone_ip)
            c.put_archive("/", _authorized_keys_tar(pub))
            c.start()
            if "ide" in h.groups:
                _loop_nodes(c)
            if not h.router and h.zone != MGMT and any(x.router for x in topo.hosts):
                _route_via_router(c, h.zone, zones, used)
            state.hosts[h.name] = {"zone": h.zone, "groups": list(h.groups),
                                   "mgmt_address": mgmt_ip, "zone_address": zone_ip,
                                   "runs_containers": h.runs_containers,
                                   "site_services": h.site_services,
                                   "directory": h.directory}
            state.save(d)
        # systemd boots every host at once on the same cores: more hosts, longer
        deadline = time.monotonic() + max(180, 15 * len(topo.hosts))
        known = []
        for h in topo.hosts:
            c = client.containers.get(state.containers[h.name])
            pub_key = _host_key(c, deadline)
            state.hosts[h.name]["host_key_sha256"] = fingerprint(pub_key)
            known.append(f"{state.hosts[h.name]['mgmt_address']} {pub_key}\n")
            if h.site_services:
                say(f"starting the site's DNS and NTP stand-in on {h.name}")
                _site_services(c, topo, zones, state.hosts[h.name]["mgmt_address"])
        # as a site's base build does: every host resolves through the site's DNS
        ns = services_address(topo, state)
        for h in topo.hosts:
            if not h.site_services:
                _resolver(client.containers.get(state.containers[h.name]), ns)
        for h in topo.hosts:
            if h.directory:
                say(f"starting the bank directory's stand-in (OpenLDAP) on {h.name}")
                state.directory = directory.start(client.containers.get(
                    state.containers[h.name]), d, f"{h.name}.{DOMAIN}")
        atomic_write(d / "known_hosts", "".join(known).encode(), mode=0o600)
        state.save(d)
        for name, h in state.hosts.items():
            say(f"waiting for SSH on {name} ({h['mgmt_address']})")
            _wait_ssh(h["mgmt_address"], key, d / "known_hosts", deadline)
        state.gateway_vip = gateway_vip(topo, zones)
        state.inventory = str(write_inventory(root, topo, zones, state))
        state.save(d)
        return state
    except BaseException:
        say("lab up failed; removing what it made")
        down(root, quiet=True)
        raise


def start_again(root: Path, name: str, resolv_conf: str, deadline_s: float = 120) -> None:
    """Start a lab host whose container was stopped or killed (a failover test's victim)
    and give it back what `lab up` set from outside at run time: its routes through the
    router and its resolver (RESOLV_CONF: the file's text before the host went down, the
    common role's; the engine writes its own again at a start). Waits for its SSH."""
    state = LabState.load(state_dir())
    if not state or name not in state.containers:
        raise LabError(f"no lab host {name} is up")
    zones = load_zones(network_file(root))
    topo = topology(state.topology, zones)
    h = next(x for x in topo.hosts if x.name == name)
    used = {z: zones[z] for z in {MGMT, *(x.zone for x in topo.hosts)}}
    client = engine_mod.Engine(state.engine_host, None).client()
    c = client.containers.get(state.containers[name])
    c.start()
    if "ide" in h.groups:
        _loop_nodes(c)
    if not h.router and h.zone != MGMT and any(x.router for x in topo.hosts):
        _route_via_router(c, h.zone, zones, used)
    if c.exec_run(["cat", "/etc/resolv.conf"]).output.decode() != resolv_conf:
        _write(c, "/etc/resolv.conf", resolv_conf)
    _wait_ssh(state.hosts[name]["mgmt_address"], Path(state.key),
              state_dir() / "known_hosts", time.monotonic() + deadline_s)


def names(topo: Topology, zones: dict[str, Zone]) -> dict[str, str]:
    """What the site's DNS answers: each host's name at its zone address (so traffic
    between hosts crosses the zones and the router, never the mgmt network)."""
    out = {}
    for h in topo.hosts:
        for name in (h.name, *h.aliases):
            out[name] = zones[h.zone].address(ROUTER_OCTET if h.router else h.octet)
    return out


def services_address(topo: Topology, state: LabState) -> str:
    """The management address of the topology's stand-in for the site's DNS and NTP."""
    found = [state.hosts[h.name]["mgmt_address"] for h in topo.hosts if h.site_services]
    if not found:
        raise LabError(f"topology {topo.name} has no site DNS and NTP server (ns1)")
    return found[0]


def _site_services(container: Any, topo: Topology, zones: dict[str, Zone],
                   address: str) -> None:
    """dnsmasq at ADDRESS with the lab's names and nothing else (no upstream: names outside
    the site are refused), and chrony serving its clock to every zone (-x: it never sets
    the clock, which the containers share with the build machine)."""
    records = "".join(f"host-record={n},{n}.{DOMAIN},{a}\n"
                      for n, a in sorted(names(topo, zones).items()))
    dns = (f"# airlock lab: the site's DNS server (stand-in)\nno-resolv\nno-hosts\n"
           f"no-poll\nlocal=/{DOMAIN}/\ndomain={DOMAIN}\nlisten-address={address}\n"
           f"bind-interfaces\n{records}")
    allow = "".join(f"allow {z.subnet}\n" for z in zones.values())
    ntp = ("# airlock lab: the site's NTP server (stand-in), serving its own clock\n"
           f"local stratum 8\n{allow}driftfile /var/lib/chrony/chrony.drift\n")
    script = f"""set -e
cat > /etc/airlock-lab-dns.conf <<'EOF_DNS'
{dns}EOF_DNS
cat > /etc/chrony/chrony.conf <<'EOF_NTP'
{ntp}EOF_NTP
echo 'DAEMON_OPTS="-F 1 -x"' > /etc/default/chrony
mkdir -p /etc/systemd/system/chrony.service.d
printf '[Unit]\nConditionCapability=\n' > /etc/systemd/system/chrony.service.d/lab.conf
systemctl daemon-reload
systemctl restart chrony
systemd-run --unit=airlock-lab-dns --property=Restart=on-failure \
  /usr/sbin/dnsmasq --keep-in-foreground --conf-file=/etc/airlock-lab-dns.conf
"""
    r = container.exec_run(["sh", "-c", script])
    if r.exit_code != 0:
        raise LabError(f"cannot start the lab's DNS and NTP server: {r.output.decode()[-800:]}")


def _resolver(container: Any, nameserver: str) -> None:
    """/etc/resolv.conf pointing at the site's DNS (written in place: the engine
    bind-mounts it)."""
    _write(container, "/etc/resolv.conf", f"search {DOMAIN}\nnameserver {nameserver}\n")


def _write(container: Any, path: str, text: str) -> None:
    """TEXT into PATH in place (a bind mount the engine made cannot be renamed over)."""
    r = container.exec_run(["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", text, path])
    if r.exit_code != 0:
        raise LabError(f"{container.name}: cannot write {path}: {r.output.decode()}")


def _loop_nodes(container: Any, count: int = 64) -> None:
    """Device nodes for loop devices 0..count-1 (the engine copies only those it is given;
    loop-control hands out numbers the container has no node for)."""
    script = (f"for i in $(seq 0 {count - 1}); do [ -e /dev/loop$i ] || "
              "mknod -m 0660 /dev/loop$i b 7 $i; done")
    r = container.exec_run(["sh", "-c", script])
    if r.exit_code != 0:
        raise LabError(f"cannot make loop device nodes: {r.output.decode().strip()}")


def _ipam(zone: Zone) -> Any:
    from docker.types import IPAMConfig, IPAMPool

    return IPAMConfig(pool_configs=[IPAMPool(subnet=str(zone.subnet), gateway=zone.gateway)])


def host_addresses() -> list[tuple[str, str]]:
    """(interface, address/prefix) of every IPv4 address on this machine (``ip -j``)."""
    r = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True)
    if r.returncode:
        raise LabError(f"ip addr failed: {r.stderr.strip()}")
    return [(i["ifname"], f"{a['local']}/{a['prefixlen']}") for i in json.loads(r.stdout)
            for a in i.get("addr_info", []) if a.get("family") == "inet"]


def stray_interface(zone: Zone, addresses: list[tuple[str, str]]) -> str | None:
    """A problem when an interface of this machine already holds an address in ZONE's
    subnet: a bridge left by a container engine that was stopped without `airlock lab
    down`, or another lab. The lab's traffic would be routed to it."""
    import ipaddress

    for ifname, addr in addresses:
        if ipaddress.ip_interface(addr).network.overlaps(zone.subnet):
            return (f"interface {ifname} already holds {addr}, inside zone {zone.name}'s "
                    f"subnet {zone.subnet}: a bridge left by a container engine stopped "
                    "without `airlock lab down`, or another lab")
    return None


def _check_subnet_free(client: Any, zone: Zone) -> None:
    import ipaddress

    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            sub = cfg.get("Subnet")
            if sub and ipaddress.ip_network(sub, strict=False).overlaps(zone.subnet):
                raise LabError(f"zone {zone.name} subnet {zone.subnet} clashes with the "
                               f"engine's network {net.name} ({sub})",
                               hint="remove that network, or change the subnet in "
                                    "playbooks/group_vars/all/network.yml")
    problem = stray_interface(zone, host_addresses())  # another (or a dead) engine's
    if problem:
        raise LabError(problem, hint="take that lab down with the engine that made it "
                                     "(DOCKER_HOST=... airlock lab down), or, if its engine "
                                     "is gone, `ip link delete` that bridge")


def write_inventory(root: Path, topo: Topology, zones: dict[str, Zone],
                    state: LabState) -> Path:
    from installer.network import GROUPS

    services = services_address(topo, state)
    # every component group exists in every inventory, empty where the topology has none
    groups: dict[str, dict[str, Any]] = {g: {} for g in sorted(GROUPS)}
    hostvars = {}
    for h in topo.hosts:
        if not h.managed:
            continue  # the site's DNS and NTP, the bank's directory: not airlock's hosts
        info = state.hosts[h.name]
        hostvars[h.name] = {"ansible_host": info["mgmt_address"],
                            "airlock_zone": h.zone, "airlock_zone_address":
                            info["zone_address"],
                            # read through the engine, not over the network
                            "airlock_host_key_sha256": info["host_key_sha256"]}
        for g in (h.zone, *h.groups, *(["docker_hosts"] if h.runs_containers else [])):
            groups.setdefault(g, {}).setdefault("hosts", {})[h.name] = None
    doc = {"all": {
        "vars": {"ansible_user": USER, "ansible_become": True,
                 "ansible_ssh_private_key_file": state.key,
                 "ansible_python_interpreter": "/usr/bin/python3",
                 # plain ansible runs check the keys the lab pinned; airlock's own runs
                 # use the site's known_hosts, filled from airlock_host_key_sha256
                 "ansible_ssh_common_args":
                     f"-o UserKnownHostsFile={state_dir() / 'known_hosts'} "
                     "-o StrictHostKeyChecking=yes",
                 "airlock_lab": True,
                 # the lab's stand-in for the site's DNS and NTP servers
                 "airlock_dns_servers": [services],
                 "airlock_dns_search": [DOMAIN],
                 "airlock_ntp_servers": [services],
                 **_directory_vars(topo, state),
                 **({"airlock_gateway_vip": state.gateway_vip} if state.gateway_vip else {}),
                 # stand-in for the users' VDE desktops: the build machine, at its address
                 # on the gateway's zone network, so a browser here passes the firewall's
                 # vde rules to reach the gateway (and nothing else)
                 "firewall_external": {"vde": {
                     "subnet": f"{_vde_stand_in(topo, zones)}/32",
                     "purpose": "lab: the build machine plays the VDE desktops"}}},
        "hosts": hostvars,
        "children": groups}}
    path = root / "inventories" / "lab" / "hosts.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("# Written by `airlock lab up`; removed by `airlock lab down`. Not committed.\n"
            + yaml.safe_dump(doc, sort_keys=False))
    atomic_write(path, text.encode())
    return path


def gateway_vip(topo: Topology, zones: dict[str, Zone]) -> str:
    """The VIP of a topology with a gateway pair (its zone's GATEWAY_VIP_OCTET), else ''."""
    gateways = [h for h in topo.hosts if "gateway" in h.groups]
    return zones[gateways[0].zone].address(GATEWAY_VIP_OCTET) if len(gateways) > 1 else ""


def _directory_vars(topo: Topology, state: LabState) -> dict[str, Any]:
    """The lab's directory as a site's inventory names its own (group_vars/all/identity)."""
    found = [h for h in topo.hosts if h.directory]
    if not found or not state.directory:
        return {}
    return {"airlock_directory_servers": [state.hosts[found[0].name]["zone_address"]],
            "airlock_directory": dict(state.directory)}


def _vde_stand_in(topo: Topology, zones: dict[str, Zone]) -> str:
    gateway_zone = next((h.zone for h in topo.hosts if "gateway" in h.groups), MGMT)
    return zones[gateway_zone].gateway


def down(root: Path, quiet: bool = False) -> dict[str, Any]:
    from docker.errors import DockerException, NotFound

    d = state_dir()
    state = LabState.load(d)
    if state is None:
        return {"removed": False, "reason": "no lab is up"}
    eng = Engine(state.engine_host, state.engine_started_pid)
    removed = {"containers": 0, "networks": 0}
    try:
        client = eng.client()
        for cid in state.containers.values():
            try:
                client.containers.get(cid).remove(force=True, v=True)
                removed["containers"] += 1
            except NotFound:
                pass
        for nid in state.networks.values():
            try:
                client.networks.get(nid).remove()
                removed["networks"] += 1
            except NotFound:
                pass
    except DockerException as e:
        if not state.engine_started_pid:
            raise LabError(f"the lab's engine at {state.engine_host} does not answer ({e})",
                           hint="start it again, then airlock lab down") from None
    engine_mod.stop(eng)
    inv = Path(state.inventory) if state.inventory else root / "inventories/lab/hosts.yml"
    if inv.exists():
        inv.unlink()
    (d / "state.json").unlink()
    return {"removed": True, **removed, "engineStopped": bool(state.engine_started_pid)}


def status() -> dict[str, Any]:
    from docker.errors import DockerException, NotFound

    d = state_dir()
    state = LabState.load(d)
    if state is None:
        return {"up": False}
    hosts = {}
    try:
        client = Engine(state.engine_host).client()
        for name, cid in state.containers.items():
            try:
                hosts[name] = {**state.hosts.get(name, {}),
                               "state": client.containers.get(cid).status}
            except NotFound:
                hosts[name] = {**state.hosts.get(name, {}), "state": "missing"}
    except DockerException as e:
        return {"up": True, "engine": state.engine_host, "error": str(e)}
    return {"up": True, "topology": state.topology, "engine": state.engine_host,
            "image": state.image, "inventory": state.inventory, "key": state.key,
            "hosts": hosts}
