"""SSH to managed hosts with paramiko: commands and SFTP, with errors that name the host.

Host keys come from the site's known_hosts only (``installer.deploy.hostkeys``), strictly.
Where the inventory logs in as an unprivileged user with ``ansible_become``, as a site does,
every command runs through ``sudo -n`` and SFTP talks to an sftp-server started through
sudo, so files land as root would write them and nothing assumes a root login."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import paramiko

from installer.deploy import hostkeys
from installer.deploy.inventory import Host
from installer.errors import HostError

T = TypeVar("T")


# where Debian, Ubuntu, RHEL and SUSE keep OpenSSH's SFTP server
SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                "/usr/lib/ssh/sftp-server", "/usr/libexec/sftp-server")


class Remote:
    def __init__(self, host: Host, site: Path, timeout: float = 20) -> None:
        self.host = host
        self.sudo = host.become
        self.client = paramiko.SSHClient()
        if hostkeys.path(site).exists():
            self.client.load_host_keys(str(hostkeys.path(site)))
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        where = f"{host.name} ({host.user}@{host.address}:{host.port})"
        try:
            self.client.connect(host.address, port=host.port, username=host.user,
                                key_filename=host.key_file, timeout=timeout,
                                banner_timeout=timeout, auth_timeout=timeout,
                                look_for_keys=host.key_file is None, allow_agent=True)
        except paramiko.BadHostKeyException as e:
            raise hostkeys.changed_error(host, e.expected_key, e.key, site) from None
        except paramiko.SSHException as e:
            if "not found in known_hosts" in str(e):
                raise HostError(f"{where}: host key unknown to {hostkeys.path(site)}",
                                hint="check its fingerprint, then: airlock hosts trust -i "
                                     f"INVENTORY --site {site} (or give "
                                     f"{hostkeys.PIN_VAR} in the inventory)") from None
            raise HostError(f"{where}: SSH failed ({e})",
                            hint="check the user and key in the inventory") from None
        except (TimeoutError, OSError) as e:
            raise HostError(f"{where} is unreachable ({e})",
                            hint="check the address in the inventory, the network and sshd "
                                 "(airlock preflight checks every host)") from None
        self.name = host.name
        self._sftp: paramiko.SFTPClient | None = None

    def run(self, argv: list[str], *, check: bool = True, stdin: bytes | None = None
            ) -> tuple[int, str, str]:
        """ARGV on the host (through ``sudo -n`` where the inventory says become)."""
        if self.sudo:
            argv = ["sudo", "-n", "--", *argv]
        cmd = " ".join(shlex.quote(a) for a in argv)
        try:
            chan_in, chan_out, chan_err = self.client.exec_command(cmd, timeout=600)
            if stdin is not None:
                chan_in.write(stdin)
            chan_in.channel.shutdown_write()
            out = chan_out.read().decode(errors="replace")
            err = chan_err.read().decode(errors="replace")
            rc = chan_out.channel.recv_exit_status()
        except (paramiko.SSHException, OSError) as e:
            raise HostError(f"{self.name}: the connection broke during `{cmd[:80]}` ({e})",
                            hint="run the same command again: it resumes") from None
        if self.sudo and rc == 1 and err.startswith("sudo:"):
            raise HostError(f"{self.name}: {self.host.user} cannot use sudo without a "
                            f"password: {err.strip()[:200]}",
                            hint=f"give {self.host.user} passwordless sudo on {self.name} "
                                 "(/etc/sudoers.d): airlock's own SSH commands and copies run "
                                 "unattended through sudo -n")
        if check and rc != 0:
            raise HostError(f"{self.name}: `{cmd[:120]}` failed ({rc}): {err.strip()[-400:]}")
        return rc, out, err

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """SFTP as root: OpenSSH's sftp-server through sudo where the login is not root."""
        if self._sftp is None:
            if not self.sudo:
                self._sftp = self.client.open_sftp()
            else:
                transport = self.client.get_transport()
                assert transport is not None
                chan = transport.open_session(timeout=20)
                find = " ".join(f"[ -x {p} ] && exec {p};" for p in SFTP_SERVERS)
                chan.exec_command(f"sudo -n -- sh -c {shlex.quote(find + ' exit 127')}")
                try:
                    self._sftp = paramiko.SFTPClient(chan)
                except (paramiko.SSHException, EOFError) as e:
                    raise HostError(f"{self.name}: no SFTP server through sudo ({e})",
                                    hint="the host needs OpenSSH's sftp-server and "
                                         f"passwordless sudo for {self.host.user}") from None
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def each_host(hosts: list[Host], fn: Callable[[Remote], T], *, site: Path,
              workers: int = 16, timeout: float = 15) -> dict[str, T | HostError]:
    """FN on every host at once; a host that cannot be reached gives its HostError."""

    def one(h: Host) -> T | HostError:
        try:
            with Remote(h, site, timeout=timeout) as r:
                return fn(r)
        except HostError as e:
            return e

    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(workers, len(hosts))) as pool:
        return dict(zip([h.name for h in hosts], pool.map(one, hosts), strict=True))


def each_known_host(hosts: list[Host], fn: Callable[[Remote], T], *, site: Path,
                    timeout: float = 15) -> dict[str, T | HostError]:
    """FN on every host whose key the site knows (each_host); a host whose key is missing
    or changed gives its HostError without being connected to."""
    keys = hostkeys.check(hosts, site)
    found: dict[str, T | HostError] = {h: e for h, e in keys.items()
                                       if isinstance(e, HostError)}
    found.update(each_host([h for h in hosts if h.name not in found], fn, site=site,
                           timeout=timeout))
    return found
