"""Filters for monitoring.yml: the node exporters and the endpoint probes, from the
inventory's groups (what runs where) and the gateway's routes (each user's workbench)."""

from __future__ import annotations

from typing import Any


def airlock_monitoring_nodes(hosts: list[str], hostvars: Any) -> list[dict[str, str]]:
    """[{name, address}] for every host's node exporter (its zone address: the port
    matrix's monitoring -> all flow)."""
    return [{"name": h, "address": str(hostvars[h]["airlock_zone_address"])}
            for h in sorted(hosts) if "airlock_zone_address" in hostvars[h]]


def airlock_monitoring_probes(groups: dict[str, list[str]], hostvars: Any, gateway_url: str,
                              routes: list[dict[str, str]] | None = None,
                              inference_port: int = 8000, litellm_port: int = 4000,
                              inference_engine: str = "vllm") -> list[dict[str, str]]:
    """Every user-facing endpoint, probed the way a user or a service reaches it. An
    inference server is asked vLLM's /health; the lab's llama.cpp server (llama-cpp-python)
    has none, and any request takes its model's lock (a streaming completion is cut short):
    it gets a TCP connect, as its container's health check does."""
    probes: list[dict[str, str]] = []

    def add(name: str, url: str, module: str, service: str, host: str, **extra: str) -> None:
        probes.append({"name": name, "url": url, "module": module, "service": service,
                       "host": host, **extra})

    gateways = groups.get("gateway") or []
    if gateway_url and gateways:
        # nginx's own answer (its "/" is 404 to a client without a route)
        add("gateway", gateway_url.rstrip("/") + "/healthz", "https", "gateway", gateways[0])
    for h in groups.get("keycloak") or []:
        path = str(hostvars[h].get("keycloak_relative_path", "/auth"))
        add(f"keycloak-{h}", f"https://{h}:8443{path}/realms/master", "https", "keycloak", h)
    for h in groups.get("llm_gateway") or []:
        add(f"litellm-{h}", f"http://{hostvars[h]['airlock_zone_address']}:{litellm_port}"
            "/health/readiness", "http", "litellm", h)
    seen: set[str] = set()
    for group in ("completion_gpu", "chat_gpu"):
        for h in groups.get(group) or []:
            if h not in seen:
                seen.add(h)
                address = f"{hostvars[h]['airlock_zone_address']}:{inference_port}"
                if inference_engine == "vllm":
                    add(f"inference-{h}", f"http://{address}/health", "http", "inference", h)
                else:
                    add(f"inference-{h}", address, "tcp", "inference", h)
    for h in (groups.get("repo") or [])[:1]:
        # the served release's record: 200 only while a release is served
        add("repo", f"https://{h}/release.json", "https", "repo", h)
    ide = {str(hostvars[h]["airlock_zone_address"]): h for h in groups.get("ide") or []
           if "airlock_zone_address" in hostvars[h]}
    for r in routes or []:
        upstream = str(r["upstream"]).rstrip("/")
        address = upstream.split("://", 1)[-1].rsplit(":", 1)[0]
        add(f"workbench-{r['user']}", upstream + "/healthz", "code_server", "code_server",
            ide.get(address, address), user=str(r["user"]))
    return probes


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"airlock_monitoring_nodes": airlock_monitoring_nodes,
                "airlock_monitoring_probes": airlock_monitoring_probes}
