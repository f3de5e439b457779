"""One request rate for a whole Dask cluster, retries and 429 pauses included.

Dask has no rate limit across workers (a ``Semaphore`` bounds concurrency, not rate), so Lifestats
brings one. It keeps the kind of schedule :class:`~lifestats.limiter.SharedRateLimiter` keeps, a
timeline of send slots ``1.03 / rate`` seconds apart of which each request takes one, but a worker does not ask for
every slot: it **leases a few at a time** and sleeps until each, so there is no round trip per request.

What runs where:

- **The slot book** (:class:`SlotBook`): the timeline and the pause, in one place for the cluster. By
  default it lives in the Dask **scheduler**, in the Lifestats extension that
  :class:`lifestats.cluster.LifestatsScheduler` (a scheduler plugin the coordinator registers) installs,
  and workers reach it through two handlers, lease and pause (:class:`SchedulerSlots`). The
  scheduler is already the one process every worker reaches and the one the whole cluster dies with, so
  keeping the book there adds no new process that can fail. The alternatives, measured by
  ``bench/cluster.py``: the same book as a Dask **actor** on one worker (:class:`ActorSlots`; it dies
  with that worker, which then stops every other), and a **Redis** server with an atomic Lua script
  doing the same lease (:class:`RedisSlots`; one more service to run).
- **The leasing client** (:class:`LeasedRateLimiter`, the ``RateLimiter`` the crawl calls): in each Dask
  worker process, one lease per thread. It measures how long its thread works between two requests
  (the request and the counting of its page) and asks for slots that far apart, enough for about
  ``LEASE_SECONDS``, so a worker gets slots it can use, interleaved with the other workers' slots.
- **The coordinator** registers the plugin and drops the run's book at the end; it sends no request
  through the book (it discovers the id range before any task starts).

Why it holds: a slot is a moment on the cluster's timeline, not a token. A lease is returned as delays
from the book's "now", which the worker adds to its own clock when the answer arrives (so machines
need no common clock; a slower answer only moves its slots later, by at most its round trip). A slot
not sent within ``STALE_SECONDS`` of its moment, less that round trip (the bound below assumes
workers reach the book within a few milliseconds, as on a LAN), is dropped (a thread that was
busy, or woke up late on a loaded machine), never sent late in a burst; so a worker that dies or
stalls while holding a lease costs the cluster at most its lease: nobody waits for it, the timeline
moves on. In any one-second window at most ``(1 + STALE_SECONDS) * rate / 1.03 + 1`` requests leave,
which is the rate or less from 100 per second up, with 10 ms to spare for the way to the API. A 429
pauses the book: leases start after the pause, and a worker learns of it at its next lease, so each
other worker may send what is left of its current lease (a few requests, at most ``LEASE_SECONDS``
worth) into the pause.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .limiter import wait_until

# Slots are this much wider than 1/rate: 1% more than on one machine (limiter.SPACING_MARGIN), because
# on a cluster a request's way to the API and the lease's way back from the book vary more.
CLUSTER_MARGIN = 1.03
# A lease covers about this much of the worker's own time: longer means fewer round trips, shorter
# means less sent into a pause and less wasted when a worker dies.
LEASE_SECONDS = 0.1
MAX_LEASE = 32
# A slot is usable this long after its moment. The window bound above needs it well under the spacing
# margin (3% of a second), the rest being left for the way to the API.
STALE_SECONDS = 0.01
# After a late wake-up, the last stretch of the wait for the next slot is spun, not slept.
SPIN_AFTER_LATE_SECONDS = 0.1
# A thread that woke too late for this many slots in a row, spinning included (a machine so loaded that
# the thread is off the CPU for longer than a slot stays usable), sends on its next slot however late:
# else it might never send, and the job would stall and blame the API. Such a send may come closer to
# the next slot than the spacing (the window bound above can be passed by one request per such send).
LATE_SEND_AFTER = 8
# Slots are asked for this much wider than the measured work between two requests, so that a slightly
# slower page still meets its next slot.
SPACING_SLACK = 0.9


@dataclass(frozen=True)
class Lease:
    delays: list[float]  # seconds from the book's now to each slot
    paused: float  # seconds the book is still paused for


class SlotBook:
    """The cluster's send timeline: slot ``i`` is the moment ``origin + i * interval``; each is given once."""

    def __init__(
        self, per_second: float, margin: float = CLUSTER_MARGIN, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not per_second > 0:
            raise ValueError(f"the rate limit must be positive, not {per_second}")
        self.per_second = per_second
        self.interval = margin / per_second
        self._clock = clock
        self._origin = clock()
        self._taken: set[int] = set()
        self._floor = 0  # slots below this one are past and forgotten
        self._paused_until = 0.0

    def lease(self, count: int, spacing: float = 0.0) -> Lease:
        """``count`` free slots at least ``spacing`` seconds apart, the first as soon as possible."""
        now = self._clock()
        current = math.ceil((now - self._origin) / self.interval)
        if current > self._floor:
            self._taken = {i for i in self._taken if i >= current}
            self._floor = current
        index = max(current, math.ceil((self._paused_until - self._origin) / self.interval))
        step = max(1, math.ceil(spacing / self.interval - 1e-9))
        delays = []
        for _ in range(max(1, count)):
            while index in self._taken:
                index += 1
            self._taken.add(index)
            delays.append(self._origin + index * self.interval - now)
            index += step
        return Lease(delays, max(0.0, self._paused_until - now))

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())


