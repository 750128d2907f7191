"""The AI path's inventory data turned into the litellm role's input: models routed to
their inference hosts, and one key per user kept on the controller."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

SAFE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def airlock_litellm_models(models: dict[str, Any], hostvars: Any, groups: dict[str, list],
                           port: int) -> list[dict[str, Any]]:
    """airlock_ai_models (name -> {model, group}) as litellm_models: each routed to the
    hosts of its group, at their zone addresses (one: that server; several: a list, which
    the litellm role balances with retry)."""
    out = []
    for name, m in (models or {}).items():
        if not isinstance(m, dict) or not m.get("model") or not m.get("group"):
            raise AnsibleFilterError(f"airlock_ai_models.{name} needs model (the name its "
                                     "server serves it under) and group (chat_gpu or "
                                     "completion_gpu)")
        hosts = groups.get(m["group"]) or []
        if not hosts:
            raise AnsibleFilterError(f"airlock_ai_models.{name} is routed to group "
                                     f"{m['group']}, which has no hosts in this inventory")
        bases = [f"http://{hostvars[h].get('airlock_zone_address')}:{port}/v1" for h in hosts]
        entry = {"name": name, "model": m["model"],
                 "api_base": bases[0] if len(bases) == 1 else bases}
        entry.update({k: m[k] for k in ("input_cost_per_token", "output_cost_per_token")
                      if k in m})
        out.append(entry)
    return out


def airlock_llm_users(names: list[str], site_dir: str) -> list[dict[str, str]]:
    """Each user's LiteLLM key: SITE/secrets/litellm/users/NAME.key (0600), made the first
    time (sk- and 43 URL-safe characters), read after that."""
    folder = Path(site_dir) / "secrets" / "litellm" / "users"
    out = []
    for name in names:
        if not isinstance(name, str) or not SAFE.match(name):
            continue  # the code_server role's checks refuse it, naming it, before any change
        path = folder / f"{name}.key"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("sk-" + secrets.token_urlsafe(32) + "\n")
            os.replace(tmp, path)
        out.append({"name": name, "key": path.read_text().strip()})
    return out


def airlock_host_model(models: dict[str, Any], weights: dict[str, Any], group_names: list[str],
                       host: str) -> dict[str, Any]:
    """The one model this inference host serves (vLLM serves one per server): the served
    name that airlock_ai_models routes to a group of this host, with its weights."""
    served = sorted({m["model"] for m in (models or {}).values()
                     if isinstance(m, dict) and m.get("group") in group_names and m.get("model")})
    if not served:
        raise AnsibleFilterError(f"{host} is in {', '.join(group_names)} but airlock_ai_models "
                                 "routes no model to these groups")
    if len(served) > 1:
        raise AnsibleFilterError(f"{host} would serve {', '.join(served)}; one inference "
                                 "server serves one model: give each its own host and group")
    w = (weights or {}).get(served[0])
    if not isinstance(w, dict) or not w.get("pack") or not w.get("version"):
        raise AnsibleFilterError(f"airlock_ai_weights.{served[0]} needs pack and version "
                                 "(the model artifact in the bundle that holds its weights)")
    return {"served": served[0], **{k: str(w[k]) for k in ("pack", "version", "file")
                                    if k in w}}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"airlock_litellm_models": airlock_litellm_models,
                "airlock_llm_users": airlock_llm_users,
                "airlock_host_model": airlock_host_model}
