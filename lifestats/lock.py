"""One run per state dir: an OS-level lock held for the whole life of the run.

Two runs on one ``--state-dir`` (a cron job that overlaps itself) would both resume the same slices and
both report a share of the records as the whole. The lock is ``flock`` on a file in the state dir: the
kernel releases it when the process ends, however it ends (SIGKILL included), so a dead run never
blocks the next one, and nothing has to guess whether a pid in a file is still alive. The holder's
pid is written into the file only so that the refusal can name it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError, StateDirError

LOCK_FILE = "lock"


class StateDirBusy(ConfigError):
    """Another run holds the state dir (exit 2)."""


def _unusable(state_dir: Path, exc: OSError) -> StateDirError:
    reason = exc.strerror or type(exc).__name__
    return StateDirError(
        f"cannot use the state dir {state_dir} ({reason}); point --state-dir at a writable directory",
        exit_code=2,
    )


class StateLock:
    """The exclusive lock of one state dir; :meth:`acquire` refuses at once when another run holds it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # Close-on-exec: the embedded API and the worker fork server are started with exec, so none of
            # them keeps the lock alive after this process ends.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _unusable(self.state_dir, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f"pid {holder}" if holder else "a process whose pid is not known yet"
                raise StateDirBusy(
                    f"another run ({who}) is using the state dir {self.state_dir.absolute()}: a state dir belongs to "
                    "one run at a time; wait for it to finish or point --state-dir elsewhere"
                ) from None
            raise _unusable(self.state_dir, exc) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise _unusable(self.state_dir, exc) from None
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the kernel does it too when the process ends)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor of the open file releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[StateLock]:
    """Hold the state dir's lock for the body of the ``with``."""
    lock = StateLock(state_dir)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
