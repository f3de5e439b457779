"""The coordinator: plan the slices, hand them to an executor, apply its flushes, build the report.

It owns the checkpoint (through the :class:`~lifestats.merge.Aggregator`), re-submits a slice whose
worker died from that slice's last commit, and on Ctrl-C or an API failure stops the workers and
returns a report marked partial; the same command run again resumes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import Settings, fingerprint
from .errors import CheckpointMismatch
from .executor import Executor, Failed, Finished, Flushed, LocalExecutor, Lost, WorkerSetup
from .fetch import ApiClient
from .limiter import SharedRateLimiter
from .merge import REJECTS_FILE, Aggregator, Checkpoint, SliceState
from .plan import Bounds, discover, plan_slices
from .report import build_report
from .task import Task

MAX_LOSSES_PER_SLICE = 3
EXIT_INTERRUPTED = 130


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


@dataclass
class Outcome:
    report: dict[str, Any]
    exit_code: int = 0
    message: str | None = None


@dataclass
class _Tally:
    requests: int = 0
    retries: int = 0
    pages: int = 0
    lost: int = 0
    losses: dict[int, int] = field(default_factory=dict)


ExecutorFactory = Callable[[int, WorkerSetup], Executor]


def local_executor(workers: int, setup: WorkerSetup) -> Executor:
    return LocalExecutor(workers, setup)


@contextlib.contextmanager
def api_url(settings: Settings) -> Iterator[str]:
    """The URL to crawl; ``embedded`` starts the bundled mock API on loopback for the run."""
    if settings.api.url != "embedded":
        yield settings.api.url
        return
    from mocks.server import serve_in_subprocess

    mock = settings.mock
    url, stop = serve_in_subprocess(
        replay=mock.dataset == "lifesum",
        seed=mock.seed,
        records=mock.records,
        latency=mock.latency,
        empty_share=mock.empty_share,
    )
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
) -> Outcome:
    started = datetime.now(UTC)
    t0 = time.monotonic()
    if fresh:
        Checkpoint.remove(state_dir)
    checkpoint = Checkpoint(state_dir)
    try:
        if checkpoint.get("finished"):
            checkpoint.close()
            Checkpoint.remove(state_dir)
            checkpoint = Checkpoint(state_dir)
        resumed = checkpoint.claim(fingerprint(settings))
        as_of = _settle_as_of(checkpoint, as_of, resumed)
        with api_url(settings) as url:
            run_settings = settings.model_copy(update={"api": settings.api.model_copy(update={"url": url})})
            return _crawl(
                run_settings,
                env,
                checkpoint,
                state_dir,
                as_of,
                token,
                on_progress,
                executor_factory,
                started,
                t0,
                resumed,
            )
    finally:
        checkpoint.close()


def _settle_as_of(checkpoint: Checkpoint, as_of: datetime | None, resumed: bool) -> datetime:
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


def _crawl(
    settings: Settings,
    env: str,
    checkpoint: Checkpoint,
    state_dir: Path,
    as_of: datetime,
    token: str | None,
    on_progress: Callable[[Snapshot], None] | None,
    executor_factory: ExecutorFactory,
    started: datetime,
    t0: float,
    resumed: bool,
) -> Outcome:
    tally = _Tally()
    limiter = SharedRateLimiter(settings.crawl.rate_limit)
    states = checkpoint.states()
    bounds_data = checkpoint.get("bounds")
    if not states:
        with ApiClient(settings.api, settings.crawl, limiter, token=token) as client:
            bounds = discover(client.get_page, settings.fields.id, settings.api.first_id, settings.api.last_id)
            tally.requests += client.counts.requests
            tally.retries += client.counts.retries
        checkpoint.save_plan(plan_slices(bounds, settings.crawl.slices))
        checkpoint.put("bounds", bounds.__dict__)
        states = checkpoint.states()
    else:
        bounds = Bounds(**bounds_data)
    aggregator = Aggregator(checkpoint, state_dir / REJECTS_FILE)
    progress = {s.slice.index: _fraction(s, bounds) for s in states}
    records_done = aggregator.total.records["fetched"]

    def report(partial: bool) -> dict[str, Any]:
        elapsed = max(time.monotonic() - t0, 1e-9)
        run = {
            "env": env,
            "mode": settings.stats.mode,
            "as_of": as_of.isoformat(),
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "slices": len(states),
            "workers": settings.crawl.workers,
            "requests": tally.requests,
            "retries": tally.retries,
            "rate_limit": settings.crawl.rate_limit,
            "achieved_rate": round(tally.requests / elapsed, 3),
            "resumed": resumed,
            "workers_lost": tally.lost,
        }
        return build_report(aggregator.total, settings, as_of, run, partial=partial)

    def notify() -> None:
        if on_progress is not None:
            on_progress(
                Snapshot(
                    fraction=sum(progress.values()) / max(len(progress), 1),
                    pages=tally.pages,
                    records=aggregator.total.records["fetched"] - records_done,
                    requests=tally.requests,
                    elapsed=time.monotonic() - t0,
                    slices_done=sum(1 for v in progress.values() if v >= 1.0),
                    slices=len(progress),
                )
            )

    todo = [s for s in states if not s.done]
    if not todo:
        checkpoint.put("finished", True)
        return Outcome(report(partial=False))
    setup = WorkerSetup(settings=settings, as_of=as_of, limiter=limiter, token=token)
    executor = executor_factory(min(settings.crawl.workers, len(todo)), setup)
    failure: Failed | None = None
    try:
        for state in todo:
            executor.submit(_task(checkpoint.begin_attempt(state.slice.index)))
        notify()
        while executor.busy() and failure is None:
            for event in executor.events(timeout=0.25):
                if isinstance(event, Flushed):
                    flush = event.flush
                    tally.requests += flush.requests
                    tally.retries += flush.retries
                    if aggregator.apply(flush):
                        tally.pages += flush.pages
                        progress[flush.slice] = _fraction(checkpoint.state(flush.slice), bounds)
                elif isinstance(event, Lost):
                    failure = _resubmit(event, checkpoint, executor, tally)
                elif isinstance(event, Failed):
                    failure = event
                elif isinstance(event, Finished):
                    pass
            notify()
    except KeyboardInterrupt:
        _stop(executor, failed=True)
        return Outcome(report(partial=True), EXIT_INTERRUPTED, "interrupted: run the same command to resume")
    if failure is not None:
        _stop(executor, failed=True)
        message = f"{failure.message}\nprogress is checkpointed in {state_dir}: run the same command to resume"
        return Outcome(report(partial=True), failure.exit_code, message)
    _stop(executor, failed=False)
    checkpoint.put("finished", True)
    return Outcome(report(partial=False))


def _task(state: SliceState) -> Task:
    assert state.cursor is not None
    return Task(state.slice, state.attempt, state.cursor, state.high_water, state.seq)


def _resubmit(event: Lost, checkpoint: Checkpoint, executor: Executor, tally: _Tally) -> Failed | None:
    index = event.task.slice.index
    tally.lost += 1
    tally.losses[index] = tally.losses.get(index, 0) + 1
    if tally.losses[index] > MAX_LOSSES_PER_SLICE:
        return Failed(
            index,
            event.task.attempt,
            f"slice {index} lost its worker {tally.losses[index]} times (last exit code {event.exitcode}); giving up",
            1,
        )
    state = checkpoint.state(index)
    if not state.done:
        executor.submit(_task(checkpoint.begin_attempt(index)))
    return None


def _stop(executor: Executor, *, failed: bool) -> None:
    if failed:
        executor.terminate()
    else:
        executor.close()


def _fraction(state: SliceState, bounds: Bounds) -> float:
    if state.done:
        return 1.0
    end = state.slice.end if state.slice.end is not None else max(bounds.estimated_end, state.slice.begin + 1)
    width = max(end - state.slice.begin, 1)
    cursor = state.cursor if state.cursor is not None else end
    return min(max((cursor - state.slice.begin) / width, 0.0), 0.999)
