"""The source zone on the demo's lab, from inside a user's workbench container on ide1 (whose
only way out is the firewall's: the gateway, the repo host, the Git server): Git clone,
commit and push over HTTPS to the lab's Git server (git's own smart-HTTP backend behind nginx,
the stand-in for GitLab), a push without credentials refused; `mvn package` of a small Java
project from the repo host's Maven repository, and Maven's own "could not" for a dependency
the bundle lacks; `go build` of a small Go program from the repo host's GOPROXY tree, and a
module zip replaced on the repo host refused by the go command's checksum check against the
site's checksum database."""

from __future__ import annotations

import io
import shlex
import tarfile
from pathlib import Path

import pytest

from conftest import lab_ssh

pytestmark = pytest.mark.usefixtures("demo")

PROJECTS = Path(__file__).resolve().parents[1] / "bundles" / "sample" / "projects"
GIT = "https://git.lab.airlock.test"


def _in(demo: dict, user: str, command: str, timeout: float = 600):  # type: ignore[no-untyped-def]
    """COMMAND in USER's workbench (its shell, as its user), through ide1's engine."""
    return lab_ssh(demo, "ide1", f"timeout {int(timeout) - 10} docker exec code-server-{user} "
                                 f"bash -lc {shlex.quote(command)}", timeout=timeout)


def _copy_in(demo: dict, user: str, project: str, dest: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(PROJECTS / project, arcname=project,
                filter=lambda t: None if "/target" in t.name else t)
    r = lab_ssh(demo, "ide1", f"docker exec -i code-server-{user} sh -c "
                              f"'rm -rf {dest}/{project} && mkdir -p {dest} && tar -x -C {dest}'",
                data=buf.getvalue())
    assert r.returncode == 0, r.stderr


def test_git_clone_commit_push_from_a_workbench(demo: dict) -> None:
    r = _in(demo, "alice", f"""set -e
        rm -rf ~/src/demo && mkdir -p ~/src && cd ~/src
        git clone -q {GIT}/demo.git && cd demo
        git config user.name alice && git config user.email alice@lab.airlock.test
        echo "hello from alice $$" > README.md && git add README.md
        git commit -qm "alice's first commit" && git push -q origin HEAD:main
        git log --format=%H -1""")
    assert r.returncode == 0, r.stdout + r.stderr
    pushed = r.stdout.strip().splitlines()[-1]
    # bob sees it: the server kept it, and bob's credentials let him read
    seen = _in(demo, "bob", f"rm -rf ~/demo && git clone -q {GIT}/demo.git ~/demo && "
                            "git -C ~/demo log --format=%H -1")
    assert seen.returncode == 0, seen.stdout + seen.stderr
    assert seen.stdout.strip().splitlines()[-1] == pushed


def test_a_push_without_credentials_is_refused(demo: dict) -> None:
    before = lab_ssh(demo, "repo1", "git --git-dir=/srv/git/demo.git rev-parse main "
                                    "2>/dev/null || echo none").stdout.strip()
    r = _in(demo, "alice", f"""cd ~/src/demo 2>/dev/null || {{ git clone -q {GIT}/demo.git \
        ~/src/demo && cd ~/src/demo; }}
        git -c user.name=x -c user.email=x@x commit -q --allow-empty -m "anonymous?"
        GIT_TERMINAL_PROMPT=0 git -c credential.helper= push {GIT}/demo.git HEAD:main
        echo rc=$?""")
    out = r.stdout + r.stderr
    assert "rc=0" not in out and ("401" in out or "Authentication failed" in out
                                  or "could not read Username" in out), out
    after = lab_ssh(demo, "repo1", "git --git-dir=/srv/git/demo.git rev-parse main "
                                   "2>/dev/null || echo none").stdout.strip()
    assert after == before  # nothing was written
    _in(demo, "alice", "cd ~/src/demo && git reset -q --hard origin/main")


def test_mvn_package_in_a_workbench_from_the_repo_host(demo: dict) -> None:
    _copy_in(demo, "alice", "java-hello", "/home/coder/projects")
    r = _in(demo, "alice", "cd ~/projects/java-hello && mvn -B -q package && "
                           "ls target/java-hello-1.0.0.jar", timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    log = lab_ssh(demo, "repo1", "grep -c ' /maven/' /var/log/nginx/airlock-repo.access.log")
    assert int(log.stdout.strip() or 0) > 50  # from the repo host, file by file


def test_mvn_names_a_dependency_the_bundle_lacks(demo: dict) -> None:
    _copy_in(demo, "alice", "java-hello", "/home/coder/projects")
    guava = ("<dependency><groupId>com.google.guava</groupId><artifactId>guava</artifactId>"
             "<version>33.4.0-jre</version></dependency>")
    r = _in(demo, "alice", "cd ~/projects/java-hello && "
                           f"sed -i 's|<dependencies>|<dependencies>{guava}|' pom.xml && "
                           "mvn -B -q package; echo rc=$?", timeout=600)
    out = r.stdout + r.stderr
    assert "rc=0" not in out
    assert "com.google.guava:guava:jar:33.4.0-jre" in out and "Could not" in out, out[-3000:]


def test_go_build_in_a_workbench_from_the_repo_host(demo: dict) -> None:
    _copy_in(demo, "alice", "go-hello", "/home/coder/projects")
    r = _in(demo, "alice", "cd ~/projects/go-hello && go build -o hello . && ./hello",
            timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1].startswith("hello ")


def test_a_module_replaced_on_the_repo_host_is_refused(demo: dict) -> None:
    """The served zip of uuid v1.6.0 replaced by a valid zip with other bytes: a workbench
    that fetches it (no go.sum line: the site's checksum database decides) refuses it."""
    served = "/srv/airlock/current/mirror/go/github.com/google/uuid/@v/v1.6.0.zip"
    tamper = f"""set -e
        f={served}; cp -P "$f" /root/uuid.zip.link
        python3 - "$f" <<'PY'
import sys, zipfile, io
src = open(sys.argv[1], 'rb').read()
out = io.BytesIO()
with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, 'w') as zout:
    for i in zin.infolist():
        data = zin.read(i)
        if i.filename.endswith('/uuid.go'):
            data += b'\\n// planted on the repo host\\n'
        zout.writestr(i, data)
import os
os.unlink(sys.argv[1])
open(sys.argv[1], 'wb').write(out.getvalue())
PY"""
    assert lab_ssh(demo, "repo1", tamper).returncode == 0
    try:
        r = _in(demo, "bob", """d=$(mktemp -d); cd "$d"
            export GOMODCACHE="$d/modcache" GOFLAGS=-mod=mod
            printf 'module bank.example/fresh\\n\\ngo 1.19\\n' > go.mod
            go get github.com/google/uuid@v1.6.0; echo rc=$?""")
        out = r.stdout + r.stderr
        assert "rc=0" not in out
        assert "checksum mismatch" in out and "SECURITY ERROR" in out, out[-3000:]
    finally:
        restore = lab_ssh(demo, "repo1", f"rm -f {served} && mv /root/uuid.zip.link {served}")
        assert restore.returncode == 0, restore.stderr
