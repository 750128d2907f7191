"""The litellm role's logic in Python: the input checked (each problem said in one
sentence, before anything changes), LiteLLM's config, and the keys file (users by the
SHA-256 of their key, with their limits)."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "files"))
import airlock_dlp  # the role's own rules module, as the gateway runs it

LIMITS = ("rpm", "tpm", "daily_tokens", "parallel")
PRICES = ("input_cost_per_token", "output_cost_per_token")
MODEL_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
# model names LiteLLM's token counter would fetch a tokenizer for from the internet
PHONES_HOME = re.compile(r"llama-?[23]|command-r|replicate", re.I)


def _whole(value: Any) -> bool:
    # an int (Ansible 2.19 hands inventory numbers over as tagged int subclasses), never a
    # bool or a string
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def litellm_problems(models: Any, users: Any, defaults: Any, dlp: Any,
                     servers: Any = None) -> list[str]:
    """What is wrong with the role's input. SERVERS, when given, are the inference
    servers' origins (scheme://host:port) every model must route to."""
    out: list[str] = []
    if not isinstance(models, list) or not models:
        return ["litellm_models is empty: give at least the chat model"]
    seen: set[str] = set()
    for i, m in enumerate(models):
        at = f"litellm_models[{i}]"
        if not isinstance(m, dict):
            out.append(f"{at} must be a mapping (name, model, api_base)")
            continue
        name = m.get("name")
        if not isinstance(name, str) or not MODEL_NAME.match(name):
            out.append(f"{at}.name {name!r} must be lower-case letters, digits, . _ -")
            continue
        at = f"litellm_models[{i}] ({name})"
        if name in seen:
            out.append(f"{at}: a second model with this name")
        seen.add(name)
        unknown = set(m) - {"name", "model", "api_base", "api_key", *PRICES}
        if unknown:
            out.append(f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
        served = m.get("model")
        if not isinstance(served, str) or not served:
            out.append(f"{at}.model must be the name the inference server serves it under")
        elif PHONES_HOME.search(served) or PHONES_HOME.search(name):
            out.append(f"{at}: names with llama-2/llama-3, command-r or replicate make "
                       "LiteLLM fetch a tokenizer from the internet; serve it under "
                       "another name (--served-model-name)")
        bases = m.get("api_base")
        if isinstance(bases, str):
            bases = [bases]
        if not isinstance(bases, list) or not bases:
            out.append(f"{at}.api_base must be an inference server's OpenAI API, "
                       "http(s)://HOST:PORT/v1, or a list of them (balanced, with retry)")
            bases = []
        elif len(set(map(str, bases))) != len(bases):
            out.append(f"{at}.api_base lists a server twice")
        for base in bases:
            parts = urlsplit(base) if isinstance(base, str) else None
            if not parts or parts.scheme not in ("http", "https") or not parts.hostname \
                    or parts.path.rstrip("/") != "/v1":
                out.append(f"{at}.api_base {base!r} must be an inference server's OpenAI API, "
                           "http(s)://HOST:PORT/v1")
            elif servers is not None and f"{parts.scheme}://{parts.netloc}" not in servers:
                out.append(f"{at} is routed to {parts.scheme}://{parts.netloc}, which is no "
                           f"inference server of this site (they are: "
                           f"{', '.join(sorted(servers)) or 'none'})")
            elif len(bases) > 1 and parts.scheme != "http":
                out.append(f"{at}.api_base {base!r}: the balancer speaks http to the "
                           "inference servers (their zone only)")
        for price in PRICES:
            if price in m and (isinstance(m[price], bool)
                               or not isinstance(m[price], int | float) or m[price] < 0):
                out.append(f"{at}.{price} must be a number of at least 0, got {m[price]!r}")
    if not isinstance(defaults, dict):
        out.append("litellm_default_limits must be a mapping of rpm, tpm, daily_tokens, "
                   "parallel")
        defaults = {}
    for k in LIMITS:
        if not _whole(defaults.get(k)):
            out.append(f"litellm_default_limits.{k} must be a whole number above 0, got "
                       f"{defaults.get(k)!r}")
    if not isinstance(users, list):
        out.append("litellm_users must be a list")
        users = []
    names: set[str] = set()
    for i, u in enumerate(users):
        name = u.get("name") if isinstance(u, dict) else None
        at = f"litellm_users[{i}]" + (f" ({name})" if isinstance(name, str) else "")
        if not isinstance(name, str) or not USER_NAME.match(name):
            out.append(f"{at}: name {name!r} is not a user name")
            continue
        if name in names:
            out.append(f"{at}: listed twice")
        names.add(name)
        key = u.get("key")
        if not isinstance(key, str) or len(key) < 32:
            out.append(f"{at}: key must be a secret of at least 32 characters")
        for k in LIMITS:
            if k in u and not _whole(u[k]):
                out.append(f"{at}.{k} must be a whole number above 0, got {u[k]!r}")
        unknown = set(u) - {"name", "key", *LIMITS}
        if unknown:
            out.append(f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        airlock_dlp.compile_rules(airlock_dlp.policy_rules(dlp or {}, "litellm_dlp"),
                                  "litellm_dlp rules")
    except airlock_dlp.RuleError as e:
        out.append(str(e))
    except (AttributeError, TypeError):
        out.append("litellm_dlp must be a mapping (builtin, disable, actions, rules)")
    return out


def litellm_keys(users: list[dict[str, Any]], defaults: dict[str, int]) -> dict[str, Any]:
    """The keys file: each user's key only as its SHA-256, with their limits."""
    return {"users": {u["name"]: {"sha256": hashlib.sha256(u["key"].encode()).hexdigest(),
                                  **{k: u.get(k, defaults[k]) for k in LIMITS}}
                      for u in users}}


def litellm_balanced(models: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    """The models served by more than one inference server, each with the local port of its
    balancer (PORT, PORT+1, ...) and its servers (HOST:PORT)."""
    out = []
    for m in models:
        bases = m["api_base"] if isinstance(m["api_base"], list) else [m["api_base"]]
        if len(bases) > 1:
            out.append({"name": m["name"], "port": int(port) + len(out),
                        "servers": [urlsplit(b).netloc for b in bases]})
    return out


def litellm_config(models: list[dict[str, Any]], redis: dict[str, Any] | None = None,
                   balancer_port: int = 0, retries: int = 2) -> dict[str, Any]:
    """LiteLLM's config.yaml: every model routed to its inference server (LiteLLM's
    ``openai/`` provider serves both /v1/chat/completions and /v1/completions), airlock's
    auth, gateway callback and DLP guardrail; no database, nothing that calls home. With
    REDIS (host, port), the limiter's counters are shared there (every instance sees the
    same), and a limit Redis cannot confirm is refused (fail closed). A model with several
    servers is routed to its local balancer (litellm_balanced: nginx, which retries a
    server that refuses or does not answer on the next one); a request that fails after it
    was sent (its server died under it) is retried RETRIES times by LiteLLM."""
    model_list = []
    local = {b["name"]: b["port"] for b in litellm_balanced(models, balancer_port)}
    for m in models:
        base = (f"http://127.0.0.1:{local[m['name']]}/v1" if m["name"] in local
                else m["api_base"][0] if isinstance(m["api_base"], list) else m["api_base"])
        params = {"model": f"openai/{m['model']}", "api_base": base,
                  "api_key": m.get("api_key") or "none"}
        params.update({p: m[p] for p in PRICES if p in m})
        model_list.append({"model_name": m["name"], "litellm_params": params})
    general: dict[str, Any] = {"master_key": "os.environ/LITELLM_MASTER_KEY",
                               "custom_auth": "airlock_litellm.authenticate"}
    if redis:
        general["coordination_redis"] = {"host": redis["host"], "port": int(redis["port"]),
                                         "password": "os.environ/AIRLOCK_REDIS_PASSWORD"}
        general["fail_closed_rate_limit_enforcement"] = True
    return {"model_list": model_list,
            "router_settings": {"num_retries": int(retries), "retry_after": 0},
            "general_settings": general,
            "litellm_settings": {"callbacks": ["airlock_litellm.gateway"],
                                 "turn_off_message_logging": True},
            "guardrails": [{"guardrail_name": "airlock-dlp",
                            "litellm_params": {"guardrail": "airlock_litellm.AirlockDLP",
                                               "mode": "pre_call", "default_on": True}}]}


def litellm_dlp_rules(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules the guardrail loads: the policy resolved (checked by the role first)."""
    return airlock_dlp.policy_rules(policy or {}, "litellm_dlp")


def litellm_instance_problems(instances: int, workers: Any, redis: Any) -> list[str]:
    """The limiter counts in each process's memory: more than one LiteLLM process (hosts x
    workers) needs the coordination Redis, or every limit and budget multiplies."""
    out = []
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        return [f"litellm_workers must be a whole number above 0, got {workers!r}"]
    if redis:
        if not isinstance(redis, dict) or not redis.get("host") or not _whole(
                redis.get("port")):
            out.append("litellm_redis needs host and port (a whole number)")
    elif instances * workers > 1:
        out.append(f"{instances} LiteLLM host(s) x {workers} worker(s) would each count the "
                   "users' limits and budgets on their own (in memory); give litellm_redis "
                   "(host, port; the password from the vault) so they share one count, or "
                   "run one instance")
    return out


PRISMA_ENGINES = ("query_engine", "schema_engine")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def litellm_database_problems(url: Any, engines: Any) -> list[str]:
    """The database path (spend logs in PostgreSQL) is taken only with Prisma's engines
    carried in the bundle: otherwise Prisma fetches them from its own site at start."""
    if not url:
        return []
    out = []
    if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
        out.append("litellm_database_url must be a postgresql:// URL")
    if not isinstance(engines, dict) or not engines:
        return [*out, "litellm_database_url needs litellm_prisma_engines (query_engine and "
                      "schema_engine, each {url, sha256} from the bundle's files): without "
                      "them Prisma downloads its engines from binaries.prisma.sh at start, "
                      "which a closed network cannot reach, and LiteLLM stops"]
    for name in PRISMA_ENGINES:
        e = engines.get(name)
        if not isinstance(e, dict) or not str(e.get("url", "")).startswith("https://") \
                or not SHA256.match(str(e.get("sha256", ""))):
            out.append(f"litellm_prisma_engines.{name} needs url (https://, the repo host's "
                       "/files/) and sha256 (64 hex digits)")
    return out


def litellm_env(master_key: str, database_url: str, engines_dir: str,
                redis_password: str = "") -> str:
    """The service's secret environment (a 0600 file only systemd reads)."""
    lines = [f"LITELLM_MASTER_KEY={master_key}"]
    if redis_password:
        lines.append(f"AIRLOCK_REDIS_PASSWORD={redis_password}")
    if database_url:
        lines += [f"DATABASE_URL={database_url}",
                  f"PRISMA_QUERY_ENGINE_LIBRARY={engines_dir}/libquery_engine.so.node",
                  f"PRISMA_SCHEMA_ENGINE_BINARY={engines_dir}/schema-engine",
                  "PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING=1",
                  "PRISMA_HIDE_UPDATE_MESSAGE=1", "CHECKPOINT_DISABLE=1"]
    else:
        lines.append("DISABLE_SCHEMA_UPDATE=True")
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"litellm_problems": litellm_problems, "litellm_keys": litellm_keys,
                "litellm_config": litellm_config, "litellm_dlp_rules": litellm_dlp_rules,
                "litellm_balanced": litellm_balanced,
                "litellm_database_problems": litellm_database_problems,
                "litellm_instance_problems": litellm_instance_problems,
                "litellm_env": litellm_env}
