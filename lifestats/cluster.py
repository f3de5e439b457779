"""The slice tasks on a Dask cluster: an :class:`~lifestats.executor.Executor` over ``distributed``.

The coordinator (``run.py``) does not change: it submits :class:`~lifestats.protocol.Task` values and
reads the same events as from the local process pool. What runs where:

- **The coordinator's machine**: the checkpoint (the state dir), the aggregator, this executor and its
  ``distributed.Client``. It submits one Dask task per slice attempt and reads the tasks' events.
- **The Dask scheduler**: a run's event queue (a ``distributed.Queue`` the tasks put their flushes,
  split answers and a "started" note on) and the Lifestats extension (:class:`LifestatsScheduler`, a
  scheduler plugin): the cluster-wide rate limit's slot book (:mod:`lifestats.cluster_limiter`), the
  claims that keep Dask from running one task twice, and the split proposals. A task polls it between
  pages (at most every ``CONTROL_POLL_SECONDS``) for a proposal, and stops when the coordinator no
  longer wants it: its future was cancelled (the slice went to a new attempt) or the coordinator is
  gone (killed: its futures are released, so its tasks stop instead of crawling for nobody).
- **The Dask workers**: :func:`run_task`, which builds an ``ApiClient`` and a ``PageCounter`` from the
  settings (once per thread and run) and calls :func:`lifestats.task.crawl_slice`, the same code as the
  local pool. Requests go straight from the workers to the API.

Exactly once: each flush carries (slice, attempt, seq) and the aggregator applies it only for the
slice's current attempt and the next seq. A worker that dies mid-task loses its task: the executor
reports it ``Lost`` (when the worker leaves the cluster, or when Dask re-runs the task elsewhere, or
gives up on it), and the coordinator submits the slice again from its last commit with a new attempt.
Dask itself re-runs a task whose worker died; such a re-run asks the scheduler to claim the task and is
refused, so it sends nothing. Tasks are submitted with ``retries=0`` and ``pure=False``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .cluster_limiter import LeasedRateLimiter, RedisSlots, SchedulerSlots, SlotBook, scheduler_call
from .config import Settings
from .count import PageCounter
from .errors import ApiError, ConfigError, LifestatsError
from .executor import HEARTBEAT_SECONDS, WorkerSetup
from .fetch import ApiClient
from .protocol import Event, Failed, Finished, Flush, Flushed, Lost, Progress, Split, Task
from .task import crawl_slice

if TYPE_CHECKING:
    from .executor import Executor

# A task asks for split proposals and stop orders at most this often (one round trip to the scheduler).
CONTROL_POLL_SECONDS = 0.25
# The coordinator checks which workers are still in the cluster this often.
LIVENESS_SECONDS = 0.5
# A run with tasks to do and no worker in the cluster for this long stops (resumable) instead of waiting.
NO_WORKERS_SECONDS = 120.0
# A worker the scheduler has not heard from for this long (its heartbeats come every 0.5 s in a small
# cluster, a few seconds in a large one) is hung (stopped, swapping, its event loop blocked): its slices
# go to the other workers, and no new one is sent to it, until it is heard from again. Dask itself waits
# for its worker-ttl (5 minutes) before it gives up on such a worker.
HUNG_WORKER_SECONDS = 30.0
CONNECT_TIMEOUT = "10s"
# Each step of letting go of the cluster at the end of a run (forgetting the run's state on the workers
# and the scheduler, closing the client and a local cluster) waits at most this long: a worker that no
# longer answers must not keep a finished or stopping job from returning.
SHUTDOWN_TIMEOUT = 10.0
LIMITER_SCHEDULER = "scheduler"
EXTENSION = "lifestats"

log = logging.getLogger(__name__)


class ClusterError(ConfigError):
    """The cluster cannot be reached or cannot run the job (exit 2, before any request)."""


_NO_TLS = (
    "cannot connect to the Dask scheduler at {address}: it needs Dask's TLS settings on this machine (the CA, "
    "and this client's certificate and key: DASK_DISTRIBUTED__COMM__TLS__CA_FILE, "
    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT and DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY, or "
    "distributed.comm.tls in Dask's config file) ({why})"
)


class SchedulerUnreachable(ClusterError):
    """No Dask scheduler answers at the address (exit 2, before any request): one that was not up yet
    answers the same command later."""

    resumable = True


class ClusterLost(LifestatsError):
    """The connection to the Dask scheduler broke mid-run (exit 1; the checkpoint stays resumable)."""


# ------------------------------------------------------------------------------------ on the workers


class _Stopped(Exception):
    """The coordinator no longer wants this task (its slice was given to a new attempt, or the run ended)."""


@dataclass
class _WorkerRun:
    """What the tasks of one run share in one worker process."""

    events: Any  # distributed.Queue
    tools: threading.local = field(default_factory=threading.local)
    clients: list[ApiClient] = field(default_factory=list)


_RUNS: dict[str, _WorkerRun] = {}
_RUNS_LOCK = threading.Lock()


def _worker_run(run: str) -> _WorkerRun:
    """The run's state in this process, made by its first task.

    The lock is never held while the run's queue is made: making it waits for the worker's event loop,
    and :func:`forget_run` runs on that loop and takes the lock (holding it there deadlocked the worker:
    its event loop blocked for good, the scheduler no longer heard from it).
    """
    from distributed import Queue, get_client

    with _RUNS_LOCK:
        state = _RUNS.get(run)
    if state is not None:
        return state
    made = _WorkerRun(Queue(f"{run}-events", client=get_client()))
    with _RUNS_LOCK:
        state = _RUNS.setdefault(run, made)
    return state


def _tools(state: _WorkerRun, setup: WorkerSetup) -> tuple[ApiClient, PageCounter]:
    """This thread's client and counter for the run (one HTTP connection pool per thread)."""
    tools = getattr(state.tools, "pair", None)
    if tools is None:
        client = setup.client()
        tools = state.tools.pair = (client, setup.counter())
        with _RUNS_LOCK:
            state.clients.append(client)
    return tools


