"""airlock's hooks into the LiteLLM proxy, loaded by its config (they sit beside it):

- ``authenticate``: LiteLLM's custom auth. No database (LiteLLM's Prisma toolchain cannot
  be had in a closed network), so a user's key is looked up by its SHA-256 in the keys
  file the role renders (0600): the user, their rpm/tpm/parallel limits (enforced by
  LiteLLM's own limiter) and their daily token budget. The master key is the admin.
- ``gateway``: the daily token budget (checked before each call, counted from each
  answer's usage, in LiteLLM's cache: in memory, or Redis where the site has one) and the
  audit record of every request, success or refusal: who, which model, tokens, status,
  time; never the prompt, the answer or a key.
- ``AirlockDLP``: the guardrail that runs the site's DLP rules (airlock_dlp.py) over every
  prompt before it reaches a model, refusing or masking by rule, and auditing which rule
  fired for whom (never the text that matched).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import logging.handlers
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

sys.path.insert(0, str(Path(__file__).resolve().parent))
import airlock_dlp  # beside this file: LiteLLM loads this module by its path

KEYS_FILE = os.environ.get("AIRLOCK_LITELLM_KEYS", "/etc/airlock/litellm/keys.json")
DLP_FILE = os.environ.get("AIRLOCK_LITELLM_DLP", "/etc/airlock/litellm/dlp.json")
AUDIT_FILE = os.environ.get("AIRLOCK_LITELLM_AUDIT", "/var/log/airlock-litellm/audit.jsonl")
DLP_REQUIRED = os.environ.get("AIRLOCK_LITELLM_DLP_REQUIRED", "1") != "0"
SYSLOG_TAG = "airlock_llm"


def _audit_logger() -> logging.Logger:
    log = logging.getLogger("airlock.llm.audit")
    if not log.handlers:
        log.setLevel(logging.INFO)
        log.propagate = False
        Path(AUDIT_FILE).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.WatchedFileHandler(AUDIT_FILE, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(fh)
        if os.path.exists("/dev/log"):
            sh = logging.handlers.SysLogHandler(
                "/dev/log", facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV)
            sh.setFormatter(logging.Formatter(f"{SYSLOG_TAG}: %(message)s"))
            log.addHandler(sh)
    return log


def audit(event: str, **fields: Any) -> None:
    rec = {"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
           "event": event, **fields}
    _audit_logger().info(json.dumps(rec, sort_keys=True, default=str))


class _Keys:
    """The keys file, read again when it changes (the role rewrites it when users come
    and go), at most once a second."""

    def __init__(self, path: str) -> None:
        self.path, self._stamp, self._checked = path, None, 0.0
        self.by_hash: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> dict[str, Any] | None:
        now = time.monotonic()
        if now - self._checked > 1:
            with self._lock:
                self._checked = now
                st = os.stat(self.path)
                if (st.st_mtime_ns, st.st_size) != self._stamp:
                    with open(self.path, encoding="utf-8") as f:
                        users = json.load(f)["users"]
                    self.by_hash = {u["sha256"]: {"user": name, **u}
                                    for name, u in users.items()}
                    self._stamp = (st.st_mtime_ns, st.st_size)
        return self.by_hash.get(digest)


KEYS = _Keys(KEYS_FILE)


def _refuse(message: str, code: int = 401) -> ProxyException:
    return ProxyException(message=message, type="auth_error", param="api_key", code=code)


async def authenticate(request, api_key):
    """LiteLLM's custom auth: the master key is the admin; any other key must be a
    user's, found by its SHA-256; its limits come with it."""
    if not api_key:
        raise _refuse("no API key: send the key airlock gave you as 'Authorization: "
                      "Bearer KEY'")
    master = os.environ.get("LITELLM_MASTER_KEY", "")
    if master and hmac.compare_digest(api_key.encode(), master.encode()):
        return UserAPIKeyAuth(api_key="airlock-admin", user_id="airlock-admin",
                              user_role=LitellmUserRoles.PROXY_ADMIN)
    entry = KEYS.get(hashlib.sha256(api_key.encode()).hexdigest())
    if entry is None:
        raise _refuse("this API key belongs to no user of this gateway")
    name = entry["user"]
    return UserAPIKeyAuth(
        api_key=f"airlock-user:{name}", key_alias=name, user_id=name,
        user_role=LitellmUserRoles.INTERNAL_USER,
        rpm_limit=entry.get("rpm"), tpm_limit=entry.get("tpm"),
        max_parallel_requests=entry.get("parallel"),
        metadata={"airlock_user": name, "airlock_daily_tokens": entry.get("daily_tokens")})


