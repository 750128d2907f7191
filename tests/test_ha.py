"""The gateway pair on the shared lab (seed 000 §6.1: Nginx active-standby with a VIP, RTO
30 s): keepalived moves the VIP when the active gateway's nginx stops answering and when the
active gateway dies, under a bounded load of a signed-in user's requests from the VDE side
(the build machine, a lab address). The failover time and the failed requests are measured
and printed beside the seed's figure; the user's session survives the move."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import threading
import time
from pathlib import Path

import docker
import pytest

from conftest import REPO, lab_ssh, report_figure, run_airlock
from gateway import gateway_address, gateway_session

SEED_RTO_S = 30  # seed 000 §6.1: Nginx active-standby, RTO 30 s
RATE_S = 0.1  # one request every 100 ms at most (bounded: the load stops itself)
LOAD_MAX_S = 240


def _holders(demo: dict) -> list[str]:
    vip = demo["state"]["gateway_vip"]
    out = []
    for h in ("gw1", "gw2"):
        try:
            r = lab_ssh(demo, h, "ip -o -4 addr show", root=False, timeout=10)
        except subprocess.TimeoutExpired:  # a dead host holds nothing
            continue
        if r.returncode == 0 and f" {vip}/" in r.stdout:
            out.append(h)
    return out


def _wait_holder(demo: dict, want: str, seconds: float = 60) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = _holders(demo)
        if got == [want]:
            return got
        time.sleep(1)
    return _holders(demo)


class Load:
    """alice's workbench page through the VIP, one request at a time (a new connection
    each, 2 s timeout), until stopped or LOAD_MAX_S: (start time, ok) for each."""

    def __init__(self, demo: dict, cookie: str) -> None:
        self.host = gateway_address(demo)
        self.cookie = cookie
        self.ctx = ssl.create_default_context(cafile=str(demo["site"] / "pki" / "ca.crt"))
        self.results: list[tuple[float, bool]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def one(self) -> bool:
        conn = http.client.HTTPSConnection(self.host, 443, timeout=2, context=self.ctx)
        try:
            # code-server's own page (without ?folder= it redirects there)
            conn.request("GET", "/u/alice/?folder=/home/coder",
                         headers={"Cookie": self.cookie})
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _run(self) -> None:
        end = time.monotonic() + LOAD_MAX_S
        while not self.stop.is_set() and time.monotonic() < end:
            t = time.monotonic()
            self.results.append((t, self.one()))
            time.sleep(max(0.0, RATE_S - (time.monotonic() - t)))

    def __enter__(self) -> Load:
        assert self.one(), "alice's workbench does not answer 200 through the VIP"
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def steady_after(self, t0: float, run: int = 20, seconds: float = 90) -> float | None:
        """Wait until RUN requests in a row succeed after T0; the first of them (the end of
        the outage), or None if that never happens within SECONDS."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            after = [r for r in list(self.results) if r[0] >= t0]
            for i in range(len(after) - run + 1):
                if all(ok for _, ok in after[i:i + run]):
                    return after[i][0]
            time.sleep(0.5)
        return None

    def failed_between(self, t0: float, t1: float) -> tuple[int, int]:
        window = [ok for t, ok in list(self.results) if t0 <= t <= t1]
        return len(window), window.count(False)


@pytest.fixture(scope="module")
def cookie(demo: dict, tmp_path_factory: pytest.TempPathFactory) -> str:
    assert demo["state"].get("gateway_vip"), "the lab has no gateway pair (gw1, gw2 and a VIP)"
    return gateway_session(demo, "alice", tmp_path_factory.mktemp("ha"))


def test_the_vip_is_on_one_gateway_and_vrrp_is_authenticated(demo: dict) -> None:
    assert _holders(demo) == ["gw1"], "the VIP should be on the preferred gateway, gw1"
    conf = lab_ssh(demo, "gw2", "cat /etc/keepalived/keepalived.conf").stdout
    assert "auth_type PASS" in conf and "unicast_src_ip" in conf, conf
    assert lab_ssh(demo, "gw2", "stat -c %a /etc/keepalived/keepalived.conf").stdout.strip() \
        == "600"
    # the adverts pass the firewall between the pair only: the ruleset allows protocol 112
    # from the peer and from nobody else
    rules = lab_ssh(demo, "gw1", "nft list chain inet airlock input").stdout
    peer = demo["state"]["hosts"]["gw2"]["zone_address"]
    vrrp = [line.strip() for line in rules.splitlines()
            if "ip protocol vrrp" in line or "ip protocol 112" in line]
    assert vrrp and all(f"ip saddr {peer} " in line for line in vrrp), vrrp


