"""The playbook runner without a lab: a real ansible-playbook on this machine (connection
local), its controller killed outright, and nothing of the run left behind; the tasks
that changed each host, no_log tasks (whose results Ansible censors) included."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO

PLAY = """\
- name: A run with a long silent task
  hosts: all
  gather_facts: false
  tasks:
    - name: Wait quietly, as fact gathering or a long install does
      ansible.builtin.command:
        argv: [sh, -c, "sleep 300; : {marker}"]
      changed_when: false

    - name: Go on, as a site run does after one task
      ansible.builtin.command:
        argv: [sh, -c, "sleep 300; : {marker} next"]
      changed_when: false
"""


def _pids_with(text: str) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmd:
                found.append(int(p.name))
    return found


def _wait(cond, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def _project(tmp_path: Path) -> tuple[str, Path, Path]:
    """A project with the slow playbook, and an inventory of this machine (local)."""
    marker = f"airlock-test-{uuid.uuid4().hex}"
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    (root / "ansible.cfg").write_text("[defaults]\n")
    (root / "playbooks" / "slow.yml").write_text(PLAY.format(marker=marker))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"here ansible_connection=local ansible_python_interpreter="
                         f"{sys.executable}\n")
    return marker, root, inventory


def test_a_killed_controller_leaves_no_ansible_playbook_behind(tmp_path: Path) -> None:
    marker, root, inventory = _project(tmp_path)
    site = tmp_path / "site"
    controller = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from pathlib import Path
        from installer.deploy.runner import run_playbook
        run_playbook(Path({str(root)!r}), "slow.yml", Path({str(inventory)!r}),
                     site=Path({str(site)!r}), live=False)
        """)], cwd=REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # the task's command runs: ansible-playbook, a worker and the command are all up
        assert _wait(lambda: _pids_with(f": {marker}") or controller.poll() is not None,
                     60) and controller.poll() is None, \
            f"the run did not start its task: {list((site / 'logs').glob('*/stdout'))}"
        playbooks = _pids_with(str(root / "playbooks" / "slow.yml"))
        assert playbooks, "no ansible-playbook found for the run"
    finally:
        os.killpg(controller.pid, signal.SIGKILL)  # the controller dies outright
        controller.wait(timeout=30)
    try:
        assert _wait(lambda: not _pids_with(str(root / "playbooks" / "slow.yml")), 30), \
            "ansible-playbook (or a worker of it) outlived the killed controller"
        assert _wait(lambda: not _pids_with(f": {marker}"), 30), \
            "the task's command outlived the killed controller"
    finally:  # never leave them to the next test: stop what this test started, by PID
        for pid in _pids_with(marker) + _pids_with(str(root / "playbooks" / "slow.yml")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_stopped_run_stops_its_workers_too(tmp_path: Path) -> None:
    """A stop (Ctrl-C, SIGTERM: deploy's cancel) ends ansible-playbook and the worker
    running a task, which lives in a session of its own: ansible-runner's own cancel
    (SIGKILL to ansible-playbook's process group) left such workers running."""
    marker, root, inventory = _project(tmp_path)
    flag = tmp_path / "stop-now"
    controller = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import json
        from pathlib import Path
        from installer.deploy.runner import run_playbook
        r = run_playbook(Path({str(root)!r}), "slow.yml", Path({str(inventory)!r}),
                         site=Path({str(tmp_path / "site")!r}), live=False,
                         raise_on_failure=False,
                         cancel=lambda: Path({str(flag)!r}).exists())
        print(json.dumps({{"status": r.status}}))
        """)], cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert _wait(lambda: _pids_with(f": {marker}") or controller.poll() is not None,
                     60) and controller.poll() is None, "the run did not start its task"
        flag.write_text("")
        out, err = controller.communicate(timeout=60)
        assert controller.returncode == 0 and '"status": "canceled"' in out, out + err
        assert _wait(lambda: not _pids_with(marker), 10), \
            "a worker or its command outlived the stopped run"
    finally:
        if controller.poll() is None:
            os.killpg(controller.pid, signal.SIGKILL)
            controller.wait()
        for pid in _pids_with(marker) + _pids_with(str(root / "playbooks" / "slow.yml")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_changed_no_log_tasks_are_named_in_the_run(tmp_path: Path) -> None:
    from installer.deploy.runner import run_playbook

    (tmp_path / "playbooks").mkdir()
    out = tmp_path / "out"
    (tmp_path / "playbooks" / "p.yml").write_text(textwrap.dedent(f"""\
        - hosts: all
          gather_facts: false
          tasks:
            - name: A secret per user (a loop, censored)
              ansible.builtin.copy:
                content: "secret-{{{{ item }}}}\\n"
                dest: "{out}/{{{{ item }}}}"
                mode: "0600"
              loop: [a, b]
              no_log: true
            - name: One secret (censored)
              ansible.builtin.copy:
                content: "key\\n"
                dest: "{out}/key"
                mode: "0600"
              no_log: true
            - name: Something plain
              ansible.builtin.copy:
                content: "plain\\n"
                dest: "{out}/plain"
                mode: "0644"
        """))
    out.mkdir()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    here:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")
    site = tmp_path / "site"
    first = run_playbook(tmp_path, "p.yml", inventory, site=site, live=False)
    assert first.changed_tasks == {"here": ["A secret per user (a loop, censored)",
                                            "One secret (censored)", "Something plain"]}
    assert first.stats["here"]["changed"] == 3
    second = run_playbook(tmp_path, "p.yml", inventory, site=site, live=False)
    assert second.changed_tasks == {} and second.stats["here"]["changed"] == 0
    (out / "b").write_text("edited\n")
    third = run_playbook(tmp_path, "p.yml", inventory, site=site, live=False)
    assert third.changed_tasks == {"here": ["A secret per user (a loop, censored)"]}


def test_the_strategy_is_mitogens_unless_told_and_a_wrong_name_is_refused(monkeypatch) -> None:
    from installer.deploy.runner import strategy_env
    from installer.errors import DeployError

    monkeypatch.delenv("AIRLOCK_ANSIBLE_STRATEGY", raising=False)
    env = strategy_env()
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    monkeypatch.setenv("AIRLOCK_ANSIBLE_STRATEGY", "linear")
    assert strategy_env() == {"ANSIBLE_STRATEGY": "linear"}
    monkeypatch.setenv("AIRLOCK_ANSIBLE_STRATEGY", "mitogen_fast")
    with pytest.raises(DeployError, match="mitogen_fast") as e:
        strategy_env()
    assert "linear" in e.value.hint