class SlotSource(Protocol):
    """Where a worker's leases come from: the scheduler, an actor or Redis."""

    def lease(self, count: int, spacing: float) -> Lease: ...
    def pause(self, seconds: float) -> None: ...


@dataclass
class _Reservoir:
    """One thread's leased slots, in this process's monotonic clock."""

    slots: deque[tuple[float, float]] = field(default_factory=deque)  # (moment, last moment to use it)
    work: float | None = None  # seconds the thread works between two requests (moving average)
    returned: float | None = None


class LeasedRateLimiter:
    """The ``RateLimiter`` of a Dask worker process: slots leased from a shared :class:`SlotSource`.

    Pickled into each task; every task of one run in one process shares the same instance (and so
    one pause time), each thread its own lease.
    """

    def __init__(self, name: str, per_second: float, source: SlotSource, margin: float = CLUSTER_MARGIN) -> None:
        self.name = name
        self.per_second = per_second
        self.source = source
        self.interval = margin / per_second
        self._local = threading.local()
        self._paused_until = 0.0  # this process's knowledge of the book's pause (monotonic)
        self.wasted = 0  # slots dropped unused (stale, or inside a pause)
        self.leases = 0
        self.late_sends = 0  # slots used late after LATE_SEND_AFTER lost in a row

    def __reduce__(self) -> tuple[Any, ...]:
        return (_limiter_in_this_process, (self.name, self.per_second, self.source))

    def _reservoir(self) -> _Reservoir:
        reservoir: _Reservoir | None = getattr(self._local, "reservoir", None)
        if reservoir is None:
            reservoir = self._local.reservoir = _Reservoir()
        return reservoir

    def acquire(self, *, retry: bool = False) -> None:
        """Block until this thread's next leased slot (``retry`` makes no difference here: on a cluster,
        the workers' flushes count their retries)."""
        reservoir = self._reservoir()
        now = time.monotonic()
        if reservoir.returned is not None:
            work = now - reservoir.returned
            reservoir.work = work if reservoir.work is None else 0.7 * reservoir.work + 0.3 * work
        late = 0  # slots lost in a row to late wake-ups
        while True:
            slot, deadline = self._next_slot(reservoir)
            # After a lost slot the last stretch of the wait is spun: on a loaded machine every sleep may
            # wake later than a slot stays usable (STALE_SECONDS), and a thread that only slept lost every
            # slot it leased and never sent (the job stalled a minute, then blamed the API).
            wait_until(slot, SPIN_AFTER_LATE_SECONDS if late else 0.0)
            if time.monotonic() > deadline and late < LATE_SEND_AFTER:  # woke up too late: not sent late
                self.wasted += 1
                late += 1  # the next slot is waited for awake; after LATE_SEND_AFTER, sent however late
                continue
            if late >= LATE_SEND_AFTER:
                self.late_sends += 1
            if self._paused_until <= slot:
                reservoir.returned = time.monotonic()
                return
            # A pause began after this slot was leased: drop the lease, queue behind the pause.
            self.wasted += len(reservoir.slots) + 1
            reservoir.slots.clear()

    def left(self) -> None:
        """Nothing: a leased slot is the thread's own, spaced by the lease (``CLUSTER_MARGIN`` covers when its
        request leaves)."""

    def _next_slot(self, reservoir: _Reservoir) -> tuple[float, float]:
        """The thread's next usable slot and the last moment it may still be used."""
        while True:
            now = time.monotonic()
            while reservoir.slots:
                slot, deadline = reservoir.slots.popleft()
                if deadline >= now:
                    return slot, deadline
                self.wasted += 1  # its moment passed while this thread was busy: never send it late
            spacing = 0.0 if reservoir.work is None else reservoir.work * SPACING_SLACK
            count = 1 if reservoir.work is None else int(LEASE_SECONDS / max(spacing, self.interval))
            sent = time.monotonic()
            lease = self.source.lease(min(max(count, 1), MAX_LEASE), spacing)
            self.leases += 1
            arrived = time.monotonic()
            # The book's "now" was somewhere between sent and arrived: placing the slots from arrived
            # may put them up to the round trip late, which uses up that much of the lateness allowed
            # (at most half of it: across a slow link the bound loosens rather than every slot expiring).
            allowed = max(STALE_SECONDS / 2, STALE_SECONDS - (arrived - sent))
            if lease.paused > 0:
                self._paused_until = max(self._paused_until, arrived + lease.paused)
            reservoir.slots.extend((arrived + delay, arrived + delay + allowed) for delay in lease.delays)

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + max(0.0, seconds))
        self.source.pause(seconds)

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - time.monotonic())


