"""Filters for the code_server role: the checks that run before anything changes (users,
routes, ports, extensions, the image), what the served release carries, and the Continue
extension's configuration."""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError

# a user name becomes a container name, a folder, an fstab entry and a URL path: keep it
# to what is safe in all four
SAFE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
SAFE_ROUTE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
EXTENSION_ID = re.compile(r"^[a-z0-9][a-z0-9-]*\.[a-z0-9][a-z0-9-]*$")


def code_server_user_problems(users: Any, port_low: int, port_high: int,
                              ide_hosts: list[str]) -> list[str]:
    """One sentence per problem with the users list; empty when it is good."""
    if not isinstance(users, list):
        return ["code_server_users must be a list of {name, port} entries"]
    problems: list[str] = []
    names: dict[str, int] = {}
    routes: dict[str, str] = {}
    ports: dict[tuple[str, int], str] = {}
    for i, u in enumerate(users):
        where = f"code_server_users[{i}]"
        if not isinstance(u, dict) or "name" not in u:
            problems.append(f"{where}: needs a name and a port")
            continue
        name = str(u["name"])
        if not SAFE_NAME.match(name):
            problems.append(f"{where}: user name {name!r} is not a safe identifier (a lower-case "
                            "letter, then up to 30 lower-case letters, digits, '-' or '_')")
            continue
        if name in names:
            problems.append(f"{where}: user {name!r} is listed twice (also at "
                            f"code_server_users[{names[name]}])")
            continue
        names[name] = i
        route = str(u.get("route", name))
        if not SAFE_ROUTE.match(route):
            problems.append(f"{where}: route {route!r} of user {name!r} is not a safe path "
                            "segment")
        elif route in routes:
            problems.append(f"{where}: users {routes[route]!r} and {name!r} are both mapped to "
                            f"the route /u/{route}/; give each user a route of their own")
        else:
            routes[route] = name
        host = str(u.get("host") or (ide_hosts[0] if ide_hosts else ""))
        if host not in ide_hosts:
            problems.append(f"{where}: user {name!r} is placed on {host or 'no host'}, which is "
                            f"not in the ide group ({', '.join(ide_hosts) or 'empty'})")
        try:
            port = int(u.get("port"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            problems.append(f"{where}: user {name!r} needs a port ({port_low}-{port_high})")
            continue
        if not port_low <= port <= port_high:
            problems.append(f"{where}: port {port} of user {name!r} is outside "
                            f"{port_low}-{port_high}, the range the firewall lets the gateway "
                            "reach")
        elif (host, port) in ports:
            problems.append(f"{where}: users {ports[(host, port)]!r} and {name!r} are both "
                            f"mapped to port {port} on {host}")
        else:
            ports[(host, port)] = name
    return problems


def code_server_release(index: dict[str, Any], image_name: str) -> dict[str, Any]:
    """What the served release carries for the IDE: the image (digest, tag) and the VSIX
    files by extension id (file name, sha256, version)."""
    image = None
    vsix: dict[str, dict[str, str]] = {}
    for m in index.get("manifests", []):
        ann = m.get("annotations") or {}
        kind = ann.get("dev.airlock.kind")
        if kind == "image" and ann.get("dev.airlock.name") == image_name:
            image = {"digest": m["digest"], "name": image_name,
                     "tag": ann.get("org.opencontainers.image.version") or ""}
        elif kind == "vsix" and ann.get("dev.airlock.name"):
            vsix[ann["dev.airlock.name"].lower()] = {
                "version": ann.get("org.opencontainers.image.version", ""),
                "manifest": m["digest"]}
    return {"image": image, "vsix": vsix}


def code_server_vsix_files(release: dict[str, Any], manifests: dict[str, Any]) -> dict[str, Any]:
    """VSIX id -> file name and sha256 from each VSIX artifact's manifest (one layer)."""
    out = {}
    for ext, v in release["vsix"].items():
        layer = manifests[v["manifest"]]["layers"][0]
        out[ext] = {"file": layer["annotations"]["org.opencontainers.image.title"],
                    "sha256": layer["digest"].split(":", 1)[1], "version": v["version"]}
    return out


def code_server_extension_problems(wanted: list[str], whitelist: list[str],
                                   carried: dict[str, Any]) -> list[str]:
    problems = []
    allowed = {w.lower() for w in whitelist}
    for w in whitelist:
        if not EXTENSION_ID.match(w.lower()):
            problems.append(f"code_server_extension_whitelist: {w!r} is not an extension id "
                            "(publisher.name)")
        elif w.lower() not in carried:
            problems.append(f"code_server_extension_whitelist names {w}, but the served "
                            f"release carries no VSIX for it (it has: "
                            f"{', '.join(sorted(carried)) or 'none'}); add it to the bundle "
                            "spec's vsix list or take it off the whitelist")
    for e in wanted:
        if e.lower() not in allowed:
            problems.append(f"extension {e} is not on the whitelist "
                            "(code_server_extension_whitelist): refused; a security reviewer "
                            "adds it there first")
        elif e.lower() not in carried:
            problems.append(f"extension {e} has no VSIX in the served release: the bundle "
                            "must carry it (vsix: in the bundle spec)")
    return problems


def code_server_extension_dir(ext: str, carried: dict[str, Any], folder: str) -> str:
    """Where code-server unpacks an extension: FOLDER/publisher.name-VERSION."""
    return f"{folder}/{ext.lower()}-{carried[ext.lower()]['version']}"


def code_server_continue_config(user: str, llm_url: str, chat_model: str,
                                completion_model: str, api_key: str = "",
                                ca_file: str = "") -> dict[str, Any]:
    """Continue's config.yaml (schema v1, as @continuedev/config-yaml defines it): chat,
    edit and apply, and autocomplete, all through LiteLLM's OpenAI-compatible API with the
    user's own key. Autocomplete uses the OpenAI completions endpoint
    (useLegacyCompletionsEndpoint): Continue builds the fill-in-the-middle prompt itself,
    which any OpenAI-compatible completion server (vLLM, llama.cpp) answers; Continue has
    no Tabby provider. (A model name starting with "gpt" or "o" would make Continue use
    chat completions instead: the names here are LiteLLM's, e.g. autocomplete.)"""
    models: list[dict[str, Any]] = []
    if llm_url:
        common: dict[str, Any] = {"provider": "openai", "apiBase": llm_url}
        if api_key:
            common["apiKey"] = api_key
        if ca_file:
            common["requestOptions"] = {"caBundlePath": ca_file}
        models.append({"name": "Chat", **common, "model": chat_model,
                       "roles": ["chat", "edit", "apply"]})
        if completion_model:
            models.append({"name": "Autocomplete", **common, "model": completion_model,
                           "roles": ["autocomplete"], "useLegacyCompletionsEndpoint": True,
                           "autocompleteOptions": {"debounceDelay": 250,
                                                   "maxPromptTokens": 1024}})
    return {"name": f"airlock ({user})", "version": "1.0.0", "schema": "v1",
            "models": models,
            "context": [{"provider": p} for p in ("code", "docs", "diff", "terminal",
                                                   "problems", "folder", "codebase")]}


def code_server_sri_checksum(integrity: str) -> str:
    """An npm integrity value (sha512-BASE64) as get_url's checksum (sha512:HEX)."""
    import base64
    import binascii

    algo, _, b64 = str(integrity).partition("-")
    if algo != "sha512":
        raise AnsibleFilterError(f"npm integrity {integrity!r} is not sha512")
    try:
        return "sha512:" + base64.b64decode(b64, validate=True).hex()
    except (binascii.Error, ValueError):
        raise AnsibleFilterError(f"npm integrity {integrity!r} is not base64") from None


def code_server_connections(proc_net_tcp: str, port: int = 8080) -> int:
    """Established TCP connections to PORT in a container's /proc/net/tcp{,6} text: a
    workbench's user is connected while their browser holds its WebSocket."""
    count = 0
    for line in str(proc_net_tcp).splitlines():
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[1]:
            continue  # a header
        local_port = fields[1].rsplit(":", 1)[1]
        if int(local_port, 16) == int(port) and fields[3] == "01":  # 01: ESTABLISHED
            count += 1
    return count


def code_server_changing(running: list[dict[str, Any]], image: str) -> list[dict[str, Any]]:
    """The running workbenches (docker_container_info results) made from another image."""
    return [r for r in running
            if r.get("exists") and ((r.get("container") or {}).get("State") or {}).get("Running")
            and r["container"]["Config"]["Image"] != image]


def code_server_image_plan(running: list[dict[str, Any]], sockets: list[dict[str, Any]],
                           image: str, upgrade_connected: bool = False) -> dict[str, Any]:
    """Which image each user's workbench runs after this deploy: IMAGE, but a user connected
    now keeps the one they are using (it moves at a deploy after they left), unless
    UPGRADE_CONNECTED. {images: {user: ref}, deferred: [users]}."""
    # what cat printed counts even when one table is missing (no IPv6: exit status 1)
    connected = {r["item"]["item"]["name"] for r in sockets
                 if code_server_connections(r.get("stdout", "")) > 0}
    keep = {} if upgrade_connected else {
        r["item"]["name"]: r["container"]["Config"]["Image"]
        for r in code_server_changing(running, image) if r["item"]["name"] in connected}
    return {"images": {r["item"]["name"]: keep.get(r["item"]["name"], image) for r in running},
            "deferred": sorted(keep)}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"code_server_user_problems": code_server_user_problems,
                "code_server_release": code_server_release,
                "code_server_vsix_files": code_server_vsix_files,
                "code_server_extension_problems": code_server_extension_problems,
                "code_server_extension_dir": code_server_extension_dir,
                "code_server_continue_config": code_server_continue_config,
                "code_server_sri_checksum": code_server_sri_checksum,
                "code_server_connections": code_server_connections,
                "code_server_changing": code_server_changing,
                "code_server_image_plan": code_server_image_plan}
