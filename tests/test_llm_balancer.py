"""The litellm role's front (nginx), rendered by Ansible from the role's template and run
by a real nginx on loopback: users' requests reach the active LiteLLM release; a model with
several inference servers is balanced, every request answered while one server refuses
connections and none sent twice. The lab kills a real inference server under load and
switches LiteLLM releases under load (test_ha.py)."""

from __future__ import annotations

import http.client
import http.server
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import localplay
from conftest import free_port, need

ROLE = localplay.REPO / "roles" / "litellm"
sys.path.insert(0, str(ROLE / "filter_plugins"))
import litellm as filters  # noqa: E402


class _Server(http.server.ThreadingHTTPServer):
    hits = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.hits += 1  # type: ignore[attr-defined]
        out = json.dumps({"echo": json.loads(body), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


def _render(tmp_path: Path, models: list[dict], port: int, front: int, litellm: int,
            vip: str = "") -> Path:
    """The role's template, then its fixed root paths moved into TMP_PATH (the test runs
    nginx as whoever runs it); the active release is at 127.0.0.1:LITELLM."""
    out = tmp_path / "front.conf"
    (tmp_path / "active.conf").write_text(f"server 127.0.0.1:{litellm};\n")
    localplay.render(tmp_path, "litellm", "front.conf.j2", out, {
        "litellm_models": models, "litellm_config_dir": str(tmp_path),
        "litellm_listen_address": "127.0.0.1", "litellm_port": front,
        "litellm_vip": vip}, f"""\
                _litellm_balanced: "{{{{ litellm_models | litellm_balanced({port}) }}}}"
""")
    text = out.read_text()
    text = re.sub(r"^user .*\n", "", text, flags=re.M)
    text = text.replace("/run/airlock-llm-front.pid", str(tmp_path / "nginx.pid"))
    text = text.replace("/var/lib/airlock-llm-front", str(tmp_path / "scratch"))
    text = re.sub(r"error_log [^;]*;", f"error_log {tmp_path / 'error.log'} warn;", text)
    (tmp_path / "scratch").mkdir()
    out.write_text(text)
    return out


def _post(port: int, i: int) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/completions", json.dumps({"n": i}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    doc = json.loads(r.read())
    conn.close()
    return r.status, doc


def test_a_refusing_server_is_skipped_and_no_request_runs_twice(tmp_path: Path) -> None:
    nginx = need("nginx")
    up = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=up.serve_forever, daemon=True).start()
    dead = free_port()  # nothing listens there: connections are refused
    models = [{"name": "chat", "model": "m", "api_base": [
        f"http://127.0.0.1:{dead}/v1", f"http://127.0.0.1:{up.server_address[1]}/v1"]},
              {"name": "solo", "model": "m", "api_base": "http://127.0.0.1:9/v1"}]
    litellm = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=litellm.serve_forever, daemon=True).start()
    base, front = free_port(), free_port()
    conf = _render(tmp_path, models, base, front, litellm.server_address[1])
    assert "solo" not in conf.read_text()  # one server: LiteLLM asks it directly
    check = subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-e", str(tmp_path / "e.log")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([nginx, "-c", str(conf), "-e", str(tmp_path / "e.log"),
                             "-g", "daemon off;"])
    try:
        for _ in range(50):
            try:
                http.client.HTTPConnection("127.0.0.1", base, timeout=1).connect()
                break
            except OSError:
                time.sleep(0.1)
        statuses = []
        for i in range(20):
            status, doc = _post(base, i)
            statuses.append(status)
            assert doc == {"echo": {"n": i}, "path": "/v1/completions"}
        # users' requests on the front's port reach the active release
        assert _post(front, 99) == (200, {"echo": {"n": 99}, "path": "/v1/completions"})
        assert litellm.hits == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        up.shutdown()
        litellm.shutdown()
    assert statuses == [200] * 20
    assert up.hits == 20  # each request answered once: none sent to a server twice


def test_the_config_sends_a_balanced_model_to_its_local_port() -> None:
    models = [{"name": "chat", "model": "smollm2-135m",
               "api_base": ["http://10.0.4.10:8000/v1", "http://10.0.4.11:8000/v1"]},
              {"name": "autocomplete", "model": "smollm2-135m",
               "api_base": ["http://10.0.4.10:8000/v1", "http://10.0.4.11:8000/v1"]},
              {"name": "solo", "model": "x", "api_base": "http://10.0.4.12:8000/v1"}]
    assert filters.litellm_balanced(models, 8400) == [
        {"name": "chat", "port": 8400, "servers": ["10.0.4.10:8000", "10.0.4.11:8000"]},
        {"name": "autocomplete", "port": 8401, "servers": ["10.0.4.10:8000", "10.0.4.11:8000"]}]
    cfg = filters.litellm_config(models, None, 8400)
    bases = {m["model_name"]: m["litellm_params"]["api_base"] for m in cfg["model_list"]}
    assert bases == {"chat": "http://127.0.0.1:8400/v1", "autocomplete":
                     "http://127.0.0.1:8401/v1", "solo": "http://10.0.4.12:8000/v1"}
    servers = ["http://10.0.4.10:8000", "http://10.0.4.11:8000", "http://10.0.4.12:8000"]
    assert filters.litellm_problems(models, [], {"rpm": 1, "tpm": 1, "daily_tokens": 1,
                                                 "parallel": 1}, {}, servers) == []