_LIMITERS: dict[str, LeasedRateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def _limiter_in_this_process(name: str, per_second: float, source: SlotSource) -> LeasedRateLimiter:
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(name)
        if limiter is None:
            limiter = _LIMITERS[name] = LeasedRateLimiter(name, per_second, source)
        return limiter


def forget_limiter(name: str) -> None:
    """Drop a finished run's limiter from this process (run on each worker at the end of a run)."""
    with _LIMITERS_LOCK:
        _LIMITERS.pop(name, None)


# ------------------------------------------------------------------------------------ in the scheduler


def scheduler_call(handler: str, **arguments: Any) -> Any:
    """Call a Lifestats handler of the scheduler (see ``cluster.LifestatsScheduler``) from a task thread."""
    from distributed import get_worker
    from distributed.utils import sync

    worker = get_worker()
    return sync(worker.loop, getattr(worker.scheduler, handler), **arguments)


@dataclass(frozen=True)
class SchedulerSlots:
    """Leases from the run's book in the Dask scheduler (the default)."""

    name: str
    per_second: float

    def lease(self, count: int, spacing: float) -> Lease:
        answer = scheduler_call(
            "lifestats_lease", name=self.name, per_second=self.per_second, count=count, spacing=spacing
        )
        return Lease(list(answer["delays"]), float(answer["paused"]))

    def pause(self, seconds: float) -> None:
        scheduler_call("lifestats_pause", name=self.name, per_second=self.per_second, seconds=seconds)


# ------------------------------------------------------------------------------------ as a Dask actor


class ActorBook:
    """:class:`SlotBook` as a Dask actor (``client.submit(ActorBook, rate, actor=True)``)."""

    def __init__(self, per_second: float) -> None:
        self.book = SlotBook(per_second)

    def lease(self, count: int, spacing: float) -> tuple[list[float], float]:
        lease = self.book.lease(count, spacing)
        return lease.delays, lease.paused

    def pause(self, seconds: float) -> None:
        self.book.pause(seconds)


@dataclass(frozen=True)
class ActorSlots:
    """Leases from an :class:`ActorBook` actor on one worker."""

    actor: Any

    def lease(self, count: int, spacing: float) -> Lease:
        delays, paused = self.actor.lease(count, spacing).result()
        return Lease(list(delays), float(paused))

    def pause(self, seconds: float) -> None:
        self.actor.pause(seconds).result()


# ------------------------------------------------------------------------------------------- in Redis

# The same lease as SlotBook.lease, atomically in Redis: KEYS[1] is a sorted set of taken slots,
# KEYS[2] a hash with the timeline's origin and the pause (Redis server time, seconds).
# ARGV: interval, count, spacing, time to live (ms).
LEASE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local origin = tonumber(redis.call('HGET', KEYS[2], 'origin'))
if not origin then
  origin = now
  redis.call('HSET', KEYS[2], 'origin', tostring(now))
end
local paused = tonumber(redis.call('HGET', KEYS[2], 'paused') or '0')
local current = math.ceil((now - origin) / interval)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. current)
local index = math.max(current, math.ceil((paused - origin) / interval))
local step = math.max(1, math.ceil(tonumber(ARGV[3]) / interval - 1e-9))
local out = {tostring(math.max(0, paused - now))}
for _ = 1, math.max(1, tonumber(ARGV[2])) do
  while redis.call('ZSCORE', KEYS[1], index) do index = index + 1 end
  redis.call('ZADD', KEYS[1], index, index)
  out[#out + 1] = tostring(origin + index * interval - now)
  index = index + step
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return out
"""

PAUSE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused') or '0')
local until_ = now + tonumber(ARGV[1])
if until_ > paused then redis.call('HSET', KEYS[1], 'paused', tostring(until_)) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

REDIS_TTL_MS = 3_600_000  # a run's keys vanish an hour after its last lease


class RedisSlots:
    """Leases from a Redis server (``redis://host:port/db``), the book in two keys per run."""

    def __init__(self, url: str, name: str, per_second: float, margin: float = CLUSTER_MARGIN) -> None:
        self.url = url
        self.name = name
        self.per_second = per_second
        self.interval = margin / per_second
        self._redis: Any = None
        self._scripts: tuple[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "name": self.name, "per_second": self.per_second, "interval": self.interval}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._redis = None
        self._scripts = None

    def _connect(self) -> tuple[Any, Any]:
        if self._scripts is None:
            import redis

            self._redis = redis.Redis.from_url(self.url)
            self._scripts = (self._redis.register_script(LEASE_SCRIPT), self._redis.register_script(PAUSE_SCRIPT))
        return self._scripts

    def _keys(self) -> list[str]:
        return [f"lifestats:{self.name}:taken", f"lifestats:{self.name}:state"]

    def lease(self, count: int, spacing: float) -> Lease:
        lease_script, _ = self._connect()
        answer = lease_script(keys=self._keys(), args=[repr(self.interval), count, repr(spacing), REDIS_TTL_MS])
        values = [float(v) for v in answer]
        return Lease(values[1:], values[0])

    def pause(self, seconds: float) -> None:
        _, pause_script = self._connect()
        pause_script(keys=self._keys()[1:], args=[repr(max(0.0, seconds)), REDIS_TTL_MS])

    def forget(self) -> None:
        self._connect()
        with contextlib.suppress(Exception):
            self._redis.delete(*self._keys())
