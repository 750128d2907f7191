"""The identity path's checks and the gateway's SSO configuration, without the lab (the lab
proves them end to end in test_identity.py): each bad input named before anything changes;
the gateway's nginx.conf with SSO on, rendered from the role's template and accepted by
the real nginx (`nginx -t`), routes each session to its own user's workbench only."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from conftest import REPO, need

spec = importlib.util.spec_from_file_location(
    "keycloak_filters", REPO / "roles/keycloak/filter_plugins/keycloak.py")
kc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kc)

DIGEST = "sha256:" + "ab" * 32
GOOD = {
    "image": f"repo1:5000/keycloak@{DIGEST}", "hostname": "https://portal.bank/auth",
    "admin_hostname": "https://kc1:8443/auth", "relative_path": "/auth",
    "gateway_url": "https://portal.bank", "mfa": True,
    "otp_policy": {"type": "totp", "algorithm": "HmacSHA1", "digits": 6, "period": 30},
    "users": [{"name": "alice", "groups": ["ai-coders"]}], "groups": ["ai-coders"],
    "trusted": ["10.0.2.10"],
}


def problems(**change) -> list[str]:
    return kc.keycloak_problems({**GOOD, **change})


def test_good_input_passes() -> None:
    assert problems() == []
    assert problems(mfa=False, otp_policy={}) == []


@pytest.mark.parametrize("change, words", [
    ({"otp_policy": {}}, "MFA is on (airlock_controls.mfa) but keycloak_otp_policy is empty"),
    ({"otp_policy": {"type": "hotp", "algorithm": "HmacSHA1", "digits": 6, "period": 30}},
     "keycloak_otp_policy.type must be totp"),
    ({"otp_policy": {"type": "totp", "algorithm": "MD5", "digits": 6, "period": 30}},
     "keycloak_otp_policy.algorithm must be one of"),
    ({"otp_policy": {"type": "totp", "algorithm": "HmacSHA1", "digits": 7, "period": 30}},
     "digits must be 6 or 8"),
    ({"otp_policy": {"type": "totp", "algorithm": "HmacSHA1", "digits": 6, "period": 5}},
     "period must be 15-120 seconds"),
    # the client's redirect URI is the gateway's: anything else is refused
    ({"gateway_url": "https://evil.example"}, "must be served by the gateway"),
    ({"gateway_url": "https://portal.bank/elsewhere"}, "the gateway's origin, no path"),
    ({"gateway_url": "http://portal.bank"}, "keycloak_gateway_url must be an https:// URL"),
    ({"hostname": "https://portal.bank/"}, "must end in the image's path /auth"),
    ({"image": "repo1:5000/keycloak:26"}, "pulled by digest"),
    ({"users": [{"name": "Robert'); DROP"}]}, "is not a safe identifier"),
    ({"users": [{"name": "alice"}, {"name": "alice"}]}, "listed twice"),
    ({"users": [{"name": "alice", "groups": ["admins"]}]}, "group 'admins' of 'alice'"),
    ({"trusted": []}, "must list the gateways' addresses"),
    ({"trusted": ["gateway"]}, "'gateway' is not an address"),
    ({"groups": []}, "at least one group"),
])
def test_each_bad_input_is_named(change, words) -> None:
    found = problems(**change)
    assert any(words in p for p in found), found


def _render(tmp_path: Path, template: str = "nginx.conf.j2", **extra) -> Path:
    """The role's template as Ansible would render it (its defaults, plus EXTRA); with
    the WAF on (the default), its rules file rendered beside it first."""
    import yaml

    defaults = yaml.safe_load((REPO / "roles/nginx_gateway/defaults/main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_replace"] = lambda v, pat, rep: __import__("re").sub(pat, rep, v)
    env.filters["regex_escape"] = lambda v: __import__("re").escape(v)
    env.filters["urlsplit"] = lambda v, part: getattr(__import__("urllib.parse").parse.urlsplit(v),
                                                      part)
    cert = tmp_path / "tls.crt"
    key = tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-subj",
                    "/CN=gw1", "-days", "1", "-out", str(cert)], check=True, capture_output=True)
    values = {**defaults, "ansible_managed": "test", "inventory_hostname": "gw1",
              "nginx_gateway_server_name": "gw1", "nginx_gateway_tls_cert": str(cert),
              "nginx_gateway_tls_key": str(key), "nginx_gateway_ca_file": str(cert),
              "nginx_gateway_access_log": str(tmp_path / "access.json"),
              "nginx_gateway_denied_log": str(tmp_path / "denied.json"),
              "nginx_gateway_routes": [
                  {"route": "alice", "user": "alice", "upstream": "http://10.0.3.10:8101"},
                  {"route": "bob", "user": "bob", "upstream": "http://10.0.3.10:8102"}],
              "nginx_gateway_waf_rules": str(tmp_path / "waf.conf"),
              "nginx_gateway_waf_audit_log": str(tmp_path / "waf-audit.json"),
              **extra}
    if template == "nginx.conf.j2" and values["nginx_gateway_waf"]:
        _render(tmp_path, "waf.conf.j2", **extra)
    text = env.from_string(
        (REPO / "roles/nginx_gateway/templates" / template).read_text()).render(values)
    out = tmp_path / ("waf.conf" if template == "waf.conf.j2" else "nginx.conf")
    out.write_text(text)
    return out


SSO = {"nginx_gateway_oauth2_proxy": "http://127.0.0.1:4180",
       "nginx_gateway_keycloak_servers": ["10.0.2.10:8443"],
       "nginx_gateway_keycloak_tls_name": "gw1"}
# a Keycloak cluster: both members balanced, one name on both certificates
SSO_PAIR = {**SSO, "nginx_gateway_keycloak_servers": ["10.0.2.12:8443", "10.0.2.13:8443"],
            "nginx_gateway_keycloak_tls_name": "keycloak"}


@pytest.mark.parametrize("sso", [None, SSO, SSO_PAIR], ids=["no-sso", "sso", "sso-pair"])
def test_nginx_accepts_the_gateway_config(tmp_path, sso) -> None:
    need("nginx")
    conf = _render(tmp_path, **(sso or {}))
    text = conf.read_text()
    # the real nginx parses it, as the role's validate: does (its logs go to tmp_path)
    t = subprocess.run([shutil.which("nginx") or "nginx", "-t", "-q", "-c", str(conf)],
                       capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    if not sso:
        assert "auth_request" not in text and "/auth/" not in text
        return
    # each route asks oauth2-proxy, and only the owner's session maps to the workbench
    assert text.count("auth_request /_airlock/auth;") == 2
    assert '"alice:alice" 10.0.3.10:8101;' in text and '"bob:bob" 10.0.3.10:8102;' in text
    assert "default 127.0.0.1:8099;" in text
    # no session: to the login; Keycloak's admin console and master realm are not served
    assert "error_page 401 = @airlock_login;" in text
    assert "location /auth/admin/ {\n            return 403;" in text
    assert "location /auth/realms/master/ {\n            return 403;" in text
    assert "proxy_ssl_verify on;" in text
    assert f"proxy_ssl_name {sso['nginx_gateway_keycloak_tls_name']};" in text
    upstream = text[text.index("upstream airlock_keycloak {"):]
    upstream = upstream[:upstream.index("}")]
    assert [line.split()[1] for line in upstream.splitlines()[1:] if line.strip()] == \
        sso["nginx_gateway_keycloak_servers"]
    assert "proxy_pass https://airlock_keycloak/auth/;" in text
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in text


LDAP = {"url": "ldaps://dir1.bank:636", "bind_dn": "uid=keycloak,ou=services,dc=bank",
        "bind_password": "x" * 20, "ca_file": "/site/bank-ca.crt",
        "users_dn": "ou=people,dc=bank", "groups_dn": "ou=groups,dc=bank",
        "user_object_classes": ["inetOrgPerson"], "cache_policy": "NO_CACHE"}


@pytest.mark.parametrize("change,words", [
    ({"url": "ldap://dir1.bank:389"}, "must be ldaps://"),
    ({"bind_dn": "keycloak"}, "keycloak_ldap_bind_dn must be a DN"),
    ({"users_dn": ""}, "keycloak_ldap_users_dn must be a DN"),
    ({"bind_password": ""}, "keycloak_ldap_bind_password is empty"),
    ({"ca_file": ""}, "keycloak_ldap_ca_file must name the CA"),
    ({"cache_policy": "FOREVER"}, "is not one of Keycloak's"),
])
def test_each_bad_directory_input_is_named(change, words) -> None:
    assert problems(ldap=LDAP) == []
    found = problems(ldap={**LDAP, **change})
    assert any(words in p for p in found), found


def _workspaces():
    spec = importlib.util.spec_from_file_location(
        "airlock_workspaces", REPO / "playbooks/filter_plugins/airlock_workspaces.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_directory_members_get_workbenches_on_ports_that_do_not_move() -> None:
    ws = _workspaces()
    pinned = [{"name": "alice", "port": 8101}, {"name": "bob", "port": 8102}]
    first = ws.airlock_workspaces(pinned, ["bob", "alice", "carol"], {}, [8100, 8199])
    assert first == [{"name": "alice", "port": 8101}, {"name": "bob", "port": 8102},
                     {"name": "carol", "port": 8100}]
    known = ws.airlock_workspace_ports(first, {})
    # dave joins, carol leaves and comes back: each keeps the port they had
    second = ws.airlock_workspaces(pinned, ["alice", "dave"], known, [8100, 8199])
    assert {u["name"]: u["port"] for u in second} == {"alice": 8101, "dave": 8103}
    known = ws.airlock_workspace_ports(second, known)
    third = ws.airlock_workspaces(pinned, ["carol", "dave"], known, [8100, 8199])
    assert {u["name"]: u["port"] for u in third} == {"carol": 8100, "dave": 8103}
    # bob is pinned but no longer in the group: no workbench
    assert "bob" not in {u["name"] for u in third}


@pytest.mark.parametrize("members,words", [
    (["alice", "Robert'); DROP"], "not safe identifiers"),
    (["../root"], "not safe identifiers"),
    ([f"u{i}" for i in range(3)], "no free workbench port left"),
])
def test_unsafe_or_too_many_directory_members_are_refused(members, words) -> None:
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match=words):
        _workspaces().airlock_workspaces([], members, {}, [8100, 8101])


def test_the_waf_rules_pass_the_roles_check_and_a_broken_rule_does_not(tmp_path) -> None:
    """The role's validate: for the WAF: real nginx with the real ModSecurity module and
    the Core Rule Set loads the rendered rules; one bad directive and it refuses them."""
    need("nginx")
    rules = _render(tmp_path, "waf.conf.j2")
    check = REPO / "roles/nginx_gateway/files/waf_check.sh"
    ok = subprocess.run(["sh", str(check), str(rules)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    text = rules.read_text()
    assert "SecRuleEngine On" in text and "Include /usr/share/modsecurity-crs/rules/*.conf" in text
    assert "ruleRemoveTargetByTag=OWASP_CRS;ARGS:password" in text
    for broken in ("SecRuleEngine Sometimes\n",
                   'SecRule ARGS "id:1000199,phase:2,deny"\n'):
        rules.write_text(text + broken)
        bad = subprocess.run(["sh", str(check), str(rules)], capture_output=True, text=True)
        assert bad.returncode != 0, broken


WAF_SERVER = """
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
include /etc/nginx/modules-enabled/*.conf;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    modsecurity_rules_file {d}/waf.conf;
    server {{
        listen 127.0.0.1:{port};
        large_client_header_buffers 4 8k;
        modsecurity on;
        # proxied, as the gateway's routes are (a `return` answers before the WAF looks)
        location / {{ proxy_pass http://127.0.0.1:{backend}; }}
    }}
    server {{
        listen 127.0.0.1:{backend};
        location / {{ return 200 "passed\n"; }}
    }}
}}
"""


def test_the_waf_refuses_classic_attacks_and_lets_workbench_and_login_traffic_pass(
        tmp_path) -> None:
    """The rendered rules in a real nginx on loopback: SQL injection, XSS, path traversal,
    a scanner's user agent and an oversized header are refused (403/400) and audited;
    a workbench's requests and a Keycloak login whose password looks like SQL pass."""
    import socket
    import time
    import urllib.error
    import urllib.parse
    import urllib.request

    need("nginx")
    # as in the lab: users reach the gateway by its address, 10.0.2.10
    _render(tmp_path, "waf.conf.j2", nginx_gateway_waf_own_address="10.0.2.10")
    tmp_path.chmod(0o777)
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    port = ports[0]
    conf = tmp_path / "nginx.conf"
    conf.write_text(WAF_SERVER.format(d=tmp_path, port=port, backend=ports[1]))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def status(path: str, data: bytes | None = None, headers: dict | None = None) -> int:
        req = urllib.request.Request(base + path, data=data, headers={
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0",
            "Accept": "text/html", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        oidc = ("/auth/realms/airlock/protocol/openid-connect/auth?client_id=airlock-gateway"
                "&response_type=code&scope=openid+profile&redirect_uri=")
        login = urllib.parse.urlencode({"username": "alice", "password": "x' OR '1'='1' --",
                                        "credentialId": ""}).encode()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        passes = {
            "workbench": status("/u/alice/?folder=/home/coder/project"),
            "static": status("/u/alice/stable-abc/static/out/vs/workbench/workbench.web.main.js"),
            "websocket": status("/u/alice/?reconnectionToken=3f1c&reconnection=false"
                                "&skipWebSocketFrames=false",
                                headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                         "Sec-WebSocket-Version": "13",
                                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}),
            "login": status("/auth/realms/airlock/login-actions/authenticate?session_code=a1"
                            "&execution=b2&client_id=airlock-gateway&tab_id=c3", login, form),
            "callback": status("/oauth2/callback?state=abc%3A%2Fu%2Falice%2F&code=x.y.z"
                               "&iss=https%3A%2F%2F10.0.2.10%2Fauth%2Frealms%2Fairlock",
                               headers={"Host": "10.0.2.10"}),
            "oidc-to-the-gateway": status(oidc + "https%3A%2F%2F10.0.2.10%2Foauth2%2Fcallback",
                                          headers={"Host": "10.0.2.10"}),
        }
        attacks = {
            "sqli": status("/u/alice/?id=1%27%20OR%20%271%27%3D%271"),
            "xss": status("/u/alice/?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"),
            "traversal": status("/u/alice/?file=..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
            "scanner": status("/", headers={"User-Agent": "sqlmap/1.7.2#stable"}),
            "sqli-in-login-username": status(
                "/auth/realms/airlock/login-actions/authenticate",
                urllib.parse.urlencode({"username": "x' UNION SELECT password FROM users --",
                                        "password": "p"}).encode(), form),
            "oversized-header": status("/", headers={"X-Filler": "a" * 40000}),
            # the exclusion is for the gateway's own address only
            "oidc-to-another-address": status(oidc + "https%3A%2F%2F10.6.6.6%2Fx",
                                              headers={"Host": "10.0.2.10"}),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert passes == dict.fromkeys(passes, 200), passes
    assert attacks == {**dict.fromkeys(attacks, 403), "oversized-header": 400}, attacks
    audit = (tmp_path / "waf-audit.json").read_text()
    for marker in ("sqlmap", "UNION SELECT", "etc%2Fpasswd", "script"):
        assert marker in audit, marker
