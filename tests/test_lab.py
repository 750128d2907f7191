"""The lab: real systemd hosts as containers on Debian's engine, one internal bridge
network per zone, SSH with a fresh key, an inventory Ansible uses. `lab down` removes
exactly what `lab up` made; a failure half-way leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, own_lab_turn, shared_lab_down
from installer.errors import LabError, UsageError
from installer.lab import lab as lab_mod
from installer.lab.topology import load_zones, network_file


@pytest.fixture(scope="module")
def client():
    import docker
    from docker.errors import DockerException

    try:
        c = docker.from_env(timeout=60)
        c.ping()
    except DockerException as e:
        pytest.fail(f"no container engine at DOCKER_HOST ({e}); tests/run.sh starts one",
                    pytrace=False)
    return c


def labelled(client) -> tuple[list, list]:
    f = {"label": lab_mod.LABEL}
    return client.containers.list(all=True, filters=f), client.networks.list(filters=f)


@pytest.fixture(scope="module", autouse=True)
def _own_lab_turn():  # type: ignore[no-untyped-def]
    """The module's labs (its own, the subnet clash's) while molecule's is not up."""
    with own_lab_turn():
        yield


def test_unknown_topology_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_LAB_DIR", str(tmp_path / "lab"))
    with pytest.raises(UsageError, match="no topology 'galaxy'; there are: poc, single"):
        lab_mod.up(REPO, "galaxy", say=lambda m: None)


def test_no_engine_and_no_dockerd_is_a_clear_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LabError, match=r"no container engine answers .* dockerd is not "
                                       "installed"):
        lab_mod.up(REPO, "single", say=lambda m: None)


def test_a_subnet_clash_half_way_leaves_nothing(client, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from docker.types import IPAMConfig, IPAMPool

    monkeypatch.setenv("AIRLOCK_LAB_DIR", str(tmp_path / "lab"))
    # someone else's network on the backend subnet: zones before it are made, then it fails
    other = client.networks.create("not-ours", internal=True, ipam=IPAMConfig(
        pool_configs=[IPAMPool(subnet="10.0.5.0/24")]))
    try:
        with pytest.raises(LabError, match=r"zone backend subnet 10\.0\.5\.0/24 clashes with the "
                                           "engine's network not-ours"):
            lab_mod.up(REPO, "poc", say=lambda m: None)
        containers, networks = labelled(client)
        assert containers == [] and networks == []
        assert not (tmp_path / "lab" / "state.json").exists()
        assert not (REPO / "inventories/lab/hosts.yml").exists()
        client.networks.get(other.id)  # untouched
    finally:
        other.remove()


@pytest.fixture(scope="module")
def lab(client, tmp_path_factory: pytest.TempPathFactory):
    shared_lab_down()  # the import/deploy modules' lab holds the same subnets
    d = tmp_path_factory.mktemp("lab")
    old = os.environ.get("AIRLOCK_LAB_DIR")
    os.environ["AIRLOCK_LAB_DIR"] = str(d)
    try:
        state = lab_mod.up(REPO, "poc", say=print)
        yield state
    finally:
        lab_mod.down(REPO)
        if old is None:
            os.environ.pop("AIRLOCK_LAB_DIR", None)
        else:
            os.environ["AIRLOCK_LAB_DIR"] = old


def test_hosts_run_systemd_in_their_zones(lab, client) -> None:
    zones = load_zones(network_file(REPO))
    st = lab_mod.status()
    assert st["up"] and set(st["hosts"]) == {"gw1", "gw2", "ide1", "ai1", "ai2", "repo1",
                                        "fw1", "log1", "ns1", "dir1"}
    for name, h in st["hosts"].items():
        assert h["state"] == "running"
        c = client.containers.get(lab.containers[name])
        out = c.exec_run(["systemctl", "is-system-running"]).output.decode().strip()
        assert out in ("running", "degraded"), out
        addrs = c.exec_run(["ip", "-4", "-o", "addr"]).output.decode()
        assert h["zone_address"] in addrs and h["mgmt_address"] in addrs
        import ipaddress

        assert ipaddress.ip_address(h["zone_address"]) in zones[h["zone"]].subnet
    nets = {n.attrs["Labels"]["dev.airlock.zone"]: n for n in labelled(client)[1]}
    for zone in ("mgmt", "dmz", "ide", "ai", "backend"):
        attrs = nets[zone].attrs
        assert attrs["Internal"] is True
        assert attrs["IPAM"]["Config"][0]["Subnet"] == str(zones[zone].subnet)


def test_ansible_reaches_every_host_over_ssh(lab) -> None:
    inv = REPO / "inventories/lab/hosts.yml"
    ansible = Path(sys.executable).parent / "ansible"
    proc = subprocess.run([str(ansible), "-i", str(inv), "all", "-m", "ansible.builtin.ping"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count('"ping": "pong"') == 8
    groups = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i",
                             str(inv), "--list"], capture_output=True, text=True, check=True)
    doc = json.loads(groups.stdout)
    assert doc["ide"]["hosts"] == ["ide1"] and "gw1" in doc["keycloak"]["hosts"]
    # the site's DNS and the bank's directory are stand-ins, not hosts airlock manages;
    # the directory is federated through the inventory's variables
    assert not {"ns1", "dir1"} & set(doc["_meta"]["hostvars"])
    directory = doc["_meta"]["hostvars"]["gw1"]["airlock_directory"]
    assert directory["url"] == "ldaps://dir1.lab.airlock.test:636"
    assert Path(directory["bind_password_file"]).stat().st_mode & 0o777 == 0o600


def test_ssh_key_is_private_and_hosts_have_their_own_host_keys(lab, client) -> None:
    assert oct(Path(lab.key).stat().st_mode & 0o777) == "0o600"
    keys = set()
    for cid in lab.containers.values():
        c = client.containers.get(cid)
        keys.add(c.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).output)
    assert len(keys) == 10


