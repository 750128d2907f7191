"""The command line itself: errors printed as written (never read as rich markup), any
unexpected exception reported in one line (a traceback only with --debug, a JSON error with
--json), click's own exits kept, and every path made absolute when it is read."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import click
import pytest

from conftest import run_airlock
from installer.cli import AbsolutePath, main

# bundle inspect imports load_meta when it runs: replacing it makes that command fail
FAIL = textwrap.dedent("""
    import installer.bundle.inspect
    def load_meta(root):
        {}
    installer.bundle.inspect.load_meta = load_meta
""").strip()


def failing(body: str) -> str:
    """A patch for run_airlock: ``bundle inspect`` runs BODY (Python lines)."""
    return FAIL.format(textwrap.indent(body, " " * 4).lstrip())


# --------------------------------------------------------------------------- markup

def test_error_message_problems_and_hint_print_verbatim(tmp_path: Path) -> None:
    patch = failing("from installer.errors import IntegrityError\n"
                    "raise IntegrityError('bad [lab] input [/] here', "
                    "[{'file': 'a[/]', 'problem': '[bold]x[/bold]'}], "
                    "hint=\"pip install 'airlock[lab]' [/]\")")
    proc = run_airlock("bundle", "inspect", str(tmp_path), patch=patch)
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr.splitlines() == ["error: bad [lab] input [/] here",
                                        "  ✗ a[/]: [bold]x[/bold]",
                                        "hint: pip install 'airlock[lab]' [/]"]


def test_a_path_with_brackets_prints_verbatim(tmp_path: Path) -> None:
    proc = run_airlock("bundle", "inspect", str(tmp_path / "b[lab]x[/]"))
    assert proc.returncode == 5
    assert proc.stderr == f"error: {tmp_path}/b[lab]x[/] is not an airlock bundle (no " \
                          "bundle.json)\n"


def test_library_messages_print_verbatim(capsys: pytest.CaptureFixture) -> None:
    from installer.cli.deploy import _say
    from installer.deploy.runner import _View

    _say(False)("pip install 'airlock[lab]' [/]")
    _View("deploy [lab]", live=False).event({"event": "playbook_on_play_start",
                                             "event_data": {"play": "hosts [/] [bold]"}})
    captured = capsys.readouterr()
    assert captured.out == "pip install 'airlock[lab]' [/]\n"
    assert captured.err == "deploy [lab] play: hosts [/] [bold]\n"


# --------------------------------------------------------------------------- unexpected

BUG = failing("raise ZeroDivisionError('boom [lab]\\nsecond line')")
INTERNAL = "error: internal error: ZeroDivisionError: boom [lab] second line"


def test_unexpected_exception_is_one_line_and_a_hint(tmp_path: Path) -> None:
    proc = run_airlock("bundle", "inspect", str(tmp_path), patch=BUG)
    assert proc.returncode == 1 and proc.stdout == ""
    first, hint = proc.stderr.splitlines()
    assert first == INTERNAL
    assert hint.startswith("hint: this is a bug in airlock") and "--debug" in hint \
        and "maintainers" in hint


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_airlock("--debug", "bundle", "inspect", str(tmp_path), patch=BUG)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("ZeroDivisionError: boom [lab]\nsecond line")
    assert "internal error" not in proc.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_json_reports_an_unexpected_exception(tmp_path: Path, where: str) -> None:
    args = ["--json", str(tmp_path)] if where == "before" else [str(tmp_path), "--json"]
    proc = run_airlock("bundle", "inspect", *args, patch=BUG)
    assert proc.returncode == 1 and proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert doc.pop("hint").startswith("this is a bug in airlock")
    assert doc == {"ok": False, "error": INTERNAL[len("error: "):], "exitCode": 1,
                   "type": "InternalError", "cause": "ZeroDivisionError"}


def test_json_is_known_when_the_command_line_itself_fails(tmp_path: Path) -> None:
    # --json comes last and the --state path before it fails while it is read: --json
    # (eager) was recorded first
    patch = textwrap.dedent("""
        import click
        def convert(self, value, param, ctx):
            raise ValueError("no path today")
        click.Path.convert = convert
    """)
    proc = run_airlock("bundle", "verify", str(tmp_path), "--state", "s", "--json",
                       patch=patch)
    assert proc.returncode == 1 and proc.stderr == ""
    assert json.loads(proc.stdout)["error"] == "internal error: ValueError: no path today"


@pytest.mark.parametrize("statement,code,stderr", [
    ("raise KeyboardInterrupt", 130, "interrupted; nothing half-written was kept\n"),
    ("import click\nraise click.exceptions.Exit(3)", 3, ""),
    ("import click\nraise click.Abort()", 1, "Aborted!\n"),
    ("import click\nraise click.UsageError('no good')", 2, "Error: no good\n"),
    ("import errno\nraise BrokenPipeError(errno.EPIPE, 'closed')", 1, ""),
])
def test_interrupts_click_exits_and_closed_pipes_keep_their_ways(
        tmp_path: Path, statement: str, code: int, stderr: str) -> None:
    proc = run_airlock("bundle", "inspect", str(tmp_path), patch=failing(statement))
    assert proc.returncode == code
    assert proc.stderr.endswith(stderr) and "internal error" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_errors_exit_2() -> None:
    proc = run_airlock("bundle", "inspect")
    assert proc.returncode == 2 and "Missing argument 'DIRECTORY'" in proc.stderr


# --------------------------------------------------------------------------- paths

def test_every_path_parameter_is_absolute() -> None:
    def params(cmd: click.Command, name: str):
        for p in cmd.params:
            yield f"{name} {p.name}", p
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            yield from params(sub, f"{name} {sub_name}")

    paths = {n: p for n, p in params(main, "airlock") if isinstance(p.type, click.Path)}
    assert len(paths) >= 39
    assert [n for n, p in paths.items() if not isinstance(p.type, AbsolutePath)] == []


def test_a_relative_path_is_absolute_against_the_cwd_symlinks_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    monkeypatch.chdir(tmp_path)
    assert AbsolutePath().convert("link/x", None, None) == tmp_path / "link" / "x"


def test_relative_inventory_and_site_reach_the_library_absolute(tmp_path: Path) -> None:
    proc = run_airlock("deploy", "-i", "rel/inv", "--site", "rel/site", "--json", cwd=tmp_path)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"] == f"inventory {tmp_path}/rel/inv does not exist"

    proc = run_airlock("audit", "verify", "--site", "rel/site", "--json", cwd=tmp_path)
    assert json.loads(proc.stdout)["path"] == f"{tmp_path}/rel/site/audit.jsonl"
    proc = run_airlock("audit", "verify", "--json", cwd=tmp_path,
                       env={"AIRLOCK_SITE_DIR": "from/env"})
    assert json.loads(proc.stdout)["path"] == f"{tmp_path}/from/env/audit.jsonl"


def test_paths_from_the_environment_are_absolute(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from installer.lab.codeserver import cache_dir
    from installer.lab.lab import state_dir
    from installer.site import site_dir_default

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRLOCK_SITE_DIR", "s")
    monkeypatch.setenv("AIRLOCK_LAB_DIR", "l")
    monkeypatch.setenv("AIRLOCK_CACHE", "c")
    assert (site_dir_default(), state_dir(), cache_dir()) == (tmp_path / "s", tmp_path / "l",
                                                              tmp_path / "c")
