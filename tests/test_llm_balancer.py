"""The litellm role's balancer for a model with several inference servers, rendered by
Ansible from the role's template and run by a real nginx on loopback: every request of a
run answered while one server refuses connections, none sent twice, and the order of the
servers in the inventory does not matter. The lab kills a real inference server under load
(test_ha.py)."""

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


def _render(tmp_path: Path, models: list[dict], port: int) -> Path:
    """The role's template, then its fixed root paths moved into TMP_PATH (the test runs
    nginx as whoever runs it)."""
    out = tmp_path / "balancer.conf"
    proc = localplay.play(tmp_path, f"""
        - hosts: localhost
          gather_facts: false
          vars_files: [{ROLE / 'defaults/main.yml'}]
          tasks:
            - ansible.builtin.template:
                src: {ROLE / 'templates/balancer.conf.j2'}
                dest: {out}
                mode: "0644"
              vars:
                _litellm_balanced: "{{{{ litellm_models | litellm_balanced({port}) }}}}"
        """, {"litellm_models": models},
        env={"ANSIBLE_FILTER_PLUGINS": str(ROLE / "filter_plugins")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    text = out.read_text()
    text = re.sub(r"^user .*\n", "", text, flags=re.M)
    text = text.replace("/run/airlock-llm-balancer.pid", str(tmp_path / "nginx.pid"))
    text = text.replace("/var/lib/airlock-llm-balancer", str(tmp_path / "scratch"))
    text = re.sub(r"error_log [^;]*;", f"error_log {tmp_path / 'error.log'} warn;", text)
    (tmp_path / "scratch").mkdir()
    out.write_text(text)
    return out


def test_a_refusing_server_is_skipped_and_no_request_runs_twice(tmp_path: Path) -> None:
    nginx = need("nginx")
    up = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=up.serve_forever, daemon=True).start()
    dead = free_port()  # nothing listens there: connections are refused
    models = [{"name": "chat", "model": "m", "api_base": [
        f"http://127.0.0.1:{dead}/v1", f"http://127.0.0.1:{up.server_address[1]}/v1"]},
              {"name": "solo", "model": "m", "api_base": "http://127.0.0.1:9/v1"}]
    base = free_port()
    conf = _render(tmp_path, models, base)
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
            conn = http.client.HTTPConnection("127.0.0.1", base, timeout=10)
            conn.request("POST", "/v1/completions", json.dumps({"n": i}),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            doc = json.loads(r.read())
            statuses.append(r.status)
            assert doc == {"echo": {"n": i}, "path": "/v1/completions"}
            conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        up.shutdown()
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
