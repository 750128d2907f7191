"""Checks of the monitoring role's input, said in the inventory's words before anything
changes, and the probe list with the synthetic LLM requests added."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

MODULES = ("https", "http", "code_server", "tcp")
NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def monitoring_problems(probes: Any, nodes: Any, webhooks: Any, email: Any,
                        llm: Any) -> list[str]:
    """Everything wrong with the targets, probes and receivers, one sentence each."""
    out: list[str] = []
    if not isinstance(probes, list):
        return ["monitoring_probes must be a list of {name, url, module, service}"]
    seen: set[str] = set()
    for i, p in enumerate(probes):
        where = f"monitoring_probes[{i}]"
        if not isinstance(p, dict):
            out.append(f"{where} must be a mapping {{name, url, module, service}}")
            continue
        name = p.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            out.append(f"{where}: name {name!r} must be lower-case letters, digits, - or _")
        elif name in seen:
            out.append(f"{where}: the name {name!r} is used twice")
        else:
            seen.add(name)
        module = p.get("module")
        if module not in MODULES:
            out.append(f"{where} ({name}): module {module!r} is none of {', '.join(MODULES)}")
        url = p.get("url")
        if not isinstance(url, str) or not url:
            out.append(f"{where} ({name}): url is missing")
        elif module == "tcp":
            if not re.match(r"^[^/:\s]+:\d+$", url):
                out.append(f"{where} ({name}): a tcp probe's url is host:port, not {url!r}")
        else:
            parts = urlsplit(url)
            want = "https" if module == "https" else None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                out.append(f"{where} ({name}): {url!r} is not an http(s) URL")
            elif want and parts.scheme != want:
                out.append(f"{where} ({name}): module https needs an https:// URL, not {url!r}")
        if not isinstance(p.get("service"), str) or not p.get("service"):
            out.append(f"{where} ({name}): service (what the alert names) is missing")
    if not isinstance(nodes, list) or any(
            not isinstance(n, dict) or not n.get("name") or not n.get("address") for n in nodes):
        out.append("monitoring_node_targets must be a list of {name, address}")
    hooks = webhooks if isinstance(webhooks, list) else None
    if hooks is None:
        out.append("monitoring_alert_webhooks must be a list of URLs")
        hooks = []
    for url in hooks:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            out.append(f"monitoring_alert_webhooks: {url!r} is not an http(s) URL")
    mail = email if isinstance(email, dict) else {}
    if email and not isinstance(email, dict):
        out.append("monitoring_alert_email must be a mapping {to, from, smarthost}")
    if mail:
        missing = [k for k in ("to", "from", "smarthost") if not mail.get(k)]
        if missing:
            out.append("monitoring_alert_email needs " + ", ".join(missing))
        elif not re.match(r"^[^\s:]+:\d+$", str(mail["smarthost"])):
            out.append(f"monitoring_alert_email.smarthost {mail['smarthost']!r} is not host:port")
    if not hooks and not mail:
        out.append("no receiver: alerts would be seen only in Alertmanager's own page; give "
                   "monitoring_alert_webhooks or monitoring_alert_email (the bank's receiver)")
    if llm:
        if not isinstance(llm, dict):
            out.append("monitoring_llm_probe must be a mapping {url, key, completion_model, "
                       "chat_model}")
        else:
            missing = [k for k in ("url", "key", "completion_model", "chat_model")
                       if not llm.get(k)]
            if missing:
                out.append("monitoring_llm_probe needs " + ", ".join(missing))
            elif urlsplit(str(llm["url"])).scheme not in ("http", "https"):
                out.append("monitoring_llm_probe.url is not an http(s) URL")
    return out


def monitoring_with_llm(probes: list[dict[str, Any]], llm: dict[str, Any]) -> list[dict]:
    """PROBES, plus the completion and chat requests through LiteLLM when LLM is given."""
    if not llm:
        return list(probes)
    base = str(llm["url"]).rstrip("/")
    return [*probes,
            {"name": "llm-completion", "url": f"{base}/v1/completions",
             "module": "llm_completion", "service": "completion"},
            {"name": "llm-chat", "url": f"{base}/v1/chat/completions",
             "module": "llm_chat", "service": "chat"}]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"monitoring_problems": monitoring_problems,
                "monitoring_with_llm": monitoring_with_llm}
