"""The cluster-wide rate limit's slot book, its leasing client, and the same book in a real Redis."""

from __future__ import annotations

import bisect
import itertools
import random
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifestats import cluster_limiter
from lifestats import limiter as limiter_module
from lifestats.cluster_limiter import STALE_SECONDS, Lease, LeasedRateLimiter, RedisSlots, SlotBook

from .dask_cluster import redis_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_slots_are_given_once_and_at_least_the_spacing_apart() -> None:
    clock = Clock()
    book = SlotBook(100, clock=clock)
    moments: list[float] = []
    for spacing in (0.0, 0.035, 0.0, 0.05):
        lease = book.lease(6, spacing)
        slots = [clock.now + d for d in lease.delays]
        assert all(b - a >= max(spacing, book.interval) - 1e-9 for a, b in itertools.pairwise(slots))
        moments += slots
        clock.now += 0.013
    assert len({round(m, 9) for m in moments}) == len(moments)
    ordered = sorted(moments)
    assert all(b - a >= book.interval - 1e-9 for a, b in itertools.pairwise(ordered))


def test_unused_leases_do_not_hold_back_later_ones() -> None:
    """A worker that dies with a lease: its slots pass unused and the next lease starts now."""
    clock = Clock()
    book = SlotBook(100, clock=clock)
    book.lease(32, 0.0)  # never used
    clock.now += 1.0
    assert 0 <= book.lease(1, 0.0).delays[0] <= book.interval


def test_a_pause_moves_every_later_lease_behind_it() -> None:
    clock = Clock()
    book = SlotBook(100, clock=clock)
    book.pause(2.5)
    lease = book.lease(3, 0.0)
    assert lease.paused == pytest.approx(2.5)
    assert min(lease.delays) >= 2.5
    assert book.paused_for() == pytest.approx(2.5)


def busiest_second(rate: int, workers: list[tuple[int, float]], rounds: int, seed: int, late: float) -> int:
    """Workers lease slots of their own size and spacing, and send each up to ``late`` seconds after its
    moment: the most requests in any one-second window."""
    clock = Clock()
    book = SlotBook(rate, clock=clock)
    lateness = random.Random(seed)
    sent: list[float] = []
    for _ in range(rounds):
        for count, spacing in workers:
            sent += [clock.now + d + lateness.uniform(0, late) for d in book.lease(count, spacing).delays]
        clock.now += 0.05
    sent.sort()
    return max(bisect.bisect_left(sent, t + 1.0) - i for i, t in enumerate(sent))


@settings(max_examples=80, deadline=None)
@given(
    rate=st.sampled_from([100, 250, 1000]),
    workers=st.lists(st.tuples(st.integers(1, 32), st.floats(0.0, 0.05)), min_size=1, max_size=6),
    rounds=st.integers(3, 30),
    seed=st.integers(0, 2**32),
)
def test_no_second_holds_more_than_the_rate(
    rate: int, workers: list[tuple[int, float]], rounds: int, seed: int
) -> None:
    assert busiest_second(rate, workers, rounds, seed, late=STALE_SECONDS) <= rate


def test_the_window_bound_needs_stale_slots_dropped() -> None:
    """Slots sent up to 50 ms after their moment (five times STALE_SECONDS) do overfill some second."""
    assert max(busiest_second(100, [(8, 0.0)] * 4, 60, seed, late=0.05) for seed in range(5)) > 100


class ScriptedSlots:
    """A slot source that hands out given leases and records pauses."""

    def __init__(self, *leases: list[float]) -> None:
        self.leases = list(leases)
        self.asked: list[tuple[int, float]] = []
        self.pauses: list[float] = []

    def lease(self, count: int, spacing: float) -> Lease:
        self.asked.append((count, spacing))
        return Lease(self.leases.pop(0), 0.0)

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


