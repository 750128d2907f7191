"""Bearer-token auth against a real docker-registry configured for token auth, with a small
token service written here (the role a bank's Harbor or Nexus plays): the registry checks
the JWT's signature against the service's certificate, so a wrong or missing token fails
for real. Registry and token service speak TLS (a throwaway CA): credentials and tokens
never go over plain HTTP, which the last tests check against servers that record every
Authorization header they are sent."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import ssl
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from conftest import ca_and_cert, run_registry, skopeo_push, two_images, write_spec
from installer.bundle.build import BuildOptions, build
from installer.bundle.sources.http import FetchOptions
from installer.bundle.verify import verify
from installer.errors import SourceError

USER, PASSWORD = "stager", "t0ken-pass"
FAST = BuildOptions(fetch=FetchOptions(timeout=5, retries=1, backoff=0.05))
CLEARTEXT = "never sends credentials or tokens unencrypted"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a: object) -> None:
        pass

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serving(handler: type[Quiet], tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """HANDLER on a free loopback port, over TLS with (cert, key) when given; yields
    HOST:PORT."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class TokenService:
    def __init__(self, d: Path) -> None:
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

        class Handler(Quiet):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                if auth != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
                    self.reply(401)
                    return
                q = parse_qs(urlparse(self.path).query)
                token = service.token(q.get("service", [""])[0], q.get("scope", []))
                self.reply(200, json.dumps({"token": token}).encode(),
                           {"Content-Type": "application/json"})

        self.handler = Handler

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


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory):
    """(registry HOST:PORT, its TokenService, the CA of both, (cert, key) they serve)."""
    d = tmp_path_factory.mktemp("tokreg")
    ca, cert, key = ca_and_cert(d)
    tokens = TokenService(d)
    with serving(tokens.handler, (cert, key)) as token_host:
        auth = {"token": {"realm": f"https://{token_host}/token",
                          "service": "airlock-test-registry", "issuer": "airlock-test-issuer",
                          "rootcertbundle": str(tokens.cert_path)}}
        with run_registry(d, auth=auth, tls={"certificate": str(cert), "key": str(key)}) as host:
            img = two_images(d / "images.tar")
            certs = d / "certs"
            certs.mkdir()
            (certs / "ca.crt").write_bytes(ca.read_bytes())
            skopeo_push(f"docker-archive:{img}:test/app:1", f"{host}/private/app:1",
                        "--dest-cert-dir", str(certs), "--dest-creds", f"{USER}:{PASSWORD}")
            yield host, tokens, ca, (cert, key)


def spec(d: Path, host: str, auth: bool, tls: str) -> Path:
    """An image from HOST; TLS is the spec's TLS line (ca_file: …, or tls_verify: false)."""
    extra = tls + "\n" + ("auth: {username: stager, password_env: TOK_PASS}\n" if auth else "")
    return write_spec(d, f"""
        apiVersion: airlock/v1
        name: tok
        version: 1
        phase: poc
        images:
          - name: app
            ref: {host}/private/app:1
    """.rstrip(" ") + textwrap.indent(extra, " " * 12))


