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

import pytest

from conftest import REPO, lab_ssh
from gateway import gateway_address
from gateway import gateway_request as _curl
from gateway import gateway_session as _session
from installer.cli.demo import lab_accounts
from installer.deploy.runner import run_playbook
from installer.lab import browser

pytestmark = pytest.mark.engine
GW = "gw1"


def _gw(demo: dict) -> str:
    """Where users reach the gateway (the pair's VIP)."""
    return gateway_address(demo)




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
    keycloak = demo["state"]["hosts"][GW]["zone_address"]
    probe = lab_ssh(demo, "ide1", f"nc -z -w 3 {keycloak} 8443; echo rc=$?")
    assert "rc=1" in probe.stdout, probe


def _dir1(demo: dict):  # type: ignore[no-untyped-def]
    import docker

    client = docker.DockerClient(base_url=demo["state"]["engine_host"])
    return client.containers.get(demo["state"]["containers"]["dir1"])


def _ide(demo: dict, tmp_name: str):  # type: ignore[no-untyped-def]
    """ide.yml, as an operator re-runs it after the directory changed."""
    return run_playbook(REPO, "ide.yml", demo["inventory"], site=demo["site"],
                        log_dir=demo["dir"] / tmp_name, live=False, raise_on_failure=False)


def test_the_directory_group_decides_who_has_a_workspace(demo, tmp_path) -> None:
    """carol is in the bank's directory (the lab's OpenLDAP) but not in ai-coders: no
    workbench. Added to the group, she gets one at the next deploy and signs in with her
    directory password and TOTP; taken out again, her session is refused at its next
    refresh (Keycloak reads the group from the directory, no cache) and the next deploy
    stops her workbench, keeping her home."""
    from installer.lab import directory

    dir1 = _dir1(demo)
    gw = _gw(demo)
    since = _now(demo)
    assert _curl(demo, f"https://{gw}/u/carol/")["status"] == 404
    directory.set_member(dir1, "carol", True)
    try:
        run = _ide(demo, "dir-add")
        assert run.rc == 0, run.failures
        ports = json.loads((demo["site"] / "workspace-ports.json").read_text())
        assert ports["alice"] == 8101 and ports["bob"] == 8102 and "carol" in ports
        running = lab_ssh(demo, "ide1", "docker ps --format '{{.Names}}'").stdout.split()
        assert "code-server-carol" in running, running
        cookie = _session(demo, "carol", tmp_path)
        own = _curl(demo, f"https://{gw}/u/carol/", cookie=cookie)
        assert own["status"] in (200, 302) and "/oauth2/" not in own["location"], own
    finally:
        directory.set_member(dir1, "carol", False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = _curl(demo, f"https://{gw}/u/carol/", cookie=cookie)
        if (r["status"] != 200 and "/oauth2/" in r["location"]) or r["status"] == 403:
            break
        time.sleep(3)
    assert r["status"] == 403 or "/oauth2/start" in r["location"], r
    run = _ide(demo, "dir-remove")
    assert run.rc == 0, run.failures
    running = lab_ssh(demo, "ide1", "docker ps -a --format '{{.Names}}'").stdout.split()
    assert "code-server-carol" not in running and "code-server-alice" in running, running
    assert lab_ssh(demo, "ide1", "test -f /srv/code-server/homes/carol.img").returncode == 0
    assert _curl(demo, f"https://{gw}/u/carol/", cookie=cookie)["status"] == 404
    # a second run changes nothing
    again = _ide(demo, "dir-again")
    assert again.rc == 0 and again.changed == 0, again.changed_tasks
    # the admin API's use (the directory's import, by the permanent admin, from its
    # address) and carol's login are in the audit trail
    events = _journal(demo, "keycloak", since)
    assert 'operationType="ACTION"' in events and "user-storage/" in events, events[-2000:]
    assert 'type="LOGIN"' in events and 'username="carol"' in events


def test_a_directory_name_that_is_not_a_safe_identifier_is_refused(demo) -> None:
    """A member whose user name would be a path or a container name's trouble (o.malley):
    the workspace list is refused, naming them, before any workbench changes."""
    from installer.lab import directory

    dir1 = _dir1(demo)
    directory.modify(dir1, f"""dn: uid=o.malley,{directory.PEOPLE}
changetype: add
objectClass: inetOrgPerson
uid: o.malley
cn: Owen Malley
sn: Malley
""")
    directory.set_member(dir1, "o.malley", True)
    try:
        run = _ide(demo, "dir-unsafe")
    finally:
        directory.set_member(dir1, "o.malley", False)
        directory.modify(dir1, f"dn: uid=o.malley,{directory.PEOPLE}\nchangetype: delete\n")
    assert run.rc != 0 and run.changed == 0, run.changed_tasks
    assert "'o.malley'" in json.dumps(run.failures) and "not safe" in json.dumps(run.failures)


def test_the_waf_refuses_attacks_at_the_gateway_and_logs_them(demo) -> None:
    """Classic attacks through the real gateway (ModSecurity v3 + OWASP CRS, blocking) are
    refused before any login or workbench sees them, and each refusal is a line in the
    audit trail (syslog, tag airlock_waf) naming the rule and the client; the workbench
    tests (test_ide) pass behind the same WAF."""
    since = _now(demo)
    gw = _gw(demo)
    got = {
        "sqli": _curl(demo, f"https://{gw}/u/alice/?id=1%27%20OR%20%271%27%3D%271"),
        "xss": _curl(demo, f"https://{gw}/u/alice/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        "traversal": _curl(demo, f"https://{gw}/u/alice/?f=..%2F..%2F..%2Fetc%2Fpasswd"),
        "scanner": _curl(demo, f"https://{gw}/u/alice/", "-A", "Nikto/2.5.0"),
        "login-sqli": _curl(demo, f"https://{gw}/auth/realms/airlock/login-actions/authenticate",
                            "--data-urlencode", "username=x' UNION SELECT 1,2 --",
                            "--data-urlencode", "password=p"),
        "oversized-header": _curl(demo, f"https://{gw}/u/alice/", "-H", "X-Fill: " + "a" * 40000),
    }
    assert {k: v["status"] for k, v in got.items()} == {
        **dict.fromkeys(got, 403), "oversized-header": 400}, got
    time.sleep(1)
    trail = _journal(demo, "airlock_waf", since)
    denied = [x for x in trail.splitlines() if "ModSecurity: Access denied with code 403" in x]
    assert len(denied) >= 5 and all("[client " in x and 'request: "' in x for x in denied), \
        trail[-3000:]
    assert any("UNION" in x or "login-actions" in x for x in denied)
    # the rules that matched, in full, in the WAF's JSON audit log
    audit = lab_ssh(demo, GW, "tail -c 200000 /var/log/nginx/airlock-waf-audit.json").stdout
    rules = {m["details"]["ruleId"][:3] for line in audit.splitlines() if line.startswith("{")
             for m in json.loads(line)["transaction"].get("messages", [])}
    assert {"942", "941", "930", "913"} <= rules, rules
    # the same addresses, signed in or not, still reach the login page
    assert _curl(demo, f"https://{gw}/u/alice/")["status"] == 302


@pytest.mark.parametrize("extravars, message", [
    ({"airlock_controls": {"sso": False, "mfa": True}}, "MFA is a step of the SSO login"),
    ({"keycloak_otp_policy": {}}, "keycloak_otp_policy is empty"),
    ({"airlock_identity_local_users": [{"name": "../root"}]}, "is not a safe identifier"),
    ({"keycloak_gateway_url": "https://evil.example"},
     "must be served by the gateway"),
    ({"keycloak_ldap_bind_password": "Wrong-bind-password-1"}, "cannot bind to the directory"),
    ({"airlock_directory": {"url": "ldap://dir1:389"}}, "must be ldaps://"),
])
def test_bad_identity_input_is_refused_before_anything_changes(demo, extravars, message):
    # the directory bind is tried by the keycloak role itself, on its host: the run is
    # limited to it (the other hosts' baseline would only cost CI minutes)
    limit = GW if "keycloak_ldap_bind_password" in extravars else None
    run = run_playbook(REPO, "site.yml", demo["inventory"], site=demo["site"],
                       log_dir=demo["dir"] / "identity-logs", extravars=extravars, live=False,
                       raise_on_failure=False, limit=limit)
    assert run.rc != 0 and run.changed == 0, run.changed_tasks
    assert message in json.dumps(run.failures), run.failures


def test_keycloak_memory_is_reported(demo) -> None:
    r = lab_ssh(demo, GW, "docker stats --no-stream --format '{{.MemUsage}}' keycloak")
    assert r.returncode == 0 and ("MiB" in r.stdout or "GiB" in r.stdout), r
    print(f"Keycloak memory: {r.stdout.strip()}")  # reported, not asserted
