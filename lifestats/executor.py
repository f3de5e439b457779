"""Executors run slice tasks somewhere and report back what happened to them.

The coordinator only submits :class:`~lifestats.protocol.Task` values and reads :class:`Event` values, so
a cluster executor can stand in for :class:`LocalExecutor` (a pool of worker processes on this
machine) without the coordinator knowing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import multiprocessing as mp
import os
import queue
import resource
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Final, Protocol

from .config import Settings
from .count import BATCH_ROWS, PageCounter
from .errors import ApiError, LifestatsError
from .fetch import ApiClient
from .limiter import RateLimiter
from .protocol import STOP, Event, Failed, Finished, Flush, Flushed, Lost, Progress, Split, StopRequested, Task
from .task import crawl_slice
from .usage import CpuMeter, peak_rss_bytes, process_cpu_seconds

# forkserver: a clean single-threaded parent (unlike fork from a coordinator with threads) that starts
# workers in milliseconds (unlike spawn, which re-imports everything in each).
WORKER_CONTEXT = "forkserver"
# A worker tells the coordinator at most this often that its requests are moving (see Progress).
HEARTBEAT_SECONDS = 1.0
# A worker with a task that sent nothing for this many heartbeats is stuck, not waiting (see stall_reason).
SILENT_HEARTBEATS = 3
# Workers that die before they complete anything, in a row, before the executor gives up on them.
MAX_STARTUP_DEATHS = 3
# How often a wind-down that waits on its workers asks whether to stop waiting (a second Ctrl-C).
WIND_DOWN_POLL: Final = 0.05


@dataclass(frozen=True)
class _StartupError:
    """A worker could not start (sent once, just before it exits)."""

    message: str


class Executor(Protocol):
    def submit(self, task: Task) -> None: ...
    def events(self, timeout: float) -> list[Event]: ...
    def busy(self) -> bool: ...
    def idle(self) -> int:
        """Workers with nothing to do and no task waiting for them."""
        ...

    def running(self) -> list[Task]: ...
    def propose_split(self, task: Task, until: int) -> None:
        """Ask the worker running ``task`` to hand over half of what it has left up to id ``until`` (the
        slice's end or the estimated end of the id range); it answers with a Split event."""
        ...

    def close(self) -> None: ...
    def terminate(self) -> None: ...
    def wind_down(self, timeout: float, cut: Callable[[], bool] | None = None) -> list[Event]:
        """Ask every worker with a task to flush what it counted and stop (between two pages); the events
        they send until each has ended its task, ``timeout`` seconds have passed or ``cut`` says to stop
        waiting (a second Ctrl-C). No task starts after."""
        ...

    def helper_cpu_seconds(self) -> float:
        """CPU seconds spent for this run by processes that serve the workers without being one (the
        server that forks them), which the workers' own reports do not include."""
        ...


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs to build its client and counter, sent once when it starts."""

    settings: Settings
    as_of: datetime
    limiter: RateLimiter
    token: str | None

    def client(self) -> ApiClient:
        """A worker's API client: the run's API and limiter, pages decoded into the fields the job reads."""
        settings = self.settings
        return ApiClient(
            settings.api,
            settings.crawl,
            self.limiter,
            token=self.token,
            id_field=settings.fields.id,
            record_keys=settings.fields.record_keys(),
        )

    def counter(self) -> PageCounter:
        """A worker's counter: pages' rows added to the statistics in batches (the crawl settles them
        before each flush)."""
        return PageCounter(self.settings, self.as_of, batch_rows=BATCH_ROWS)


class _Outbox:
    """Sends a worker's messages from a thread of their own, in order, so that crawling goes on while
    the coordinator is busy (a commit, a merge) instead of waiting for it to read the pipe."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.broken = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._send_all, name="outbox", daemon=True)
        self._thread.start()

    def _send_all(self) -> None:
        while (message := self._queue.get()) is not _CLOSE:
            try:
                self.conn.send(message)
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.broken = True
                return

    def send(self, message: Any) -> None:
        if self.broken:
            raise BrokenPipeError("the coordinator is gone")
        self._queue.put(message)

    def close(self) -> None:
        self._queue.put(_CLOSE)
        self._thread.join()


_CLOSE = object()


class _Alive:
    """A worker's heartbeat when its requests did not move: it still runs Python (its executor notes when
    it last heard from it; nothing reaches the coordinator's loop)."""


_ALIVE: Final = _Alive()


def _heartbeat(client: ApiClient, outbox: _Outbox, stop: threading.Event) -> None:
    """Send :class:`Progress` whenever a request was sent or ended since the last look, so that the
    coordinator can tell a slow job from one that waits for an answer that never comes; else
    :class:`_Alive`, so that its executor can tell a worker that waits (its heartbeat goes on) from one
    stuck in code that never lets this thread run (a regular expression that backtracks for minutes holds
    the interpreter's lock: see :meth:`LocalExecutor.stall_reason`)."""
    last = -1
    while not stop.wait(HEARTBEAT_SECONDS):
        moved = client.counts.requests + client.counts.retries
        try:
            if moved != last:
                last = moved
                outbox.send(Progress())
            else:
                outbox.send(_ALIVE)
        except BrokenPipeError:
            return


def _process_state(pid: int) -> str | None:
    """A process's state letter from ``/proc`` ("T": stopped; None where the platform does not tell)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :][:1] or None


def _one_line(exc: BaseException) -> str:
    """``TypeError: message (file.py:12)``: enough to report a crash once, without a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _forkserver_cpu() -> float:
    """CPU seconds the forkserver of this process has spent itself (0 before it runs, or where the
    platform does not tell)."""
    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if not isinstance(pid, int):
        return 0.0
    return process_cpu_seconds(pid) or 0.0


def _start_forkserver() -> None:
    """Start the forkserver, unless it runs, with SIGINT ignored: the server keeps an ignored signal
    through its exec (not a blocked one, nor a handler), so a Ctrl-C while it imports the workers' code
    (about half a second) is the coordinator's alone, instead of a traceback from the server, which
    ignores SIGINT itself only once those imports are done. The coordinator ignores it only for the few
    milliseconds of the spawn."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        forkserver.ensure_running()
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, handler)


def worker_main(conn: Connection, setup: WorkerSetup) -> None:
    """A worker process: take tasks from ``conn`` until told to stop or the coordinator goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # and so is a terminal that closes
    settings = setup.settings
    parent = os.getppid()
    meter = CpuMeter()
    outbox = _Outbox(conn)
    try:
        counter = setup.counter()
        client = setup.client()
    except Exception as exc:  # reported once by the coordinator, instead of a traceback per respawn
        with contextlib.suppress(BrokenPipeError):
            outbox.send(_StartupError(_one_line(exc)))
        outbox.close()
        raise SystemExit(1) from None

    def proposals() -> int | None:
        """The latest split proposal that arrived while crawling, if any. Called between pages."""
        if os.getppid() != parent or outbox.broken:  # the coordinator is gone: stop now
            raise SystemExit(0)
        until, stop = None, False
        while conn.poll():
            message = conn.recv()
            if isinstance(message, tuple) and message[0] == "split":
                until = message[1]
            stop = stop or message == STOP
        if stop:
            raise StopRequested
        return until

    # Everything made so far (modules, the client, the counter) lives as long as the worker: kept out of
    # the cyclic collector's full passes, which otherwise rescan it. Each such pass cost a worker 75-100 ms
    # about 3 s into a crawl, and the workers' passes came together (they count at the same pace): the rate
    # limit went unused for a tenth of a second (``bench/cpu.py``, utilization).
    gc.freeze()
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(client, outbox, stop), name="heartbeat", daemon=True).start()
    try:
        with client:
            while (task := conn.recv()) is not None:
                if isinstance(task, Task):  # a split proposal that came after the slice ended is dropped
                    outbox.send(_run(task, client, counter, settings.crawl.flush_every, outbox.send, proposals, meter))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the coordinator is gone: stop rather than crawl for nobody
    stop.set()
    outbox.close()


