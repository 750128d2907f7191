"""The container engine the lab runs on: the one DOCKER_HOST names if it answers, else
Debian's dockerd started in a private folder (and stopped by ``lab down``, by its PID)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from installer.errors import LabError
from installer.system_packages import install_line, package_of


@dataclass
class Engine:
    host: str  # unix:///… socket URL
    started_pid: int | None = None  # set when this lab started the engine

    def client(self):  # type: ignore[no-untyped-def]
        import docker

        return docker.DockerClient(base_url=self.host, timeout=300)


def answers(host: str) -> bool:
    import docker
    from docker.errors import DockerException

    try:
        docker.DockerClient(base_url=host, timeout=5).ping()
        return True
    except (DockerException, OSError):
        return False


def find_or_start(state: Path, say=print) -> Engine:  # type: ignore[no-untyped-def]
    host = os.environ.get("DOCKER_HOST")
    if host and answers(host):
        return Engine(host)
    d = state / "engine"
    sock = f"unix://{d}/docker.sock"
    if answers(sock):
        pid = int((d / "pid").read_text()) if (d / "pid").exists() else None
        return Engine(sock, pid)
    dockerd = shutil.which("dockerd")
    if not dockerd:
        raise LabError("no container engine answers" + (f" at DOCKER_HOST={host}" if host
                                                         else "") +
                       " and dockerd is not installed",
                       hint=install_line([package_of("dockerd")]) + " (Debian's engine), "
                            "or point DOCKER_HOST at a running engine")
    if os.geteuid() != 0:
        raise LabError("starting a container engine needs root",
                       hint="run as root, or point DOCKER_HOST at a running engine")
    d.mkdir(parents=True, exist_ok=True)
    say(f"no engine at DOCKER_HOST; starting Debian's dockerd in {d}")
    log = open(d / "dockerd.log", "ab")  # noqa: SIM115 - handed to the daemon
    proc = subprocess.Popen([dockerd, "--data-root", str(d / "data"), "--exec-root",
                             str(d / "exec"), "-H", sock, "--pidfile", str(d / "pid"),
                             "--iptables=false", "--bridge=none"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(120):
        if answers(sock):
            return Engine(sock, proc.pid)
        if proc.poll() is not None:
            tail = (d / "dockerd.log").read_text(errors="replace")[-1500:]
            raise LabError(f"dockerd exited while starting:\n{tail}")
        time.sleep(0.5)
    proc.terminate()
    raise LabError("dockerd did not answer within 60 s", hint=f"see {d / 'dockerd.log'}")


def stop(engine: Engine) -> None:
    """Stop an engine this lab started (by its PID; never one it found running)."""
    if not engine.started_pid:
        return
    try:
        os.kill(engine.started_pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(60):
        try:
            os.kill(engine.started_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
