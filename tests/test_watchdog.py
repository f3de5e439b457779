"""Nothing waits for ever: a job whose requests stop moving ends, and so do workers that cannot start."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lifestats.executor import LocalExecutor, WorkerSetup
from lifestats.limiter import SharedRateLimiter
from lifestats.run import Snapshot
from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.server import MockServer
from mocks.source import ListSource

from .conftest import AS_OF, job_settings, run, run_main, statistics

DATA = generate(DatasetSpec(seed=41, records=6_000))


class Hanging:
    """A page source that, once ``hang`` is set, never answers (until released) after ``after`` pages."""

    def __init__(self, inner: Any, after: int) -> None:
        self.inner = inner
        self.after = after
        self.served = 0
        self.hang = True
        self.release = threading.Event()
        self.hung = threading.Event()
        self._lock = threading.Lock()

    def page(self, offset: int, limit: int) -> tuple[list[dict], int | None]:
        with self._lock:
            self.served += 1
            stuck = self.hang and self.served > self.after
        if stuck:
            self.hung.set()
            self.release.wait(120)
        return self.inner.page(offset, limit)


def test_a_job_whose_requests_never_end_stops_with_a_clear_message_and_resumes(state_dir: Path) -> None:
    source = Hanging(DATA, after=25)
    with MockServer(source) as server:
        try:
            settings = job_settings(
                server.url,
                api={"page_size": 100, "timeout": 600},  # each read may wait 10 minutes: only the watchdog helps
                crawl={"slices": 6, "workers": 2, "flush_every": 2, "stall_timeout": 2},
            )
            outcome = run(settings, state_dir)
        finally:
            source.release.set()
        print(f"\nstalled: exit {outcome.exit_code}: {outcome.message}")
        assert source.hung.is_set()
        assert outcome.exit_code == 3
        assert "no request to the API was sent or answered in the last" in (outcome.message or "")
        assert "run the same command to resume" in (outcome.message or "")
        assert outcome.report["partial"] is True
        source.hang = False
        again = run(settings, state_dir)
    assert again.exit_code == 0 and again.report["run"]["resumed"] is True
    assert statistics(again.report) == ground_truth(DATA, as_of=AS_OF)


def test_a_pause_asked_by_the_api_is_waiting_not_a_stall(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every request is slower than the stall limit, but the limiter says the API asked for a pause.
    monkeypatch.setattr(SharedRateLimiter, "paused_for", lambda self: 7.5, raising=False)
    snapshots: list[Snapshot] = []
    with MockServer(DATA, latency=0.6) as server:
        settings = job_settings(
            server.url,
            api={"page_size": 1000, "first_id": DATA.first_id, "last_id": DATA.end_id},
            crawl={"slices": 3, "workers": 3, "stall_timeout": 0.2},
        )
        outcome = run(settings, state_dir, on_progress=snapshots.append)
    assert outcome.exit_code == 0, outcome.message
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)
    assert snapshots and all(s.waiting == 7.5 for s in snapshots)


def test_workers_that_die_at_start_up_are_not_respawned_for_ever(
    state_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    starts: list[int] = []

    def broken_workers(workers: int, setup: WorkerSetup) -> LocalExecutor:
        # Workers whose windows cannot be computed: each one fails in PageCounter at start-up (the year 1
        # begins at 00:00 UTC, before any time of America/New_York's local mean time).
        bad = dataclasses.replace(setup, as_of=datetime(1, 1, 1, tzinfo=UTC))
        executor = LocalExecutor(workers, bad, context="spawn")  # spawn: their stderr is this test's
        starts.append(workers)
        return executor

    with MockServer(DATA) as server:
        settings = job_settings(server.url, crawl={"slices": 4, "workers": 2}, stats={"timezone": "America/New_York"})
        outcome = run(settings, state_dir, executor_factory=broken_workers)
    err = capfd.readouterr().err
    print(f"\nstart-up deaths: exit {outcome.exit_code}: {outcome.message}")
    assert outcome.exit_code == 1
    assert "died at start-up 3 times" in (outcome.message or "")
    assert "OverflowError" in (outcome.message or "") or "ValueError" in (outcome.message or "")
    assert "run the same command" not in (outcome.message or "")  # resuming would meet the same crash
    assert "Traceback" not in err


def test_an_as_of_whose_windows_cannot_be_computed_is_refused_before_any_request(tmp_path: Path) -> None:
    with MockServer(DATA) as server:
        (tmp_path / "config.yml").write_text(json.dumps({"test": {"api": {"url": server.url}}}))
        result = run_main(
            "--env", "test", "--no-progress", "--as-of", "0001-01-01T00:00:00+00:00", "--state-dir", "s", cwd=tmp_path
        )
        requests = len(server.log)
    print(f"\n--as-of 0001-01-01: exit {result.returncode}: {result.stderr.strip()}")
    assert result.returncode == 2
    assert "--as-of" in result.stderr and "Traceback" not in result.stderr
    assert requests == 0


def test_the_stall_limit_leaves_room_for_slow_answers_retry_waits_and_low_rates() -> None:
    from lifestats.run import stall_seconds

    assert stall_seconds(job_settings("http://x.test/e", api={"timeout": 10}, crawl={"rate_limit": 100})) >= 60
    assert stall_seconds(job_settings("http://x.test/e", api={"timeout": 50}, crawl={"rate_limit": 100})) >= 150
    assert stall_seconds(job_settings("http://x.test/e", crawl={"backoff_max": 90, "rate_limit": 100})) >= 180
    assert stall_seconds(job_settings("http://x.test/e", crawl={"rate_limit": 0.01})) >= 3 * 100
    assert stall_seconds(job_settings("http://x.test/e", crawl={"stall_timeout": 5})) == 5


def test_workers_that_cannot_be_started_end_the_job_in_one_line_and_a_second_run_is_exact(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forkserver that starts the workers gone (as when this user cannot run its interpreter): it
    used to end the job with multiprocessing's traceback."""
    from multiprocessing import forkserver

    def refused(fds: Any) -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    with MockServer(DATA) as server:
        settings = job_settings(server.url, crawl={"slices": 4, "workers": 2})
        with monkeypatch.context() as patch:
            patch.setattr(forkserver, "connect_to_new_process", refused)
            outcome = run(settings, state_dir)
        assert outcome.exit_code == 1
        assert "could not start a worker process (ConnectionRefusedError" in (outcome.message or "")
        print(f"\nno forkserver: exit {outcome.exit_code}: {outcome.message}")
        assert "Traceback" not in (outcome.message or "")
        again = run(settings, state_dir)
    assert again.exit_code == 0, again.message
    assert statistics(again.report) == ground_truth(DATA, as_of=AS_OF)


