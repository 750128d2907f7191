"""Requests to the lab's LLM gateway (LiteLLM on ai1) as a user's workbench makes them:
Node's fetch inside the user's code-server container on ide1, with the user's own key."""

from __future__ import annotations

import json
import shlex

from conftest import lab_ssh
from installer.acceptance.probes import FETCH


def llm_key(demo: dict, user: str) -> str:
    return (demo["site"] / "secrets" / "litellm" / "users" / f"{user}.key").read_text().strip()


def llm_url(demo: dict) -> str:
    return f"http://{demo['state']['hosts']['ai1']['zone_address']}:4000/v1"


def llm_posts(demo: dict, user: str, path: str, body: dict, key: str | None,
              times: int = 1) -> list[tuple[int, str]]:
    """TIMES parallel POSTs of BODY to PATH from USER's workbench with KEY (none: no
    Authorization header): [(status, text)]. The key and the body go on stdin, as the
    acceptance probes send them: sudo logs command lines, and those logs are in the store."""
    r = lab_ssh(demo, "ide1", f"docker exec -i code-server-{user} node -e {shlex.quote(FETCH)} "
                f"{shlex.quote(llm_url(demo) + path)} {times} 1000000",
                data=f"{key or ''}\n{json.dumps(body)}".encode(), timeout=240)
    try:
        got = [(status, text) for status, text in json.loads(r.stdout)]
    except ValueError:
        raise AssertionError(r.stdout + r.stderr) from None
    assert all(isinstance(status, int) for status, _ in got), got
    return got


def llm_post(demo: dict, user: str, path: str, body: dict, key: str | None) -> tuple[int, dict]:
    ((status, text),) = llm_posts(demo, user, path, body, key)
    return status, json.loads(text) if text.startswith("{") else {"text": text}
