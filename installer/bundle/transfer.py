"""Transfers that stop: a total deadline per download beside the idle timeout, and one
cancel for every download at once (Ctrl-C, SIGTERM, or the first failure among jobs run
side by side).

A flag alone does not stop a worker blocked in a socket read (a slow-drip server sends one
byte just before the idle timeout, for ever). So every connection a transfer opens or
reuses is attached to it (``installer.bundle.sources.http`` does that from inside urllib3),
and the socket is shut down from outside: by the watchdog (one daemon thread) when the
transfer passes its deadline, by ``cancel()`` for all of them. The blocked read then ends
at once and the worker sees why (``Transfer.check``).

``parallel`` runs jobs on daemon threads and, when anything goes wrong (a job's error, or
KeyboardInterrupt in the main thread), cancels the rest and returns within a moment instead
of waiting for downloads in flight; the blob store refuses writes once closed, so a worker
that has not noticed yet leaves nothing behind in a staging folder being removed.

One build runs at a time in a process (the CLI); ``reset()`` starts a new one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from installer.errors import SourceError

T = TypeVar("T")
R = TypeVar("R")

WATCH_EVERY = 0.1  # seconds between the watchdog's looks at the deadlines
JOIN_AFTER_CANCEL = 0.5  # at most this long for cancelled workers to let go of their files

_lock = threading.RLock()  # re-entrant: a KeyboardInterrupt may come while the main thread holds it
_cancelled = threading.Event()
_live: set[Transfer] = set()
_local = threading.local()
_watcher: threading.Thread | None = None


class Cancelled(Exception):
    """The build is being stopped; a job ends without a result (never shown to a person:
    the main thread has the KeyboardInterrupt or the first error already)."""


class Transfer:
    """One download: what it is (for messages), its deadline, the connections it uses."""

    def __init__(self, what: str, seconds: float):
        self.what = what
        self.seconds = seconds
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.expired = False
        self.received = 0  # body bytes so far, for the messages
        self.socks: list[socket.socket] = []  # the sockets it has used

    def shorten(self, seconds: float) -> None:
        """Bring the deadline nearer (never later): SECONDS from the start."""
        with _lock:
            if seconds < self.seconds:
                self.seconds = seconds
                self.deadline = self.started + seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def attach(self, sock: socket.socket) -> None:
        """SOCK carries this transfer from now on; refused at once when it is already over."""
        with _lock:
            if not any(s is sock for s in self.socks):
                self.socks.append(sock)
        self.check()

    def check(self) -> None:
        """Raise ``Cancelled`` when the build is being stopped, or a ``SourceError`` naming
        the deadline once it has passed."""
        if _cancelled.is_set():
            raise Cancelled
        if self.expired or time.monotonic() >= self.deadline:
            self.expired = True
            came = f" after {self.received} bytes" if self.received else ""
            raise SourceError(f"{self.what}: did not finish within {self.seconds:.0f} s; "
                              f"stopped{came}",
                              hint="a server this slow is failing or holding the build; "
                                   "--deadline sets the bound (default: 5 min plus 1 s per "
                                   "MiB expected)")

    def _stop(self) -> None:  # under _lock
        for sock in self.socks:
            shut(sock)


def shut(sock: socket.socket) -> None:
    """End every read and write on SOCK now, from any thread (close() would not wake a
    thread blocked in recv on it)."""
    with contextlib.suppress(OSError, ValueError):  # closed, or detached while TLS starts
        sock.shutdown(socket.SHUT_RDWR)


def current() -> Transfer | None:
    """The transfer this thread is running, if any."""
    return getattr(_local, "current", None)


def cancelled() -> bool:
    return _cancelled.is_set()


def check_cancelled() -> None:
    if _cancelled.is_set():
        raise Cancelled


def wait(seconds: float) -> None:
    """Sleep SECONDS, cut short by cancel (then ``Cancelled``)."""
    if _cancelled.wait(max(0.0, seconds)):
        raise Cancelled


@contextmanager
def transfer(what: str, seconds: float) -> Iterator[Transfer]:
    """Run a download in this thread under a deadline of SECONDS from now."""
    global _watcher
    t = Transfer(what, seconds)
    previous = current()
    with _lock:
        _live.add(t)
        if _watcher is None:
            _watcher = threading.Thread(target=_watch, name="airlock-deadlines", daemon=True)
            _watcher.start()
    _local.current = t
    try:
        t.check()
        yield t
    finally:
        _local.current = previous
        with _lock:
            _live.discard(t)


def _watch() -> None:
    global _watcher
    while True:
        with _lock:
            if not _live:
                _watcher = None
                return
            now = time.monotonic()
            for t in _live:
                if not t.expired and now >= t.deadline:
                    t.expired = True
                    t._stop()
        time.sleep(WATCH_EVERY)


def cancel() -> None:
    """Stop every transfer now: later checks raise ``Cancelled``, and every socket a live
    transfer uses is shut down, so blocked reads end."""
    with _lock:
        _cancelled.set()
        for t in _live:
            t._stop()


def reset() -> None:
    """A new build starts: nothing is cancelled."""
    _cancelled.clear()


def parallel(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]`` on up to WORKERS daemon threads, results in order. The
    first error (or a KeyboardInterrupt here) cancels every other job and is raised within
    about JOIN_AFTER_CANCEL seconds, not when the downloads in flight would have ended."""
    todo = list(items)
    if not todo:
        return []
    results: list[Any] = [None] * len(todo)
    errors: list[BaseException] = []
    state = {"next": 0, "running": 0}
    guard = threading.Lock()
    finished = threading.Event()

    def work() -> None:
        try:
            while True:
                with guard:
                    k = state["next"]
                    if errors or k >= len(todo) or _cancelled.is_set():
                        return
                    state["next"] = k + 1
                try:
                    results[k] = fn(todo[k])
                except BaseException as e:  # handed to the main thread
                    with guard:
                        if not isinstance(e, Cancelled) or not errors:
                            errors.append(e)
                    finished.set()
                    return
        finally:
            with guard:
                state["running"] -= 1
                if state["running"] == 0:
                    finished.set()

    threads = [threading.Thread(target=work, name=f"airlock-job-{i}", daemon=True)
               for i in range(max(1, min(workers, len(todo))))]
    state["running"] = len(threads)
    for th in threads:
        th.start()
    try:
        finished.wait()  # interruptible: Ctrl-C and SIGTERM land here
        with guard:
            first = next((e for e in errors if not isinstance(e, Cancelled)),
                         errors[0] if errors else None)
        if first is not None:
            raise first
        if _cancelled.is_set():
            raise Cancelled
    except BaseException:
        cancel()
        until = time.monotonic() + JOIN_AFTER_CANCEL
        for th in threads:
            th.join(max(0.0, until - time.monotonic()))
        raise
    return results