def test_second_lab_up_is_refused_while_one_is_up(lab) -> None:
    with pytest.raises(LabError, match="already up"):
        lab_mod.up(REPO, "single", say=lambda m: None)


def _run(playbook: str, *args: str, **kwargs: object) -> tuple[int, dict, str]:
    """Run a playbook through ansible-runner: (rc, per-host stats from its events, output)."""
    import tempfile

    import ansible_runner

    from installer.deploy.runner import strategy_env

    with tempfile.TemporaryDirectory() as pdd:
        r = ansible_runner.run(
            private_data_dir=pdd, playbook=str(REPO / "playbooks" / playbook),
            inventory=str(REPO / "inventories/lab/hosts.yml"), cmdline=" ".join(args) or None,
            envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                     # the pki role's CA goes to the lab's own folder, not the user's
                     "AIRLOCK_SITE_DIR": os.environ["AIRLOCK_LAB_DIR"] + "/site",
                     # the venv's ansible-playbook, whatever PATH the tests run with
                     "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                     # as airlock runs them (Mitogen); plain ansible-playbook runs the
                     # whole site in tests/test_deploy.py
                     **strategy_env()},
            quiet=True, **kwargs)
        stats = r.stats or {}
        hosts = set(stats.get("ok", {})) | set(stats.get("failures", {}))
        per_host = {h: {k: stats.get(k, {}).get(h, 0) for k in ("ok", "changed", "failures",
                                                               "dark")} for h in hosts}
        return r.rc, per_host, r.stdout.read()


def _playbook(*args: str, playbook: str = "firewall.yml", **kwargs: object) -> tuple[int, dict]:
    rc, per_host, out = _run(playbook, *args, **kwargs)
    if rc != 0:
        raise AssertionError(f"rc={rc} {per_host}\n" + out[-3000:])
    return rc, per_host