def forget_run(run: str) -> None:
    """Close what a finished run left in this worker process (run on every worker at the end)."""
    from .cluster_limiter import forget_limiter

    with _RUNS_LOCK:
        state = _RUNS.pop(run, None)
    forget_limiter(run)
    if state is None:
        return
    for client in state.clients:
        with contextlib.suppress(Exception):
            client.close()
    with contextlib.suppress(Exception):
        state.events.close()


class _Control:
    """The ``proposals`` callback of :func:`crawl_slice`: asks the scheduler for a split proposal, and
    stops the task when the coordinator no longer wants it."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.polled = 0.0
        self.answered = 0

    def __call__(self) -> int | None:
        now = time.monotonic()
        if now - self.polled < CONTROL_POLL_SECONDS:
            return None
        self.polled = now
        wanted, proposal = scheduler_call("lifestats_control", key=self.key)
        if not wanted:
            raise _Stopped
        if proposal is not None and proposal[0] > self.answered:
            self.answered = proposal[0]
            return int(proposal[1])
        return None


def run_task(task: Task, setup: WorkerSetup, run: str, key: str) -> dict[str, Any]:
    """A slice task on a Dask worker: crawl the slice, put its events on the run's queue.

    Returns how many events it put, so that the coordinator knows when it has read them all, and how
    the task ended.
    """
    from distributed import get_worker

    token = uuid.uuid4().hex
    claimed = scheduler_call("lifestats_claim", key=key, token=token)
    if not claimed:  # Dask runs it again because the worker that had it died: the coordinator decides
        return {"token": token, "events": 0, "outcome": "rerun"}
    state = _worker_run(run)
    sent = 0

    def put(kind: str, **body: Any) -> None:
        nonlocal sent
        state.events.put({"kind": kind, "key": key, "token": token, **body})
        sent += 1

    def emit(message: Flush | Split) -> None:
        if isinstance(message, Flush):
            put("flush", flush=dataclasses.asdict(message))
        else:
            put("split", split=dataclasses.asdict(message))

    worker = get_worker()
    put("started", worker=worker.address, pid=os.getpid())
    outcome: dict[str, Any] = {"outcome": "finished"}
    stop = threading.Event()
    heartbeat: threading.Thread | None = None
    try:
        client, counter = _tools(state, setup)
        heartbeat = threading.Thread(target=_heartbeat, args=(state, key, client, stop), daemon=True)
        heartbeat.start()
        # Fetched on this thread: the cluster limiter asks the scheduler from the task's own thread.
        crawl_slice(task, client, counter, setup.settings.crawl.flush_every, emit, _Control(key), prefetch=False)
    except _Stopped:
        outcome = {"outcome": "stopped"}
    except ApiError as exc:
        outcome = {"outcome": "failed", "message": str(exc), "exit_code": exc.exit_code}
        outcome |= {"resumable": exc.resumable, "status": exc.status, "fresh": exc.fresh}
    except LifestatsError as exc:
        outcome = {"outcome": "failed", "message": str(exc), "exit_code": exc.exit_code}
    except Exception as exc:
        outcome = {"outcome": "failed", "message": f"unexpected {type(exc).__name__}: {exc}", "exit_code": 1}
    finally:
        stop.set()
        if heartbeat is not None:
            heartbeat.join()
    return {"token": token, "events": sent, **outcome}


def _heartbeat(state: _WorkerRun, key: str, client: ApiClient, stop: threading.Event) -> None:
    """Tell the coordinator, at most every HEARTBEAT_SECONDS, that this task's requests are moving (or
    that the cluster waits out a 429 pause), so that its stall watchdog can tell slow from stuck.
    Heartbeats are not counted among the task's events."""
    last = -1
    paused_for = getattr(client.limiter, "paused_for", None)
    while not stop.wait(HEARTBEAT_SECONDS):
        moved = client.counts.requests + client.counts.retries
        if moved != last or (paused_for is not None and paused_for() > 0):
            last = moved
            with contextlib.suppress(Exception):
                state.events.put({"kind": "progress", "key": key})


