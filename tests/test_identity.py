"""Identity on the lab the demo made: the real Keycloak (built from Maven Central, carried
in the bundle, pulled by digest on gw1, PostgreSQL beside it) and the real oauth2-proxy
(built from its Go module) in front of every workbench, with TOTP required.

The demo logged alice and bob in through Chromium (password, TOTP set up with a code
computed as a phone computes it) before anything here runs. These tests attack the
gateway with and without sessions: another user's route (HTTP and WebSocket), no session,
a forged session, a session after logout, five wrong passwords, the admin console from
outside the management zone, and bad identity input; each checks what was logged.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import pytest

from conftest import REPO, lab_ssh
from installer.cli.demo import lab_accounts, save_totp
from installer.deploy.runner import run_playbook
from installer.lab import browser

pytestmark = pytest.mark.engine
GW = "gw1"


def _gw(demo: dict) -> str:
    return demo["state"]["hosts"][GW]["zone_address"]


def _curl(demo: dict, url: str, *args: str, cookie: str | None = None) -> dict[str, Any]:
    """One request with the site CA only; status, Location and body."""
    cmd = ["curl", "-sS", "--http1.1", "--cacert", str(demo["site"] / "pki" / "ca.crt"),
           "-o", "-", "-w", "\n%{http_code} %{redirect_url}", "--max-time", "30", *args, url]
    if cookie:
        cmd[1:1] = ["-H", f"Cookie: {cookie}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    body, _, tail = r.stdout.rpartition("\n")
    code, _, location = tail.partition(" ")
    return {"status": int(code or 0), "location": location, "body": body, "rc": r.returncode}


def _session(demo: dict, user: str, tmp_path) -> str:
    """USER's gateway session cookie, from a real login in Chromium (password + TOTP)."""
    accounts = lab_accounts(demo["site"], [user])
    url = f"https://{_gw(demo)}/u/{user}/"
    cookies: list[dict] = []
    browser.open_workbenches({user: url}, demo["site"] / "pki" / "ca.crt", tmp_path / "shots",
                             accounts=accounts, cookies_out=cookies)
    save_totp(demo["site"], accounts)
    found = [c for c in cookies if c["name"].startswith("_airlock_session")]
    assert found, [c["name"] for c in cookies]
    return "; ".join(f"{c['name']}={c['value']}" for c in found)


def _journal(demo: dict, tag: str, since: str) -> str:
    return lab_ssh(demo, GW, f"journalctl -q -o cat -t {tag} --since '{since}'").stdout


def _now(demo: dict) -> str:
    return lab_ssh(demo, GW, "date '+%Y-%m-%d %H:%M:%S'").stdout.strip()


def test_demo_logged_each_user_in_with_password_and_totp(demo) -> None:
    out = " ".join(demo["out"].split())  # the console wraps long lines
    for user in ("alice", "bob"):
        assert (f"{user}: VS Code workbench loaded in" in out and f"{user} workbench: https://"
                in out), out[-3000:]
    assert out.count("after the Keycloak login (password + totp-setup)") == 2, out[-3000:]
    assert "signed in with password and TOTP" in out and "Keycloak admin:" in out
    # the TOTP secrets the lab's stand-in phone keeps, 0600 beside the passwords
    for user in ("alice", "bob"):
        f = demo["site"] / "secrets" / "keycloak" / "users" / f"{user}.totp"
        assert f.stat().st_mode & 0o777 == 0o600 and len(f.read_text().strip()) >= 16


def test_no_session_and_forged_sessions_go_to_the_login(demo) -> None:
    url = f"https://{_gw(demo)}/u/alice/"
    for cookie in (None, "_airlock_session=" + "A" * 200,
                   "_airlock_session=" + uuid.uuid4().hex + "|1700000000|" + "x" * 40):
        r = _curl(demo, url, cookie=cookie)
        assert r["status"] == 302 and r["location"].endswith("/oauth2/start?rd=/u/alice/"), r
    # the login is Keycloak's, through the gateway, for the gateway's client only
    r = _curl(demo, f"https://{_gw(demo)}/oauth2/start?rd=/u/alice/")
    assert r["status"] == 302
    assert r["location"].startswith(f"https://{_gw(demo)}/auth/realms/airlock/protocol/"
                                    "openid-connect/auth?")
    assert "client_id=airlock-gateway" in r["location"] and "code_challenge=" in r["location"]
    page = _curl(demo, r["location"])
    assert page["status"] == 200 and 'id="kc-form-login"' in page["body"]
    # a client redirect URI that is not the gateway's is refused by Keycloak
    evil = r["location"].replace("redirect_uri=https%3A%2F%2F", "redirect_uri=https%3A%2F%2Fevil.")
    assert "Invalid parameter: redirect_uri" in _curl(demo, evil)["body"]


