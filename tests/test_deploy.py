"""Deploy, preflight, status, the audit log and upgrades, on the lab `airlock demo` made
(conftest's `demo`; after tests/test_import.py, which leaves release lab-2 served, or on
its own, when conftest's lab_v2 imports it).

The demo's own deploy is the first run; here: a deploy of the newer release changes only
the release record (nothing else: the site is idempotent); a second deploy is refused
while one holds the lock; a run stopped by SIGTERM and one killed by SIGKILL are
finished by running again; preflight names the host whose disk is too small and the host
whose port is taken; the audit log catches an edited line; a delta bundle upgrade copies
only the new bytes and changes only what changed; an older bundle is refused.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AIRLOCK, REPO, lab_bundle, lab_ssh, lab_v2, run_airlock
from gateway import gateway_address

HOSTS = {"gw1", "gw2", "ide1", "ai1", "ai2", "repo1", "fw1", "log1"}
RECORD_TASK = "Write /etc/airlock/deployment.json"


def airlock_json(demo: dict, *args: str, timeout: float = 900, site: Path | None = None
                 ) -> tuple[int, dict, str]:
    proc = run_airlock(*args, "-i", str(demo["inventory"]), "--site", str(site or demo["site"]),
                       "--json", timeout=timeout)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = {}
    return proc.returncode, doc, proc.stdout[-3000:] + proc.stderr[-3000:]


def served_version(demo: dict) -> int:
    r = lab_ssh(demo, "repo1", "cat /srv/airlock/current/.airlock-import.json")
    return int(json.loads(r.stdout)["version"])


def test_demo_deployed_and_recorded(demo) -> None:
    records = [json.loads(x) for x in (demo["site"] / "audit.jsonl").read_text().splitlines()]
    deploys = [r for r in records if r["command"] == "deploy"]
    assert [r["result"] for r in deploys][:2] == ["started", "ok"]
    ok = deploys[1]
    assert ok["phase"] == "poc" and ok["changed"] > 0 and set(ok["stats"]) == HOSTS
    assert ok["inventory"]["digest"].startswith("sha256:")
    assert ok["bundle"]["name"] == "lab" and ok["bundle"]["version"] == 1


def test_new_release_deploys_only_its_record_then_nothing(demo) -> None:
    lab_v2(demo)
    assert served_version(demo) == 2
    rc, doc, out = airlock_json(demo, "deploy", "--phase", "poc")
    assert rc == 0, out
    # v2 carries no new packages for these hosts: only the release record moves (and so
    # every other task of site.yml ran and changed nothing: the whole site is idempotent;
    # the plain-ansible test next checks it again in --check mode)
    assert doc["run"]["changedTasks"] == {h: [RECORD_TASK] for h in HOSTS}, doc["run"]
    assert set(doc["run"]["stats"]) == HOSTS, doc["run"]
    for h in HOSTS:
        got = json.loads(lab_ssh(demo, h, "cat /etc/airlock/deployment.json").stdout)
        assert (got["name"], got["version"], got["phase"]) == ("lab", 2, "poc")


def test_plain_ansible_playbook_runs_the_same_playbooks(demo) -> None:
    """No lock-in: site.yml in --check mode with plain ansible-playbook reports nothing
    to change (it reads the same inventory and the same site folder)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "AIRLOCK_SITE_DIR": str(demo["site"]),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}  # the stats, as data
    bindir = Path(sys.executable).parent
    proc = subprocess.run([str(bindir / "ansible-playbook"), "-i", str(demo["inventory"]),
                           str(REPO / "playbooks" / "site.yml"), "--check"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    stats = json.loads(proc.stdout)["stats"]
    assert set(stats) == HOSTS
    assert all(s["changed"] == 0 and s["failures"] == 0 for s in stats.values()), stats


def test_wrong_phase_is_refused(demo) -> None:
    rc, doc, out = airlock_json(demo, "deploy", "--phase", "production")
    assert rc == 2 and "is a poc inventory, not production" in doc["error"], out


def test_status_shows_release_and_last_change(demo) -> None:
    # fw1 again, alone: a run that changes nothing there (its last change stays the last)
    rc, doc, out = airlock_json(demo, "deploy", "--limit", "fw1")
    assert rc == 0 and set(doc["run"]["stats"]) == {"fw1"}, out
    assert doc["run"]["changed"] == 0, doc["run"]
    rc, doc, out = airlock_json(demo, "status")
    assert rc == 0, out
    assert doc["served"]["version"] == 2
    rows = {r["host"]: r for r in doc["hosts"]}
    assert set(rows) == HOSTS
    for h, r in rows.items():
        assert r["reachable"] and r["current"] and r["deployed"]["version"] == 2, r
        assert r["lastRun"]["result"] == "ok", r
        assert r["lastChange"]["tasks"] == [RECORD_TASK], (h, r)
        same = r["lastRun"]["ident"] == r["lastChange"]["ident"]
        assert (r["lastRun"]["changed"], same) == ((0, False) if h == "fw1" else (1, True)), r


def test_second_deploy_refused_while_one_holds_the_lock(demo) -> None:
    from installer.site import InventoryLock

    with InventoryLock(demo["site"], demo["inventory"], "deploy"):
        rc, doc, out = airlock_json(demo, "deploy", timeout=120)
    assert rc == 11, out
    assert f"pid {os.getpid()}" in doc["error"] and "already running" in doc["error"]


def _start_deploy(demo: dict, *args: str) -> tuple[subprocess.Popen, Path]:
    logs = demo["site"] / "logs"
    before = set(logs.iterdir())
    proc = subprocess.Popen([*AIRLOCK, "deploy", "-i", str(demo["inventory"]), "--site",
                             str(demo["site"]), "--json", *args], env={**os.environ,
                            "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # half-way: tasks have run on the hosts
        new = [p for p in set(logs.iterdir()) - before if (p / "job_events").is_dir()]
        if new and len(list((new[0] / "job_events").iterdir())) > 60:
            return proc, new[0]
        if proc.poll() is not None:
            pytest.fail(f"deploy ended early: {proc.communicate()}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail("the deploy made no progress in 120 s")


def _playbooks_of(run_dir: Path) -> list[int]:
    """ansible-playbook processes, its workers included, still running for that run
    (ansible-runner gives each the run's artifact folder in its environment)."""
    pids = []
    mark = f"AWX_ISOLATED_DATA_DIR={run_dir}\0".encode()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if mark in (p / "environ").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


def _gone(run_dir: Path, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while _playbooks_of(run_dir) and time.monotonic() < deadline:
        time.sleep(1)
    return not _playbooks_of(run_dir)


def test_stopped_and_killed_deploys_finish_when_run_again(demo) -> None:
    # give the run work to do: two hosts' release records and repo1's pip.conf are gone
    # (two hosts, --limit: each site.yml run on all five costs minutes of CI)
    hosts = {"repo1", "fw1"}
    limit = ("--limit", ",".join(sorted(hosts)))
    for h in hosts:
        assert lab_ssh(demo, h, "rm -f /etc/airlock/deployment.json").returncode == 0
    assert lab_ssh(demo, "repo1", "rm -f /etc/pip.conf").returncode == 0

    proc, run_dir = _start_deploy(demo, *limit)
    proc.send_signal(signal.SIGTERM)  # what `kill PID` or a stopping service manager does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "stopped by signal 15" in json.loads(out)["error"]
    records = [json.loads(x) for x in (demo["site"] / "audit.jsonl").read_text().splitlines()]
    assert records[-1]["result"] == "canceled" and records[-1]["command"] == "deploy"
    assert _gone(run_dir, 10), "ansible-playbook or a worker outlived the stopped deploy"

    proc, run_dir = _start_deploy(demo, *limit)
    os.killpg(proc.pid, signal.SIGKILL)  # the controller dies outright
    proc.communicate(timeout=60)
    # its ansible-playbook gets SIGINT as its parent dies, and stops its workers
    assert _gone(run_dir), "ansible-playbook or a worker outlived the killed deploy"
    records = [json.loads(x) for x in (demo["site"] / "audit.jsonl").read_text().splitlines()]
    assert records[-1]["result"] == "started"  # the killed run shows as never finished

    rc, doc, out = airlock_json(demo, "deploy", *limit)
    assert rc == 0, out
    changed = doc["run"]["changedTasks"]
    # the SIGKILLed run may have put some of it back already; what is left, this one did
    assert set(changed) <= hosts and all(set(t) <= {RECORD_TASK, "Point pip at the repo host"}
                                         for t in changed.values()), changed
    for h in HOSTS:
        assert lab_ssh(demo, h, "test -s /etc/airlock/deployment.json").returncode == 0, h
    assert lab_ssh(demo, "repo1", "grep -q repo1 /etc/pip.conf").returncode == 0
    # (that nothing is left to do after it is the next deploy's changed=0, in the tests
    # below: each full site.yml run costs a minute of CI)


def test_preflight_names_the_host_that_is_short(demo) -> None:
    rc, doc, out = airlock_json(demo, "preflight")
    assert rc == 0 and doc["ok"], out
    assert all(h["cpus"] >= 1 and h["os"] == "debian 12" for h in doc["hosts"])
    # ide1's disk for user homes (/srv/code-server) is 16 MiB; the lab asks for 1 GiB
    mount = "mkdir -p /srv/code-server && mount -t tmpfs -o size=16m tmpfs /srv/code-server"
    assert lab_ssh(demo, "ide1", mount).returncode == 0
    try:
        rc, doc, out = airlock_json(demo, "preflight")
    finally:
        lab_ssh(demo, "ide1", "umount /srv/code-server")
    assert rc == 9 and doc["failed"] == ["ide1"], out
    ide1 = next(h for h in doc["hosts"] if h["host"] == "ide1")
    assert any("free at /srv/code-server" in p and "1.0 GiB needed" in p
               for p in ide1["problems"]), ide1
    # a host never deployed whose ports are taken by something else
    assert lab_ssh(demo, "repo1", "mv /etc/airlock/deployment.json /root/dep.json"
                   ).returncode == 0
    try:
        rc, doc, out = airlock_json(demo, "preflight")
    finally:
        lab_ssh(demo, "repo1", "mv /root/dep.json /etc/airlock/deployment.json")
    assert rc == 9 and doc["failed"] == ["repo1"], out
    repo1 = next(h for h in doc["hosts"] if h["host"] == "repo1")
    assert any("port(s) 443, 5000 already in use" in p for p in repo1["problems"]), repo1


def test_audit_verify_catches_an_edited_line(demo, tmp_path: Path) -> None:
    proc = run_airlock("audit", "verify", "--site", str(demo["site"]), "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["records"] >= 8, proc.stdout
    copy = tmp_path / "site"
    copy.mkdir()
    for name in ("audit.jsonl", "audit.head"):
        (copy / name).write_bytes((demo["site"] / name).read_bytes())
    lines = (copy / "audit.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"result":"started"', '"result":"ok"', 1)
    assert lines[1] != (demo["site"] / "audit.jsonl").read_text().splitlines()[1]
    (copy / "audit.jsonl").write_text("\n".join(lines) + "\n")
    proc = run_airlock("audit", "verify", "--site", str(copy), "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 12, proc.stdout
    assert doc["problems"] == [{"file": "line 2", "problem": "record seq 2 was edited: its "
                                "hash does not match its content"}]


def _v3(demo: dict, tmp_path: Path) -> Path:
    """lab v3 = v2 (test_import's, with its 3 MiB notes) plus one small new file."""
    notes = demo["dir"] / "release-notes.bin"
    lab_v2(demo)
    extra = tmp_path / "changelog.txt"
    extra.write_text("v3: one new file\n")
    return lab_bundle(demo, 3, {"notes": notes, "changelog": extra}, tmp_path / "v3",
                      ("signer-2", "signer-3"))


def test_delta_upgrade_copies_and_changes_only_what_changed(demo, tmp_path: Path) -> None:
    v3 = _v3(demo, tmp_path)
    delta = tmp_path / "v3-delta"
    proc = run_airlock("bundle", "delta", str(v3), "--base", str(demo["dir"] / "v2"), "-o",
                       str(delta), "--json", check=True)
    made = json.loads(proc.stdout)
    assert made["omittedFiles"] >= 3 and made["omittedBytes"] >= 3 << 20, made
    assert made["bytes"] < 1 << 20  # the notes are not carried again
    # a reviewer's stock tools still check every byte present against the signed list
    # (a delta is the signed bundle itself, less blobs the base has)
    assert (delta / "SHA256SUMS").read_bytes() == (v3 / "SHA256SUMS").read_bytes()
    proc = run_airlock("bundle", "verify", str(delta), "--trust", str(demo["trust"]),
                       "--state", str(tmp_path / "state"), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["delta"]["omittedFiles"] == \
        made["omittedFiles"], proc.stdout

    # a delta whose base the host does not have is refused before anything is copied
    wrong = tmp_path / "wrong-base"
    subprocess.run(["cp", "-a", str(delta), str(wrong)], check=True)
    d = json.loads((wrong / "delta.json").read_text())
    d["base"]["version"] = 9
    (wrong / "delta.json").write_text(json.dumps(d))
    rc, doc, out = airlock_json(demo, "upgrade", "--bundle", str(wrong), "--trust",
                                str(demo["trust"]))
    assert rc == 9 and "needs its base lab v9" in doc["error"], out
    assert served_version(demo) == 2

    # a staged rollout: the repo host and one client (new_release above runs every host),
    # with the keycloak host its workspace list comes from (ide.yml refuses to run without)
    rc, doc, out = airlock_json(demo, "upgrade", "--bundle", str(delta), "--trust",
                                str(demo["trust"]), "--limit", "repo1,ide1,gw1")
    assert rc == 0, out
    imp = doc["import"]
    assert imp["filesFromBase"] == made["omittedFiles"], imp
    assert imp["bytesCopied"] < 1 << 20, imp  # only the new blobs and the served tree
    assert served_version(demo) == 3
    check = lab_ssh(demo, "repo1", "cd /srv/airlock/releases/lab-3/bundle && "
                                   "sha256sum -c --quiet SHA256SUMS && test ! -e delta.json")
    assert check.returncode == 0, check.stdout + check.stderr
    r = lab_ssh(demo, "ide1", "python3 -c \"import urllib.request;print(urllib.request."
                              "urlopen('https://repo1/files/changelog/changelog.txt').read())\"")
    assert "one new file" in r.stdout, r.stdout + r.stderr
    assert doc["run"]["changedTasks"] == {h: [RECORD_TASK] for h in ("repo1", "ide1", "gw1")}, \
        doc["run"]

    # the older full bundle is refused: by the trust state, before anything moves
    rc, doc, out = airlock_json(demo, "upgrade", "--bundle", str(demo["dir"] / "v2"),
                                "--trust", str(demo["trust"]))
    assert rc == 5 and "rollback" in out, out
    assert served_version(demo) == 3


def _gateway(demo: dict) -> str:
    return gateway_address(demo)


def _serials(demo: dict) -> dict[str, int]:
    """The serials of the certificates the gateway and the repo host serve, as their
    clients see them: the gateway from here (the lab's VDE stand-in), the repo host from
    ide1 (the matrix lets only the platform's hosts reach it)."""
    import ssl

    from cryptography import x509

    pem = ssl.get_server_certificate((_gateway(demo), 443), timeout=10)
    r = lab_ssh(demo, "ide1", "echo | openssl s_client -connect repo1:443 -servername repo1 "
                              "2>/dev/null | openssl x509 -noout -serial")
    assert r.returncode == 0 and r.stdout.startswith("serial="), r.stdout + r.stderr
    return {"gw1": x509.load_pem_x509_certificate(pem.encode()).serial_number,
            "repo1": int(r.stdout.strip().split("=", 1)[1], 16)}


PROBE = """
import os, ssl, sys, time, urllib.error, urllib.request
ok = failed = 0
errors = []
ctx = ssl.create_default_context(cafile=sys.argv[2] if len(sys.argv) > 2 else None)
for _ in range(3000):  # bounded; stops when the test says so
    if os.path.exists(sys.argv[1]):
        break
    try:
        urllib.request.urlopen(sys.argv[3] if len(sys.argv) > 3 else
                               "https://repo1/release.json", timeout=5, context=ctx).read()
        ok += 1
    except urllib.error.HTTPError:
        ok += 1  # an answer, over TLS checked against the site CA
    except Exception as e:  # every other failure counts
        failed += 1
        errors.append(repr(e)[:200])
    time.sleep(0.1)
print(ok, failed, errors[:3])
"""


def test_a_forced_renewal_is_served_with_no_failed_request(demo, tmp_path: Path) -> None:
    """Every service with a site certificate reloads when it is renewed: the gateway and
    the repo host (site.yml limited to them, the hosts with TLS services) serve new
    serials, and requests made all through the run (TLS checked against the site CA; to the
    gateway from here, to the repo host from ide1) never fail."""
    from installer.deploy.runner import run_playbook

    before = _serials(demo)
    stop_here, stop_there = tmp_path / "stop", "/tmp/airlock-probe-stop"
    lab_ssh(demo, "ide1", f"rm -f {stop_there}")
    probes = [
        subprocess.Popen([sys.executable, "-c", PROBE, str(stop_here),
                          str(demo["site"] / "pki" / "ca.crt"), f"https://{_gateway(demo)}/"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        subprocess.Popen(
            ["ssh", "-i", demo["key"], "-o", "StrictHostKeyChecking=yes", "-o",
             f"UserKnownHostsFile={demo['site'] / 'known_hosts'}", "-o", "BatchMode=yes",
             f"airlock@{demo['state']['hosts']['ide1']['mgmt_address']}",
             f"python3 -c {shlex.quote(PROBE)} {stop_there}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    try:
        time.sleep(2)
        run = run_playbook(REPO, "site.yml", demo["inventory"], site=demo["site"],
                           log_dir=demo["dir"] / "renew-logs", live=False, limit="gw1,repo1",
                           raise_on_failure=False, extravars={"pki_renew_days": 3650})
        time.sleep(2)
    finally:
        stop_here.touch()
        lab_ssh(demo, "ide1", f"touch {stop_there}")
        results = [p.communicate(timeout=120) for p in probes]
    assert run.ok, run.failures
    changed = run.changed_tasks
    assert "Issue the certificate" in changed["gw1"] and "Issue the certificate" in \
        changed["repo1"], changed
    after = _serials(demo)
    assert all(after[h] != before[h] for h in after), (before, after)
    for out, err in results:
        ok, failed = map(int, out.split()[:2])
        assert ok > 20 and failed == 0, out + err
    # that the new certificates are far from renewal (the next deploy changes nothing) is
    # the last deploy of the root-of-trust test below, which runs after this one


def test_the_sites_root_of_trust_never_changes_by_accident(demo, tmp_path: Path) -> None:
    """A deploy with the wrong site folder (no CA in it) makes no new CA; a host that
    trusts another CA stops the whole run before any change, naming both fingerprints;
    `deploy --replace-trusted-ca` is the documented repair."""
    ca = (demo["site"] / "pki" / "ca.crt").read_text()
    trusted = "/usr/local/share/ca-certificates/airlock/airlock-site-ca.crt"
    # the mistyped --site: an empty folder
    wrong_site = tmp_path / "not-the-site"
    rc, doc, out = airlock_json(demo, "deploy", site=wrong_site)
    assert rc == 10 and "the controller has no site CA" in doc["error"], out
    assert not (wrong_site / "pki" / "ca.crt").exists()
    for h in HOSTS:
        assert lab_ssh(demo, h, f"cat {trusted}").stdout == ca, h

    # ide1 trusts another CA now (damaged trust)
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(other / "k"),
                    "-out", str(other / "ca.crt"), "-subj", "/CN=someone else's CA",
                    "-days", "30"], check=True, capture_output=True)
    assert lab_ssh(demo, "ide1", f"cat > {trusted}", data=(other / "ca.crt").read_bytes()
                   ).returncode == 0
    rc, doc, out = airlock_json(demo, "deploy")
    assert rc == 10 and "refusing to change the site's root of trust" in doc["error"], out
    assert "ide1 trusts the site CA" in doc["error"], out
    records = [json.loads(x) for x in (demo["site"] / "audit.jsonl").read_text().splitlines()]
    assert records[-1]["result"] == "failed" and records[-1]["changed"] == 0, records[-1]
    assert lab_ssh(demo, "ide1", f"cat {trusted}").stdout.startswith("-----BEGIN")
    assert lab_ssh(demo, "ide1", f"cat {trusted}").stdout != ca  # nothing was changed

    # (the repair on the damaged host, with the keycloak host its workspaces need)
    rc, doc, out = airlock_json(demo, "deploy", "--replace-trusted-ca", "--limit", "ide1,gw1")
    assert rc == 0, out
    assert lab_ssh(demo, "ide1", f"cat {trusted}").stdout == ca
    # the repair puts back the one host's trust and nothing else (that the next run then
    # changes nothing is the idempotence the tests above check: a run costs CI minutes)
    assert doc["run"]["changedTasks"] == {"ide1": ["Trust the site CA",
                                                   "Update the CA store"]}, doc["run"]