def test_the_vip_moves_when_the_active_nginx_stops(demo: dict, cookie: str) -> None:
    with Load(demo, cookie) as load:
        time.sleep(2)
        t0 = time.monotonic()
        assert lab_ssh(demo, "gw1", "systemctl stop nginx").returncode == 0
        try:
            back = load.steady_after(t0)
            holders = _wait_holder(demo, "gw2")
        finally:
            lab_ssh(demo, "gw1", "systemctl start nginx")
        assert back is not None, "requests did not resume through the VIP"
        total, failed = load.failed_between(t0 - 2, back)
        rto = back - t0
        report_figure("gateway failover: nginx stopped",
                      f"nginx stopped on the active gateway: VIP {holders} after {rto:.1f} s "
                      f"(seed 000 §6.1: RTO {SEED_RTO_S} s); {failed} of {total} requests "
                      "failed meanwhile", rto_s=round(rto, 1), seed_rto_s=SEED_RTO_S,
                      requests=total, failed=failed)
        assert holders == ["gw2"]
        assert rto <= SEED_RTO_S
        # nginx is back on gw1: the VIP stays where it serves (no second move)
        time.sleep(6)
        assert _holders(demo) == ["gw2"]
        steady, bad = load.failed_between(back, time.monotonic())
        assert bad == 0 and steady > 20, (steady, bad)


def test_the_vip_moves_when_the_active_gateway_dies(demo: dict, cookie: str) -> None:
    from installer.lab import lab as lab_mod

    assert _holders(demo) == ["gw2"], "runs after the nginx failover (gw2 active)"
    client = docker.DockerClient(base_url=demo["state"]["engine_host"])
    gw2 = client.containers.get(demo["state"]["containers"]["gw2"])
    resolv = lab_ssh(demo, "gw2", "cat /etc/resolv.conf").stdout  # the common role's
    try:
        with Load(demo, cookie) as load:
            time.sleep(2)
            t0 = time.monotonic()
            gw2.kill()
            back = load.steady_after(t0)
            assert back is not None, "requests did not resume through the VIP"
            total, failed = load.failed_between(t0 - 2, back)
            rto = back - t0
            holders = _holders(demo)
            report_figure("gateway failover: host killed",
                          f"the active gateway's container killed: VIP {holders} after "
                          f"{rto:.1f} s (seed 000 §6.1: RTO {SEED_RTO_S} s); {failed} of "
                          f"{total} requests failed meanwhile; alice's session still valid",
                          rto_s=round(rto, 1), seed_rto_s=SEED_RTO_S, requests=total,
                          failed=failed)
            assert holders == ["gw1"] and rto <= SEED_RTO_S
    finally:
        lab_mod.start_again(REPO, "gw2", resolv)
    # gw2 is back as the standby: its keepalived runs and the VIP stays on gw1
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        r = lab_ssh(demo, "gw2", "systemctl is-active keepalived nginx", timeout=20)
        if r.returncode == 0:
            break
        time.sleep(2)
    assert r.returncode == 0, r.stdout + r.stderr
    # what the lab set from outside is back as it was (the next deploy changes nothing)
    assert lab_ssh(demo, "gw2", "cat /etc/resolv.conf").stdout == resolv
    time.sleep(5)
    assert _holders(demo) == ["gw1"]


def test_a_peer_without_the_password_cannot_take_the_vip(demo: dict, tmp_path: Path) -> None:
    """gw2 with a wrong VRRP password and the highest priority: gw1 ignores its adverts
    (keepalived logs the authentication failure) and keeps the VIP."""
    conf = "/etc/keepalived/keepalived.conf"
    r = lab_ssh(demo, "gw2", f"cp -p {conf} /root/keepalived.conf.good && "
                             f"sed -i -e 's/auth_pass .*/auth_pass wrong123/' "
                             f"-e 's/priority .*/priority 254/' -e '/nopreempt/d' {conf} && "
                             "systemctl restart keepalived")
    assert r.returncode == 0, r.stderr
    try:
        time.sleep(8)
        held = _holders(demo)
        log = lab_ssh(demo, "gw1", "journalctl -u keepalived --since '-30s' --no-pager").stdout
    finally:
        lab_ssh(demo, "gw2", f"cp -p /root/keepalived.conf.good {conf} && "
                             "systemctl restart keepalived")
    # gw2 takes itself for the master (it hears no valid advert either), but gw1 never
    # yields: the VIP is on gw1 still, on gw2 too only by gw2's own mistake
    assert "gw1" in held, held
    assert "received an invalid passwd" in log, log[-2000:]
    assert _wait_holder(demo, "gw1", 30) == ["gw1"]


def _served(demo: dict, host: str, since: int) -> int:
    """Completions the inference server on HOST answered since the epoch second SINCE (its
    access log, in the journal)."""
    r = lab_ssh(demo, host, f"journalctl -t vllm --since @{since} --no-pager -o cat")
    return r.stdout.count("POST /v1/completions")