def test_slots_gone_stale_are_dropped_not_sent_in_a_burst() -> None:
    source = ScriptedSlots([-2.0, -1.0, 0.0], [0.0])
    limiter = LeasedRateLimiter("stale", 100, source)
    limiter.acquire()
    assert limiter.wasted == 2
    limiter.acquire()  # the lease is used up: a new one
    assert len(source.asked) == 2


def test_a_pause_reaches_the_shared_book() -> None:
    source = ScriptedSlots()
    limiter = LeasedRateLimiter("pause", 100, source)
    limiter.pause(3.0)
    assert source.pauses == [3.0]
    assert 2.0 < limiter.paused_for() <= 3.0


# ------------------------------------------------------------------------------------ a real Redis


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def test_redis_book_gives_each_slot_once_with_the_spacing_and_the_pause(redis_url: str) -> None:
    import redis

    first = RedisSlots(redis_url, "redis-test", 100)
    second = RedisSlots(redis_url, "redis-test", 100)  # another worker, another connection
    second.pause(5.0)  # every slot below is then in the future, none forgotten as past
    a = first.lease(10, 0.0)
    b = second.lease(10, 0.05)
    assert 4.0 < a.paused <= 5.0
    assert min(a.delays + b.delays) >= 4.0
    assert all(y - x >= first.interval - 1e-6 for x, y in itertools.pairwise(a.delays))
    assert all(y - x >= 0.05 - 1e-6 for x, y in itertools.pairwise(b.delays))
    assert redis.Redis.from_url(redis_url).zcard("lifestats:redis-test:taken") == 20  # twenty distinct slots
    first.forget()


class _LateSleeps:
    """``time`` as a loaded machine gives it: every ``sleep`` wakes 15 ms late, past any slot's use-by."""

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds + 1.5 * STALE_SECONDS)


def _sends(limiter: LeasedRateLimiter, count: int) -> bool:
    """Whether a thread acquires ``count`` slots within a minute (it may loop for ever: it is a daemon)."""
    done = threading.Event()

    def send() -> None:
        for _ in range(count):
            limiter.acquire()
        done.set()

    threading.Thread(target=send, daemon=True).start()
    return done.wait(60)


def test_a_thread_whose_every_sleep_wakes_late_still_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    """It used to lose every slot it leased and never return (a cluster job stalled for a minute, then
    ended with exit 3 blaming the API): after a late wake-up the next slot is waited for awake."""
    monkeypatch.setattr(cluster_limiter, "time", _LateSleeps())
    monkeypatch.setattr(limiter_module, "time", _LateSleeps())  # the wait for a slot sleeps there
    limiter = LeasedRateLimiter("late", 100, SlotBook(100))
    assert _sends(limiter, 5), f"no send after {limiter.wasted} lost slots"
    assert limiter.wasted <= 5  # one lost slot per send at most


class _LateWaits(_LateSleeps):
    """A machine so loaded that a thread is off the CPU longer than a slot stays usable even while it
    spins: every wait for a moment ends 15 ms past it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


def test_a_thread_that_misses_every_slot_even_spinning_still_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every wait ending late, spinning included, the thread lost every slot for ever: the job
    stalled, then blamed the API. After LATE_SEND_AFTER lost slots in a row it sends on the next one."""
    clock = _LateWaits()

    def late_wait(moment: float, spin: float = 0.0) -> None:
        clock.offset = max(clock.offset, moment - time.monotonic() + 1.5 * STALE_SECONDS)

    monkeypatch.setattr(cluster_limiter, "time", clock)
    monkeypatch.setattr(cluster_limiter, "wait_until", late_wait)
    book = SlotBook(100, clock=clock.monotonic)
    limiter = LeasedRateLimiter("late-waits", 100, book)
    assert _sends(limiter, 3), f"no send after {limiter.wasted} lost slots"
    assert limiter.late_sends == 3
    assert limiter.wasted <= 3 * cluster_limiter.LATE_SEND_AFTER