def _day() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")


def _budget_key(user: str, day: str) -> str:
    return f"airlock:tokens:{user}:{day}"


class AirlockGateway(CustomLogger):
    """The daily token budget and the audit record of every request."""

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        self._cache = cache
        if DLP_REQUIRED and not airlock_dlp.LOADED:  # fail closed, whatever LiteLLM did
            raise ProxyException(message="the DLP guardrail is not running on this gateway: "
                                 "no prompt passes unchecked (see the service log)",
                                 type="dlp_unavailable", param=None, code=503)
        meta = user_api_key_dict.metadata or {}
        budget = meta.get("airlock_daily_tokens")
        user = meta.get("airlock_user")
        if user and budget is not None:
            used = int(await cache.async_get_cache(key=_budget_key(user, _day())) or 0)
            if used >= int(budget):
                audit("budget", user=user, model=data.get("model"), used=used,
                      budget=int(budget), status=429)
                raise ProxyException(
                    message=f"daily token budget used up: {used} of {budget} tokens today "
                            f"for {user}; it starts again at 00:00 UTC",
                    type="budget_exceeded", param=None, code=429)
        return data

    @staticmethod
    def _record(kwargs: dict[str, Any], status: str) -> dict[str, Any]:
        s = kwargs.get("standard_logging_object") or {}
        md = s.get("metadata") or {}
        err = s.get("error_information") or {}
        return {
            "user": md.get("user_api_key_user_id"), "model": s.get("model_group"),
            "route": md.get("user_api_key_request_route"), "call": s.get("call_type"),
            "status": status, "code": err.get("error_code") or None,
            "prompt_tokens": s.get("prompt_tokens"),
            "completion_tokens": s.get("completion_tokens"),
            "seconds": round(float(s.get("response_time") or 0), 3),
            "client": s.get("requester_ip_address") or None, "id": s.get("id")}

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        rec = self._record(kwargs, "ok")
        audit("request", **rec)
        tokens = int((kwargs.get("standard_logging_object") or {}).get("total_tokens") or 0)
        if self._cache is not None and rec["user"] and tokens:
            await self._cache.async_increment_cache(
                key=_budget_key(rec["user"], _day()), value=tokens, ttl=2 * 86400)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        audit("request", **self._record(kwargs, "refused"))


gateway = AirlockGateway()


class AirlockDLP(CustomGuardrail):
    """The site's DLP rules over every prompt: chat messages, a completion's prompt and
    suffix. A ``block`` rule refuses the request (400, naming the rule); ``mask`` rules
    replace what they matched. Either way the audit trail names rule and user."""

    def __init__(self, **kwargs: Any) -> None:
        path = kwargs.pop("rules_file", None) or DLP_FILE
        try:
            self.rules = airlock_dlp.load_rules(path)
        except (OSError, ValueError) as e:
            # not ValueError: LiteLLM would log it and start without the guardrail
            raise RuntimeError(f"airlock DLP guardrail cannot start: {e}") from None
        super().__init__(**kwargs)
        airlock_dlp.LOADED.add(path)

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        verdict = airlock_dlp.Verdict()
        changed = {}
        for field in ("messages", "prompt", "suffix"):
            if data.get(field) is not None:
                changed[field] = airlock_dlp.apply(data[field], self.rules, verdict)[0]
        if not verdict.fired:
            return data
        user = (user_api_key_dict.metadata or {}).get("airlock_user") or \
            user_api_key_dict.user_id
        counts = {n: f["count"] for n, f in verdict.fired.items()}
        if verdict.blocked:
            audit("dlp", user=user, model=data.get("model"), action="blocked",
                  rules=counts, status=400)
            raise ProxyException(
                message="refused by the data-loss rules: the prompt carries "
                        f"{', '.join(verdict.blocked)}; remove it and ask again",
                type="dlp_refused", param=None, code=400)
        audit("dlp", user=user, model=data.get("model"), action="masked", rules=counts)
        data.update(changed)
        return data
