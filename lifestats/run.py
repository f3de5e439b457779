"""The coordinator: plan the slices, hand them to an executor, apply its flushes, build the report.

It owns the checkpoint (through the :class:`~lifestats.merge.Aggregator`), re-submits a slice whose
worker died from that slice's last commit, splits the remaining range of a straggling slice when a
worker would otherwise idle, and on Ctrl-C, an API failure, a job that stopped moving or a state dir
that cannot be written stops the workers and returns a report marked partial; the same command run
again resumes. A run holds its state dir's lock (:mod:`lifestats.lock`) from start to end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import duckdb

from ._signals import held
from .config import Settings, fingerprint
from .count import PageCounter
from .errors import CREDENTIAL_STATUSES, ApiError, CheckpointMismatch, ConfigError, LifestatsError, StateDirError
from .executor import Executor, LocalExecutor, WorkerSetup
from .fetch import ApiClient
from .limiter import SharedRateLimiter
from .lock import state_lock
from .merge import REJECTS_FILE, Aggregator, Checkpoint, SliceState
from .paginate import make_paginator
from .plan import Bounds, Slice, early_ends, find_bounds, plan_slices, slice_alignment
from .protocol import Event, Failed, Finished, Flush, Flushed, Lost, Progress, Split, Task
from .redact import Credentials, redact_text
from .report import build_report
from .sanity import data_warnings, judged_fields
from .store import MEMORY_LIMIT
from .usage import CpuMeter, peak_rss_bytes

MAX_LOSSES_PER_SLICE = 3
EXIT_INTERRUPTED = 130
EXIT_DATA_SUSPECT = 4
# A straggler is asked to split only when its estimated remaining pages (from its committed position,
# which lags the worker by up to a flush) are at least this many; the worker then halves what it really
# has left, or refuses when too little is (see lifestats.task).
MIN_SPLIT_PAGES = 4
# With no request sent or ended by any worker for this long (and no pause asked by the API), the job
# stops: max(STALL_TIMEOUTS x api.timeout, STALL_MIN_SECONDS, two retry waits), plus a few request
# intervals of the rate limit (at 0.01/s a healthy job sends one request every 100 s).
STALL_TIMEOUTS = 3
STALL_MIN_SECONDS = 60.0
STALL_INTERVALS = 3


@dataclass
class Snapshot:
    """Live figures for a progress display."""

    fraction: float
    pages: int
    records: int
    requests: int
    elapsed: float
    slices_done: int
    slices: int
    waiting: float = 0.0  # seconds the whole job is held back by the API's Retry-After (0 when not)


@dataclass
class Outcome:
    report: dict[str, Any]
    exit_code: int = 0
    message: str | None = None


DISCOVERY_PROBES: Final = 8  # probes of the id range in flight at once
# How long an interrupted run waits for its workers to flush what they counted (each finishes the page it
# counts; one that waits on the API longer is stopped as it is, its pages since its last flush redone).
WIND_DOWN_SECONDS: Final = 5.0
DISCOVERY_SLACK: Final = 1 / 8  # the end is sought to within this share of the id range


def stall_seconds(settings: Settings) -> float:
    """How long the job may go without any request sent or ended before it stops (see STALL_*)."""
    crawl = settings.crawl
    if crawl.stall_timeout is not None:
        return crawl.stall_timeout
    longest_wait = max(STALL_TIMEOUTS * settings.api.timeout, STALL_MIN_SECONDS, 2 * crawl.backoff_max)
    return longest_wait + STALL_INTERVALS / crawl.rate_limit


def check_as_of(settings: Settings, as_of: datetime) -> None:
    """Refuse, before any request, an ``as_of`` whose windows cannot be computed (years 1 and 9999)."""
    where = f"--as-of {as_of.isoformat()}"
    if not 1 < as_of.year < 9999:
        raise ConfigError(f"{where} is out of range: give a time between the years 2 and 9998")
    try:
        PageCounter(settings, as_of)
    except (ValueError, OverflowError, OSError) as exc:
        raise ConfigError(f"{where} is out of range: its windows cannot be computed ({exc})") from None


@dataclass
class _Tally:
    requests: int = 0
    retries: int = 0
    pages: int = 0
    lost: int = 0
    splits: int = 0
    losses: dict[int, int] = field(default_factory=dict)
    worker_cpu: float = 0.0  # CPU seconds the workers reported spending
    helper_cpu: float = 0.0  # CPU seconds of the server that forks the workers (see Executor.helper_cpu_seconds)
    worker_peak_rss: int = 0  # the largest peak resident memory a worker reported, in bytes


ExecutorFactory = Callable[[int, WorkerSetup], Executor]


def local_executor(workers: int, setup: WorkerSetup) -> Executor:
    return LocalExecutor(workers, setup)


# The embedded mock API prints its URL within a second or two; past this, it is not going to.
EMBEDDED_STARTUP_SECONDS: Final = 60.0


@contextlib.contextmanager
def api_url(settings: Settings, as_of: datetime) -> Iterator[str]:
    """The URL to crawl; ``embedded`` starts the bundled mock API on loopback for the run.

    The synthetic events of the embedded API lead up to ``as_of``, so every window has data; a resumed
    run keeps its ``as_of`` and so crawls the same events.
    """
    if settings.api.url != "embedded":
        yield settings.api.url
        return
    from mocks.server import serve_in_subprocess

    mock = settings.mock
    try:
        url, stop = serve_in_subprocess(
            replay=mock.dataset == "lifesum",
            seed=mock.seed,
            records=mock.records,
            latency=mock.latency,
            empty_share=mock.empty_share,
            end=as_of.isoformat(),
            startup_timeout=EMBEDDED_STARTUP_SECONDS,
        )
    except RuntimeError as exc:  # it exited, or printed no URL in time (it could not start its threads)
        raise LifestatsError(
            f"the embedded mock API (api.url: embedded) did not start: {exc} (given "
            f"{EMBEDDED_STARTUP_SECONDS:.0f} s); check that this user can start processes and threads "
            "(ulimit -u) and open files (ulimit -n)"
        ) from None
    try:
        yield url
    finally:
        stop()


def run_job(
    settings: Settings,
    *,
    env: str,
    state_dir: Path,
    as_of: datetime | None = None,
    fresh: bool = False,
    token: str | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    executor_factory: ExecutorFactory = local_executor,
    deliver: Callable[[dict[str, Any]], None] | None = None,
    interrupted: bool = False,
) -> Outcome:
    """Run (or resume) the job and return its report with the exit code the command line uses.

    ``deliver`` receives the final report before the checkpoint is marked finished (write it to disk
    there): if it raises, the run is not marked finished and the same command can produce it again.
    ``interrupted``: the program was interrupted before it called this (while it started): the answer is
    that of an interrupt, a partial report of what the checkpoint holds (exit 130), and nothing is crawled.
    """
    started = datetime.now(UTC)
    secrets = [settings.api.url]
    credentials = Credentials(settings.api.url, token)
    url = settings.api.url
    checkpoint: Checkpoint | None = None
    try:
        with contextlib.ExitStack() as stack:
            try:
                # Until the checkpoint is open and claimed, a signal waits: the partial report that answers
                # it reads them. Each step is short (no request is sent before the job runs).
                with held():
                    if as_of is not None:
                        check_as_of(settings, as_of)
                    check_credentials(settings, token)
                    # The lock comes first: nothing in the state dir is read, let alone deleted, under a live run.
                    stack.enter_context(state_lock(state_dir))
                    if fresh:
                        Checkpoint.remove(state_dir)
                    checkpoint = Checkpoint(state_dir)
                    stack.callback(lambda: checkpoint.close() if checkpoint is not None else None)
                    if checkpoint.get("finished"):  # the last run completed: this one starts anew
                        checkpoint = checkpoint.renewed()
                    try:
                        resumed = checkpoint.claim(fingerprint(settings))
                    except CheckpointMismatch:
                        if checkpoint.holds_counts():
                            raise
                        # Stopped before its first flush: nothing of it would be mixed in, so start anew.
                        checkpoint = checkpoint.renewed()
                        resumed = checkpoint.claim(fingerprint(settings))
                    as_of = _settle_as_of(checkpoint, as_of, resumed)
                if interrupted:  # a signal came before the job was called: answer it as one that came now
                    raise KeyboardInterrupt
                with api_url(settings, as_of) as url:
                    api = settings.api.model_copy(update={"url": url})
                    run_settings = settings.model_copy(update={"api": api})
                    job = _Job(run_settings, env, checkpoint, state_dir, as_of, token, started, resumed)
                    outcome = job.run(executor_factory, on_progress, deliver)
            except KeyboardInterrupt:
                # Before the job could answer it (the mock API starting, the job setting up): the same
                # answer, a partial report of what the checkpoint holds.
                url = settings.api.url
                assert checkpoint is not None and as_of is not None  # the signal waited until they were
                with held(redeliver=False):
                    job = _Job(settings, env, checkpoint, state_dir, as_of, token, started, resumed)
                outcome = job._stop(None, EXIT_INTERRUPTED, "interrupted: run the same command to resume")
    except LifestatsError as exc:
        # Credentials in api.url, and the token, never reach a message (an API may echo them in its body).
        exc.args = (credentials.scrub(redact_text(str(exc), secrets)),)
        raise
    if outcome.message:
        outcome.message = credentials.scrub(redact_text(outcome.message, [*secrets, url]))
    return outcome


def check_credentials(settings: Settings, token: str | None) -> None:
    """Refuse two credentials for one header: ``user:password@`` in ``api.url`` is sent as Basic
    authorization, which would silently replace the bearer token of ``LIFESTATS_API_TOKEN``."""
    if token:
        odd = next((i for i, c in enumerate(token) if not "!" <= c <= "~"), None)
        if odd is not None:  # the message must not show the token, nor the character (it may be part of it)
            raise ConfigError(
                f"LIFESTATS_API_TOKEN holds a character an HTTP header cannot carry (a space, a line break, a "
                f"control or non-ASCII character), at position {odd + 1} of {len(token)}: set it to the token alone"
            )
    if token and "@" in urlsplit(settings.api.url).netloc:
        raise ConfigError(
            "api.url holds a user and password (sent as Basic authorization) and LIFESTATS_API_TOKEN is set "
            "(sent as a Bearer token): an API takes one Authorization header, so one of them would be "
            "ignored; remove the user and password from api.url, or unset LIFESTATS_API_TOKEN"
        )


def _settle_as_of(checkpoint: Checkpoint, as_of: datetime | None, resumed: bool) -> datetime:
    """A resumed run keeps the ``as_of`` its counts were made for."""
    stored = checkpoint.get("as_of")
    if resumed and stored is not None:
        stored_time = datetime.fromisoformat(stored)
        if as_of is not None and as_of != stored_time:
            raise CheckpointMismatch(
                f"the checkpoint was counted for --as-of {stored}, not {as_of.isoformat()}; "
                "run again without --as-of (or with that one) to resume, or with --fresh to start over"
            )
        return stored_time
    moment = as_of if as_of is not None else datetime.now(UTC).replace(microsecond=0)
    checkpoint.put("as_of", moment.isoformat())
    return moment


class _Job:
    def __init__(
        self,
        settings: Settings,
        env: str,
        checkpoint: Checkpoint,
        state_dir: Path,
        as_of: datetime,
        token: str | None,
        started: datetime,
        resumed: bool,
    ) -> None:
        self.settings = settings
        self.env = env
        self.checkpoint = checkpoint
        self.state_dir = state_dir
        self.as_of = as_of
        self.token = token
        self.started = started
        self.resumed = resumed
        self.t0 = time.monotonic()
        self.cpu = CpuMeter()  # the coordinator's own CPU; the workers report theirs
        self.tally = _Tally()
        self.limiter = SharedRateLimiter(settings.crawl.rate_limit)
        self.bounds: Bounds | None = None
        self.aggregator = Aggregator(
            checkpoint, state_dir / REJECTS_FILE, settings.crawl.keep_rejects, exact=settings.stats.mode != "approx"
        )
        self.records_before = self.aggregator.total.records["fetched"]
        self.proposal: int | None = None  # the slice asked to split, awaiting its answer
        self.unsplittable: set[int] = set()  # refused a split since its last flush
        self.stall_limit = stall_seconds(settings)
        self.last_moved = time.monotonic()  # when a worker last sent or ended a request

    def _stored_bounds(self) -> Bounds:
        """The id range of the plan the checkpoint holds."""
        stored = dict(self.checkpoint.get("bounds"))
        stored["known_ids"] = tuple(stored.get("known_ids", ()))  # a list in JSON; absent from older plans
        return Bounds(**stored)

    def _discover(self) -> tuple[Bounds, list[Slice]]:
        """Find the id range (probing the API for what the config leaves out) and cut it into slices."""
        api = self.settings.api
        id_field = self.settings.fields.id
        with ApiClient(
            api, self.settings.crawl, self.limiter, token=self.token, id_field=id_field, record_keys=[]
        ) as client:
            # Probes go out several at a time, and the end is sought only as closely as the plan needs.
            bounds = find_bounds(
                client.get_page,
                client.paginator,
                api.first_id,
                api.last_id,
                parallel=DISCOVERY_PROBES,
                slack=DISCOVERY_SLACK,
                probe_once=lambda position: client.get_page(position, retries=0),
            )
            self.tally.requests += client.counts.requests
            self.tally.retries += client.counts.retries
        return bounds, plan_slices(bounds, self.settings.crawl.slices, slice_alignment(client.paginator))

    # -- the loop -----------------------------------------------------------------------------------
    def run(
        self,
        executor_factory: ExecutorFactory,
        on_progress: Callable[[Snapshot], None] | None,
        deliver: Callable[[dict[str, Any]], None] | None = None,
    ) -> Outcome:
        planned = self.checkpoint.get("bounds") is not None
        todo = [s for s in self.checkpoint.states() if not s.done]
        if planned and not todo:
            self.bounds = self._stored_bounds()
            return self._finish(deliver)
        # Workers start up while the coordinator discovers the id range.
        setup = WorkerSetup(settings=self.settings, as_of=self.as_of, limiter=self.limiter, token=self.token)
        workers = min(self.settings.crawl.workers, len(todo)) if planned else self.settings.crawl.workers
        executor: Executor | None = None
        failure: Failed | None = None
        try:
            executor = executor_factory(workers, setup)
            if planned:
                self.bounds = self._stored_bounds()
                todo = [s for s in self.checkpoint.states() if not s.done]
                for state in self.checkpoint.begin_attempts([state.slice.index for state in todo]):
                    executor.submit(self._task(state))
            else:
                # A new plan's tasks go out before it is saved, so that the crawl's first requests follow
                # the last probe at once (saving took 10-15 ms, a tenth of the limit's slots in that time).
                # Safe: their flushes are read only after the save, which records every slice as on its
                # first attempt, and a save that fails stops the workers before anything is committed.
                self.bounds, slices = self._discover()
                starts = self._starts(slices)
                for piece in slices:
                    start = starts.get(piece.index, piece.begin)
                    horizon, lowest, known = self._horizon(piece), self._lowest(piece), self._known()
                    executor.submit(
                        Task(piece, 1, start, piece.begin - 1, 0, horizon=horizon, lowest=lowest, known=known)
                    )
                meta = {"bounds": dataclasses.asdict(self.bounds), "planned_slices": len(slices)}
                self.checkpoint.save_plan(slices, meta, attempt=1, starts=starts)
            self.last_moved = time.monotonic()
            self._notify(on_progress)
            while executor.busy() and failure is None:
                for event in executor.events(timeout=0.25):
                    failure = self._handle(event, executor) or failure
                if failure is None:
                    failure = self._stalled(executor)
                if failure is None:
                    self._maybe_split(executor)
                self._notify(on_progress)
        except KeyboardInterrupt:
            return self._stop(executor, EXIT_INTERRUPTED, "interrupted: run the same command to resume")
        except StateDirError as exc:
            return self._stop(executor, exc.exit_code, str(exc))
        except duckdb.Error as exc:  # a read of the checkpoint failed (writes raise StateDirError)
            message = f"cannot read the checkpoint in {self.state_dir} ({exc}); run the same command to resume"
            return self._stop(executor, 1, message)
        except LifestatsError as exc:  # the API failed while the id range was being discovered
            resumable = bool(getattr(exc, "resumable", exc.exit_code != 2))
            status = exc.status if isinstance(exc, ApiError) else None
            fresh = isinstance(exc, ApiError) and exc.fresh
            return self._stop(executor, exc.exit_code, self._advice(str(exc), resumable, status, fresh))
        except BaseException:
            if executor is not None:
                with held(redeliver=False):
                    executor.terminate()
            raise
        if failure is not None:
            advice = self._advice(failure.message, failure.resumable, failure.status, failure.fresh)
            return self._stop(executor, failure.exit_code, advice)
        executor.close()
        self.tally.helper_cpu = executor.helper_cpu_seconds()
        try:
            return self._finish(deliver)
        except KeyboardInterrupt:
            return self._stop(None, EXIT_INTERRUPTED, "interrupted: run the same command to resume")
        except StateDirError as exc:
            return self._stop(None, exc.exit_code, str(exc))

    def _advice(self, message: str, resumable: bool, status: int | None, fresh: bool = False) -> str:
        """The failure's message and what to do about it: resume only when resuming can help."""
        where = f"progress is checkpointed in {self.state_dir}"
        if fresh:
            return f"{message}\n{where}, but a resume would ask for the same page again: start over with --fresh"
        if resumable:
            return f"{message}\n{where}: run the same command to resume"
        if status in CREDENTIAL_STATUSES:
            hint = (
                "the API did not accept the credentials: set LIFESTATS_API_TOKEN to a valid token "
                "(or correct the credentials in api.url)"
            )
        elif status is not None:
            hint = f"the same request will get HTTP {status} again: check api.url and the api settings"
        else:
            hint = "running the same command again will meet the same problem: fix it first"
        return (
            f"{message}\n{hint}; {where}, and the run resumes from there once that is fixed (after a change to "
            "a setting that decides what is counted, such as an api path, it starts over: add --fresh)"
        )

    def _stalled(self, executor: Executor) -> Failed | None:
        """A job whose workers have sent and ended no request for too long stops, rather than wait for ever."""
        now = time.monotonic()
        if self._waiting() > 0:  # the API asked for a pause: waiting is what the job should do
            self.last_moved = now
            return None
        quiet = now - self.last_moved
        if quiet < self.stall_limit:
            return None
        stall_reason = getattr(executor, "stall_reason", None)
        reason = stall_reason() if stall_reason is not None else None
        if reason is not None:  # the workers, not the API
            return Failed(-1, 0, f"no request to the API was sent or answered in the last {quiet:.0f} s: {reason}", 1)
        return Failed(
            -1,
            0,
            f"no request to the API was sent or answered in the last {quiet:.0f} s "
            f"(api.timeout is {self.settings.api.timeout:g} s): the API or the network is not answering",
            3,
        )

    def _waiting(self) -> float:
        paused_for = getattr(self.limiter, "paused_for", None)
        if paused_for is None:
            return 0.0
        try:
            return max(0.0, float(paused_for()))
        except (OSError, ValueError):
            return 0.0

    def _stop(self, executor: Executor | None, exit_code: int, message: str) -> Outcome:
        """Stop the workers and report what the checkpoint holds, marked partial.

        A second Ctrl-C (or a SIGTERM or SIGHUP) that arrives meanwhile is held back until the partial
        report exists, so that the command line can still write it; during the workers' wind-down it stops the
        wait for them (what they have not flushed by then is crawled again on resume).
        """
        with held(redeliver=False) as again:
            # An interrupt may have landed between a flush's commit and its merge into the total: read it
            # back before the wind-down's flushes are applied, since one of them may fold the total (write it
            # and delete the blobs it holds), which would drop the committed flush it lacks.
            with contextlib.suppress(StateDirError, duckdb.Error):
                self.aggregator.reload()
            if executor is not None:
                if exit_code == EXIT_INTERRUPTED:
                    # The workers flush what they counted since their last flush (at most one page each
                    # to finish): the partial report holds it, and the resume starts where they stopped.
                    with contextlib.suppress(Exception):
                        for event in executor.wind_down(WIND_DOWN_SECONDS, cut=lambda: bool(again)):
                            if isinstance(event, Flushed | Finished):
                                self._handle(event, executor)
                executor.terminate()
                with contextlib.suppress(Exception):  # a figure of the report, never a reason to fail it
                    self.tally.helper_cpu = executor.helper_cpu_seconds()
            self.checkpoint.settle()  # an interrupted read may have left its result unfinished
            with contextlib.suppress(StateDirError, duckdb.Error):
                self.aggregator.reload()  # an interrupt may have landed between a commit and its merge
            report = self.report(partial=True)
            report.setdefault("warnings", [])  # a list in every report (SPEC section 6); judged once it is whole
        return Outcome(report, exit_code, message)

    def _finish(self, deliver: Callable[[dict[str, Any]], None] | None) -> Outcome:
        """The final report, handed to ``deliver`` before the checkpoint says the run finished.

        "Finished" is written only when the checkpoint holds every slice as done.
        """
        left = self.checkpoint.open_slices()
        if left:
            return self._unfinished(left)
        report = self.report(partial=False)
        # The data check of SPEC section 1: a crawl that found nothing to count, or mostly rejects (exit 4).
        warnings = report.setdefault("warnings", [])
        by_id = make_paginator(self.settings.api).slicing == "id"  # there a duplicate is a page served again
        warnings += data_warnings(
            self.aggregator.total.records,
            self.settings.crawl.max_rejected_share,
            judged_fields(self.settings),
            unique_id=None if by_id else self.settings.fields.id,
        )
        warnings += self._early_end_warnings()
        if not by_id:
            warnings += self._repeat_warnings()
        # From the report's delivery to the mark that the run finished, an interrupt is not acted on: the
        # report files are the finished run's, so a "resume" after them would be a new crawl.
        with held(redeliver=False):
            if deliver is not None:
                deliver(report)
            left = self.checkpoint.mark_finished()
        if left:
            return self._unfinished(left)
        if warnings:
            return Outcome(report, EXIT_DATA_SUSPECT, "the data does not look right:\n  " + "\n  ".join(warnings))
        return Outcome(report)

    def _repeat_warnings(self) -> list[str]:
        """A warning when records of one id were counted by two slices of a positional crawl.

        A slice counts an id once however often it is served; two slices cannot see each other's ids, so a
        row the API's order moved across a slice's end while the crawl ran (rows inserted or re-sorted
        before it) is counted in both. The ids each slice took are committed with its flushes: the copies
        are found here, and the report says that its figures hold them instead of passing them as exact.
        """
        ids, copies = self.checkpoint.repeated_across_slices()
        if not ids:
            return []
        return [
            f"{ids:,} record id(s) were counted by two or more slices ({copies:,} extra cop"
            f"{'y' if copies == 1 else 'ies'}): the API listed them in two slices' rows (it holds copies of one "
            "id, or its order changed while the crawl ran: rows inserted or re-sorted before them moved them "
            "across a slice's end, or its total is too high and it answers positions past its data with its "
            f"last page), so the figures count up to {copies:,} record(s) twice, and rows an order "
            "change moved the other way may be missing; crawl with crawl.slices: 1 (each id then counts once), "
            "or the API in an order that does not change (sorted by id, or by creation time)"
        ]

    def _early_end_warnings(self) -> list[str]:
        """A warning when the API ended the data of some slice below an id it showed during discovery."""
        if self.bounds is None or not self.bounds.known_ids:
            return []
        states = [(state.slice, state.high_water, state.done) for state in self.checkpoint.states()]
        ends = early_ends(states, self.bounds.known_ids)
        if not ends:
            return []
        index, high_water, missed = ends[0]
        key = self.settings.api.next_path_key()
        hint = (
            f"check api.{key} ('{getattr(self.settings.api, key)}'): an answer without it ends a crawl, "
            "which on a page that is not full looks like the end of the data"
            if key is not None
            else "check the api settings"
        )
        return [
            f"the API ended the data of {len(ends)} slice(s) below ids it had shown while the id range was "
            f"found (slice {index} stopped after id {high_water:,}, but id {missed:,} exists), so records are "
            f"missing: {hint}; or fields.id ('{self.settings.fields.id}') is not the id the API pages by; or the "
            "API lost records during the crawl"
        ]

    def _unfinished(self, left: int) -> Outcome:
        message = (
            f"the workers stopped with {left} slice(s) of the id range not done, which is a bug in Lifestats; "
            f"progress is checkpointed in {self.state_dir}: run the same command to resume"
        )
        return self._stop(None, 1, message)

    def _handle(self, event: Event, executor: Executor) -> Failed | None:
        if not isinstance(event, Lost | Failed):
            self.last_moved = time.monotonic()
        if isinstance(event, Progress):
            return None
        self._count_usage(event)
        if isinstance(event, Flushed):
            flush = event.flush
            self.tally.requests += flush.requests
            self.tally.retries += flush.retries
            if self.aggregator.apply(flush):
                self.tally.pages += flush.pages
                self.unsplittable.discard(flush.slice)
        elif isinstance(event, Split):
            if self.proposal == event.slice:
                self.proposal = None
            if event.accepted:
                self._split(event, executor)
            else:
                self.unsplittable.add(event.slice)
        elif isinstance(event, Lost):
            return self._resubmit(event, executor)
        elif isinstance(event, Failed):
            return event
        elif isinstance(event, Finished) and self.proposal == event.slice:
            self.proposal = None  # it ended before it read the proposal
        return None

    def _count_usage(self, event: Event) -> None:
        """Add what a worker reported spending (CPU, peak memory) to the run's figures."""
        usage = event.flush if isinstance(event, Flushed) else event
        if isinstance(usage, Flush | Finished | Failed):
            self.tally.worker_cpu += usage.cpu_seconds
            self.tally.worker_peak_rss = max(self.tally.worker_peak_rss, usage.peak_rss_bytes)

    def _split(self, event: Split, executor: Executor) -> None:
        """Apply a split the worker accepted, if the checkpoint agrees it is still valid."""
        new = self.checkpoint.split(event.slice, event.attempt, event.new_end)
        if new is not None:
            self.tally.splits += 1
            executor.submit(self._task(self.checkpoint.begin_attempt(new.slice.index)))
            return
        state = self.checkpoint.state(event.slice)
        if state.attempt == event.attempt and not state.done:
            # The worker of the current attempt now stops at new_end, but the checkpoint kept the slice
            # whole: run the slice again from its last commit so that its range is crawled to the end.
            executor.submit(self._task(self.checkpoint.begin_attempt(event.slice)))

    def _resubmit(self, event: Lost, executor: Executor) -> Failed | None:
        index = event.task.slice.index
        if self.proposal == index:
            self.proposal = None
        self.tally.lost += 1
        losses = self.tally.losses[index] = self.tally.losses.get(index, 0) + 1
        if losses > MAX_LOSSES_PER_SLICE:
            return Failed(
                index,
                event.task.attempt,
                f"slice {index} lost its worker {losses} times (last exit code {event.exitcode}); giving up",
                1,
            )
        if not self.checkpoint.state(index).done:
            executor.submit(self._task(self.checkpoint.begin_attempt(index)))
        return None

    def _maybe_split(self, executor: Executor) -> None:
        """When a worker would idle, ask the slice with the most work left to hand over half of it (the
        worker chooses where: it knows how far it really is)."""
        if self.proposal is not None or executor.idle() == 0:
            return
        best: tuple[float, Task, int] | None = None
        minimum = MIN_SPLIT_PAGES
        for task in executor.running():
            state = self.checkpoint.state(task.slice.index)
            if state.done or state.attempt != task.attempt or state.slice.index in self.unsplittable:
                continue
            offset = _offset(state)
            if offset is None:  # only a crawl by id offsets can be cut at an id
                continue
            end = state.slice.end if state.slice.end is not None else self._estimated_end()
            left = end - offset
            if left < 2:
                continue
            crawled = offset - state.slice.begin
            pages_left = left * state.pages / crawled if state.pages and crawled > 0 else 0.0
            if pages_left >= minimum and (best is None or pages_left > best[0]):
                best = (pages_left, task, end)
        if best is not None:
            _, task, until = best
            self.proposal = task.slice.index
            executor.propose_split(task, until)

    def _estimated_end(self) -> int:
        return self.bounds.estimated_end if self.bounds is not None else 0

    def _task(self, state: SliceState) -> Task:
        """The task of a slice's new attempt, from its committed state (and the ids it took, if any)."""
        assert state.position is not None
        taken = self.checkpoint.taken(state.slice.index)
        horizon = self._horizon(state.slice)
        lowest, known = self._lowest(state.slice), self._known()
        return Task(
            state.slice, state.attempt, state.position, state.high_water, state.seq, taken, horizon, lowest, known
        )

    def _known(self) -> int | None:
        """The highest id discovery saw (see :attr:`Task.known`)."""
        return self.bounds.known_ids[-1] if self.bounds is not None and self.bounds.known_ids else None

    def _lowest(self, piece: Slice) -> bool:
        """Whether the slice is the lowest of an id range that discovery found (see :attr:`Task.lowest`)."""
        return piece.index == 0 and self.settings.api.first_id is None

    def _starts(self, slices: list[Slice]) -> dict[int, Any]:
        """Where the lowest slice starts its crawl when discovery found the id range: at the page where the
        lowest id was found, so that the records before that id are read too (see :attr:`Bounds.floor`)."""
        floor = self.bounds.floor if self.bounds is not None else None
        if floor is None or not slices or not self._lowest(slices[0]) or floor >= slices[0].begin:
            return {}
        return {slices[0].index: floor}

    def _horizon(self, piece: Slice) -> int | None:
        """For the open last slice of a crawl by id, where the data ended when the run found its id range
        (see :attr:`Task.horizon`)."""
        if piece.end is not None or self.bounds is None or make_paginator(self.settings.api).slicing != "id":
            return None
        return self.bounds.estimated_end

    # -- output -------------------------------------------------------------------------------------
    def _notify(self, on_progress: Callable[[Snapshot], None] | None) -> None:
        if on_progress is None:
            return
        states = self.checkpoint.states()
        total = done = 0
        for state in states:
            end = state.slice.end if state.slice.end is not None else self._estimated_end()
            width = max(end - state.slice.begin, 1)
            total += width
            if state.done:
                reached = end
            else:
                offset = _offset(state)
                if offset is None and state.high_water is not None:
                    offset = state.high_water + 1
                reached = min(offset, end) if offset is not None else state.slice.begin
            done += max(reached - state.slice.begin, 0)
        on_progress(
            Snapshot(
                fraction=min(done / max(total, 1), 1.0),
                pages=self.tally.pages,
                records=self.aggregator.total.records["fetched"] - self.records_before,
                requests=self._requests(),
                elapsed=time.monotonic() - self.t0,
                slices_done=sum(1 for s in states if s.done),
                slices=len(states),
                waiting=self._waiting(),
            )
        )

    def _planned_slices(self) -> int | None:
        try:
            planned = self.checkpoint.get("planned_slices")
        except duckdb.Error:  # a broken state dir: the partial report is written all the same
            return None
        return planned if isinstance(planned, int) else None

    def _requests(self) -> int:
        """The run's requests. The coordinator's limiter counts every request sent through it: discovery's
        and, on one machine, every worker's, whether or not a flush reported it since (a worker killed, the
        workers stopped after a failure). On a cluster the workers send through the cluster's limiter and
        their flushes' counts stand (a lost worker's requests since its last flush are missing)."""
        return max(self.tally.requests, self.limiter.sent())

    def _retries(self) -> int:
        """The run's retries, counted the same way as its requests (the limiter is told which sends repeat
        one that failed), so a killed worker's retries since its last flush are in too."""
        return max(self.tally.retries, self.limiter.retried())

    def report(self, *, partial: bool) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        tally = self.tally
        run = {
            "env": self.env,
            "mode": self.settings.stats.mode,
            "as_of": self.as_of.isoformat(),
            "started_at": self.started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "slices": self._planned_slices(),
            "workers": self.settings.crawl.workers,
            "requests": self._requests(),
            "retries": self._retries(),
            "rate_limit": self.settings.crawl.rate_limit,
            "achieved_rate": round(self._requests() / elapsed, 3),
            "resumed": self.resumed,
            "workers_lost": tally.lost,
            "slices_split": tally.splits,
            # Figures of this run (a resumed run counts only its own records and CPU).
            "records_per_second": round((self.aggregator.total.records["fetched"] - self.records_before) / elapsed, 1),
            # the coordinator, every worker and the server that forks them
            "cpu_seconds": round(self.cpu.total() + tally.worker_cpu + tally.helper_cpu, 3),
            "peak_rss_bytes": peak_rss_bytes(),  # the coordinator's
            "worker_peak_rss_bytes": tally.worker_peak_rss,  # the largest of the workers'
        }
        self.checkpoint.for_reading()
        try:
            report = build_report(self.aggregator.total, self.settings, self.as_of, run, partial=partial)
        except duckdb.Error as exc:  # the exact facts' queries: out of memory (keys of megabytes), a full disk
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StateDirError(
                f"DuckDB could not answer the report's queries over the exact facts ({first}); progress is "
                f"checkpointed in {self.state_dir}. Keys (items, categories, visitors) of many kilobytes each "
                f"can need more than DuckDB's {MEMORY_LIMIT} buffer and its spill files: stats.mode: approx "
                "counts without them"
            ) from None
        # Building the report is part of the run: its queries can be the coordinator's largest moment.
        run["cpu_seconds"] = round(self.cpu.total() + tally.worker_cpu + tally.helper_cpu, 3)
        run["peak_rss_bytes"] = peak_rss_bytes()
        return report


def _offset(state: SliceState) -> int | None:
    """The slice's position when it is an id offset (the crawl by id offsets), else None."""
    position = state.position
    if state.done or not isinstance(position, int) or isinstance(position, bool):
        return None
    return position
