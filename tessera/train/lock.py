"""One run per run directory: an advisory lock on ``RUN/.lock``, held for as long as the run lives;
:func:`claim_run_dir` also clears what killed runs left behind.

The lock is ``fcntl.flock`` on an open file, so the kernel drops it when the process ends in any way,
``kill -9`` included: a killed run never leaves its directory stuck. The file records who holds it
(pid, host, command) so that a refused second run can say whom it is waiting for.

Within one process the lock is re-entrant (``train_main`` holds it and the :class:`Trainer` it builds
takes it again); another process, or another machine on a file system with working ``flock``, is
refused with a :class:`~tessera.errors.CheckpointError`. Under ``torchrun`` only rank 0 takes it.
Where ``fcntl`` does not exist (Windows) the file holds the owner's pid and a later run takes over
when that process is gone.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> with RunLock(d):
...     with RunLock(d):            # the same process may enter again
...         pass
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import weakref
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "LOCK_NAME", "claim_run_dir", "remove_stale_temps"]

LOCK_NAME = ".lock"
_HELD: dict[tuple[int, int], list[Any]] = {}   # (device, inode) of a lock file -> [fd, depth] in this process


def _owner_text() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:500]})


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command', '?')})"
    except (OSError, ValueError):
        return "another process"


def _pid_alive(pid: int) -> bool:  # pragma: no cover - the no-fcntl fallback
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class RunLock:
    """``with RunLock(run_dir):`` -- own ``run_dir`` (created if needed) or raise CheckpointError.

    ``acquire()`` / ``release()`` may also be called directly; both nest.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir)
        self.path = self.dir / LOCK_NAME
        self._key: tuple[int, int] | None = None

    def acquire(self) -> "RunLock":
        if self._key is not None:
            return self
        if self.dir.exists() and not self.dir.is_dir():
            raise CheckpointError(f"run directory {self.dir} is a file; pass a folder to --out")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CheckpointError(f"cannot use run directory {self.dir} ({e.strerror}); choose a --out folder you "
                                  "can write to") from None
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)    # the file itself: a folder deleted and made again is a new lock
        if key in _HELD:
            os.close(fd)                # another descriptor's close does not drop this process's flock
            _HELD[key][1] += 1
            self._key = key
            return self
        if not self._lock_fd(fd):
            os.close(fd)
            raise CheckpointError(f"run directory {self.dir} is in use by {_describe(self.path)}; wait for that "
                                  "run to finish (or stop it), or choose another --out")
        os.ftruncate(fd, 0)
        os.pwrite(fd, _owner_text().encode(), 0)
        _HELD[key] = [fd, 1]
        self._key = key
        return self

    def _lock_fd(self, fd: int) -> bool:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
        try:  # pragma: no cover - no fcntl: trust the recorded pid while that process lives
            pid = json.loads(os.read(fd, 4096).decode() or "{}").get("pid")
        except ValueError:  # pragma: no cover
            pid = None
        return pid is None or pid == os.getpid() or not _pid_alive(int(pid))  # pragma: no cover

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None or key not in _HELD:
            return
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            fd = _HELD.pop(key)[0]
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)   # closing the descriptor drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# temporary names a killed writer can leave: ".ckpt.tmp-*" folders (checkpoint being written or
# discarded), ".ckpt.1a2b3c4d" (older tessera), ".final.json.1a2b3c4d.tmp" files (tessera.io)
_STALE = re.compile(r"\.[^/]*\.tmp-\w+|\.ckpt\.\w{8}|\.[^/]+\.\w{8}\.tmp")


def remove_stale_temps(run_dir: str | os.PathLike) -> list[str]:
    """Delete temporary files and folders that killed writers left in ``run_dir``; returns their names.

    Only call it while holding the directory's :class:`RunLock` (a live writer's temp looks the same).
    """
    removed = []
    d = Path(run_dir)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if p.name != ".ckpt.old" and _STALE.fullmatch(p.name):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def claim_run_dir(run_dir: str | os.PathLike, owner: object | None = None) -> RunLock:
    """Lock ``run_dir`` for this process, refuse symlinked checkpoint folders, remove stale temporaries.

    With ``owner`` the lock is released when ``owner`` is garbage-collected (or the process ends);
    otherwise call ``release()``.
    """
    lock = RunLock(run_dir).acquire()
    try:
        for name in ("ckpt", "ckpt.prev"):
            p = lock.dir / name
            if p.is_symlink():
                raise CheckpointError(f"{p} is a symbolic link; checkpoints are replaced by renaming folders, "
                                      "which a link would not survive; link the whole run directory instead")
        remove_stale_temps(lock.dir)
    except BaseException:
        lock.release()
        raise
    if owner is not None:
        weakref.finalize(owner, lock.release)
    return lock
