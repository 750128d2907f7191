"""The command line itself: errors printed as written (never read as rich markup)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import run_airlock

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
