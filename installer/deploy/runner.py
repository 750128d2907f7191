"""Run a playbook through ansible-runner: a live view of play, task and host counts, the
full log kept per run, and the result judged from the run's own stats (never from text)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.console import err, esc
from installer.deploy.inventory import ansible_env
from installer.errors import DeployError

STAT_KEYS = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")


@dataclass
class RunResult:
    playbook: str
    rc: int
    status: str
    seconds: float
    log: Path
    stats: dict[str, dict[str, int]] = field(default_factory=dict)  # host -> counts
    failures: list[dict[str, str]] = field(default_factory=list)
    changed_tasks: dict[str, list[str]] = field(default_factory=dict)  # host -> task names
    ident: str = ""

    @property
    def changed(self) -> int:
        return sum(h["changed"] for h in self.stats.values())

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failures

    def to_json(self) -> dict[str, Any]:
        return {"playbook": self.playbook, "rc": self.rc, "status": self.status,
                "seconds": round(self.seconds, 1), "log": str(self.log),
                "changed": self.changed, "stats": self.stats, "failures": self.failures,
                "changedTasks": self.changed_tasks, "ident": self.ident}


_CHANGED = re.compile(r"^(\x1b\[[0-9;]*m)?changed: ")


def _says_changed(ev: dict[str, Any]) -> bool:
    """The event's own output line begins with "changed:" (what a censored result keeps)."""
    return bool(_CHANGED.match(str(ev.get("stdout") or "").lstrip()))


class _View:
    """What the operator sees while a playbook runs."""

    def __init__(self, title: str, live: bool) -> None:
        self.title, self.play, self.task = title, "", ""
        self.counts = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0}
        self.hosts: set[str] = set()
        self.failures: list[dict[str, str]] = []
        self.changed_tasks: dict[str, list[str]] = {}
        self._changed_items: set[tuple[str, str]] = set()  # (host, task) of no_log items
        self._live: Any = None
        if live:
            from rich.live import Live

            self._live = Live(self._render(), console=err, transient=True,
                              refresh_per_second=8)

    def _render(self) -> Any:
        from rich.table import Table

        t = Table.grid(padding=(0, 1))
        t.add_row("[key]" + esc(self.title), esc(f"play: {self.play}"))
        t.add_row("", esc(f"task: {self.task}"))
        c = self.counts
        t.add_row("", f"[ok]ok {c['ok']}[/]  [warn]changed {c['changed']}[/]  "
                      f"[err]failed {c['failed']}  unreachable {c['unreachable']}[/]  "
                      f"skipped {c['skipped']}  hosts {len(self.hosts)}")
        return t

    def __enter__(self) -> _View:
        if self._live:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live:
            self._live.__exit__(*exc)

    def event(self, ev: dict[str, Any]) -> bool:
        name, data = ev.get("event", ""), ev.get("event_data", {})
        host = data.get("host")
        if name == "playbook_on_play_start":
            self.play = data.get("play", "")
            if not self._live:
                err.print(f"[key]{esc(self.title)}[/] play: {esc(self.play)}")
        elif name == "playbook_on_task_start":
            self.task = data.get("task", "")
        elif name == "runner_item_on_ok" and _says_changed(ev):
            self._changed_items.add((str(host), str(data.get("task_uuid", ""))))
        elif name == "runner_on_ok":
            res = data.get("res") or {}
            # a no_log task's result is censored, changed included: its lines still say
            changed = bool(res.get("changed")) or ("censored" in res and (
                _says_changed(ev) or (str(host), str(data.get("task_uuid", "")))
                in self._changed_items))
            self.counts["changed" if changed else "ok"] += 1
            if changed:
                self.changed_tasks.setdefault(str(host), []).append(str(data.get("task", "")))
        elif name == "runner_on_skipped":
            self.counts["skipped"] += 1
        elif name in ("runner_on_failed", "runner_on_unreachable"):
            if name == "runner_on_failed" and data.get("ignore_errors"):
                return True
            self.counts["failed" if name == "runner_on_failed" else "unreachable"] += 1
            res = data.get("res") or {}
            msg = str(res.get("msg") or "")
            detail = str(res.get("stderr") or res.get("module_stderr") or "").strip()
            if detail:  # a command's own words say more than "non-zero return code"
                msg = f"{msg}: {detail[-700:]}" if msg else detail
            self.failures.append({"host": str(host), "task": str(data.get("task", "")),
                                  "play": self.play, "message": msg.strip()[-1000:]})
        if host:
            self.hosts.add(host)
        if self._live:
            self._live.update(self._render())
        return True


# how long a stopped run may take to end by itself before its processes are killed
STOP_GRACE_S = 30.0

