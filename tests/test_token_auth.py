"""Bearer-token auth against a real docker-registry configured for token auth, with a small
token service written here (the role a bank's Harbor or Nexus plays): the registry checks
the JWT's signature against the service's certificate, so a wrong or missing token fails
for real."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import textwrap
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from conftest import run_registry, skopeo_push, two_images, write_spec
from installer.bundle.build import BuildOptions, build
from installer.bundle.sources.http import FetchOptions
from installer.bundle.verify import verify
from installer.errors import SourceError

USER, PASSWORD = "stager", "t0ken-pass"
FAST = BuildOptions(fetch=FetchOptions(timeout=5, retries=1, backoff=0.05))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    def __init__(self, d: Path):
        now = datetime.datetime.now(datetime.UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airlock test tokens")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(7)
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = d / "token.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.issued = 0
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                if auth != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
                    self.send_response(401)
                    self.end_headers()
                    return
                q = parse_qs(urlparse(self.path).query)
                token = service.token(q.get("service", [""])[0], q.get("scope", []))
                body = json.dumps({"token": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, aud: str, scopes: list[str]) -> str:
        access = []
        for s in scopes:
            kind, name, actions = s.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"alg": "ES256", "typ": "JWT",
                  "x5c": [base64.b64encode(self.cert.public_bytes(
                      serialization.Encoding.DER)).decode()]}
        claims = {"iss": "airlock-test-issuer", "sub": USER, "aud": aud, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": str(uuid.uuid4()), "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        self.issued += 1
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("tokreg")
    tokens = TokenService(d)
    auth = {"token": {"realm": tokens.url, "service": "airlock-test-registry",
                      "issuer": "airlock-test-issuer", "rootcertbundle": str(tokens.cert_path)}}
    try:
        with run_registry(d, auth=auth) as host:
            img = two_images(d / "images.tar")
            skopeo_push(f"docker-archive:{img}:test/app:1", f"{host}/private/app:1",
                        "--dest-tls-verify=false", "--dest-creds", f"{USER}:{PASSWORD}")
            yield host, tokens
    finally:
        tokens.close()


def spec(d: Path, host: str, auth: bool) -> Path:
    extra = "auth: {username: stager, password_env: TOK_PASS}\n" if auth else ""
    return write_spec(d, f"""
        apiVersion: airlock/v1
        name: tok
        version: 1
        phase: poc
        images:
          - name: app
            ref: {host}/private/app:1
            tls_verify: false
    """.rstrip(" ") + textwrap.indent(extra, " " * 12))


def test_bearer_token_flow(token_registry, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    host, tokens = token_registry
    monkeypatch.setenv("TOK_PASS", PASSWORD)
    before = tokens.issued
    b = build(spec(tmp_path, host, auth=True), tmp_path / "b", FAST).path
    assert verify(b).ok and tokens.issued == before + 1  # one token, reused for every blob


def test_token_service_refuses_bad_credentials(token_registry, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    host, _ = token_registry
    monkeypatch.setenv("TOK_PASS", "nope")
    with pytest.raises(SourceError, match="token service refused"):
        build(spec(tmp_path, host, auth=True), tmp_path / "b", FAST)
    assert not (tmp_path / "b").exists()


def test_anonymous_token_has_no_access(token_registry, tmp_path: Path) -> None:
    host, _ = token_registry
    with pytest.raises(SourceError, match="token service refused"):
        build(spec(tmp_path, host, auth=False), tmp_path / "b", FAST)
