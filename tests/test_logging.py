"""The log store and monitoring on the demo's lab (log1, seed 000's audit/log zone): what
happens on the platform is found in the store by a query for the user who did it; an
outage of the store loses nothing and stores nothing twice; an edit in the store is named
by `airlock audit verify --against-store`; Prometheus scrapes every target; a stopped
workbench and a certificate that expires in 20 days each fire their alert at a receiver
the test runs on the lab's audit network (HTTPS with the site CA). That a second deploy
changes nothing, log1 and the shippers included, is test_deploy.py's new-release test."""

from __future__ import annotations

import base64
import http.server
import json
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conftest import REPO, lab_ssh, run_airlock
from gateway import gateway_address, gateway_request, gateway_session
from llmclient import llm_key, llm_post

pytestmark = pytest.mark.usefixtures("demo")
RECEIVER = "10.0.6.1"  # the controller on the audit network (the lab inventory's receiver)


def _store(demo: dict) -> str:
    return f"https://{demo['state']['hosts']['log1']['mgmt_address']}:9200"


def _search(demo: dict, query: dict[str, Any], account: str = "siem",
            index: str = "airlock-*") -> list[dict[str, Any]]:
    """Documents matching QUERY, as the SIEM's read-only account (from the controller)."""
    password = (demo["site"] / "secrets" / "logging" / f"{account}.password").read_text().strip()
    req = urllib.request.Request(
        f"{_store(demo)}/{index}/_search", method="POST",
        data=json.dumps({"size": 1000, "query": query}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Basic " +
                 base64.b64encode(f"{account}:{password}".encode()).decode()})
    tls = ssl.create_default_context(cafile=str(demo["site"] / "pki" / "ca.crt"))
    with urllib.request.urlopen(req, context=tls, timeout=30) as r:
        return [h["_source"] | {"_id": h["_id"], "_index": h["_index"]}
                for h in json.load(r)["hits"]["hits"]]


