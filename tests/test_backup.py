"""The backup role's program (roles/backup/files/airlock-backup) with Debian's own restic
(unpacked from its package), against a repository in a folder: what a host's timer and an
operator's restore do, without a lab. The lab test (test_backup_lab.py) takes the same
program through sftp to the backup host, with a real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from debtools import root as deb_root

REPO = Path(__file__).resolve().parent.parent
PROGRAM = REPO / "roles" / "backup" / "files" / "airlock-backup"


@pytest.fixture(scope="module")
def restic() -> Path:
    binary = deb_root("restic") / "usr" / "bin" / "restic"
    assert binary.exists(), binary
    return binary


@pytest.fixture()
def host(tmp_path: Path, restic: Path) -> dict:
    """A host's configuration: one source of files, a repository in a folder."""
    conf = tmp_path / "etc"
    (conf / "sources.d").mkdir(parents=True)
    (conf / "password").write_text("correct horse battery staple\n")
    homes = tmp_path / "homes"
    (homes / "alice" / "project").mkdir(parents=True)
    (homes / "alice" / "project" / "main.py").write_bytes(os.urandom(3000) + b"\nprint(1)\n")
    (homes / "alice" / "notes.txt").write_text("keep me\n")
    (homes / "alice.img").write_bytes(b"\0" * 4096)  # the loop image: never backed up
    cfg = {"host": "ide9", "repository": str(tmp_path / "repo"),
           "password_file": str(conf / "password"), "state_dir": str(tmp_path / "state"),
           "restic": str(restic), "keep": {"daily": 2},
           "metrics_dir": str(tmp_path / "textfile")}
    (tmp_path / "textfile").mkdir()
    (conf / "config.json").write_text(json.dumps(cfg))
    (conf / "sources.d" / "homes.json").write_text(json.dumps(
        {"name": "homes", "paths": [str(homes)], "exclude": ["*.img"]}))
    return {"conf": conf, "homes": homes, "cfg": cfg, "dir": tmp_path}


def run(host: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROGRAM), *args], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "AIRLOCK_BACKUP_CONFIG":
                               str(host["conf"] / "config.json")})


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_init_makes_the_repository_once(host: dict) -> None:
    first = run(host, "init")
    assert first.returncode == 0 and "made the repository" in first.stdout, first.stderr
    again = run(host, "init")
    assert again.returncode == 0 and "the repository exists" in again.stdout, again.stderr


def test_a_deleted_file_comes_back_byte_identical(host: dict) -> None:
    assert run(host, "init").returncode == 0
    lost = host["homes"] / "alice" / "project" / "main.py"
    before = sha(lost)
    r = run(host, "run")
    assert r.returncode == 0 and "homes: snapshot" in r.stdout, r.stderr
    lost.unlink()
    (host["homes"] / "alice" / "notes.txt").write_text("changed after the backup\n")
    r = run(host, "restore", "homes", "--path", str(lost))
    assert r.returncode == 0, r.stderr
    assert sha(lost) == before
    # only the asked-for path came back: the later change of another file stays
    assert (host["homes"] / "alice" / "notes.txt").read_text() == "changed after the backup\n"
    assert json.loads(r.stdout)["restored"] == str(lost)


def test_status_names_the_last_good_snapshot_and_its_age(host: dict) -> None:
    assert run(host, "init").returncode == 0
    assert run(host, "run").returncode == 0
    r = run(host, "status")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (homes,) = doc["sources"]
    assert doc["host"] == "ide9" and homes["source"] == "homes" and homes["kind"] == "files"
    assert homes["snapshots"] == 1 and len(homes["snapshot"]) == 64
    assert 0 <= homes["age_s"] < 600 and homes["last_run"]["ok"] is True
    # the loop image was left out, the home's files were taken
    snaps = json.loads(run(host, "snapshots", "homes").stdout)
    listing = subprocess.run(
        [host["cfg"]["restic"], "ls", "--json", snaps[0]["id"]], capture_output=True, text=True,
        env={**os.environ, "RESTIC_REPOSITORY": host["cfg"]["repository"],
             "RESTIC_PASSWORD_FILE": host["cfg"]["password_file"]}).stdout
    assert "main.py" in listing and "alice.img" not in listing


