"""The lab's base image: Debian 12 made by debootstrap (systemd as PID 1, sshd, python3,
nftables, sudo), imported into the engine and cached by a tag that names its recipe.

Like a site's hosts, a lab host is reached as the unprivileged ``airlock`` user, who may
use sudo; sshd refuses root. dnsmasq is there for the lab's stand-in of the site's DNS
server (the ``ns1`` host), slapd for its stand-in of the bank's directory (``dir1``); other
hosts leave them off (slapd's unit is masked; the lab starts it by hand on dir1)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from installer import system_packages
from installer.errors import LabError
from installer.lab.engine import Engine

PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt", "chrony",
            "iproute2", "nftables", "iputils-ping", "procps", "sudo", "ca-certificates",
            "netcat-openbsd", "less", "dnsmasq-base", "slapd", "ldap-utils")
RELEASE = "bookworm"
SSH_DROPIN = """\
[Service]
# host keys are made on each host's first boot, never shared through the image
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
# the automation account every lab host has, as a site's hosts have theirs
USER, UID = "airlock", 2000
SUDOERS = f"{USER} ALL=(ALL:ALL) NOPASSWD: ALL\n"
SSHD_LAB = "# the lab's hosts, like a site's, refuse root logins\nPermitRootLogin no\n"
RECIPE = "\n".join([RELEASE, *PACKAGES, SSH_DROPIN, SUDOERS, SSHD_LAB, USER, str(UID), "v3"])
REPOSITORY = "airlock-lab/debian"


def tag() -> str:
    return f"{RELEASE}-{hashlib.sha256(RECIPE.encode()).hexdigest()[:12]}"


def reference() -> str:
    return f"{REPOSITORY}:{tag()}"


def ensure(engine: Engine, work: Path, say=print) -> str:  # type: ignore[no-untyped-def]
    from docker.errors import APIError, ImageNotFound

    client = engine.client()
    try:
        client.images.get(reference())
        return reference()
    except ImageNotFound:
        pass
    system_packages.require("debootstrap")
    say(f"building the lab base image {reference()} with debootstrap (about 2 minutes, once)")
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="rootfs-") as tmp:
        root = Path(tmp) / "root"
        proc = subprocess.run(["debootstrap", "--variant=minbase",
                               "--include=" + ",".join(PACKAGES), RELEASE, str(root)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError("debootstrap failed:\n" + (proc.stdout + proc.stderr)[-2000:],
                           hint="it needs the Debian package mirror the staging host uses")
        _configure(root)
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(archive), "."],
                       check=True)
        try:
            client.api.import_image_from_file(str(archive), repository=REPOSITORY, tag=tag(),
                                              changes=['CMD ["/sbin/init"]',
                                                       "ENV container=docker"])
        except APIError as e:
            raise LabError(f"the engine refused the base image: {e.explanation}") from None
    return reference()


def _configure(root: Path) -> None:
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = root / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "keygen.conf").write_text(SSH_DROPIN)
    (root / "etc/machine-id").write_text("")
    for unit in ("getty@tty1.service", "serial-getty@console.service",
                 "systemd-networkd-wait-online.service", "apt-daily.timer",
                 "apt-daily-upgrade.timer", "slapd.service"):
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    subprocess.run(["chroot", str(root), "useradd", "--create-home", "--uid", str(UID),
                    "--user-group", "--shell", "/bin/bash", USER], check=True)
    sudoers = root / "etc/sudoers.d" / USER
    sudoers.write_text(SUDOERS)
    sudoers.chmod(0o440)
    (root / "etc/ssh/sshd_config.d/10-lab.conf").write_text(SSHD_LAB)
    (root / "etc/apt/apt.conf.d/99airlock-lab").write_text(
        'Acquire::Languages "none";\nAPT::Install-Recommends "0";\n')
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
