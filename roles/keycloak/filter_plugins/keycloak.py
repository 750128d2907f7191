"""Filters for the keycloak role: the checks that run before anything changes."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

IMAGE = re.compile(r"^[a-z0-9][a-z0-9.:/_-]*@sha256:[0-9a-f]{64}$")
SAFE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$")
OTP_TYPES = {"totp"}
OTP_ALGORITHMS = {"HmacSHA1", "HmacSHA256", "HmacSHA512"}


def _https_url(value: Any, what: str, problems: list[str], path: str | None = None) -> None:
    u = urlsplit(str(value or ""))
    if u.scheme != "https" or not u.hostname or u.query or u.fragment:
        problems.append(f"{what} must be an https:// URL with a host (got {value!r})")
    elif path is not None and u.path.rstrip("/") != path.rstrip("/"):
        problems.append(f"{what} must end in the image's path {path} (got {value!r})")


def keycloak_problems(v: dict[str, Any]) -> list[str]:
    """One sentence per problem with the role's input; empty when it is good."""
    problems: list[str] = []
    if not IMAGE.match(str(v.get("image") or "")):
        problems.append(f"keycloak_image must be REGISTRY/NAME@sha256:DIGEST, pulled by digest "
                        f"(got {v.get('image')!r}); the playbook takes it from the served release")
    path = str(v.get("relative_path") or "/")
    _https_url(v.get("hostname"), "keycloak_hostname", problems, path)
    _https_url(v.get("admin_hostname"), "keycloak_admin_hostname", problems, path)
    _https_url(v.get("gateway_url"), "keycloak_gateway_url", problems)
    gw, kc = urlsplit(str(v.get("gateway_url") or "")), urlsplit(str(v.get("hostname") or ""))
    if gw.hostname and kc.hostname and (gw.hostname, gw.port) != (kc.hostname, kc.port):
        problems.append(f"keycloak_hostname ({v.get('hostname')}) must be served by the gateway "
                        f"({v.get('gateway_url')}): users reach Keycloak through it only")
    if gw.path not in ("", "/"):
        problems.append(f"keycloak_gateway_url must be the gateway's origin, no path (got "
                        f"{v.get('gateway_url')!r}); the client's redirect URI is "
                        "ORIGIN/oauth2/callback")
    if v.get("mfa"):
        otp = v.get("otp_policy")
        if not isinstance(otp, dict) or not otp:
            problems.append("MFA is on (airlock_controls.mfa) but keycloak_otp_policy is empty: "
                            "give type totp, algorithm, digits and period")
        else:
            if otp.get("type") not in OTP_TYPES:
                problems.append(f"keycloak_otp_policy.type must be totp (got {otp.get('type')!r})")
            if otp.get("algorithm") not in OTP_ALGORITHMS:
                problems.append("keycloak_otp_policy.algorithm must be one of "
                                f"{', '.join(sorted(OTP_ALGORITHMS))} "
                                f"(got {otp.get('algorithm')!r})")
            if str(otp.get("digits")) not in ("6", "8"):
                problems.append("keycloak_otp_policy.digits must be 6 or 8 "
                                f"(got {otp.get('digits')!r})")
            try:
                if not 15 <= int(otp.get("period")) <= 120:
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(f"keycloak_otp_policy.period must be 15-120 seconds (got "
                                f"{otp.get('period')!r})")
    groups = v.get("groups")
    if not isinstance(groups, list) or not groups:
        problems.append("keycloak_groups must list at least one group (the first gets workspaces)")
        groups = []
    for g in groups:
        if not GROUP.match(str(g)):
            problems.append(f"keycloak_groups: {g!r} is not a safe group name")
    users = v.get("users")
    if not isinstance(users, list):
        problems.append("keycloak_users must be a list of {name, groups} entries")
        users = []
    seen: set[str] = set()
    for i, u in enumerate(users):
        name = str(u.get("name", "")) if isinstance(u, dict) else ""
        if not SAFE_NAME.match(name):
            problems.append(f"keycloak_users[{i}]: user name {name!r} is not a safe identifier "
                            "(a lower-case letter, then up to 30 lower-case letters, digits, "
                            "'-' or '_')")
        elif name in seen:
            problems.append(f"keycloak_users[{i}]: user {name!r} is listed twice")
        seen.add(name)
        for g in (u.get("groups") or []) if isinstance(u, dict) else []:
            if g not in groups:
                problems.append(f"keycloak_users[{i}]: group {g!r} of {name!r} is not in "
                                "keycloak_groups")
    ldap = v.get("ldap") or {}
    if ldap.get("url"):
        _ldap_problems(ldap, problems)
    trusted = v.get("trusted")
    if not isinstance(trusted, list) or not trusted:
        problems.append("keycloak_proxy_trusted_addresses must list the gateways' addresses "
                        "(only they may set X-Forwarded-*)")
    else:
        for a in trusted:
            try:
                ipaddress.ip_network(str(a), strict=False)
            except ValueError:
                problems.append(f"keycloak_proxy_trusted_addresses: {a!r} is not an address")
    _cluster_problems(v.get("cluster") or {}, problems)
    return problems


