"""Files to a host at link speed: one OpenSSH stream, each file hashed as it lands.

``airlock bundle import`` used to copy over paramiko's SFTP (one Python-level SSH stream,
well below what the link carries) and then read every file back on the host to hash it.
Here the controller's OpenSSH client (the same binary, ciphers and known_hosts checks as
every Ansible run) carries one stream to a small receiver on the host, run by the host's
own python3 (through ``sudo -n`` where the inventory says become). The stream is a header
line per file (its path inside the destination, where to start, its size) and then its
bytes; the receiver writes ``PATH.part`` and hashes the bytes as they are written, so a
file's SHA-256 is known the moment its last byte lands: no second read. A partial file is
continued from START: the receiver hashes the part already there, then the rest.

The receiver is sent on the stream itself (the command line, which sudo logs, carries a
one-line loader only), and it refuses any path that is absolute or climbs out of the
destination.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from installer.deploy import hostkeys
from installer.deploy.inventory import Host
from installer.errors import HostError

CHUNK = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux

# Runs on the host. Reads: a header line (JSON: rel, start, size), then size - start bytes;
# writes DEST/rel.part; answers a JSON line [rel, sha256] per file as soon as it is whole.
# A file started from 0 is a new file (what was at its name, a link into a served release
# included, is unlinked, never written through); a continued one is never a symlink.
# sshd hands the stream over through a pipe of 64 KiB: each 64 KiB woke the receiver and
# stopped sshd until it read; a pipe of 1 MiB (F_SETPIPE_SZ, within Linux's default
# pipe-max-size) took the copy from 0.79x to 0.97x scp's speed in the lab.
RECEIVER = r"""
import fcntl, hashlib, json, os, sys
CHUNK = 1 << 20
try:
    fcntl.fcntl(0, 1031, CHUNK)  # F_SETPIPE_SZ
except OSError:
    pass  # not a pipe, or a smaller limit: slower, not wrong
dest = os.path.realpath(sys.argv[1])
inp, out = sys.stdin.buffer, sys.stdout
view = memoryview(bytearray(CHUNK))
def fail(msg):
    out.write(json.dumps(["error", msg]) + "\n")
    out.flush()
    sys.exit(2)