def test_bearer_token_flow(token_registry, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    host, tokens, ca, _ = token_registry
    monkeypatch.setenv("TOK_PASS", PASSWORD)
    before = tokens.issued
    b = build(spec(tmp_path, host, auth=True, tls=f"ca_file: {ca}"), tmp_path / "b", FAST).path
    assert verify(b).ok and tokens.issued == before + 1  # one token, reused for every blob


def test_token_service_refuses_bad_credentials(token_registry, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    host, _, ca, _ = token_registry
    monkeypatch.setenv("TOK_PASS", "nope")
    with pytest.raises(SourceError, match="token service refused"):
        build(spec(tmp_path, host, auth=True, tls=f"ca_file: {ca}"), tmp_path / "b", FAST)
    assert not (tmp_path / "b").exists()


def test_anonymous_token_has_no_access(token_registry, tmp_path: Path) -> None:
    host, _, ca, _ = token_registry
    with pytest.raises(SourceError, match="token service refused"):
        build(spec(tmp_path, host, auth=False, tls=f"ca_file: {ca}"), tmp_path / "b", FAST)


# --------------------------------------------------------------------------- expiry

@contextmanager
def expiring(host: str, ca: Path, tls: tuple[Path, Path], uses: list[int]) -> Iterator[dict]:
    """The registry's side of tokens that expire mid-pull: a TLS front for the registry at
    HOST that lets the n-th token it sees through ``uses[n]`` times (later tokens: no limit),
    then answers 401 with the registry's own challenge. Yields {"host", "refused"}."""
    seen: dict[str, int] = {}  # token -> requests let through, in the order first seen
    state = {"refused": 0}
    lock = threading.Lock()

    class Front(Quiet):
        def do_GET(self) -> None:
            headers = {k: self.headers[k] for k in ("Accept", "Authorization") if k in self.headers}
            auth = headers.get("Authorization")
            with lock:
                if auth:
                    n = list(seen).index(auth) if auth in seen else len(seen)
                    count = seen.setdefault(auth, 0)
                    if n < len(uses) and count >= uses[n]:
                        del headers["Authorization"]  # the registry's own 401 and challenge
                        state["refused"] += 1
                    else:
                        seen[auth] = count + 1
            r = requests.get(f"https://{host}{self.path}", headers=headers, verify=str(ca),
                             timeout=10)
            self.reply(r.status_code, r.content, {
                k: r.headers[k] for k in ("Content-Type", "Docker-Content-Digest",
                                          "WWW-Authenticate") if k in r.headers})

    with serving(Front, tls) as front:
        state["host"] = front
        yield state


def test_expired_token_is_renewed_mid_pull(token_registry, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    host, tokens, ca, tls = token_registry
    monkeypatch.setenv("TOK_PASS", PASSWORD)
    before = tokens.issued
    with expiring(host, ca, tls, uses=[2]) as front:  # manifest and config, then expired
        b = build(spec(tmp_path, front["host"], auth=True, tls=f"ca_file: {ca}"),
                  tmp_path / "b", FAST).path
    assert verify(b).ok
    assert front["refused"] == 1 and tokens.issued == before + 2


def test_renewed_token_refused_too_is_a_clear_error(token_registry, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    host, tokens, ca, tls = token_registry
    monkeypatch.setenv("TOK_PASS", PASSWORD)
    before = tokens.issued
    new_token_refused = r"refused access \(HTTP 401\) to a new token too"
    with (expiring(host, ca, tls, uses=[2, 0]) as front,
          pytest.raises(SourceError, match=new_token_refused)):
        build(spec(tmp_path, front["host"], auth=True, tls=f"ca_file: {ca}"),
              tmp_path / "b", FAST)
    assert front["refused"] == 2 and tokens.issued == before + 2  # renewed once, no loop
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- plain HTTP

@contextmanager
def recording(challenge: str, tls: tuple[Path, Path] | None = None,
              realm: str | None = None) -> Iterator[dict]:
    """A registry that asks for authentication (CHALLENGE: basic or bearer, its token
    service at REALM or at its own /token) and records the Authorization header of every
    request it is sent. Yields {"host", "seen": [(path, Authorization or None)]}."""
    state: dict = {"seen": []}

    class Recorder(Quiet):
        def do_GET(self) -> None:
            state["seen"].append((self.path, self.headers.get("Authorization")))
            if self.path.startswith("/token"):
                self.reply(200, b'{"token": "t0k"}', {"Content-Type": "application/json"})
                return
            where = realm or f"{'https' if tls else 'http'}://{state['host']}/token"
            self.reply(401, headers={"WWW-Authenticate": 'Basic realm="test"'
                                     if challenge == "basic" else
                                     f'Bearer realm="{where}",service="test"'})

    with serving(Recorder, tls) as host:
        state["host"] = host
        yield state


@pytest.mark.parametrize("challenge,creds,why", [
    ("basic", True, "plain HTTP would carry the credentials"),
    ("bearer", True, "plain HTTP would carry the credentials"),
    ("bearer", False, "asks for authentication over plain HTTP"),  # an anonymous token
])
def test_no_credentials_or_tokens_over_plain_http(tmp_path: Path, challenge: str,
                                                  creds: bool, why: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOK_PASS", PASSWORD)
    with recording(challenge) as reg, pytest.raises(SourceError, match=why) as e:
        build(spec(tmp_path, reg["host"], auth=creds, tls="tls_verify: false"),
              tmp_path / "b", FAST)
    assert CLEARTEXT in str(e.value) and "HTTPS" in (e.value.hint or "")
    assert [auth for _, auth in reg["seen"] if auth] == []
    if not creds:  # it did fall back to plain HTTP and was asked to authenticate there
        assert [p for p, _ in reg["seen"]][:2] == ["/v2/private/app/manifests/1",
                                                   "/token?scope=repository%3Aprivate%2Fapp"
                                                   "%3Apull&service=test"]


def test_no_credentials_to_a_plain_http_token_service(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = ca_and_cert(tmp_path)
    monkeypatch.setenv("TOK_PASS", PASSWORD)
    with (recording("bearer") as tokens,
          recording("bearer", (cert, key), realm=f"http://{tokens['host']}/token") as reg,
          pytest.raises(SourceError, match=f"token service http://.* not HTTPS; "
                                           f"airlock {CLEARTEXT}")):
        build(spec(tmp_path, reg["host"], auth=True, tls=f"ca_file: {ca}"),
              tmp_path / "b", FAST)
    assert tokens["seen"] == [] and [a for _, a in reg["seen"] if a] == []