def _run(
    task: Task,
    client: ApiClient,
    counter: PageCounter,
    flush_every: int,
    send: Callable[[Any], None],
    proposals: Callable[[], int | None],
    meter: CpuMeter | None = None,
) -> Event:
    """Run one task; every flush and the task's end carry the worker's CPU and peak memory since the last."""
    meter = meter or CpuMeter()

    def usage() -> dict[str, Any]:
        return {"cpu_seconds": meter.take(), "peak_rss_bytes": peak_rss_bytes()}

    def emit(message: Flush | Split) -> None:
        if isinstance(message, Flush):
            send(Flushed(dataclasses.replace(message, **usage())))
        else:
            send(message)

    index, attempt = task.slice.index, task.attempt
    try:
        crawl_slice(task, client, counter, flush_every, emit, proposals)
    except ApiError as exc:
        return Failed(index, attempt, str(exc), exc.exit_code, exc.resumable, exc.status, fresh=exc.fresh, **usage())
    except LifestatsError as exc:  # a configuration mistake found mid-crawl: running again does not mend it
        return Failed(index, attempt, str(exc), exc.exit_code, exc.exit_code != 2, **usage())
    except StopRequested:  # asked to stop (Ctrl-C): what it counted was flushed
        return Finished(index, attempt, **usage())
    except (EOFError, BrokenPipeError, ConnectionResetError):
        raise
    except Exception as exc:
        return Failed(index, attempt, f"unexpected {_one_line(exc)}", 1, **usage())
    return Finished(index, attempt, **usage())