@pytest.mark.parametrize(("bases", "says"), [
    ([], "or a list of them"),
    (["http://10.0.4.10:8000/v1", "http://10.0.4.10:8000/v1"], "lists a server twice"),
    (["http://10.0.4.10:8000/v1", "http://10.0.4.99:8000/v1"], "no inference server"),
    (["http://10.0.4.10:8000/v1", "https://10.0.4.11:8000/v1"], "speaks http"),
])
def test_bad_server_lists_are_one_sentence(bases: list, says: str) -> None:
    servers = ["http://10.0.4.10:8000", "http://10.0.4.11:8000", "https://10.0.4.11:8000"]
    got = filters.litellm_problems([{"name": "chat", "model": "m", "api_base": bases}], [],
                                   {"rpm": 1, "tpm": 1, "daily_tokens": 1, "parallel": 1}, {},
                                   servers)
    assert any(says in p for p in got), got


SWITCH = ROLE / "files" / "airlock-llm-switch"


def _switch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    settings = {"slots": {"blue": 4001, "green": 4002}, "state": str(tmp_path / "active"),
                "upstream": str(tmp_path / "active.conf"),
                "front_config": str(tmp_path / "front.conf"), "front_unit": "x",
                "unit": "airlock-litellm@{slot}", "ready_timeout_s": 1}
    (tmp_path / "slots.json").write_text(json.dumps(settings))
    return subprocess.run([sys.executable, str(SWITCH), *args], capture_output=True,
                          text=True, env={"AIRLOCK_LLM_SLOTS": str(tmp_path / "slots.json"),
                                          "PATH": "/usr/bin:/bin"}, timeout=60)


def test_the_switch_refuses_a_rollback_with_nothing_to_go_back_to(tmp_path: Path) -> None:
    (tmp_path / "active").write_text("blue\n")
    (tmp_path / "blue").mkdir()
    (tmp_path / "blue" / "release").write_text("r1\n")
    r = _switch(tmp_path, "previous")
    assert r.returncode == 1 and "no previous release" in json.loads(r.stdout)["error"], r
    assert (tmp_path / "active").read_text() == "blue\n"  # nothing changed
    assert not (tmp_path / "active.conf").exists()


@pytest.mark.parametrize("args", [["purple"], [], ["blue", "green"]])
def test_the_switch_says_how_to_use_it(tmp_path: Path, args: list) -> None:
    r = _switch(tmp_path, *args)
    assert r.returncode == 2 and r.stdout == "", r
    assert not (tmp_path / "active").exists()


def test_the_front_also_answers_on_the_pairs_shared_address(tmp_path: Path) -> None:
    """An LLM gateway pair's VIP (litellm_vip): the front listens on it beside the host's
    own address. 127.0.0.2 (loopback's) stands in for the VIP keepalived brings."""
    nginx = need("nginx")
    litellm = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=litellm.serve_forever, daemon=True).start()
    front = free_port()
    conf = _render(tmp_path, [], free_port(), front, litellm.server_address[1], vip="127.0.0.2")
    assert f"listen 127.0.0.2:{front};" in conf.read_text()
    proc = subprocess.Popen([nginx, "-c", str(conf), "-e", str(tmp_path / "e.log"),
                             "-g", "daemon off;"])
    try:
        answers = {}
        for address in ("127.0.0.1", "127.0.0.2"):
            for _ in range(200):  # nginx starting on a busy machine
                try:
                    http.client.HTTPConnection(address, front, timeout=1).connect()
                    break
                except OSError:
                    time.sleep(0.1)
            conn = http.client.HTTPConnection(address, front, timeout=10)
            conn.request("POST", "/v1/chat/completions", json.dumps({"n": address}),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            answers[address] = (r.status, json.loads(r.read())["echo"])
            conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        litellm.shutdown()
    assert answers == {a: (200, {"n": a}) for a in ("127.0.0.1", "127.0.0.2")}
    assert litellm.hits == 2
