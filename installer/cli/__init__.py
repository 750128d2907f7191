"""``airlock``: the command line. Thin click commands; the logic lives in the library.

Errors are ``installer.errors.AirlockError`` subclasses: printed as one message (plus a hint)
and mapped to exit codes; any other exception is a bug, reported the same way as an internal
error (exit 1); a traceback only with ``--debug``.
"""

from __future__ import annotations

import errno
import json
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from installer import __version__
from installer.console import err, esc, out
from installer.errors import AirlockError, InternalError, ProblemsError


class AirlockGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AirlockError as e:
            _fail(ctx, e)
        except KeyboardInterrupt:
            if ctx.params.get("debug"):
                raise
            err.print("[err]interrupted[/]; nothing half-written was kept")
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors (exit 2), --help/--version, "Aborted!"
        except Exception as e:
            if isinstance(e, OSError) and e.errno == errno.EPIPE:
                raise  # a closed pipe (airlock … --json | head): click exits quietly
            _fail(ctx, InternalError(e))


def _fail(ctx: click.Context, e: AirlockError) -> NoReturn:
    """Report E (one message and a hint, or a JSON error with --json) and exit with its
    code; with --debug, let the exception being handled through with its traceback."""
    if ctx.params.get("debug"):
        raise  # called from an except clause: re-raises the exception being handled
    report_error(e, json_mode=_json_requested(ctx))
    sys.exit(e.exit_code)


class AbsolutePath(click.Path):
    """``click.Path`` giving an absolute ``Path``: the path as typed (or from its environment
    variable, or the default) against the working directory when the command line is read,
    symlinks left alone. Library code may run tools elsewhere (Ansible runs from
    playbooks/): a relative path would then name another place."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(path_type=Path, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Path:
        return Path(super().convert(value, param, ctx)).absolute()


def _json_requested(ctx: click.Context) -> bool:
    return bool(ctx.meta.get("airlock.json"))


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta["airlock.json"] = value
    return value


json_option = click.option("--json", "as_json", is_flag=True, callback=_set_json,
                           is_eager=True, help="Print one JSON document on stdout, no progress.")


def report_error(e: AirlockError, json_mode: bool) -> None:
    if json_mode:
        doc: dict[str, Any] = {"ok": False, "error": str(e), "exitCode": e.exit_code,
                               "type": type(e).__name__}
        if isinstance(e, InternalError):
            doc["cause"] = type(e.__cause__).__name__
        if e.hint:
            doc["hint"] = e.hint
        if isinstance(e, ProblemsError):
            doc["problems"] = e.problems
        click.echo(json.dumps(doc, indent=2))
        return
    err.print(f"[err]error:[/] {esc(e)}", soft_wrap=True)
    problems = e.problems if isinstance(e, ProblemsError) else []
    if problems:
        for p in problems[:50]:
            err.print(f"  [err]✗[/] {esc(p['file'])}: {esc(p['problem'])}", soft_wrap=True)
        if len(problems) > 50:
            err.print(f"  ... and {len(problems) - 50} more (see --json)")
    if e.hint:
        err.print(f"[dim]hint:[/] {esc(e.hint)}", soft_wrap=True)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so staged outputs are cleaned up like on Ctrl-C


@click.group(cls=AirlockGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="airlock")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """Build, verify and carry signed offline bundles across an air gap, and install the
    platform from them."""
    signal.signal(signal.SIGTERM, _sigterm)


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=False))


def register() -> None:
    from installer.cli import acceptance, bundle, demo, deploy, hosts, keys, lab, mirror, network

    main.add_command(bundle.bundle)
    main.add_command(keys.keys_group)
    main.add_command(mirror.mirror_group)
    main.add_command(lab.lab_group)
    main.add_command(network.network_group)
    main.add_command(hosts.hosts_group)
    main.add_command(demo.demo)
    main.add_command(acceptance.acceptance_cmd)
    for cmd in (deploy.plan_cmd, deploy.preflight_cmd, deploy.deploy_cmd, deploy.upgrade_cmd,
                deploy.status_cmd, deploy.audit_group, deploy.backup_group,
                deploy.restore_cmd, deploy.rollback_cmd):
        main.add_command(cmd)


register()

__all__ = ["AbsolutePath", "emit_json", "err", "json_option", "main", "out"]
