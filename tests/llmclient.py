"""Requests to the lab's LLM gateway (LiteLLM on ai1) as a user's workbench makes them:
Node's fetch inside the user's code-server container on ide1, with the user's own key."""

from __future__ import annotations

import json
import shlex

from conftest import lab_ssh


def llm_key(demo: dict, user: str) -> str:
    return (demo["site"] / "secrets" / "litellm" / "users" / f"{user}.key").read_text().strip()


def llm_url(demo: dict) -> str:
    return f"http://{demo['state']['hosts']['ai1']['zone_address']}:4000/v1"


# Node's fetch in a user's workbench (the image has node, not curl): POST PATH BODY with
# the key in $KEY; prints "STATUS JSON".
FETCH = ("const [u,b]=process.argv.slice(1);"
         "fetch(u,{method:'POST',headers:{'content-type':'application/json',"
         "...(process.env.KEY?{authorization:'Bearer '+process.env.KEY}:{})},body:b})"
         ".then(async r=>{console.log(r.status,await r.text())})"
         ".catch(e=>{console.log('ERR',e.message);process.exit(2)})")


def llm_post(demo: dict, user: str, path: str, body: dict, key: str | None) -> tuple[int, dict]:
    env = f"-e KEY={shlex.quote(key)} " if key else ""
    r = lab_ssh(demo, "ide1", f"docker exec {env}code-server-{user} node -e {shlex.quote(FETCH)} "
                f"{shlex.quote(llm_url(demo) + path)} {shlex.quote(json.dumps(body))}",
                timeout=120)
    status, _, text = r.stdout.strip().partition(" ")
    assert status.isdigit(), r.stdout + r.stderr
    return int(status), json.loads(text) if text.startswith("{") else {"text": text}