def _connects(address: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


def test_firewall_role_default_deny_idempotent_and_check_mode(lab, client) -> None:
    """A listener on ai1's LiteLLM port answers the controller before the firewall, and not
    after it (only the IDE zone may open it); a second run changes nothing (judged from
    Ansible's run stats); --check passes and changes nothing; SSH from mgmt still works."""
    import time

    ai1 = client.containers.get(lab.containers["ai1"])
    ai1.exec_run(["python3", "-m", "http.server", "4000"], detach=True)
    mgmt = lab.hosts["ai1"]["mgmt_address"]
    deadline = time.monotonic() + 20
    while not _connects(mgmt, 4000):
        assert time.monotonic() < deadline, "the test listener did not start"
        time.sleep(0.2)

    rc, stats = _playbook()
    assert rc == 0, stats
    assert all(s["changed"] > 0 and s["failures"] == 0 for s in stats.values()), stats
    assert not _connects(mgmt, 4000)  # refused now: 4000 only from 10.0.3.0/24
    rules = ai1.exec_run(["nft", "list", "table", "inet", "airlock"]).output.decode()
    assert "policy drop" in rules and "ip saddr 10.0.3.0/24 tcp dport 4000 accept" in rules

    rc, stats = _playbook()
    assert rc == 0 and all(s["changed"] == 0 for s in stats.values()), stats
    rc, stats = _playbook("--check", "--diff")
    assert rc == 0 and all(s["changed"] == 0 for s in stats.values()), stats
    assert _connects(mgmt, 22)


def test_common_role_converges_idempotent_and_clean_in_check_mode(lab, client) -> None:
    """Also: the sshd hardening wins over a site's drop-in that sshd reads first, and a
    setting nothing can win over stops the role with the setting named."""
    # no repo host serves packages in this module (test_import covers the sources)
    no_repo = {"common_repo_manage": False}
    c = client.containers.get(lab.containers["repo1"])
    # a cloud image's drop-in that turns password logins on (read after ours)
    c.exec_run(["sh", "-c", "echo 'PasswordAuthentication yes' > "
                            "/etc/ssh/sshd_config.d/50-cloud-init.conf"])
    rc, stats = _playbook(playbook="common.yml", extravars=no_repo)
    assert rc == 0 and all(s["failures"] == 0 and s["changed"] > 0 for s in stats.values())
    rc, stats = _playbook(playbook="common.yml", extravars=no_repo)
    assert all(s["changed"] == 0 for s in stats.values()), stats
    rc, stats = _playbook("--check", "--diff", playbook="common.yml", extravars=no_repo)
    assert all(s["changed"] == 0 for s in stats.values()), stats
    sshd = c.exec_run(["sshd", "-T"]).output.decode()
    assert "passwordauthentication no" in sshd and "x11forwarding no" in sshd
    assert "permitrootlogin no" in sshd
    assert "server 10.0.1.53 iburst" in c.exec_run(["cat", "/etc/chrony/chrony.conf"]
                                                    ).output.decode()
    assert c.exec_run(["test", "-d", "/var/log/journal"]).exit_code == 0
    assert c.exec_run(["hostname"]).output.decode().strip() == "repo1"
    assert _connects(lab.hosts["repo1"]["mgmt_address"], 22)  # still reachable


def test_a_hardening_another_drop_in_overrides_stops_the_role(lab, client) -> None:
    """A site's sshd_config that sets a value before it includes the drop-ins wins over
    any drop-in: the role says which setting, instead of reporting a hardening that is not
    in force."""
    c = client.containers.get(lab.containers["gw1"])
    c.exec_run(["sh", "-c", "cp /etc/ssh/sshd_config /root/sshd_config.orig && "
                            "sed -i '1i X11Forwarding yes' /etc/ssh/sshd_config"])
    try:
        rc, _, out = _run("common.yml", limit="gw1", extravars={"common_repo_manage": False})
        assert rc != 0 and "sshd's effective X11Forwarding is not no" in out, out[-3000:]
    finally:
        c.exec_run(["sh", "-c", "mv /root/sshd_config.orig /etc/ssh/sshd_config"])


def test_hosts_resolve_and_keep_time_through_the_sites_servers_only(lab, client) -> None:
    """After the firewall and common roles: every host resolves the lab's names through
    the site's DNS (ns1), nothing outside the site, and chronyd is synchronised with the
    site's NTP server (without setting the shared clock)."""
    import time

    for name in ("gw1", "ide1", "ai1", "repo1"):
        c = client.containers.get(lab.containers[name])
        assert "nameserver 10.0.1.53" in c.exec_run(["cat", "/etc/resolv.conf"]).output.decode()
        other, address = ("gw1", "10.0.2.10") if name == "repo1" else ("repo1", "10.0.5.10")
        got = c.exec_run(["getent", "hosts", other]).output.decode().split()
        assert got[:1] == [address], (name, got)  # the other host's zone address
        assert c.exec_run(["getent", "hosts", "deb.debian.org"]).exit_code != 0
        tracking = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tracking = c.exec_run(["chronyc", "-n", "tracking"]).output.decode()
            if "10.0.1.53" in tracking and "Leap status     : Normal" in tracking:
                break
            time.sleep(2)
        assert "10.0.1.53" in tracking and "Leap status     : Normal" in tracking, tracking
    # DNS over TCP (long answers) passes the firewall too
    gw1 = client.containers.get(lab.containers["gw1"])
    probe = gw1.exec_run(["python3", "-c", PROBER, "10.0.1.53:53"])
    assert json.loads(probe.output) == {"10.0.1.53:53": True}


def _inventory_copy(name: str, pins: dict[str, str | None]) -> Path:
    """The lab inventory beside the original (so its group_vars apply), with each host's
    airlock_host_key_sha256 replaced (None: removed)."""
    import yaml

    doc = yaml.safe_load((REPO / "inventories/lab/hosts.yml").read_text())
    for host, pin in pins.items():
        doc["all"]["hosts"][host].pop("airlock_host_key_sha256")
        if pin:
            doc["all"]["hosts"][host]["airlock_host_key_sha256"] = pin
    path = REPO / "inventories/lab" / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _airlock(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "installer.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_host_keys_are_recorded_only_when_vouched_for_and_a_changed_one_is_refused(
        lab, client, tmp_path: Path) -> None:
    site, site2 = tmp_path / "site", tmp_path / "site2"
    known = site / "known_hosts"
    gw1 = lab.hosts["gw1"]
    fp = gw1["host_key_sha256"]
    bare = _inventory_copy("test-nopin", {"gw1": None})
    wrong = _inventory_copy("test-wrongpin", {"gw1": lab.hosts["ide1"]["host_key_sha256"]})
    c = client.containers.get(lab.containers["gw1"])
    try:
        # unknown, and the operator says no (or nobody is asked): refused, nothing recorded
        r = _airlock("hosts", "trust", "-i", str(bare), "--site", str(site), "--limit", "gw1",
                     stdin="n\n")
        assert r.returncode == 9 and fp in r.stdout + r.stderr, r.stdout + r.stderr
        assert "nobody confirmed" in r.stderr
        assert not known.exists() or gw1["mgmt_address"] not in known.read_text()
        r = _airlock("hosts", "trust", "-i", str(bare), "--site", str(site), "--limit", "gw1",
                     "--json")
        assert r.returncode == 9 and "nobody confirmed" in r.stdout, r.stdout + r.stderr
        assert not known.exists() or gw1["mgmt_address"] not in known.read_text()
        # the inventory's fingerprint is another host's: refused, nothing recorded
        r = _airlock("hosts", "trust", "-i", str(wrong), "--site", str(site2), "--limit",
                     "gw1")
        assert r.returncode == 9 and "not the" in r.stderr and fp in r.stderr, r.stderr
        assert not (site2 / "known_hosts").exists() or \
            gw1["mgmt_address"] not in (site2 / "known_hosts").read_text()
        # the operator compares and says yes: recorded, mode 0600, the host's real key
        r = _airlock("hosts", "trust", "-i", str(bare), "--site", str(site), "--limit", "gw1",
                     stdin="y\n")
        assert r.returncode == 0, r.stdout + r.stderr
        pub = c.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).output.decode().split()
        assert f"{gw1['mgmt_address']} ssh-ed25519 {pub[1]}" in known.read_text()
        assert oct(known.stat().st_mode & 0o777) == "0o600"
        line = f"{gw1['mgmt_address']} ssh-ed25519 {pub[1]}"

        # the host's key is replaced: every command refuses it, naming both fingerprints
        c.exec_run(["sh", "-c", "mkdir -p /root/keys && cp -a /etc/ssh/ssh_host_* /root/keys/ "
                                "&& rm /etc/ssh/ssh_host_* && ssh-keygen -A -q "
                                "&& systemctl restart ssh"])
        new_pub = c.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).output.decode()
        new_fp = lab_mod.fingerprint(new_pub)
        assert new_fp != fp
        for cmd in (["hosts", "trust", "-i", str(bare), "--limit", "gw1"],
                    ["deploy", "-i", str(bare)], ["preflight", "-i", str(bare)]):
            r = _airlock(*cmd, "--site", str(site), stdin="y\n" * 5)
            text = r.stdout + r.stderr
            assert r.returncode == 9, (cmd, text)
            assert "CHANGED" in text and fp in text and new_fp in text, (cmd, text)
        # gw1's record is untouched (the other hosts' keys, pinned, were recorded)
        gw1_lines = [x for x in known.read_text().splitlines()
                     if x.startswith(gw1["mgmt_address"] + " ")]
        assert gw1_lines == [line], gw1_lines
        # the documented way on: forget it, then vouch for the new key
        assert _airlock("hosts", "forget", "-i", str(bare), "--limit", "gw1", "--site",
                        str(site)).returncode == 0
        r = _airlock("hosts", "trust", "-i", str(bare), "--site", str(site), "--limit", "gw1",
                     stdin="y\n")
        assert r.returncode == 0 and new_pub.split()[1] in known.read_text()
    finally:
        c.exec_run(["sh", "-c", "[ -d /root/keys ] && cp -a /root/keys/. /etc/ssh/ && "
                                "systemctl restart ssh; rm -rf /root/keys"])
        bare.unlink(missing_ok=True)
        wrong.unlink(missing_ok=True)