def test_a_worker_stuck_in_a_bot_pattern_is_named_not_the_api(state_dir: Path) -> None:
    """'(a+)+$' against 'aaa...a!' backtracks for hours and holds the interpreter's lock, so the worker's
    heartbeat stops too. The job used to stop with exit 3, blaming the API ("the API or the network is not
    answering") and advising a resume that would stall the same way."""
    records = [{"id": i, "item": f"i{i % 3}", "user_agent": "a" * 32 + "!"} for i in range(1, 201)]
    with MockServer(ListSource(records)) as server:
        settings = job_settings(
            server.url,
            fields={"category": None, "visitor": None, "timestamp": None, "ip": None},
            bots={"ips": [], "user_agents": ["(a+)+$"]},
            crawl={"slices": 2, "workers": 2, "stall_timeout": 5},
        )
        outcome = run(settings, state_dir)
    print(f"\nstuck: exit {outcome.exit_code}: {outcome.message}")
    assert outcome.exit_code == 1
    assert "has sent nothing, not even its heartbeat" in (outcome.message or "")
    assert "bots.user_agents" in (outcome.message or "")
    assert "the API or the network is not answering" not in (outcome.message or "")


def test_a_stopped_worker_is_named_as_stopped_not_as_a_bot_pattern(state_dir: Path) -> None:
    """A worker process stopped (SIGSTOP, Ctrl-Z, a debugger) sends no heartbeat either: it used to be
    blamed on a bots.user_agents pattern that backtracks, though it spent no CPU at all."""
    import os
    import signal

    executors: list[LocalExecutor] = []
    stopped: list[int] = []

    def factory(workers: int, setup: WorkerSetup) -> LocalExecutor:
        executors.append(LocalExecutor(workers, setup))
        return executors[0]

    with MockServer(DATA) as server:
        settings = job_settings(server.url, crawl={"slices": 4, "workers": 2, "stall_timeout": 5, "rate_limit": 20})

        def stopper() -> None:
            if server.request_log.wait_for(40, timeout=120):  # past discovery: the workers crawl
                stopped.append(executors[0].pids(busy_only=True)[0])
                os.kill(stopped[0], signal.SIGSTOP)

        thread = threading.Thread(target=stopper)
        thread.start()
        try:
            outcome = run(settings, state_dir, executor_factory=factory)
        finally:
            thread.join()
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
    print(f"\nstopped: exit {outcome.exit_code}: {outcome.message}")
    assert stopped and outcome.exit_code == 1
    assert f"(pid {stopped[0]}) has been stopped" in (outcome.message or "")
    assert "bots.user_agents" not in (outcome.message or "")