class LLMLoad:
    """Completions from ide1 (the IDE zone) through LiteLLM's front, by the lab's load
    program (installer/lab/llmload.py, the admin's key on stdin: no user limits in the
    way), until stop() or MAX_S: its JSON summary."""

    MAX_S = 300

    def __init__(self, demo: dict, users: int = 2) -> None:
        import shlex

        from installer.lab.aipath import LOAD, user_key
        from llmclient import llm_url

        self.demo = demo
        self.stop_file = f"/tmp/airlock-llmload-stop-{int(time.time())}"
        key = user_key(demo["site"], None)
        self.script = (f"import os\nos.environ['LLMLOAD_KEY'] = {key!r}\n".encode()
                       + LOAD.read_bytes())
        args = ["--url", llm_url(demo), "--model", "autocomplete", "--kind", "completion",
                "--users", str(users), "--requests", "100000", "--duration", str(self.MAX_S),
                "--max-tokens", "4", "--stop-file", self.stop_file]
        addr = demo["state"]["hosts"]["ide1"]["mgmt_address"]
        self.cmd = ["ssh", "-i", demo["key"], "-o", "StrictHostKeyChecking=yes",
                    "-o", f"UserKnownHostsFile={demo['site'] / 'known_hosts'}",
                    "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", f"airlock@{addr}",
                    "exec python3 - " + " ".join(map(shlex.quote, args))]

    def __enter__(self) -> LLMLoad:
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        assert self.proc.stdin is not None
        self.proc.stdin.write(self.script)
        self.proc.stdin.close()
        self.proc.stdin = None  # sent whole: communicate() has nothing more to send
        return self

    def stop(self) -> dict:
        import json

        lab_ssh(self.demo, "ide1", f"touch {self.stop_file}", root=False)
        out, err = self.proc.communicate(timeout=self.MAX_S + 120)
        lab_ssh(self.demo, "ide1", f"rm -f {self.stop_file}", root=False)
        assert self.proc.returncode == 0, err.decode()[-2000:]
        return json.loads(out)

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            lab_ssh(self.demo, "ide1", f"touch {self.stop_file}", root=False)
            try:
                self.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def test_a_killed_inference_server_fails_no_completion(demo: dict) -> None:
    """Completions from the IDE zone through LiteLLM while ai2's server is killed: the
    balancer in front of the model's two servers moves each request that ai2 cannot take
    to ai1; none fails. Both served before the kill."""
    since = int(time.time())
    try:
        with LLMLoad(demo) as load:
            time.sleep(12)
            before = {h: _served(demo, h, since) for h in ("ai1", "ai2")}
            assert lab_ssh(demo, "ai2", "docker kill vllm").returncode == 0
            killed = int(time.time())
            time.sleep(20)
            doc = load.stop()
    finally:
        lab_ssh(demo, "ai2", "docker start vllm")
    after_kill = _served(demo, "ai1", killed)
    report_figure("inference server killed",
                  f"one of two inference servers killed under load: {doc['ok']} of "
                  f"{doc['requests']} completions answered, errors {doc['errors'] or 'none'}; "
                  f"before the kill ai1 served {before['ai1']}, ai2 {before['ai2']}; after it "
                  f"ai1 served {after_kill}", requests=doc["requests"], ok=doc["ok"],
                  errors=doc["errors"])
    assert before["ai1"] > 0 and before["ai2"] > 0, before  # balanced across both
    assert doc["errors"] == {} and doc["ok"] == doc["requests"] > 20, doc
    assert after_kill > 5
    # ai2 serves again (restart policy; the balancer takes it back after fail_timeout)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        url = f"http://{demo['state']['hosts']['ai2']['zone_address']}:8000/v1/models"
        if lab_ssh(demo, "ai2", "python3 -c 'import sys, urllib.request; urllib.request."
                   f"urlopen(sys.argv[1], timeout=5)' {url}", root=False).returncode == 0:
            break
        time.sleep(2)
    else:
        raise AssertionError("ai2's inference server did not come back")


