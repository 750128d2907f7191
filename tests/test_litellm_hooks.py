"""airlock's hooks in a real LiteLLM proxy (the version the litellm role installs, in a
venv built once per recipe): per-user keys without a database, LiteLLM's own rpm limit,
the daily token budget, the DLP guardrail refusing or masking, the audit trail that names
user, model and rule and never a prompt, answer or key, and a broken rules file that stops
the gateway instead of letting prompts through unchecked.

The config is the one the role renders. The model behind the proxy here is LiteLLM's own
``mock_response`` (no model server is
needed to test the gateway's hooks); the lab's tests run the same hooks in front of the
real llama.cpp server. A test-only callback records what LiteLLM would send the model, so
masking is checked on what leaves the gateway."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from installer.lab.localimage import cache_dir
from tests.conftest import REPO, free_port

LITELLM = "litellm[proxy]==1.108.7"
FILES = REPO / "roles" / "litellm" / "files"
MASTER = "sk-" + "m" * 40
KEYS = {"alice": "sk-alice-" + "a" * 32, "bob": "sk-bob-" + "b" * 32,
        "carol": "sk-carol-" + "c" * 32}
RRN = "900101-1234568"  # a valid resident registration number (check digit 8)
ANSWER = "def add(a, b):\n    return a + b"

def role_config(with_guardrail: bool = True) -> str:
    """The config the litellm role renders, with test-only changes: the model answers with
    LiteLLM's mock_response, and a capture callback records what would be sent (so the
    role's turn_off_message_logging, which hides messages from every callback, is off)."""
    spec = importlib.util.spec_from_file_location(
        "litellm_filters", REPO / "roles/litellm/filter_plugins/litellm.py")
    filters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(filters)
    cfg = filters.litellm_config([{"name": "chat", "model": "smollm2",
                                   "api_base": "http://127.0.0.1:9/v1"}])
    cfg["model_list"][0]["litellm_params"]["mock_response"] = ANSWER
    cfg["litellm_settings"]["callbacks"].append("capture.capture")
    cfg["litellm_settings"]["turn_off_message_logging"] = False
    if not with_guardrail:
        del cfg["guardrails"]
    return yaml.safe_dump(cfg, sort_keys=False)


CAPTURE = """\
import json, os
from litellm.integrations.custom_logger import CustomLogger

class Capture(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        sent = {k: kwargs.get(k) for k in ("messages", "prompt") if kwargs.get(k)}
        with open(os.environ["CAPTURE_FILE"], "a") as f:
            f.write(json.dumps(sent, default=str) + "\\n")

capture = Capture()
"""


def litellm_python() -> Path:
    """The venv's python with LITELLM installed, built once per recipe (a lock keeps two
    test runs from building it at once)."""
    recipe = hashlib.sha256(f"{LITELLM} {sys.version_info[:2]}".encode()).hexdigest()[:10]
    root = cache_dir() / "litellm"
    venv = root / recipe
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "ok").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            r = subprocess.run([str(venv / "bin/pip"), "install", "-q", LITELLM],
                               capture_output=True, text=True)
            if r.returncode:
                pytest.fail(f"pip install {LITELLM} failed (PyPI is needed once):\n"
                            f"{r.stderr[-2000:]}", pytrace=False)
            (venv / "ok").write_text(LITELLM + "\n")
    return venv / "bin" / "python"


