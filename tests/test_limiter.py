"""The shared limiter across processes: spacing from its own record of sends, pauses, a rate every process
sees, and processes stopped or killed at known points inside it (no durations are asserted)."""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lifestats.limiter import SPACING_MARGIN, TEST_STOP_ENV, SharedRateLimiter, wait_until
from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.server import MockServer

from .conftest import AS_OF, job_settings, run, statistics

CTX = mp.get_context("forkserver")
EPSILON = 1e-9  # float rounding of monotonic times
PATIENCE = 60.0  # far longer than any wait below should take: only a wedged limiter reaches it


def _acquire(limiter: SharedRateLimiter, n: int) -> None:
    for _ in range(n):
        limiter.acquire()


def _retry(limiter: SharedRateLimiter, n: int) -> None:
    for _ in range(n):
        limiter.acquire(retry=True)


def _pause(limiter: SharedRateLimiter, seconds: float) -> None:
    limiter.pause(seconds)


def _set_rate(limiter: SharedRateLimiter, per_second: float) -> None:
    limiter.set_rate(per_second)


def _gaps(sends: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(sends)]


def _assert_spaced(limiter: SharedRateLimiter, sends: list[float], interval: float | None = None) -> None:
    step = limiter.interval if interval is None else interval
    assert sends == sorted(sends)
    short = [gap for gap in _gaps(sends) if gap < step - EPSILON]
    assert not short, f"{len(short)} sends closer than {step * 1000:.3f} ms to the previous one: {short[:5]}"


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll a real condition (a file, a count) until it holds; fail after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.005)


def _stopped_pid(path: Path) -> int:
    """The pid a process wrote at the test hook's stop point, once it has written it."""
    _wait_for(lambda: path.exists() and path.read_text() != "", f"a process to stop at {path.name}")
    return int(path.read_text())


def _joined(process: mp.process.BaseProcess) -> bool:
    process.join(timeout=PATIENCE)
    if process.is_alive():  # wedged: clean up, then fail
        process.kill()
        process.join()
        return False
    return process.exitcode == 0


def test_a_pause_from_one_process_holds_back_the_others() -> None:
    limiter = SharedRateLimiter(1000)
    assert limiter.paused_for() == 0.0
    start = time.monotonic()
    child = CTX.Process(target=_pause, args=(limiter, 0.3))
    child.start()
    assert _joined(child)
    limiter.acquire()
    assert time.monotonic() >= start + 0.3
    assert limiter.paused_for() == 0.0


def test_paused_for_is_what_is_left_of_the_longest_pause_any_process_asked_for() -> None:
    limiter = SharedRateLimiter(1000)
    child = CTX.Process(target=_pause, args=(limiter, 600.0))
    child.start()
    assert _joined(child)
    limiter.pause(1.0)  # a shorter pause does not cut the longer one short
    assert 1.0 < limiter.paused_for() <= 600.0


