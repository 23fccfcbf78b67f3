"""One writer per output folder: an exclusive ``fcntl.flock`` on a lock file, dropped by the kernel
when the process ends (even on ``kill -9``), and a second writer refused with one line naming the
holder's pid, host and start time. ``ngl bench`` takes one on its store, ``ngl search`` and
``ngl search validate`` on their folder. The lock is local: it does not protect a folder on a
network file system written from two machines."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from .errors import InputError, UserError

__all__ = ["FolderLock", "LockedError", "LockWriteError"]


class LockedError(InputError):
    """Another process holds the lock."""


class LockWriteError(UserError, OSError):
    """The lock file cannot be created (read-only folder, full disk)."""


class FolderLock:
    """Hold ``path`` exclusively until :meth:`release` (or the end of the process).

    ``owner`` names what holds it (``ngl search``), ``refusal`` what the second writer is told
    after the holder is named (``one search per --out at a time: ...``).
    """

    def __init__(self, path: str | os.PathLike[str], *, owner: str, refusal: str, what: str) -> None:
        import fcntl

        self.path, self.fd = Path(path), None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LockWriteError(f"cannot write in {self.path.parent}: {exc.strerror or exc}; "
                                 f"choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockedError(f"{what} is being written by {holder}; {refusal}") from None
        self.fd = fd
        try:                              # who holds it, for the second writer's message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{owner} pid {os.getpid()} on {socket.gethostname()} since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        except OSError:                   # a full disk: the lock holds all the same
            pass

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)             # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
