"""Verify (testinfra): what the roles promise, read from the host itself."""


def test_default_deny_firewall(host):
    rules = host.run("nft list table inet airlock").stdout
    assert "type filter hook input priority filter; policy drop;" in rules
    assert "type filter hook output priority filter; policy drop;" in rules
    assert 'ip saddr 10.0.1.0/24 tcp dport 22 accept' in rules


def test_sshd_hardened(host):
    cfg = host.run("sshd -T").stdout
    assert "passwordauthentication no" in cfg
    assert "x11forwarding no" in cfg
    assert "maxauthtries 3" in cfg


def test_journal_persistent_and_ca_folder(host):
    assert host.file("/var/log/journal").is_directory
    journald = host.file("/etc/systemd/journald.conf.d/60-airlock.conf").content_string
    assert "Storage=persistent" in journald
    assert host.file("/usr/local/share/ca-certificates/airlock").is_directory


def test_chrony_uses_internal_ntp_only(host):
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert "server 10.0.1.254 iburst" in conf
    assert "pool " not in conf
