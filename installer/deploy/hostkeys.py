"""Who the controller talks to: the site's ``known_hosts``, one file for every SSH
connection airlock makes, paramiko's and Ansible's alike.

A host's key is recorded only after it was checked: against the fingerprint the inventory
gives (``airlock_host_key_sha256``, e.g. read off the host's console when it was built), or
by the operator, who is shown the fingerprint and confirms it. From then on a host that
presents another key is refused, naming the host, the recorded and the new fingerprint,
and how to proceed. Nothing turns the check off.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko

from installer.deploy.inventory import Host
from installer.errors import HostError
from installer.fsutil import atomic_write

FILE = "known_hosts"
PIN_VAR = "airlock_host_key_sha256"
# the first key type the controller asks a host for, and so the one recorded
PREFERRED = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256")

Confirm = Callable[[Host, str, str], bool]


def path(site: Path) -> Path:
    return site / FILE


def entry(host: Host) -> str:
    """The name OpenSSH and paramiko look a host up by."""
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:…`` as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _normal(pin: str) -> str:
    pin = str(pin).strip()
    return pin if pin.startswith("SHA256:") else "SHA256:" + pin


def load(site: Path) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    p = path(site)
    if p.exists():
        keys.load(str(p))
    return keys


def scan(host: Host, timeout: float = 10) -> paramiko.PKey:
    """The key HOST presents (nothing is sent but the key exchange)."""
    where = f"{host.name} ({host.address}:{host.port})"
    try:
        sock = socket.create_connection((host.address, host.port), timeout=timeout)
    except OSError as e:
        raise HostError(f"{where} is unreachable ({e})",
                        hint="check the address in the inventory, the network and sshd") \
            from None
    t = paramiko.Transport(sock)
    try:
        opts = t.get_security_options()
        opts.key_types = [k for k in PREFERRED if k in opts.key_types] + \
            [k for k in opts.key_types if k not in PREFERRED]
        t.start_client(timeout=timeout)
        return t.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise HostError(f"{where}: no SSH key exchange ({e})") from None
    finally:
        t.close()


def changed_error(host: Host, recorded: paramiko.PKey | None, presented: paramiko.PKey,
                  site: Path) -> HostError:
    old = fingerprint(recorded) if recorded is not None else "(none)"
    return HostError(
        f"{host.name} ({entry(host)}): its SSH host key CHANGED: recorded {old}, now "
        f"presents {fingerprint(presented)} ({presented.get_name()}); refusing to connect",
        hint="someone may be in between, or the host was rebuilt. Check the new fingerprint "
             "on the host's console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub); "
             f"only if it matches: airlock hosts forget {host.name} -i INVENTORY --site "
             f"{site}, then airlock hosts trust -i INVENTORY --site {site}")


def check(hosts: list[Host], site: Path, *, confirm: Confirm | None = None,
          say: Callable[[str], None] = print) -> dict[str, str | HostError]:
    """Every host's live key checked before anything connects for real: a recorded key
    must be the one presented; an unknown one is recorded only when the inventory's
    fingerprint or the operator vouches for it. Returns host -> the fingerprint, or the
    HostError that refuses it (nothing is recorded for those)."""
    site.mkdir(parents=True, exist_ok=True, mode=0o700)
    known = load(site)
    result: dict[str, str | HostError] = {}
    if not hosts:
        return result
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        scanned = list(pool.map(_try_scan, hosts))
    added = False
    for h, key in zip(hosts, scanned, strict=True):
        if isinstance(key, HostError):
            result[h.name] = key
            continue
        fp = fingerprint(key)
        pin = _normal(h.vars[PIN_VAR]) if h.vars.get(PIN_VAR) else None
        have = known.lookup(entry(h)) or {}
        problem = None
        if have:
            recorded = have.get(key.get_name())
            if recorded is None or recorded != key:
                result[h.name] = changed_error(h, recorded or next(iter(have.values())),
                                               key, site)
                continue
            if pin and pin != fp:
                problem = (f"{h.name}: the inventory's {PIN_VAR} {pin} is not the key "
                           f"recorded for it and presented ({fp})")
        elif pin and pin != fp:
            problem = (f"{h.name} ({entry(h)}) presents {key.get_name()} {fp}, not the {pin} "
                       f"the inventory gives ({PIN_VAR}); not recorded")
        elif not pin and (confirm is None or not confirm(h, fp, key.get_name())):
            problem = (f"{h.name} ({entry(h)}): host key {key.get_name()} {fp} is not known "
                       "and nobody confirmed it")
        if problem:
            result[h.name] = HostError(problem, hint=UNKNOWN_HINT)
            continue
        if not have:
            known.add(entry(h), key.get_name(), key)
            added = True
            say(f"recorded {h.name}'s host key {fp} in {path(site)}")
        result[h.name] = fp
    if added:
        _save(known, site)
    return result


UNKNOWN_HINT = ("compare each fingerprint with the host's console (ssh-keygen -lf "
                "/etc/ssh/ssh_host_ed25519_key.pub), then give it in the inventory as "
                f"{PIN_VAR}: SHA256:… or confirm it with: airlock hosts trust -i INVENTORY")


def ensure(hosts: list[Host], site: Path, *, confirm: Confirm | None = None,
           say: Callable[[str], None] = print) -> dict[str, str]:
    """``check``, raising one HostError that names every host refused."""
    got = check(hosts, site, confirm=confirm, say=say)
    bad = [e for e in got.values() if isinstance(e, HostError)]
    if bad:
        raise HostError("; ".join(str(e) for e in bad), hint=bad[0].hint)
    return {k: v for k, v in got.items() if isinstance(v, str)}


def _try_scan(h: Host) -> paramiko.PKey | HostError:
    try:
        return scan(h)
    except HostError as e:
        return e


def forget(site: Path, hosts: list[Host]) -> list[str]:
    """Drop the recorded keys of HOSTS; returns the entries removed."""
    known = load(site)
    gone = [entry(h) for h in hosts if known.lookup(entry(h))]
    for name in gone:
        del known[name]
    _save(known, site)
    return gone


def _save(known: paramiko.HostKeys, site: Path) -> None:
    lines = []
    for e in known:
        for ktype, key in known[e].items():
            lines.append(f"{e} {ktype} {key.get_base64()}\n")
    atomic_write(path(site), "".join(sorted(lines)).encode(), mode=0o600)


def ssh_args(site: Path) -> str:
    """ANSIBLE_SSH_ARGS for every playbook run: the site's known_hosts, strictly (these
    come before any inventory's own arguments, and OpenSSH keeps the first value)."""
    return ("-C -o ControlMaster=auto -o ControlPersist=60s "
            f"-o UserKnownHostsFile={path(site)} -o StrictHostKeyChecking=yes "
            "-o GlobalKnownHostsFile=/dev/null")
