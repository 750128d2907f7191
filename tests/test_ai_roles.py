"""The AI path's input checks and derived values, without a lab: the vllm role's filters
(problems, the release's weights, tensor parallel, each engine's command line), the model
each inference host serves, npm's platform filter and the sha512 checksum npm's tarball is
fetched with. The lab proof is tests/test_ai.py."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

REPO = Path(__file__).resolve().parents[1]


def _load(path: str, name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


vllm = _load("roles/vllm/filter_plugins/vllm.py", "vllm_filters")
llm = _load("playbooks/filter_plugins/airlock_llm.py", "airlock_llm_filters")
cs = _load("roles/code_server/filter_plugins/code_server.py", "code_server_filters")

DIGEST = "sha256:" + "a" * 64
IMAGE = f"repo1:5000/vllm-openai@{DIGEST}"
MODEL = {"served": "qwen-coder", "pack": "qwen2.5-coder-7b", "version": "1.0"}


def test_a_good_vllm_host_has_no_problems() -> None:
    assert vllm.vllm_problems(MODEL, "vllm", IMAGE, ["0000:01:00.0"]) == []
    assert vllm.vllm_problems({**MODEL, "file": "m.gguf"}, "llamacpp", IMAGE, []) == []


@pytest.mark.parametrize("model, engine, image, gpus, words", [
    (MODEL, "vllm", IMAGE, [], "no NVIDIA GPU"),
    (MODEL, "tgi", IMAGE, ["x"], "vllm or llamacpp"),
    (MODEL, "vllm", "repo1:5000/vllm-openai:latest", ["x"], "REGISTRY/NAME@sha256"),
    ({**MODEL, "served": "a b"}, "vllm", IMAGE, ["x"], "vllm_model.served"),
    ({"served": "x", "pack": "y"}, "vllm", IMAGE, ["x"], "vllm_model.version"),
    (MODEL, "llamacpp", IMAGE, [], "GGUF file"),
    ("qwen", "vllm", IMAGE, ["x"], "must be a mapping"),
])
def test_bad_vllm_input_is_one_sentence_each(model, engine, image, gpus, words) -> None:
    problems = vllm.vllm_problems(model, engine, image, gpus)
    assert any(words in p for p in problems), problems


def _release() -> tuple[dict, dict]:
    index = {"manifests": [
        {"digest": "sha256:" + "1" * 64, "annotations": {"dev.airlock.kind": "image",
                                                          "dev.airlock.name": "vllm-openai"}},
        {"digest": "sha256:" + "2" * 64, "annotations": {
            "dev.airlock.kind": "model", "dev.airlock.name": "smollm2",
            "org.opencontainers.image.version": "0.1.2"}}]}
    manifests = {"sha256:" + "2" * 64: {"layers": [
        {"digest": "sha256:" + "3" * 64, "size": 98362432,
         "annotations": {"org.opencontainers.image.title": "SmolLM2-135M-Instruct.Q4_1.gguf"}}]}}
    return index, manifests


def test_the_release_names_the_weights_and_their_sha256() -> None:
    index, manifests = _release()
    assert vllm.vllm_model_manifests(index) == ["sha256:" + "2" * 64]
    assert vllm.vllm_release_files(index, manifests, "smollm2", "0.1.2") == [
        {"file": "SmolLM2-135M-Instruct.Q4_1.gguf", "sha256": "3" * 64, "size": 98362432}]


def test_a_model_missing_from_the_release_is_named_with_what_it_has() -> None:
    index, manifests = _release()
    with pytest.raises(AnsibleFilterError, match=r"no model smollm2 0.2.0 \(it has: smollm2 "
                                                 r"0.1.2\)"):
        vllm.vllm_release_files(index, manifests, "smollm2", "0.2.0")


@pytest.mark.parametrize("setting, gpus, want", [
    ("auto", [], 1), ("auto", ["a"], 1), ("auto", list("abc"), 2), ("auto", list("abcdefgh"), 8),
    (2, list("abcd"), 2), ("4", list("abcd"), 4)])
def test_tensor_parallel_takes_the_hosts_gpus(setting, gpus, want) -> None:
    assert vllm.vllm_tensor_parallel(setting, gpus) == want


@pytest.mark.parametrize("setting, words", [(8, "needs 8 GPUs"), ("two", "a number or auto"),
                                            (0, "needs 0 GPUs")])
def test_tensor_parallel_refuses_what_the_host_cannot_give(setting, words) -> None:
    with pytest.raises(AnsibleFilterError, match=words):
        vllm.vllm_tensor_parallel(setting, ["a", "b"])


def test_each_engine_gets_its_own_command_line() -> None:
    opts = {"tp": 2, "gpu_memory_utilization": 0.9, "max_model_len": 8192, "n_ctx": 2048,
            "threads": 2, "extra": []}
    args = vllm.vllm_args(MODEL, "vllm", "10.0.4.10", 8000, opts)
    assert args[:4] == ["--model", "/models/qwen2.5-coder-7b", "--served-model-name", "qwen-coder"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--host") + 1] == "10.0.4.10"
    lc = vllm.vllm_args({**MODEL, "file": "m.gguf"}, "llamacpp", "10.0.4.10", 8000, opts)
    assert lc[:4] == ["--model", "/models/qwen2.5-coder-7b/m.gguf", "--model_alias", "qwen-coder"]
    assert "--tensor-parallel-size" not in lc


AI = {"chat": {"model": "big", "group": "chat_gpu"},
      "edit": {"model": "big", "group": "chat_gpu"},
      "autocomplete": {"model": "small", "group": "completion_gpu"}}
WEIGHTS = {"big": {"pack": "qwen-32b", "version": "1"},
           "small": {"pack": "qwen-7b", "version": "1", "file": "q.gguf"}}


def test_each_inference_host_serves_the_one_model_routed_to_its_groups() -> None:
    assert llm.airlock_host_model(AI, WEIGHTS, ["chat_gpu"], "gpu1") == {
        "served": "big", "pack": "qwen-32b", "version": "1"}
    assert llm.airlock_host_model(AI, WEIGHTS, ["completion_gpu", "ai"], "gpu2") == {
        "served": "small", "pack": "qwen-7b", "version": "1", "file": "q.gguf"}


@pytest.mark.parametrize("groups, weights, words", [
    (["chat_gpu", "completion_gpu"], WEIGHTS, "would serve big, small"),
    (["repo"], WEIGHTS, "routes no model"),
    (["chat_gpu"], {"small": WEIGHTS["small"]}, "airlock_ai_weights.big needs pack"),
])
def test_a_host_with_no_model_or_two_is_refused(groups, weights, words) -> None:
    with pytest.raises(AnsibleFilterError, match=words):
        llm.airlock_host_model(AI, weights, groups, "gpu1")


def test_npm_carries_only_what_the_target_platform_installs() -> None:
    from installer.bundle.sources.packages import npm_fits

    assert npm_fits({}, "amd64")
    assert npm_fits({"os": ["linux"], "cpu": ["x64"], "libc": ["glibc"]}, "amd64")
    assert not npm_fits({"os": ["darwin"], "cpu": ["arm64"]}, "amd64")
    assert not npm_fits({"os": ["linux"], "cpu": ["arm64"]}, "amd64")
    assert not npm_fits({"os": ["linux"], "cpu": ["x64"], "libc": ["musl"]}, "amd64")
    assert not npm_fits({"os": ["!linux"]}, "amd64")
    assert npm_fits({"os": ["!win32"]}, "amd64")
    assert npm_fits({"os": ["linux"], "cpu": ["arm64"]}, "arm64")


def test_npm_integrity_becomes_get_urls_checksum() -> None:
    data = b"npm tarball"
    sri = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    assert cs.code_server_sri_checksum(sri) == "sha512:" + hashlib.sha512(data).hexdigest()
    for bad in ("sha1-abc", "sha512-not*base64"):
        with pytest.raises(AnsibleFilterError):
            cs.code_server_sri_checksum(bad)


def test_the_load_driver_counts_tokens_first_tokens_and_refusals() -> None:
    """installer/lab/llmload.py against a loopback server that answers like an OpenAI
    server: completions (usage), streamed chat (SSE deltas), and 429 for every fifth."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from installer.lab import llmload

    seen = {"n": 0, "auth": set()}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):  # type: ignore[no-untyped-def]
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen["n"] += 1
            seen["auth"].add(self.headers.get("Authorization"))
            if seen["n"] % 5 == 0:
                self.send_response(429)
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            if body.get("stream"):
                for word in ("a", "b", "c"):
                    chunk = {"choices": [{"delta": {"content": word}}]}
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.write(b"data: [DONE]\n\n")
            else:
                self.wfile.write(json.dumps({"choices": [{"text": "x"}],
                                             "usage": {"completion_tokens": 7}}).encode())

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/v1"
        r = llmload.run(url, "sk-test", "m", "completion", 2, 10, 30, 16)
        assert (r["requests"], r["ok"], r["errors"]) == (10, 8, {"429": 2})
        assert r["tokens"] == 56 and r["total_s"]["p95"] >= r["total_s"]["p50"] > 0
        c = llmload.run(url, "", "m", "chat", 1, 4, 30, 16)
        assert c["ok"] + sum(c["errors"].values()) == 4 and c["tokens"] == 3 * c["ok"]
        assert 0 < c["first_token_s"]["p50"] <= c["total_s"]["p50"]
        assert seen["auth"] == {"Bearer sk-test", None}
        capped = llmload.run(url, "", "m", "completion", 1000, 1, 30, 1)
        assert capped["users"] == llmload.MAX_USERS
    finally:
        srv.shutdown()
        srv.server_close()


def test_keys_are_made_only_for_safe_names(tmp_path: Path) -> None:
    """An unsafe name gets no key file (the code_server role's checks refuse it by name,
    before anything changes); a safe one gets its key once, 0600, the same after."""
    first = llm.airlock_llm_users(["alice", "Bob;rm -rf"], str(tmp_path))
    assert [u["name"] for u in first] == ["alice"]
    key = tmp_path / "secrets" / "litellm" / "users" / "alice.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert llm.airlock_llm_users(["alice"], str(tmp_path)) == first
    assert sorted(p.name for p in key.parent.iterdir()) == ["alice.key"]
