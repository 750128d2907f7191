"""Verify (testinfra): what the roles promise, read from the host itself (as root through
sudo: the lab, like a site, logs in as the unprivileged airlock user)."""


def test_default_deny_firewall(host):
    with host.sudo():
        rules = host.run("nft list table inet airlock").stdout
    assert "type filter hook input priority filter; policy drop;" in rules
    assert "type filter hook output priority filter; policy drop;" in rules
    assert 'ip saddr 10.0.1.0/24 tcp dport 22 accept' in rules
    assert "ip daddr 10.0.1.53 udp dport 53 accept" in rules  # the site's DNS


def test_sshd_hardened(host):
    with host.sudo():
        cfg = host.run("sshd -T").stdout
    assert "passwordauthentication no" in cfg
    assert "permitrootlogin no" in cfg
    assert "x11forwarding no" in cfg
    assert "maxauthtries 3" in cfg


def test_journal_persistent_and_ca_folder(host):
    assert host.file("/var/log/journal").is_directory
    journald = host.file("/etc/systemd/journald.conf.d/60-airlock.conf").content_string
    assert "Storage=persistent" in journald
    assert host.file("/usr/local/share/ca-certificates/airlock").is_directory


def test_names_resolve_through_the_sites_dns_only(host):
    assert "nameserver 10.0.1.53" in host.file("/etc/resolv.conf").content_string
    # (the bare name is the host's own, in /etc/hosts; the site's name is asked of DNS)
    assert host.run("getent hosts node1.lab.airlock.test").stdout.split()[0] == "10.0.5.20"
    assert host.run("getent hosts deb.debian.org").rc != 0


def test_chrony_synchronised_with_the_sites_ntp_only(host):
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert "server 10.0.1.53 iburst" in conf
    assert "pool " not in conf
    tracking = ""
    for _ in range(30):  # chronyd polls its server a few times before it selects it
        tracking = host.run("chronyc -n tracking").stdout
        if "Leap status     : Normal" in tracking and "10.0.1.53" in tracking:
            break
        host.run("sleep 1")
    assert "10.0.1.53" in tracking and "Leap status     : Normal" in tracking, tracking