def test_sends_from_processes_and_threads_are_at_least_one_interval_apart() -> None:
    rate = 200.0
    limiter = SharedRateLimiter(rate, record_sends=200)
    children = [CTX.Process(target=_acquire, args=(limiter, 40)) for _ in range(3)]
    for child in children:
        child.start()
    # POSIX record locks do not separate the threads of one process: two threads here as well.
    threads = [threading.Thread(target=_acquire, args=(limiter, 40)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(_joined(child) for child in children)
    sends = limiter.sends()
    assert len(sends) == 200
    assert limiter.interval == SPACING_MARGIN / rate
    _assert_spaced(limiter, sends)


def test_every_process_s_sends_and_retries_are_counted_in_one_place() -> None:
    """The run reads its requests and retries from the limiter, so a worker killed before its next
    flush leaves its requests and retries counted."""
    limiter = SharedRateLimiter(1000)
    children = [CTX.Process(target=_acquire, args=(limiter, 3)), CTX.Process(target=_retry, args=(limiter, 2))]
    for child in children:
        child.start()
    assert all(_joined(child) for child in children)
    limiter.acquire(retry=True)
    limiter.acquire()
    assert (limiter.sent(), limiter.retried()) == (7, 3)


def test_the_rate_is_shared_and_changes_the_spacing() -> None:
    limiter = SharedRateLimiter(1000, record_sends=10)
    child = CTX.Process(target=_set_rate, args=(limiter, 40.0))
    child.start()
    assert _joined(child)
    assert limiter.rate == 40.0
    worker = CTX.Process(target=_acquire, args=(limiter, 5))
    worker.start()
    _acquire(limiter, 5)
    assert _joined(worker)
    _assert_spaced(limiter, limiter.sends(), SPACING_MARGIN / 40.0)


@pytest.mark.parametrize("rate", [0, -1, 0.001, math.nan, math.inf])
def test_a_rate_that_cannot_be_kept_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match=r"at least 0\.01 requests per second"):
        SharedRateLimiter(rate)
    with pytest.raises(ValueError, match=r"at least 0\.01 requests per second"):
        SharedRateLimiter(10).set_rate(rate)


@pytest.mark.parametrize("point", ["reserve", "commit", "reserved"])
def test_a_process_killed_inside_the_limiter_does_not_hold_up_the_others(
    point: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``reserve`` and ``commit`` stop inside the lock, ``reserved`` between reserving a slot and sending."""
    stop_file = tmp_path / "stopped"
    monkeypatch.setenv(TEST_STOP_ENV, f"{point}:{stop_file}")
    limiter = SharedRateLimiter(100, record_sends=50)
    victim = CTX.Process(target=_acquire, args=(limiter, 1))
    victim.start()
    assert _stopped_pid(stop_file) == victim.pid
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(timeout=PATIENCE)
    assert victim.exitcode == -signal.SIGKILL
    others = [CTX.Process(target=_acquire, args=(limiter, 10)) for _ in range(2)]
    for other in others:
        other.start()
    assert all(_joined(other) for other in others), "a process killed inside the limiter held up the others"
    sends = limiter.sends()
    assert len(sends) == 20  # the killed process never sent
    _assert_spaced(limiter, sends)


def test_a_late_wake_up_delays_the_next_sends_instead_of_bursting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process stopped between reserving its slot and sending, resumed long after that slot, while two
    others keep sending: its send and theirs stay at least one interval apart."""
    stop_file = tmp_path / "stopped"
    monkeypatch.setenv(TEST_STOP_ENV, f"reserved:{stop_file}")
    limiter = SharedRateLimiter(100, record_sends=100)
    late = CTX.Process(target=_acquire, args=(limiter, 1))
    late.start()
    pid = _stopped_pid(stop_file)
    others = [CTX.Process(target=_acquire, args=(limiter, 30)) for _ in range(2)]
    for other in others:
        other.start()
    _wait_for(lambda: len(limiter.sends()) >= 10, "ten sends by the others")
    os.kill(pid, signal.SIGCONT)
    assert _joined(late)
    assert all(_joined(other) for other in others)
    sends = limiter.sends()
    assert len(sends) == 61
    _assert_spaced(limiter, sends)


SMALL = generate(DatasetSpec(seed=3, records=20_000))


@pytest.mark.timeout(180)
def test_a_worker_killed_inside_the_limiter_during_a_job_leaves_the_report_exact(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop_file = tmp_path / "stopped"
    monkeypatch.setenv(TEST_STOP_ENV, f"reserve:{stop_file}")  # the first worker to reserve stops holding the lock
    killed: list[int] = []

    def kill_the_stopped_worker() -> None:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if stop_file.exists() and stop_file.read_text():
                pid = int(stop_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_the_stopped_worker, daemon=True)
    killer.start()
    with MockServer(SMALL) as server:
        settings = job_settings(server.url, crawl={"slices": 10, "workers": 3})
        outcome = run(settings, state_dir)
    killer.join()
    assert killed, "no worker stopped inside the limiter"
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["run"]["workers_lost"] == 1
    assert statistics(outcome.report) == ground_truth(SMALL, as_of=AS_OF)


def _leaves_late(limiter: SharedRateLimiter, lateness: float, left_at: Any) -> None:
    """Takes a turn, then lets the request leave ``lateness`` seconds after it (a descheduled thread)."""
    limiter.acquire()
    wait_until(limiter.sends()[0] + lateness)
    left_at.value = time.monotonic()
    limiter.left()


def test_a_request_that_leaves_late_spaces_the_next_send_from_when_it_left() -> None:
    """A worker's first request reached the server 15-50 ms after its turn, and the next worker's came one
    interval after the turn: 21 requests in the first second at a limit of 20 (audit X)."""
    limiter = SharedRateLimiter(10.0, record_sends=2)
    left_at = CTX.Value("d", 0.0)
    child = CTX.Process(target=_leaves_late, args=(limiter, 0.05, left_at))
    child.start()
    assert _joined(child)
    limiter.acquire()
    first, second = limiter.sends()
    assert left_at.value - first >= 0.05
    assert second - left_at.value >= limiter.interval
