"""Writing outputs safely: build in a private folder beside the target, rename at the end.

Nothing half-written is ever left at the target path: on any failure (an exception, Ctrl-C,
SIGTERM) the private folder is removed; a folder left by a killed process is removed by
the next run for the same target.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from installer.errors import StorageError

TMP_MARK = ".airlock-tmp-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: Path) -> None:
    for p in target.parent.glob(f".{target.name}{TMP_MARK}*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def disk_full(e: OSError, where: Path) -> StorageError:
    free = shutil.disk_usage(where if where.exists() else where.parent).free
    return StorageError(f"no space left on the device holding {where} ({free} bytes free)",
                        hint="free space or choose another output folder; nothing was kept")


@contextmanager
def staged_dir(target: Path, *, force: bool = False, keep_on_error: bool = False
               ) -> Iterator[Path]:
    """Yield a private folder beside ``target``; on success it becomes ``target``."""
    target = target.absolute()
    if target.exists() and not force:
        raise StorageError(f"{target} already exists", hint="choose another path, or --force "
                           "to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
        tmp = target.parent / f".{target.name}{TMP_MARK}{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as e:
        raise StorageError(f"cannot create the output beside {target}: {e.strerror}") from None
    try:
        yield tmp
        if target.exists():
            old = target.parent / f".{target.name}.airlock-old-{os.getpid()}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old)
        else:
            os.rename(tmp, target)
    except OSError as e:
        if not keep_on_error:
            shutil.rmtree(tmp, ignore_errors=True)
        if e.errno == errno.ENOSPC:
            raise disk_full(e, target) from None
        raise
    except BaseException:
        if not keep_on_error:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
