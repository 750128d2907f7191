"""The import's copy stream (installer/deploy/transfer.py): the receiver the host runs, fed
by the controller's sender. Here the `ssh` on PATH runs the host's command on this machine
(a stand-in for the SSH link only: the receiver is the real one, in a real python3); the
lab's repo host takes it over real OpenSSH (tests/test_import.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from installer.deploy import transfer
from installer.deploy.inventory import Host
from installer.errors import HostError


@pytest.fixture
def local_ssh(tmp_path: Path, monkeypatch) -> Path:
    """An `ssh` that runs its last argument (the host's command line) with sh, here."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "ssh"
    shim.write_text('#!/bin/sh\nfor a; do last="$a"; done\nexec sh -c "$last"\n')
    shim.chmod(0o755)
    py = bindir / "python3"  # the host's python3: this one
    py.symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return tmp_path


def _host() -> Host:
    return Host("repo1", {"ansible_host": "127.0.0.1", "ansible_user": "root"})


def test_files_arrive_whole_and_hashed_as_they_land(local_ssh: Path) -> None:
    src, dest = local_ssh / "src", local_ssh / "dest"
    src.mkdir()
    (dest / "blobs").mkdir(parents=True)
    big = src / "big"
    big.write_bytes(os.urandom(5 << 20) + b"end")
    empty = src / "empty"
    empty.write_bytes(b"")
    # half of big already on the host (an interrupted copy): continued, hashed whole
    half = big.stat().st_size // 2
    (dest / "blobs" / "big.part").write_bytes(big.read_bytes()[:half] + b"junk past the start")
    seen: list[int] = []
    got = transfer.send(_host(), local_ssh, str(dest), [
        transfer.Send("blobs/big", big, half, big.stat().st_size),
        transfer.Send("empty", empty, 0, 0)], seen.append)
    want = hashlib.sha256(big.read_bytes()).hexdigest()
    assert got == {"blobs/big": want, "empty": hashlib.sha256(b"").hexdigest()}
    assert (dest / "blobs" / "big.part").read_bytes() == big.read_bytes()
    assert (dest / "empty.part").read_bytes() == b""
    assert sum(seen) == big.stat().st_size - half  # only the rest was sent


@pytest.mark.parametrize("rel", ["../outside", "/etc/outside", "blobs/../../outside"])
def test_a_path_out_of_the_destination_is_refused(local_ssh: Path, rel: str) -> None:
    src = local_ssh / "f"
    src.write_bytes(b"payload")
    dest = local_ssh / "dest" / "in"
    (dest / "blobs").mkdir(parents=True)
    with pytest.raises(HostError, match="refused"):
        transfer.send(_host(), local_ssh, str(dest), [transfer.Send(rel, src, 0, 7)])
    written = [p for p in local_ssh.rglob("*") if p.is_file() and p.read_bytes() == b"payload"]
    assert written == [src]
    assert not Path("/etc/outside.part").exists()


def test_a_stream_cut_short_is_named_and_keeps_what_arrived(local_ssh: Path) -> None:
    """The host's end goes away after the first file: the error says how far it got."""
    src = local_ssh / "src"
    src.mkdir()
    one, two = src / "one", src / "two"
    one.write_bytes(b"1" * 1000)
    two.write_bytes(b"2" * (4 << 20))
    dest = local_ssh / "dest"
    dest.mkdir()
    shim = local_ssh / "bin" / "ssh"  # a link that drops after 9000 bytes of its stream
    shim.write_text('#!/bin/sh\nfor a; do last="$a"; done\nhead -c 9000 | sh -c "$last"\n')
    with pytest.raises(HostError, match=r"the copy stopped after 1 of 2 file\(s\)") as e:
        transfer.send(_host(), local_ssh, str(dest), [
            transfer.Send("one", one, 0, 1000), transfer.Send("two", two, 0, 4 << 20)])
    assert "run the same import again" in (e.value.hint or "")
    assert (dest / "one.part").read_bytes() == b"1" * 1000


def test_a_file_that_changed_size_is_named(local_ssh: Path) -> None:
    src = local_ssh / "f"
    src.write_bytes(b"abc")
    dest = local_ssh / "dest"
    dest.mkdir()
    with pytest.raises(HostError, match="changed size while being copied"):
        transfer.send(_host(), local_ssh, str(dest), [transfer.Send("f", src, 0, 10)])


def test_the_command_line_carries_the_loader_only(local_ssh: Path) -> None:
    """sudo logs command lines (and the logs go to the store): the receiver travels on
    the stream."""
    host = Host("repo1", {"ansible_host": "10.0.5.10", "ansible_user": "airlock",
                          "ansible_become": True, "ansible_port": 2222,
                          "ansible_ssh_private_key_file": "/k/id"})
    argv = transfer.ssh_argv(host, local_ssh)
    assert argv[-2:] == ["--", "10.0.5.10"]
    assert argv[argv.index("-p"):argv.index("-p") + 2] == ["-p", "2222"]
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert "-i" in argv and argv[argv.index("-i") + 1] == "/k/id"
    assert "def fail" not in transfer.LOADER and len(transfer.LOADER) < 100
    proc = subprocess.run([sys.executable, "-c", transfer.LOADER], input=b"0\n",
                          capture_output=True)
    assert proc.returncode == 0  # an empty program: the loader alone runs nothing


def test_a_file_sent_from_0_replaces_a_link_and_never_writes_through_it(local_ssh: Path) -> None:
    """An import links blobs the served release has (REL.part, a hard link) and sends one
    again when it is damaged there: the served release's file must stay as it is."""
    served = local_ssh / "served"
    served.write_bytes(b"served bytes")
    dest = local_ssh / "dest"
    dest.mkdir()
    os.link(served, dest / "blob.part")
    (dest / "other.part").symlink_to(served)
    src = local_ssh / "src"
    src.write_bytes(b"the bundle's bytes")
    got = transfer.send(_host(), local_ssh, str(dest), [
        transfer.Send("blob", src, 0, 18), transfer.Send("other", src, 0, 18)])
    assert got["blob"] == got["other"] == hashlib.sha256(b"the bundle's bytes").hexdigest()
    assert served.read_bytes() == b"served bytes"
    for name in ("blob.part", "other.part"):
        assert not (dest / name).is_symlink() and (dest / name).stat().st_nlink == 1
    # a continued file that is a link is refused, and nothing is written through it
    (dest / "third.part").symlink_to(served)
    with pytest.raises(HostError):
        transfer.send(_host(), local_ssh, str(dest), [transfer.Send("third", src, 4, 18)])
    assert served.read_bytes() == b"served bytes"


def test_the_importers_batch_scripts_rename_remove_and_link(tmp_path: Path) -> None:
    """What `_Sync.each` runs on the repo host (installer/deploy/importer.py), in a real
    python3 here: one command for every file."""
    from installer.deploy import importer

    def each(script: str, names: list[str]) -> None:
        subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True,
                       input=b"".join(n.encode() + b"\0" for n in names))

    (tmp_path / "a b.part").write_bytes(b"a")
    (tmp_path / "c.part").write_bytes(b"c")
    (tmp_path / "old").write_bytes(b"old")
    each(importer.RENAME, ["a b"])
    each(importer.REMOVE, ["c.part", "old", "never-there"])
    each(importer.LINK, ["../bundle/x", "x", "a b", "old"])
    each(importer.LINK, ["../bundle/y", "x"])  # a link already there is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a b", "old", "x"]
    assert (tmp_path / "a b").read_bytes() == b"a"
    assert os.readlink(tmp_path / "x") == "../bundle/y"
    assert os.readlink(tmp_path / "old") == "a b"