def _slots(demo: dict) -> dict:
    import json

    r = lab_ssh(demo, "ai1", "/usr/local/sbin/airlock-llm-switch status")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_a_new_litellm_release_takes_over_and_rolls_back_with_no_failed_request(
        demo: dict) -> None:
    """A deploy that changes LiteLLM (here its config: the lab has one LiteLLM version; a
    new version from a new bundle takes the same path) under load: the new release starts
    in the idle slot beside the serving one, takes over when ready, the old one is still
    there; `airlock rollback litellm` switches back under load. No request fails."""
    import json

    from installer.deploy.runner import run_playbook

    first = _slots(demo)
    old = first["active"]
    assert old in ("blue", "green") and first["slots"][old]["ready"], first
    # a change to what the serving release runs with: one more retry than it has
    serving = lab_ssh(demo, "ai1", f"cat /etc/airlock/litellm/{old}/config.yaml").stdout
    retries = 3 if "num_retries: 2" in serving else 2
    with LLMLoad(demo) as load:
        time.sleep(5)
        t0 = time.monotonic()
        run = run_playbook(REPO, "site.yml", demo["inventory"], site=demo["site"],
                           log_dir=demo["dir"] / "bluegreen-logs", live=False,
                           limit="ai1,gw1", raise_on_failure=False,
                           extravars={"litellm_num_retries": retries})
        took = time.monotonic() - t0
        time.sleep(5)
        upgrade = load.stop()
    assert run.ok, run.failures
    after = _slots(demo)
    new = after["active"]
    assert new != old, after
    assert after["slots"][old]["running"] and after["slots"][old]["ready"], after
    assert after["slots"][new]["release"] != after["slots"][old]["release"], after
    with LLMLoad(demo) as load:
        time.sleep(5)
        proc = run_airlock("rollback", "litellm", "-i", str(demo["inventory"]),
                           "--site", str(demo["site"]), "--json")
        time.sleep(5)
        rollback = load.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["hosts"][0]["active"] == old
    assert _slots(demo)["active"] == old
    report_figure("LiteLLM blue/green",
                  f"LiteLLM blue/green: the deploy ({took:.0f} s) moved {old} -> {new} under "
                  f"load: {upgrade['ok']} of {upgrade['requests']} completions answered, "
                  f"errors {upgrade['errors'] or 'none'}; rollback {new} -> {old}: "
                  f"{rollback['ok']} of {rollback['requests']}, errors "
                  f"{rollback['errors'] or 'none'}", upgrade=upgrade, rollback=rollback,
                  deploy_s=round(took))
    assert upgrade["errors"] == {} and upgrade["ok"] > 20, upgrade
    assert rollback["errors"] == {} and rollback["ok"] > 10, rollback


def _container_times(demo: dict, host: str, since: float) -> tuple[float, float | None]:
    """When HOST's inference container last started since the epoch second SINCE, and when
    Docker first saw it healthy after that (its events: the health check's log keeps the
    last five results only)."""
    r = lab_ssh(demo, host, f"docker events --since {int(since)} --until {int(time.time()) + 1} "
                            "--filter container=vllm --format '{{.TimeNano}} {{.Action}}'")
    assert r.returncode == 0, r.stdout + r.stderr
    events = [(int(t) / 1e9, action) for t, _, action in
              (line.partition(" ") for line in r.stdout.splitlines() if line.strip())]
    starts = [t for t, action in events if action == "start"]
    assert starts, (host, r.stdout)
    healthy = [t for t, action in events
               if action.startswith("health_status: healthy") and t >= starts[-1]]
    return starts[-1], (healthy[0] if healthy else None)


def test_inference_servers_are_replaced_one_at_a_time_with_no_failed_completion(
        demo: dict) -> None:
    """A deploy that changes the inference servers (here one more argument, the value the
    server has by default: a new image or model takes the same path) under load: each
    server is replaced only after the one before it passed its health check, so the model
    always has a server answering; no completion fails. A second deploy puts the servers
    back as the inventory has them."""
    from installer.deploy.runner import run_playbook

    def deploy(extra: dict, logs: str):  # type: ignore[no-untyped-def]
        return run_playbook(REPO, "ai.yml", demo["inventory"], site=demo["site"],
                            log_dir=demo["dir"] / logs, live=False, tags="inference",
                            raise_on_failure=False, extravars=extra)

    since = time.time()
    with LLMLoad(demo) as load:
        time.sleep(5)
        t0 = time.monotonic()
        run = deploy({"vllm_extra_args": ["--n_batch", "512"]}, "rolling-logs")
        took = time.monotonic() - t0
        time.sleep(3)
        doc = load.stop()
    times = {h: _container_times(demo, h, since) for h in ("ai1", "ai2")}
    back = deploy({}, "rolling-back-logs")
    assert run.ok, run.failures
    assert back.ok, back.failures
    assert {h for h, tasks in run.changed_tasks.items()
            if any("inference server" in t for t in tasks)} == {"ai1", "ai2"}, run.changed_tasks
    first, second = sorted(times.values())
    report_figure("inference servers replaced one at a time",
                  f"inference servers replaced one at a time under load (deploy {took:.0f} s): "
                  f"{doc['ok']} of {doc['requests']} completions answered, errors "
                  f"{doc['errors'] or 'none'}; the second started "
                  f"{second[0] - (first[1] or 0):.1f} s after the first passed its health check",
                  requests=doc["requests"], ok=doc["ok"], errors=doc["errors"],
                  deploy_s=round(took))
    assert first[1] is not None and second[0] >= first[1], times  # never both down
    assert doc["errors"] == {} and doc["ok"] == doc["requests"] > 20, doc
