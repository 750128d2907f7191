"""What makes a deploy that changes nothing cheap, checked without a lab: the filter that
judges sshd's effective configuration in one pass, and the callback that loads Jinja's
plugins once in ansible-playbook itself (every task's worker then starts with them)."""

from __future__ import annotations

import importlib.util

from conftest import REPO
from localplay import play

spec = importlib.util.spec_from_file_location(
    "common_sshd", REPO / "roles/common/filter_plugins/common_sshd.py")
sshd = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sshd)

EFFECTIVE = ["port 22", "permitrootlogin without-password", "x11forwarding no",
             "maxauthtries 3", "x11forwarding yes"]


def test_sshd_settings_sshd_has_are_not_named() -> None:
    settings = {"PermitRootLogin": "prohibit-password", "X11Forwarding": "no",
                "MaxAuthTries": "3"}
    assert sshd.common_sshd_overridden(EFFECTIVE, settings,
                                       {"prohibit-password": "without-password"}) == []


def test_each_overridden_or_missing_setting_is_named_with_both_values() -> None:
    settings = {"PermitRootLogin": "no", "MaxAuthTries": "6", "LoginGraceTime": "30",
                "X11Forwarding": "no"}
    got = sshd.common_sshd_overridden(EFFECTIVE, settings, {})
    assert got == [{"key": "PermitRootLogin", "want": "no", "have": "without-password"},
                   {"key": "MaxAuthTries", "want": "6", "have": "3"},
                   {"key": "LoginGraceTime", "want": "30", "have": "(unset)"}]


def test_the_warm_callback_runs_in_plain_ansible_playbook_and_role_filters_still_load(
        tmp_path) -> None:
    """ansible.cfg names the callback's folder: a plain run loads the Jinja plugins before
    its first task, and a role's own filter (a folder added when the role loads) is found
    by the task's worker."""
    proc = play(tmp_path, """
        - hosts: localhost
          gather_facts: false
          roles:
            - role: common
              tags: [never]
          tasks:
            - ansible.builtin.debug:
                msg: "{{ ['x11forwarding yes'] | common_sshd_overridden({'X11Forwarding': 'no'})
                         | map(attribute='have') | first }}"
        """, {}, "-vvv")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "airlock_warm: " in proc.stdout and "Jinja plugins" in proc.stdout, proc.stdout[-2000:]
    assert '"msg": "yes"' in proc.stdout, proc.stdout[-2000:]
