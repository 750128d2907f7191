"""A play run by the real ansible-playbook on this machine (connection local), with the
project's roles and configuration: for checking what a role writes without a lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"


def play(tmp_path: Path, text: str, extra: dict, *args: str,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """TEXT (a playbook, dedented) against localhost with EXTRA as extra vars."""
    (tmp_path / "play.yml").write_text(textwrap.dedent(text))
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    full = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), **(env or {})}
    return subprocess.run([str(PLAYBOOK_BIN), "-i", "localhost,", "-c", "local",
                           "-e", f"@{tmp_path / 'extra.json'}", *args,
                           str(tmp_path / "play.yml")],
                          env=full, capture_output=True, text=True, timeout=600)


def render(tmp_path: Path, role: str, template: str, dest: Path, extra: dict,
           task_vars: str = "") -> Path:
    """ROLE's TEMPLATE rendered by Ansible's template module to DEST, with the role's
    defaults, EXTRA as extra vars, TASK_VARS (YAML lines, indented for the task's vars:)
    and the role's filters; fails the test with Ansible's output when it cannot."""
    folder = REPO / "roles" / role
    tvars = f"\n              vars:\n{task_vars}" if task_vars else ""
    proc = play(tmp_path, f"""
        - hosts: localhost
          gather_facts: false
          vars_files: [{folder / 'defaults/main.yml'}]
          tasks:
            - ansible.builtin.template:
                src: {folder / 'templates' / template}
                dest: {dest}
                mode: "0600"{tvars}
        """, extra, env={"ANSIBLE_FILTER_PLUGINS": str(folder / "filter_plugins")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return dest


def play_phase(tmp_path: Path, text: str, phase: str, extra: dict | None = None,
               ) -> subprocess.CompletedProcess:
    """TEXT (a playbook) against inventories/PHASE, every host run here (connection local),
    with the project's group_vars and host_vars: the play's folder links to playbooks/'s,
    as a play in playbooks/ would read them."""
    for name in ("group_vars", "host_vars"):
        if not (tmp_path / name).exists():
            (tmp_path / name).symlink_to(REPO / "playbooks" / name)
    return play(tmp_path, text, {"ansible_connection": "local",
                                 "ansible_python_interpreter": sys.executable, **(extra or {})},
                "-i", str(REPO / "inventories" / phase / "hosts.yml"))
