"""What the monitoring and audit_logging roles write, checked without a lab by the programs
the hosts run, from Debian's own packages (unpacked, not installed: tests/debtools.py):
Prometheus's targets and rules by promtool (and the alert rules' behaviour by `promtool
test rules`), Alertmanager's receivers by amtool, the probes by the blackbox exporter; the
shipper's rsyslog drop-in by rsyslogd, and the fields it reads from each kind of line by a
real rsyslogd fed sample lines. The lab run is tests/test_logging.py."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import debtools
import localplay

REPO = localplay.REPO
MON = REPO / "roles/monitoring"
LOG = REPO / "roles/audit_logging"
SITE_VARS = {
    "monitoring_listen_address": "10.0.6.10",
    "monitoring_node_targets": [{"name": "gw1", "address": "10.0.2.10"},
                                {"name": "log1", "address": "10.0.6.10"}],
    "monitoring_probes": [
        {"name": "gateway", "url": "https://10.0.2.10/", "module": "https",
         "service": "gateway", "host": "gw1"},
        {"name": "workbench-alice", "url": "http://10.0.3.10:8101/healthz",
         "module": "code_server", "service": "code_server", "user": "alice", "host": "ide1"}],
    "monitoring_metrics_targets": [{"job": "vllm", "targets": ["10.0.4.10:8000"]}],
    "monitoring_llm_probe": {"url": "http://10.0.4.10:4000", "key": "sk-monitoring",
                             "completion_model": "autocomplete", "chat_model": "chat"},
    "monitoring_alert_webhooks": ["https://10.0.6.1/alerts"],
}


@pytest.fixture(scope="module")
def prom() -> Path:
    return debtools.root("prometheus", "prometheus-alertmanager",
                         "prometheus-blackbox-exporter")


@pytest.fixture(scope="module")
def rsyslog() -> Path:
    return debtools.root("rsyslog", "rsyslog-elasticsearch", "libestr0", "libfastjson4",
                         "liblognorm5")


def _render(tmp_path: Path, role: Path, templates: dict[str, str], extra: dict) -> Path:
    """The role's TEMPLATES (name -> file written) rendered by Ansible with its defaults."""
    out = tmp_path / "out"
    (out / "rules").mkdir(parents=True, exist_ok=True)
    tasks = "".join(f"""
            - ansible.builtin.template:
                src: {role / 'templates' / src}
                dest: {out / dest}
                mode: "0600"
              vars:
                _monitoring_all_probes: "{{{{ monitoring_probes
                  | monitoring_with_llm(monitoring_llm_probe) }}}}"
        """ for src, dest in templates.items())
    proc = localplay.play(tmp_path, f"""
        - hosts: localhost
          gather_facts: false
          vars_files: [{role / 'defaults/main.yml'}]
          tasks:{tasks}
        """, extra, env={"ANSIBLE_FILTER_PLUGINS": str(MON / "filter_plugins")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return out


def _monitoring(tmp_path: Path, **overrides: object) -> Path:
    return _render(tmp_path, MON, {"rules.yml.j2": "rules/airlock.yml",
                                   "prometheus.yml.j2": "prometheus.yml",
                                   "alertmanager.yml.j2": "alertmanager.yml",
                                   "blackbox.yml.j2": "blackbox.yml"},
                   {**SITE_VARS, "monitoring_config_dir": str(tmp_path / "out"), **overrides})


def _tool(prom: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(prom / "usr/bin" / name), *args], capture_output=True,
                          text=True, timeout=60)


def test_prometheus_alertmanager_and_probes_pass_their_own_checks(tmp_path: Path,
                                                                  prom: Path) -> None:
    out = _monitoring(tmp_path)
    for args in (("promtool", "check", "rules", str(out / "rules/airlock.yml")),
                 ("promtool", "check", "config", str(out / "prometheus.yml")),
                 ("amtool", "check-config", str(out / "alertmanager.yml")),
                 ("prometheus-blackbox-exporter", "--config.check",
                  f"--config.file={out / 'blackbox.yml'}")):
        r = _tool(prom, *args)
        assert r.returncode == 0, (args, r.stdout + r.stderr)
    conf = yaml.safe_load((out / "prometheus.yml").read_text())
    probes = next(j for j in conf["scrape_configs"] if j["job_name"] == "probe")
    labels = [t["labels"] for t in probes["static_configs"]]
    assert {"module": "code_server", "probe": "workbench-alice", "airlock_service":
            "code_server", "user": "alice", "host": "ide1"} in labels
    assert {lab["module"] for lab in labels} >= {"https", "llm_completion", "llm_chat"}
    # the key is in the exporter's file only (0640 on the host), never in Prometheus's
    assert "sk-monitoring" not in (out / "prometheus.yml").read_text()
    assert "Bearer sk-monitoring" in (out / "blackbox.yml").read_text()


def test_a_broken_rule_fails_promtool(tmp_path: Path, prom: Path) -> None:
    out = _monitoring(tmp_path, monitoring_thresholds={
        "completion_p95_s": "0.4 +", "chat_p95_s": 5, "error_ratio": 0.01,
        "disk_free_ratio": 0.1, "cert_days": 30, "gpu_memory_ratio": 0.95, "backup_age_h": 26})
    r = _tool(prom, "promtool", "check", "rules", str(out / "rules/airlock.yml"))
    assert r.returncode != 0 and "CompletionLatencyHigh" in r.stdout + r.stderr


RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'probe_ssl_earliest_cert_expiry{{instance="https://repo1/",probe="repo"}}'
        values: '{soon}x20'
      - series: 'probe_ssl_earliest_cert_expiry{{instance="https://gw/",probe="gateway"}}'
        values: '{later}x20'
      - series: 'probe_success{{module="code_server",airlock_service="code_server",user="bob",instance="http://ide1:8102/healthz",probe="workbench-bob"}}'
        values: '1 1 0x10'
      - series: 'probe_duration_seconds{{module="llm_completion",instance="c"}}'
        values: '0.5x60'
      - series: 'airlock_backup_last_success_timestamp_seconds{{host="ide1",source="homes"}}'
        values: '-108000x60'
      - series: 'airlock_backup_last_success_timestamp_seconds{{host="gw1",source="keycloak-db"}}'
        values: '0x60'
      - series: 'airlock_backup_last_run_ok{{host="gw1",source="keycloak-db"}}'
        values: '1 1 0x10'
    alert_rule_test:
      - eval_time: 3m
        alertname: CertificateExpiresSoon
        exp_alerts:
          - exp_labels: {{severity: warning, instance: "https://repo1/", probe: repo}}
            exp_annotations:
              summary: "https://repo1/: its certificate expires in 19d 23h 57m 0s"
      - eval_time: 2m
        alertname: EndpointDown
        exp_alerts:
          - exp_labels: {{severity: critical, module: code_server, airlock_service: code_server,
                         user: bob, instance: "http://ide1:8102/healthz", probe: workbench-bob}}
            exp_annotations:
              summary: "code_server (workbench-bob) at http://ide1:8102/healthz does not answer"
      - eval_time: 15m
        alertname: CompletionLatencyHigh
        exp_alerts:
          - exp_labels: {{severity: warning, seed: "001 2.2", module: llm_completion, instance: c}}
            exp_annotations:
              summary: "completion P95 over 10 minutes is 500ms (seed 001: under 400 ms)"
      - eval_time: 10m
        alertname: BackupTooOld
        exp_alerts:
          - exp_labels: {{severity: warning, host: ide1, source: homes}}
            exp_annotations:
              summary: "ide1 homes: the last good backup is 1d 6h 10m 0s old"
      - eval_time: 2m
        alertname: BackupFailed
        exp_alerts:
          - exp_labels: {{severity: warning, host: gw1, source: keycloak-db}}
            exp_annotations:
              summary: "gw1 keycloak-db: the last backup run failed (journalctl -u airlock-backup)"
"""


def test_the_alerts_fire_when_they_should_and_not_before(tmp_path: Path, prom: Path) -> None:
    """promtool's own rule tests: a certificate 20 days from expiry fires, one 60 days away
    does not; a workbench that stops answering fires after the 1-minute hold, naming its
    user; a completion P95 over seed 001's 400 ms fires."""
    out = _monitoring(tmp_path)
    spec = tmp_path / "rules_test.yml"
    spec.write_text(RULE_TESTS.format(rules=out / "rules/airlock.yml",
                                      soon=20 * 86400, later=60 * 86400))
    r = _tool(prom, "promtool", "test", "rules", str(spec))
    assert r.returncode == 0, r.stdout + r.stderr
    # and the test can fail: with a 10-day threshold the 20-day certificate is quiet
    out = _monitoring(tmp_path, monitoring_thresholds={
        "completion_p95_s": 0.4, "chat_p95_s": 5, "error_ratio": 0.01,
        "disk_free_ratio": 0.1, "cert_days": 10, "gpu_memory_ratio": 0.95,
        "backup_age_h": 26})
    r = _tool(prom, "promtool", "test", "rules", str(spec))
    assert r.returncode != 0 and "CertificateExpiresSoon" in r.stdout + r.stderr


@pytest.mark.parametrize("override, words", [
    ({"monitoring_alert_webhooks": []}, "no receiver"),
    ({"monitoring_probes": [{"name": "x", "url": "http://a/", "module": "https",
                             "service": "s"}]}, "module https needs an https:// URL"),
    ({"monitoring_probes": [{"name": "x", "url": "https://a/", "module": "icmp",
                             "service": "s"}]}, "module 'icmp' is none of"),
    ({"monitoring_alert_email": {"to": "ops@bank"}}, "needs from, smarthost"),
    ({"monitoring_llm_probe": {"url": "http://a"}}, "needs key, completion_model"),
])
def test_bad_monitoring_input_is_refused_before_anything(tmp_path: Path, override: dict,
                                                         words: str) -> None:
    proc = localplay.play(tmp_path, """
        - hosts: localhost
          gather_facts: false
          tasks:
            - ansible.builtin.include_role:
                name: monitoring
                tasks_from: validate
        """, {**SITE_VARS, **override})
    assert proc.returncode != 0 and words in proc.stdout, proc.stdout[-2000:]
    assert "Nothing was changed" in proc.stdout


# ------------------------------------------------------------------------ the shipper

SAMPLES = {
    "sudo": "  alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
    "sshd": "Failed password for invalid user mallory from 10.0.2.7 port 4242 ssh2",
    "keycloak": '2026-12-04 21:00:00,000 WARN  [org.keycloak.events] (executor-thread-1) '
                'type="LOGIN_ERROR", realmId="x", realmName="airlock", clientId="gw", '
                'userId="null", ipAddress="10.0.2.1", error="invalid_user_credentials", '
                'username="alice"',
    "airlock_gateway": json.dumps({"event": "route-denied", "time": "t", "user": "alice",
                                   "route": "bob", "client": "10.20.0.5", "uri": "/u/bob/",
                                   "upgrade": ""}),
    "airlock_gateway_access": json.dumps({
        "time": "t", "client": "10.20.0.5", "host": "gw", "method": "GET", "uri": "/u/alice/",
        "status": 502, "bytes": 10, "seconds": 0.001, "route": "alice", "upstream": "",
        "upstreamStatus": "", "authUser": "alice", "requestId": "r", "userAgent": "ua"}),
    "airlock_llm": json.dumps({"client": "10.0.3.10", "code": None, "completion_tokens": 16,
                               "event": "request", "model": "chat", "prompt_tokens": 12,
                               "status": "ok", "user": "bob"}),
}


def _dropin(tmp_path: Path, **overrides: object) -> Path:
    out = _render(tmp_path, LOG, {"rsyslog-airlock.conf.j2": "60-airlock-ship.conf"}, {
        "audit_logging_store_url": "https://log1:9200",
        "audit_logging_ca_file": str(tmp_path / "ca.crt"),
        "audit_logging_files": [{"path": "/var/log/nginx/airlock-gateway.json",
                                 "tag": "airlock_gateway_access"}],
        "_audit_logging_passwords": {"airlock-shipper": "pw"}, **overrides})
    (tmp_path / "ca.crt").write_text("not read by -N1 beyond its existence\n")
    return out / "60-airlock-ship.conf"


def _rsyslogd(rsyslog: Path, *args: str, **kw: object) -> subprocess.Popen:
    return subprocess.Popen([str(rsyslog / "usr/sbin/rsyslogd"), "-M",
                             str(rsyslog / "usr/lib/x86_64-linux-gnu/rsyslog"), *args],
                            env=debtools.env(rsyslog), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)  # type: ignore[call-overload]


def test_the_shippers_dropin_passes_rsyslogds_check(tmp_path: Path, rsyslog: Path) -> None:
    dropin = _dropin(tmp_path, audit_logging_siem_syslog={"host": "siem.bank", "port": 6514})
    spool = tmp_path / "spool"
    spool.mkdir()
    master = tmp_path / "rsyslog.conf"
    master.write_text(f'global(workDirectory="{spool}")\ninclude(file="{dropin}")\n')
    p = _rsyslogd(rsyslog, "-N1", "-f", str(master))
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    text = dropin.read_text()
    for needed in ('esVersion.major="8"', 'writeoperation="create"', 'dynbulkid="on"',
                   'queue.saveOnShutdown="on"', 'action.resumeRetryCount="-1"',
                   'queue.maxDiskSpace="1024m"', "$uuid", 'StreamDriverMode="1"'):
        assert needed in text, needed
    # a typo is caught by the same check
    dropin.write_text(text.replace("tls.cacert", "tls.cacrt"))
    p = _rsyslogd(rsyslog, "-N1", "-f", str(master))
    out, _ = p.communicate(timeout=60)
    assert p.returncode != 0 and "tls.cacrt" in out


def test_who_and_what_are_read_from_each_kind_of_line(tmp_path: Path, rsyslog: Path) -> None:
    """The drop-in's own rulesets and document template, fed one line of each kind by a
    real rsyslogd; the documents written where the store would get them."""
    text = _dropin(tmp_path).read_text()
    keep = text[:text.index('ruleset(name="airlock_es_ship")')] + \
        text[text.index("# who and what, read once"):text.index("# every message of this")]
    keep = re.sub(r'module\(load="imfile"\)\n|input\(type="imfile".*?\)\n', "", keep,
                  flags=re.S)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    docs = tmp_path / "docs.json"
    spool = tmp_path / "spool"
    spool.mkdir()
    conf = tmp_path / "t.conf"
    conf.write_text(f'global(workDirectory="{spool}")\nmodule(load="imtcp")\n'
                    f'input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="t")\n'
                    + keep + f'ruleset(name="t") {{\n call airlock_es_fields\n'
                    f' action(type="omfile" file="{docs}" template="airlock_es_doc")\n}}\n')
    p = _rsyslogd(rsyslog, "-n", "-f", str(conf), "-i", str(tmp_path / "pid"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "rsyslogd did not listen"
                time.sleep(0.2)
        with c:
            for tag, msg in SAMPLES.items():
                c.sendall(f"<86>Dec  4 21:00:00 host1 {tag}: {msg}\n".encode())
        deadline = time.monotonic() + 20
        while len(docs.read_text().splitlines() if docs.exists() else []) < len(SAMPLES):
            assert time.monotonic() < deadline, docs.read_text() if docs.exists() else ""
            time.sleep(0.2)
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
    got = {d["program"]: d for d in map(json.loads, docs.read_text().splitlines())}
    assert got["sudo"]["user"] == "alice" and got["sudo"]["event.action"] == "/usr/bin/id"
    assert got["sudo"]["message"].startswith("alice : TTY")  # syslog's leading space gone
    assert (got["sshd"]["user"], got["sshd"]["event.outcome"], got["sshd"]["source.ip"]) \
        == ("mallory", "failure", "10.0.2.7")
    assert (got["keycloak"]["user"], got["keycloak"]["event.action"],
            got["keycloak"]["event.outcome"]) == ("alice", "LOGIN_ERROR", "failure")
    denied = got["airlock_gateway"]
    assert (denied["user"], denied["event.outcome"], denied["http.status"],
            denied["event.action"]) == ("alice", "denied", 403, "route bob")
    access = got["airlock_gateway_access"]
    assert (access["user"], access["http.status"], access["event.outcome"]) == \
        ("alice", 502, "failure")
    llm = got["airlock_llm"]
    assert (llm["user"], llm["llm.model"], llm["llm.prompt_tokens"], llm["event.outcome"]) \
        == ("bob", "chat", 12, "ok")
    assert "http.status" not in llm  # LiteLLM's "ok" never lands in a number's field


@pytest.mark.parametrize("override, words", [
    ({"audit_logging_store_url": "http://log1:9200"}, "must be https://HOST:PORT"),
    ({"audit_logging_siem_readers": ["airlock-shipper"]}, "may not use airlock's own"),
    ({"audit_logging_files": [{"path": "relative.log", "tag": "x"}]}, "needs an absolute path"),
    ({"audit_logging_buffer_mb": 4}, "audit_logging_buffer_mb must be a whole number of at"),
    ({"audit_logging_secrets_dir": ""}, "audit_logging_secrets_dir is empty"),
])
def test_bad_logging_input_is_refused_before_anything(tmp_path: Path, override: dict,
                                                      words: str) -> None:
    proc = localplay.play(tmp_path, f"""
        - hosts: localhost
          gather_facts: false
          vars_files: [{LOG / 'defaults/main.yml'}]
          tasks:
            - ansible.builtin.include_role:
                name: audit_logging
                tasks_from: validate
        """, {"audit_logging_store_url": "https://log1:9200",
              "audit_logging_secrets_dir": str(tmp_path / "secrets"), **override})
    assert proc.returncode != 0 and words in proc.stdout, proc.stdout[-2000:]
    assert not (tmp_path / "secrets").exists()  # no password made before the checks pass


def test_the_stores_users_file_keeps_what_still_matches() -> None:
    import importlib.util

    import bcrypt

    spec = importlib.util.spec_from_file_location(
        "al", LOG / "filter_plugins/audit_logging.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    first = mod.audit_logging_users_file({"siem": "a" * 32, "airlock-shipper": "b" * 32})
    lines = dict(line.split(":", 1) for line in first.splitlines())
    assert all(h.startswith("$2a$10$") for h in lines.values())  # what Elasticsearch reads
    assert bcrypt.checkpw(b"a" * 32, lines["siem"].encode())
    assert mod.audit_logging_users_file({"siem": "a" * 32, "airlock-shipper": "b" * 32},
                                        first) == first  # a second run changes nothing
    changed = mod.audit_logging_users_file({"siem": "c" * 32, "airlock-shipper": "b" * 32},
                                           first)
    assert changed.splitlines()[0] == first.splitlines()[0]  # the shipper's line kept
    assert changed != first


def test_inference_servers_are_probed_where_their_engine_answers() -> None:
    """vLLM has /health; the lab's llama.cpp server (llama-cpp-python) has none (404), and
    any request there takes the model's lock (a streaming completion is cut short): it gets
    a TCP connect, or its probe would fail (EndpointDown) while it serves."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "airlock_monitoring", REPO / "playbooks/filter_plugins/airlock_monitoring.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    groups = {"completion_gpu": ["ai1"], "chat_gpu": ["ai1", "ai2"]}
    hostvars = {"ai1": {"airlock_zone_address": "10.0.4.10"},
                "ai2": {"airlock_zone_address": "10.0.4.11"}}
    for engine, module, url in (("vllm", "http", "http://{}:8000/health"),
                                ("llamacpp", "tcp", "{}:8000")):
        probes = mod.airlock_monitoring_probes(groups, hostvars, "", inference_engine=engine)
        assert [(p["name"], p["module"], p["url"]) for p in probes] == [
            ("inference-ai1", module, url.format("10.0.4.10")),
            ("inference-ai2", module, url.format("10.0.4.11"))]