def test_retention_keeps_what_the_policy_says(host: dict) -> None:
    """keep daily 2: three runs on one day leave one snapshot (the day's last)."""
    assert run(host, "init").returncode == 0
    for i in range(3):
        (host["homes"] / "alice" / f"day{i}.txt").write_text(str(i))
        assert run(host, "run").returncode == 0
    snaps = json.loads(run(host, "snapshots", "homes").stdout)
    assert len(snaps) == 1, [s["time"] for s in snaps]


def test_a_source_that_fails_is_said_and_the_others_still_run(host: dict) -> None:
    assert run(host, "init").returncode == 0
    (host["conf"] / "sources.d" / "gone.json").write_text(json.dumps(
        {"name": "gone", "paths": [str(host["dir"] / "nowhere")]}))
    r = run(host, "run")
    assert r.returncode == 1, r
    assert "gone: FAILED" in r.stderr and "not on this host" in r.stderr
    assert "homes: snapshot" in r.stdout
    doc = json.loads(run(host, "status").stdout)
    by = {s["source"]: s for s in doc["sources"]}
    assert by["gone"]["snapshot"] is None and by["gone"]["last_run"]["ok"] is False
    assert by["homes"]["snapshots"] == 1


def test_a_wrong_password_restores_nothing(host: dict) -> None:
    assert run(host, "init").returncode == 0
    assert run(host, "run").returncode == 0
    lost = host["homes"] / "alice" / "notes.txt"
    lost.unlink()
    (host["conf"] / "password").write_text("not the password\n")
    r = run(host, "restore", "homes", "--path", str(lost))
    assert r.returncode == 1 and "restic snapshots failed" in r.stderr, r
    assert not lost.exists()


@pytest.mark.parametrize("fragment, message", [
    ({"name": "../x", "paths": ["/srv"]}, "must be letters, digits and -"),
    ({"name": "both", "paths": ["/srv"], "postgres": "db"}, "either paths"),
    ({"name": "rel", "paths": ["srv/x"]}, "must be absolute"),
    ({"name": "homes", "paths": ["/srv"]}, "once per host"),
])
def test_bad_sources_are_refused_naming_the_file(host: dict, fragment: dict,
                                                  message: str) -> None:
    bad = host["conf"] / "sources.d" / "zz-bad.json"
    bad.write_text(json.dumps(fragment))
    r = run(host, "run")
    assert r.returncode == 1 and message in r.stderr and str(bad) in r.stderr, r
    assert not (host["dir"] / "state").exists()  # refused before anything was written


def test_restore_of_an_unknown_source_or_snapshot_is_refused(host: dict) -> None:
    assert run(host, "init").returncode == 0
    assert run(host, "run").returncode == 0
    r = run(host, "restore", "nothing")
    assert r.returncode == 1 and "no source 'nothing' on ide9 (its sources: homes)" in r.stderr
    r = run(host, "restore", "homes", "--snapshot", "feedbeef")
    assert r.returncode == 1 and "snapshot 'feedbeef' of homes: 0 match" in r.stderr


def test_check_says_the_sources(host: dict) -> None:
    r = run(host, "check")
    assert r.returncode == 0 and r.stdout == f"homes: {host['homes']}\n", r


def test_the_node_exporter_is_told_when_each_source_last_succeeded(host: dict) -> None:
    """A failed run keeps the last success's time (the alert is about its age)."""
    assert run(host, "init").returncode == 0
    assert run(host, "run").returncode == 0
    prom = (host["dir"] / "textfile" / "airlock_backup.prom").read_text()
    assert 'airlock_backup_last_run_ok{source="homes"} 1' in prom
    ok_line = next(x for x in prom.splitlines()
                   if x.startswith('airlock_backup_last_success_timestamp_seconds{source="homes"}'))
    (host["dir"] / "repo").rename(host["dir"] / "repo-gone")  # the backup host is lost
    assert run(host, "run").returncode == 1
    prom = (host["dir"] / "textfile" / "airlock_backup.prom").read_text()
    assert 'airlock_backup_last_run_ok{source="homes"} 0' in prom and ok_line in prom
    # in the form the exporter reads (Prometheus' own check of the text format)
    promtool = deb_root("prometheus") / "usr" / "bin" / "promtool"
    check = subprocess.run([str(promtool), "check", "metrics"], input=prom,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