_SHIM = """import ctypes, os, signal, sys, time
real, parent, grace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)
for option, value in ((36, 1), (1, signal.SIGTERM)):  # PR_SET_CHILD_SUBREAPER, PDEATHSIG
    if libc.prctl(option, value, 0, 0, 0) != 0:
        sys.exit("airlock: cannot tie ansible-playbook to this run: "
                 + os.strerror(ctypes.get_errno()))
if os.getppid() != parent:
    sys.exit("airlock: the run ended before ansible-playbook started")
me = os.getpid()
stop_at = child = None
def stop(signum, frame):
    global stop_at
    stop_at = stop_at or time.monotonic()
    if child:
        try:
            os.kill(child, signal.SIGINT)
        except ProcessLookupError:
            pass
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, stop)
child = os.fork()
if child == 0:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # even where our caller ignored it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execv(real, [real, *sys.argv[4:]])
if stop_at is not None:  # stopped while it started
    os.kill(child, signal.SIGINT)
def below(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/" + d + "/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out
def kill_tree():
    for _ in range(50):  # bounded: what is left dies, and what it leaves comes back here
        pids = below(me)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
status = None
while status is None:
    try:
        pid, st = os.waitpid(-1, 0 if stop_at is None else os.WNOHANG)
    except ChildProcessError:
        break
    except InterruptedError:
        continue
    if pid == child:
        status = st
    elif pid == 0:
        if time.monotonic() - stop_at > grace:
            kill_tree()
        time.sleep(0.2)
# what ansible-playbook left running here (a task's command under a connection that
# started its own session, as Mitogen's does) goes with it
kill_tree()
if status is not None and os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(me, os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status) if status is not None else 1)
"""


def _dies_with_us(folder: Path, envvars: dict[str, str]) -> None:
    """Make the ansible-playbook ENVVARS' PATH finds one that stops when this process ends.
    ansible-runner starts it with SIGHUP ignored, so when airlock is killed outright
    (SIGKILL, OOM) an orphan would go on changing hosts until its next line of output
    fails, which a silent task (fact gathering, a long command) delays for minutes. A
    wrapper first on PATH runs the real one under a small supervisor with a parent-death
    signal, which then stops it with SIGINT. SIGINT, not SIGTERM: ansible-playbook's
    SIGTERM handler passes the signal to the workers running at that moment and returns,
    so between tasks it reaches none and the run carries on (seen in CI: alive a minute
    later); SIGINT stops the workers and then the run, as Ctrl-C does. The supervisor is
    also the run's subreaper: whatever ansible-playbook leaves running (a command started
    by a Mitogen interpreter, which lives in a session of its own) comes back to it and is
    killed when ansible-playbook ends, and everything is killed STOP_GRACE_S after a stop
    that did not end it. Linux only; elsewhere nothing changes."""
    path = envvars.get("PATH") or os.environ.get("PATH", "")
    real = shutil.which("ansible-playbook", path=path)
    if not real or not sys.platform.startswith("linux"):
        return
    bindir = folder / "bin"
    bindir.mkdir(mode=0o700)
    (bindir / "ends_with_parent.py").write_text(_SHIM)
    wrapper = bindir / "ansible-playbook"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(x) for x in (
        sys.executable, "-I", "-S", str(bindir / "ends_with_parent.py"), real,
        str(os.getpid()), str(STOP_GRACE_S))) + ' "$@"\n')
    wrapper.chmod(0o700)
    envvars["PATH"] = f"{bindir}{os.pathsep}{path}"


def _children(pid: int) -> list[int]:
    """The processes whose parent is PID (Linux's /proc; none elsewhere)."""
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after "(comm)"
            out.append(int(d.name))
    return out


def _descendants(pid: int) -> list[int]:
    """Every process under PID, children first."""
    out, todo = [], _children(pid)
    while todo:
        out += todo
        todo = [g for c in todo for g in _children(c)]
    return out


class _Stopper:
    """ansible-runner's cancel_callback, made gentle. ansible-runner cancels by SIGKILLing
    ansible-playbook's process group, but its workers each run in a session of their own:
    they survive it, and one holding a fact-gathering result it can no longer hand over
    blocks for ever (CI: an orphan worker still there minutes later). So a stop is first
    what Ctrl-C does: SIGINT to the run's supervisor (_dies_with_us), which passes it to
    ansible-playbook; ansible-playbook stops its workers (and their SSH commands) and exits,
    and the supervisor kills everything left STOP_GRACE_S after a stop that did not end it.
    Only if the run is still there GRACE seconds after the stop (the supervisor could not
    end it, or there is none) is every process under it SIGKILLed and ansible-runner left
    to kill the rest."""

    GRACE = STOP_GRACE_S + 15

    def __init__(self, cancel: Callable[[], bool] | None) -> None:
        self.cancel = cancel
        self.requested_at: float | None = None

    def __call__(self) -> bool:
        if self.cancel is None or not self.cancel():
            return False
        playbooks = [c for c in _children(os.getpid()) if _is_playbook(c)]
        if self.requested_at is None:
            self.requested_at = time.monotonic()
            for pid in playbooks:
                _signal(pid, signal.SIGINT)
            return not playbooks  # none found (not Linux): ansible-runner's own way
        if time.monotonic() - self.requested_at < self.GRACE:
            return False
        for pid in playbooks:
            for below in _descendants(pid):
                _signal(below, signal.SIGKILL)
        return True


