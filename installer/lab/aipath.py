"""The AI path on a deployed site, as a user meets it: Continue's CLI in a user's workbench
asks the model through LiteLLM with that user's key; and the latencies of code completion
and chat, measured on the LLM gateway host directly against the inference server and
through LiteLLM in the same run (installer/lab/llmload.py, shipped over SSH and run with
the host's python3). Used by `airlock demo` and benchmarks/ai_bench.py.

Seed 001 §2.4/§7.1: completion P95 < 400 ms (target 200 ms), chat P95 < 5 s (target 3 s).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from installer.deploy import inventory as inv_mod
from installer.deploy.ssh import Remote
from installer.errors import HostError

THRESHOLDS = {"completion": {"p95_max_s": 0.4, "p95_target_s": 0.2},
              "chat": {"p95_max_s": 5.0, "p95_target_s": 3.0}}
CLI = "/opt/airlock/continue-cli/bin/cn"
LOAD = Path(__file__).with_name("llmload.py")


def user_key(site: Path, user: str) -> str:
    """USER's LiteLLM key, or with USER None the master key (the admin: no user limits)."""
    path = (site / "secrets" / "litellm" / "users" / f"{user}.key" if user
            else site / "secrets" / "litellm" / "master.key")
    try:
        key = path.read_text().strip()
    except OSError as e:
        raise HostError(f"no LiteLLM key for {user or 'the admin'} ({path}: {e.strerror})",
                        hint="deploy first: the key is made by the AI path's play") from None
    return key if user else "sk-" + key


def continue_answer(root: Path, inventory: Path, site: Path, user: str, question: str
                    ) -> str:
    """Continue's CLI in USER's workbench, with the config the role wrote."""
    inv = inv_mod.load(inventory, root)
    ide = inv.first("ide")
    with Remote(ide, site) as r:
        rc, out, err = r.run(["docker", "exec", f"code-server-{user}", CLI, "-p", question,
                              "--readonly", "--config", "/home/coder/.continue/config.yaml"],
                             check=False)
    if rc != 0:
        raise HostError(f"Continue's CLI in {user}'s workbench on {ide.name} failed ({rc}): "
                        f"{(err or out).strip()[-400:]}")
    return out.strip()


def _load(r: Remote, url: str, key: str, model: str, kind: str, users: int, requests: int,
          duration: float, max_tokens: int) -> dict[str, Any]:
    args = ["--url", url, "--model", model, "--kind", kind, "--users", str(users),
            "--requests", str(requests), "--duration", str(duration),
            "--max-tokens", str(max_tokens)]
    # the key travels in the script on stdin, never in a process list
    script = f"import os\nos.environ['LLMLOAD_KEY'] = {key!r}\n".encode() + LOAD.read_bytes()
    rc, out, err = r.run(["sh", "-c", "exec python3 - " + " ".join(map(shlex.quote, args))],
                         check=False, stdin=script)
    if rc != 0:
        raise HostError(f"the load run on {r.name} failed ({rc}): {err.strip()[-400:]}")
    return json.loads(out)


def latencies(root: Path, inventory: Path, site: Path, *, user: str | None, users: int = 1,
              requests: int = 20, chat_requests: int = 5, duration: float = 120,
              completion_tokens: int = 16, chat_tokens: int = 128,
              say=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Completion and chat, direct (inference server) and through LiteLLM, from the LLM
    gateway host; each kind's direct run first, then the gateway's, same settings. With
    USER, that user's key (their limits apply); with None, the admin's (none apply)."""
    inv = inv_mod.load(inventory, root)
    gw = inv.first("llm_gateway")
    address = gw.vars.get("airlock_zone_address") or gw.address
    key = user_key(site, user)
    out: dict[str, Any] = {"users": users, "stand_in": None, "thresholds": THRESHOLDS,
                           "key": user or "admin"}
    with Remote(gw, site) as r:
        rc, engine, _ = r.run(["docker", "inspect", "-f",
                               '{{index .Config.Labels "dev.airlock.engine"}}', "vllm"],
                              check=False)
        out["engine"] = engine.strip() if rc == 0 else "unknown"
        if out["engine"] == "llamacpp":
            out["stand_in"] = ("llama.cpp on a CPU stands in for vLLM on a GPU: these "
                               "figures say nothing about a GPU site's latency")
        for kind, name, n, tokens in (("completion", "autocomplete", requests,
                                       completion_tokens),
                                      ("chat", "chat", chat_requests, chat_tokens)):
            say(f"{kind}: {n} requests x {users} user(s), {tokens} tokens, direct then "
                "through LiteLLM")
            direct = _load(r, f"http://{address}:8000/v1", "", "auto", kind, users, n,
                           duration, tokens)
            gateway = _load(r, f"http://{address}:4000/v1", key, name, kind, users, n,
                            duration, tokens)
            out[kind] = {"direct": direct, "litellm": gateway}
    return out


def overhead(m: dict[str, Any], kind: str, p: str = "p50") -> float | None:
    d = (m[kind]["direct"]["total_s"] or {}).get(p)
    g = (m[kind]["litellm"]["total_s"] or {}).get(p)
    return g / d if d and g else None