def _found(demo: dict, query: dict[str, Any], want: int = 1, seconds: float = 60,
           index: str = "airlock-*") -> list[dict[str, Any]]:
    """QUERY's documents once at least WANT are in the store (bounded wait)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            docs = _search(demo, query, index=index)
        except OSError:
            docs = []
        if len(docs) >= want or time.monotonic() > deadline:
            return docs
        time.sleep(2)


def _field(doc: dict[str, Any], name: str) -> Any:
    """A field of a stored document, written flat ("event.outcome") or nested."""
    if name in doc:
        return doc[name]
    head, _, rest = name.partition(".")
    return _field(doc[head], rest) if rest and isinstance(doc.get(head), dict) else None


def _both(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"bool": {"filter": list(terms)}}


def test_a_sudo_on_ide1_is_found_by_its_user(demo: dict) -> None:
    marker = f"airlock-test-{secrets.token_hex(4)}"
    r = lab_ssh(demo, "ide1", f"echo {marker} > /dev/null", root=True)
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    docs = _found(demo, _both({"term": {"host": "ide1"}}, {"term": {"event.kind": "sudo"}},
                              {"term": {"user": "airlock"}},
                              {"match_phrase": {"message": marker}}))
    assert docs, "the sudo never reached the store"
    print(f"ingest delay (sudo on ide1 -> found): {time.monotonic() - t0:.1f} s")


def test_a_failed_login_is_found_by_its_user(demo: dict) -> None:
    from installer.lab import browser

    gw = gateway_address(demo)
    before = len(_search(demo, _both({"term": {"event.kind": "identity"}},
                                     {"term": {"user": "alice"}},
                                     {"term": {"event.action": "LOGIN_ERROR"}})))
    errors = browser.try_passwords(f"https://{gw}/u/alice/", demo["site"] / "pki" / "ca.crt",
                                   "alice", [f"wrong-{secrets.token_hex(3)}"])
    assert errors and errors[0], errors
    failed = _found(demo, _both({"term": {"event.kind": "identity"}},
                                {"term": {"user": "alice"}},
                                {"term": {"event.action": "LOGIN_ERROR"}}), want=before + 1)
    assert len(failed) == before + 1, failed[-3:]
    assert all(_field(d, "event.outcome") == "failure" for d in failed), failed[-3:]


def test_a_403_at_the_gateway_is_found_by_its_user(demo: dict, tmp_path: Path) -> None:
    """alice, signed in, asks for bob's workbench: the gateway's refusal names both."""
    cookie = gateway_session(demo, "alice", tmp_path)
    gw = gateway_address(demo)
    query = _both({"term": {"event.kind": "http"}}, {"term": {"event.outcome": "denied"}},
                  {"term": {"user": "alice"}})
    before = len(_search(demo, query))
    r = gateway_request(demo, f"https://{gw}/u/bob/", cookie=cookie)
    assert r["status"] == 403, r
    t0 = time.monotonic()
    refused = _found(demo, query, want=before + 1)
    assert len(refused) == before + 1, refused[-3:]
    print(f"ingest delay (403 at gw1 -> found): {time.monotonic() - t0:.1f} s")


def test_llm_requests_are_found_by_user_and_model_never_with_the_prompt(demo: dict) -> None:
    """alice asks the model with a resident registration number in her prompt (refused by
    the DLP rule) and once plainly: both requests are in the store under her name and the
    model; neither the number, nor the prompt, nor her key is anywhere in the store."""
    rrn, words = "900101-1234568", f"airlock-prompt-{secrets.token_hex(4)}"
    query = _both({"term": {"event.kind": "llm"}}, {"term": {"user": "alice"}})
    before = len(_search(demo, query))
    key = llm_key(demo, "alice")
    for text in (f"my number is {rrn}", f"say {words}"):
        status, _ = llm_post(demo, "alice", "/chat/completions", {
            "model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": text}]},
            key)
        assert status in (200, 400), status
    docs = _found(demo, query, want=before + 2)
    assert len(docs) >= before + 2, docs[-3:]
    assert all(_field(d, "llm.model") for d in docs), docs[-2:]
    # nowhere: not in LiteLLM's records, nor in sudo's record of the command that sent it
    # (the prompt and the key go on stdin, never on a command line)
    keys = [k.read_text().strip() for k in
            (demo["site"] / "secrets" / "litellm" / "users").glob("*.key")]
    assert key in keys
    for secret in (rrn, words, *keys):
        leaked = _search(demo, {"query_string": {"query": f'"{secret}"'}})
        assert not leaked, (secret[:4], leaked[:2])


def test_no_secret_of_the_site_is_anywhere_in_the_store(demo: dict) -> None:
    """Every password, key and TOTP seed in the site folder, searched for in every shipped
    log (the store holds what every earlier test and the demo's acceptance run did on the
    hosts: their sudo command lines, the gateway's and LiteLLM's records)."""
    secrets_dir = demo["site"] / "secrets"
    found = {}
    for f in sorted(secrets_dir.rglob("*")):
        value = f.read_text().strip() if f.is_file() else ""
        if len(value) >= 16:  # (the TOTP "last used" counters are not secrets)
            found[str(f.relative_to(secrets_dir))] = len(
                _search(demo, {"query_string": {"query": f'"{value}"'}}))
    assert len(found) >= 10, found
    assert not any(found.values()), {k: n for k, n in found.items() if n}


def test_an_airlock_deploy_is_in_the_store_with_the_chain_head(demo: dict) -> None:
    last = json.loads((demo["site"] / "audit.jsonl").read_text().splitlines()[-1])
    docs = _found(demo, {"term": {"airlock.record": last["hash"]}}, index="airlock-audit-*")
    head = f"{last['seq']}:{last['hash']}"
    assert len(docs) == 1 and _field(docs[0], "airlock.chain_head") == head, docs
    proc = run_airlock("audit", "verify", "--against-store", "--site", str(demo["site"]),
                       "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["ok"] and doc["stored"] >= last["seq"], doc


def _es(demo: dict, action: str) -> None:
    r = lab_ssh(demo, "log1", f"docker {action} elasticsearch")
    assert r.returncode == 0, r.stderr


def test_a_minute_without_the_store_loses_nothing_and_doubles_nothing(demo: dict) -> None:
    """The store stops; three hosts log 20 events each; gw1's shipper is restarted meanwhile
    (its queue goes to the disk buffer and is read back); a minute later the store starts:
    all 60 arrive, none twice."""
    marker = f"airlock-outage-{secrets.token_hex(4)}"
    hosts = ("gw1", "ide1", "repo1")
    count = 20
    _es(demo, "stop")
    try:
        for h in hosts:
            r = lab_ssh(demo, h, f"for i in $(seq 1 {count}); do logger -t airlock_test "
                                 f"'{marker} '$i; done")
            assert r.returncode == 0, r.stderr
        r = lab_ssh(demo, "gw1", "systemctl stop rsyslog && du -sb /var/spool/rsyslog && "
                                 "ls /var/spool/rsyslog && systemctl start rsyslog", root=True)
        assert r.returncode == 0, r.stderr
        spooled, files = int(r.stdout.split()[0]), r.stdout.split()[2:]
        assert any(f.startswith("airlock_es") for f in files), r.stdout
        print(f"gw1's disk buffer while the store was down: {spooled} bytes ({files})")
        time.sleep(60)
    finally:
        _es(demo, "start")
    t0 = time.monotonic()
    want = count * len(hosts)
    docs = _found(demo, _both({"term": {"program": "airlock_test"}},
                              {"match_phrase": {"message": marker}}), want=want, seconds=240)
    print(f"after the outage: {len(docs)} of {want} events in {time.monotonic() - t0:.0f} s")
    assert len(docs) == want, sorted(d["message"] for d in docs)[:5]
    assert len({(d["host"], d["message"]) for d in docs}) == want  # none twice
    time.sleep(5)  # a late duplicate would be here by now
    assert len(_search(demo, _both({"term": {"program": "airlock_test"}},
                                   {"match_phrase": {"message": marker}}))) == want


def test_an_edit_in_the_store_is_named_by_verify_against_the_store(demo: dict) -> None:
    """Someone with root on the logging host makes themselves a superuser (the file realm
    is a file) and rewrites one of airlock's records: the check names it; put back as it
    was, the check passes again."""
    import bcrypt

    from installer.deploy import auditstore

    last = json.loads((demo["site"] / "audit.jsonl").read_text().splitlines()[-1])
    docs = _found(demo, {"term": {"airlock.record": last["hash"]}}, index="airlock-audit-*")
    assert len(docs) == 1, docs
    doc = auditstore.document(last)  # what airlock shipped
    body = json.loads(doc["airlock"]["body"])
    body["result"] = "ok, nothing to see"
    forged = {**doc, "airlock": {**doc["airlock"], "body": json.dumps(body, sort_keys=True)}}
    url = f"{_store(demo)}/{docs[0]['_index']}/_doc/{docs[0]['_id']}?refresh=true"
    tls = ssl.create_default_context(cafile=str(demo["site"] / "pki" / "ca.crt"))

    def put(document: dict[str, Any]) -> None:
        req = urllib.request.Request(url, method="PUT", data=json.dumps(document).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Basic " + base64.b64encode(
                                                  b"tamper:tamper-pass").decode()})
        deadline = time.monotonic() + 60  # the file realm reads its files again every 5 s
        while True:
            try:
                with urllib.request.urlopen(req, context=tls, timeout=30) as reply:
                    assert reply.status == 200
                return
            except urllib.error.HTTPError as e:
                if e.code != 401 or time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def verify() -> tuple[int, dict[str, Any]]:
        proc = run_airlock("audit", "verify", "--against-store", "--site", str(demo["site"]),
                           "--json")
        return proc.returncode, json.loads(proc.stdout)

    hashed = bcrypt.hashpw(b"tamper-pass", bcrypt.gensalt(10, b"2a")).decode()
    config = "/opt/airlock/elasticsearch/config"
    r = lab_ssh(demo, "log1", f"""set -e; cd {config}
        cp users /root/users.before && cp users_roles /root/users_roles.before
        echo 'tamper:{hashed}' >> users && echo 'superuser:tamper' >> users_roles""")
    assert r.returncode == 0, r.stderr
    try:
        put(forged)
        try:
            rc, result = verify()
            assert rc != 0 and not result["ok"], result
            named = [p["problem"] for p in result["problems"]]
            assert any(f"record seq {last['seq']}" in p and "differs" in p for p in named), named
        finally:
            put(doc)
        rc, result = verify()
        assert rc == 0 and result["ok"], result
    finally:
        lab_ssh(demo, "log1", f"cd {config} && cat /root/users.before > users && "
                "cat /root/users_roles.before > users_roles && "
                "rm /root/users.before /root/users_roles.before")


def test_the_stores_memory_is_reported(demo: dict) -> None:
    r = lab_ssh(demo, "log1", "docker stats --no-stream --format '{{.MemUsage}}' elasticsearch")
    assert r.returncode == 0 and ("MiB" in r.stdout or "GiB" in r.stdout), r
    heap = lab_ssh(demo, "log1", "cat /opt/airlock/elasticsearch/config/heap.options").stdout
    print(f"the store's memory: {r.stdout.strip()} ({' '.join(heap.split())})")  # reported


# ------------------------------------------------------------------- monitoring

def _prometheus(demo: dict, path: str) -> dict[str, Any]:
    """Prometheus' API, from the controller (the operators' management zone)."""
    addr = demo["state"]["hosts"]["log1"]["mgmt_address"]
    with urllib.request.urlopen(f"http://{addr}:9090{path}", timeout=20) as r:
        return json.load(r)


def test_prometheus_has_every_target_up(demo: dict) -> None:
    deadline = time.monotonic() + 120
    while True:
        targets = _prometheus(demo, "/api/v1/targets")["data"]["activeTargets"]
        down = [(t["labels"].get("job"), t["labels"].get("instance"), t.get("lastError"))
                for t in targets if t["health"] != "up"]
        if not down or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert not down, down
    jobs = {t["labels"]["job"] for t in targets}
    assert {"node", "probe", "prometheus", "alertmanager", "blackbox"} <= jobs
    hosts = {t["labels"].get("host") for t in targets if t["labels"]["job"] == "node"}
    assert {"gw1", "ide1", "ai1", "repo1", "log1"} <= hosts
    probes = {t["labels"].get("probe") for t in targets if t["labels"]["job"] == "probe"}
    assert {"gateway", "repo", "workbench-alice", "workbench-bob",
            "inference-ai1"} <= probes, probes
    # a probe's target is "up" when the blackbox exporter answered; the endpoint answered
    # the way the probe asks only where probe_success is 1 (every endpoint is up here)
    deadline = time.monotonic() + 120
    while True:
        results = _prometheus(demo, "/api/v1/query?query=probe_success")["data"]["result"]
        failing = sorted(r["metric"].get("probe", "?") for r in results if r["value"][1] != "1")
        if not failing or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert {r["metric"].get("probe") for r in results} == probes
    assert not failing, f"probes failing: {failing}"


def test_every_dashboard_query_evaluates(demo: dict) -> None:
    import urllib.parse

    path = Path(__file__).resolve().parents[1] / "roles/monitoring/files/dashboards"
    for f in path.glob("*.json"):
        for panel in json.loads(f.read_text())["panels"]:
            for t in panel["targets"]:
                q = urllib.parse.quote(t["expr"])
                assert _prometheus(demo, f"/api/v1/query?query={q}")["status"] == "success"


def _site_cert(site: Path, d: Path, ip: str) -> tuple[Path, Path]:
    """A server certificate for IP signed by the site CA (on the controller)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert = x509.load_pem_x509_certificate((site / "pki" / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((site / "pki" / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "alert receiver")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    crt, pem = d / "receiver.crt", d / "receiver.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.got.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(demo: dict, tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    """The bank's alert receiver: HTTPS on the controller's audit-network address, with a
    certificate from the site CA (what Alertmanager checks)."""
    cert, key = _site_cert(demo["site"], tmp_path, RECEIVER)
    _Receiver.got = []
    server = http.server.ThreadingHTTPServer((RECEIVER, 443), _Receiver)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield _Receiver.got
    finally:
        server.shutdown()
        server.server_close()


def _alert(got: list[dict[str, Any]], name: str, seconds: float, **labels: str
           ) -> dict[str, Any] | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in list(got):
            for a in message.get("alerts", []):
                if a["labels"].get("alertname") == name and a["status"] == "firing" and all(
                        a["labels"].get(k) == v for k, v in labels.items()):
                    return a
        time.sleep(2)
    return None


def test_a_stopped_workbench_fires_its_alert_at_the_receiver(demo: dict, receiver) -> None:
    r = lab_ssh(demo, "ide1", "docker stop code-server-bob")
    assert r.returncode == 0, r.stderr
    try:
        t0 = time.monotonic()
        alert = _alert(receiver, "EndpointDown", 180, airlock_service="code_server",
                       user="bob")
        assert alert, receiver[-3:]
        print(f"alert at the receiver {time.monotonic() - t0:.0f} s after the stop")
    finally:
        lab_ssh(demo, "ide1", "docker start code-server-bob")


def test_a_certificate_with_20_days_left_fires_the_expiry_alert(demo: dict, receiver) -> None:
    """The repo host's certificate renewed for 20 days (certificates.yml: nginx reloads);
    the blackbox probe reads its expiry and the alert reaches the receiver; then a
    certificate of the usual length again."""
    from installer.deploy.runner import run_playbook

    def renew(days: int, name: str) -> None:
        run = run_playbook(REPO, "certificates.yml", demo["inventory"], site=demo["site"],
                           log_dir=demo["dir"] / name, live=False, limit="repo1",
                           raise_on_failure=False,
                           extravars={"pki_renew_days": 3650, "pki_cert_valid_days": days})
        assert run.ok, run.failures

    renew(20, "expiry-logs")
    try:
        t0 = time.monotonic()
        alert = _alert(receiver, "CertificateExpiresSoon", 240, probe="repo")
        assert alert, receiver[-3:]
        print(f"expiry alert at the receiver {time.monotonic() - t0:.0f} s after the renewal")
    finally:
        renew(397, "expiry-undo-logs")
