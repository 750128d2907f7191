"""README's commands, run as written, in order, in a fresh clone: so README cannot drift from
the code again.

Every ```sh block of README.md is either run or left out here, with the reason:

- run: each block right after a ``<!-- test: run -->`` line (building a bundle, the package
  mirror, keys and signatures, the security reviewers' stock-tool check), in README's order,
  each by ``bash -e -o pipefail`` from the clone's root, whatever the block says;
- left out (LEFT_OUT below, by the block's first line): the two set-up commands (the whole
  demo and the whole suite: test_demo.py, test_import.py and CI itself run them), the
  offline install (it needs a bundle built with ``pypi: {self: true}``, so PyPI:
  test_mirrors.py), and the blocks that need the lab or a real site (import, deploy, lab:
  the lab tests). A new ```sh block must be marked or listed here, or this test fails.

What the test changes in the text it runs, and why (SUBSTITUTIONS, plus the passphrase):

- ``BUNDLE`` is the bundle README builds, ``out/sample``;
- ``/srv/`` and ``/etc/airlock/`` (folders only root may write, on the repo host) are
  under the test's own folder;
- ``[--option ...]``, an optional part, is left out;
- an ``airlock`` command that asks for a key passphrase on the terminal is given
  ``--passphrase-env`` instead (the test has no terminal; README names both ways).

The clone: ``git clone`` of this checkout with its uncommitted changes laid on (committed in
the clone), so what is tested is what would be committed; ``airlock`` is the clone's code
(PYTHONPATH) with this Python's bin folder (.venv) first on PATH; HOME and the XDG folders
are the test's, so the trust state, the site folder and its audit log stay there (and
AIRLOCK_SYSLOG=none). The reviewers' block reads ``../allowed_signers``, the file "from
the staging team", beside the bundle's folder: the one ``keys allowed-signers`` made is
put there, as handed over. At the end no tracked file of the clone has changed (the lock
file included).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click

from conftest import REPO, need
from installer.cli import main

MARK = "<!-- test: run -->"
LEFT_OUT = {
    "python3 -m venv": "set-up: the whole demo (test_demo.py, test_import.py)",
    "bash tests/run.sh": "set-up: the whole suite (CI runs it)",
    "python3 BUNDLE/install-airlock.py": "needs a bundle with pypi: self, so PyPI "
                                         "(test_mirrors.py)",
    "airlock bundle import": "needs a repo host (test_import.py, on the lab)",
    "airlock plan": "needs a site's hosts (test_deploy.py, on the lab)",
    "airlock lab up": "needs the lab (test_lab.py)",
    "# 1. each signer, on their own machine": "the key ceremony: several people, each on "
                                              "their own machine (test_ceremony.py runs "
                                              "every step, each in its own folder)",
    "airlock keys new-signer dave": "the ceremony's rotation: as above (test_ceremony.py)",
}
SUBSTITUTIONS = {  # README text -> what runs; {tmp} is the test's folder
    "BUNDLE": "out/sample",
    "/srv/": "{tmp}/srv/",
    "/etc/airlock/": "{tmp}/etc/airlock/",
}
OPTIONAL = re.compile(r" \[--[^\]\n]*\]")
PASSPHRASE_ENV = "AIRLOCK_README_PASSPHRASE"


def blocks(readme: str) -> list[tuple[bool, str]]:
    """Each ```sh block: (marked to run, its text)."""
    found = []
    for m in re.finditer(r"^```sh\n(.*?)^```$", readme, re.S | re.M):
        before = readme[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        found.append((before.strip() == MARK, m.group(1)))
    return found


def _passphrase(line: str) -> str:
    """``--passphrase-env`` after the subcommand's words, if that command takes one."""
    words = line.split()
    if not words or words[0] != "airlock":
        return line
    cmd: click.Command = main
    n = 1
    for w in words[1:]:
        if not isinstance(cmd, click.Group) or w not in cmd.commands:
            break
        cmd, n = cmd.commands[w], n + 1
    if not any("--passphrase-env" in p.opts for p in cmd.params):
        return line
    head = re.match(r"\s*" + r"\s+".join(map(re.escape, words[:n])), line)
    assert head
    return f"{head.group(0)} --passphrase-env {PASSPHRASE_ENV}{line[head.end():]}"


def as_run(block: str, tmp: Path) -> str:
    text = OPTIONAL.sub("", block)
    for was, now in SUBSTITUTIONS.items():
        text = text.replace(was, now.format(tmp=tmp))
    return "\n".join(_passphrase(line) for line in text.split("\n"))


def fresh_clone(dest: Path) -> Path:
    git = need("git")
    subprocess.run([git, "clone", "-q", str(REPO), str(dest)], check=True)
    changed = subprocess.run([git, "-C", str(REPO), "ls-files", "-z", "--modified", "--others",
                              "--exclude-standard"], check=True, capture_output=True,
                             text=True).stdout.split("\0")
    deleted = subprocess.run([git, "-C", str(REPO), "ls-files", "-z", "--deleted"],
                             check=True, capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, changed):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes((REPO / rel).read_bytes())
    for rel in filter(None, deleted):
        (dest / rel).unlink(missing_ok=True)
    subprocess.run([git, "-C", str(dest), "add", "-A"], check=True)
    subprocess.run([git, "-C", str(dest), "-c", "user.name=test", "-c", "user.email=t@t",
                    "commit", "-q", "--allow-empty", "-m", "the checkout's changes"],
                   check=True)
    return dest


def test_every_sh_block_is_run_or_left_out_with_a_reason() -> None:
    found = blocks((REPO / "README.md").read_text())
    assert sum(run for run, _ in found) >= 4, "README lost its <!-- test: run --> marks"
    for run, text in found:
        if not run:
            first = text.lstrip().split("\n", 1)[0]
            assert any(first.startswith(k) for k in LEFT_OUT), \
                f"README block not run and not in LEFT_OUT (with the reason): {first}"


def test_passphrase_is_given_only_where_asked() -> None:
    assert _passphrase("airlock keys init keys/ --signers 3  # x") == \
        f"airlock keys init --passphrase-env {PASSPHRASE_ENV} keys/ --signers 3  # x"
    assert _passphrase("airlock bundle verify out/sample") == "airlock bundle verify out/sample"
    assert _passphrase("cd out") == "cd out"


def test_readme_commands_work_as_written_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "airlock")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(clone), "HOME": str(home),
           "XDG_STATE_HOME": str(home / ".local/state"), "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_CONFIG_HOME": str(home / ".config"), "AIRLOCK_SYSLOG": "none",
           PASSPHRASE_ENV: "readme-test-passphrase"}
    for var in ("AIRLOCK_SITE_DIR", "AIRLOCK_TRUST_ROOT", "AIRLOCK_CACHE"):
        env.pop(var, None)
    ran = 0
    for run, block in blocks((clone / "README.md").read_text()):
        if not run:
            continue
        beside = clone / SUBSTITUTIONS["BUNDLE"] / ".." / "allowed_signers"
        if "../allowed_signers" in block and (clone / "allowed_signers").exists():
            beside.write_bytes((clone / "allowed_signers").read_bytes())  # handed over
        script = as_run(block, tmp_path)
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=clone,
                              env=env, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, (
            f"README block failed (exit {proc.returncode}):\n{block}\nas run:\n{script}\n"
            f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
        ran += 1
    assert ran >= 4
    status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain",
                             "--untracked-files=no"], capture_output=True, text=True)
    assert status.stdout == "", "README's commands changed tracked files:\n" + status.stdout