def test_a_session_opens_its_own_workbench_only(demo, tmp_path) -> None:
    since = _now(demo)
    cookie = _session(demo, "alice", tmp_path)
    gw = _gw(demo)
    own = _curl(demo, f"https://{gw}/u/alice/", cookie=cookie)
    assert own["status"] in (200, 302) and "/oauth2/" not in own["location"], own
    other = _curl(demo, f"https://{gw}/u/bob/", cookie=cookie)
    assert other["status"] == 403 and "belongs to another user" in other["body"], other
    ws = _curl(demo, f"https://{gw}/u/bob/stable-x/?reconnectionToken=1", "-H",
               "Connection: Upgrade", "-H", "Upgrade: websocket", "-H",
               "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
               cookie=cookie)
    assert ws["status"] == 403, ws
    # both refusals are in the audit trail (syslog, authpriv) naming both users
    time.sleep(1)
    lines = [json.loads(x) for x in _journal(demo, "airlock_gateway", since).splitlines()
             if x.startswith("{")]
    denied = [x for x in lines if x["event"] == "route-denied"]
    assert any(x["user"] == "alice" and x["route"] == "bob" and x["upgrade"] == ""
               for x in denied), lines
    assert any(x["user"] == "alice" and x["route"] == "bob" and x["upgrade"] == "websocket"
               for x in denied), lines
    assert all(x["client"] for x in denied)
    # Keycloak's login events reach the journal too (user, address, time)
    events = _journal(demo, "keycloak", since)
    assert 'type="LOGIN"' in events and 'username="alice"' in events, events[-2000:]


def test_logout_ends_the_session_at_the_gateway_and_in_keycloak(demo, tmp_path) -> None:
    cookie = _session(demo, "bob", tmp_path)
    gw = _gw(demo)
    assert _curl(demo, f"https://{gw}/u/bob/", cookie=cookie)["status"] in (200, 302)
    out = _curl(demo, f"https://{gw}/oauth2/sign_out", cookie=cookie)
    assert out["status"] == 302, out
    # the old cookie, replayed: refused once the session's refresh is due (Keycloak's
    # session is gone, so the refresh fails); the lab refreshes every 15 s
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = _curl(demo, f"https://{gw}/u/bob/", cookie=cookie)
        if r["status"] == 302 and "/oauth2/start" in r["location"]:
            break
        time.sleep(3)
    assert r["status"] == 302 and "/oauth2/start" in r["location"], r


def test_five_wrong_passwords_lock_the_account(demo, tmp_path) -> None:
    """eve (a Keycloak user with no workspace) is locked by brute-force detection; the
    right password no longer works; the failures and the lockout are in the journal."""
    since = _now(demo)
    accounts = lab_accounts(demo["site"], ["eve"])
    right = accounts["eve"]["password"]
    results = browser.try_passwords(f"https://{_gw(demo)}/u/alice/",
                                    demo["site"] / "pki" / "ca.crt", "eve",
                                    ["Wrong-password-1"] * 5 + [right])
    assert all("Invalid username or password" in r for r in results), results
    time.sleep(1)
    events = _journal(demo, "keycloak", since)
    eve = [line for line in events.splitlines() if 'username="eve"' in line
           or "USER_DISABLED_BY_TEMPORARY_LOCKOUT" in line]
    kinds = [("lockout" if "LOCKOUT" in x else x.split('error="')[1].split('"')[0]) for x in eve
             if "LOCKOUT" in x or 'error="' in x]
    # five wrong passwords, the lockout, then the right password refused
    assert kinds == ["invalid_user_credentials"] * 5 + ["lockout", "user_temporarily_disabled"], \
        "\n".join(eve)
    assert all('ipAddress="' in x for x in eve)


def test_admin_console_answers_from_the_management_zone_only(demo) -> None:
    mgmt = demo["state"]["hosts"][GW]["mgmt_address"]
    ca = str(demo["site"] / "pki" / "ca.crt")
    # from the management zone (the build machine is the operator's desk): it answers
    r = subprocess.run(["curl", "-sS", "--cacert", ca, "--resolve", f"{GW}:8443:{mgmt}",
                        "-o", "/dev/null", "-w", "%{http_code}",
                        f"https://{GW}:8443/auth/admin/master/console/"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "200", r
    # through the gateway: not served
    assert _curl(demo, f"https://{_gw(demo)}/auth/admin/master/console/")["status"] == 403
    assert _curl(demo, f"https://{_gw(demo)}/auth/realms/master/account")["status"] == 403
    # from the IDE zone: the firewall drops it
    probe = lab_ssh(demo, "ide1", f"nc -z -w 3 {_gw(demo)} 8443; echo rc=$?")
    assert "rc=1" in probe.stdout, probe


@pytest.mark.parametrize("extravars, message", [
    ({"airlock_controls": {"sso": False, "mfa": True}}, "MFA is a step of the SSO login"),
    ({"keycloak_otp_policy": {}}, "keycloak_otp_policy is empty"),
    ({"airlock_identity_local_users": [{"name": "../root"}]}, "is not a safe identifier"),
    ({"keycloak_gateway_url": "https://evil.example"},
     "must be served by the gateway"),
])
def test_bad_identity_input_is_refused_before_anything_changes(demo, extravars, message):
    run = run_playbook(REPO, "site.yml", demo["inventory"], site=demo["site"],
                       log_dir=demo["dir"] / "identity-logs", extravars=extravars, live=False,
                       raise_on_failure=False)
    assert run.rc != 0 and run.changed == 0, run.changed_tasks
    assert message in json.dumps(run.failures), run.failures


def test_keycloak_memory_is_reported(demo) -> None:
    r = lab_ssh(demo, GW, "docker stats --no-stream --format '{{.MemUsage}}' keycloak")
    assert r.returncode == 0 and ("MiB" in r.stdout or "GiB" in r.stdout), r
    print(f"Keycloak memory: {r.stdout.strip()}")  # reported, not asserted
