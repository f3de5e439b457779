"""The program's entry point (``python main.py``, the ``lifestats`` command): Ctrl-C is heard from the
first moment, before the job's modules are imported (about half a second). It is recorded, and answered
once :func:`lifestats.cli.main` runs, as any interrupt before the first request is: a partial report of
what the checkpoint holds, exit code 130. A second one while the modules load quits at once."""

from __future__ import annotations

import errno
import os
import signal
import sys
from types import FrameType

from ._signals import SIGNALS

_caught: list[int] = []  # the signals received while the modules load


def _while_starting(signum: int, frame: FrameType | None) -> None:
    # Record rather than raise: an exception raised here lands inside whatever is being imported, and a
    # compiled extension halfway through its own initialisation aborts on it (SIGABRT, not 130).
    _caught.append(signum)
    if len(_caught) > 1:  # asked twice: leave now (nothing exists yet that needs cleaning up)
        sys.stderr.write("interrupted while starting: nothing was crawled\n")
        sys.stderr.flush()
        os._exit(130)


def main() -> int:
    for number in SIGNALS:
        signal.signal(number, _while_starting)
    from .cli import main as run

    try:
        return run(pending=_caught)
    except Exception as exc:  # SPEC: any other failure exits 1 with one line, not a traceback
        sys.stderr.write(f"lifestats: {_unexpected(exc)}\n")
        return 1


# Resources a machine can run out of under the job, and the limit to raise.
_RESOURCES = {
    errno.EMFILE: "the process ran out of file descriptors: raise the limit (ulimit -n, now {files})",
    errno.ENFILE: "the system ran out of open files",
    errno.ENOSPC: "the disk is full",
    errno.ENOMEM: "the machine ran out of memory",
}


def _unexpected(exc: Exception) -> str:
    """One line for a failure the program does not expect: the machine's resources where they are the
    cause, else the exception and where it was raised (for a bug report)."""
    import resource
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    what = f"{type(exc).__name__}: {exc}{where}"
    cause = _RESOURCES.get(exc.errno) if isinstance(exc, OSError) and exc.errno is not None else None
    if isinstance(exc, MemoryError):
        cause = _RESOURCES[errno.ENOMEM]
    elif isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        cause = "the process could not start a thread: raise the process limit (ulimit -u, now {processes})"
    if cause is None:
        return f"unexpected {what} (a bug in Lifestats); what was checkpointed stays resumable"
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    processes = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    limits = {"files": files, "processes": processes}
    shown = {k: "unlimited" if v == resource.RLIM_INFINITY else v for k, v in limits.items()}
    then = "what was checkpointed stays resumable: run the same command once it is fixed"
    return f"{cause.format(**shown)} ({what}); {then}"
