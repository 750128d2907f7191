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


def test_scale_topologies_give_n_plain_hosts_with_their_own_addresses() -> None:
    """benchmarks/scale_bench.py's labs: N hosts in one zone, distinct addresses, the
    site's DNS and NTP beside them; a size out of bounds is refused by name."""
    import pytest

    from installer.errors import UsageError
    from installer.lab.topology import SCALE_MAX, load_zones, network_file, topology

    zones = load_zones(network_file(REPO))
    topo = topology("scale-20", zones)
    nodes = [h for h in topo.hosts if h.managed]
    assert len(nodes) == 20 and {h.zone for h in nodes} == {"backend"}
    assert len({h.octet for h in nodes}) == 20 and all(h.octet < 254 for h in nodes)
    assert [h.name for h in topo.hosts if h.site_services] == ["ns1"]
    for bad in ("scale-0", f"scale-{SCALE_MAX + 1}"):
        with pytest.raises(UsageError, match="between 1 and"):
            topology(bad, zones)
    with pytest.raises(UsageError, match="scale-N"):
        topology("nope", zones)


def test_a_lab_larger_than_the_inotify_limit_allows_is_refused_with_the_fix(tmp_path) -> None:
    import pytest

    from installer.errors import LabError
    from installer.lab.lab import check_inotify

    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    check_inotify(10, limit)  # the PoC's 10 hosts fit Linux's default
    with pytest.raises(LabError, match="allows 128") as e:
        check_inotify(21, limit)
    assert "sysctl -w fs.inotify.max_user_instances=512" in e.value.hint
