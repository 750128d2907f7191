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


def _render(tmp_path: Path, **extra) -> Path:
    """The role's template as Ansible would render it (its defaults, plus EXTRA)."""
    import yaml

    defaults = yaml.safe_load((REPO / "roles/nginx_gateway/defaults/main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_replace"] = lambda v, pat, rep: __import__("re").sub(pat, rep, v)
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
              **extra}
    text = env.from_string(
        (REPO / "roles/nginx_gateway/templates/nginx.conf.j2").read_text()).render(values)
    out = tmp_path / "nginx.conf"
    out.write_text(text)
    return out


SSO = {"nginx_gateway_oauth2_proxy": "http://127.0.0.1:4180",
       "nginx_gateway_keycloak_upstream": "https://10.0.2.10:8443",
       "nginx_gateway_keycloak_tls_name": "gw1"}


@pytest.mark.parametrize("sso", [False, True], ids=["no-sso", "sso"])
def test_nginx_accepts_the_gateway_config(tmp_path, sso) -> None:
    need("nginx")
    conf = _render(tmp_path, **(SSO if sso else {}))
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
    assert "proxy_ssl_verify on;" in text and "proxy_ssl_name gw1;" in text