while True:
    line = inp.readline()
    if not line:
        break
    head = json.loads(line)
    rel, start, size = head["rel"], int(head["start"]), int(head["size"])
    path = os.path.normpath(os.path.join(dest, rel)) + ".part"
    if os.path.isabs(rel) or not path.startswith(dest + os.sep) or not 0 <= start <= size:
        fail("refused: " + rel)
    digest = hashlib.sha256()
    if not start and os.path.lexists(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        if start:
            if os.fstat(fd).st_size < start:
                fail("shorter than its start: " + rel)
            with open(path, "rb") as old:
                left = start
                while left:
                    chunk = old.read(min(left, CHUNK))
                    if not chunk:
                        fail("shorter than its start: " + rel)
                    digest.update(chunk)
                    left -= len(chunk)
            f.seek(start)
            f.truncate()
        left = size - start
        while left:
            n = inp.readinto(view[:min(left, CHUNK)])
            if not n:
                fail("the stream ended inside " + rel)
            f.write(view[:n])
            digest.update(view[:n])
            left -= n
    out.write(json.dumps([rel, digest.hexdigest()]) + "\n")
    out.flush()
out.write("done\n")
out.flush()
"""
LOADER = "import sys; exec(sys.stdin.buffer.read(int(sys.stdin.buffer.readline())))"


@dataclass(frozen=True)
class Send:
    rel: str  # path inside the destination folder (written as REL.part)
    src: Path
    start: int  # bytes of REL.part already on the host (continued from here)
    size: int


def ssh_argv(host: Host, site: Path) -> list[str]:
    """OpenSSH to HOST with the site's known_hosts, strictly, unattended, no compression
    (model weights and images do not compress; compressing costs the CPU the link needs)."""
    if shutil.which("ssh") is None:
        raise HostError("the OpenSSH client (ssh) is not installed on this controller",
                        hint="apt-get install openssh-client (Ansible needs it too)")
    argv = ["ssh", "-T", "-e", "none", "-p", str(host.port), "-l", host.user,
            "-o", "BatchMode=yes", "-o", "Compression=no", "-o", "ControlMaster=no",
            "-o", "ControlPath=none", "-o", f"UserKnownHostsFile={hostkeys.path(site)}",
            "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15"]
    if host.key_file:
        argv += ["-i", host.key_file, "-o", "IdentitiesOnly=yes"]
    return [*argv, "--", host.address]


def send(host: Host, site: Path, dest: str, files: Iterable[Send],
         advance: Callable[[int], None] = lambda n: None) -> dict[str, str]:
    """FILES to DEST/REL.part on HOST over one SSH stream; returns {rel: sha256 of the
    whole REL.part as written}. A broken stream raises HostError; what arrived whole
    before it keeps its hash on the host's disk (the next import continues the rest)."""
    files = list(files)
    if not files:
        return {}
    remote = ["python3", "-c", LOADER, dest]
    if host.become:
        remote = ["sudo", "-n", "--", *remote]
    cmd = [*ssh_argv(host, site), " ".join(shlex.quote(a) for a in remote)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    with contextlib.suppress(OSError):  # ssh reads its input in larger pieces too
        fcntl.fcntl(proc.stdin.fileno(), F_SETPIPE_SZ, CHUNK)
    sent_error: list[BaseException] = []
    stderr: list[bytes] = []

    def writer() -> None:
        w = proc.stdin
        try:
            code = RECEIVER.encode()
            w.write(b"%d\n" % len(code) + code)
            for f in files:
                w.write(json.dumps({"rel": f.rel, "start": f.start, "size": f.size}).encode()
                        + b"\n")
                w.flush()
                _copy_range(f.src, f.start, f.size, w.fileno(), advance)
        except Exception as e:  # said after the stream ends
            sent_error.append(e)
        finally:
            with contextlib.suppress(OSError):
                w.close()

    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
    reader.start()
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    got: dict[str, str] = {}
    done = False
    problem = ""
    for raw in proc.stdout:
        line = raw.decode(errors="replace").strip()
        if line == "done":
            done = True
            continue
        try:
            rel, digest = json.loads(line)
        except ValueError:
            problem = f"the host's receiver said {line[:200]!r}"
            continue
        if rel == "error":
            problem = digest
        else:
            got[rel] = digest
    t.join()
    rc = proc.wait()
    reader.join(5)
    if sent_error and isinstance(sent_error[0], HostError):
        raise sent_error[0]
    if not done or rc != 0:
        err = b"".join(stderr).decode(errors="replace").strip()
        why = problem or (err.splitlines()[-1] if err else f"ssh ended with {rc}")
        if "python3" in err and ("not found" in err or "No such file" in err):
            raise HostError(f"{host.name}: the copy needs python3 on the host ({why})",
                            hint="install python3 there (Ansible needs it too)")
        if host.become and err.startswith("sudo:"):
            raise HostError(f"{host.name}: {host.user} cannot use sudo without a password: "
                            f"{why}", hint=f"give {host.user} passwordless sudo on {host.name}")
        raise HostError(f"{host.name}: the copy stopped after {len(got)} of {len(files)} "
                        f"file(s): {why}",
                        hint="run the same import again: whole files are kept, a partial "
                             "one continues where it stopped")
    return got


def _copy_range(src: Path, start: int, size: int, out_fd: int,
                advance: Callable[[int], None]) -> None:
    """SRC's bytes START..SIZE to OUT_FD (a pipe): by sendfile, no copy through Python."""
    with open(src, "rb") as f:
        if os.fstat(f.fileno()).st_size != size:
            raise HostError(f"{src} changed size while being copied",
                            hint="nothing in a verified bundle may change: investigate")
        offset = start
        while offset < size:
            n = os.sendfile(out_fd, f.fileno(), offset, min(CHUNK * 8, size - offset))
            if n == 0:
                raise HostError(f"{src} ended early while being copied")
            offset += n
            advance(n)
