"""The unit of work: crawl one slice from its position, count its pages, flush every few pages.

The client's paginator says how to page; this module says which records belong to the slice (by id
for the id styles, by row or page for the positional ones, all of them for a sequential crawl).

:func:`crawl_slice` is a plain function of the task, a page fetcher, a counter and a flush callback,
so the local process pool and a cluster executor run the same code.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .count import PageCounter, RecentIds, SliceCursor
from .errors import ApiError
from .fetch import ApiClient
from .merge import Flush
from .plan import Slice
from .stats import Partial


@dataclass(frozen=True)
class Split:
    """A worker's answer to a proposal to end its slice at ``new_end`` (the rest becomes a new slice)."""

    slice: int
    attempt: int
    new_end: int
    accepted: bool


@dataclass(frozen=True)
class Task:
    slice: Slice
    attempt: int
    position: Any  # where the crawl goes on (a JSON value); for offsets by id, the offset to request next
    high_water: int | None
    seq: int  # the last committed flush of the slice


# A sequential crawl remembers this many of its last positions to refuse a next reference that loops.
LOOP_MEMORY = 10_000


class _Positions:
    """The positions a slice's crawl went through, to stop a next reference that leads back (a loop)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._order: collections.deque[str] = collections.deque()

    def visit(self, position: Any, where: str) -> None:
        key = orjson.dumps(position, option=orjson.OPT_SORT_KEYS).decode()
        if key in self._seen:
            raise ApiError(f"the API's next reference leads back to {where}, a page already crawled: it would loop")
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > LOOP_MEMORY:
            self._seen.discard(self._order.popleft())


def crawl_slice(
    task: Task,
    client: ApiClient,
    counter: PageCounter,
    flush_every: int,
    emit: Callable[[Flush | Split], None],
    proposals: Callable[[], int | None] = lambda: None,
) -> None:
    """Crawl ``task.slice`` from ``task.position`` to its end, emitting a :class:`Flush` every
    ``flush_every`` pages and one last flush (``position`` None) when the slice is done.

    Between pages it asks ``proposals`` whether the coordinator wants to cut the slice short so that
    an idle worker can take its remaining range, and answers each proposal with a :class:`Split` (a
    sequential crawl, which has no range to cut, refuses).
    """
    paginator = client.paginator
    by_id = paginator.slicing == "id"
    high_water = task.high_water if task.high_water is not None else task.slice.begin - 1
    ids = SliceCursor(task.slice.begin, task.slice.end, high_water)
    recent = RecentIds()
    loops = _Positions()
    position: Any = task.position
    end = task.slice.end
    seq = task.seq
    partial = Partial()
    pages = 0
    counts = client.counts
    requests0, retries0 = counts.requests, counts.retries
    while position is not None:
        new_end = proposals()
        if new_end is not None:
            at = paginator.progress(position)
            floor = max(at, ids.high_water) if by_id and at is not None else at
            accepted = floor is not None and new_end > floor and (end is None or new_end < end)
            if accepted:
                end = ids.end = new_end
            emit(Split(task.slice.index, task.attempt, new_end, accepted))
        if paginator.slicing == "sequential":
            loops.visit(position, paginator.describe(position))
        page = client.get_page(position, end)
        if by_id:
            counter.count_page(partial, page.records, page.position, ids)
        else:
            at = paginator.progress(position)
            room = None
            if paginator.style == "offset" and end is not None and at is not None:
                room = end - at  # the rows of the page that still lie inside the slice
            counter.count_rows(partial, page.records, room, recent)
        pages += 1
        position = None if paginator.finished(page, end) else page.next
        if position is None or pages == flush_every:
            seq += 1
            emit(
                Flush(
                    slice=task.slice.index,
                    attempt=task.attempt,
                    seq=seq,
                    position=position,
                    high_water=ids.high_water if by_id else None,
                    pages=pages,
                    requests=counts.requests - requests0,
                    retries=counts.retries - retries0,
                    partial=partial.to_bytes(),
                )
            )
            partial, pages = Partial(), 0
            requests0, retries0 = counts.requests, counts.retries
