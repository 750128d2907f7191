"""The AI path on the lab the demo made (shared with test_import, test_deploy, test_ide):
Continue's real CLI in alice's workbench asks the model through LiteLLM with her own key;
chat and code completion return tokens; limits, keys and the DLP rules bite; the audit
trail names user and rule and never the secret; nothing leaves the lab; a killed LiteLLM
comes back; a GPU role on a host without a GPU stops with one sentence and changes nothing.

The model server is the lab's named stand-in: llama.cpp's OpenAI-compatible server
(llama-cpp-python compiled from PyPI) on ai1's CPU, serving the real SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest

from conftest import REPO, lab_ssh
from installer.deploy.runner import run_playbook
from llmclient import llm_key as _key
from llmclient import llm_post as _post
from llmclient import llm_posts
from llmclient import llm_url as _llm_url

pytestmark = pytest.mark.engine
RRN = "900101-1234568"  # a resident registration number whose check digit is right


def _ai(demo: dict, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return lab_ssh(demo, "ai1", command, timeout=timeout)


def _audit(demo: dict) -> list[dict]:
    out = _ai(demo, "cat /var/log/airlock-litellm/audit.jsonl").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_continue_cli_answers_in_alices_workbench(demo) -> None:
    """Continue's own CLI, installed by npm from the lab's npm mirror, with the config.yaml
    the role wrote (alice's key in it), asks LiteLLM, which asks the model."""
    r = lab_ssh(demo, "ide1", "docker exec code-server-alice /opt/airlock/continue-cli/bin/cn "
                "-p 'Reply with one short sentence: what is Python?' --readonly "
                "--config /home/coder/.continue/config.yaml", timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(r.stdout.strip()) > 3, r.stdout
    recs = [a for a in _audit(demo) if a.get("event") == "request" and a.get("user") == "alice"]
    assert recs and recs[-1]["status"] == "ok" and recs[-1]["completion_tokens"] > 0, recs[-3:]


def test_chat_and_completion_return_tokens_through_litellm(demo) -> None:
    key = _key(demo, "alice")
    status, doc = _post(demo, "alice", "/chat/completions", {
        "model": "chat", "max_tokens": 24,
        "messages": [{"role": "user", "content": "Say hello in French."}]}, key)
    assert status == 200, doc
    assert doc["choices"][0]["message"]["content"].strip()
    assert doc["usage"]["completion_tokens"] > 0
    status, doc = _post(demo, "alice", "/completions", {
        "model": "autocomplete", "prompt": "def add(a, b):\n    return", "max_tokens": 8}, key)
    assert status == 200, doc
    assert doc["choices"][0]["text"] and doc["usage"]["completion_tokens"] > 0


def test_no_key_or_a_wrong_key_is_refused(demo) -> None:
    body = {"model": "chat", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    for key in (None, "sk-" + "x" * 43, _key(demo, "alice")[:-1]):
        status, doc = _post(demo, "alice", "/chat/completions", body, key)
        assert status == 401, (key and key[:6], doc)


def test_a_resident_registration_number_is_refused_and_audited_without_it(demo) -> None:
    before = len(_audit(demo))
    status, doc = _post(demo, "alice", "/chat/completions", {
        "model": "chat", "max_tokens": 4,
        "messages": [{"role": "user", "content": f"my number is {RRN}, check it"}]},
        _key(demo, "alice"))
    assert status == 400, doc
    assert "kr_resident_registration_number" in json.dumps(doc)
    new = _audit(demo)[before:]
    dlp = [a for a in new if a.get("event") == "dlp"]
    assert dlp and dlp[0]["user"] == "alice" and dlp[0]["action"] == "blocked"
    assert dlp[0]["rules"] == {"kr_resident_registration_number": 1}
    log = _ai(demo, "cat /var/log/airlock-litellm/audit.jsonl; journalctl -q "
                    "-t airlock_llm --no-pager; journalctl -q -u 'airlock-litellm*' "
                    "--no-pager").stdout
    assert RRN not in log and RRN.replace("-", "") not in log
    assert _key(demo, "alice") not in log


def test_a_user_over_the_rate_limit_gets_429(demo) -> None:
    """bob's limit is the lab's 30 requests a minute: the 31st within the minute is
    LiteLLM's own 429 (sent in parallel from bob's workbench, one token each)."""
    got = llm_posts(demo, "bob", "/completions",
                    {"model": "autocomplete", "prompt": "x", "max_tokens": 1},
                    _key(demo, "bob"), times=40)
    statuses = [status for status, _ in got]
    assert 429 in statuses and 200 in statuses, statuses
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) <= 30


def test_a_killed_litellm_is_restarted_and_healthy(demo) -> None:
    """The serving release's process killed: systemd starts it again."""
    unit = "airlock-litellm@" + _ai(demo, "cat /etc/airlock/litellm/active").stdout.strip()
    pid = _ai(demo, f"systemctl show -p MainPID --value {unit}").stdout.strip()
    assert pid.isdigit() and int(pid) > 0
    _ai(demo, f"systemctl kill -s KILL {unit}")
    url = _llm_url(demo).removesuffix("/v1")
    deadline = time.monotonic() + 180
    while True:
        now = _ai(demo, f"systemctl show -p MainPID --value {unit}").stdout.strip()
        ready = _ai(demo, "python3 -c 'import sys, urllib.request; urllib.request.urlopen"
                          f"(sys.argv[1], timeout=5)' {url}/health/readiness").returncode == 0
        if ready and now not in ("0", pid):
            break
        assert time.monotonic() < deadline, f"LiteLLM did not come back (pid {now})"
        time.sleep(2)
    status, _ = _post(demo, "alice", "/completions", {
        "model": "autocomplete", "prompt": "x = ", "max_tokens": 2}, _key(demo, "alice"))
    assert status == 200


def _outside(demo: dict) -> dict[str, int]:
    """Each AI-path host's count of packets headed outside the site's networks (the
    firewall's airlock_outside counters: output, and forward for its containers)."""
    counts = {}
    for host in ("ide1", "ai1"):
        r = lab_ssh(demo, host, "nft -j list table inet airlock", timeout=60)
        total = 0
        for item in json.loads(r.stdout)["nftables"]:
            rule = item.get("rule")
            if rule and rule.get("comment") == "airlock_outside":
                total += sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
        counts[host] = total
    return counts


def test_the_ai_path_sends_nothing_outside_the_lab(demo) -> None:
    """A whole Continue session (the CLI's own version check at start included), chat and
    completion: no packet for outside the site's networks on ide1 (alice's container) or
    ai1 (LiteLLM, the model server); names are asked only of the site's DNS (ns1, which
    has no upstream). The counter is shown to count first: one probe to a TEST-NET
    address from alice's container."""
    start = _outside(demo)
    lab_ssh(demo, "ide1", "docker exec code-server-alice node -e "
            + shlex.quote("fetch('http://192.0.2.1/',{signal:AbortSignal.timeout(1500)})"
                          ".catch(()=>0)"), timeout=60)
    probed = _outside(demo)
    assert probed["ide1"] > start["ide1"], (start, probed)
    r = lab_ssh(demo, "ide1", "docker exec code-server-alice /opt/airlock/continue-cli/bin/cn "
                "-p 'Say yes.' --readonly --config /home/coder/.continue/config.yaml",
                timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    test_chat_and_completion_return_tokens_through_litellm(demo)
    assert _outside(demo) == probed


def test_gpu_roles_on_a_host_without_a_gpu_stop_with_one_sentence(demo) -> None:
    """ai1 has no NVIDIA device: asked to run vLLM (and so the driver), the run stops at
    the first check, names the host and the reason, and changes nothing."""
    r = run_playbook(REPO, "ai.yml", demo["inventory"], site=demo["site"],
                     log_dir=demo["dir"] / "ai-logs", limit="ai1",
                     extravars={"airlock_inference_engine": "vllm"}, live=False,
                     raise_on_failure=False)
    assert r.rc != 0
    said = json.dumps(r.failures)
    assert "ai1 has 0 NVIDIA GPU(s) on its PCI bus" in said, said[-3000:]
    assert r.stats["ai1"]["changed"] == 0, r.stats


@pytest.mark.parametrize("extravars, words", [
    ({"airlock_ai_weights": {"smollm2-135m-instruct": {
        "pack": "smollm2", "version": "9.9", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}},
     "the served release carries no model smollm2 9.9 (it has: "),
    ({"litellm_dlp": {"rules": [{"name": "ticket", "pattern": "TICKET-(", "action": "block"}]}},
     "(ticket): pattern does not compile"),
])
def test_bad_ai_input_is_refused_before_anything_changes(demo, extravars, words) -> None:
    """site.yml's first playbook (checks.yml) refuses it, naming it; no host changed."""
    r = run_playbook(REPO, "checks.yml", demo["inventory"], site=demo["site"],
                     log_dir=demo["dir"] / "ai-logs", extravars=extravars, live=False,
                     raise_on_failure=False)
    assert r.rc != 0
    said = json.dumps(r.failures)
    assert words in said, said[-3000:]
    if "9.9" in words:  # and it names what the release (v1, or a later test's) does carry
        assert "smollm2 0.1.2" in said, said[-3000:]
    assert all(s["changed"] == 0 for s in r.stats.values()), r.stats
