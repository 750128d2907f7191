"""SSH to managed hosts with paramiko: commands and SFTP, with errors that name the host."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import paramiko

from installer.deploy.inventory import Host
from installer.errors import HostError

T = TypeVar("T")


class Remote:
    def __init__(self, host: Host, timeout: float = 20) -> None:
        self.host = host
        self.client = paramiko.SSHClient()
        self.client.load_system_host_keys()
        if host.strict_host_keys:
            self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:  # the inventory says so (the lab's hosts get new keys every time)
            self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        where = f"{host.name} ({host.user}@{host.address}:{host.port})"
        try:
            self.client.connect(host.address, port=host.port, username=host.user,
                                key_filename=host.key_file, timeout=timeout,
                                banner_timeout=timeout, auth_timeout=timeout,
                                look_for_keys=host.key_file is None, allow_agent=True)
        except paramiko.BadHostKeyException:
            raise HostError(f"{where}: its host key changed since it was recorded in "
                            "known_hosts", hint="check the host, then update known_hosts") \
                from None
        except paramiko.SSHException as e:
            if "not found in known_hosts" in str(e):
                raise HostError(f"{where}: host key unknown",
                                hint=f"check its fingerprint, then: ssh-keyscan -p {host.port} "
                                     f"{host.address} >> ~/.ssh/known_hosts") from None
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
        if check and rc != 0:
            raise HostError(f"{self.name}: `{cmd[:120]}` failed ({rc}): {err.strip()[-400:]}")
        return rc, out, err

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def each_host(hosts: list[Host], fn: Callable[[Remote], T], *, workers: int = 16,
              timeout: float = 15) -> dict[str, T | HostError]:
    """FN on every host at once; a host that cannot be reached gives its HostError."""

    def one(h: Host) -> T | HostError:
        try:
            with Remote(h, timeout=timeout) as r:
                return fn(r)
        except HostError as e:
            return e

    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(workers, len(hosts))) as pool:
        return dict(zip([h.name for h in hosts], pool.map(one, hosts), strict=True))