def _address(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def _cluster_problems(c: dict[str, Any], problems: list[str]) -> None:
    hosts = c.get("hosts") or []
    if not isinstance(hosts, list) or len(hosts) < 2:
        return  # a standalone server
    if len(set(hosts)) != len(hosts):
        problems.append(f"keycloak_cluster_hosts lists a member twice: {hosts}")
    if c.get("me") not in hosts:
        problems.append(f"{c.get('me')} is not in keycloak_cluster_hosts ({', '.join(hosts)}): "
                        "every Keycloak host must be a member")
    if not _address(c.get("address")):
        problems.append(f"keycloak_cluster_address must be this member's address for the "
                        f"cluster's traffic (got {c.get('address')!r})")
    if c.get("me") != hosts[0] and not _address(c.get("db_host")):
        problems.append(f"keycloak_db_host must be the address of {hosts[0]}, whose database "
                        f"the members share (got {c.get('db_host')!r})")


def _ldap_problems(ldap: dict[str, Any], problems: list[str]) -> None:
    u = urlsplit(str(ldap.get("url")))
    if u.scheme != "ldaps" or not u.hostname or u.path not in ("", "/"):
        problems.append(f"keycloak_ldap_url must be ldaps://HOST[:PORT] (got {ldap.get('url')!r}): "
                        "the bind password and users' passwords cross the zones, only over TLS")
    for key in ("bind_dn", "users_dn", "groups_dn"):
        value = str(ldap.get(key) or "")
        if "=" not in value:
            problems.append(f"keycloak_ldap_{key} must be a DN such as "
                            f"ou=people,dc=bank,dc=example (got {value!r})")
    if not ldap.get("bind_password"):
        problems.append("keycloak_ldap_bind_password is empty: put the bind account's password in "
                        "the site's vault (SITE/secrets/keycloak/ldap-bind.password, 0600)")
    if not ldap.get("ca_file"):
        problems.append("keycloak_ldap_ca_file must name the CA certificate (on the controller) "
                        "that signed the directory's certificate")
    if not ldap.get("user_object_classes"):
        problems.append("keycloak_ldap_user_object_classes must list the users' object classes")
    if ldap.get("cache_policy") not in ("NO_CACHE", "DEFAULT", "EVICT_DAILY", "EVICT_WEEKLY",
                                        "MAX_LIFESPAN"):
        problems.append(f"keycloak_ldap_cache_policy {ldap.get('cache_policy')!r} is not one of "
                        "Keycloak's (NO_CACHE, DEFAULT, EVICT_DAILY, EVICT_WEEKLY, MAX_LIFESPAN)")


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"keycloak_problems": keycloak_problems}