def _start(d: Path, python: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    log = open(d / "proxy.log", "w")  # noqa: SIM115  (the proxy writes to it until stopped)
    return subprocess.Popen(
        [str(python), "-m", "litellm.proxy.proxy_cli", "--config", str(d / "config.yaml"),
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=d, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={"PATH": os.environ["PATH"], "HOME": str(d), **env})


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _env(d: Path) -> dict[str, str]:
    return {"LITELLM_MASTER_KEY": MASTER, "AIRLOCK_LITELLM_KEYS": str(d / "keys.json"),
            "AIRLOCK_LITELLM_DLP": str(d / "dlp.json"),
            "AIRLOCK_LITELLM_AUDIT": str(d / "audit.jsonl"),
            "CAPTURE_FILE": str(d / "sent.jsonl"),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY_DISABLED": "true",
            "DISABLE_ADMIN_UI": "True", "NO_DOCS": "True", "NO_REDOC": "True",
            "HF_HUB_OFFLINE": "1"}


def _setup(d: Path, rules: list | None = None) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for f in ("airlock_litellm.py", "airlock_dlp.py"):
        shutil.copy(FILES / f, d / f)
    (d / "capture.py").write_text(CAPTURE)
    (d / "config.yaml").write_text(role_config())
    sys.path.insert(0, str(FILES))
    import airlock_dlp
    sys.path.remove(str(FILES))
    (d / "dlp.json").write_text(json.dumps(rules if rules is not None
                                           else airlock_dlp.DEFAULT_RULES))
    limits = {"alice": {"rpm": 100, "tpm": 100000, "daily_tokens": 100000},
              "bob": {"rpm": 100, "tpm": 100000, "daily_tokens": 60},
              "carol": {"rpm": 2, "tpm": 100000, "daily_tokens": 100000}}
    keys = {"users": {u: {"sha256": hashlib.sha256(k.encode()).hexdigest(), **limits[u]}
                      for u, k in KEYS.items()}}
    (d / "keys.json").write_text(json.dumps(keys))
    (d / "keys.json").chmod(0o600)


def _ready(proc: subprocess.Popen, url: str, d: Path) -> None:
    """Wait (bounded) for /health/readiness, the check the role makes after each start."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health/readiness", timeout=2) as r:
                assert json.load(r)["status"] == "healthy"
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("LiteLLM did not start:\n" + (d / "proxy.log").read_text()[-3000:],
                            pytrace=False)
            time.sleep(0.5)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    python = litellm_python()
    d = tmp_path_factory.mktemp("litellm")
    _setup(d)
    port = free_port()
    proc = _start(d, python, _env(d), port)
    url = f"http://127.0.0.1:{port}"
    try:
        _ready(proc, url, d)
        yield {"url": url, "dir": d, "python": python}
    finally:
        _stop(proc)


def call(proxy: dict, key: str | None, body: dict, path: str = "/v1/chat/completions"
         ) -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(proxy["url"] + path, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def chat(text: str) -> dict:
    return {"model": "chat", "messages": [{"role": "user", "content": text}]}


def audit(proxy: dict) -> list[dict]:
    path = proxy["dir"] / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def wait_for(what, seconds: float = 15):
    """LiteLLM logs a call after it has answered: poll (bounded) for the record."""
    deadline = time.monotonic() + seconds
    while not (got := what()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return got


def sent(proxy: dict) -> list[dict]:
    path = proxy["dir"] / "sent.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_a_users_key_gets_an_answer_and_an_audit_record(proxy: dict) -> None:
    code, doc = call(proxy, KEYS["alice"], chat("write add()"))
    assert code == 200 and doc["choices"][0]["message"]["content"] == ANSWER, doc
    rec = wait_for(lambda: [r for r in audit(proxy)
                            if r["event"] == "request" and r["id"] == doc["id"]])
    assert len(rec) == 1 and rec[0]["user"] == "alice" and rec[0]["status"] == "ok", rec
    assert rec[0]["model"] == "chat" and rec[0]["completion_tokens"] > 0


@pytest.mark.parametrize("key, says", [
    (None, "no API key"), ("sk-not-anyones-" + "x" * 30, "belongs to no user")])
def test_no_key_or_an_unknown_key_is_refused(proxy: dict, key: str | None, says: str
                                            ) -> None:
    code, doc = call(proxy, key, chat("hello"))
    assert code == 401 and says in doc["error"]["message"], doc


def test_over_the_rpm_limit_is_refused_by_litellms_limiter(proxy: dict) -> None:
    codes = [call(proxy, KEYS["carol"], chat(f"question {i}"))[0] for i in range(3)]
    assert codes == [200, 200, 429], codes
    code, doc = call(proxy, KEYS["carol"], chat("again"))
    assert code == 429 and doc["error"]["type"] == "throttling_error", doc
    assert call(proxy, KEYS["alice"], chat("me too"))[0] == 200  # limits are per user


def test_the_daily_token_budget_bites(proxy: dict) -> None:
    codes, used = [], 0
    for _ in range(6):  # bob's budget is 60 tokens; each answer here costs 30
        code, doc = call(proxy, KEYS["bob"], chat("hi"))
        codes.append(code)
        used += doc.get("usage", {}).get("total_tokens", 0)
        if code == 429:
            break
    assert codes[-1] == 429 and used >= 60 and codes.count(200) == len(codes) - 1, codes
    assert "daily token budget used up" in doc["error"]["message"], doc
    code, doc = call(proxy, KEYS["bob"], {"model": "chat", "prompt": "def f("},
                     "/v1/completions")
    assert code == 429 and doc["error"]["type"] == "budget_exceeded", doc
    assert wait_for(lambda: any(r["event"] == "budget" and r["user"] == "bob"
                                for r in audit(proxy)))


@pytest.mark.parametrize("body, path, rule", [
    (chat(f"my number is {RRN}, fill the form"), "/v1/chat/completions",
     "kr_resident_registration_number"),
    ({"model": "chat", "prompt": "key = 'AKIAIOSFODNN7EXAMPLE'\n"}, "/v1/completions",
     "cloud_access_key"),
    ({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA"}]}]},
     "/v1/chat/completions", "private_key"),
])
def test_dlp_refuses_and_the_audit_names_rule_and_user_never_the_secret(
        proxy: dict, body: dict, path: str, rule: str) -> None:
    sent_before = len(sent(proxy))
    code, doc = call(proxy, KEYS["alice"], body, path)
    assert code == 400 and rule in doc["error"]["message"], doc
    rec = [r for r in audit(proxy) if r["event"] == "dlp"][-1]
    assert rec["user"] == "alice" and rec["action"] == "blocked" and rule in rec["rules"]
    log = (proxy["dir"] / "audit.jsonl").read_text()
    for secret in (RRN, "1234568", "AKIAIOSFODNN7EXAMPLE", "OPENSSH PRIVATE KEY"):
        assert secret not in log
    assert call(proxy, KEYS["alice"], chat("and now?"))[0] == 200  # logged after this one
    assert wait_for(lambda: len(sent(proxy)) > sent_before)
    assert not any(s in json.dumps(sent(proxy)[sent_before:]) for s in (
        RRN, "AKIAIOSFODNN7EXAMPLE", "PRIVATE KEY"))  # nothing went towards the model


def test_dlp_masks_and_the_model_never_sees_the_password(proxy: dict) -> None:
    code, doc = call(proxy, KEYS["alice"], chat(
        "why does postgresql://app:Tr0ub4dor@db1/app refuse me"))
    assert code == 200, doc
    last = json.dumps(wait_for(lambda: [x for x in sent(proxy) if "MASKED" in json.dumps(x)]))
    assert "Tr0ub4dor" not in last and "[MASKED:connection_string_password]" in last, last
    rec = [r for r in audit(proxy) if r["event"] == "dlp"][-1]
    assert rec == {**rec, "user": "alice", "action": "masked",
                   "rules": {"connection_string_password": 1}}
    assert "Tr0ub4dor" not in (proxy["dir"] / "audit.jsonl").read_text()


def test_the_master_key_is_the_admin(proxy: dict) -> None:
    code, doc = call(proxy, MASTER, chat("hello"))
    assert code == 200, doc
    req = urllib.request.Request(proxy["url"] + "/guardrails/list",
                                 headers={"authorization": f"Bearer {MASTER}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        names = [g["guardrail_name"] for g in json.load(r)["guardrails"]]
    assert names == ["airlock-dlp"], names


def test_no_key_value_is_ever_written_to_the_audit_trail(proxy: dict) -> None:
    log = (proxy["dir"] / "audit.jsonl").read_text()
    assert log and all(k not in log for k in (*KEYS.values(), MASTER))
    assert all(hashlib.sha256(k.encode()).hexdigest() not in log for k in KEYS.values())


def test_a_rules_file_that_does_not_compile_stops_the_gateway(
        proxy: dict, tmp_path: Path) -> None:
    d = tmp_path / "broken"
    _setup(d, rules=[{"name": "card", "pattern": "[0-9", "action": "block"}])
    proc = _start(d, proxy["python"], _env(d), free_port())
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("LiteLLM started with a DLP rules file that does not compile")
    finally:
        _stop(proc)
    log = (d / "proxy.log").read_text()
    assert proc.returncode != 0 and "pattern does not compile" in log, log[-2000:]


def test_without_the_guardrail_loaded_no_prompt_passes(proxy: dict, tmp_path: Path) -> None:
    """Whatever keeps LiteLLM from loading the guardrail (a config edited by hand, a
    LiteLLM that skips it), the gateway hook refuses every call rather than pass prompts
    unchecked."""
    d = tmp_path / "no-guardrail"
    _setup(d)
    (d / "config.yaml").write_text(role_config(with_guardrail=False))
    port = free_port()
    proc = _start(d, proxy["python"], _env(d), port)
    try:
        _ready(proc, f"http://127.0.0.1:{port}", d)
        code, doc = call({"url": f"http://127.0.0.1:{port}"}, KEYS["alice"], chat("hi"))
        assert code == 503 and doc["error"]["type"] == "dlp_unavailable", doc
    finally:
        _stop(proc)
