"""Requests to the lab's gateway as a user makes them: with the site CA only, and with a
session from a real login in Chromium (password + TOTP)."""

from __future__ import annotations

import subprocess
from typing import Any

from installer.cli.demo import lab_accounts, save_totp
from installer.lab import browser


def gateway_address(demo: dict) -> str:
    """Where users reach the gateway: the pair's VIP where the lab has one, else gw1."""
    return demo["state"].get("gateway_vip") or demo["state"]["hosts"]["gw1"]["zone_address"]


def gateway_request(demo: dict, url: str, *args: str, cookie: str | None = None) -> dict[str, Any]:
    """One request with the site CA only; status, Location and body."""
    cmd = ["curl", "-sS", "--http1.1", "--cacert", str(demo["site"] / "pki" / "ca.crt"),
           "-o", "-", "-w", "\n%{http_code} %{redirect_url}", "--max-time", "30", *args, url]
    if cookie:
        cmd[1:1] = ["-H", f"Cookie: {cookie}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    body, _, tail = r.stdout.rpartition("\n")
    code, _, location = tail.partition(" ")
    return {"status": int(code or 0), "location": location, "body": body, "rc": r.returncode}


def gateway_session(demo: dict, user: str, tmp_path) -> str:
    """USER's gateway session cookie, from a real login in Chromium (password + TOTP)."""
    accounts = lab_accounts(demo["site"], [user])
    url = f"https://{gateway_address(demo)}/u/{user}/"
    cookies: list[dict] = []
    try:
        browser.open_workbenches({user: url}, demo["site"] / "pki" / "ca.crt",
                                 tmp_path / "shots", accounts=accounts, cookies_out=cookies)
    finally:  # a TOTP set up before a later step failed is the user's from now on
        save_totp(demo["site"], accounts)
    found = [c for c in cookies if c["name"].startswith("_airlock_session")]
    assert found, [c["name"] for c in cookies]
    return "; ".join(f"{c['name']}={c['value']}" for c in found)
