"""Running the CLI on hostile input under a memory limit, and measuring what it took.

``run_bounded`` starts ``airlock`` in a subprocess with RLIMIT_AS set, so a reader that
trusts a size it was told fails the test (MemoryError, exit 1) instead of swapping the
machine. It reports the child's own peak resident memory (its VmHWM at exit, not the test
session's) and its wall time; tests assert the exit code, the message and both bounds.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

AIRLOCK = [sys.executable, "-m", "installer.cli"]
ROOT = Path(__file__).resolve().parent.parent  # this checkout's installer, wherever cwd is
MiB = 1 << 20

# The child reports its own peak at exit: VmHWM, which exec resets. wait4's ru_maxrss is
# no good here: a forked child's exec carries over the high-water mark of the process it
# was forked from, so it would report pytest's own resident size (hundreds of MiB) or more.
_CHILD = """\
import atexit, os, runpy, sys
def _hwm(path=os.environ.pop("AIRLOCK_TEST_HWM")):
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(path, "w") as f:
        f.write(kib)
atexit.register(_hwm)
sys.argv[0] = "airlock"
runpy.run_module("installer.cli", run_name="__main__", alter_sys=True)
"""


@dataclass
class Bounded:
    rc: int
    stdout: str
    stderr: str
    peak_mib: float
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_bounded(args: list[str], *, mem_mib: int = 1024, timeout: float = 120,
                cwd: Path | None = None, env: dict[str, str] | None = None,
                signal_after: float | None = None, signum: int = signal.SIGTERM
                ) -> Bounded:
    """Run ``airlock ARGS`` with at most MEM_MIB of address space. With SIGNAL_AFTER, send
    SIGNUM that many seconds after the start and measure how long it takes to stop."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_mib * MiB, mem_mib * MiB))
        # Ctrl-C as at a terminal, even where this test run was started with SIGINT
        # ignored (a background job of a non-interactive shell)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    hwm = tempfile.NamedTemporaryFile(prefix="airlock-hwm-")  # noqa: SIM115
    full_env = {**os.environ, "MALLOC_ARENA_MAX": "2", "COLUMNS": "200",
                "PYTHONPATH": str(ROOT), "AIRLOCK_TEST_HWM": hwm.name, **(env or {})}
    with hwm, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        p = subprocess.Popen([sys.executable, "-c", _CHILD, *args], cwd=cwd, env=full_env,
                             preexec_fn=limit, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=err)
        signalled = None
        while True:  # bounded by TIMEOUT
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic()
            if signal_after is not None and signalled is None and now - start >= signal_after:
                os.kill(p.pid, signum)
                signalled = now
            if now - start > timeout:
                os.kill(p.pid, signal.SIGKILL)
                os.wait4(p.pid, 0)
                err.seek(0)
                raise AssertionError(f"airlock {' '.join(args)} ran past {timeout} s: "
                                     f"{err.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.02)
        p.returncode = os.waitstatus_to_exitcode(status)
        end = time.monotonic()
        out.seek(0)
        err.seek(0)
        reported = Path(hwm.name).read_text().strip()  # empty if it died by a signal
        peak_kib = int(reported) if reported.isdigit() else usage.ru_maxrss
        return Bounded(p.returncode, out.read().decode(errors="replace"),
                       err.read().decode(errors="replace"), peak_kib / 1024,
                       end - (signalled if signalled is not None else start))
