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
from typing import Final

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


# The address space a process of the job reserves (measured: the coordinator of the default run with 4 and
# with 8 workers, exact and approx, peaks at 1.4-1.5 GiB of it; most is reserved, not used: the thread
# stacks, the allocator's arenas of each thread, the libraries' mappings). Below this, the libraries fail
# while they load (a segmentation fault in DuckDB, an ImportError from Arrow) or a thread cannot start.
MIN_ADDRESS_SPACE: Final = 2 * 1024**3


def address_space_problem() -> str | None:
    """Why this process's address-space limit (``ulimit -v``, or ``ulimit -d``) is too small for the job."""
    import resource

    for name, flag, limit in (
        ("address-space", "-v", resource.RLIMIT_AS),
        ("data-segment", "-d", resource.RLIMIT_DATA),
    ):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY and soft < MIN_ADDRESS_SPACE:
            return (
                f"the {name} limit is {soft // 1024**2:,} MiB per process (ulimit {flag} {soft // 1024}), and "
                f"Lifestats needs {MIN_ADDRESS_SPACE // 1024**3} GiB of it (mostly reserved by its libraries and "
                f"threads, not used): raise it (ulimit {flag} {MIN_ADDRESS_SPACE // 1024} or unlimited); nothing "
                "was crawled"
            )
    return None


def main() -> int:
    for number in SIGNALS:
        signal.signal(number, _while_starting)
    # Checked before the libraries load: a compiled one that cannot map its memory crashes the interpreter.
    problem = address_space_problem()
    if problem is not None:
        sys.stderr.write(f"lifestats: {problem}\n")
        return 2
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
        if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
            cause += " allowed to the process (ulimit -v, now {address_space})"
    elif isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        cause = "the process could not start a thread: raise the process limit (ulimit -u, now {processes})"
        if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
            cause += " or the address-space limit (ulimit -v, now {address_space})"
    elif isinstance(exc, ImportError) and "failed to map segment" in str(exc):
        cause = (
            "a library could not be loaded into memory: raise the address-space limit (ulimit -v, now {address_space})"
        )
    if cause is None:
        return f"unexpected {what} (a bug in Lifestats); what was checkpointed stays resumable"
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    processes = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    address_space = resource.getrlimit(resource.RLIMIT_AS)[0]  # bytes; ulimit -v counts KiB
    limits = {"files": files, "processes": processes, "address_space": address_space}
    shown = {k: "unlimited" if v == resource.RLIM_INFINITY else v for k, v in limits.items()}
    if address_space != resource.RLIM_INFINITY:
        shown["address_space"] = address_space // 1024
    then = "what was checkpointed stays resumable: run the same command once it is fixed"
    return f"{cause.format(**shown)} ({what}); {then}"