# File descriptors a worker's start needs free: its pipe to the coordinator, the connection to the forkserver
# and the pipes of the request. Measured at the edge: the default run allowed 28 open files failed inside
# the forkserver while starting its fourth worker, allowed 29 it finished; 6 refuses the first and lets the
# second run.
SPAWN_DESCRIPTORS: Final = 6


def _free_descriptors() -> int:
    """How many more files this process may open (a large number where /proc does not tell)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        used = len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor
    except OSError:
        return SPAWN_DESCRIPTORS
    return SPAWN_DESCRIPTORS if soft == resource.RLIM_INFINITY else soft - used


class _Worker:
    def __init__(self, ctx: Any, setup: WorkerSetup, number: int) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=worker_main, args=(child, setup), name=f"lifestats-worker-{number}", daemon=True
        )
        self.process.start()
        child.close()
        self.task: Task | None = None
        self.worked = False  # it sent something other than a start-up error
        self.startup_error: str | None = None
        self.heard = time.monotonic()  # when it last sent anything (its heartbeat included)


class LocalExecutor:
    """``workers`` processes on this machine; a dead worker is replaced and its task reported lost.

    Workers that die before they achieve anything (a crash at start-up) are replaced only
    :data:`MAX_STARTUP_DEATHS` times in a row; then one :class:`Failed` event with the last worker's
    error ends the job, instead of an endless respawn loop.
    """

    def __init__(self, workers: int, setup: WorkerSetup, context: str = WORKER_CONTEXT) -> None:
        self._ctx = mp.get_context(context)
        if context == "forkserver":
            # Workers fork from a server that imported their code once, instead of importing it each; exact
            # facts' pyarrow too when the run needs it, warmed up (lifestats._preload).
            exact = setup.settings.stats.mode != "approx"
            self._ctx.set_forkserver_preload(["lifestats.executor", *(["lifestats._preload"] if exact else [])])
        self._setup = setup
        # The forkserver's CPU so far: the server this run starts (or reuses) is counted from here on,
        # its imports and warm-up included (see helper_cpu_seconds).
        self._server_cpu0 = _forkserver_cpu() if context == "forkserver" else None
        if context == "forkserver":
            _start_forkserver()
        self._started = 0
        self._startup_deaths = 0
        self._gave_up = False
        self._workers = [self._spawn() for _ in range(workers)]
        self._pending: deque[Task] = deque()

    def helper_cpu_seconds(self) -> float:
        if self._server_cpu0 is None:
            return 0.0
        return max(0.0, _forkserver_cpu() - self._server_cpu0)

    def _spawn(self) -> _Worker:
        self._started += 1
        try:
            if _free_descriptors() < SPAWN_DESCRIPTORS:
                # Checked before the forkserver is asked: a start that runs out of them halfway leaves the
                # server a request cut short, which it dies of with a traceback of its own.
                raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
            return _Worker(self._ctx, self._setup, self._started)
        except OSError as exc:  # the forkserver is gone, or this machine cannot start another process
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                raise LifestatsError(
                    f"could not start a worker process ({_one_line(exc)}): the job ran out of file descriptors "
                    f"(each worker takes a few); raise the limit (ulimit -n, now {files}) or run fewer "
                    "crawl.workers"
                ) from None
            raise LifestatsError(
                f"could not start a worker process ({_one_line(exc)}): the process that starts them "
                f"({self._ctx.get_start_method()}, run by {sys.executable}) did not answer; check that this "
                "user can run that interpreter and start processes"
            ) from None

    def submit(self, task: Task) -> None:
        self._pending.append(task)
        self._dispatch()

    def busy(self) -> bool:
        return bool(self._pending) or any(w.task is not None for w in self._workers)

    def idle(self) -> int:
        return max(0, sum(1 for w in self._workers if w.task is None) - len(self._pending))

    def pids(self, *, busy_only: bool = False) -> list[int]:
        """The worker processes' ids, or only those holding a task (for operators and tests that signal one)."""
        return [
            w.process.pid for w in self._workers if w.process.pid is not None and (w.task is not None or not busy_only)
        ]

    def running(self) -> list[Task]:
        return [w.task for w in self._workers if w.task is not None]

    def propose_split(self, task: Task, until: int) -> None:
        for worker in self._workers:
            if worker.task == task:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    worker.conn.send(("split", until))

    def stall_reason(self) -> str | None:
        """Why no request moved, when the workers say it (asked once the job has been quiet for its stall
        timeout): a worker holding a task that has sent nothing, not even its heartbeat, for longer than a
        few heartbeats is stuck in code that never pauses, not waiting on the API. None: they all wait."""
        now = time.monotonic()
        silent = [
            (now - worker.heard, worker.task.slice.index)
            for worker in self._workers
            if worker.task is not None and now - worker.heard > SILENT_HEARTBEATS * HEARTBEAT_SECONDS
        ]
        if not silent:
            return None
        seconds, index = max(silent)
        pid = next((w.process.pid for w in self._workers if w.task is not None and w.task.slice.index == index), None)
        if pid is not None and _process_state(pid) in ("T", "t"):
            return (
                f"the worker crawling slice {index} (pid {pid}) has been stopped for {seconds:.0f} s or more (SIGSTOP, "
                "Ctrl-Z or a debugger), not waiting on the API: run the same command to resume, and let its workers run"
            )
        return (
            f"the worker crawling slice {index} has sent nothing, not even its heartbeat, for {seconds:.0f} s: it "
            "is stuck in a computation that never pauses, not waiting on the API (a bots.user_agents pattern that "
            "backtracks on some user agent, such as '(a+)+$', does that: check the patterns)"
        )

    def _dispatch(self) -> None:
        for worker in self._workers:
            if not self._pending:
                return
            if worker.task is None:
                task = self._pending.popleft()
                worker.task = task
                # If it died, events() reports the task lost.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    worker.conn.send(task)

    def events(self, timeout: float) -> list[Event]:
        """What happened since the last call, waiting up to ``timeout`` seconds for something."""
        by_handle: dict[Any, _Worker] = {}
        for worker in self._workers:
            by_handle[worker.conn] = worker
            by_handle[worker.process.sentinel] = worker
        out: list[Event] = []
        for handle in wait(list(by_handle), timeout):
            worker = by_handle[handle]
            if worker not in self._workers:
                continue  # already replaced during this call
            if handle is worker.conn:
                out.extend(self._receive(worker))
            elif not self._drain(worker, out):
                self._replace(worker, out)
        self._dispatch()
        return out

    def _receive(self, worker: _Worker) -> list[Event]:
        out: list[Event] = []
        if not self._drain(worker, out):
            self._replace(worker, out)
        return out

    def _drain(self, worker: _Worker, out: list[Event]) -> bool:
        """Read every message the worker has sent; False when the worker is gone."""
        try:
            while worker.conn.poll():
                event = worker.conn.recv()
                worker.heard = time.monotonic()
                if isinstance(event, _Alive):
                    continue
                if isinstance(event, _StartupError):
                    worker.startup_error = event.message
                    continue
                worker.worked = True
                out.append(event)
                if isinstance(event, Flushed | Finished):
                    self._startup_deaths = 0
                if isinstance(event, Finished | Failed):
                    worker.task = None
        except (EOFError, OSError):
            return False
        return worker.process.is_alive()

    def _replace(self, worker: _Worker, out: list[Event]) -> None:
        worker.process.join(timeout=5)
        if worker.task is not None:
            out.append(Lost(worker.task, worker.process.exitcode))
        worker.conn.close()
        index = self._workers.index(worker)
        if not worker.worked:
            self._startup_deaths += 1
            if self._startup_deaths >= MAX_STARTUP_DEATHS:
                if not self._gave_up:
                    self._gave_up = True
                    cause = worker.startup_error or f"exit code {worker.process.exitcode}"
                    out.append(
                        Failed(
                            -1,
                            0,
                            f"the worker processes died at start-up {self._startup_deaths} times: {cause}",
                            1,
                            False,
                        )
                    )
                del self._workers[index]  # not replaced: the job stops
                return
        self._workers[index] = self._spawn()

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=2)
            worker.conn.close()

    def wind_down(self, timeout: float, cut: Callable[[], bool] | None = None) -> list[Event]:
        self._pending.clear()
        waiting = [w for w in self._workers if w.task is not None]
        for worker in waiting:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
                worker.conn.send(STOP)
        out: list[Event] = []
        deadline = time.monotonic() + timeout
        while waiting and (left := deadline - time.monotonic()) > 0 and not (cut is not None and cut()):
            # Woken every WIND_DOWN_POLL seconds to ask ``cut``: a signal does not end the wait by itself.
            for handle in wait([w.conn for w in waiting], min(left, WIND_DOWN_POLL)):
                worker = next(w for w in waiting if w.conn is handle)
                if not self._drain(worker, out) or worker.task is None:
                    waiting.remove(worker)  # it ended its task (or died: its slice is redone on resume)
        return out

    def terminate(self) -> None:
        """Stop at once (after :meth:`wind_down`, or a failure): work since each slice's last flush is redone
        on resume."""
        for worker in self._workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self._workers:
            worker.process.join(timeout=5)
            worker.conn.close()