def test_vlan_configuration_is_refused_on_a_kernel_without_8021q(lab) -> None:
    """LAB.md: this kernel has no VLAN support; the role says so instead of writing
    interfaces the host cannot bring up."""
    rc, _, out = _run("firewall.yml", limit="ide1", extravars={"firewall_vlan_enabled": True})
    assert rc != 0 and "the kernel has no 802.1Q support" in out


# The port matrix the platform needs (seed 000 §4.1, plus the offline repository). Written
# here, not read from network.yml: removing a flow from the data file must fail its test.
# A range is probed at its first port (8100: the first of the code-server users' ports).
EXPECTED_FLOWS = [
    ("gateway", "keycloak", 8443), ("gateway", "gateway", 443), ("gateway", "ide", 8100),
    ("ide", "llm_gateway", 4000),
    ("llm_gateway", "chat_gpu", 8000), ("llm_gateway", "completion_gpu", 8000),
    ("ide", "gitlab", 443), ("all", "repo", 443), ("all", "repo", 5000), ("all", "logging", 9200),
    # the bank's directory (the lab's slapd on dir1 answers on 636 itself)
    ("keycloak", "directory", 636),
    # Prometheus: every host's node exporter, and the endpoints it probes
    ("monitoring", "all", 9100), ("monitoring", "gateway", 443), ("monitoring", "keycloak", 8443),
    ("monitoring", "llm_gateway", 4000), ("monitoring", "chat_gpu", 8000),
    ("monitoring", "completion_gpu", 8000), ("monitoring", "ide", 8100),
    # backups: restic over SFTP from the hosts that keep data (sshd listens on every address:
    # every other zone pair on 22 must be refused)
    ("ide", "backup", 22), ("keycloak", "backup", 22), ("gitlab", "backup", 22),
]