# ------------------------------------------------------------------------------------ in the scheduler


class SchedulerExtension:
    """Lifestats state in the Dask scheduler, for every run on the cluster: the rate limit's slot books,
    which run of each task may crawl, and the split proposals waiting for their task."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.books: dict[str, SlotBook] = {}
        self.claims: dict[str, str] = {}  # task key -> token of the run that claimed it
        self.proposals: dict[str, tuple[int, int]] = {}  # task key -> (number, new end)
        self.proposed = 0

    def _book(self, name: str, per_second: float) -> SlotBook:
        book = self.books.get(name)
        if book is None:
            book = self.books[name] = SlotBook(per_second)
        return book

    def lease(self, name: str, per_second: float, count: int, spacing: float) -> dict[str, Any]:
        lease = self._book(name, per_second).lease(count, spacing)
        return {"delays": lease.delays, "paused": lease.paused}

    def pause(self, name: str, per_second: float, seconds: float) -> None:
        self._book(name, per_second).pause(seconds)

    def claim(self, key: str, token: str) -> bool:
        """True for the first run of a task; False when Dask runs it again (its first worker died)."""
        return self.claims.setdefault(key, token) == token

    def propose(self, key: str, until: int) -> None:
        self.proposed += 1
        self.proposals[key] = (self.proposed, until)

    def control(self, key: str) -> tuple[bool, tuple[int, int] | None]:
        """Whether a client still wants task ``key`` (else it should stop), and its latest proposal."""
        task = self.scheduler.tasks.get(key)
        wanted = task is not None and bool(task.who_wants)
        return wanted, self.proposals.get(key)

    def forget(self, name: str) -> None:
        self.books.pop(name, None)
        prefix = name + "-"
        for table in (self.claims, self.proposals):
            for key in [k for k in table if k.startswith(prefix)]:
                del table[key]


try:
    from distributed.diagnostics.plugin import SchedulerPlugin
except ImportError:  # pragma: no cover - only the cluster needs distributed
    SchedulerPlugin = object  # type: ignore[assignment,misc]


class LifestatsScheduler(SchedulerPlugin):  # type: ignore[misc,valid-type]
    """Installs :class:`SchedulerExtension` and its handlers in the scheduler, once per cluster (the
    scheduler needs Lifestats installed to load it)."""

    name = "lifestats"
    idempotent = True

    async def start(self, scheduler: Any) -> None:
        extension = scheduler.extensions.get(EXTENSION)
        if not isinstance(extension, SchedulerExtension):
            extension = scheduler.extensions[EXTENSION] = SchedulerExtension(scheduler)
        scheduler.handlers.update(
            {
                "lifestats_lease": extension.lease,
                "lifestats_pause": extension.pause,
                "lifestats_claim": extension.claim,
                "lifestats_propose": extension.propose,
                "lifestats_control": extension.control,
                "lifestats_forget": extension.forget,
            }
        )


def new_run_name() -> str:
    return f"lifestats-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------- the coordinator


@dataclass
class _Tracked:
    task: Task
    future: Any
    token: str | None = None  # of the run that claimed the task and said "started"
    worker: str | None = None
    pid: int | None = None
    received: int = 0  # events read from that run
    result: dict[str, Any] | None = None


class DaskExecutor:
    """Runs slice tasks on the Dask cluster of ``client``; see the module docstring for what runs where."""

    def __init__(
        self,
        client: Any,
        setup: WorkerSetup,
        *,
        limiter: str = LIMITER_SCHEDULER,
        cluster: Any = None,
    ) -> None:
        from distributed import Queue

        self._client = client
        self._cluster = cluster  # a LocalCluster this executor started, closed with it
        self.run = new_run_name()
        rate = setup.settings.crawl.rate_limit
        try:
            client.register_plugin(LifestatsScheduler())
        except Exception as exc:
            raise ClusterError(
                f"the Dask scheduler could not load the Lifestats extension ({type(exc).__name__}: {exc}); "
                "install Lifestats, the same version, on the scheduler's machine and every worker's"
            ) from None
        self._redis: RedisSlots | None = None
        if limiter == LIMITER_SCHEDULER:
            source: Any = SchedulerSlots(self.run, rate)
        elif limiter.startswith(("redis://", "rediss://", "unix://")):
            source = self._redis = RedisSlots(limiter, self.run, rate)
        else:
            raise ClusterError(f"unknown cluster limiter {limiter!r}: use 'scheduler' or a redis:// URL")
        self.limiter = LeasedRateLimiter(self.run, rate, source)
        self._setup = dataclasses.replace(setup, limiter=self.limiter)
        self._events = Queue(f"{self.run}-events", client=client)
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._tracked: dict[str, _Tracked] = {}
        self._workers: dict[str, int] = {}  # live worker address -> threads (hung ones left out)
        self._heard: dict[str, tuple[Any, float]] = {}  # worker -> (its last_seen, when that last changed)
        self.hung: set[str] = set()  # workers the scheduler has not heard from for HUNG_WORKER_SECONDS
        self._checked = 0.0
        self._refresh_workers()
        self._seen_workers = time.monotonic()
        self._stopping = threading.Event()
        self._reader = threading.Thread(target=self._read, name="dask-events", daemon=True)
        self._reader.start()

    @classmethod
    def connect(
        cls, address: str, workers: int, setup: WorkerSetup, *, limiter: str = LIMITER_SCHEDULER
    ) -> DaskExecutor:
        """Connect to the scheduler at ``address`` (``local``: start a LocalCluster of ``workers`` processes)."""
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ClusterError(
                "running on a Dask cluster needs the distributed package: pip install 'dask[distributed]'"
            ) from None
        cluster = None
        if address.startswith(("tls://", "wss://")):
            # Refused here rather than by the client: one that fails halfway leaves Dask's event loop
            # machinery in a state where this process cannot start another client or cluster.
            from distributed.security import Security

            if Security().get_connection_args("client").get("ssl_context") is None:
                raise ClusterError(_NO_TLS.format(address=address, why="no TLS settings"))
        try:
            if address == "local":
                logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines would drown the job's
                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                    preload=["lifestats._dask_worker"],  # a Ctrl-C is the coordinator's to answer
                )
                client = Client(cluster)
            else:
                client = Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            if cluster is not None:
                cluster.close()
            raise SchedulerUnreachable(
                f"cannot reach the Dask scheduler at {address}: {exc}; check the address, and that the "
                "scheduler is running"
            ) from None
        except TypeError as exc:  # distributed's word for a tls:// address without TLS settings
            if not address.startswith(("tls://", "wss://")):
                raise
            raise ClusterError(_NO_TLS.format(address=address, why=exc)) from None
        try:
            executor = cls(client, setup, limiter=limiter, cluster=cluster)
            executor.check_reachable(setup.settings)
        except BaseException:
            client.close()
            if cluster is not None:
                cluster.close()
            raise
        return executor

    def check_reachable(self, settings: Settings) -> None:
        """Refuse an API on this machine's loopback when workers run on other machines."""
        host = urlsplit(settings.api.url).hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        remote = [w for w in self._workers if not _is_loopback_address(w)]
        if loopback and remote:
            raise ClusterError(
                f"the API is at a loopback address ({host}) that the Dask workers on other machines "
                f"({remote[0]}) cannot reach; give api.url an address they can reach"
            )

    # -- the Executor protocol ----------------------------------------------------------------------
    def submit(self, task: Task) -> None:
        key = f"{self.run}-s{task.slice.index}-a{task.attempt}"
        # Not on a hung worker: Dask would wait on it (it still counts it among its workers).
        where = {"workers": sorted(self._workers), "allow_other_workers": False} if self.hung and self._workers else {}
        future = self._client.submit(
            run_task, task, self._setup, self.run, key, key=key, pure=False, retries=0, **where
        )
        self._tracked[key] = _Tracked(task, future)
        future.add_done_callback(lambda _: self._inbox.put(("done", key)))

    def busy(self) -> bool:
        return bool(self._tracked)

    def idle(self) -> int:
        return max(0, sum(self._workers.values()) - len(self._tracked))

    def running(self) -> list[Task]:
        return [t.task for t in self._tracked.values() if t.token is not None and t.result is None]

    def pids(self, *, busy_only: bool = False) -> list[int]:
        """The process ids of the workers running a task (tests and operators signal them)."""
        return [t.pid for t in self._tracked.values() if t.pid is not None and t.result is None]

    def helper_cpu_seconds(self) -> float:
        return 0.0  # the Dask workers report their own CPU; the scheduler and nannies are the cluster's

    def propose_split(self, task: Task, until: int) -> None:
        for key, tracked in self._tracked.items():
            if tracked.task == task:
                client = self._client
                client.sync(client.scheduler.lifestats_propose, key=key, until=until)

    def events(self, timeout: float) -> list[Event]:
        out: list[Event] = []
        try:
            items = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            items = []
        while True:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        for kind, item in items:
            if kind == "message":
                self._message(item, out)
            elif kind == "done":
                self._done(item, out)
            else:  # the reader thread failed: the scheduler is gone
                raise ClusterLost(f"lost the Dask scheduler: {item}")
        if time.monotonic() - self._checked >= LIVENESS_SECONDS:
            self._refresh_workers()
            # A task on a hung worker may not have started: Dask gave it the thread a lost task freed.
            waiting = self._client.processing(workers=sorted(self.hung)) if self.hung else {}
            stuck = {str(key) for keys in waiting.values() for key in keys}
            for key, tracked in list(self._tracked.items()):
                if tracked.result is None and (
                    (tracked.worker is not None and tracked.worker not in self._workers) or key in stuck
                ):
                    self._lose(key, out)
            if self._workers:
                self._seen_workers = time.monotonic()
            elif self._tracked and time.monotonic() - self._seen_workers > NO_WORKERS_SECONDS:
                raise ClusterLost(f"the Dask cluster has had no workers for {NO_WORKERS_SECONDS:.0f} s")
        return out

    def close(self) -> None:
        self._shutdown()

    def wind_down(self, timeout: float, cut: Callable[[], bool] | None = None) -> list[Event]:
        """Not on a cluster: its tasks are told to stop by :meth:`terminate`, and what they counted since
        their last flush is redone on resume."""
        return []

    def terminate(self) -> None:
        """Stop at once (Ctrl-C, a failure): the running tasks are told to stop between two pages."""
        for tracked in self._tracked.values():
            with contextlib.suppress(Exception):
                tracked.future.cancel()
        self._tracked.clear()
        self._shutdown()

    # -- events ---------------------------------------------------------------------------------------
    def _read(self) -> None:
        """Move the run's events from the scheduler's queue to the local inbox, in order, until the
        executor puts its own "end" on the queue."""
        while True:
            try:
                first = self._events.get()
                rest = self._events.get(batch=True)
            except BaseException as exc:  # the thread must not end silently: events() would wait for ever
                if not self._stopping.is_set():
                    self._inbox.put(("error", f"{type(exc).__name__}: {exc}"))
                return
            for message in (first, *rest):
                if message.get("kind") == "end":
                    return
                self._inbox.put(("message", message))

    def _message(self, message: dict[str, Any], out: list[Event]) -> None:
        key = message["key"]
        tracked = self._tracked.get(key)
        if tracked is None:
            return  # a lost or ended task
        kind = message["kind"]
        if kind == "progress":
            out.append(Progress())
            return
        # The first "started" names the run that counts; its token may be known already, as the task's
        # result can be read before its first event.
        first = tracked.token is None or (message["token"] == tracked.token and tracked.worker is None)
        if kind == "started" and first:
            tracked.token, tracked.worker, tracked.pid = message["token"], message["worker"], message["pid"]
            if tracked.worker not in self._workers:
                self._refresh_workers()
        if message["token"] != tracked.token:
            return  # another run of the task (Dask ran it again elsewhere): it sends nothing that counts
        tracked.received += 1
        if kind == "flush":
            out.append(Flushed(Flush(**message["flush"])))
        elif kind == "split":
            out.append(Split(**message["split"]))
        self._maybe_end(key, out)

    def _done(self, key: str, out: list[Event]) -> None:
        tracked = self._tracked.get(key)
        if tracked is None:
            return
        future = tracked.future
        if future.status == "finished":
            try:
                result = future.result(timeout=30)
            except Exception:  # its worker died before the coordinator fetched the result
                result = {"outcome": "rerun"}
            future.release()
            if result["outcome"] == "rerun":
                self._lose(key, out)
                return
            tracked.result = result
            if tracked.token is None:
                tracked.token = result["token"]
            self._maybe_end(key, out)
            return
        error = future.exception() if future.status == "error" else None
        if error is None or type(error).__name__ == "KilledWorker":
            self._lose(key, out)
            return
        del self._tracked[key]
        task = tracked.task
        message = f"a Dask worker could not run slice {task.slice.index}: {type(error).__name__}: {error}"
        if isinstance(error, ModuleNotFoundError):
            message += " (install Lifestats on every Dask worker)"
        out.append(Failed(task.slice.index, task.attempt, message, 1))

    def _maybe_end(self, key: str, out: list[Event]) -> None:
        """Finished (or Failed) once the task returned and every event it put has been read."""
        tracked = self._tracked[key]
        result = tracked.result
        if result is None or tracked.received < result["events"]:
            return
        del self._tracked[key]
        task = tracked.task
        if result["outcome"] == "failed":
            out.append(
                Failed(
                    task.slice.index,
                    task.attempt,
                    result["message"],
                    result["exit_code"],
                    result.get("resumable", True),
                    result.get("status"),
                    fresh=bool(result.get("fresh", False)),
                )
            )
        elif result["outcome"] == "finished":
            out.append(Finished(task.slice.index, task.attempt))
        else:  # stopped: only this executor stops tasks, and only lost ones
            out.append(Lost(task, None))

    def _lose(self, key: str, out: list[Event]) -> None:
        tracked = self._tracked.pop(key)
        with contextlib.suppress(Exception):
            tracked.future.cancel()  # a run of it still going stops at its next poll
        log.info("slice %s lost its Dask worker %s", tracked.task.slice.index, tracked.worker)
        out.append(Lost(tracked.task, None))

    def _refresh_workers(self) -> None:
        info = self._client.scheduler_info(n_workers=-1)
        now = time.monotonic()
        workers = info.get("workers", {})
        for address, worker in workers.items():
            seen = worker.get("last_seen")
            if address not in self._heard or self._heard[address][0] != seen:
                self._heard[address] = (seen, now)
        self._heard = {address: heard for address, heard in self._heard.items() if address in workers}
        hung = {address for address, (_, since) in self._heard.items() if now - since > HUNG_WORKER_SECONDS}
        for address in hung - self.hung:
            log.warning(
                "the Dask scheduler has not heard from worker %s for %.0f s: its slices go to the other workers",
                address,
                now - self._heard[address][1],
            )
        self.hung = hung
        self._workers = {a: int(w.get("nthreads", 1)) for a, w in workers.items() if a not in hung}
        self._checked = now

    def stall_reason(self) -> str | None:
        """Why the crawl may have stopped moving, when the cluster can tell (hung or no workers)."""
        if self.hung and not self._workers:
            return (
                f"the Dask scheduler has not heard from its worker(s) for over {HUNG_WORKER_SECONDS:.0f} s "
                f"({', '.join(sorted(self.hung))}): they are stopped or hung; restart them"
            )
        if not self._workers:
            return "the Dask cluster has no workers: start some (dask worker ADDRESS)"
        return None

    def _shutdown(self) -> None:
        if self._cluster is not None:
            # The LocalCluster's own scheduler, in this process, logs every task cancelled and connection
            # closed as the run tears it down (CRITICAL, with tracebacks): noise for the job's user.
            for name in ("distributed", "tornado.application"):  # tornado: a sync() that Ctrl-C cut short
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        self._stopping.set()
        with contextlib.suppress(Exception):
            self._events.put({"kind": "end"})
        self._reader.join(timeout=5)
        client = self._client
        with contextlib.suppress(Exception):  # `callback_timeout` bounds the call (Client.sync takes it)
            client.run(forget_run, self.run, on_error="ignore", callback_timeout=SHUTDOWN_TIMEOUT)
        with contextlib.suppress(Exception):
            client.sync(client.scheduler.lifestats_forget, name=self.run, callback_timeout=SHUTDOWN_TIMEOUT)
        if self._redis is not None:
            self._redis.forget()
        with contextlib.suppress(Exception):
            self._events.close()
        with contextlib.suppress(Exception):
            client.close(timeout=SHUTDOWN_TIMEOUT)
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close(timeout=SHUTDOWN_TIMEOUT)


def _is_loopback_address(address: str) -> bool:
    host = urlsplit(address).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cluster_executor_factory(
    address: str, *, limiter: str = LIMITER_SCHEDULER
) -> Callable[[int, WorkerSetup], Executor]:
    """An ``executor_factory`` for :func:`lifestats.run.run_job` that runs the slices on a Dask cluster.

    ``address`` is the scheduler's (``tcp://host:8786``), or ``local`` to start a LocalCluster of
    ``crawl.workers`` processes. ``limiter`` is where the cluster-wide rate limit keeps its state:
    ``scheduler`` (default) or a ``redis://`` URL.
    """

    def factory(workers: int, setup: WorkerSetup) -> Executor:
        return DaskExecutor.connect(address, workers, setup, limiter=limiter)

    return factory