def _is_playbook(pid: int) -> bool:
    try:
        return b"ansible-playbook" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def strategy_env() -> dict[str, str]:
    """How airlock's own runs execute tasks: Mitogen's linear strategy (the same order and
    semantics as Ansible's linear one, but one Python interpreter per host, started over
    the same SSH connection and kept for the run, instead of a new interpreter and module
    upload per task; the no-op deploy is then CPU-bound on the controller, not on the
    hosts). AIRLOCK_ANSIBLE_STRATEGY=linear runs Ansible's own, as plain ansible-playbook
    does."""
    name = os.environ.get("AIRLOCK_ANSIBLE_STRATEGY", "mitogen_linear")
    if name in ("linear", "free"):
        return {"ANSIBLE_STRATEGY": name}
    if name not in ("mitogen_linear", "mitogen_free"):
        raise DeployError(f"AIRLOCK_ANSIBLE_STRATEGY={name!r} is not a strategy airlock runs",
                          hint="use mitogen_linear (the default), mitogen_free, linear or free")
    try:
        import ansible_mitogen
    except ImportError:
        raise DeployError("Mitogen (the Python package 'mitogen') is not installed beside airlock",
                          hint="install airlock again from its bundle (it carries Mitogen), "
                               "or run with AIRLOCK_ANSIBLE_STRATEGY=linear") from None
    plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": name}


def run_playbook(root: Path, playbook: str, inventory: Path, *, site: Path,
                 log_dir: Path | None = None, extravars: dict[str, Any] | None = None,
                 check: bool = False,
                 limit: str | None = None, tags: str | None = None,
                 env: dict[str, str] | None = None, title: str | None = None,
                 live: bool | None = None, raise_on_failure: bool = True,
                 cancel: Callable[[], bool] | None = None) -> RunResult:
    """Run ``playbooks/PLAYBOOK`` against INVENTORY for the site folder SITE; keep the log
    under LOG_DIR (default SITE/logs). Every SSH connection checks host keys against the
    site's known_hosts, strictly. ``cancel`` is polled while it runs: when it returns
    True, ansible-playbook is stopped and the result's status is ``canceled``."""
    import ansible_runner

    from installer.deploy import hostkeys

    log_dir = log_dir or site / "logs"
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ident = time.strftime("%Y%m%dT%H%M%S") + f"-{Path(playbook).stem}-{os.getpid()}"
    cmdline = []
    if check:
        cmdline += ["--check", "--diff"]
    if tags:
        cmdline += ["--tags", tags]
    if limit:
        cmdline += ["--limit", limit]
    envvars = {k: v for k, v in ansible_env(root).items()
               if k in ("ANSIBLE_CONFIG", "PATH", "HOME", "DOCKER_HOST")}
    envvars.update({"AIRLOCK_SITE_DIR": str(site), "ANSIBLE_HOST_KEY_CHECKING": "True",
                    "ANSIBLE_SSH_ARGS": hostkeys.ssh_args(site),
                    # ansible-runner sets this variable (adding its own), which hides
                    # ansible.cfg's callback_plugins: airlock_warm is named here again
                    "ANSIBLE_CALLBACK_PLUGINS": str(root / "playbooks" / "callback_plugins")})
    envvars.update(strategy_env())
    envvars.update(env or {})
    view = _View(title or playbook, sys.stderr.isatty() if live is None else live)
    start = time.monotonic()
    pdd = tempfile.mkdtemp(prefix="airlock-run-")  # mode 0700: extra vars live here
    stopper = _Stopper(cancel)
    try:
        with view:
            _dies_with_us(Path(pdd), envvars)
            r = ansible_runner.run(
                private_data_dir=pdd, playbook=str(root / "playbooks" / playbook),
                inventory=str(inventory.absolute()), extravars=extravars or {},
                cmdline=" ".join(cmdline) or None, envvars=envvars, quiet=True,
                artifact_dir=str(log_dir), ident=ident, event_handler=view.event,
                project_dir=str(root), cancel_callback=stopper,
                settings={"pexpect_timeout": 1})  # how often cancel is polled
    finally:
        shutil.rmtree(pdd, ignore_errors=True)
    status = "canceled" if stopper.requested_at is not None else r.status
    stats = r.stats or {}
    hosts = set().union(*(stats.get(k, {}) for k in STAT_KEYS)) if stats else set()
    result = RunResult(
        playbook, r.rc, status, time.monotonic() - start, log_dir / ident / "stdout",
        {h: {k: stats.get(k, {}).get(h, 0) for k in STAT_KEYS} for h in sorted(hosts)},
        view.failures, view.changed_tasks, ident)
    if raise_on_failure and not result.ok:
        if result.failures:
            f = result.failures[0]
            what = f"task '{f['task']}' failed on {f['host']}: {f['message'][:600]}"
        else:
            what = f"ansible-playbook ended with {status} (rc {r.rc})"
        raise DeployError(f"{playbook}: {what}",
                          hint=f"full log: {result.log}; fix the cause and run the same "
                               "command again (every role is idempotent, so it resumes)")
    return result