LISTENER = """
import errno, selectors, socket, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[2:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((sys.argv[1], port))
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        continue  # something of the test's already listens there
    s.listen(64)
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.close()
"""

PROBER = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
targets = [t.rsplit(":", 1) for t in sys.argv[1:]]
def probe(t):
    try:
        with socket.create_connection((t[0], int(t[1])), timeout=1.5):
            return True
    except OSError:
        return False
with ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(dict(zip(sys.argv[1:], pool.map(probe, targets)))))
"""


def test_every_flow_connects_and_every_other_pair_is_refused(lab, client) -> None:
    """After the firewall playbook: a real TCP connection from a host of the source to a
    listener on the destination's zone address for every flow of the matrix (through the
    lab's inter-zone router, as through the site's firewall), and refusal for every other
    host pair on those ports."""
    hosts = {n: h for n, h in lab.hosts.items()
             if "router" not in h["groups"] and not h.get("site_services")}

    def members(name: str) -> set[str]:
        if name == "directory":  # a site service, here the lab's stand-in on dir1
            return {n for n, h in hosts.items() if h.get("directory")}
        if name == "all":
            return {n for n, h in hosts.items() if not h.get("directory")}
        return {n for n, h in hosts.items() if name in h["groups"] or h["zone"] == name}

    allowed, skipped = set(), []
    for src, dst, port in EXPECTED_FLOWS:
        if not members(dst):
            skipped.append(f"{src}->{dst}:{port} (no {dst} host in this topology)")
        allowed |= {(a, b, port) for a in members(src) for b in members(dst) if a != b}
    assert skipped == []
    ports = sorted({p for _, _, p in EXPECTED_FLOWS})
    for name, h in hosts.items():
        client.containers.get(lab.containers[name]).exec_run(
            ["python3", "-c", LISTENER, h["zone_address"], *map(str, ports)], detach=True)
    import time

    time.sleep(1)
    got = {}
    for a in hosts:
        targets = [f"{hosts[b]['zone_address']}:{p}" for b in hosts if b != a for p in ports]
        r = client.containers.get(lab.containers[a]).exec_run(["python3", "-c", PROBER,
                                                               *targets])
        assert r.exit_code == 0, r.output.decode()
        for target, ok in json.loads(r.output).items():
            addr, port = target.rsplit(":", 1)
            b = next(n for n, h in hosts.items() if h["zone_address"] == addr)
            got[(a, b, int(port))] = ok
    wrong_refused = sorted(k for k in allowed if not got[k])
    wrong_open = sorted(k for k, ok in got.items() if ok and k not in allowed)
    assert wrong_refused == [], f"flows of the matrix that did not connect: {wrong_refused}"
    assert wrong_open == [], f"connections the matrix does not allow: {wrong_open}"
    assert sum(got.values()) == len(allowed) >= 8


def test_a_first_bundle_without_the_repo_hosts_packages_is_refused(lab, client,
                                                                    tmp_path: Path) -> None:
    """The sample bundle carries no Debian packages: on a repo host that has none of its
    own yet, import stops before anything is copied, naming what is missing and which
    bundles can bootstrap a repo host."""
    env = {"PP": "lab-test-passphrase"}

    def airlock(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "installer.cli", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(REPO), **env})

    assert airlock("bundle", "sample-inputs").returncode == 0
    bundle, keys = tmp_path / "sample", tmp_path / "keys"
    for args in (("bundle", "build", str(REPO / "bundles/sample.yaml"), "-o", str(bundle),
                  "--locked"),
                 ("keys", "init", str(keys), "--signers", "1", "--threshold", "1",
                  "--passphrase-env", "PP"),
                 ("bundle", "sign", str(bundle), "--key", str(keys / "signer-1.key"),
                  "--passphrase-env", "PP")):
        r = airlock(*args)
        assert r.returncode == 0, (args, r.stdout + r.stderr)
    r = airlock("bundle", "import", str(bundle), "-i", str(REPO / "inventories/lab/hosts.yml"),
                "--trust", str(keys / "root.json"), "--site", str(tmp_path / "site"), "--json")
    assert r.returncode == 9, r.stdout + r.stderr
    error = json.loads(r.stdout)["error"]
    assert "does not carry nginx, docker-registry, skopeo" in error and "nothing was copied" \
        in error, error
    assert "bundles/poc.yaml or bundles/lab.yaml" in json.loads(r.stdout)["hint"]
    repo1 = client.containers.get(lab.containers["repo1"])
    assert repo1.exec_run(["test", "-e", "/srv/airlock/incoming"]).exit_code != 0


def test_lab_down_removes_exactly_what_up_made(lab, client) -> None:
    from docker.types import IPAMConfig, IPAMPool

    bystander = client.networks.create("bystander", ipam=IPAMConfig(
        pool_configs=[IPAMPool(subnet="10.99.0.0/24")]))
    try:
        result = lab_mod.down(REPO)
        assert result["removed"] and result["containers"] == 10 and result["networks"] == 6
        assert labelled(client) == ([], [])
        assert not (REPO / "inventories/lab/hosts.yml").exists()
        client.networks.get(bystander.id)
        assert lab_mod.status() == {"up": False}
        assert lab_mod.down(REPO) == {"removed": False, "reason": "no lab is up"}
    finally:
        bystander.remove()



def test_a_stray_bridge_on_a_zone_subnet_is_named() -> None:
    """A bridge a stopped engine left behind (same subnet as a zone) would take the lab's
    traffic: lab up names it and stops, before any network is made."""
    from installer.lab.lab import host_addresses, stray_interface
    from installer.lab.topology import load_zones, network_file

    zone = load_zones(network_file(REPO))["dmz"]
    assert stray_interface(zone, [("eth0", "192.0.2.2/24"), ("lo", "127.0.0.1/8")]) is None
    got = stray_interface(zone, [("eth0", "192.0.2.2/24"), ("br-8117a837d639", "10.0.2.1/24")])
    assert got and "br-8117a837d639 already holds 10.0.2.1/24" in got and "dmz" in got
    assert ("lo", "127.0.0.1/8") in host_addresses()  # read from this machine's ip -j
